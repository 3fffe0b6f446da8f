/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves the integration harness itself (tests/sandbox/sandbox.sh plus
 * fixture.c): libvirtd, native LUKS attach through the libvirt API, the
 * pattern check (including that it can say no), detach, polkitd, test users
 * on the bus, scratch images and loop devices, bus activation.  If this test
 * fails, failures of the other integration tests say nothing about the
 * daemon. */

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "fixture.h"

#define PASS "smoke-test passphrase"

static void test_environment(void) {
        lv_require_sandbox();
        struct stat st;
        g_assert_no_errno(stat(lv_sandbox_dir(), &st));
        /* QEMU (user libvirt-qemu) must be able to reach images in here. */
        g_assert_cmphex(st.st_mode & 07777, ==, 0755);
        g_assert_cmpuint(geteuid(), ==, 0);
}

static void test_libvirt(void) {
        unsigned long lib = 0, hv = 0;
        g_assert_cmpint(virConnectGetLibVersion(lv_virt(), &lib), ==, 0);
        g_assert_cmpint(virConnectGetVersion(lv_virt(), &hv), ==, 0);
        g_test_message("libvirt %lu, QEMU %lu", lib, hv);

        gint64 t = g_get_monotonic_time();
        virDomainPtr dom = lv_start_guest("smoke-start");
        g_test_message("guest started in %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        g_assert_cmpint(virDomainIsActive(dom), ==, 1);
        /* The controller the attach tests depend on is there. */
        g_autofree char *xml = lv_domain_xml(dom);
        g_assert_nonnull(strstr(xml, "virtio-scsi"));
        lv_destroy_guest(dom);
}

/* Define an ephemeral, private secret holding passphrase; returns its UUID. */
static virSecretPtr define_secret(const char *usage_id, const char *passphrase, char uuid[VIR_UUID_STRING_BUFLEN]) {
        g_autofree char *xml = g_strdup_printf("<secret ephemeral='yes' private='yes'>"
                                               "<usage type='volume'><volume>%s</volume></usage>"
                                               "</secret>",
                                               usage_id);
        virSecretPtr s = virSecretDefineXML(lv_virt(), xml, 0);
        if (s == NULL)
                g_error("virSecretDefineXML: %s", virGetLastErrorMessage());
        if (virSecretSetValue(s, (const unsigned char *) passphrase, strlen(passphrase), 0) < 0)
                g_error("virSecretSetValue: %s", virGetLastErrorMessage());
        g_assert_cmpint(virSecretGetUUIDString(s, uuid), ==, 0);
        return s;
}

static char *luks_disk_xml(const char *type, const char *path, const char *uuid, const char *target) {
        gboolean block = g_str_equal(type, "block");
        return g_strdup_printf("<disk type='%s' device='disk'>"
                               "<driver name='qemu' type='raw'/>"
                               "<source %s='%s'>"
                               "<encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption>"
                               "</source>"
                               "<target dev='%s' bus='scsi'/>"
                               "</disk>",
                               type, block ? "dev" : "file", path, uuid, target);
}

/* Attach by hand, check what QEMU decrypts, detach; the shape every daemon
 * test relies on. */
static void attach_check_detach(virDomainPtr dom, const char *type, const char *path, guint8 pattern,
                                const char *usage_id) {
        guint secrets_before = lv_count_secrets();
        char uuid[VIR_UUID_STRING_BUFLEN];
        virSecretPtr secret = define_secret(usage_id, PASS, uuid);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets_before + 1);

        /* Private: the value cannot be read back through the API. */
        size_t vlen = 0;
        unsigned char *v = virSecretGetValue(secret, &vlen, 0);
        g_assert_null(v);

        g_autofree char *disk = luks_disk_xml(type, path, uuid, "sdb");
        gint64 t = g_get_monotonic_time();
        if (virDomainAttachDeviceFlags(dom, disk, VIR_DOMAIN_AFFECT_LIVE) < 0)
                g_error("attach %s: %s", path, virGetLastErrorMessage());
        g_test_message("attach took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);

        g_autofree char *live = lv_domain_disk_xml(dom, "sdb");
        g_assert_nonnull(live);
        g_test_message("live disk XML: %s", live);
        g_assert_nonnull(strstr(live, "<encryption format=\"luks\""));
        g_assert_nonnull(strstr(live, uuid));

        g_autoptr(GPtrArray) nodes = lv_guest_block_nodes(dom);
        for (guint i = 0; i < nodes->len; i++) {
                LvBlockNode *n = nodes->pdata[i];
                g_test_message("block node %s drv=%s file=%s", n->node_name, n->drv, n->file);
        }
        g_autofree char *node = lv_guest_luks_node_for(dom, path);
        g_assert_nonnull(node);

        /* The right pattern reads back, a wrong one does not: the check can fail. */
        t = g_get_monotonic_time();
        g_assert_true(lv_guest_reads_pattern(dom, pattern, 65536));
        g_test_message("pattern check took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        g_assert_false(lv_guest_reads_pattern(dom, (guint8) ~pattern, 65536));
        g_assert_true(lv_guest_reads_pattern_on(dom, node, pattern, 4096));
        /* Beyond the first 64 KiB the plaintext is zeros, not the pattern. */
        g_assert_false(lv_guest_reads_pattern_on(dom, node, pattern, 128 * 1024));

        t = g_get_monotonic_time();
        if (virDomainDetachDeviceFlags(dom, live, VIR_DOMAIN_AFFECT_LIVE) < 0)
                g_error("detach %s: %s", path, virGetLastErrorMessage());
        g_assert_true(lv_domain_wait_disk_gone(dom, "sdb", 10000));
        g_test_message("detach took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        g_assert_false(lv_domain_has_disk(dom, "sdb"));
        g_assert_null(lv_guest_luks_node_for(dom, path));

        g_assert_cmpint(virSecretUndefine(secret), ==, 0);
        virSecretFree(secret);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets_before);
}

static void test_luks1_file_attach(void) {
        gint64 t = g_get_monotonic_time();
        g_autofree char *img = lv_make_luks1_image("smoke-luks1.img", PASS, 0x5a, 16);
        g_test_message("LUKS1 image made in %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        struct stat st;
        g_assert_no_errno(stat(img, &st));
        g_assert_cmphex(st.st_mode & 0777, ==, 0644);
        /* 2 MiB of LUKS1 header, then exactly the payload asked for. */
        g_assert_cmpint(st.st_size, ==, (16 + 2) * 1024 * 1024);

        virDomainPtr dom = lv_start_guest("smoke-file");
        attach_check_detach(dom, "file", img, 0x5a, "smoke-file-volume");
        /* And again on the same guest: nothing left behind blocks a re-attach. */
        attach_check_detach(dom, "file", img, 0x5a, "smoke-file-volume");
        lv_destroy_guest(dom);
}

/* The slow-PBKDF variant: more key-slot iterations, same plaintext. */
static void test_luks1_slow_image(void) {
        gint64 t = g_get_monotonic_time();
        g_autofree char *img = lv_make_luks1_image_full("smoke-slow.img", PASS, 0x77, 8, 200);
        g_test_message("LUKS1 image (iter-time 200 ms) made in %" G_GINT64_FORMAT " ms",
                       (g_get_monotonic_time() - t) / 1000);
        const char *argv[] = { "qemu-img", "info", img, NULL };
        g_autofree char *out = NULL;
        g_assert_cmpint(lv_run_as(0, argv, 30, &out, NULL), ==, 0);
        const char *iters = strstr(out, "iters: ");
        g_assert_nonnull(iters);
        guint64 n = g_ascii_strtoull(iters + strlen("iters: "), NULL, 10);
        g_test_message("key slot 0: %" G_GUINT64_FORMAT " iterations", n);
        g_assert_cmpuint(n, >, 1000);

        virDomainPtr dom = lv_start_guest("smoke-slow");
        t = g_get_monotonic_time();
        attach_check_detach(dom, "file", img, 0x77, "smoke-slow-volume");
        g_test_message("attach+checks+detach took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        lv_destroy_guest(dom);
}

static void test_luks1_block_attach(void) {
        g_autofree char *img = lv_make_luks1_image("smoke-luks1-blk.img", PASS, 0xc3, 16);
        g_autofree char *dev = lv_losetup(img);
        g_test_message("loop device %s", dev);
        virDomainPtr dom = lv_start_guest("smoke-block");
        attach_check_detach(dom, "block", dev, 0xc3, "smoke-block-volume");
        lv_destroy_guest(dom);
        lv_losetup_detach(dev);
}

static void test_polkit(void) {
        GDBusConnection *bus = lv_bus();
        g_autofree char *owner = lv_bus_name_owner(bus, "org.freedesktop.PolicyKit1");
        g_assert_nonnull(owner);

        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                bus, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                "org.freedesktop.DBus.Properties", "Get",
                g_variant_new("(ss)", "org.freedesktop.PolicyKit1.Authority", "BackendName"), G_VARIANT_TYPE("(v)"),
                G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) v = NULL;
        g_variant_get(r, "(v)", &v);
        g_test_message("polkit backend: %s", g_variant_get_string(v, NULL));
        g_assert_cmpstr(g_variant_get_string(v, NULL), !=, "");

        /* polkitd runs as its own user, as on a real system. */
        g_assert_cmpuint(lv_bus_unix_user(bus, "org.freedesktop.PolicyKit1"), !=, 0);

        /* polkitd knows the project's actions, and only those. */
        g_auto(GStrv) actions = lv_polkit_action_ids();
        g_assert_nonnull(actions[0]);
        for (char **a = actions; *a; a++)
                g_test_message("polkit action: %s", *a);
        const char *action = actions[0];

        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        const char *uname = g_dbus_connection_get_unique_name(user);
        const char *aname = g_dbus_connection_get_unique_name(admin);

        /* Rules, taking effect through the files the sandbox bind-mounted, and
   * users and groups from its passwd/group copies: a rule for the group
   * lets lvadmin in and not lvuser; a rule for the user lets lvuser in. */
        gint64 t = g_get_monotonic_time();
        g_autofree char *group_rule = g_strdup_printf("polkit.addRule(function(action, subject) {\n"
                                                      "  if (action.id == \"%s\" && subject.isInGroup(\"lvgroup\"))\n"
                                                      "    return polkit.Result.YES;\n"
                                                      "});\n",
                                                      action);
        lv_polkit_set_rules("50-smoke.rules", group_rule);
        g_test_message("rules reload took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        g_assert_true(lv_polkit_check(action, aname, NULL));
        g_assert_false(lv_polkit_check(action, uname, NULL));

        g_autofree char *user_rule = g_strdup_printf("polkit.addRule(function(action, subject) {\n"
                                                     "  if (action.id == \"%s\" && subject.user == \"lvuser\")\n"
                                                     "    return polkit.Result.YES;\n"
                                                     "});\n",
                                                     action);
        lv_polkit_set_rules("50-smoke.rules", user_rule);
        g_assert_true(lv_polkit_check(action, uname, NULL));
        g_assert_false(lv_polkit_check(action, aname, NULL));

        /* Without rules, the policy's defaults apply: no session here, so never a
   * plain yes for a non-root caller of the project's actions. */
        lv_polkit_set_rules("50-smoke.rules", NULL);
        g_assert_false(lv_polkit_check(action, uname, NULL));
        /* Root is always authorized (polkit does not run rules for uid 0). */
        g_assert_true(lv_polkit_check(action, g_dbus_connection_get_unique_name(bus), NULL));
}

static void test_bus_as_uid(void) {
        GDBusConnection *root = lv_bus();
        g_assert_cmpuint(lv_bus_unix_user(root, g_dbus_connection_get_unique_name(root)), ==, 0);

        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        const char *uname = g_dbus_connection_get_unique_name(user);
        g_assert_cmpuint(lv_bus_unix_user(root, uname), ==, LV_TEST_UID_USER);
        /* The user's own connection works for calls. */
        g_assert_cmpuint(lv_bus_unix_user(user, uname), ==, LV_TEST_UID_USER);

        /* The thread is root again afterwards. */
        uid_t ru, eu, su;
        g_assert_no_errno(getresuid(&ru, &eu, &su));
        g_assert_cmpuint(ru, ==, 0);
        g_assert_cmpuint(eu, ==, 0);
        g_assert_cmpuint(su, ==, 0);
        g_assert_cmpuint(getegid(), ==, 0);

        /* The admin's group membership reaches the bus (dbus-daemon reports the
   * peer's groups when the kernel provides them). */
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        const char *aname = g_dbus_connection_get_unique_name(admin);
        g_assert_cmpuint(lv_bus_unix_user(root, aname), ==, LV_TEST_UID_ADMIN);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(root, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                            "org.freedesktop.DBus", "GetConnectionCredentials",
                                                            g_variant_new("(s)", aname), G_VARIANT_TYPE("(a{sv})"),
                                                            G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) creds = g_variant_get_child_value(r, 0);
        g_autoptr(GVariant) gids = g_variant_lookup_value(creds, "UnixGroupIDs", G_VARIANT_TYPE("au"));
        if (gids != NULL) {
                gsize n;
                const guint32 *g = g_variant_get_fixed_array(gids, &n, sizeof(guint32));
                gboolean in_group = FALSE;
                for (gsize i = 0; i < n; i++)
                        in_group |= g[i] == LV_TEST_GID_GROUP;
                g_assert_true(in_group);
        } else {
                g_test_message("dbus-daemon reports no UnixGroupIDs; group check skipped");
        }

        /* And the subprocess flavour. */
        const char *argv[] = { "id", "-u", NULL };
        g_autofree char *out = NULL;
        g_assert_cmpint(lv_run_as(LV_TEST_UID_USER, argv, 10, &out, NULL), ==, 0);
        g_assert_cmpstr(g_strstrip(out), ==, "4201");
}

static void test_luks2_image(void) {
        g_autofree char *img = lv_make_luks2_image("smoke-luks2.img", PASS, 20);
        g_autofree char *hdr = NULL;
        gsize len = 0;
        g_assert_true(g_file_get_contents(img, &hdr, &len, NULL));
        g_assert_cmpuint(len, ==, 20 * 1024 * 1024);
        /* LUKS magic, then the big-endian version. */
        g_assert_cmpmem(hdr, 6, "LUKS\xba\xbe", 6);
        g_assert_cmpint(hdr[6], ==, 0);
        g_assert_cmpint(hdr[7], ==, 2);
}

static void test_loop_device(void) {
        g_autofree char *plain = lv_make_plain_file("smoke-plain.img", 4);
        g_autofree char *dev = lv_losetup(plain);
        struct stat st;
        g_assert_no_errno(stat(dev, &st));
        g_assert_true(S_ISBLK(st.st_mode));
        lv_losetup_detach(dev);
}

static void test_activation(void) {
        GDBusConnection *bus = lv_bus();
        g_autoptr(GError) error = NULL;
        gint64 t = g_get_monotonic_time();
        g_autoptr(GVariant) r G_GNUC_UNUSED = g_dbus_connection_call_sync(
                bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "StartServiceByName",
                g_variant_new("(su)", LV_BUS_NAME, 0), G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NONE, 30000, NULL,
                &error);
        if (error != NULL) {
                g_autofree char *log = lv_daemon_log();
                g_test_message("daemon log:\n%s", log);
        }
        g_assert_no_error(error);
        g_test_message("activation took %" G_GINT64_FORMAT " ms", (g_get_monotonic_time() - t) / 1000);
        /* Activated by the bus, the daemon runs as root. */
        g_assert_cmpuint(lv_bus_unix_user(bus, LV_BUS_NAME), ==, 0);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        g_test_add_func("/sandbox/environment", test_environment);
        g_test_add_func("/sandbox/libvirt", test_libvirt);
        g_test_add_func("/sandbox/luks1-file-attach", test_luks1_file_attach);
        g_test_add_func("/sandbox/luks1-slow-image", test_luks1_slow_image);
        g_test_add_func("/sandbox/luks1-block-attach", test_luks1_block_attach);
        g_test_add_func("/sandbox/polkit", test_polkit);
        g_test_add_func("/sandbox/bus-as-uid", test_bus_as_uid);
        g_test_add_func("/sandbox/luks2-image", test_luks2_image);
        g_test_add_func("/sandbox/loop-device", test_loop_device);
        g_test_add_func("/sandbox/activation", test_activation);
        return g_test_run();
}
