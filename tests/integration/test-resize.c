/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* API v1.1 on volume objects, on the real stack (native mode; cryptsetup
 * mode is in test-cryptsetup.c, inside the dm-crypt VM): Resize — the size
 * the guest sees, from QEMU's block info and from a real guest kernel's
 * /sys/block; the image by the payload offset beyond it; shrinking only
 * when asked; block devices — Volume.Detach, the properties Size,
 * PayloadOffset, Serial, AttachedByUID, AttachTimestamp (and what a
 * restarted daemon knows of them), the attach options serial and discard,
 * and the resize action in polkit. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS                 "resize test passphrase"
#define PATTERN              0x6b
#define MIB                  (G_GUINT64_CONSTANT(1) << 20)
#define INVALID_ARGS         "org.freedesktop.DBus.Error.InvalidArgs"
#define ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

static GDBusConnection *bus;
static virDomainPtr guest;

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_autofree char *ours = g_strconcat("'", lv_sandbox_dir(), "/", NULL);
        g_assert_null(strstr(xml, ours));
        g_assert_null(strstr(xml, "/dev/loop"));
}

static guint64 file_size(const char *path) {
        struct stat st;
        g_assert_cmpint(stat(path, &st), ==, 0);
        return (guint64) st.st_size;
}

static guint64 probe_payload_offset(const char *source) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, source, &error);
        guint64 off = 0;
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "payload-offset", "t", &off));
        g_assert_cmpuint(off, >, 0);
        return off;
}

/* What QEMU gives the guest for the disk on target. */
static gint64 guest_size(virDomainPtr dom, const char *target) {
        g_autofree char *alias = lv_domain_disk_alias(dom, target);
        g_assert_nonnull(alias);
        return lv_guest_disk_size(dom, alias);
}

static guint64 realtime_usec(void) {
        return (guint64) g_get_real_time();
}

/* PropertiesChanged of the Volume interface: the Size values announced. */
typedef struct SizeSignals {
        GArray *sizes;
} SizeSignals;

static void on_properties_changed(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                                  const char *member, GVariant *params, gpointer userdata) {
        SizeSignals *s = userdata;
        const char *interface;
        g_autoptr(GVariant) changed = NULL;
        g_autofree const char **invalidated = NULL;
        guint64 size;

        g_variant_get(params, "(&s@a{sv}^a&s)", &interface, &changed, &invalidated);
        if (!g_str_equal(interface, LV_VOLUME_IFACE))
                return;
        if (g_variant_lookup(changed, "Size", "t", &size))
                g_array_append_val(s->sizes, size);
}

static gboolean wait_size_signal_ms(SizeSignals *s, guint64 size, guint timeout_ms) {
        for (guint i = 0; i < timeout_ms / 10; i++) {
                for (guint k = 0; k < s->sizes->len; k++)
                        if (g_array_index(s->sizes, guint64, k) == size)
                                return TRUE;
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10 * 1000);
        }
        return FALSE;
}

static gboolean wait_size_signal(SizeSignals *s, guint64 size) {
        return wait_size_signal_ms(s, size, 5000);
}

static void check_attach_facts(const char *path, const char *source, guint64 size, const char *serial, guint32 uid,
                               guint64 t0, guint64 t1) {
        g_autoptr(GVariant) p = lv_volume_props(bus, path);
        guint64 t;
        guint32 u;
        const char *s;

        g_assert_nonnull(p);
        g_assert_true(g_variant_lookup(p, "Size", "t", &t));
        g_assert_cmpuint(t, ==, size);
        g_assert_true(g_variant_lookup(p, "PayloadOffset", "t", &t));
        g_assert_cmpuint(t, ==, probe_payload_offset(source));
        g_assert_true(g_variant_lookup(p, "Serial", "&s", &s));
        g_assert_cmpstr(s, ==, serial);
        g_assert_true(g_variant_lookup(p, "AttachedByUID", "u", &u));
        g_assert_cmpuint(u, ==, uid);
        g_assert_true(g_variant_lookup(p, "AttachTimestamp", "t", &t));
        g_assert_cmpuint(t, >=, t0);
        g_assert_cmpuint(t, <=, t1);
}

/* ------------------------------------------------------------ native */

static void test_native_file(void) {
        g_autofree char *img = lv_make_luks1_image("r-file.img", PASS, PATTERN, 16);
        SizeSignals sig = { g_array_new(FALSE, FALSE, sizeof(guint64)) };
        GError *error = NULL;
        guint64 off = probe_payload_offset(img);

        guint64 t0 = realtime_usec();
        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdb"), "serial", g_variant_new_string("LV-RESIZE_1.a"), NULL),
                &error);
        guint64 t1 = realtime_usec();
        g_assert_no_error(error);
        check_attach_facts(path, img, 16 * MIB, "LV-RESIZE_1.a", 0, t0, t1);
        g_assert_cmpint(guest_size(guest, "sdb"), ==, (gint64) (16 * MIB));
        g_assert_cmpuint(file_size(img), ==, 16 * MIB + off);

        /* The serial is the guest's: QEMU's device carries it. */
        g_autofree char *alias = lv_domain_disk_alias(guest, "sdb");
        g_autofree char *serial = lv_guest_device_property(guest, alias, "serial");
        g_assert_cmpstr(serial, ==, "LV-RESIZE_1.a");

        guint sub = g_dbus_connection_signal_subscribe(bus, LV_BUS_NAME, "org.freedesktop.DBus.Properties",
                                                       "PropertiesChanged", path, LV_VOLUME_IFACE,
                                                       G_DBUS_SIGNAL_FLAGS_NONE, on_properties_changed, &sig, NULL);

        /* Grow: the guest sees exactly the plaintext size asked for; the
         * image holds it after its header. */
        g_assert_true(lv_resize(bus, path, 32 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpint(guest_size(guest, "sdb"), ==, (gint64) (32 * MIB));
        g_assert_cmpuint(file_size(img), ==, 32 * MIB + off);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 32 * MIB);
        g_assert_true(wait_size_signal(&sig, 32 * MIB));
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        /* Shrinking is refused unless asked for; nothing changes. */
        g_assert_false(lv_resize(bus, path, 24 * MIB, NULL, &error));
        lv_assert_error(error, INVALID_ARGS);
        g_assert_nonnull(strstr(error->message, "allow-shrink"));
        g_clear_error(&error);
        g_assert_false(
                lv_resize(bus, path, 24 * MIB, lv_opts("allow-shrink", g_variant_new_boolean(FALSE), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdb"), ==, (gint64) (32 * MIB));
        g_assert_cmpuint(file_size(img), ==, 32 * MIB + off);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 32 * MIB);

        g_assert_true(
                lv_resize(bus, path, 24 * MIB, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL), &error));
        g_assert_no_error(error);
        g_assert_cmpint(guest_size(guest, "sdb"), ==, (gint64) (24 * MIB));
        g_assert_cmpuint(file_size(img), ==, 24 * MIB + off);
        g_assert_true(wait_size_signal(&sig, 24 * MIB));
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        /* The same size again: nothing to do. */
        g_assert_true(lv_resize(bus, path, 24 * MIB, NULL, &error));
        g_assert_no_error(error);

        /* Sizes and options that are no resize at all. */
        const guint64 bad[] = { 0, 1000, 24 * MIB + 1, G_MAXUINT64 - 511 };
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_assert_false(lv_resize(bus, path, bad[i], NULL, &error));
                lv_assert_error(error, INVALID_ARGS);
                g_clear_error(&error);
        }
        g_assert_false(
                lv_resize(bus, path, 40 * MIB, lv_opts("allow-shrink", g_variant_new_string("yes"), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_assert_false(lv_resize(bus, path, 40 * MIB, lv_opts("colour", g_variant_new_string("red"), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdb"), ==, (gint64) (24 * MIB));

        g_dbus_connection_signal_unsubscribe(bus, sub);
        g_array_unref(sig.sizes);

        /* Volume.Detach, as Manager.Detach does it. */
        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_domain_has_disk(guest, "sdb"));
        g_assert_null(lv_volume_props(bus, path));
        assert_clean();
}

/* A block device cannot be grown by QEMU, and QEMU gives the guest all of
 * it: the size must be what the device holds. */
static void test_native_block_device(void) {
        g_autofree char *img = lv_make_luks1_image("r-block.img", PASS, PATTERN, 16);
        g_autofree char *dev = lv_losetup(img);
        GError *error = NULL;
        guint64 off = probe_payload_offset(img);

        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", dev, PASS, lv_opts("target", g_variant_new_string("sdc"), NULL), &error);
        g_assert_no_error(error);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 16 * MIB);

        g_assert_false(lv_resize(bus, path, 32 * MIB, NULL, &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "grow the device first"));
        g_clear_error(&error);
        g_assert_false(
                lv_resize(bus, path, 8 * MIB, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL), &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "exactly"));
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdc"), ==, (gint64) (16 * MIB));

        /* The device grows (as an LV would), then the volume does. */
        g_assert_cmpint(truncate(img, (off_t) (32 * MIB + off)), ==, 0);
        const char *refresh[] = { "losetup", "-c", dev, NULL };
        g_assert_cmpint(lv_run_as(0, refresh, 30, NULL, NULL), ==, 0);
        g_assert_true(lv_resize(bus, path, 32 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpint(guest_size(guest, "sdc"), ==, (gint64) (32 * MIB));
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 32 * MIB);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_losetup_detach(dev);
        assert_clean();
}

static void test_refusals(void) {
        g_autofree char *img = lv_make_luks1_image("r-ro.img", PASS, PATTERN, 16);
        GError *error = NULL;

        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdd"), "read-only", g_variant_new_boolean(TRUE), NULL), &error);
        g_assert_no_error(error);
        g_assert_false(lv_resize(bus, path, 32 * MIB, NULL, &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdd"), ==, (gint64) (16 * MIB));

        /* Volume.Detach takes Detach's options, and only those. */
        g_assert_false(lv_volume_detach(bus, path, lv_opts("timeout", g_variant_new_string("10"), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_assert_false(lv_volume_detach(bus, path, lv_opts("timeout", g_variant_new_uint32(3601), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_assert_true(lv_volume_detach(bus, path, lv_opts("timeout", g_variant_new_uint32(20), NULL), &error));
        g_assert_no_error(error);
        assert_clean();

        /* The object went with the volume. */
        g_assert_false(lv_resize(bus, path, 32 * MIB, NULL, &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.UnknownObject");
        g_clear_error(&error);
}

/* A virtio disk the OS-less guest never releases: Volume.Detach answers
 * Busy after its timeout, the volume stays "detaching", a resize waits for
 * the outcome — the same as through the manager. */
static void test_volume_detach_busy(void) {
        g_autofree char *img = lv_make_luks1_image("r-busy.img", PASS, PATTERN, 16);
        virDomainPtr g2 = lv_start_guest("lvtest-busy");
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "lvtest-busy", img, PASS, NULL, &error);
        g_assert_no_error(error);
        g_assert_true(g_str_has_suffix(path, "_vda"));

        g_assert_false(lv_volume_detach(bus, path, lv_opts("timeout", g_variant_new_uint32(1), NULL), &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        g_autofree char *state = lv_volume_prop_string(bus, path, "State");
        g_assert_cmpstr(state, ==, "detaching");
        g_assert_true(lv_domain_has_disk(g2, "vda"));
        g_assert_false(lv_resize(bus, path, 32 * MIB, NULL, &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);

        lv_destroy_guest(g2);
        gint64 deadline = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline && lv_volume_props(bus, path) != NULL)
                g_usleep(20 * 1000);
        g_assert_null(lv_volume_props(bus, path));
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
}

/* ------------------------------------------------------ attach options */

static void test_options(void) {
        g_autofree char *img = lv_make_luks1_image("r-opts.img", PASS, PATTERN, 16);
        GError *error = NULL;

        /* serial: at most 20 characters of a conservative set. */
        const char *bad_serials[] = { "", "123456789012345678901", "has space", "a/b", "quote'", "ü", "x\n" };
        for (gsize i = 0; i < G_N_ELEMENTS(bad_serials); i++) {
                g_assert_null(lv_attach(bus, "lvtest-guest", img, PASS,
                                        lv_opts("serial", g_variant_new_string(bad_serials[i]), NULL), &error));
                lv_assert_error(error, INVALID_ARGS);
                g_clear_error(&error);
        }
        g_assert_null(
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("serial", g_variant_new_uint32(7), NULL), &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);

        /* discard: QEMU's LUKS driver passes none on. */
        g_assert_null(lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("discard", g_variant_new_boolean(TRUE), "mode", g_variant_new_string("native"), NULL), &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "discard"));
        g_clear_error(&error);
        g_assert_null(lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("discard", g_variant_new_boolean(TRUE), "read-only", g_variant_new_boolean(TRUE), NULL),
                &error));
        lv_assert_error(error, INVALID_ARGS);
        g_clear_error(&error);
        g_autofree char *misc = NULL;
        g_assert_true(g_file_get_contents("/proc/misc", &misc, NULL, NULL));
        if (!strstr(misc, "device-mapper")) {
                /* auto would pick cryptsetup mode for it; without dm-crypt
                 * there is none. */
                g_assert_null(lv_attach(bus, "lvtest-guest", img, PASS,
                                        lv_opts("discard", g_variant_new_boolean(TRUE), NULL), &error));
                lv_assert_error(error, LV_ERR("NotSupported"));
                g_assert_nonnull(strstr(error->message, "dm-crypt"));
                g_clear_error(&error);
        }
        assert_clean();

        /* discard false is the default: native as ever. */
        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("discard", g_variant_new_boolean(FALSE), "target", g_variant_new_string("sde"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "native");
        g_autofree char *serial = lv_volume_prop_string(bus, path, "Serial");
        g_assert_cmpstr(serial, ==, "");
        g_autofree char *dxml = lv_domain_disk_xml(guest, "sde");
        g_assert_null(strstr(dxml, "<serial"));
        g_assert_null(strstr(dxml, "discard="));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* ----------------------------------------------------------- restart */

/* A restarted daemon rebuilds what libvirt's XML and the header say (size,
 * payload offset, serial); who attached it and when only the attaching
 * daemon knew: the documented "unknown" values. */
static void test_restart(void) {
        g_autofree char *img = lv_make_luks1_image("r-restart.img", PASS, PATTERN, 16);
        GError *error = NULL;

        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdf"), "serial", g_variant_new_string("RESTART-7"), NULL),
                &error);
        g_assert_no_error(error);
        g_assert_true(lv_resize(bus, path, 20 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_autoptr(GVariant) before = lv_volume_props(bus, path);

        lv_daemon_kill(bus, SIGKILL);

        g_autoptr(GVariant) after = lv_volume_props(bus, path);
        lv_assert_props_rebuilt(before, after);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 20 * MIB);

        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* A resize outside the service (virsh blockresize): libvirt's word is the
 * truth, so the next rescan — here the one after libvirtd comes back —
 * brings Size up to date and announces it. */
static void test_outside_resize(void) {
        g_autofree char *img = lv_make_luks1_image("r-outside.img", PASS, PATTERN, 16);
        SizeSignals sig = { g_array_new(FALSE, FALSE, sizeof(guint64)) };
        virDomainPtr g = lv_start_guest("lvtest-outside");
        char uuid[VIR_UUID_STRING_BUFLEN], guest_uuid[VIR_UUID_STRING_BUFLEN];
        GError *error = NULL;

        g_assert_cmpint(virDomainGetUUIDString(g, uuid), ==, 0);
        g_assert_cmpint(virDomainGetUUIDString(guest, guest_uuid), ==, 0);
        g_autofree char *path = lv_attach(bus, "lvtest-outside", img, PASS,
                                          lv_opts("target", g_variant_new_string("sdb"), NULL), &error);
        g_assert_no_error(error);
        guint sub = g_dbus_connection_signal_subscribe(bus, LV_BUS_NAME, "org.freedesktop.DBus.Properties",
                                                       "PropertiesChanged", path, LV_VOLUME_IFACE,
                                                       G_DBUS_SIGNAL_FLAGS_NONE, on_properties_changed, &sig, NULL);

        g_assert_cmpint(virDomainBlockResize(g, "sdb", 24 * MIB, VIR_DOMAIN_BLOCK_RESIZE_BYTES), ==, 0);
        g_assert_cmpint(guest_size(g, "sdb"), ==, (gint64) (24 * MIB));

        lv_restart_libvirtd();
        virDomainFree(g);
        g = virDomainLookupByUUIDString(lv_virt(), uuid);
        g_assert_nonnull(g);
        virDomainFree(guest);
        guest = virDomainLookupByUUIDString(lv_virt(), guest_uuid);
        g_assert_nonnull(guest);

        g_assert_true(wait_size_signal_ms(&sig, 24 * MIB, 60000));
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 24 * MIB);
        g_dbus_connection_signal_unsubscribe(bus, sub);
        g_array_unref(sig.sizes);

        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);
}

/* ------------------------------------------------------------ polkit */

static void test_polkit(void) {
        g_autofree char *img = lv_make_luks1_image("r-polkit.img", PASS, PATTERN, 16);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        /* The defaults: a plain user is asked to authenticate for both. */
        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sdg"), NULL), &error);
        g_assert_no_error(error);
        g_assert_false(lv_resize(user, path, 32 * MIB, NULL, &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_false(lv_volume_detach(user, path, NULL, &error));
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdg"), ==, (gint64) (16 * MIB));
        g_autofree char *state = lv_volume_prop_string(bus, path, "State");
        g_assert_cmpstr(state, ==, "attached");
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        /* A rule on the resize action's details: lvadmin may grow volumes
         * of this guest up to 64 MiB, and attach and detach. */
        lv_polkit_set_rules(
                "50-resize.rules",
                "polkit.addRule(function(action, subject) {\n"
                "  if (subject.user != 'lvadmin') return polkit.Result.NOT_HANDLED;\n"
                "  if (action.id == 'org.example.luksvolume1.attach' || action.id == 'org.example.luksvolume1.detach')\n"
                "    return polkit.Result.YES;\n"
                "  if (action.id == 'org.example.luksvolume1.resize' && action.lookup('domain') == 'lvtest-guest' &&\n"
                "      action.lookup('target') == 'sdg' && action.lookup('source').indexOf('/r-polkit.img') > 0 &&\n"
                "      parseInt(action.lookup('size'), 10) <= 64 * 1024 * 1024)\n"
                "    return polkit.Result.YES;\n"
                "  return polkit.Result.NO;\n"
                "});\n");

        guint64 t0 = realtime_usec();
        g_autofree char *apath = lv_attach(admin, "lvtest-guest", img, PASS,
                                           lv_opts("target", g_variant_new_string("sdg"), NULL), &error);
        guint64 t1 = realtime_usec();
        g_assert_no_error(error);
        check_attach_facts(apath, img, 16 * MIB, "", LV_TEST_UID_ADMIN, t0, t1);
        g_assert_true(lv_resize(admin, apath, 48 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_resize(admin, apath, 128 * MIB, NULL, &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);
        g_assert_cmpint(guest_size(guest, "sdg"), ==, (gint64) (48 * MIB));
        g_assert_true(lv_volume_detach(admin, apath, NULL, &error));
        g_assert_no_error(error);

        lv_polkit_set_rules("50-resize.rules", NULL);
        assert_clean();
}

/* --------------------------------------------------- a real guest kernel */

/* The guest's own kernel sees the new size of a hot-plugged virtio disk
 * (virtio-blk's config change), and its serial. */
static void test_guest_kernel(void) {
        if (!lv_heartbeat_disks_possible()) {
                g_test_skip("no kernel with virtio_blk modules (linux-image-amd64)");
                return;
        }
        g_autofree char *img = lv_make_luks1_image("r-kernel.img", PASS, PATTERN, 16);
        g_autofree char *console = NULL;
        virDomainPtr g = lv_start_heartbeat_guest_disks("lvtest-kernel", &console);
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "lvtest-kernel", img, PASS,
                                          lv_opts("serial", g_variant_new_string("LVKERNEL01"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(g_str_has_suffix(path, "_vda"));

        /* The guest names its first virtio disk vda, as libvirt does. */
        g_autofree char *serial = NULL;
        g_assert_true(lv_heartbeat_wait_disk(console, "vda", 16 * MIB / 512, 60000, &serial));
        g_assert_cmpstr(serial, ==, "LVKERNEL01");

        g_assert_true(lv_resize(bus, path, 40 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_true(lv_heartbeat_wait_disk(console, "vda", 40 * MIB / 512, 30000, NULL));

        /* A guest with a kernel lets go of the disk. */
        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_domain_has_disk(g, "vda"));
        lv_destroy_guest(g);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/resize/native-file", test_native_file);
        g_test_add_func("/resize/native-block-device", test_native_block_device);
        g_test_add_func("/resize/refusals", test_refusals);
        g_test_add_func("/resize/volume-detach-busy", test_volume_detach_busy);
        g_test_add_func("/resize/attach-options", test_options);
        g_test_add_func("/resize/restart", test_restart);
        g_test_add_func("/resize/outside-resize", test_outside_resize);
        g_test_add_func("/resize/polkit", test_polkit);
        g_test_add_func("/resize/guest-kernel", test_guest_kernel);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
