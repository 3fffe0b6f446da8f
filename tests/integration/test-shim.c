/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The header shim (issue 17) on the real stack, inside the TCG VM whose
 * kernel has device-mapper (tests/vm/run-in-vm.sh): LUKS2 volumes with
 * 512-byte sectors, and LUKS1 volumes, attached natively through a
 * one-time LUKS1 header in front of their payload (a device-mapper linear
 * device).  QEMU's LUKS driver reads the plaintext written through dm-crypt
 * beforehand; no dm-crypt mapping exists on the host meanwhile; detach,
 * kill -9, resize, save/restore and a wrong passphrase leave no device,
 * loop device or secret behind. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "header shim passphrase"
#define PATTERN 0x5c
#define MIB     (G_GUINT64_CONSTANT(1) << 20)

static GDBusConnection *bus;
static virDomainPtr guest;

/* ---- the host's device-mapper and loop devices, as dmsetup/losetup say -- */

static char *run_out(const char *const *argv) {
        char *out = NULL;
        g_assert_cmpint(lv_run_as(0, argv, 60, &out, NULL), ==, 0);
        return out;
}

/* Lines of `dmsetup table` whose target is crypt (the host's cleartext). */
static guint count_crypt_targets(void) {
        const char *argv[] = { "dmsetup", "table", NULL };
        g_autofree char *out = run_out(argv);
        g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
        guint k = 0;

        for (guint i = 0; lines[i]; i++) {
                g_auto(GStrv) f = g_strsplit_set(lines[i], " \t", -1);
                /* "NAME: START LENGTH TARGET ARGS" */
                if (g_strv_length(f) > 3 && g_str_equal(f[3], "crypt"))
                        k++;
        }
        return k;
}

static guint count_ours(void) {
        g_autoptr(GDir) d = g_dir_open("/dev/mapper", 0, NULL);
        const char *n;
        guint k = 0;

        if (!d)
                return 0;
        while ((n = g_dir_read_name(d)))
                if (g_str_has_prefix(n, "luksvol-"))
                        k++;
        return k;
}

static guint count_loops(void) {
        const char *argv[] = { "losetup", "-a", "-n", "-O", "NAME", NULL };
        g_autofree char *out = run_out(argv);
        g_auto(GStrv) lines = g_strsplit(g_strstrip(out), "\n", -1);
        guint k = 0;
        for (guint i = 0; lines[i]; i++)
                if (*lines[i])
                        k++;
        return k;
}

static guint loops_at_start;

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_cmpuint(count_ours(), ==, 0);
        g_assert_cmpuint(count_crypt_targets(), ==, 0);
        /* Loop devices clear themselves once their last user lets go. */
        for (guint i = 0; i < 50 && count_loops() > loops_at_start; i++)
                g_usleep(100 * 1000);
        g_assert_cmpuint(count_loops(), ==, loops_at_start);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "/dev/mapper/"));
}

/* ---- images ---------------------------------------------------------------- */

static char *keyfile(const char *passphrase) {
        char *path = lv_sandbox_path("shim.key");
        g_assert_true(g_file_set_contents(path, passphrase, (gssize) strlen(passphrase), NULL));
        g_assert_no_errno(chmod(path, 0600));
        return path;
}

/* A LUKS image made by cryptsetup (PBKDF2, 1000 iterations) with the
 * given type and sector size, the pattern written into its plaintext
 * through a dm-crypt mapping of the test's own. */
static char *make_image(const char *name, const char *type, guint sector_size, guint size_mib) {
        g_autofree char *key = keyfile(PASS);
        char *path = lv_sandbox_path(name);
        g_autofree char *size = g_strdup_printf("%uM", size_mib);
        g_autofree char *sector = g_strdup_printf("--sector-size=%u", sector_size);
        const char *trunc_argv[] = { "truncate", "-s", size, path, NULL };
        g_assert_cmpint(lv_run_as(0, trunc_argv, 30, NULL, NULL), ==, 0);
        const char *fmt_argv[] = { "cryptsetup",
                                   "luksFormat",
                                   "--batch-mode",
                                   "--type",
                                   type,
                                   "--pbkdf=pbkdf2",
                                   "--pbkdf-force-iterations=1000",
                                   g_str_equal(type, "luks2") ? sector : "--hash=sha256",
                                   "--key-file",
                                   key,
                                   path,
                                   NULL };
        g_assert_cmpint(lv_run_as(0, fmt_argv, 120, NULL, NULL), ==, 0);
        const char *open_argv[] = { "cryptsetup", "open", "--key-file", key, path, "lvtest-shimprep", NULL };
        g_assert_cmpint(lv_run_as(0, open_argv, 60, NULL, NULL), ==, 0);
        g_autofree char *cmd = g_strdup_printf(
                "head -c 65536 /dev/zero | tr '\\000' '\\%03o' > /dev/mapper/lvtest-shimprep && sync", PATTERN);
        const char *w_argv[] = { "sh", "-c", cmd, NULL };
        g_assert_cmpint(lv_run_as(0, w_argv, 60, NULL, NULL), ==, 0);
        const char *close_argv[] = { "cryptsetup", "close", "lvtest-shimprep", NULL };
        g_assert_cmpint(lv_run_as(0, close_argv, 60, NULL, NULL), ==, 0);
        g_assert_no_errno(chmod(path, 0644));
        g_unlink(key);
        return path;
}

/* QEMU's LUKS node on the shim device reads the pattern (and not its
 * complement: the check can fail). */
static void assert_qemu_reads(virDomainPtr dom, const char *shim_device) {
        g_autofree char *node = lv_guest_luks_node_for(dom, shim_device);
        g_assert_nonnull(node);
        g_assert_true(lv_guest_reads_pattern_on(dom, node, PATTERN, 65536));
        g_assert_false(lv_guest_reads_pattern_on(dom, node, PATTERN ^ 0xff, 65536));
}

static char *attach_shim(const char *img, const char *target, GVariant *extra_opts) {
        GError *error = NULL;
        GVariant *opts = extra_opts ? extra_opts : lv_opts("target", g_variant_new_string(target), NULL);
        char *path = lv_attach(bus, "lvtest-guest", img, PASS, opts, &error);
        g_assert_no_error(error);

        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_autofree char *header = lv_volume_prop_string(bus, path, "NativeHeader");
        g_autofree char *shim = lv_volume_prop_string(bus, path, "ShimDevice");
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        g_autofree char *secret = lv_volume_prop_string(bus, path, "SecretUUID");
        g_autofree char *source = lv_volume_prop_string(bus, path, "Source");
        g_assert_cmpstr(mode, ==, "native");
        g_assert_cmpstr(header, ==, "shim");
        g_assert_true(g_str_has_prefix(shim, "/dev/mapper/luksvol-shim-"));
        g_assert_cmpstr(mapper, ==, "");
        g_assert_cmpuint(strlen(secret), ==, 36);
        g_assert_cmpstr(source, ==, img);

        /* The guest's disk: the shim device with <encryption>; the host: a
         * linear table (two pieces), no crypt target anywhere. */
        g_autofree char *dxml = lv_domain_disk_xml(guest, target);
        g_assert_nonnull(strstr(dxml, shim));
        g_assert_nonnull(strstr(dxml, "<encryption"));
        g_assert_cmpuint(count_crypt_targets(), ==, 0);
        g_autofree char *name = g_path_get_basename(shim);
        const char *table_argv[] = { "dmsetup", "table", name, NULL };
        g_autofree char *table = run_out(table_argv);
        g_test_message("%s: %s", name, table);
        g_auto(GStrv) lines = g_strsplit(g_strstrip(table), "\n", -1);
        g_assert_cmpuint(g_strv_length(lines), ==, 2);
        g_assert_nonnull(strstr(lines[0], " linear "));
        g_assert_nonnull(strstr(lines[1], " linear "));
        assert_qemu_reads(guest, shim);
        return path;
}

static void detach(const char *path, const char *target) {
        GError *error = NULL;
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_domain_has_disk(guest, target));
        assert_clean();
}

/* ---- cases ----------------------------------------------------------------- */

static void test_probe(void) {
        g_autofree char *img512 = make_image("s-probe512.img", "luks2", 512, 20);
        g_autofree char *img4k = make_image("s-probe4k.img", "luks2", 4096, 20);
        GError *error = NULL;
        gboolean b = FALSE;
        const char *s = NULL;

        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(host, "header-shim", "b", &b));
        g_assert_true(b);

        g_autoptr(GVariant) a = lv_probe(bus, img512, &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(a, "native-capable", "b", &b));
        g_assert_true(b);
        g_assert_true(g_variant_lookup(a, "native-header", "&s", &s));
        g_assert_cmpstr(s, ==, "shim");

        g_autoptr(GVariant) c = lv_probe(bus, img4k, &error);
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(c, "native-capable", "b", &b));
        g_assert_false(b);
        g_assert_true(g_variant_lookup(c, "native-obstacle", "&s", &s));
        g_test_message("4096-byte sectors: %s", s);
        g_assert_nonnull(strstr(s, "4096-byte sectors"));
        g_assert_true(g_variant_lookup(c, "native-header", "&s", &s));
        g_assert_cmpstr(s, ==, "");
}

/* 4096-byte sectors: auto picks cryptsetup mode; native is refused with
 * the sector size named. */
static void test_luks2_4k_cryptsetup(void) {
        g_autofree char *img = make_image("s-4k.img", "luks2", 4096, 20);
        GError *error = NULL;

        g_assert_null(lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdb"), "mode", g_variant_new_string("native"), NULL), &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "4096-byte sectors"));
        g_clear_error(&error);
        assert_clean();

        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sdb"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_autofree char *header = lv_volume_prop_string(bus, path, "NativeHeader");
        g_assert_cmpstr(mode, ==, "cryptsetup");
        g_assert_cmpstr(header, ==, "");
        detach(path, "sdb");
}

static void test_luks2_auto(void) {
        g_autofree char *img = make_image("s-luks2.img", "luks2", 512, 20);
        g_autofree char *path = attach_shim(img, "sdc", NULL);
        detach(path, "sdc");
}

static void test_luks1_auto_and_volume_header(void) {
        g_autofree char *img = make_image("s-luks1.img", "luks1", 512, 16);
        g_autofree char *path = attach_shim(img, "sdd", NULL);
        detach(path, "sdd");

        /* The volume's own header on request: QEMU opens the image. */
        GError *error = NULL;
        g_autofree char *p2 = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdd"), "native-header", g_variant_new_string("volume"), NULL),
                &error);
        g_assert_no_error(error);
        g_autofree char *header = lv_volume_prop_string(bus, p2, "NativeHeader");
        g_autofree char *shim = lv_volume_prop_string(bus, p2, "ShimDevice");
        g_assert_cmpstr(header, ==, "volume");
        g_assert_cmpstr(shim, ==, "");
        g_assert_cmpuint(count_ours(), ==, 0);
        assert_qemu_reads(guest, img);
        detach(p2, "sdd");
}

static void test_block_device(void) {
        g_autofree char *img = make_image("s-block.img", "luks2", 512, 20);
        g_autofree char *dev = lv_losetup(img);
        loops_at_start++;
        g_autofree char *path = attach_shim(dev, "sde", NULL);
        detach(path, "sde");
        lv_losetup_detach(dev);
        loops_at_start--;
}

static void test_bad_passphrase(void) {
        g_autofree char *img = make_image("s-bad.img", "luks2", 512, 20);
        GError *error = NULL;

        g_assert_null(lv_attach(bus, "lvtest-guest", img, "not the passphrase",
                                lv_opts("target", g_variant_new_string("sdf"), NULL), &error));
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        assert_clean();
}

/* Attached by one daemon, found and detached by the next: the shim
 * device's table and UUID tell the volume. */
static void test_kill9_then_detach(void) {
        g_autofree char *img = make_image("s-kill.img", "luks2", 512, 20);
        g_autofree char *path = attach_shim(img, "sdg", NULL);
        g_autoptr(GVariant) before = lv_volume_props(bus, path);

        lv_daemon_kill(bus, SIGKILL);

        g_autoptr(GVariant) after = lv_volume_props(bus, path);
        lv_assert_props_rebuilt(before, after);
        assert_qemu_reads(guest, g_variant_get_string(g_variant_lookup_value(after, "ShimDevice", NULL), NULL));
        detach(path, "sdg");
}

static void test_resize(void) {
        g_autofree char *img = make_image("s-resize.img", "luks2", 512, 20);
        g_autofree char *path = attach_shim(img, "sdh", NULL);
        GError *error = NULL;
        guint64 old = lv_volume_prop_u64(bus, path, "Size");

        g_assert_true(lv_resize(bus, path, old + 8 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, old + 8 * MIB);
        g_autofree char *alias = lv_domain_disk_alias(guest, "sdh");
        g_assert_cmpint(lv_guest_disk_size(guest, alias), ==, (gint64) (old + 8 * MIB));
        g_autofree char *shim = lv_volume_prop_string(bus, path, "ShimDevice");
        assert_qemu_reads(guest, shim);

        g_assert_true(lv_resize(bus, path, old, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL), &error));
        g_assert_no_error(error);
        g_assert_cmpint(lv_guest_disk_size(guest, alias), ==, (gint64) old);
        detach(path, "sdh");
}

/* The shim stays while the domain is saved; the restored QEMU opens it
 * again with the same secret. */
static void test_save_restore(void) {
        g_autofree char *img = make_image("s-save.img", "luks2", 512, 20);
        g_autofree char *state = lv_sandbox_path("s-save.state");
        GError *error = NULL;

        virDomainPtr g = lv_start_guest("s-save");
        g_autofree char *path =
                lv_attach(bus, "s-save", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *shim = lv_volume_prop_string(bus, path, "ShimDevice");
        g_assert_true(g_str_has_prefix(shim, "/dev/mapper/luksvol-shim-"));

        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));
        g_assert_true(g_file_test(shim, G_FILE_TEST_EXISTS));
        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "s-save");
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        assert_qemu_reads(g, shim);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(g_file_test(shim, G_FILE_TEST_EXISTS));
        lv_destroy_guest(g);
        g_unlink(state);
        assert_clean();
}

static void undefine_secret(const char *uuid) {
        virSecretPtr sec = virSecretLookupByUUIDString(lv_virt(), uuid);
        g_assert_nonnull(sec);
        g_assert_cmpint(virSecretUndefine(sec), ==, 0);
        virSecretFree(sec);
}

/* Rearm of a saved shim volume: after its secret was lost (a libvirtd
 * restart drops ephemeral secrets), and after its device was lost too (a
 * host reboot): a new one-time header, the same secret UUID, the same
 * device path; the restored QEMU reads the plaintext.  A wrong passphrase
 * re-arms nothing. */
static void test_rearm(void) {
        g_autofree char *img = make_image("s-rearm.img", "luks2", 512, 20);
        g_autofree char *state = lv_sandbox_path("s-rearm.state");
        GError *error = NULL;

        virDomainPtr g = lv_start_guest("s-rearm");
        g_autofree char *path =
                lv_attach(bus, "s-rearm", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *shim = lv_volume_prop_string(bus, path, "ShimDevice");
        g_autofree char *secret = lv_volume_prop_string(bus, path, "SecretUUID");

        for (int round = 0; round < 2; round++) {
                g_assert_cmpint(virDomainSave(g, state), ==, 0);
                virDomainFree(g);
                g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));
                undefine_secret(secret);
                if (round == 1) {
                        g_autofree char *name = g_path_get_basename(shim);
                        const char *rm_argv[] = { "dmsetup", "remove", name, NULL };
                        g_assert_cmpint(lv_run_as(0, rm_argv, 30, NULL, NULL), ==, 0);
                        g_unlink(shim); /* no udev here to take the node away */
                }
                lv_volume_rearm(bus, path, "not the passphrase", &error);
                lv_assert_error(error, LV_ERR("BadPassphrase"));
                g_clear_error(&error);
                g_assert_cmpuint(lv_count_secrets(), ==, 0);

                lv_volume_rearm(bus, path, PASS, &error);
                g_assert_no_error(error);
                g_assert_cmpuint(lv_count_secrets(), ==, 1);
                g_assert_true(g_file_test(shim, G_FILE_TEST_EXISTS));
                g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
                g = virDomainLookupByName(lv_virt(), "s-rearm");
                g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
                assert_qemu_reads(g, shim);
                g_unlink(state);
        }
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        g_autofree char *misc = NULL;
        g_assert_true(g_file_get_contents("/proc/misc", &misc, NULL, NULL));
        if (!strstr(misc, "device-mapper"))
                g_error("no device-mapper in this kernel: run inside tests/vm/run-in-vm.sh");

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");
        loops_at_start = count_loops();

        g_test_add_func("/shim/probe", test_probe);
        g_test_add_func("/shim/luks2-4k-cryptsetup", test_luks2_4k_cryptsetup);
        g_test_add_func("/shim/luks2-auto", test_luks2_auto);
        g_test_add_func("/shim/luks1-auto-and-volume-header", test_luks1_auto_and_volume_header);
        g_test_add_func("/shim/block-device", test_block_device);
        g_test_add_func("/shim/bad-passphrase", test_bad_passphrase);
        g_test_add_func("/shim/kill9-then-detach", test_kill9_then_detach);
        g_test_add_func("/shim/resize", test_resize);
        g_test_add_func("/shim/save-restore", test_save_restore);
        g_test_add_func("/shim/rearm", test_rearm);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
