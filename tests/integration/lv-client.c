/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <gio/gunixfdlist.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

/* Attach spends the volume's key derivation inside QEMU; generous. */
#define CALL_TIMEOUT_MS (120 * 1000)

GVariant *lv_opts(const char *first_key, ...) {
        GVariantBuilder b;
        va_list ap;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
        va_start(ap, first_key);
        for (const char *k = first_key; k; k = va_arg(ap, const char *)) {
                GVariant *v = va_arg(ap, GVariant *);
                g_variant_builder_add(&b, "{sv}", k, v);
        }
        va_end(ap);
        return g_variant_builder_end(&b);
}

static GVariant *bytes_variant(const char *s) {
        return g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, s, s ? strlen(s) : 0, 1);
}

static char *attach_common(GDBusConnection *bus, GVariant *params, GUnixFDList *fds, GError **error) {
        g_autoptr(GVariant) reply = NULL;
        char *path = NULL;

        reply = g_dbus_connection_call_with_unix_fd_list_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params,
                                                              G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE,
                                                              CALL_TIMEOUT_MS, fds, NULL, NULL, error);
        if (!reply)
                return NULL;
        g_variant_get(reply, "(o)", &path);
        return path;
}

char *lv_attach(GDBusConnection *bus, const char *domain, const char *source, const char *passphrase, GVariant *options,
                GError **error) {
        GVariant *params = g_variant_new("(ss@ay@a{sv})", domain, source, bytes_variant(passphrase),
                                         options ? options : lv_opts(NULL));
        return attach_common(bus, params, NULL, error);
}

/* A pipe holding s (then EOF), its read end appended to fds: the handle. */
static GVariant *pipe_handle(GUnixFDList *fds, const char *s) {
        int p[2];

        g_assert_no_errno(pipe2(p, O_CLOEXEC));
        g_assert_cmpint(write(p[1], s, strlen(s)), ==, (gssize) strlen(s));
        close(p[1]);
        gint idx = g_unix_fd_list_append(fds, p[0], NULL);
        close(p[0]);
        g_assert_cmpint(idx, >=, 0);
        return g_variant_new_handle(idx);
}

/* Adds every entry of options (floating or not; NULL: none) to b. */
static void add_options(GVariantBuilder *b, GVariant *options) {
        GVariantIter it;
        const char *k;
        GVariant *v;

        if (!options)
                return;
        g_variant_ref_sink(options);
        g_variant_iter_init(&it, options);
        while (g_variant_iter_next(&it, "{&sv}", &k, &v)) {
                g_variant_builder_add(b, "{sv}", k, v);
                g_variant_unref(v);
        }
        g_variant_unref(options);
}

char *lv_attach_fd(GDBusConnection *bus, const char *domain, const char *source, const char *passphrase,
                   GVariant *options, GError **error) {
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&b, "{sv}", "passphrase-fd", pipe_handle(fds, passphrase));
        add_options(&b, options);
        GVariant *params = g_variant_new("(ss@ay@a{sv})", domain, source, bytes_variant(""), g_variant_builder_end(&b));
        return attach_common(bus, params, fds, error);
}

gint lv_keys_call(GDBusConnection *bus, const char *method, const char *source, const char *passphrase,
                  const char *new_passphrase, gboolean via_fd, GVariant *options, GError **error) {
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        g_autoptr(GVariant) reply = NULL;
        gboolean takes_new = g_str_equal(method, "ChangePassphrase") || g_str_equal(method, "AddPassphrase");
        GVariantBuilder args, opts;

        g_variant_builder_init(&opts, G_VARIANT_TYPE("a{sv}"));
        if (via_fd) {
                g_variant_builder_add(&opts, "{sv}", "passphrase-fd", pipe_handle(fds, passphrase));
                if (takes_new)
                        g_variant_builder_add(&opts, "{sv}", "new-passphrase-fd", pipe_handle(fds, new_passphrase));
        }
        add_options(&opts, options);

        g_variant_builder_init(&args, G_VARIANT_TYPE_TUPLE);
        g_variant_builder_add(&args, "s", source);
        g_variant_builder_add_value(&args, bytes_variant(via_fd ? "" : passphrase));
        if (takes_new)
                g_variant_builder_add_value(&args, bytes_variant(via_fd ? "" : new_passphrase));
        g_variant_builder_add_value(&args, g_variant_builder_end(&opts));

        reply = g_dbus_connection_call_with_unix_fd_list_sync(
                bus, LV_BUS_NAME, LV_PATH, LV_IFACE, method, g_variant_builder_end(&args), NULL, G_DBUS_CALL_FLAGS_NONE,
                CALL_TIMEOUT_MS, fds, NULL, NULL, error);
        if (!reply)
                return -1;
        if (g_variant_is_of_type(reply, G_VARIANT_TYPE("(u)"))) {
                guint32 slot;
                g_variant_get(reply, "(u)", &slot);
                return (gint) slot;
        }
        g_assert_true(g_variant_is_of_type(reply, G_VARIANT_TYPE_UNIT));
        return 0;
}

gint lv_verify_passphrase(GDBusConnection *bus, const char *source, const char *passphrase, GError **error) {
        return lv_keys_call(bus, "VerifyPassphrase", source, passphrase, NULL, FALSE, NULL, error);
}

gboolean lv_detach(GDBusConnection *bus, const char *path, GVariant *options, GError **error) {
        g_autoptr(GVariant) reply = NULL;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Detach",
                                            g_variant_new("(o@a{sv})", path, options ? options : lv_opts(NULL)),
                                            G_VARIANT_TYPE("()"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL, error);
        return reply != NULL;
}

gboolean lv_volume_detach(GDBusConnection *bus, const char *path, GVariant *options, GError **error) {
        g_autoptr(GVariant) reply = NULL;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, path, LV_VOLUME_IFACE, "Detach",
                                            g_variant_new("(@a{sv})", options ? options : lv_opts(NULL)),
                                            G_VARIANT_TYPE("()"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL, error);
        return reply != NULL;
}

gboolean lv_resize(GDBusConnection *bus, const char *path, guint64 size, GVariant *options, GError **error) {
        g_autoptr(GVariant) reply = NULL;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, path, LV_VOLUME_IFACE, "Resize",
                                            g_variant_new("(t@a{sv})", size, options ? options : lv_opts(NULL)),
                                            G_VARIANT_TYPE("()"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL, error);
        return reply != NULL;
}

guint64 lv_volume_prop_u64(GDBusConnection *bus, const char *path, const char *name) {
        g_autoptr(GVariant) p = lv_volume_props(bus, path);
        guint64 v = 0;

        g_assert_nonnull(p);
        if (!g_variant_lookup(p, name, "t", &v))
                g_error("volume %s has no property %s of type t", path, name);
        return v;
}

GVariant *lv_probe(GDBusConnection *bus, const char *source, GError **error) {
        g_autoptr(GVariant) reply = NULL;

        reply = g_dbus_connection_call_sync(
                bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Probe", g_variant_new("(s@a{sv})", source, lv_opts(NULL)),
                G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL, error);
        if (!reply)
                return NULL;
        return g_variant_get_child_value(reply, 0);
}

GVariant *lv_volume_props(GDBusConnection *bus, const char *path) {
        g_autoptr(GVariant) reply = NULL;
        g_autoptr(GError) error = NULL;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
                                            g_variant_new("(s)", LV_VOLUME_IFACE), G_VARIANT_TYPE("(a{sv})"),
                                            G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (!reply)
                return NULL;
        return g_variant_get_child_value(reply, 0);
}

char *lv_volume_prop_string(GDBusConnection *bus, const char *path, const char *name) {
        g_autoptr(GVariant) props = lv_volume_props(bus, path);
        const char *s = NULL;

        if (!props || !g_variant_lookup(props, name, "&s", &s))
                return NULL;
        return g_strdup(s);
}

gboolean lv_volume_wait_state(GDBusConnection *bus, const char *path, const char *state, guint timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        for (;;) {
                g_autofree char *s = lv_volume_prop_string(bus, path, "State");
                if (g_strcmp0(s, state) == 0)
                        return TRUE;
                if (g_get_monotonic_time() >= deadline) {
                        g_test_message("%s: state '%s', not '%s'", path, s, state);
                        return FALSE;
                }
                g_usleep(20 * 1000);
        }
}

gboolean lv_volume_rearm(GDBusConnection *bus, const char *path, const char *passphrase, GError **error) {
        g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
                bus, LV_BUS_NAME, path, LV_VOLUME_IFACE, "Rearm",
                g_variant_new("(@ay@a{sv})",
                              g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, passphrase, strlen(passphrase), 1),
                              lv_opts(NULL)),
                NULL, G_DBUS_CALL_FLAGS_NONE, 120000, NULL, error);
        return reply != NULL;
}

GStrv lv_managed_objects(GDBusConnection *bus) {
        g_autoptr(GVariant) reply = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) paths = g_ptr_array_new();
        GVariantIter *it;
        const char *path;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, LV_PATH, "org.freedesktop.DBus.ObjectManager",
                                            "GetManagedObjects", NULL, G_VARIANT_TYPE("(a{oa{sa{sv}}})"),
                                            G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        g_assert_no_error(error);
        g_variant_get(reply, "(a{oa{sa{sv}}})", &it);
        while (g_variant_iter_next(it, "{&o@a{sa{sv}}}", &path, NULL))
                g_ptr_array_add(paths, g_strdup(path));
        g_variant_iter_free(it);
        g_ptr_array_add(paths, NULL);
        return (GStrv) g_ptr_array_free(g_steal_pointer(&paths), FALSE);
}

char *lv_error_name(const GError *error) {
        if (!error)
                return NULL;
        char *n = g_dbus_error_get_remote_error(error);
        return n ? n : g_strdup("(not a remote error)");
}

guint32 lv_daemon_pid(GDBusConnection *bus) {
        g_autoptr(GVariant) reply = NULL;
        guint32 pid = 0;

        reply = g_dbus_connection_call_sync(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                            "org.freedesktop.DBus", "GetConnectionUnixProcessID",
                                            g_variant_new("(s)", LV_BUS_NAME), G_VARIANT_TYPE("(u)"),
                                            G_DBUS_CALL_FLAGS_NONE, 5000, NULL, NULL);
        if (reply)
                g_variant_get(reply, "(u)", &pid);
        return pid;
}

void lv_daemon_kill(GDBusConnection *bus, int sig) {
        guint32 pid = lv_daemon_pid(bus);

        g_assert_cmpuint(pid, !=, 0);
        g_assert_no_errno(kill((pid_t) pid, sig));
        for (int i = 0; i < 500; i++) {
                g_autofree char *owner = lv_bus_name_owner(bus, LV_BUS_NAME);
                if (!owner)
                        return;
                g_usleep(10 * 1000);
        }
        g_error("daemon (pid %u) still owns the name 5 s after signal %d", pid, sig);
}

/* ---- lower-level calls, for hostile-input and secret tests ----------------- */

GVariant *lv_call_manager(GDBusConnection *bus, const char *method, GVariant *params, GUnixFDList *fds,
                          GError **error) {
        return g_dbus_connection_call_with_unix_fd_list_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, method, params, NULL,
                                                             G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, fds, NULL, NULL,
                                                             error);
}

char *lv_attach_bytes(GDBusConnection *bus, const char *domain, const char *source, const void *passphrase, gsize len,
                      GVariant *options, GUnixFDList *fds, GError **error) {
        GVariant *pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, passphrase, len, 1);
        GVariant *params = g_variant_new("(ss@ay@a{sv})", domain, source, pass, options ? options : lv_opts(NULL));
        return attach_common(bus, params, fds, error);
}

GVariant *lv_probe_opts(GDBusConnection *bus, const char *source, GVariant *options, GError **error) {
        g_autoptr(GVariant) reply = NULL;

        reply = g_dbus_connection_call_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Probe",
                                            g_variant_new("(s@a{sv})", source, options ? options : lv_opts(NULL)),
                                            G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, CALL_TIMEOUT_MS, NULL,
                                            error);
        if (!reply)
                return NULL;
        return g_variant_get_child_value(reply, 0);
}

char *lv_random_passphrase(gsize len) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        char *s = g_malloc(len + 1);

        for (gsize i = 0; i < len; i++)
                s[i] = alphabet[g_random_int_range(0, sizeof alphabet - 1)];
        s[len] = '\0';
        return s;
}

void lv_assert_props_rebuilt(GVariant *before, GVariant *after) {
        GVariantIter it;
        const char *name;
        GVariant *value;

        g_assert_nonnull(after);
        g_assert_cmpuint(g_variant_n_children(after), ==, g_variant_n_children(before));
        g_variant_iter_init(&it, before);
        while (g_variant_iter_next(&it, "{&sv}", &name, &value)) {
                g_autoptr(GVariant) now = g_variant_lookup_value(after, name, NULL);
                g_assert_nonnull(now);
                if (g_str_equal(name, "AttachedByUID"))
                        g_assert_cmpuint(g_variant_get_uint32(now), ==, G_MAXUINT32);
                else if (g_str_equal(name, "AttachTimestamp"))
                        g_assert_cmpuint(g_variant_get_uint64(now), ==, 0);
                else if (!g_variant_equal(value, now)) {
                        g_autofree char *a = g_variant_print(value, TRUE), *b = g_variant_print(now, TRUE);
                        g_error("property %s was %s, is %s after the daemon's restart", name, a, b);
                }
                g_variant_unref(value);
        }
}
