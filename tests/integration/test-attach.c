/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The product path on the real stack: GDBus → private system bus → the
 * bus-activated daemon → polkitd → libvirtd → a running TCG guest whose
 * QEMU decrypts the LUKS1 volume itself. */

#include <gio/gio.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "correct horse battery staple"
#define PATTERN 0x5a

static GDBusConnection *bus;
static virDomainPtr guest;
static char *guest_uuid;

/* Nothing of ours remains: no object, no secret, only the guest's own disks. */
static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "<encryption"));
        g_autofree char *ours = g_strconcat("'", lv_sandbox_dir(), "/", NULL);
        g_assert_null(strstr(xml, ours));
        g_assert_null(strstr(xml, "/dev/loop"));
}

static char *expected_path(const char *target) {
        g_autofree char *hex = g_strdup(guest_uuid);
        GString *s = g_string_new(NULL);
        for (const char *p = hex; *p; p++)
                if (*p != '-')
                        g_string_append_c(s, *p);
        char *path = g_strdup_printf(LV_PATH "/volume/%s_%s", s->str, target);
        g_string_free(s, TRUE);
        return path;
}

typedef struct Signals {
        GPtrArray *added, *removed;
} Signals;

static void on_signal(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *member,
                      GVariant *params, gpointer userdata) {
        Signals *s = userdata;
        const char *obj;

        g_variant_get_child(params, 0, "&o", &obj);
        /* Both signals must name the Volume interface (InterfacesRemoved
         * lists what the object had). */
        g_autoptr(GVariant) ifaces = g_variant_get_child_value(params, 1);
        gboolean has = FALSE;
        if (g_str_equal(member, "InterfacesAdded"))
                has = g_variant_lookup_value(ifaces, LV_VOLUME_IFACE, NULL) != NULL;
        else {
                g_autofree const char **l = g_variant_get_strv(ifaces, NULL);
                has = g_strv_contains(l, LV_VOLUME_IFACE);
        }
        if (!has)
                return;
        g_ptr_array_add(g_str_equal(member, "InterfacesAdded") ? s->added : s->removed, g_strdup(obj));
}

static gboolean wait_for(GPtrArray *a, const char *path) {
        for (int i = 0; i < 500; i++) {
                for (guint k = 0; k < a->len; k++)
                        if (g_str_equal(a->pdata[k], path))
                                return TRUE;
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10 * 1000);
        }
        return FALSE;
}

static void check_volume_props(const char *path, const char *source, const char *target, const char *busname) {
        g_autoptr(GVariant) p = lv_volume_props(bus, path);
        const char *s;
        guint32 u;
        gboolean b;

        g_assert_nonnull(p);
        g_assert_true(g_variant_lookup(p, "Domain", "&s", &s));
        g_assert_cmpstr(s, ==, "lvtest-guest");
        g_assert_true(g_variant_lookup(p, "DomainUUID", "&s", &s));
        g_assert_cmpstr(s, ==, guest_uuid);
        g_assert_true(g_variant_lookup(p, "Source", "&s", &s));
        g_assert_cmpstr(s, ==, source);
        g_assert_true(g_variant_lookup(p, "Target", "&s", &s));
        g_assert_cmpstr(s, ==, target);
        g_assert_true(g_variant_lookup(p, "Bus", "&s", &s));
        g_assert_cmpstr(s, ==, busname);
        g_assert_true(g_variant_lookup(p, "Mode", "&s", &s));
        g_assert_cmpstr(s, ==, "native");
        g_assert_true(g_variant_lookup(p, "MapperDevice", "&s", &s));
        g_assert_cmpstr(s, ==, "");
        g_assert_true(g_variant_lookup(p, "LuksVersion", "u", &u));
        g_assert_cmpuint(u, ==, 1);
        g_assert_true(g_variant_lookup(p, "LuksUUID", "&s", &s));
        g_assert_cmpuint(strlen(s), ==, 36);
        g_assert_true(g_variant_lookup(p, "ReadOnly", "b", &b));
        g_assert_false(b);
        g_assert_true(g_variant_lookup(p, "State", "&s", &s));
        g_assert_cmpstr(s, ==, "attached");
        g_assert_true(g_variant_lookup(p, "SecretUUID", "&s", &s));
        g_assert_cmpuint(strlen(s), ==, 36);

        /* The secret: ephemeral, private (value unreadable), ours. */
        virSecretPtr secret = virSecretLookupByUUIDString(lv_virt(), s);
        g_assert_nonnull(secret);
        g_autofree char *sxml = virSecretGetXMLDesc(secret, 0);
        g_assert_nonnull(strstr(sxml, "ephemeral='yes'"));
        g_assert_nonnull(strstr(sxml, "private='yes'"));
        g_assert_nonnull(strstr(sxml, "luksvolumed:"));
        size_t n = 0;
        unsigned char *value = virSecretGetValue(secret, &n, 0);
        g_assert_null(value);
        virSecretFree(secret);

        /* The guest's disk: <encryption format='luks'> under <source>. */
        g_autofree char *dxml = lv_domain_disk_xml(guest, target);
        g_assert_nonnull(dxml);
        g_assert_nonnull(strstr(dxml, "format='luks'") ?: strstr(dxml, "format=\"luks\""));
        const char *src = strstr(dxml, "<source");
        const char *enc = strstr(dxml, "<encryption");
        const char *src_end = strstr(dxml, "</source>");
        g_assert_nonnull(src);
        g_assert_nonnull(enc);
        g_assert_nonnull(src_end);
        g_assert_true(src < enc && enc < src_end);
}

/* The kernel's word (libdevmapper creates /dev/mapper/control regardless). */
static gboolean host_has_device_mapper(void) {
        g_autofree char *misc = NULL;
        if (!g_file_get_contents("/proc/misc", &misc, NULL, NULL))
                return FALSE;
        return strstr(misc, "device-mapper") != NULL;
}

static void test_probe_host(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "", &error);
        const char *s;
        gboolean b;

        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "version", "&s", &s));
        g_assert_cmpstr(s, !=, "");
        g_assert_true(g_variant_lookup(info, "libvirt-version", "&s", &s));
        g_assert_true(g_str_has_prefix(s, "9."));
        g_assert_true(g_variant_lookup(info, "hypervisor", "&s", &s));
        g_assert_cmpstr(s, ==, "QEMU");
        g_assert_true(g_variant_lookup(info, "hypervisor-version", "&s", &s));
        g_assert_true(g_str_has_prefix(s, "7."));
        g_assert_true(g_variant_lookup(info, "native-luks", "b", &b));
        g_assert_true(b);
        /* This kernel has no device-mapper. */
        g_assert_true(g_variant_lookup(info, "dm-crypt", "b", &b));
        g_assert_cmpint(b, ==, host_has_device_mapper());
}

static void test_probe_volume(void) {
        g_autofree char *img = lv_make_luks1_image("probe1.img", PASS, PATTERN, 16);
        g_autofree char *img2 = lv_make_luks2_image("probe2.img", PASS, 20);
        g_autofree char *plain = lv_make_plain_file("plain.img", 4);
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, img, &error);
        const char *s;
        guint32 u;
        gboolean b;

        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "luks-version", "u", &u));
        g_assert_cmpuint(u, ==, 1);
        g_assert_true(g_variant_lookup(info, "uuid", "&s", &s));
        g_assert_cmpuint(strlen(s), ==, 36);
        g_assert_true(g_variant_lookup(info, "cipher", "&s", &s));
        g_assert_cmpstr(s, ==, "aes-xts-plain64");
        g_assert_true(g_variant_lookup(info, "key-size", "u", &u));
        g_assert_cmpuint(u, ==, 512); /* qemu-img: aes-256 in XTS mode = two 256-bit keys */
        g_assert_true(g_variant_lookup(info, "active-keyslots", "u", &u));
        g_assert_cmpuint(u, ==, 1);
        g_assert_true(g_variant_lookup(info, "native-capable", "b", &b));
        g_assert_true(b);
        g_assert_true(g_variant_lookup(info, "attached", "&o", &s));
        g_assert_cmpstr(s, ==, "/");

        g_autoptr(GVariant) info2 = lv_probe(bus, img2, &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info2, "luks-version", "u", &u));
        g_assert_cmpuint(u, ==, 2);
        g_assert_true(g_variant_lookup(info2, "native-capable", "b", &b));
        g_assert_false(b);

        g_autoptr(GVariant) none = lv_probe(bus, plain, &error);
        g_assert_null(none);
        lv_assert_error(error, LV_ERR("NotLuks"));
}

static void attach_detach_roundtrip(const char *source, const char *image_for_pattern) {
        Signals sig = { g_ptr_array_new_with_free_func(g_free), g_ptr_array_new_with_free_func(g_free) };
        guint sub = g_dbus_connection_signal_subscribe(bus, LV_BUS_NAME, "org.freedesktop.DBus.ObjectManager", NULL,
                                                       LV_PATH, NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_signal, &sig, NULL);
        g_autoptr(GError) error = NULL;
        g_autofree char *want = expected_path("sdb");
        gint64 t0 = g_get_monotonic_time();

        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", source, PASS,
                lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdb"), NULL), &error);
        gint64 t1 = g_get_monotonic_time();
        g_assert_no_error(error);
        g_assert_cmpstr(path, ==, want);
        g_test_message("Attach took %.1f ms", (t1 - t0) / 1000.0);
        g_assert_true(wait_for(sig.added, path));

        check_volume_props(path, source, "sdb", "scsi");

        /* QEMU reads the plaintext through the disk — and the check can say no. */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_false(lv_guest_reads_pattern(guest, PATTERN ^ 0xff, 65536));

        /* Probe knows it is attached. */
        g_autoptr(GVariant) info = lv_probe(bus, image_for_pattern, &error);
        g_assert_no_error(error);
        const char *att;
        g_assert_true(g_variant_lookup(info, "attached", "&o", &att));
        g_assert_cmpstr(att, ==, path);

        t0 = g_get_monotonic_time();
        g_assert_true(lv_detach(bus, path, NULL, &error));
        t1 = g_get_monotonic_time();
        g_assert_no_error(error);
        g_test_message("Detach took %.1f ms", (t1 - t0) / 1000.0);
        g_assert_true(wait_for(sig.removed, path));
        g_assert_false(lv_domain_has_disk(guest, "sdb"));
        g_assert_null(lv_volume_props(bus, path));
        assert_clean();

        g_dbus_connection_signal_unsubscribe(bus, sub);
        g_ptr_array_unref(sig.added);
        g_ptr_array_unref(sig.removed);
}

static void test_attach_file(void) {
        g_autofree char *img = lv_make_luks1_image("file1.img", PASS, PATTERN, 16);
        attach_detach_roundtrip(img, img);
}

static void test_attach_block(void) {
        g_autofree char *img = lv_make_luks1_image("block1.img", PASS, PATTERN, 16);
        g_autofree char *dev = lv_losetup(img);
        attach_detach_roundtrip(dev, dev);
        lv_losetup_detach(dev);
}

static void test_attach_passphrase_fd(void) {
        g_autofree char *img = lv_make_luks1_image("fd1.img", PASS, PATTERN, 16);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach_fd(bus, "lvtest-guest", img, PASS,
                                             lv_opts("target", g_variant_new_string("sdc"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

static void test_attach_by_uuid_readonly(void) {
        g_autofree char *img = lv_make_luks1_image("ro1.img", PASS, PATTERN, 16);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(
                bus, guest_uuid, img, PASS,
                lv_opts("bus", g_variant_new_string("scsi"), "read-only", g_variant_new_boolean(TRUE), NULL), &error);
        g_assert_no_error(error);
        /* Default target: the first free sdX (the guest has none). */
        g_autofree char *want = expected_path("sda");
        g_assert_cmpstr(path, ==, want);
        g_autoptr(GVariant) p = lv_volume_props(bus, path);
        gboolean ro = FALSE;
        g_assert_true(g_variant_lookup(p, "ReadOnly", "b", &ro));
        g_assert_true(ro);
        g_autofree char *dxml = lv_domain_disk_xml(guest, "sda");
        g_assert_nonnull(strstr(dxml, "<readonly/>"));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* Every typed error, each leaving nothing behind. */
static void test_errors(void) {
        g_autofree char *img = lv_make_luks1_image("err1.img", PASS, PATTERN, 16);
        g_autofree char *img2 = lv_make_luks1_image("err2.img", PASS, PATTERN, 16);
        g_autofree char *luks2 = lv_make_luks2_image("err-luks2.img", PASS, 20);
        g_autofree char *plain = lv_make_plain_file("err-plain.img", 4);
        GError *error = NULL;
        char *path;

        /* NoSuchDomain */
        path = lv_attach(bus, "no-such-guest", img, PASS, NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("NoSuchDomain"));
        g_clear_error(&error);
        assert_clean();

        /* DomainNotRunning: a defined, stopped domain. */
        g_autofree char *dxml =
                g_strdup_printf("<domain type='qemu'><name>lvtest-stopped</name><memory unit='MiB'>64</memory>"
                                "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>");
        virDomainPtr stopped = virDomainDefineXML(lv_virt(), dxml);
        g_assert_nonnull(stopped);
        path = lv_attach(bus, "lvtest-stopped", img, PASS, NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("DomainNotRunning"));
        g_clear_error(&error);
        virDomainUndefine(stopped);
        virDomainFree(stopped);
        assert_clean();

        /* NotLuks */
        path = lv_attach(bus, "lvtest-guest", plain, PASS, NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("NotLuks"));
        g_clear_error(&error);
        assert_clean();

        /* BadPassphrase: QEMU's own verdict, mapped; the secret is gone again. */
        path = lv_attach(bus, "lvtest-guest", img, "wrong passphrase",
                         lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_assert_null(strstr(error->message, "wrong passphrase"));
        g_clear_error(&error);
        assert_clean();

        /* NotSupported: LUKS2 in auto mode, and mode=cryptsetup, without dm-crypt. */
        if (!host_has_device_mapper()) {
                path = lv_attach(bus, "lvtest-guest", luks2, PASS, NULL, &error);
                g_assert_null(path);
                lv_assert_error(error, LV_ERR("NotSupported"));
                g_assert_nonnull(strstr(error->message, "LUKS2"));
                g_assert_nonnull(strstr(error->message, "dm-crypt"));
                g_clear_error(&error);
                path = lv_attach(bus, "lvtest-guest", img, PASS,
                                 lv_opts("mode", g_variant_new_string("cryptsetup"), NULL), &error);
                g_assert_null(path);
                lv_assert_error(error, LV_ERR("NotSupported"));
                g_clear_error(&error);
        }
        path = lv_attach(bus, "lvtest-guest", luks2, PASS, lv_opts("mode", g_variant_new_string("native"), NULL),
                         &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "LUKS1 only"));
        g_clear_error(&error);
        assert_clean();

        /* AlreadyAttached and TargetInUse, with one volume attached. */
        g_autofree char *ok =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sdd"), NULL), &error);
        g_assert_no_error(error);
        path = lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sde"), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("AlreadyAttached"));
        g_clear_error(&error);
        path = lv_attach(bus, "lvtest-guest", img2, PASS, lv_opts("target", g_variant_new_string("sdd"), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("TargetInUse"));
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        g_assert_true(lv_detach(bus, ok, NULL, &error));
        g_assert_no_error(error);
        assert_clean();

        /* NoSuchVolume: well-formed path of nothing; InvalidArgs: not a volume path. */
        g_autofree char *ghost = expected_path("sdz");
        g_assert_false(lv_detach(bus, ghost, NULL, &error));
        lv_assert_error(error, LV_ERR("NoSuchVolume"));
        g_clear_error(&error);
        g_assert_false(lv_detach(bus, "/org/example/LuksVolume1/volume/nonsense", NULL, &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);

        /* InvalidArgs for argument shapes. */
        path = lv_attach(bus, "lvtest-guest", "relative.img", PASS, NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        path = lv_attach(bus, "lvtest-guest", img, "", NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        path = lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("colour", g_variant_new_string("red"), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        path = lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_uint32(1), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        assert_clean();

        /* The daemon never logged the passphrases. */
        g_autofree char *log = lv_daemon_log();
        g_assert_null(strstr(log, PASS));
        g_assert_null(strstr(log, "wrong passphrase"));
}

static gboolean volume_exists(const char *path) {
        g_autoptr(GVariant) p = lv_volume_props(bus, path);
        return p != NULL;
}

/* Virtio (PCI) disks are the default; an OS-less guest never releases
 * them, which makes an honest detach answer Busy and keep everything. */
static void test_default_bus_and_busy_detach(void) {
        g_autofree char *img = lv_make_luks1_image("virtio1.img", PASS, PATTERN, 16);
        GError *error = NULL;
        virDomainPtr g2 = lv_start_guest("lvtest-busy");
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(g2, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus, "lvtest-busy", img, PASS, NULL, &error);
        g_assert_no_error(error);
        g_assert_true(g_str_has_suffix(path, "_vda"));
        g_autofree char *busname = lv_volume_prop_string(bus, path, "Bus");
        g_assert_cmpstr(busname, ==, "virtio");
        g_assert_true(lv_guest_reads_pattern(g2, PATTERN, 65536));

        g_assert_false(lv_detach(bus, path, lv_opts("timeout", g_variant_new_uint32(1), NULL), &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        g_autofree char *state = lv_volume_prop_string(bus, path, "State");
        g_assert_cmpstr(state, ==, "detaching");
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        g_assert_true(lv_domain_has_disk(g2, "vda"));

        /* Once the guest is gone, the daemon (following libvirt's events)
         * cleans up by itself: object and secret gone within 2 s. */
        lv_destroy_guest(g2);
        gint64 deadline = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline && (lv_count_secrets() > 0 || volume_exists(path)))
                g_usleep(20 * 1000);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_false(volume_exists(path));
        g_assert_false(lv_detach(bus, path, NULL, &error));
        lv_assert_error(error, LV_ERR("NoSuchVolume"));
        g_clear_error(&error);
}

/* Other callers get answers while an attach spends seconds in QEMU's key
 * derivation: an ordering check, not a timing one. */
static void on_attach_done(GObject *source, GAsyncResult *res, gpointer userdata) {
        GVariant **out = userdata;
        g_autoptr(GError) error = NULL;
        *out = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
        g_assert_no_error(error);
}

static void test_loop_not_blocked(void) {
        g_autofree char *img = lv_make_luks1_image_full("slow1.img", PASS, PATTERN, 16, 1500);
        GVariant *reply = NULL;
        GError *error = NULL;

        g_dbus_connection_call(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach",
                               g_variant_new("(ss@ay@a{sv})", "lvtest-guest", img,
                                             g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                             lv_opts("target", g_variant_new_string("sdf"), NULL)),
                               G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 120000, NULL, on_attach_done, &reply);

        /* Let the attach get going: the daemon first derives the key itself
         * (to check the passphrase; OpenSSL's PBKDF2 takes seconds here for
         * this image), then QEMU does.  Both on threads: the loop and the
         * other workers must keep answering either way. */
        g_usleep(200 * 1000);
        g_main_context_iteration(NULL, FALSE);
        g_assert_null(reply);

        unsigned answered_during = 0;
        for (int i = 0; i < 5; i++) {
                gint64 t0 = g_get_monotonic_time();
                g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
                g_assert_no_error(error);
                g_test_message("Probe('') %d answered in %.1f ms", i, (g_get_monotonic_time() - t0) / 1000.0);
                g_main_context_iteration(NULL, FALSE);
                if (!reply)
                        answered_during++;
        }
        g_test_message("%u of 5 Probe('') calls answered while the attach was running", answered_during);
        /* A loop (or connection) that blocked behind the attach answers at most one. */
        g_assert_cmpuint(answered_during, >=, 4);

        while (!reply)
                g_main_context_iteration(NULL, TRUE);
        const char *path;
        g_variant_get(reply, "(&o)", &path);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_variant_unref(reply);
        assert_clean();
}

/* A volume attached by an earlier run is found again (same path and
 * properties) and detached by the XML's say-so. */
static void test_restart(void) {
        g_autofree char *img = lv_make_luks1_image("restart1.img", PASS, PATTERN, 16);
        GError *error = NULL;

        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sdg"), NULL), &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) before = lv_volume_props(bus, path);

        lv_daemon_kill(bus, SIGKILL);

        /* Any call re-activates it. */
        g_autoptr(GVariant) after = lv_volume_props(bus, path);
        lv_assert_props_rebuilt(before, after);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(guest, uuid), ==, 0);
        guest_uuid = g_strdup(uuid);

        g_test_add_func("/attach/probe-host", test_probe_host);
        g_test_add_func("/attach/probe-volume", test_probe_volume);
        g_test_add_func("/attach/file", test_attach_file);
        g_test_add_func("/attach/block-device", test_attach_block);
        g_test_add_func("/attach/passphrase-fd", test_attach_passphrase_fd);
        g_test_add_func("/attach/by-uuid-read-only", test_attach_by_uuid_readonly);
        g_test_add_func("/attach/errors", test_errors);
        g_test_add_func("/attach/default-bus-busy-detach", test_default_bus_and_busy_detach);
        g_test_add_func("/attach/loop-not-blocked", test_loop_not_blocked);
        g_test_add_func("/attach/restart", test_restart);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
