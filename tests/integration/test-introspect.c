/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shipped introspection XML (dbus/org.example.LuksVolume1.xml, installed
 * to the D-Bus interfaces directory) says exactly what the running service
 * says: same interfaces, methods, arguments (names, types, directions),
 * properties (types, access) and signals.  argv[1]: the shipped file. */

#include <gio/gio.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

static const char *shipped_path;
static GDBusConnection *bus;

static GDBusNodeInfo *introspect(const char *path) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply =
                g_dbus_connection_call_sync(bus, LV_BUS_NAME, path, "org.freedesktop.DBus.Introspectable", "Introspect",
                                            NULL, G_VARIANT_TYPE("(s)"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        g_assert_no_error(error);
        const char *xml;
        g_variant_get(reply, "(&s)", &xml);
        GDBusNodeInfo *n = g_dbus_node_info_new_for_xml(xml, &error);
        g_assert_no_error(error);
        return n;
}

static char *describe_args(GDBusArgInfo **args) {
        GString *s = g_string_new(NULL);
        for (GDBusArgInfo **a = args; a && *a; a++)
                g_string_append_printf(s, "%s:%s ", (*a)->name, (*a)->signature);
        return g_string_free(s, FALSE);
}

static gint compare_lines(gconstpointer a, gconstpointer b) {
        return g_strcmp0(*(char *const *) a, *(char *const *) b);
}

/* One line per member, sorted, for a readable diff on failure. */
static char *describe_interface(const GDBusInterfaceInfo *i) {
        g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
        for (GDBusMethodInfo **m = i->methods; m && *m; m++) {
                g_autofree char *in = describe_args((*m)->in_args), *out = describe_args((*m)->out_args);
                g_ptr_array_add(lines, g_strdup_printf("method %s in(%s) out(%s)", (*m)->name, in, out));
        }
        for (GDBusSignalInfo **sg = i->signals; sg && *sg; sg++) {
                g_autofree char *args = describe_args((*sg)->args);
                g_ptr_array_add(lines, g_strdup_printf("signal %s (%s)", (*sg)->name, args));
        }
        for (GDBusPropertyInfo **p = i->properties; p && *p; p++)
                g_ptr_array_add(lines, g_strdup_printf("property %s %s %s%s", (*p)->name, (*p)->signature,
                                                       (*p)->flags & G_DBUS_PROPERTY_INFO_FLAGS_READABLE ? "r" : "",
                                                       (*p)->flags & G_DBUS_PROPERTY_INFO_FLAGS_WRITABLE ? "w" : ""));
        g_ptr_array_sort(lines, compare_lines);
        g_ptr_array_add(lines, NULL);
        return g_strjoinv("\n", (char **) lines->pdata);
}

static void compare(GDBusNodeInfo *shipped, GDBusNodeInfo *running, const char *iface) {
        GDBusInterfaceInfo *a = g_dbus_node_info_lookup_interface(shipped, iface);
        GDBusInterfaceInfo *b = g_dbus_node_info_lookup_interface(running, iface);
        g_assert_nonnull(a);
        g_assert_nonnull(b);
        g_autofree char *da = describe_interface(a), *db = describe_interface(b);
        if (!g_str_equal(da, db))
                g_error("interface %s differs.\n--- shipped:\n%s\n--- running:\n%s", iface, da, db);
}

static void test_equal(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(shipped_path, &text, NULL, &error));
        g_autoptr(GDBusNodeInfo) shipped = g_dbus_node_info_new_for_xml(text, &error);
        g_assert_no_error(error);

        /* Every interface the file declares is one of ours. */
        for (GDBusInterfaceInfo **i = shipped->interfaces; i && *i; i++)
                g_assert_true(g_str_has_prefix((*i)->name, "org.example.LuksVolume1"));

        g_autoptr(GDBusNodeInfo) manager = introspect(LV_PATH);
        compare(shipped, manager, LV_IFACE);
        g_assert_nonnull(g_dbus_node_info_lookup_interface(manager, "org.freedesktop.DBus.ObjectManager"));

        /* A volume object exists only while a volume is attached. */
        virDomainPtr g = lv_start_guest("introspect");
        g_autofree char *img = lv_make_luks1_image("introspect.img", "pass", 0x11, 16);
        g_autofree char *path =
                lv_attach(bus, "introspect", img, "pass", lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autoptr(GDBusNodeInfo) volume = introspect(path);
        compare(shipped, volume, LV_VOLUME_IFACE);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);

        /* And nothing the daemon serves is missing from the file. */
        for (GDBusInterfaceInfo **i = manager->interfaces; i && *i; i++)
                if (g_str_has_prefix((*i)->name, "org.example."))
                        g_assert_nonnull(g_dbus_node_info_lookup_interface(shipped, (*i)->name));
        for (GDBusInterfaceInfo **i = volume->interfaces; i && *i; i++)
                if (g_str_has_prefix((*i)->name, "org.example."))
                        g_assert_nonnull(g_dbus_node_info_lookup_interface(shipped, (*i)->name));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        g_assert_cmpint(argc, >=, 2);
        shipped_path = argv[1];
        bus = lv_bus();
        g_test_add_func("/introspect/shipped-equals-running", test_equal);
        return g_test_run();
}
