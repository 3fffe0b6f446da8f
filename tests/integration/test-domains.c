/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ListDomains: the running guests, as libvirt has them, for root and for a
 * delegated admin (a rule by group on the probe action with operation
 * list-domains); refused to a plain user and to a rule that allows host
 * facts only; unknown options refused; the listing follows guests that
 * start and stop. */

#include <gio/gio.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
#define INVALID_ARGS         "org.freedesktop.DBus.Error.InvalidArgs"

static GDBusConnection *root_bus;

/* ListDomains(options) → its a(sss), or NULL with *error set. */
static GVariant *list_domains(GDBusConnection *bus, GVariant *options, GError **error) {
        g_autoptr(GVariant) reply = lv_call_manager(
                bus, "ListDomains", g_variant_new("(@a{sv})", options ? options : lv_opts(NULL)), NULL, error);
        if (!reply)
                return NULL;
        g_assert_cmpstr(g_variant_get_type_string(reply), ==, "(a(sss))");
        return g_variant_get_child_value(reply, 0);
}

/* The entry for name, as "uuid state", or NULL. */
static char *entry(GVariant *list, const char *name) {
        GVariantIter it;
        const char *n, *u, *s;

        g_variant_iter_init(&it, list);
        while (g_variant_iter_next(&it, "(&s&s&s)", &n, &u, &s))
                if (strcmp(n, name) == 0)
                        return g_strdup_printf("%s %s", u, s);
        return NULL;
}

static char *uuid_of(virDomainPtr dom) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        return g_strdup(uuid);
}

/* Root sees every running guest with libvirt's UUID, state "running",
 * sorted by name; a guest that stops is no longer listed. */
static void test_root(void) {
        virDomainPtr b = lv_start_guest("lvtest-b");
        virDomainPtr a = lv_start_guest("lvtest-a");
        g_autofree char *ua = uuid_of(a), *ub = uuid_of(b);
        g_autofree char *want_a = g_strdup_printf("%s running", ua);
        g_autofree char *want_b = g_strdup_printf("%s running", ub);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) list = list_domains(root_bus, NULL, &error);

        g_assert_no_error(error);
        g_autofree char *ea = entry(list, "lvtest-a"), *eb = entry(list, "lvtest-b");
        g_assert_cmpstr(ea, ==, want_a);
        g_assert_cmpstr(eb, ==, want_b);
        /* Sorted by name: a before b, whatever the start order. */
        const char *first = NULL;
        g_variant_get_child(list, 0, "(&s&s&s)", &first, NULL, NULL);
        g_assert_cmpstr(first, ==, "lvtest-a");

        lv_destroy_guest(b);
        g_autoptr(GVariant) after = list_domains(root_bus, NULL, &error);
        g_assert_no_error(error);
        g_autofree char *gone = entry(after, "lvtest-b"), *still = entry(after, "lvtest-a");
        g_assert_null(gone);
        g_assert_cmpstr(still, ==, want_a);
        lv_destroy_guest(a);
}

/* Options: none defined; any key is refused. */
static void test_unknown_option(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) list = list_domains(root_bus, lv_opts("all", g_variant_new_boolean(TRUE), NULL), &error);

        g_assert_null(list);
        lv_assert_error(error, INVALID_ARGS);
}

/* The default policy refuses a plain user; the reply names no guest. */
static void test_plain_user_refused(void) {
        virDomainPtr a = lv_start_guest("lvtest-secret-name");
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) list = list_domains(user, NULL, &error);

        g_assert_null(list);
        g_assert_nonnull(error);
        g_autofree char *name = lv_error_name(error);
        g_assert_true(g_strcmp0(name, INTERACTIVE_REQUIRED) == 0 || g_strcmp0(name, ACCESS_DENIED) == 0);
        g_assert_null(strstr(error->message, "lvtest-secret-name"));
        lv_destroy_guest(a);
}

/* A delegated admin: a group rule on the probe action.  A rule that allows
 * host facts only (operation unset) still lets Probe("") through and
 * refuses the listing: the detail tells them apart. */
static void test_delegated_admin(void) {
        virDomainPtr a = lv_start_guest("lvtest-admin");
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        g_autoptr(GError) error = NULL;

        lv_polkit_set_rules("50-domains.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (action.id == 'org.example.luksvolume1.probe' && subject.isInGroup('lvgroup'))\n"
                            "    return polkit.Result.YES;\n"
                            "});\n");
        g_autoptr(GVariant) list = list_domains(admin, NULL, &error);
        g_assert_no_error(error);
        g_autofree char *e = entry(list, "lvtest-admin");
        g_assert_nonnull(e);
        g_assert_true(g_str_has_suffix(e, " running"));

        lv_polkit_set_rules("50-domains.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (action.id == 'org.example.luksvolume1.probe' && subject.isInGroup('lvgroup'))\n"
                            "    return action.lookup('operation') == 'list-domains' ? polkit.Result.NO\n"
                            "                                                      : polkit.Result.YES;\n"
                            "});\n");
        g_autoptr(GVariant) info = lv_probe(admin, "", &error);
        g_assert_no_error(error);
        g_assert_nonnull(info);
        g_autoptr(GVariant) refused = list_domains(admin, NULL, &error);
        g_assert_null(refused);
        lv_assert_error(error, ACCESS_DENIED);

        lv_polkit_set_rules("50-domains.rules", NULL);
        lv_destroy_guest(a);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        root_bus = lv_bus();

        g_test_add_func("/domains/root", test_root);
        g_test_add_func("/domains/unknown-option", test_unknown_option);
        g_test_add_func("/domains/plain-user-refused", test_plain_user_refused);
        g_test_add_func("/domains/delegated-admin", test_delegated_admin);

        return g_test_run();
}
