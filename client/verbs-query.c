/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <systemd/sd-bus.h>

#include "bus.h"
#include "luksvolumectl.h"
#include "output.h"
#include "verbs-query.h"
#include "volume-lookup.h"

static const char *const probe_order[] = {
        /* host facts */
        "version",
        "libvirt-version",
        "hypervisor",
        "hypervisor-version",
        "native-luks",
        "dm-crypt",
        /* source facts */
        "luks-version",
        "uuid",
        "cipher",
        "key-size",
        "active-keyslots",
        "native-capable",
        "attached",
        NULL,
};

int verb_probe(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(prop_list_done) PropList info = {};
        _cleanup_free_ char *source = NULL;
        int r, status;

        if (argc > 2)
                return fail(EXIT_USAGE, "probe expects at most one SOURCE.");
        if (argc == 2) {
                status = source_from_arg(argv[1], &source);
                if (status != EXIT_OK)
                        return status;
        }

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "Probe", &error, &reply, "sa{sv}",
                               strempty(source), 0);
        if (r < 0)
                return fail_bus(source ? "Failed to probe source" : "Failed to probe host", &error, r);

        r = read_prop_list(reply, &info);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse Probe reply: %m");

        prop_list_sort(&info, probe_order);

        r = print_props(&info);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
        return EXIT_OK;
}

static int volume_cmp(const void *a, const void *b) {
        const Volume *x = a, *y = b;
        int c;

        c = strcmp(strempty(volume_get(x, "Domain")), strempty(volume_get(y, "Domain")));
        if (c == 0)
                c = strcmp(strempty(volume_get(x, "Target")), strempty(volume_get(y, "Target")));
        if (c == 0)
                c = strcmp(x->path, y->path);
        return c;
}

int verb_list(int argc, _unused_ char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(volume_list_done) VolumeList volumes = {};
        int r, status;

        if (argc != 1)
                return fail(EXIT_USAGE, "list takes no arguments.");

        status = open_volumes(arg_domain, &bus, &volumes);
        if (status != EXIT_OK)
                return status;

        /* qsort() must not see the NULL items of an empty list. */
        if (volumes.n > 1)
                qsort(volumes.items, volumes.n, sizeof(Volume), volume_cmp);

        r = print_volume_list(&volumes);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
        return EXIT_OK;
}

int verb_status(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(prop_list_done) PropList props = {};
        _cleanup_free_ char *path = NULL;
        int r, status;

        status = open_volume(argc, argv, "status", &bus, &path);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call_method(bus, SERVICE_NAME, path, PROPERTIES_IFACE, "GetAll", &error, &reply, "s", VOLUME_IFACE);
        if (r < 0)
                return fail_bus("Failed to get volume properties", &error, r);

        r = read_prop_list(reply, &props);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse volume properties: %m");

        prop_list_sort(&props, volume_order);

        r = print_volume(path, &props);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
        return EXIT_OK;
}

/* The running guests, as the service lists them (ListDomains): for users
 * without libvirt access of their own.  Text: one "NAME UUID STATE" line
 * each; JSON: an array of {name, uuid, state}. */
int verb_list_domains(int argc, _unused_ char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct json_object *array = NULL;
        const char *name, *uuid, *state;
        int r, status;

        if (argc != 1)
                return fail(EXIT_USAGE, "list-domains takes no arguments.");

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "ListDomains", &error, &reply, "a{sv}",
                               0);
        if (r < 0)
                return fail_bus("Failed to list domains", &error, r);

        r = sd_bus_message_enter_container(reply, 'a', "(sss)");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse ListDomains reply: %m");
        if (arg_json != JSON_OFF) {
                array = json_object_new_array();
                if (!array)
                        return fail_errno(EXIT_FAIL, -ENOMEM, "Failed to format JSON: %m");
        }
        while ((r = sd_bus_message_read(reply, "(sss)", &name, &uuid, &state)) > 0) {
                struct json_object *o;

                if (!array) {
                        printf("%s\t%s\t%s\n", name, uuid, state);
                        continue;
                }
                o = json_object_new_object();
                if (!o || json_add_string(o, "name", name) < 0 || json_add_string(o, "uuid", uuid) < 0 ||
                    json_add_string(o, "state", state) < 0 || json_object_array_add(array, o) < 0) {
                        json_object_put(o);
                        json_object_put(array);
                        return fail_errno(EXIT_FAIL, -ENOMEM, "Failed to format JSON: %m");
                }
        }
        if (r < 0) {
                json_object_put(array);
                return fail_errno(EXIT_FAIL, r, "Failed to parse ListDomains reply: %m");
        }
        if (array) {
                r = print_json(array);
                json_object_put(array);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
        }
        return EXIT_OK;
}
