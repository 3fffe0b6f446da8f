/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <signal.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "luksvolumectl.h"
#include "monitor.h"
#include "output.h"
#include "volume-lookup.h"

/* Ends the event loop with a failure (output gone, out of memory), from a
 * match callback. */
static int monitor_abort(sd_bus_message *m, int r, const char *what) {
        log_error_errno(r, PROGRAM ": %s: %m", what);
        return sd_event_exit(sd_bus_get_event(sd_bus_message_get_bus(m)), EXIT_FAIL);
}

/* Prints one event: a text line, or a JSON object of the form
 * {"event": EVENT, "volume": PATH[, "properties": {…}][, "invalidated": […]]}.
 * Flushes, so that a pipe reader sees each event as it happens. */
static int monitor_print(sd_bus_message *m, const char *event, const char *path, const PropList *props,
                         char **invalidated, const char *text) {
        int r;

        if (arg_json != JSON_OFF) {
                _cleanup_(json_object_putp) struct json_object *obj = NULL;

                obj = json_object_new_object();
                if (!obj)
                        return monitor_abort(m, -ENOMEM, "Failed to format JSON");
                r = json_add_string(obj, "event", event);
                if (r >= 0)
                        r = json_add_string(obj, "volume", path);
                if (r >= 0 && props) {
                        struct json_object *p = NULL;

                        r = json_new_props(props, &p);
                        if (r >= 0)
                                r = json_add(obj, "properties", p);
                }
                if (r >= 0 && invalidated && invalidated[0]) {
                        struct json_object *a = json_object_new_array();

                        r = a ? json_add(obj, "invalidated", a) : -ENOMEM;
                        for (char **i = invalidated; r >= 0 && *i; i++) {
                                struct json_object *s = json_object_new_string(*i);

                                if (!s || json_object_array_add(a, s) < 0) {
                                        json_object_put(s);
                                        r = -ENOMEM;
                                }
                        }
                }
                if (r >= 0)
                        r = print_json(obj);
                if (r < 0)
                        return monitor_abort(m, r, "Failed to format JSON");
        } else
                printf("%s %s%s%s\n", event, path, isempty(text) ? "" : " ", strempty(text));

        if (fflush(stdout) != 0 || ferror(stdout))
                return monitor_abort(m, errno ? errno : EIO, "Failed to write output");
        return 0;
}

/* "Name=value" pairs, space separated, into a new string: every property
 * of props in its order, or with keys only those, in that order and with
 * lowercased names (the summary line of "added"). */
static int format_pairs(const PropList *props, const char *const *keys, char **invalidated, char **ret) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *out = NULL;
        size_t size;
        bool first = true;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; keys ? keys[i] != NULL : i < props->n; i++) {
                const char *name = keys ? keys[i] : props->items[i].name;
                const char *value = keys ? prop_list_get(props, name) : props->items[i].value;

                if (!value)
                        continue;
                if (!first)
                        fputc(' ', out);
                first = false;
                if (keys)
                        for (const char *c = name; *c; c++)
                                fputc(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c, out);
                else
                        fputs(name, out);
                fputc('=', out);
                if (isempty(value))
                        fputc('-', out);
                /* One line per event, whatever the value holds. */
                for (const char *c = value; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                fprintf(out, "\\x%02x", (unsigned) (unsigned char) *c);
                        else
                                fputc(*c, out);
        }
        /* Changed without a value: "Name=?" (the v1 daemon always sends values). */
        for (char **i = invalidated; i && *i; i++) {
                fprintf(out, "%s%s=?", first ? "" : " ", *i);
                first = false;
        }

        if (fflush(out) != 0 || ferror(out))
                return -ENOMEM;
        fclose(TAKE_PTR(out));
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Prints an "added" or "changed" event of the volume at path: props in
 * contract order, in the text line as Name=value pairs (only keys, if
 * given). */
static int monitor_print_props(sd_bus_message *m, const char *event, const char *path, PropList *props,
                               const char *const *keys, char **invalidated) {
        _cleanup_free_ char *text = NULL;
        int r;

        prop_list_sort(props, volume_order);
        r = format_pairs(props, keys, invalidated, &text);
        if (r < 0)
                return monitor_abort(m, r, "Failed to format event");
        return monitor_print(m, event, path, props, invalidated, text);
}

/* InterfacesAdded(o object, a{sa{sv}} interfaces) */
static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        static const char *const summary[] = { "Domain", "Target", "Mode", "Source", NULL };
        _cleanup_(prop_list_done) PropList props = {};
        bool is_volume;
        const char *path;
        int r;

        r = read_object_with_interfaces(m, &path, &props, &is_volume);
        if (r < 0)
                goto bad;
        if (!is_volume)
                return 0;

        return monitor_print_props(m, "added", path, &props, summary, NULL);

bad:
        /* One garbled signal is no reason to stop watching. */
        log_error_errno(r, PROGRAM ": Failed to parse InterfacesAdded signal: %m");
        return 0;
}

/* InterfacesRemoved(o object, as interfaces) */
static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_strv_free_ char **ifaces = NULL;
        const char *path;
        bool is_volume = false;
        int r;

        r = sd_bus_message_read_basic(m, 'o', &path);
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &ifaces);
        if (r < 0) {
                log_error_errno(r, PROGRAM ": Failed to parse InterfacesRemoved signal: %m");
                return 0;
        }
        /* luksvolumed 0.1.0 emits this after it has already forgotten the
         * object, so the list lacks VOLUME_IFACE and names only the standard
         * interfaces: also go by the documented volume path namespace. The
         * whole object is gone either way. */
        is_volume = startswith(path, VOLUME_PATH_PREFIX);
        for (char **i = ifaces; !is_volume && i && *i; i++)
                if (streq(*i, VOLUME_IFACE))
                        is_volume = true;
        if (!is_volume)
                return 0;

        return monitor_print(m, "removed", path, NULL, NULL, NULL);
}

/* PropertiesChanged(s interface, a{sv} changed, as invalidated) */
static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(prop_list_done) PropList props = {};
        _cleanup_strv_free_ char **invalidated = NULL;
        const char *iface, *path = sd_bus_message_get_path(m);
        int r;

        r = sd_bus_message_read_basic(m, 's', &iface);
        if (r >= 0 && !streq(iface, VOLUME_IFACE))
                return 0;
        if (r >= 0)
                r = read_prop_list(m, &props);
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &invalidated);
        if (r < 0 || !path) {
                log_error_errno(r < 0 ? r : EBADMSG, PROGRAM ": Failed to parse PropertiesChanged signal: %m");
                return 0;
        }

        return monitor_print_props(m, "changed", path, &props, NULL, invalidated);
}

int verb_monitor(int argc, _unused_ char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r, status;

        if (argc != 1)
                return fail(EXIT_USAGE, "monitor takes no arguments.");

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        r = sd_event_default(&event);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to allocate event loop: %m");

        /* SIGINT/SIGTERM end the loop (a NULL handler exits it with 0); they
         * must be blocked for signalfd to see them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return fail_errno(EXIT_FAIL, errno, "Failed to block signals: %m");
        r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to watch signals: %m");

        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to attach bus to event loop: %m");
        /* A lost connection ends the loop with EXIT_FAILURE, see below. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to set up bus: %m");

        /* Synchronous AddMatch calls: once they return, no event is missed.
         * The sender is the well-known name, so the matches survive the
         * daemon exiting when idle and being activated again. */
        r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE, "InterfacesAdded",
                                on_interfaces_added, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE,
                                        "InterfacesRemoved", on_interfaces_removed, NULL);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL,
                                     "type='signal',"
                                     "sender='" SERVICE_NAME "',"
                                     "interface='" PROPERTIES_IFACE "',"
                                     "member='PropertiesChanged',"
                                     "path_namespace='" MANAGER_PATH "',"
                                     "arg0='" VOLUME_IFACE "'",
                                     on_properties_changed, NULL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to subscribe to volume signals: %m");

        r = sd_event_loop(event);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Event loop failed: %m");
        if (r != EXIT_OK) {
                /* Either a callback already said why, or the bus went away. */
                if (sd_bus_is_open(bus) <= 0)
                        return fail(EXIT_FAIL, "Lost the connection to the system bus.");
                return EXIT_FAIL;
        }
        return EXIT_OK;
}
