/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The header areas of a LUKS volume that lives in an RBD image (issue 18),
 * read through librbd into a memfd that then stands in for a file's
 * descriptor (luks.c opens it as it opens a file; luks-snapshot.c copies
 * the key slots from it).  Beside luks-snapshot.c, below luks.c.
 *
 * Only the header is read — the payload never leaves the cluster — and
 * how much is the header's own word, bounded: LUKS1 its header and its
 * active key slots' material, LUKS2 its two metadata copies and then, from what libcryptsetup
 * makes of them, up to the data segment and the last key slot area. */

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errors.h"
#include "luks-internal.h"
#include "luks1-fast.h"
#include "rbd.h"

/* Two LUKS2 metadata copies at their largest, and key slots at most. */
#define RBD_HEADER_READ_MAX (2 * LUKS2_HDR_SIZE_MAX + KEYSLOT_COPY_MAX)

static int copy_out(RbdImage *img, int fd, uint64_t off, uint64_t len) {
        static const size_t chunk = 4U << 20;
        uint8_t *buf = malloc(chunk);
        int r = 0;

        if (!buf)
                return -ENOMEM;
        while (len > 0 && r >= 0) {
                size_t n = (size_t) MIN(len, (uint64_t) chunk);
                r = rbd_image_read(img, off, buf, n);
                if (r >= 0 && pwrite(fd, buf, n, (off_t) off) != (ssize_t) n)
                        r = negative_errno();
                off += n;
                len -= n;
        }
        free(buf);
        return r;
}

/* How far LUKS2's header reaches, as libcryptsetup reads the metadata
 * already in fd; 0 if it does not take it (NotLuks is found later). */
static uint64_t luks2_extent(int fd) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        char path[40];
        uint64_t end;

        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (crypt_init_locked(&cd, path) < 0 || crypt_load(cd, CRYPT_LUKS2, NULL) < 0)
                return 0;
        end = crypt_get_data_offset(cd) * 512;
        for (int k = 0; k < MIN(crypt_keyslot_max(CRYPT_LUKS2), LUKS_MAX_KEYSLOTS); k++) {
                uint64_t off, len;
                if (crypt_keyslot_area(cd, k, &off, &len) >= 0 && len <= UINT64_MAX - off)
                        end = MAX(end, off + len);
        }
        return end;
}

/* The snapshot and, for a change, the image (still locked) to the caller. */
static int done_ok(RbdImage **img, int *fd, const RbdFacts *facts, int *ret_fd, uint64_t *ret_size, RbdFacts *ret_facts,
                   RbdImage **ret_image) {
        *ret_fd = TAKE_FD(*fd);
        *ret_size = facts->size;
        if (ret_facts)
                *ret_facts = *facts;
        if (ret_image)
                *ret_image = TAKE_PTR(*img);
        return 0;
}

/* LUKS1, for reading: the header and the active key slots' material only
 * (a 512-bit key's eight slots span 2 MiB; one is 256 KiB), what a
 * derivation reads.  libcryptsetup validates the layout from the header
 * alone. */
static int luks1_areas_copy(RbdImage *img, int fd, const uint8_t *first, const RbdFacts *facts) {
        uint64_t off[8], len[8], total = 0;
        unsigned n = 0;
        int r;

        if (luks1_active_areas(first, LUKS1_PHDR_AREA, off, len, &n) < 0)
                return 0;
        for (unsigned k = 0; k < n; k++) {
                /* Out of bounds or implausible: left out, and
                 * libcryptsetup's checks refuse the header. */
                if (off[k] < LUKS1_PHDR_AREA || off[k] > facts->size || len[k] > facts->size - off[k] ||
                    len[k] > KEYSLOT_COPY_MAX - total)
                        continue;
                total += len[k];
                r = copy_out(img, fd, off[k], len[k]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int rbd_header_copy(const char *source, bool exclusive, int *ret_fd, uint64_t *ret_size, RbdFacts *ret_facts,
                    RbdImage **ret_image, const char **ret_stage) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(rbd_image_closep) RbdImage *img = NULL;
        uint8_t first[LUKS1_PHDR_AREA] = {};
        RbdFacts facts;
        RbdName name;
        uint64_t extent, done;
        int r;

        *ret_stage = "parse";
        if (rbd_name_parse(source, &name, NULL) < 0)
                return -EINVAL;
        r = exclusive ? rbd_image_open_exclusive(&name, &img, ret_stage) : rbd_image_open(&name, &img, ret_stage);
        if (r < 0)
                return r;

        *ret_stage = "read the image's facts";
        r = rbd_image_facts(img, &facts);
        if (r < 0)
                return r;

        *ret_stage = "snapshot";
        fd = memfd_create("luksvol-rbd-header", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t) facts.size) < 0)
                return negative_errno();

        *ret_stage = "read";
        done = MIN(facts.size, (uint64_t) sizeof first);
        r = rbd_image_read(img, 0, first, (size_t) done);
        if (r >= 0 && pwrite(fd, first, (size_t) done, 0) != (ssize_t) done)
                r = negative_errno();
        if (r < 0)
                return r;

        extent = done;
        if (done == sizeof first && memcmp(first, "LUKS\xba\xbe", 6) == 0) {
                if (be16(first + 6) == 1 && !exclusive) {
                        r = luks1_areas_copy(img, fd, first, &facts);
                        if (r < 0)
                                return r;
                        return done_ok(&img, &fd, &facts, ret_fd, ret_size, ret_facts, ret_image);
                }
                if (be16(first + 6) == 1)
                        /* A change may write any slot: all of it. */
                        extent = (uint64_t) be32(first + LUKS1_PAYLOAD_OFFSET_AT) * 512;
                else if (be16(first + 6) == 2) {
                        uint64_t hdr = be64(first + 8);
                        if (hdr >= LUKS2_HDR_SIZE_MIN && hdr <= LUKS2_HDR_SIZE_MAX && !(hdr & (hdr - 1)) &&
                            2 * hdr <= facts.size) {
                                r = copy_out(img, fd, done, 2 * hdr - done);
                                if (r < 0)
                                        return r;
                                done = 2 * hdr;
                                extent = luks2_extent(fd);
                        }
                }
        }
        /* The bound: a header claiming more is refused later as implausible
         * (the snapshot then lacks what it names). */
        extent = MIN(MIN(extent, RBD_HEADER_READ_MAX), facts.size);
        if (extent > done) {
                r = copy_out(img, fd, done, extent - done);
                if (r < 0)
                        return r;
        }

        return done_ok(&img, &fd, &facts, ret_fd, ret_size, ret_facts, ret_image);
}

int rbd_error(sd_bus_error *error, const char *source, const char *stage, int e) {
        const char *reason = NULL;

        if (e == EBUSY && streq(stage, "lock the image"))
                return sd_bus_error_setf(error, LV_ERROR_IN_USE,
                                         "'%s' is open by another Ceph client (a guest on this or another host, or a "
                                         "kernel mapping): its key slots change only while nothing else has it open.",
                                         source);
        if (e == EINVAL && streq(stage, "lock the image"))
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "'%s' lacks the exclusive-lock feature: its header cannot be changed safely.",
                                         source);
        if (e == EOPNOTSUPP && rbd_available(&reason) < 0)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "RBD sources need librbd: %s.", reason);
        if (e == ENOENT && streq(stage, "open the pool"))
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The Ceph pool of '%s' does not exist.",
                                         source);
        if (e == ENOENT && streq(stage, "open the image"))
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The RBD image '%s' does not exist.", source);
        if (e == ENOENT && streq(stage, "configure the Ceph client"))
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "The host has no Ceph configuration at %s (CephConfig= in luksvolumed.conf).",
                                         rbd_conf_path());
        if (IN_SET(e, ETIMEDOUT, EINTR))
                return sd_bus_error_setf(error, LV_ERROR_BUSY, "The Ceph cluster did not answer (%s of '%s').", stage,
                                         source);
        if (IN_SET(e, EACCES, EPERM))
                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                         "Ceph refused client.%s access (%s of '%s'): check its key and capabilities.",
                                         rbd_client(), stage, source);
        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot %s for '%s': %s", stage, source, strerror(e));
}

int rbd_write_back(LuksSource *s, uint64_t off, uint64_t len) {
        _cleanup_free_ char *buf = NULL;

        if (!s->rbd_image)
                return -EPERM;
        buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        if (pread(s->snap_fd, buf, len, (off_t) off) != (ssize_t) len)
                return -EIO;
        return rbd_image_write(s->rbd_image, off, buf, len);
}
