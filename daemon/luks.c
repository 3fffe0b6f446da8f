/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libcryptsetup.h>
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "errors.h"
#include "fault.h"
#include "luks.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free);

/* libcryptsetup keeps process-global state (its device-mapper backend use
 * count and logging context, set on every crypt_init/crypt_free), so two
 * threads must never be inside it at once, whatever their crypt_device.
 * Every entry point here holds this lock from crypt_init to crypt_free.
 * Activations thus run their key derivation one at a time; native mode
 * never comes here for that (QEMU derives the key). */
static pthread_mutex_t crypt_lock = PTHREAD_MUTEX_INITIALIZER;

static void unlockp(pthread_mutex_t **m) {
        if (*m)
                pthread_mutex_unlock(*m);
}

static pthread_mutex_t *crypt_lock_take(void) {
        pthread_mutex_lock(&crypt_lock);
        return &crypt_lock;
}

/* Declared before the crypt_device in each function, so it is released
 * after crypt_free() ran. */
#define CRYPT_LOCKED _cleanup_(unlockp) _unused_ pthread_mutex_t *_crypt_guard_ = crypt_lock_take()

/* libcryptsetup logs through a callback; by default it prints errors to
 * stderr. Route them to our debug log: the caller reports the outcome once,
 * with context, as a typed error. */
static void luks_log(int level, const char *msg, void *usrptr) {
        if (level == CRYPT_LOG_ERROR || level == CRYPT_LOG_NORMAL || level == CRYPT_LOG_VERBOSE)
                log_debug("libcryptsetup: %.*s", (int) strcspn(msg, "\n"), msg);
}

/* The smallest LUKS1 header is 592 bytes, read in 4 KiB units. */
static bool too_small_for_luks(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        uint64_t size = 0;
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        if (S_ISREG(st.st_mode))
                size = (uint64_t) st.st_size;
        else if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, &size) < 0)
                        return false;
        } else
                return false;
        return size < 4096;
}

int luks_probe(const char *path, LuksInfo *ret, sd_bus_error *error) {
        CRYPT_LOCKED;
        _cleanup_(crypt_freep) struct crypt_device *cd = NULL;
        LuksInfo info = {};
        const char *type, *s;
        int r;

        r = crypt_init(&cd, path);
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Cannot open '%s': %s", path, strerror(-r));
        crypt_set_log_callback(cd, luks_log, NULL);

        r = crypt_load(cd, CRYPT_LUKS, NULL);
        if (r < 0) {
                /* libcryptsetup answers -EIO for anything shorter than a
                 * LUKS header: that is "not LUKS", not a failing disk. */
                if (r == -EINVAL || r == -ENOENT || r == -EBADMSG ||
                    (r == -EIO && too_small_for_luks(path)))
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                                 "'%s' does not hold a valid LUKS header.", path);
                return sd_bus_error_set_errnof(error, -r, "Cannot read the LUKS header of '%s': %s", path, strerror(-r));
        }

        type = crypt_get_type(cd);
        if (streq_ptr(type, CRYPT_LUKS1))
                info.version = 1;
        else if (streq_ptr(type, CRYPT_LUKS2))
                info.version = 2;
        else
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' is not a LUKS volume.", path);

        s = crypt_get_uuid(cd);
        snprintf(info.uuid, sizeof info.uuid, "%s", strempty(s));
        snprintf(info.cipher, sizeof info.cipher, "%s-%s",
                 strempty(crypt_get_cipher(cd)), strempty(crypt_get_cipher_mode(cd)));
        r = crypt_get_volume_key_size(cd);
        info.key_size_bits = r > 0 ? (unsigned) r * 8 : 0;

        int max = crypt_keyslot_max(crypt_get_type(cd));
        for (int k = 0; k < max; k++) {
                crypt_keyslot_info ki = crypt_keyslot_status(cd, k);
                if (ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST)
                        info.active_keyslots++;
        }

        *ret = info;
        return 0;
}

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

int luks_mapping_name(const char *domain_uuid, const char *target, char **ret) {
        return volume_id_build_prefixed(LUKS_MAPPING_PREFIX, domain_uuid, target, ret);
}

int luks_activate(const char *source, const char *name, bool read_only, Passphrase **passphrase,
                  char **ret_mapper_path, sd_bus_error *error) {
        CRYPT_LOCKED;
        _cleanup_(crypt_freep) struct crypt_device *cd = NULL;
        _cleanup_free_ char *path = NULL;
        uint32_t flags = read_only ? CRYPT_ACTIVATE_READONLY : 0;
        int r;

        r = crypt_init(&cd, source);
        if (r < 0) {
                r = sd_bus_error_set_errnof(error, -r, "Cannot open '%s': %s", source, strerror(-r));
                goto finish;
        }
        crypt_set_log_callback(cd, luks_log, NULL);

        r = crypt_load(cd, CRYPT_LUKS, NULL);
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' does not hold a valid LUKS header.", source);
                goto finish;
        }

        if (asprintf(&path, "/dev/mapper/%s", name) < 0) {
                r = -ENOMEM;
                goto finish;
        }

        r = crypt_activate_by_passphrase(cd, name, CRYPT_ANY_SLOT,
                                         (const char *) (*passphrase)->data, (*passphrase)->size, flags);
        /* The mapping holds the volume key now; the passphrase goes. */
        *passphrase = passphrase_free(*passphrase);
        stack_scrub();
        if (r == -EPERM) {
                r = sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                     "The passphrase does not open any key slot of the volume.");
                goto finish;
        }
        if (r == -EEXIST) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "A device-mapper device '%s' already exists.", name);
                goto finish;
        }
        if (r < 0) {
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot activate the dm-crypt mapping for '%s': %s",
                                      source, strerror(-r));
                goto finish;
        }

        fault_point("attach", 2);   /* mapping open, not attached */

        *ret_mapper_path = TAKE_PTR(path);
        r = 0;

finish:
        *passphrase = passphrase_free(*passphrase);
        return r;
}

int luks_deactivate(const char *name, sd_bus_error *error) {
        int r;

        /* A guest's QEMU may take a moment to close the device after
         * libvirt reports it removed; busy is worth waiting out. */
        for (unsigned attempt = 0; attempt < 50; attempt++) {
                if (attempt > 0)
                        usleep(100 * 1000);     /* not holding the lock */

                CRYPT_LOCKED;
                _cleanup_(crypt_freep) struct crypt_device *cd = NULL;

                r = crypt_init_by_name(&cd, name);
                if (r == -ENODEV || r == -ENOENT)
                        return 0;
                if (r < 0)
                        break;
                crypt_set_log_callback(cd, luks_log, NULL);

                r = crypt_deactivate(cd, name);
                if (r >= 0 || r == -ENODEV)
                        return 0;
                if (r != -EBUSY)
                        break;
        }
        return sd_bus_error_setf(error, r == -EBUSY ? LV_ERROR_BUSY : LV_ERROR_FAILED,
                                 "Cannot close the dm-crypt mapping '%s': %s", name, strerror(-r));
}

/* A loop device's backing file, from sysfs. */
static int loop_backing_file(const char *dev, char **ret) {
        _cleanup_free_ char *p = NULL, *line = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        size_t n = 0;
        ssize_t k;

        if (!startswith(dev, "/dev/loop"))
                return -EINVAL;
        if (asprintf(&p, "/sys/block/%s/loop/backing_file", dev + strlen("/dev/")) < 0)
                return -ENOMEM;
        f = fopen(p, "re");
        if (!f)
                return -errno;
        k = getline(&line, &n, f);
        if (k <= 0)
                return -ENODATA;
        line[strcspn(line, "\n")] = '\0';
        *ret = TAKE_PTR(line);
        return 0;
}

int luks_mapping_info(const char *name, char **ret_source, LuksInfo *ret_info) {
        CRYPT_LOCKED;
        _cleanup_(crypt_freep) struct crypt_device *cd = NULL;
        _cleanup_free_ char *backing = NULL;
        LuksInfo info = {};
        const char *dev, *type;
        char *src;
        int r;

        r = crypt_init_by_name(&cd, name);
        if (r < 0)
                return r == -ENOENT ? -ENODEV : r;
        crypt_set_log_callback(cd, luks_log, NULL);

        type = crypt_get_type(cd);
        info.version = streq_ptr(type, CRYPT_LUKS1) ? 1 : streq_ptr(type, CRYPT_LUKS2) ? 2 : 0;
        snprintf(info.uuid, sizeof info.uuid, "%s", strempty(crypt_get_uuid(cd)));
        snprintf(info.cipher, sizeof info.cipher, "%s-%s",
                 strempty(crypt_get_cipher(cd)), strempty(crypt_get_cipher_mode(cd)));
        r = crypt_get_volume_key_size(cd);
        info.key_size_bits = r > 0 ? (unsigned) r * 8 : 0;

        dev = crypt_get_device_name(cd);
        if (!dev)
                return -ENODEV;
        if (loop_backing_file(dev, &backing) >= 0)
                src = TAKE_PTR(backing);
        else
                src = strdup(dev);
        if (!src)
                return -ENOMEM;

        *ret_source = src;
        if (ret_info)
                *ret_info = info;
        return 0;
}
