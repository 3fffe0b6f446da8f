/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* polkit guards every method, with the real polkitd deciding: test users
 * come from the sandbox's passwd/group copies (lvuser 4201; lvadmin 4202
 * in group lvgroup), rules are dropped into polkitd's watched rules dir. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS                 "polkit test passphrase"
#define PATTERN              0x11
#define ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

static GDBusConnection *root_bus;
static virDomainPtr guest;

static guint count_objects(void) {
        g_auto(GStrv) objs = lv_managed_objects(root_bus);
        return g_strv_length(objs);
}

static void assert_unchanged(void) {
        g_assert_cmpuint(count_objects(), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_false(lv_domain_has_disk(guest, "sda"));
        g_assert_false(lv_domain_has_disk(guest, "vda"));
}

static GVariant *scsi(void) {
        return lv_opts("bus", g_variant_new_string("scsi"), NULL);
}

static void test_root_allowed(void) {
        g_autofree char *img = lv_make_luks1_image("root.img", PASS, PATTERN, 16);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(root_bus, "", &error);
        g_assert_no_error(error);
        g_autofree char *path = lv_attach(root_bus, "lvtest-guest", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(root_bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_unchanged();
}

/* The default policy (auth_admin for inactive sessions, and there is no
 * logind here: every session is inactive) refuses a plain user everywhere,
 * and nothing changes. */
static void test_plain_user_refused(void) {
        g_autofree char *img = lv_make_luks1_image("user.img", PASS, PATTERN, 16);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;

        g_assert_null(lv_attach(user, "lvtest-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        assert_unchanged();

        g_assert_null(lv_probe(user, "", &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_null(lv_probe(user, img, &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);

        /* Detach of a volume root attached: refused, volume untouched. */
        g_autofree char *path = lv_attach(root_bus, "lvtest-guest", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_false(lv_detach(user, path, NULL, &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_cmpuint(count_objects(), ==, 1);
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        g_autofree char *state = lv_volume_prop_string(root_bus, path, "State");
        g_assert_cmpstr(state, ==, "attached");
        g_assert_true(lv_detach(root_bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_unchanged();
}

/* With interaction allowed but no agent, the challenge becomes a no. */
static void test_interactive_flag(void) {
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                user, LV_BUS_NAME, LV_PATH, LV_IFACE, "Probe", g_variant_new("(s@a{sv})", "", lv_opts(NULL)),
                G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION, 60000, NULL, &error);
        g_assert_null(r);
        lv_assert_error(error, ACCESS_DENIED);
}

static void test_group_granted(void) {
        g_autofree char *img = lv_make_luks1_image("group.img", PASS, PATTERN, 16);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;

        lv_polkit_set_rules(
                "50-lvgroup.rules",
                "polkit.addRule(function(action, subject) {\n"
                "  if (action.id.indexOf('org.example.luksvolume1.') == 0 && subject.isInGroup('lvgroup'))\n"
                "    return polkit.Result.YES;\n"
                "});\n");

        g_autofree char *path = lv_attach(admin, "lvtest-guest", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(admin, "", &error);
        g_assert_no_error(error);
        /* Not in the group: still refused, even for a volume that exists. */
        g_assert_false(lv_detach(user, path, NULL, &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_true(lv_detach(admin, path, NULL, &error));
        g_assert_no_error(error);
        assert_unchanged();

        lv_polkit_set_rules("50-lvgroup.rules", NULL);
}

/* A rule on the details grants exactly one (domain, source) combination. */
static void test_details_rule(void) {
        g_autofree char *good = lv_make_luks1_image("allowed.img", PASS, PATTERN, 16);
        g_autofree char *other = lv_make_luks1_image("other.img", PASS, PATTERN, 16);
        virDomainPtr g2 = lv_start_guest("lvtest-other");
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        g_autofree char *rule = g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if ((action.id == 'org.example.luksvolume1.attach' || action.id == 'org.example.luksvolume1.detach') &&\n"
                "      subject.isInGroup('lvgroup') &&\n"
                "      action.lookup('domain') == 'lvtest-guest' &&\n"
                "      action.lookup('source') == '%s')\n"
                "    return polkit.Result.YES;\n"
                "});\n",
                good);
        lv_polkit_set_rules("60-details.rules", rule);

        g_assert_null(lv_attach(admin, "lvtest-other", good, PASS, scsi(), &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_null(lv_attach(admin, "lvtest-guest", other, PASS, scsi(), &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        assert_unchanged();

        g_autofree char *path = lv_attach(admin, "lvtest-guest", good, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(admin, path, NULL, &error));
        g_assert_no_error(error);
        assert_unchanged();

        lv_polkit_set_rules("60-details.rules", NULL);
        lv_destroy_guest(g2);
}

/* A rule answering AUTH_ADMIN_KEEP is a challenge: a caller that did not
 * allow interaction gets InteractiveAuthorizationRequired.  Shown against
 * a user the group rule otherwise lets through, so the rule is what
 * changes the answer. */
static void test_auth_admin_keep(void) {
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        lv_polkit_set_rules("50-lvgroup.rules", "polkit.addRule(function(action, subject) {\n"
                                                "  if (subject.isInGroup('lvgroup')) return polkit.Result.YES;\n"
                                                "});\n");
        g_autoptr(GVariant) ok G_GNUC_UNUSED = lv_probe(admin, "", &error);
        g_assert_no_error(error);

        /* Rules run in file-name order: 40- before 50-. */
        lv_polkit_set_rules(
                "40-keep.rules",
                "polkit.addRule(function(action, subject) {\n"
                "  if (action.id == 'org.example.luksvolume1.probe') return polkit.Result.AUTH_ADMIN_KEEP;\n"
                "});\n");
        g_assert_null(lv_probe(admin, "", &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);

        lv_polkit_set_rules("40-keep.rules", NULL);
        lv_polkit_set_rules("50-lvgroup.rules", NULL);
}

/* Last: takes polkitd away for good.  Root still works (bus-verified uid
 * 0), everyone else is refused with a message saying why. */
static void test_polkitd_gone(void) {
        g_autofree char *img = lv_make_luks1_image("gone.img", PASS, PATTERN, 16);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        /* Grant the group first, to show that the refusal below comes from
         * polkitd's absence and not from the policy. */
        lv_polkit_set_rules("50-lvgroup.rules", "polkit.addRule(function(action, subject) {\n"
                                                "  if (subject.isInGroup('lvgroup')) return polkit.Result.YES;\n"
                                                "});\n");
        g_autoptr(GVariant) ok G_GNUC_UNUSED = lv_probe(admin, "", &error);
        g_assert_no_error(error);

        g_autofree char *svc =
                g_build_filename(g_getenv("LV_BUS_SERVICES_DIR"), "org.freedesktop.PolicyKit1.service", NULL);
        g_assert_cmpint(g_unlink(svc), ==, 0);
        g_autoptr(GVariant) rr G_GNUC_UNUSED = g_dbus_connection_call_sync(
                root_bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "ReloadConfig", NULL,
                NULL, G_DBUS_CALL_FLAGS_NONE, 5000, NULL, &error);
        g_assert_no_error(error);
        guint32 pk = 0;
        g_autoptr(GVariant) pr = g_dbus_connection_call_sync(
                root_bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "GetConnectionUnixProcessID", g_variant_new("(s)", "org.freedesktop.PolicyKit1"), G_VARIANT_TYPE("(u)"),
                G_DBUS_CALL_FLAGS_NONE, 5000, NULL, &error);
        g_assert_no_error(error);
        g_variant_get(pr, "(u)", &pk);
        g_assert_no_errno(kill((pid_t) pk, SIGKILL));
        for (int i = 0; i < 500; i++) {
                g_autofree char *owner = lv_bus_name_owner(root_bus, "org.freedesktop.PolicyKit1");
                if (!owner)
                        break;
                g_usleep(10 * 1000);
        }

        g_assert_null(lv_probe(admin, "", &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_assert_nonnull(strstr(error->message, "polkit is unavailable"));
        g_clear_error(&error);
        g_assert_null(lv_attach(admin, "lvtest-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);
        assert_unchanged();

        g_autofree char *path = lv_attach(root_bus, "lvtest-guest", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(root_bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_unchanged();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        root_bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/polkit/root-allowed", test_root_allowed);
        g_test_add_func("/polkit/plain-user-refused", test_plain_user_refused);
        g_test_add_func("/polkit/interactive-flag", test_interactive_flag);
        g_test_add_func("/polkit/group-granted", test_group_granted);
        g_test_add_func("/polkit/details-rule", test_details_rule);
        g_test_add_func("/polkit/auth-admin-keep", test_auth_admin_keep);
        g_test_add_func("/polkit/polkitd-gone", test_polkitd_gone);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
