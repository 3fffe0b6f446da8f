/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libcryptsetup.h>
#include <stdio.h>
#include <sys/utsname.h>

#include "errors.h"
#include "luks.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free);

/* libcryptsetup logs through a callback; by default it prints errors to
 * stderr. Route them to our debug log: the caller reports the outcome once,
 * with context, as a typed error. */
static void luks_log(int level, const char *msg, void *usrptr) {
        if (level == CRYPT_LOG_ERROR || level == CRYPT_LOG_NORMAL || level == CRYPT_LOG_VERBOSE)
                log_debug("libcryptsetup: %.*s", (int) strcspn(msg, "\n"), msg);
}

int luks_probe(const char *path, LuksInfo *ret, sd_bus_error *error) {
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
                if (r == -EINVAL || r == -ENOENT || r == -EBADMSG)
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
