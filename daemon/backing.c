/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backing.h"
#include "errors.h"
#include "luks-shim.h"
#include "luks.h"
#include "util.h"
#include "volume-id.h"

void volume_backing_done(VolumeBacking *b) {
        free(b->domain_uuid);
        free(b->target);
        free(b->secret_uuid);
        free(b->mapper_device);
        *b = (VolumeBacking){};
}

static int dup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int volume_backing_set(VolumeBacking *b, const char *domain_uuid, const char *target, const char *secret_uuid,
                       const char *mapper_device) {
        VolumeBacking n = {};

        if (dup_or_null(domain_uuid, &n.domain_uuid) < 0 || dup_or_null(target, &n.target) < 0 ||
            dup_or_null(secret_uuid, &n.secret_uuid) < 0 || dup_or_null(mapper_device, &n.mapper_device) < 0) {
                volume_backing_done(&n);
                return -ENOMEM;
        }
        volume_backing_done(b);
        *b = n;
        return 0;
}

int volume_backing_release(Virt *virt, const VolumeBacking *b, sd_bus_error *error) {
        int r;

        if (b->secret_uuid) {
                _cleanup_free_ char *usage = NULL;

                r = secret_usage_build(b->domain_uuid, b->target, &usage);
                if (r < 0)
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot build the secret usage id: %s",
                                                 strerror(-r));
                r = virt_secret_undefine_ours(virt, b->secret_uuid, usage, error);
                if (r < 0)
                        return r;
        }

        if (b->mapper_device) {
                _cleanup_free_ char *expected = NULL;
                const char *name;

                bool shim = luks_shim_path_ours(b->mapper_device);

                r = shim ? luks_shim_name(b->domain_uuid, b->target, &expected)
                         : luks_mapping_name(b->domain_uuid, b->target, &expected);
                if (r < 0)
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot name the mapping: %s", strerror(-r));
                name = startswith(b->mapper_device, "/dev/mapper/") ? b->mapper_device + strlen("/dev/mapper/") : NULL;
                /* Never close a mapping that is not exactly ours for this
                 * disk, whatever a record or an XML says. */
                if (!name || !streq(name, expected)) {
                        log_warning("Not closing '%s': this service's mapping for that disk is '%s'.", b->mapper_device,
                                    expected);
                        return 0;
                }
                r = shim ? luks_shim_remove(name, error) : luks_deactivate(name, error);
                if (r < 0)
                        return r;
        }
        return 0;
}
