/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The D-Bus face of attached volumes: one object per volume below
 * LV_VOLUME_PATH_PREFIX, served by a fallback vtable and an enumerator
 * over the registry (as machined does for machines), so objects exist
 * exactly as long as the registry holds them. */

#include "manager.h"
#include "operations.h"
#include "util.h"
#include "volume-id.h"

static int volume_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error) {
        Manager *m = userdata;
        Volume *v = manager_find_volume_by_path(m, path);

        if (!v)
                return 0;
        *found = v;
        return 1;
}

static int volume_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l;
        size_t k = 0;

        l = calloc(m->n_volumes + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (Volume *v = m->volumes; v; v = v->next) {
                l[k] = strdup(v->path);
                if (!l[k]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                k++;
        }
        *nodes = l;
        return 1;
}

static int property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        /* userdata points at a char* field of the Volume (offset vtable). */
        char **s = userdata;
        return sd_bus_message_append_basic(reply, 's', strempty(*s));
}

static int property_get_mode(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        VolumeMode *mode = userdata;
        return sd_bus_message_append_basic(reply, 's', volume_mode_to_string(*mode));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        VolumeState *state = userdata;
        return sd_bus_message_append_basic(reply, 's', volume_state_to_string(*state));
}

/* "volume" or "shim" in native mode, "" in cryptsetup mode (since 0.3). */
static int property_get_native_header(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const Volume *v = (const Volume *) ((const uint8_t *) userdata - offsetof(Volume, native_header));
        const char *s = "";

        if (v->mode == VOLUME_MODE_NATIVE)
                s = native_header_to_string(v->native_header == NATIVE_HEADER_SHIM ? NATIVE_HEADER_SHIM
                                                                                   : NATIVE_HEADER_VOLUME);
        return sd_bus_message_append_basic(reply, 's', s);
}

static int property_get_bool(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        bool *b = userdata;
        int v = *b;
        return sd_bus_message_append_basic(reply, 'b', &v);
}

static const sd_bus_vtable volume_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Domain", "s", property_get_string, offsetof(Volume, domain), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DomainUUID", "s", property_get_string, offsetof(Volume, domain_uuid),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Source", "s", property_get_string, offsetof(Volume, source), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_string, offsetof(Volume, target), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Bus", "s", property_get_string, offsetof(Volume, bus), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Mode", "s", property_get_mode, offsetof(Volume, mode), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("SecretUUID", "s", property_get_string, offsetof(Volume, secret_uuid),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MapperDevice", "s", property_get_string, offsetof(Volume, mapper_device),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("NativeHeader", "s", property_get_native_header, offsetof(Volume, native_header),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ShimDevice", "s", property_get_string, offsetof(Volume, shim_device),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("LuksVersion", "u", NULL, offsetof(Volume, luks_version), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("LuksUUID", "s", property_get_string, offsetof(Volume, luks_uuid),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ReadOnly", "b", property_get_bool, offsetof(Volume, read_only), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, offsetof(Volume, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Size", "t", NULL, offsetof(Volume, size), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PayloadOffset", "t", NULL, offsetof(Volume, payload_offset), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Serial", "s", property_get_string, offsetof(Volume, serial), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("AttachedByUID", "u", NULL, offsetof(Volume, attached_by_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("AttachTimestamp", "t", NULL, offsetof(Volume, attach_usec), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Detach", SD_BUS_ARGS("a{sv}", options), SD_BUS_NO_RESULT, method_volume_detach,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Resize", SD_BUS_ARGS("t", size, "a{sv}", options), SD_BUS_NO_RESULT, method_resize,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Rearm", SD_BUS_ARGS("ay", passphrase, "a{sv}", options), SD_BUS_NO_RESULT,
                                method_rearm, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_VTABLE_END
};

int volume_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_fallback_vtable(m->bus, NULL, LV_VOLUME_PATH_PREFIX, LV_VOLUME_INTERFACE, volume_vtable,
                                       volume_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the volume vtable: %m");

        r = sd_bus_add_node_enumerator(m->bus, NULL, LV_VOLUME_PATH_PREFIX, volume_enumerate, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the volume enumerator: %m");

        return 0;
}

int volume_bus_emit_added(Volume *v) {
        if (!v->manager || !v->manager->bus)
                return 0;
        return sd_bus_emit_object_added(v->manager->bus, v->path);
}

int volume_bus_emit_removed(Volume *v) {
        if (!v->manager || !v->manager->bus)
                return 0;
        return sd_bus_emit_object_removed(v->manager->bus, v->path);
}

int volume_bus_emit_migrated(Volume *v, const char *direction) {
        if (!v->manager || !v->manager->bus)
                return 0;
        return sd_bus_emit_signal(v->manager->bus, LV_OBJECT_PATH, LV_MANAGER_INTERFACE, "VolumeMigrated", "osss",
                                  v->path, v->domain, v->target, direction);
}

static int emit_changed(Volume *v, const char *property) {
        if (!v->manager || !v->manager->bus)
                return 0;
        return sd_bus_emit_properties_changed(v->manager->bus, v->path, LV_VOLUME_INTERFACE, property, NULL);
}

int volume_bus_emit_state(Volume *v) {
        return emit_changed(v, "State");
}

int volume_bus_emit_size(Volume *v) {
        return emit_changed(v, "Size");
}
