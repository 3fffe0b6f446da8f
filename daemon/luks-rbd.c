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
#include <sys/mman.h>
#include <unistd.h>

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

static int done_ok(int *fd, const RbdFacts *facts, int *ret_fd, uint64_t *ret_size, RbdFacts *ret_facts) {
        *ret_fd = TAKE_FD(*fd);
        *ret_size = facts->size;
        if (ret_facts)
                *ret_facts = *facts;
        return 0;
}

/* LUKS1: the header and the active key slots' material only (a 512-bit
 * key's eight slots span 2 MiB; one is 256 KiB): what a derivation reads.
 * libcryptsetup validates the layout from the header alone. */
static int luks1_areas_copy(RbdImage *img, int *fd, const uint8_t *first, const RbdFacts *facts, int *ret_fd,
                            uint64_t *ret_size, RbdFacts *ret_facts) {
        uint64_t off[8], len[8], total = 0;
        unsigned n = 0;
        int r;

        if (luks1_active_areas(first, LUKS1_PHDR_AREA, off, len, &n) >= 0)
                for (unsigned k = 0; k < n; k++) {
                        /* Out of bounds or implausible: left out, and
                         * libcryptsetup's checks refuse the header. */
                        if (off[k] < LUKS1_PHDR_AREA || off[k] > facts->size || len[k] > facts->size - off[k] ||
                            (total += len[k]) > KEYSLOT_COPY_MAX)
                                continue;
                        r = copy_out(img, *fd, off[k], len[k]);
                        if (r < 0)
                                return r;
                }
        return done_ok(fd, facts, ret_fd, ret_size, ret_facts);
}

int rbd_header_copy(const char *source, int *ret_fd, uint64_t *ret_size, RbdFacts *ret_facts, const char **ret_stage) {
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
        r = rbd_image_open(&name, &img, ret_stage);
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
                if (be16(first + 6) == 1)
                        return luks1_areas_copy(img, &fd, first, &facts, ret_fd, ret_size, ret_facts);
                if (be16(first + 6) == 2) {
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

        return done_ok(&fd, &facts, ret_fd, ret_size, ret_facts);
}
