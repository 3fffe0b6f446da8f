/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* dm-crypt mappings for cryptsetup mode (luks.h): whether the host has
 * dm-crypt, mapping names, activation from a source's header snapshot
 * (the volume key derived outside libcryptsetup's global lock; a file's
 * data through a loop device bound to the checked descriptor),
 * deactivation, resize, and what an active mapping sits on, read from
 * sysfs and the device-mapper table rather than from the device.  Apart
 * from luks.c because it is device-mapper's and the kernel's business
 * rather than the header's: what cryptsetup mode adds on top of a
 * snapshot. */

#include <inttypes.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "deadline.h"
#include "dm-ioctl.h"
#include "errors.h"
#include "fault.h"
#include "loopdev.h"
#include "luks-internal.h"
#include "luks.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free);

/* ------------------------------------------------------------ dm-crypt */

static bool kernel_module_file(const char *release, const char *name) {
        static const char *const suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
        char path[512];

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                snprintf(path, sizeof path, "/lib/modules/%s/kernel/drivers/md/%s%s", release, name, suffixes[i]);
                if (access(path, F_OK) >= 0)
                        return true;
        }
        return false;
}

static bool proc_misc_has_device_mapper(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/misc", "re");
        char line[128];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f))
                if (strstr(line, "device-mapper"))
                        return true;
        return false;
}

bool luks_dm_crypt_available(void) {
        struct utsname u;

        /* Not /dev/mapper/control: libdevmapper creates that node itself
         * whether or not the kernel has device-mapper.  The kernel's own
         * word is its misc device list, or a module it can load. */
        if (uname(&u) < 0)
                return false;
        if (!proc_misc_has_device_mapper() && !kernel_module_file(u.release, "dm-mod"))
                return false;
        /* The crypt target: loaded (or built in with parameters), or loadable. */
        return access("/sys/module/dm_crypt", F_OK) >= 0 || kernel_module_file(u.release, "dm-crypt");
}

/* Written once by luks_device_tag_set() before any thread exists. */
static char mapping_prefix[sizeof(LUKS_MAPPING_PREFIX) + LUKS_DEVICE_TAG_MAX + 1] = LUKS_MAPPING_PREFIX;

int luks_device_tag_set(const char *tag) {
        if (isempty(tag)) {
                snprintf(mapping_prefix, sizeof mapping_prefix, "%s", LUKS_MAPPING_PREFIX);
                return 0;
        }
        if (!luks_device_tag_valid(tag))
                return -EINVAL;
        snprintf(mapping_prefix, sizeof mapping_prefix, LUKS_MAPPING_PREFIX "%s-", tag);
        return 0;
}

const char *luks_mapping_prefix(void) {
        return mapping_prefix;
}

int luks_mapping_name(const char *domain_uuid, const char *target, char **ret) {
        return volume_id_build_prefixed(mapping_prefix, domain_uuid, target, ret);
}

bool luks_device_name_ours(const char *name, bool *ret_shim) {
        _cleanup_free_ char *uuid = NULL, *target = NULL;
        const char *id;
        bool shim;

        /* A volume id starts with a hex digit and a tag ends in '-': an
         * untagged service never takes "luksvol-TAG-…" for its own, nor a
         * tagged one another tag's or the untagged names. */
        if (!name || !startswith(name, mapping_prefix))
                return false;
        id = name + strlen(mapping_prefix);
        shim = startswith(id, "shim-");
        if (volume_id_parse(shim ? id + strlen("shim-") : id, &uuid, &target) < 0)
                return false;
        if (ret_shim)
                *ret_shim = shim;
        return true;
}

bool luks_shim_path_ours(const char *path) {
        bool shim = false;

        return path && startswith(path, "/dev/mapper/") &&
               luks_device_name_ours(path + strlen("/dev/mapper/"), &shim) && shim;
}

/* Opening the data device reads its first sector (libcryptsetup's direct-io
 * test) — through the loop device, from the caller's file — so it runs
 * under the deadline too; an abandoned attempt frees its crypt_device
 * whenever it comes back. */
typedef struct DataDeviceTask {
        struct crypt_device *cd;
        char *path;
        int r;
} DataDeviceTask;

static void data_device_task_free(void *p) {
        DataDeviceTask *t = p;
        crypt_free_locked(t->cd);
        free(t->path);
        free(t);
}

static void data_device_task_run(void *p) {
        DataDeviceTask *t = p;
        t->r = crypt_set_data_device(t->cd, t->path);
}

/* crypt_set_data_device(*cd, path) under the deadline.  On a timeout the
 * context goes with the abandoned thread: *cd is NULL then. */
static int set_data_device(struct crypt_device **cd, const char *path, unsigned timeout_ms, sd_bus_error *error) {
        DataDeviceTask *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t || !(t->path = strdup(path))) {
                free(t);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        t->cd = TAKE_PTR(*cd);
        r = deadline_run(data_device_task_run, t, data_device_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                *cd = TAKE_PTR(t->cd);
                data_device_task_free(t);
                return source_error_deadline(error, r);
        }
        *cd = TAKE_PTR(t->cd);
        r = t->r;
        data_device_task_free(t);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot use '%s' as the data device: %s", path,
                                         strerror(-r));
        return 0;
}

int luks_activate(LuksSource *s, const char *name, bool read_only, bool discard, unsigned timeout_ms,
                  Passphrase **passphrase, char **ret_mapper_path, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        _cleanup_free_ char *path = NULL, *loop_path = NULL;
        _cleanup_close_ int loop_fd = -EBADF;
        uint32_t flags = CRYPT_ACTIVATE_PRIVATE | (read_only ? CRYPT_ACTIVATE_READONLY : 0) |
                         (discard ? CRYPT_ACTIVATE_ALLOW_DISCARDS : 0);
        size_t vk_size;
        int r;

        if (!read_only && !s->writable) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "'%s' cannot be opened for writing; attach it read-only.",
                                      s->path);
                goto finish;
        }

        /* Nothing is derived from a header refused (header-policy.h). */
        r = luks_source_check(s, error);
        if (r >= 0)
                r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r >= 0)
                r = snapshot_load(s, &cd, error);
        if (r < 0)
                goto finish;

        if (asprintf(&path, "/dev/mapper/%s", name) < 0) {
                r = sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                goto finish;
        }

        /* The volume key, derived without holding the global lock (see
         * crypt_lock), into locked memory; the passphrase goes right after. */
        r = crypt_get_volume_key_size(cd);
        if (r <= 0) {
                r = sd_bus_error_set(error, LV_ERROR_NOT_LUKS, "The volume has no key size.");
                goto finish;
        }
        vk_size = (size_t) r;
        r = passphrase_new_zeroed(vk_size, &vk);
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot allocate the key buffer: %s", strerror(-r));
                goto finish;
        }
        {
                /* Slot by slot, the fast path first where it applies. */
                SlotSearch task = { .cd = cd,
                                    .snap_fd = s->snap_fd,
                                    .vk = vk,
                                    .passphrase = *passphrase,
                                    .found = -1,
                                    .failed_slot = -1 };
                r = derive_run(slot_search_run, &task);
                r = slot_search_result(r, task.r, task.failed_slot, task.found, s->path, error);
                vk_size = task.vk_size;
        }
        *passphrase = passphrase_free(*passphrase);
        if (r < 0)
                goto finish;

        /* The data: a block device as is; a file through a loop device
         * bound to the descriptor that was checked. */
        const char *data_path = s->path;
        if (!s->block) {
                r = loop_attach_fd(s->fd, read_only, &loop_fd, &loop_path);
                if (r < 0) {
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot set up a loop device for '%s': %s",
                                              s->path, strerror(-r));
                        goto finish;
                }
                data_path = loop_path;
        }

        r = set_data_device(&cd, data_path, timeout_ms, error);
        if (r < 0)
                goto finish;

        {
                CRYPT_LOCKED;
                r = crypt_activate_by_volume_key(cd, name, (const char *) vk->data, vk_size, flags);
        }
        vk = passphrase_free(vk);
        stack_scrub();
        if (r == -EEXIST) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "A device-mapper device '%s' already exists.", name);
                goto finish;
        }
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot activate the dm-crypt mapping for '%s': %s",
                                      s->path, strerror(-r));
                goto finish;
        }

        fault_point("attach", 2); /* mapping open, not attached */

        *ret_mapper_path = TAKE_PTR(path);
        r = 0;

finish:
        /* The loop device stays bound as long as the mapping holds it
         * (autoclear); without a mapping, closing it here detaches it. */
        *passphrase = passphrase_free(*passphrase);
        return r;
}

int luks_deactivate(const char *name, sd_bus_error *error) {
        int r = 0;

        /* A guest's QEMU may take a moment to close the device after
         * libvirt reports it removed; busy is worth waiting out. */
        for (unsigned attempt = 0; attempt < 50; attempt++) {
                if (attempt > 0)
                        usleep(100 * 1000); /* not holding the lock */

                CRYPT_LOCKED;
                _cleanup_(crypt_freep) struct crypt_device *cd = NULL;

                /* A context without a device: deactivation is a
                 * device-mapper matter, and crypt_init_by_name() would read
                 * the LUKS header through the device underneath. */
                luks_init();
                r = crypt_init(&cd, NULL);
                if (r < 0)
                        break;
                crypt_set_log_callback(cd, luks_log, NULL);

                crypt_status_info st = crypt_status(cd, name);
                if (st == CRYPT_INACTIVE)
                        return 0;
                r = crypt_deactivate_by_name(cd, name, 0);
                if (r >= 0 || r == -ENODEV)
                        return 0;
                if (r != -EBUSY)
                        break;
        }
        return sd_bus_error_setf(error, r == -EBUSY ? LV_ERROR_BUSY : LV_ERROR_FAILED,
                                 "Cannot close the dm-crypt mapping '%s': %s", name, strerror(-r));
}

/* ----------------------------------------------- mappings, from sysfs */

int sysfs_read_line(const char *path, char **ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;

        /* Only "is it there" matters to the callers (sysfs attributes). */
        if (!f)
                return -ENOENT;
        if (getline(&line, &n, f) <= 0)
                return -ENODATA;
        line[strcspn(line, "\n")] = '\0';
        *ret = TAKE_PTR(line);
        return 0;
}

/* "dm-3" for a mapping name, from /sys/block/dm-* /dm/name. */
static int dm_kernel_name(const char *name, char ret[static 64]) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        struct dirent *de;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                _cleanup_free_ char *p = NULL, *n = NULL;

                if (!startswith(de->d_name, "dm-"))
                        continue;
                if (asprintf(&p, "/sys/block/%s/dm/name", de->d_name) < 0)
                        return -ENOMEM;
                if (sysfs_read_line(p, &n) >= 0 && streq(n, name)) {
                        snprintf(ret, 64, "%.63s", de->d_name);
                        return 0;
                }
        }
        return -ENODEV;
}

/* "CRYPT-LUKS1-<32 hex>-NAME" → version and the UUID with its dashes. */
static int parse_dm_uuid(const char *uuid, LuksInfo *ret) {
        const char *hex;
        unsigned v;

        if (startswith(uuid, "CRYPT-LUKS1-"))
                v = 1;
        else if (startswith(uuid, "CRYPT-LUKS2-"))
                v = 2;
        else
                return -EINVAL;
        hex = uuid + strlen("CRYPT-LUKS1-");
        if (strlen(hex) < 32 || strspn(hex, "0123456789abcdefABCDEF") < 32)
                return -EINVAL;
        ret->version = v;
        snprintf(ret->uuid, sizeof ret->uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
        return 0;
}

/* The one block device an active mapping sits on, as its kernel name
 * ("loop3", "sdb"), from /sys/block/dm-N/slaves. */
static int mapping_slave(const char *kname, char **ret) {
        _cleanup_free_ char *p = NULL;
        _cleanup_(closedirp) DIR *slaves = NULL;
        struct dirent *de;

        if (asprintf(&p, "/sys/block/%s/slaves", kname) < 0)
                return -ENOMEM;
        slaves = opendir(p);
        if (!slaves)
                return negative_errno();
        while ((de = readdir(slaves))) {
                if (de->d_name[0] == '.')
                        continue;
                *ret = strdup(de->d_name);
                return *ret ? 0 : -ENOMEM;
        }
        return -ENODEV;
}

int luks_mapping_info(const char *name, char **ret_source, LuksInfo *ret_info) {
        _cleanup_free_ char *p = NULL, *uuid = NULL, *src = NULL, *slave = NULL;
        char kname[64];
        LuksInfo info = {};
        int r;

        r = dm_kernel_name(name, kname);
        if (r < 0)
                return r;

        if (asprintf(&p, "/sys/block/%s/dm/uuid", kname) < 0)
                return -ENOMEM;
        if (sysfs_read_line(p, &uuid) >= 0)
                (void) parse_dm_uuid(uuid, &info);

        r = mapping_slave(kname, &slave);
        if (r < 0)
                return r;
        if (startswith(slave, "loop")) {
                _cleanup_free_ char *bf = NULL;

                if (asprintf(&bf, "/sys/block/%s/loop/backing_file", slave) < 0)
                        return -ENOMEM;
                r = sysfs_read_line(bf, &src);
                if (r < 0)
                        return r;
        } else if (asprintf(&src, "/dev/%s", slave) < 0)
                return -ENOMEM;

        *ret_source = TAKE_PTR(src);
        if (ret_info)
                *ret_info = info;
        return 0;
}

int luks_mapping_device(const char *name, char **ret_node) {
        char kname[64], *slave = NULL;
        int r;

        r = dm_kernel_name(name, kname);
        if (r < 0)
                return r;
        r = mapping_slave(kname, &slave);
        if (r < 0)
                return r;
        r = asprintf(ret_node, "/dev/%s", slave) < 0 ? -ENOMEM : 0;
        free(slave);
        return r;
}

int luks_mapping_geometry(const char *name, uint64_t *ret_payload_offset, uint64_t *ret_size) {
        _cleanup_(crypt_freep) struct crypt_device *cd = NULL;
        struct crypt_active_device cad = {};
        int r;

        /* The kernel's table, through device-mapper: nothing is read from
         * the device under it. */
        CRYPT_LOCKED;
        luks_init();
        r = crypt_init(&cd, NULL);
        if (r < 0)
                return r;
        crypt_set_log_callback(cd, luks_log, NULL);
        r = crypt_get_active_device(cd, name, &cad);
        if (r < 0)
                return r;
        *ret_payload_offset = cad.offset * 512;
        *ret_size = cad.size * 512;
        return 0;
}

int luks_resize(LuksSource *s, const char *name, const char *data_device, uint64_t size, unsigned timeout_ms,
                sd_bus_error *error) {
        struct stat st;

        (void) s; /* the table in the kernel says all; nothing is read from the source */
        if (size == 0 || size % 512 != 0)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "%" PRIu64 " is not a multiple of 512 bytes.",
                                         size);
        /* A node under /dev (the caller found it in sysfs): no file system
         * of the caller's. */
        if (stat(data_device, &st) < 0 || !S_ISBLK(st.st_mode))
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot find the device %s under mapping %s.",
                                         data_device, name);

        /* Not crypt_resize(): its table swap suspends the mapping, which
         * waits for the guest's I/O in flight — for the caller's file, as
         * long as that takes — holding libcryptsetup's process-wide lock
         * (crypt_lock) meanwhile, so every other device-mapper call of the
         * daemon would wait too.  dm-ioctl.c does it without the lock and
         * under the deadline. */
        return dm_crypt_resize(name, st.st_rdev, size, timeout_ms, error);
}
