/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cryptsetup mode on the real stack, inside a TCG VM whose kernel has
 * device-mapper (tests/vm/run-in-vm.sh), inside the usual sandbox: the
 * daemon opens dm-crypt mappings with libcryptsetup and the nested guest's
 * QEMU reads the plaintext through /dev/mapper/luksvol-…
 *
 * /cryptsetup/raised/ restarts the daemon with a configuration file that
 * raises the version minimums above the host's. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "cryptsetup mode passphrase"
#define PATTERN 0x3c
#define MIB     (G_GUINT64_CONSTANT(1) << 20)

static GDBusConnection *bus;
static virDomainPtr guest;

static guint count_our_mappings(void) {
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

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_cmpuint(count_our_mappings(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "/dev/mapper/"));
}

/* Write the pattern into the plaintext of a LUKS image through a temporary
 * mapping of the test's own, so the guest has something to read. */
static void write_pattern_via_dm_key(const char *image, const void *key, gsize key_len) {
        g_autofree char *keyfile = lv_sandbox_path("pattern.key");
        g_assert_true(g_file_set_contents(keyfile, key, (gssize) key_len, NULL));
        const char *open_argv[] = { "cryptsetup", "open", "--key-file", keyfile, image, "lvtest-pattern", NULL };
        g_assert_cmpint(lv_run_as(0, open_argv, 60, NULL, NULL), ==, 0);
        g_autofree char *cmd = g_strdup_printf(
                "head -c 65536 /dev/zero | tr '\\000' '\\%03o' > /dev/mapper/lvtest-pattern && sync", PATTERN);
        const char *w_argv[] = { "sh", "-c", cmd, NULL };
        g_assert_cmpint(lv_run_as(0, w_argv, 60, NULL, NULL), ==, 0);
        const char *close_argv[] = { "cryptsetup", "close", "lvtest-pattern", NULL };
        g_assert_cmpint(lv_run_as(0, close_argv, 60, NULL, NULL), ==, 0);
        g_unlink(keyfile);
}

static void write_pattern_via_dm(const char *image, const char *passphrase) {
        write_pattern_via_dm_key(image, passphrase, strlen(passphrase));
}

/* QEMU reads the plaintext pattern from the guest's (non-LUKS) node for the
 * mapper device: the decryption happened in the kernel's dm-crypt. */
static gboolean guest_reads_pattern_on_mapper(const char *mapper, guint8 pattern) {
        return lv_guest_reads_pattern_on_device(guest, "/var/log/libvirt/qemu", mapper, pattern, 65536);
}

static void attach_cryptsetup_roundtrip(const char *image, GVariant *options, const char *target) {
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(bus, "lvtest-guest", image, PASS, options, &error);
        g_assert_no_error(error);

        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        g_autofree char *secret = lv_volume_prop_string(bus, path, "SecretUUID");
        g_autofree char *source = lv_volume_prop_string(bus, path, "Source");
        g_assert_cmpstr(mode, ==, "cryptsetup");
        g_assert_true(g_str_has_prefix(mapper, "/dev/mapper/luksvol-"));
        g_assert_cmpstr(secret, ==, "");
        g_assert_cmpstr(source, ==, image);
        g_assert_true(g_file_test(mapper, G_FILE_TEST_EXISTS));

        /* The guest's disk is the mapping, without <encryption>. */
        g_autofree char *dxml = lv_domain_disk_xml(guest, target);
        g_assert_nonnull(dxml);
        g_assert_nonnull(strstr(dxml, mapper));
        g_assert_null(strstr(dxml, "<encryption"));
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));
        g_assert_false(guest_reads_pattern_on_mapper(mapper, PATTERN ^ 0xff));
        g_assert_cmpuint(lv_count_secrets(), ==, 0);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_domain_has_disk(guest, target));
        g_assert_false(g_file_test(mapper, G_FILE_TEST_EXISTS));
        assert_clean();
}

static void test_probe_dm(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "", &error);
        gboolean b;
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "dm-crypt", "b", &b));
        g_assert_true(b);
}

static void test_luks2_auto(void) {
        g_autofree char *img = lv_make_luks2_image("c-luks2.img", PASS, 20);
        write_pattern_via_dm(img, PASS);
        attach_cryptsetup_roundtrip(
                img, lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdb"), NULL), "sdb");
}

static void test_luks1_forced(void) {
        g_autofree char *img = lv_make_luks1_image("c-luks1.img", PASS, PATTERN, 16);
        attach_cryptsetup_roundtrip(
                img, lv_opts("target", g_variant_new_string("sdc"), "mode", g_variant_new_string("cryptsetup"), NULL),
                "sdc");
}

static void test_block_device(void) {
        g_autofree char *img = lv_make_luks2_image("c-block.img", PASS, 20);
        write_pattern_via_dm(img, PASS);
        g_autofree char *dev = lv_losetup(img);
        attach_cryptsetup_roundtrip(dev, lv_opts("target", g_variant_new_string("sdd"), NULL), "sdd");
        lv_losetup_detach(dev);
}

static void test_bad_passphrase(void) {
        g_autofree char *img = lv_make_luks2_image("c-bad.img", PASS, 20);
        GError *error = NULL;
        char *path = lv_attach(bus, "lvtest-guest", img, "not the passphrase",
                               lv_opts("target", g_variant_new_string("sde"), NULL), &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        assert_clean();
}

/* Attached by one daemon, detached by the next, decided by the XML alone;
 * the next daemon reads Size and PayloadOffset from the mapping's table
 * (after a resize) and Serial from the XML. */
static void test_restart_then_detach(void) {
        g_autofree char *img = lv_make_luks2_image("c-restart.img", PASS, 20);
        GError *error = NULL;
        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdf"), "serial", g_variant_new_string("C-RESTART"), NULL),
                &error);
        g_assert_no_error(error);
        g_assert_true(lv_resize(bus, path, 8 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_autoptr(GVariant) before = lv_volume_props(bus, path);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, 8 * MIB);

        lv_daemon_kill(bus, SIGKILL);

        g_autoptr(GVariant) after = lv_volume_props(bus, path);
        lv_assert_props_rebuilt(before, after);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* With the version minimums raised above the host's (the documented
 * configuration setting; the daemon runs with --config=$LV_SANDBOX_DIR/
 * luksvolumed.conf), auto mode sends even a LUKS1 volume down the
 * cryptsetup path. */
static void test_raised_minimums(void) {
        g_autofree char *img = lv_make_luks1_image("c-raised.img", PASS, PATTERN, 16);
        g_autofree char *conf = lv_sandbox_path("luksvolumed.conf");
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(conf, "[Daemon]\nMinLibvirtVersion=99.0.0\nMinQemuVersion=99.0\n", -1, NULL));
        /* The next call activates a daemon that reads it. */
        lv_daemon_kill(bus, SIGTERM);

        g_autoptr(GVariant) info = lv_probe(bus, "", &error);
        gboolean native = TRUE;
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "native-luks", "b", &native));
        g_assert_false(native);
        attach_cryptsetup_roundtrip(img, lv_opts("target", g_variant_new_string("sdg"), NULL), "sdg");

        g_assert_cmpint(g_unlink(conf), ==, 0);
        lv_daemon_kill(bus, SIGTERM);
}

/* A passphrase QEMU cannot take (NUL, bytes that are not UTF-8): with the
 * volume's own header native refuses it; auto goes native through a header
 * shim (QEMU gets a one-time text passphrase, issue 17); cryptsetup mode
 * takes any bytes too. */
static void test_binary_passphrase(void) {
        static const guint8 key[] = { 'b', 0x00, 'i', 0x80, 'n', 0xff, 'a', 'r', 'y' };
        g_autofree char *img = lv_make_luks1_image_bytes("c-binary.img", key, sizeof key, 16);
        GError *error = NULL;

        write_pattern_via_dm_key(img, key, sizeof key);

        g_assert_null(
                lv_attach_bytes(bus, "lvtest-guest", img, key, sizeof key,
                                lv_opts("target", g_variant_new_string("sdh"), "mode", g_variant_new_string("native"),
                                        "native-header", g_variant_new_string("volume"), NULL),
                                NULL, &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "UTF-8"));
        g_clear_error(&error);
        assert_clean();

        g_autofree char *path = lv_attach_bytes(bus, "lvtest-guest", img, key, sizeof key,
                                                lv_opts("target", g_variant_new_string("sdh"), NULL), NULL, &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_autofree char *header = lv_volume_prop_string(bus, path, "NativeHeader");
        g_autofree char *shim = lv_volume_prop_string(bus, path, "ShimDevice");
        g_assert_cmpstr(mode, ==, "native");
        g_assert_cmpstr(header, ==, "shim");
        g_autofree char *node = lv_guest_luks_node_for(guest, shim);
        g_assert_nonnull(node);
        g_assert_true(lv_guest_reads_pattern_on(guest, node, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();

        g_autofree char *path2 = lv_attach_bytes(
                bus, "lvtest-guest", img, key, sizeof key,
                lv_opts("target", g_variant_new_string("sdh"), "mode", g_variant_new_string("cryptsetup"), NULL), NULL,
                &error);
        g_assert_no_error(error);
        g_autofree char *mapper = lv_volume_prop_string(bus, path2, "MapperDevice");
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* A header swapped for a null cipher (CVE-2025-59054 class: the "encrypted"
 * disk is plaintext) is refused in cryptsetup mode too, here where
 * device-mapper exists and the mapping could be made: NotSupported naming
 * the cipher, no mapping, no disk. */
static void test_null_cipher_refused(void) {
        const char *const modes[] = { "cryptsetup", "auto" };
        g_autofree char *img = lv_make_luks1_cryptsetup("c-null.img", PASS, 1000, (const char *const[]){ NULL });
        GError *error = NULL;

        lv_luks1_patch_cipher(img, "cipher_null", "ecb");
        for (gsize i = 0; i < G_N_ELEMENTS(modes); i++) {
                g_assert_null(lv_attach(
                        bus, "lvtest-guest", img, PASS,
                        lv_opts("target", g_variant_new_string("sdk"), "mode", g_variant_new_string(modes[i]), NULL),
                        &error));
                lv_assert_error(error, LV_ERR("NotSupported"));
                g_assert_nonnull(strstr(error->message, "cipher_null"));
                g_clear_error(&error);
                assert_clean();
        }
}

/* The file a mapping's loop device is bound to (LOOP_GET_STATUS64: the
 * identity the kernel holds, not a name that may point elsewhere now). */
static void mapping_backing(const char *mapper, dev_t *ret_dev, ino_t *ret_ino) {
        struct stat st;
        g_assert_no_errno(stat(mapper, &st));
        g_autofree char *slaves = g_strdup_printf("/sys/dev/block/%u:%u/slaves", major(st.st_rdev), minor(st.st_rdev));
        g_autoptr(GDir) d = g_dir_open(slaves, 0, NULL);
        g_assert_nonnull(d);
        const char *loop = g_dir_read_name(d);
        g_assert_nonnull(loop);
        g_assert_true(g_str_has_prefix(loop, "loop"));
        g_autofree char *node = g_strdup_printf("/dev/%s", loop);
        int fd = open(node, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        struct loop_info64 info = { 0 };
        g_assert_no_errno(ioctl(fd, LOOP_GET_STATUS64, &info));
        close(fd);
        *ret_dev = (dev_t) info.lo_device;
        *ret_ino = (ino_t) info.lo_inode;
}

/* Issue 16, item 3 in cryptsetup mode: lvuser may attach (and decrypt on
 * the host) only files under its own directory, and swaps its own file
 * with a symlink to another LUKS file (same passphrase) while attaching.
 * Every attach either fails with a typed error or maps the user's own
 * file — never the other — and nothing is left. */
static void test_symlink_swap(void) {
        g_autofree char *alice = lv_sandbox_path("c-alice");
        g_autofree char *vault = lv_sandbox_path("c-vault");
        g_assert_no_errno(g_mkdir(alice, 0755));
        g_assert_no_errno(chown(alice, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        g_assert_no_errno(g_mkdir(vault, 0755));
        g_autofree char *own_made = lv_make_luks1_image("c-own.img", PASS, PATTERN, 4);
        g_autofree char *victim_made = lv_make_luks1_image("c-victim.img", PASS, PATTERN, 4);
        g_autofree char *own = g_build_filename(alice, "own.img", NULL);
        g_autofree char *victim = g_build_filename(vault, "victim.img", NULL);
        g_autofree char *link = g_build_filename(alice, "link", NULL);
        g_assert_no_errno(rename(own_made, own));
        g_assert_no_errno(rename(victim_made, victim));
        g_assert_no_errno(chown(own, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        g_assert_no_errno(symlink(victim, link));
        g_assert_no_errno(lchown(link, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        struct stat ost, vst;
        g_assert_no_errno(stat(own, &ost));
        g_assert_no_errno(stat(victim, &vst));

        g_autofree char *rule = g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if (subject.user != 'lvuser' || action.id.indexOf('org.example.luksvolume1.') != 0)\n"
                "    return polkit.Result.NOT_HANDLED;\n"
                "  if (action.id == 'org.example.luksvolume1.attach' ||\n"
                "      action.id == 'org.example.luksvolume1.attach-cleartext')\n"
                "    return action.lookup('source').indexOf('%s/') == 0 ? polkit.Result.YES : polkit.Result.NO;\n"
                "  return polkit.Result.NO;\n"
                "});\n",
                alice);
        lv_polkit_set_rules("50-c-own-dir.rules", rule);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;
        const guint rounds = 30;
        guint attached = 0, wrong = 0, typed = 0;

        LvSwapper *sw = lv_swap_start(alice, "own.img", "link");
        for (guint i = 0; i < rounds; i++) {
                g_autofree char *p = lv_attach(user, "lvtest-guest", own, PASS,
                                               lv_opts("target", g_variant_new_string("sdl"), "mode",
                                                       g_variant_new_string("cryptsetup"), NULL),
                                               &error);
                if (!p) {
                        g_autofree char *name = lv_error_name(error);
                        g_test_message("round %u: %s: %s", i, name, error->message);
                        /* polkit's no for the other name, or Busy: "it
                         * changed while it was being checked". */
                        g_assert_true(g_str_equal(name, LV_ERR("Busy")) ||
                                      g_str_equal(name, "org.freedesktop.DBus.Error.AccessDenied"));
                        typed++;
                        g_clear_error(&error);
                        continue;
                }
                attached++;
                g_autofree char *mapper = lv_volume_prop_string(bus, p, "MapperDevice");
                dev_t dev;
                ino_t ino;
                mapping_backing(mapper, &dev, &ino);
                if (dev == vst.st_dev && ino == vst.st_ino) {
                        wrong++;
                        g_test_message("round %u: the mapping is over the other file", i);
                } else
                        g_assert_true(dev == ost.st_dev && ino == ost.st_ino);
                g_assert_true(lv_detach(bus, p, NULL, &error));
                g_assert_no_error(error);
        }
        guint64 swaps = lv_swap_stop(sw);
        g_test_message("%u rounds, %" G_GUINT64_FORMAT " swaps: %u attached (%u over the other file), %u refused",
                       rounds, swaps, attached, wrong, typed);
        g_assert_cmpuint(wrong, ==, 0);
        /* The test attacked: not every attach went through. */
        g_assert_cmpuint(attached, <, rounds);
        lv_polkit_set_rules("50-c-own-dir.rules", NULL);
        assert_clean();
}

/* A rule denying org.example.luksvolume1.attach-cleartext leaves native
 * attaches allowed and refuses every cleartext device on the host. */
static void test_cleartext_denied(void) {
        g_autofree char *luks2 = lv_make_luks2_image("c-deny2.img", PASS, 20);
        g_autofree char *luks1 = lv_make_luks1_image("c-deny1.img", PASS, PATTERN, 16);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        lv_polkit_set_rules("50-no-cleartext.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (subject.user != 'lvadmin') return polkit.Result.NOT_HANDLED;\n"
                            "  if (action.id == 'org.example.luksvolume1.attach-cleartext') return polkit.Result.NO;\n"
                            "  if (action.id.indexOf('org.example.luksvolume1.') == 0) return polkit.Result.YES;\n"
                            "});\n");

        g_assert_null(lv_attach(admin, "lvtest-guest", luks2, PASS,
                                lv_opts("target", g_variant_new_string("sdi"), NULL), &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.AccessDenied");
        g_assert_nonnull(strstr(error->message, "attach-cleartext"));
        g_clear_error(&error);
        assert_clean();

        /* Forcing cryptsetup mode on a LUKS1 volume: refused the same way. */
        g_assert_null(lv_attach(
                admin, "lvtest-guest", luks1, PASS,
                lv_opts("target", g_variant_new_string("sdi"), "mode", g_variant_new_string("cryptsetup"), NULL),
                &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.AccessDenied");
        g_clear_error(&error);
        assert_clean();

        /* Native is still allowed. */
        g_autofree char *path = lv_attach(admin, "lvtest-guest", luks1, PASS,
                                          lv_opts("target", g_variant_new_string("sdi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "native");
        g_assert_true(lv_detach(admin, path, NULL, &error));
        g_assert_no_error(error);

        lv_polkit_set_rules("50-no-cleartext.rules", NULL);
        assert_clean();
}

/* A block device another device-mapper device sits on is in use. */
static void test_dm_holder_in_use(void) {
        g_autofree char *img = lv_make_luks1_image("c-held.img", PASS, PATTERN, 16);
        g_autofree char *dev = lv_losetup(img);
        g_autofree char *sectors = NULL;
        GError *error = NULL;

        const char *size_argv[] = { "blockdev", "--getsz", dev, NULL };
        g_assert_cmpint(lv_run_as(0, size_argv, 30, &sectors, NULL), ==, 0);
        g_strstrip(sectors);
        g_autofree char *table = g_strdup_printf("0 %s linear %s 0", sectors, dev);
        const char *create_argv[] = { "dmsetup", "create", "lvtest-holder", "--table", table, NULL };
        g_assert_cmpint(lv_run_as(0, create_argv, 30, NULL, NULL), ==, 0);

        g_assert_null(lv_attach(bus, "lvtest-guest", dev, PASS, lv_opts("target", g_variant_new_string("sdj"), NULL),
                                &error));
        lv_assert_error(error, LV_ERR("InUse"));
        g_assert_nonnull(strstr(error->message, "lvtest-holder"));
        g_test_message("%s", error->message);
        g_clear_error(&error);
        assert_clean();

        const char *remove_argv[] = { "dmsetup", "remove", "lvtest-holder", NULL };
        g_assert_cmpint(lv_run_as(0, remove_argv, 30, NULL, NULL), ==, 0);
        lv_losetup_detach(dev);
}

/* "sysfs path of the block device behind node". */
static char *sys_block_of(const char *node) {
        struct stat st;
        g_assert_cmpint(stat(node, &st), ==, 0);
        g_assert_true(S_ISBLK(st.st_mode));
        return g_strdup_printf("/sys/dev/block/%u:%u", major(st.st_rdev), minor(st.st_rdev));
}

/* What udev's rules make of a change event on node (udevadm test: the
 * host's rules, run without a udevd). */
static char *udev_properties(const char *node) {
        g_autofree char *sys = sys_block_of(node);
        g_autofree char *out = NULL, *err = NULL;
        const char *argv[] = { "udevadm", "test", "--action=change", sys, NULL };
        g_assert_cmpint(lv_run_as(0, argv, 60, &out, &err), ==, 0);
        return g_strconcat(out, err, NULL);
}

/* The guest's file system on a cryptsetup-mode mapping is not the host's:
 * udev's rules must not probe it (blkid → automounters, udisks, LVM). */
static void test_udev_leaves_mapping_alone(void) {
        const char *rule = g_getenv("LV_UDEV_RULE");
        g_autofree char *img = lv_make_luks2_image("c-udev.img", PASS, 24);
        g_autofree char *keyfile = lv_sandbox_path("udev.key");
        GError *error = NULL;

        g_assert_nonnull(rule);
        /* A file system in the plaintext, made through a mapping of the
         * test's own. */
        g_assert_true(g_file_set_contents(keyfile, PASS, strlen(PASS), NULL));
        const char *open_argv[] = { "cryptsetup", "open", "--key-file", keyfile, img, "lvtest-fs", NULL };
        g_assert_cmpint(lv_run_as(0, open_argv, 60, NULL, NULL), ==, 0);
        const char *mkfs_argv[] = { "mkfs.ext4", "-q", "-F", "/dev/mapper/lvtest-fs", NULL };
        g_assert_cmpint(lv_run_as(0, mkfs_argv, 60, NULL, NULL), ==, 0);
        /* Positive control: on an ordinary mapping udev finds the file system. */
        g_autofree char *control = udev_properties("/dev/mapper/lvtest-fs");
        g_assert_nonnull(strstr(control, "ID_FS_TYPE=ext4"));
        const char *close_argv[] = { "cryptsetup", "close", "lvtest-fs", NULL };
        g_assert_cmpint(lv_run_as(0, close_argv, 60, NULL, NULL), ==, 0);
        g_unlink(keyfile);

        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("target", g_variant_new_string("sdk"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");

        /* Without the shipped rule a later change event would probe it —
         * the rule is what keeps it hidden then. */
        g_autofree char *bare = udev_properties(mapper);
        g_assert_nonnull(strstr(bare, "ID_FS_TYPE=ext4"));

        g_assert_cmpint(g_mkdir_with_parents("/run/udev/rules.d", 0755), ==, 0);
        g_autofree char *contents = NULL;
        g_assert_true(g_file_get_contents(rule, &contents, NULL, NULL));
        g_assert_true(g_file_set_contents("/run/udev/rules.d/60-luksvolumed.rules", contents, -1, NULL));
        g_autofree char *props = udev_properties(mapper);
        g_assert_null(strstr(props, "ID_FS_TYPE="));
        g_assert_nonnull(strstr(props, "UDISKS_IGNORE=1"));
        g_assert_nonnull(strstr(props, "DM_UDEV_DISABLE_DISK_RULES_FLAG=1"));
        g_unlink("/run/udev/rules.d/60-luksvolumed.rules");

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

static guint64 file_size(const char *path) {
        struct stat st;
        g_assert_cmpint(stat(path, &st), ==, 0);
        return (guint64) st.st_size;
}

/* The size of a block device, as the host kernel has it. */
static guint64 device_size(const char *node) {
        g_autofree char *out = NULL;
        const char *argv[] = { "blockdev", "--getsize64", node, NULL };
        g_assert_cmpint(lv_run_as(0, argv, 30, &out, NULL), ==, 0);
        return g_ascii_strtoull(out, NULL, 10);
}

static guint64 probe_u64(const char *source, const char *key) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, source, &error);
        guint64 v = 0;
        guint32 u = 0;
        g_assert_no_error(error);
        if (!g_variant_lookup(info, key, "t", &v) && g_variant_lookup(info, key, "u", &u))
                v = u;
        return v;
}

static gint64 guest_size(const char *target) {
        g_autofree char *alias = lv_domain_disk_alias(guest, target);
        g_assert_nonnull(alias);
        return lv_guest_disk_size(guest, alias);
}

static char *dm_table(const char *mapper) {
        g_autofree char *name = g_path_get_basename(mapper);
        char *out = NULL;
        const char *argv[] = { "dmsetup", "table", name, NULL };
        g_assert_cmpint(lv_run_as(0, argv, 30, &out, NULL), ==, 0);
        return out;
}

/* Resize in cryptsetup mode: the file, its loop device, the mapping, the
 * guest's disk — each exactly as big as asked, the plaintext intact. */
static void resize_roundtrip(const char *img, GVariant *options, const char *target) {
        GError *error = NULL;
        guint64 off = probe_u64(img, "payload-offset"), sector = probe_u64(img, "sector-size");

        g_autofree char *path = lv_attach(bus, "lvtest-guest", img, PASS, options, &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "cryptsetup");
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        guint64 size0 = lv_volume_prop_u64(bus, path, "Size");
        g_assert_cmpuint(size0, ==, file_size(img) - off);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "PayloadOffset"), ==, off);
        g_assert_cmpuint(device_size(mapper), ==, size0);
        g_assert_cmpint(guest_size(target), ==, (gint64) size0);

        /* Grow. */
        guint64 grown = size0 + 8 * MIB;
        g_assert_true(lv_resize(bus, path, grown, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(file_size(img), ==, grown + off);
        g_assert_cmpuint(device_size(mapper), ==, grown);
        g_assert_cmpint(guest_size(target), ==, (gint64) grown);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, grown);
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));

        /* A size the volume's sectors do not divide. */
        if (sector > 512) {
                g_assert_false(lv_resize(bus, path, grown + 512, NULL, &error));
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
        }

        /* Shrinking only when asked; then the file goes down too. */
        guint64 shrunk = grown - 4 * MIB;
        g_assert_false(lv_resize(bus, path, shrunk, NULL, &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        g_assert_cmpuint(device_size(mapper), ==, grown);
        g_assert_true(lv_resize(bus, path, shrunk, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL), &error));
        g_assert_no_error(error);
        g_assert_cmpuint(device_size(mapper), ==, shrunk);
        g_assert_cmpint(guest_size(target), ==, (gint64) shrunk);
        g_assert_cmpuint(file_size(img), ==, shrunk + off);
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));

        g_assert_true(lv_volume_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

static void test_resize_luks2(void) {
        g_autofree char *img = lv_make_luks2_image("c-resize2.img", PASS, 24);
        write_pattern_via_dm(img, PASS);
        resize_roundtrip(img, lv_opts("target", g_variant_new_string("sdl"), NULL), "sdl");
}

static void test_resize_luks1(void) {
        g_autofree char *img = lv_make_luks1_image("c-resize1.img", PASS, PATTERN, 16);
        resize_roundtrip(
                img, lv_opts("target", g_variant_new_string("sdm"), "mode", g_variant_new_string("cryptsetup"), NULL),
                "sdm");
}

/* A block device is not grown by the service: it must hold the size. */
static void test_resize_block_device(void) {
        g_autofree char *img = lv_make_luks2_image("c-resize-blk.img", PASS, 24);
        g_autofree char *dev = lv_losetup(img);
        GError *error = NULL;
        guint64 off = probe_u64(img, "payload-offset");

        write_pattern_via_dm(img, PASS);
        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", dev, PASS, lv_opts("target", g_variant_new_string("sdn"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        guint64 size0 = lv_volume_prop_u64(bus, path, "Size");

        g_assert_false(lv_resize(bus, path, size0 + 8 * MIB, NULL, &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "grow the device first"));
        g_clear_error(&error);
        g_assert_cmpuint(device_size(mapper), ==, size0);

        g_assert_cmpint(truncate(img, (off_t) (size0 + 8 * MIB + off)), ==, 0);
        const char *refresh[] = { "losetup", "-c", dev, NULL };
        g_assert_cmpint(lv_run_as(0, refresh, 30, NULL, NULL), ==, 0);
        g_assert_true(lv_resize(bus, path, size0 + 8 * MIB, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(device_size(mapper), ==, size0 + 8 * MIB);
        g_assert_cmpint(guest_size("sdn"), ==, (gint64) (size0 + 8 * MIB));
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));

        /* Unlike native mode, the mapping may hold less than the device. */
        g_assert_true(lv_resize(bus, path, size0 + 4 * MIB, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL),
                                &error));
        g_assert_no_error(error);
        g_assert_cmpuint(device_size(mapper), ==, size0 + 4 * MIB);
        g_assert_cmpint(guest_size("sdn"), ==, (gint64) (size0 + 4 * MIB));

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_losetup_detach(dev);
        assert_clean();
}

/* discard and serial in cryptsetup mode: auto picks it for discard; the
 * mapping allows discards, the disk passes them, the guest's device
 * carries the serial. */
static void test_discard_serial(void) {
        g_autofree char *img = lv_make_luks1_image("c-discard.img", PASS, PATTERN, 16);
        GError *error = NULL;

        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS,
                          lv_opts("target", g_variant_new_string("sdo"), "discard", g_variant_new_boolean(TRUE),
                                  "serial", g_variant_new_string("C-DISCARD_1"), NULL),
                          &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "cryptsetup");
        g_autofree char *serial = lv_volume_prop_string(bus, path, "Serial");
        g_assert_cmpstr(serial, ==, "C-DISCARD_1");
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        g_autofree char *table = dm_table(mapper);
        g_assert_nonnull(strstr(table, "allow_discards"));
        g_autofree char *dxml = lv_domain_disk_xml(guest, "sdo");
        g_assert_nonnull(strstr(dxml, "discard='unmap'") ?: strstr(dxml, "discard=\"unmap\""));
        g_autofree char *alias = lv_domain_disk_alias(guest, "sdo");
        g_autofree char *qserial = lv_guest_device_property(guest, alias, "serial");
        g_assert_cmpstr(qserial, ==, "C-DISCARD_1");
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        /* Without the option, no discards pass: the default is unchanged. */
        g_autofree char *path2 = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdo"), "mode", g_variant_new_string("cryptsetup"), NULL),
                &error);
        g_assert_no_error(error);
        g_autofree char *mapper2 = lv_volume_prop_string(bus, path2, "MapperDevice");
        g_autofree char *table2 = dm_table(mapper2);
        g_assert_null(strstr(table2, "allow_discards"));
        g_autofree char *dxml2 = lv_domain_disk_xml(guest, "sdo");
        g_assert_null(strstr(dxml2, "discard="));
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);

        /* native with discard: refused even here. */
        g_assert_null(lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("discard", g_variant_new_boolean(TRUE), "mode", g_variant_new_string("native"), NULL), &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_clear_error(&error);
        assert_clean();
}

/* Saved guests keep their mappings: virsh save/restore of a transient
 * guest, and managedsave/start of a persistent one across a daemon
 * restart; the restored guest reads the plaintext through the mapping. */
static void test_saved_keep_mapping(void) {
        g_autofree char *img = lv_make_luks2_image("c-save.img", PASS, 20);
        g_autofree char *state = lv_sandbox_path("c-save.state");
        GError *error = NULL;

        write_pattern_via_dm(img, PASS);

        virDomainPtr g = lv_start_guest("c-save");
        g_autofree char *path =
                lv_attach(bus, "c-save", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");

        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));
        g_assert_true(g_file_test(mapper, G_FILE_TEST_EXISTS));
        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "c-save");
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(g_file_test(mapper, G_FILE_TEST_EXISTS));
        lv_destroy_guest(g);
        g_unlink(state);

        /* managedsave, then the daemon dies; the next one keeps the
         * mapping (no orphan) and the guest starts from its image. */
        virDomainPtr pg = lv_start_persistent_guest("c-msave");
        g_autofree char *path2 =
                lv_attach(bus, "c-msave", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper2 = lv_volume_prop_string(bus, path2, "MapperDevice");
        g_assert_cmpint(virDomainManagedSave(pg, 0), ==, 0);
        g_assert_true(lv_volume_wait_state(bus, path2, "saved", 5000));
        lv_daemon_kill(bus, SIGKILL);
        g_assert_true(lv_volume_wait_state(bus, path2, "saved", 10000));
        g_assert_true(g_file_test(mapper2, G_FILE_TEST_EXISTS));
        g_assert_cmpint(virDomainCreate(pg), ==, 0);
        g_assert_true(lv_volume_wait_state(bus, path2, "attached", 5000));
        g_autoptr(GPtrArray) nodes = lv_guest_block_nodes(pg);
        gboolean read = FALSE;
        for (guint i = 0; i < nodes->len; i++) {
                LvBlockNode *n = nodes->pdata[i];
                if (g_strcmp0(n->file, mapper2) == 0 && g_strcmp0(n->drv, "luks") != 0)
                        read = lv_guest_reads_pattern_on(pg, n->node_name, PATTERN, 65536);
        }
        g_assert_true(read);
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);
        lv_remove_guest(pg);
        assert_clean();
}

/* The passphrase of a volume attached in cryptsetup mode is rotated while
 * the guest reads through the mapping (only the header changes; dm-crypt
 * holds the volume key); the old passphrase then fails and the new one
 * attaches again.  A file (through its loop device) and a block device,
 * whose lock is libcryptsetup's lock file. */
static void rotate_attached(const char *source, const char *image, const char *target) {
        static const char new_pass[] = "rotated cryptsetup passphrase";
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "lvtest-guest", source, PASS,
                                          lv_opts("target", g_variant_new_string(target), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "cryptsetup");
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));

        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", source, PASS, new_pass, TRUE, NULL, &error), ==, 0);
        g_assert_no_error(error);

        /* QEMU reads the mapping through the (VM's) page cache, which still
         * holds the plaintext read before: drop it, so that this read comes
         * from the device, through dm-crypt, after the header changed. */
        const char *drop_argv[] = { "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches", NULL };
        g_assert_cmpint(lv_run_as(0, drop_argv, 60, NULL, NULL), ==, 0);
        g_assert_true(guest_reads_pattern_on_mapper(mapper, PATTERN));
        g_assert_false(guest_reads_pattern_on_mapper(mapper, PATTERN ^ 0xff));
        g_assert_cmpint(lv_verify_passphrase(bus, image, PASS, &error), ==, -1);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_cmpint(lv_verify_passphrase(bus, image, new_pass, &error), >=, 0);
        g_assert_no_error(error);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();

        g_assert_null(lv_attach(bus, "lvtest-guest", source, PASS,
                                lv_opts("target", g_variant_new_string(target), NULL), &error));
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_autofree char *path2 = lv_attach(bus, "lvtest-guest", source, new_pass,
                                           lv_opts("target", g_variant_new_string(target), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper2 = lv_volume_prop_string(bus, path2, "MapperDevice");
        g_assert_true(guest_reads_pattern_on_mapper(mapper2, PATTERN));
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

static void test_rotate_attached(void) {
        g_autofree char *img = lv_make_luks2_image("c-rotate.img", PASS, 20);
        write_pattern_via_dm(img, PASS);
        rotate_attached(img, img, "sdl");

        g_autofree char *img2 = lv_make_luks2_image("c-rotate-dev.img", PASS, 20);
        write_pattern_via_dm(img2, PASS);
        g_autofree char *dev = lv_losetup(img2);
        rotate_attached(dev, img2, "sdm");
        lv_losetup_detach(dev);
}

/* ------------------------------------------------ a second writer never */

/* qemu-io opening source read-write, as another QEMU (a qemu:///session
 * guest, a later one) would: its exit status and stderr. */
static int qemu_io_writer(const char *source, char **ret_err) {
        const char *argv[] = { "qemu-io", "-f", "raw", "-c", "read 0 512", source, NULL };
        return lv_run_as(0, argv, 60, NULL, ret_err);
}

static void expect_writer_refused(const char *source, const char *when) {
        g_autofree char *err = NULL;
        int st = qemu_io_writer(source, &err);
        g_test_message("qemu-io on %s %s: status %d, %s", source, when, st, err);
        if (st == 0 || !strstr(err, "Failed to get \"write\" lock"))
                g_test_fail_printf("a second writer (qemu-io) opened %s %s (status %d: %s)", source, when, st, err);
}

static void expect_writer_allowed(const char *source) {
        int st = -1;
        /* The loop device lets go of the file once the mapping is gone. */
        for (int i = 0; i < 50 && st != 0; i++) {
                g_autofree char *err = NULL;
                st = qemu_io_writer(source, &err);
                if (st != 0)
                        g_usleep(100 * 1000);
        }
        g_assert_cmpint(st, ==, 0);
}

/* cryptsetup mode holds QEMU's own lock bytes on the image for as long
 * as the mapping lives — after kill -9 of the daemon too — and lets go
 * with the mapping.  A file (the loop device holds the locked open file)
 * and a block device (the next daemon locks it again). */
static void lock_roundtrip(const char *source, const char *target) {
        GError *error = NULL;
        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", source, PASS,
                lv_opts("target", g_variant_new_string(target), "mode", g_variant_new_string("cryptsetup"), NULL),
                &error);
        g_assert_no_error(error);

        expect_writer_refused(source, "while attached");
        lv_daemon_kill(bus, SIGKILL);
        g_autoptr(GVariant) props = lv_volume_props(bus, path); /* the next daemon, its scan done */
        expect_writer_refused(source, "after kill -9 of the daemon");

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        expect_writer_allowed(source);
}

static void test_qemu_lock_second_writer(void) {
        g_autofree char *img = lv_make_luks2_image("c-lock.img", PASS, 20);
        lock_roundtrip(img, "sdp");

        g_autofree char *img2 = lv_make_luks2_image("c-lock-dev.img", PASS, 20);
        g_autofree char *dev = lv_losetup(img2);
        lock_roundtrip(dev, "sdp");
        lv_losetup_detach(dev);
}

/* Does anyone hold an OFD lock on path's inode at QEMU's bytes (100…)? */
static gboolean qemu_locks_held(const char *path) {
        g_autofree char *locks = NULL;
        struct stat st;

        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_true(g_file_get_contents("/proc/locks", &locks, NULL, NULL));
        g_autofree char *needle = g_strdup_printf(":%lu 1", (unsigned long) st.st_ino);
        g_auto(GStrv) lines = g_strsplit(locks, "\n", -1);
        for (char **l = lines; *l; l++)
                if (strstr(*l, "OFDLCK") && strstr(*l, needle))
                        return TRUE;
        return FALSE;
}

/* An image a running qemu-io holds (with QEMU's locks): InUse in
 * cryptsetup mode, naming the holder, nothing created. */
static void test_qemu_io_holder_in_use(void) {
        g_autofree char *img = lv_make_luks2_image("c-holder.img", PASS, 20);
        g_autoptr(GError) spawn_error = NULL;
        GError *error = NULL;

        const char *argv[] = { "qemu-io", "-f", "raw", img, NULL };
        GSubprocess *holder = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_SILENCE,
                                                &spawn_error);
        g_assert_no_error(spawn_error);
        for (int i = 0; i < 500 && !qemu_locks_held(img); i++)
                g_usleep(20 * 1000);
        g_assert_true(qemu_locks_held(img));

        g_autofree char *path = lv_attach(
                bus, "lvtest-guest", img, PASS,
                lv_opts("target", g_variant_new_string("sdp"), "mode", g_variant_new_string("cryptsetup"), NULL),
                &error);
        if (path) {
                g_test_fail_printf("attached %s in cryptsetup mode although qemu-io holds it", img);
                g_assert_true(lv_detach(bus, path, NULL, NULL));
        } else {
                g_test_message("%s", error->message);
                lv_assert_error(error, LV_ERR("InUse"));
                g_assert_nonnull(strstr(error->message, "qemu-io"));
                g_clear_error(&error);
        }
        assert_clean();

        g_assert_true(g_output_stream_close(g_subprocess_get_stdin_pipe(holder), NULL, NULL));
        g_assert_true(g_subprocess_wait(holder, NULL, NULL));
        g_object_unref(holder);
}

/* ------------------------------------------- Resize on a stalled device */

typedef struct ResizeCall {
        const char *path;
        guint64 size;
        GError *error;
        gboolean ok;
        double seconds;
} ResizeCall;

static gpointer resize_thread(gpointer p) {
        ResizeCall *rc = p;
        gint64 t0 = g_get_monotonic_time();
        rc->ok = lv_resize(bus, rc->path, rc->size, lv_opts("allow-shrink", g_variant_new_boolean(TRUE), NULL),
                           &rc->error);
        rc->seconds = (double) (g_get_monotonic_time() - t0) / 1e6;
        return NULL;
}

/* The source is a dm-delay device whose writes take 30 s (reads are
 * immediate): a guest write in flight makes the kernel's suspend of the
 * mapping, which a resize needs, wait for it — a stalled file system under
 * the image.  The resize must answer within its deadline, and must never
 * hold the library lock meanwhile: a VerifyPassphrase of another image
 * answers at once. */
static void test_resize_stalled(void) {
        g_autofree char *img = lv_make_luks2_image("c-stall.img", PASS, 24);
        g_autofree char *other = lv_make_luks2_image("c-stall-other.img", PASS, 20);
        g_autofree char *dev = lv_losetup(img);
        g_autofree char *sectors = NULL;
        GError *error = NULL;

        const char *size_argv[] = { "blockdev", "--getsz", dev, NULL };
        g_assert_cmpint(lv_run_as(0, size_argv, 30, &sectors, NULL), ==, 0);
        g_strstrip(sectors);
        g_autofree char *table = g_strdup_printf("0 %s delay %s 0 0 %s 0 30000", sectors, dev, dev);
        /* No udev in the VM: the node is made by hand. */
        const char *create_argv[] = { "dmsetup", "create", "--noudevsync", "lvtest-delay", "--table", table, NULL };
        g_assert_cmpint(lv_run_as(0, create_argv, 30, NULL, NULL), ==, 0);
        const char *mknodes_argv[] = { "dmsetup", "mknodes", "lvtest-delay", NULL };
        g_assert_cmpint(lv_run_as(0, mknodes_argv, 30, NULL, NULL), ==, 0);

        g_autofree char *path = lv_attach(bus, "lvtest-guest", "/dev/mapper/lvtest-delay", PASS,
                                          lv_opts("target", g_variant_new_string("sdq"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper = lv_volume_prop_string(bus, path, "MapperDevice");
        guint64 size0 = lv_volume_prop_u64(bus, path, "Size");

        /* A write in flight for the next 30 s. */
        g_autofree char *of = g_strdup_printf("of=%s", mapper);
        const char *dd_argv[] = { "dd", "if=/dev/zero", of, "bs=4096", "count=1", "seek=16", "oflag=direct", NULL };
        g_autoptr(GError) dd_error = NULL;
        GSubprocess *dd = g_subprocess_newv(dd_argv, G_SUBPROCESS_FLAGS_STDERR_SILENCE, &dd_error);
        g_assert_no_error(dd_error);
        g_usleep(G_USEC_PER_SEC);

        ResizeCall rc = { .path = path, .size = size0 - 4 * MIB };
        GThread *t = g_thread_new("resize", resize_thread, &rc);
        g_usleep(2 * G_USEC_PER_SEC);

        gint64 t0 = g_get_monotonic_time();
        int slot = lv_verify_passphrase(bus, other, PASS, &error);
        if (slot < 0) {
                g_test_fail_printf("VerifyPassphrase of another image failed: %s", error->message);
                g_clear_error(&error);
        }
        double verify_s = (double) (g_get_monotonic_time() - t0) / 1e6;
        g_thread_join(t);

        g_test_message("VerifyPassphrase of another image during the resize: %.2f s; Resize: %.2f s, %s", verify_s,
                       rc.seconds, rc.ok ? "done" : rc.error->message);
        if (verify_s > 5.0)
                g_test_fail_printf("VerifyPassphrase of another image waited %.1f s behind the stalled resize",
                                   verify_s);
        if (rc.ok || rc.seconds > 20.0)
                g_test_fail_printf("Resize on a stalled device answered after %.1f s (%s)", rc.seconds,
                                   rc.ok ? "done" : rc.error->message);
        else
                lv_assert_error(rc.error, LV_ERR("Busy"));
        g_clear_error(&rc.error);

        /* Once the write is through, the mapping works again. */
        g_assert_true(g_subprocess_wait(dd, NULL, NULL));
        g_object_unref(dd);
        g_usleep(G_USEC_PER_SEC);
        g_autofree char *if_arg = g_strdup_printf("if=%s", mapper);
        const char *read_argv[] = { "dd", if_arg, "of=/dev/null", "bs=4096", "count=1", "iflag=direct", NULL };
        g_assert_cmpint(lv_run_as(0, read_argv, 30, NULL, NULL), ==, 0);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        const char *remove_argv[] = { "dmsetup", "remove", "--noudevsync", "lvtest-delay", NULL };
        g_assert_cmpint(lv_run_as(0, remove_argv, 30, NULL, NULL), ==, 0);
        lv_losetup_detach(dev);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        if (!g_file_test("/proc/misc", G_FILE_TEST_EXISTS))
                g_error("no /proc/misc");
        g_autofree char *misc = NULL;
        g_assert_true(g_file_get_contents("/proc/misc", &misc, NULL, NULL));
        if (!strstr(misc, "device-mapper"))
                g_error("no device-mapper in this kernel: run inside tests/vm/run-in-vm.sh");

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/cryptsetup/default/probe-dm", test_probe_dm);
        g_test_add_func("/cryptsetup/default/luks2-auto", test_luks2_auto);
        g_test_add_func("/cryptsetup/default/luks1-forced", test_luks1_forced);
        g_test_add_func("/cryptsetup/default/block-device", test_block_device);
        g_test_add_func("/cryptsetup/default/bad-passphrase", test_bad_passphrase);
        g_test_add_func("/cryptsetup/default/restart-then-detach", test_restart_then_detach);
        g_test_add_func("/cryptsetup/default/binary-passphrase", test_binary_passphrase);
        g_test_add_func("/cryptsetup/default/null-cipher-refused", test_null_cipher_refused);
        g_test_add_func("/cryptsetup/default/symlink-swap", test_symlink_swap);
        g_test_add_func("/cryptsetup/default/cleartext-denied", test_cleartext_denied);
        g_test_add_func("/cryptsetup/default/dm-holder-in-use", test_dm_holder_in_use);
        g_test_add_func("/cryptsetup/default/udev-leaves-mapping-alone", test_udev_leaves_mapping_alone);
        g_test_add_func("/cryptsetup/default/saved-keep-mapping", test_saved_keep_mapping);
        g_test_add_func("/cryptsetup/default/resize-luks2", test_resize_luks2);
        g_test_add_func("/cryptsetup/default/resize-luks1", test_resize_luks1);
        g_test_add_func("/cryptsetup/default/resize-block-device", test_resize_block_device);
        g_test_add_func("/cryptsetup/default/discard-serial", test_discard_serial);
        g_test_add_func("/cryptsetup/default/rotate-attached", test_rotate_attached);
        g_test_add_func("/cryptsetup/default/qemu-lock-second-writer", test_qemu_lock_second_writer);
        g_test_add_func("/cryptsetup/default/qemu-io-holder-in-use", test_qemu_io_holder_in_use);
        g_test_add_func("/cryptsetup/default/resize-stalled", test_resize_stalled);
        g_test_add_func("/cryptsetup/raised/luks1-auto", test_raised_minimums);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
