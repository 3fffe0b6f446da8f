/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/sysmacros.h>

#include "dm-linear.h"
#include "errors.h"
#include "loopdev.h"
#include "luks-internal.h"
#include "luks-shim.h"
#include "volume-id.h"

/* The one-time passphrase: 32 random bytes as 64 hex digits (QEMU reads
 * secrets as text). */
#define ONETIME_RANDOM_BYTES 32

/* "LUKSVOLUMED-SHIM-LUKS2-<32 hex>-NAME": the volume's version and UUID for
 * a daemon that finds the device after a restart. */
#define SHIM_UUID_PREFIX "LUKSVOLUMED-SHIM-LUKS"

static uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000ULL + (uint64_t) ts.tv_nsec / 1000000ULL;
}

void luks_shim_done(LuksShim *shim) {
        if (shim->memfd >= 0)
                (void) close(shim->memfd);
        shim->memfd = -EBADF;
        shim->passphrase = passphrase_free(shim->passphrase);
        shim->slot = -1;
}

int luks_shim_name(const char *domain_uuid, const char *target, char **ret) {
        _cleanup_free_ char *crypt_name = NULL;
        int r;

        /* The cryptsetup-mode name with "shim-" after the prefix: the same
         * validation of domain and target. */
        r = luks_mapping_name(domain_uuid, target, &crypt_name);
        if (r < 0)
                return r;
        if (asprintf(ret, "%sshim-%s", luks_mapping_prefix(), crypt_name + strlen(luks_mapping_prefix())) < 0)
                return -ENOMEM;
        return 0;
}

/* ------------------------------------------------------- the volume key */

/* ------------------------------------------------------ the new header */

static int random_text(Passphrase **ret) {
        static const char hex[] = "0123456789abcdef";
        uint8_t raw[ONETIME_RANDOM_BYTES];
        Passphrase *p;
        int r;

        r = passphrase_new_zeroed(2 * sizeof raw, &p);
        if (r < 0)
                return r;
        if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw) {
                r = errno > 0 ? -errno : -EIO;
                passphrase_free(p);
                return r;
        }
        for (size_t i = 0; i < sizeof raw; i++) {
                p->data[2 * i] = (uint8_t) hex[raw[i] >> 4];
                p->data[2 * i + 1] = (uint8_t) hex[raw[i] & 15];
        }
        explicit_bzero(raw, sizeof raw);
        *ret = p;
        return 0;
}

static int format_header(const LuksInfo *info, const Passphrase *vk, size_t vk_size, const Passphrase *onetime,
                         int *ret_memfd) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[40];
        struct crypt_pbkdf_type pbkdf = {
                .type = CRYPT_KDF_PBKDF2,
                .hash = "sha256",
                .iterations = LUKS_SHIM_ITERATIONS,
                /* time_ms 0 with no benchmark: the key digest gets
                 * libcryptsetup's minimum too. */
                .flags = CRYPT_PBKDF_NO_BENCHMARK,
        };
        struct crypt_params_luks1 params = {
                .hash = "sha256",
                .data_alignment = LUKS_SHIM_HEADER_SECTORS,
        };
        int r;

        fd = memfd_create("luksvolumed-shim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        if (ftruncate(fd, (off_t) LUKS_SHIM_HEADER_SECTORS * 512) < 0)
                return negative_errno();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        r = crypt_init_locked(&cd, path);
        if (r < 0)
                return r;
        r = crypt_set_pbkdf_type(cd, &pbkdf);
        if (r < 0)
                return r;
        /* An aes key slot is written in-process (OpenSSL): no
         * device-mapper, no kernel crypto API; one slot of 1000 iterations
         * takes about a millisecond under the lock. */
        {
                CRYPT_LOCKED;
                r = crypt_format(cd, CRYPT_LUKS1, info->cipher_name, info->cipher_mode, NULL, (const char *) vk->data,
                                 vk_size, &params);
                if (r >= 0)
                        r = crypt_keyslot_add_by_volume_key(cd, 0, (const char *) vk->data, vk_size,
                                                            (const char *) onetime->data, onetime->size);
        }
        if (r < 0)
                return r;
        if ((uint64_t) crypt_get_data_offset(cd) != LUKS_SHIM_HEADER_SECTORS)
                return -EBADMSG;
        /* Its size is the table's first piece. */
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return negative_errno();
        *ret_memfd = TAKE_FD(fd);
        return 0;
}

int luks_shim_make(LuksSource *s, const LuksInfo *info, const Passphrase *passphrase, unsigned timeout_ms,
                   LuksShim *ret, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL, *onetime = NULL;
        SlotSearch t = { .passphrase = passphrase, .snap_fd = s->snap_fd, .found = -1, .failed_slot = -1 };
        int memfd = -EBADF, r;

        /* Nothing is derived from a header refused (header-policy.h). */
        r = luks_source_check(s, error);
        if (r >= 0)
                r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r >= 0)
                r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        r = crypt_get_volume_key_size(cd);
        if (r <= 0)
                return sd_bus_error_set(error, LV_ERROR_NOT_LUKS, "The volume has no key size.");
        r = passphrase_new_zeroed((size_t) r, &vk);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot allocate the key buffer: %s", strerror(-r));

        t.cd = cd;
        t.vk = vk;
        uint64_t t0 = now_ms();
        r = derive_run(slot_search_run, &t);
        uint64_t t1 = now_ms();
        r = slot_search_result(r, t.r, t.failed_slot, t.found, s->path, error);
        if (r < 0)
                return r;

        r = random_text(&onetime);
        if (r >= 0)
                r = onetime ? format_header(info, vk, t.vk_size, onetime, &memfd) : -ENOMEM;
        /* The key is of no use to us any more. */
        vk = passphrase_free(vk);
        stack_scrub();
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot write a LUKS1 header shim for '%s': %s",
                                         s->path, strerror(-r));
        /* Where an attach's time goes (bench/shim.c reads it). */
        log_info("Volume key of '%s' derived in %" PRIu64 " ms (key slot %d, %s), one-time header written in %" PRIu64
                 " ms.",
                 s->path, t1 - t0, t.found, t.fast_opened ? "nettle, checked by libcryptsetup" : "libcryptsetup",
                 now_ms() - t1);

        *ret = (LuksShim){
                .memfd = memfd,
                .passphrase = TAKE_PTR(onetime),
                .slot = t.found,
                .cost_ms = t.cost_ms,
        };
        return 0;
}

/* ---------------------------------------------------------- the device */

static int rdev_of(int fd, dev_t *ret) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISBLK(st.st_mode))
                return -ENOTBLK;
        *ret = st.st_rdev;
        return 0;
}

int luks_shim_activate(LuksSource *s, const LuksInfo *info, const LuksShim *shim, const char *name, bool read_only,
                       char **ret_node, sd_bus_error *error) {
        _cleanup_close_ int shim_loop = -EBADF, data_loop = -EBADF;
        _cleanup_free_ char *shim_path = NULL, *data_path = NULL, *uuid = NULL;
        char hex[40];
        size_t h = 0;
        DmLinearPiece pieces[2];
        int r;

        if (!read_only && !s->writable)
                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                         "'%s' cannot be opened for writing; attach it read-only.", s->path);
        if (info->device_size <= info->payload_offset + 512)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "'%s' has no payload.", s->path);

        /* The header piece must be writable for a read-write table; nothing
         * but QEMU's LUKS driver reads it, and it never writes there. */
        r = loop_attach_fd(shim->memfd, false, &shim_loop, &shim_path);
        if (r >= 0)
                r = rdev_of(shim_loop, &pieces[0].dev);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot set up a loop device for the header shim: %s",
                                         strerror(-r));
        pieces[0].offset = 0;
        pieces[0].length = LUKS_SHIM_HEADER_SECTORS;

        if (s->block)
                r = rdev_of(s->fd, &pieces[1].dev);
        else {
                r = loop_attach_fd(s->fd, read_only, &data_loop, &data_path);
                if (r >= 0)
                        r = rdev_of(data_loop, &pieces[1].dev);
        }
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot set up a loop device for '%s': %s", s->path,
                                         strerror(-r));
        pieces[1].offset = info->payload_offset / 512;
        pieces[1].length = (info->device_size - info->payload_offset) / 512;

        for (const char *c = info->uuid; *c && h + 1 < sizeof hex; c++)
                if (*c != '-')
                        hex[h++] = *c;
        hex[h] = '\0';
        if (asprintf(&uuid, SHIM_UUID_PREFIX "%u-%s-%s", info->version, hex, name) < 0)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");

        uint64_t t0 = now_ms();
        r = dm_linear_create(name, uuid, pieces, 2, read_only, ret_node);
        if (r >= 0)
                log_debug("Header shim device %s made in %" PRIu64 " ms.", name, now_ms() - t0);
        if (r == -EEXIST)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "A device-mapper device '%s' already exists.", name);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot create the header shim device for '%s': %s",
                                         s->path, strerror(-r));
        /* The loop devices stay bound while the device holds them. */
        return 0;
}

/* ---------------------------------------------------- after a restart */

/* "/dev/loop3" for 7:3, from the kernel's uevent of the device. */
static int node_of(dev_t dev, char **ret) {
        _cleanup_fclose_ FILE *f = NULL;
        char path[64], line[256];

        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
        f = fopen(path, "re");
        if (!f)
                return -ENODEV;
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = '\0';
                if (startswith(line, "DEVNAME="))
                        return asprintf(ret, "/dev/%s", line + strlen("DEVNAME=")) < 0 ? -ENOMEM : 0;
        }
        return -ENODEV;
}

static int shim_table(const char *name, DmLinearPiece pieces[static 2], char **ret_uuid) {
        size_t n = 0;
        int r;

        bool shim = false;

        if (!luks_device_name_ours(name, &shim) || !shim)
                return -EMEDIUMTYPE;
        r = dm_linear_table(name, pieces, 2, &n, ret_uuid);
        if (r < 0)
                return r;
        if (n != 2 || pieces[0].offset != 0 || pieces[0].length != LUKS_SHIM_HEADER_SECTORS)
                return -EMEDIUMTYPE;
        return 0;
}

int luks_shim_info(const char *name, char **ret_source, LuksInfo *ret_info) {
        _cleanup_free_ char *uuid = NULL, *source = NULL;
        DmLinearPiece pieces[2];
        LuksInfo info = {};
        char path[96];
        const char *p;
        int r;

        r = shim_table(name, pieces, &uuid);
        if (r < 0)
                return r;
        if (!startswith(uuid, SHIM_UUID_PREFIX))
                return -EMEDIUMTYPE;
        p = uuid + strlen(SHIM_UUID_PREFIX);
        if ((p[0] != '1' && p[0] != '2') || p[1] != '-' || strspn(p + 2, "0123456789abcdef") < 32)
                return -EMEDIUMTYPE;
        info.version = (unsigned) (p[0] - '0');
        p += 2;
        snprintf(info.uuid, sizeof info.uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", p, p + 8, p + 12, p + 16, p + 20);
        info.payload_offset = pieces[1].offset * 512;

        /* A loop device's file, else the block device itself. */
        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/loop/backing_file", major(pieces[1].dev),
                 minor(pieces[1].dev));
        if (sysfs_read_line(path, &source) < 0) {
                r = node_of(pieces[1].dev, &source);
                if (r < 0)
                        return r;
        }
        if (ret_source)
                *ret_source = TAKE_PTR(source);
        if (ret_info)
                *ret_info = info;
        return 0;
}

int luks_shim_data_device(const char *name, char **ret_node) {
        DmLinearPiece pieces[2];
        int r;

        r = shim_table(name, pieces, NULL);
        if (r < 0)
                return r;
        return node_of(pieces[1].dev, ret_node);
}

int luks_shim_resize(const char *name, uint64_t size, unsigned timeout_ms, sd_bus_error *error) {
        DmLinearPiece pieces[2];
        int r;

        r = shim_table(name, pieces, NULL);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the table of %s: %s", name, strerror(-r));
        if (size % 512 != 0 || size == 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot resize %s to %" PRIu64 " bytes.", name, size);
        if (pieces[1].length == size / 512)
                return 0;
        pieces[1].length = size / 512;
        return dm_linear_reload(name, pieces, 2, timeout_ms, error);
}

int luks_shim_rearm(LuksSource *s, const LuksInfo *info, const Passphrase *passphrase, const char *name, bool read_only,
                    unsigned timeout_ms, Passphrase **ret_passphrase, sd_bus_error *error) {
        _cleanup_(luks_shim_done) LuksShim shim = LUKS_SHIM_NULL;
        _cleanup_close_ int loop = -EBADF;
        _cleanup_free_ char *loop_path = NULL, *node = NULL;
        DmLinearPiece pieces[2];
        int r;

        r = luks_shim_make(s, info, passphrase, timeout_ms, &shim, error);
        if (r < 0)
                return r;

        r = shim_table(name, pieces, NULL);
        if (r == -ENXIO) {
                r = luks_shim_activate(s, info, &shim, name, read_only, &node, error);
                if (r < 0)
                        return r;
                *ret_passphrase = TAKE_PTR(shim.passphrase);
                return 0;
        }
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the table of %s: %s", name, strerror(-r));

        /* The old header's loop device clears itself once the table no
         * longer holds it. */
        r = loop_attach_fd(shim.memfd, false, &loop, &loop_path);
        if (r >= 0)
                r = rdev_of(loop, &pieces[0].dev);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot set up a loop device for the header shim: %s",
                                         strerror(-r));
        r = dm_linear_reload(name, pieces, 2, timeout_ms, error);
        if (r < 0)
                return r;
        *ret_passphrase = TAKE_PTR(shim.passphrase);
        return 0;
}

int luks_shim_remove(const char *name, sd_bus_error *error) {
        DmLinearPiece pieces[2];
        int r;

        /* Only a device that is ours by name and shape. */
        r = shim_table(name, pieces, NULL);
        if (r == -ENXIO)
                return 0;
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Not removing '%s': not a header shim device (%s).",
                                         name, strerror(-r));
        r = dm_linear_remove(name);
        if (r < 0)
                return sd_bus_error_setf(error, r == -EBUSY ? LV_ERROR_BUSY : LV_ERROR_FAILED,
                                         "Cannot remove the header shim device '%s': %s", name, strerror(-r));
        return 0;
}
