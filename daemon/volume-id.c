/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "util.h"
#include "volume-id.h"

bool bus_valid(const char *bus) {
        return bus_target_prefix(bus) != NULL;
}

const char *bus_target_prefix(const char *bus) {
        if (!bus)
                return NULL;
        if (streq(bus, "virtio"))
                return "vd";
        if (streq(bus, "scsi") || streq(bus, "sata") || streq(bus, "usb"))
                return "sd";
        return NULL;
}

static bool target_suffix_valid(const char *s) {
        size_t n = strlen(s);

        if (n < 1 || n > 3)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 'a' || s[i] > 'z')
                        return false;
        return true;
}

const char *bus_from_target(const char *target) {
        if (!target)
                return NULL;
        if (startswith(target, "vd") && target_suffix_valid(target + 2))
                return "virtio";
        if (startswith(target, "sd") && target_suffix_valid(target + 2))
                return "scsi";
        return NULL;
}

bool target_valid_for_bus(const char *target, const char *bus) {
        const char *prefix = bus_target_prefix(bus);

        if (!prefix || !target || !startswith(target, prefix))
                return false;
        return target_suffix_valid(target + strlen(prefix));
}

static bool name_used(const char *name, char *const *used, size_t n_used) {
        for (size_t i = 0; i < n_used; i++)
                if (streq_ptr(used[i], name))
                        return true;
        return false;
}

int target_pick_free(const char *bus, char *const *used, size_t n_used, char **ret) {
        const char *prefix = bus_target_prefix(bus);
        char name[8];

        if (!prefix)
                return -EINVAL;

        /* libvirt's own order: a..z, then aa..zz. */
        for (unsigned i = 0; i < 26 + 26 * 26; i++) {
                if (i < 26)
                        snprintf(name, sizeof name, "%s%c", prefix, 'a' + i);
                else
                        snprintf(name, sizeof name, "%s%c%c", prefix, 'a' + (i - 26) / 26, 'a' + (i - 26) % 26);
                if (!name_used(name, used, n_used)) {
                        char *s = strdup(name);
                        if (!s)
                                return -ENOMEM;
                        *ret = s;
                        return 0;
                }
        }
        return -ENOSPC;
}

static bool is_lower_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool uuid_valid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!is_lower_hex(s[i]))
                        return false;
        }
        return true;
}

/* The domain's target, whatever bus it is on: "vd" or "sd" + letters. */
static bool target_valid_any(const char *target) {
        return bus_from_target(target) != NULL;
}

int volume_id_build(const char *domain_uuid, const char *target, char **ret) {
        char hex[33];
        size_t k = 0;
        char *s;

        if (!uuid_valid(domain_uuid) || !target_valid_any(target))
                return -EINVAL;

        for (const char *p = domain_uuid; *p; p++)
                if (*p != '-')
                        hex[k++] = *p;
        hex[k] = '\0';

        if (asprintf(&s, "%s_%s", hex, target) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int volume_id_parse(const char *id, char **ret_domain_uuid, char **ret_target) {
        char uuid[37];
        char *u, *t;

        if (!id || strlen(id) < 34 || id[32] != '_')
                return -EINVAL;
        for (size_t i = 0; i < 32; i++)
                if (!is_lower_hex(id[i]))
                        return -EINVAL;
        if (!target_valid_any(id + 33))
                return -EINVAL;

        snprintf(uuid, sizeof uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", id, id + 8, id + 12, id + 16, id + 20);

        u = strdup(uuid);
        t = strdup(id + 33);
        if (!u || !t) {
                free(u);
                free(t);
                return -ENOMEM;
        }
        *ret_domain_uuid = u;
        *ret_target = t;
        return 0;
}

int volume_id_build_prefixed(const char *prefix, const char *domain_uuid, const char *target, char **ret) {
        _cleanup_free_ char *id = NULL;
        char *s;
        int r;

        r = volume_id_build(domain_uuid, target, &id);
        if (r < 0)
                return r;
        if (asprintf(&s, "%s%s", prefix, id) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int volume_path_build(const char *domain_uuid, const char *target, char **ret) {
        return volume_id_build_prefixed(LV_VOLUME_PATH_PREFIX "/", domain_uuid, target, ret);
}

int volume_path_parse(const char *path, char **ret_domain_uuid, char **ret_target) {
        if (!path || !startswith(path, LV_VOLUME_PATH_PREFIX "/"))
                return -EINVAL;
        return volume_id_parse(path + strlen(LV_VOLUME_PATH_PREFIX "/"), ret_domain_uuid, ret_target);
}

int secret_usage_build(const char *domain_uuid, const char *target, char **ret) {
        char *s;

        if (!uuid_valid(domain_uuid) || !target_valid_any(target))
                return -EINVAL;
        if (asprintf(&s, LV_SECRET_USAGE_PREFIX "%s:%s", domain_uuid, target) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int secret_usage_parse(const char *usage, char **ret_domain_uuid, char **ret_target) {
        const char *p;
        char *u, *t;

        if (!usage || !startswith(usage, LV_SECRET_USAGE_PREFIX))
                return -EINVAL;
        p = usage + strlen(LV_SECRET_USAGE_PREFIX);
        if (strlen(p) < 38 || p[36] != ':')
                return -EINVAL;

        u = strndup(p, 36);
        if (!u)
                return -ENOMEM;
        if (!uuid_valid(u) || !target_valid_any(p + 37)) {
                free(u);
                return -EINVAL;
        }
        t = strdup(p + 37);
        if (!t) {
                free(u);
                return -ENOMEM;
        }
        *ret_domain_uuid = u;
        *ret_target = t;
        return 0;
}

int disk_alias_build(const char *domain_uuid, const char *target, char **ret) {
        return volume_id_build_prefixed(LV_DISK_ALIAS_PREFIX, domain_uuid, target, ret);
}
