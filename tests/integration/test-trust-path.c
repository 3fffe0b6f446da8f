/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One identity from check to use (issue 16, item 3), on the real stack:
 * what polkit approved is what the guest's QEMU gets, even when the caller
 * can write a directory on the path and swaps the approved file for a
 * symlink to another LUKS file while the attach runs.
 *
 * Also (issue 16, point 5): after a restart a volume's identity is what
 * the guest has, not what the path names; Rearm re-arms only that file; an
 * attach whose undo cannot unplug keeps a visible "detaching" object, and a
 * plain disk of ours found at start-up is unplugged.
 *
 * Native mode only: this host has no device-mapper, so cryptsetup mode
 * (whose loop device is bound to the checked descriptor) is not exercised
 * here; no swap test for it exists in tests/vm yet.
 *
 * The daemon runs with --fault-file=/run/lvtest/fault. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "trust path passphrase"
#define PATTERN 0x3c
#define GUEST   "lvtest-guest"
#define ROUNDS  200

static GDBusConnection *bus;
static virDomainPtr guest, other;

static GVariant *native_scsi(void) {
        return lv_opts("bus", g_variant_new_string("scsi"), "mode", g_variant_new_string("native"), NULL);
}

static guint count_objects(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        return g_strv_length(objs);
}

static void assert_clean(void) {
        g_assert_cmpuint(count_objects(), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "ua-luksvol-"));
}

/* The guest's QEMU, from libvirt's pid file. */
static pid_t qemu_pid(const char *domain) {
        g_autofree char *path = g_strdup_printf("/run/libvirt/qemu/%s.pid", domain);
        g_autofree char *text = NULL;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                g_error("cannot read %s", path);
        return (pid_t) g_ascii_strtoll(text, NULL, 10);
}

/* Whether QEMU has (dev, ino) open: stat() through /proc/PID/fd/N follows
 * to the open file itself, not to a name. */
static gboolean qemu_has_open(pid_t pid, dev_t dev, ino_t ino) {
        g_autofree char *dir = g_strdup_printf("/proc/%d/fd", (int) pid);
        DIR *d = opendir(dir);
        struct dirent *de;
        gboolean found = FALSE;

        if (!d)
                g_error("cannot open %s: %s", dir, g_strerror(errno));
        while ((de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
                        continue;
                if (S_ISREG(st.st_mode) && st.st_dev == dev && st.st_ino == ino)
                        found = TRUE;
        }
        closedir(d);
        return found;
}

static void make_user_dir(const char *path) {
        g_assert_no_errno(g_mkdir(path, 0755));
        g_assert_no_errno(chown(path, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
}

/* rounds attaches of approved by user while a and b in dir are swapped:
 * never may the guest's QEMU have the victim (vst) open, every answer is
 * typed, nothing is left. */
static void attack(GDBusConnection *user, const char *approved, const char *dir, const char *a, const char *b,
                   const struct stat *vst, const char *victim, guint rounds) {
        GError *error = NULL;
        pid_t pid = qemu_pid(GUEST);
        LvSwapper *sw = lv_swap_start(dir, a, b);

        g_autoptr(GHashTable) outcomes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        guint attached = 0, wrong = 0;
        gint64 t0 = g_get_monotonic_time();
        for (guint i = 0; i < rounds; i++) {
                g_autofree char *p = lv_attach(user, GUEST, approved, PASS, native_scsi(), &error);
                g_autofree char *what = NULL;
                if (p) {
                        attached++;
                        what = g_strdup("success");
                        if (qemu_has_open(pid, vst->st_dev, vst->st_ino)) {
                                wrong++;
                                g_test_message("round %u: the guest's QEMU has %s open", i, victim);
                        }
                        /* Failed twice in fresh-clone CIs (2026-12-06) with
                         * Busy: a late device-removed event of an undone
                         * plug at this target had started a clean-up of
                         * this volume.  Fixed (events are checked against
                         * the live XML); /lifecycle/stale-removed-event
                         * forces it. */
                        if (!lv_detach(bus, p, NULL, &error))
                                g_error("round %u: Detach of %s failed: %s", i, p, error ? error->message : "?");
                        g_assert_no_error(error);
                } else {
                        what = lv_error_name(error);
                        /* libvirt's own refusals: it labels (chowns) what
                         * the path names when it plugs, and keeps count of
                         * that in xattrs, which the swap confuses. */
                        if (g_str_equal(what, LV_ERR("Failed")) && strstr(error->message, "Cannot attach the disk: ")) {
                                g_free(what);
                                what = g_strdup("libvirt's refusal");
                        }
                        if (!g_hash_table_contains(outcomes, what))
                                g_test_message("round %u, first %s: %s", i, what, error->message);
                        g_clear_error(&error);
                }
                /* Never, not even after a failed attach. */
                if (!p && qemu_has_open(pid, vst->st_dev, vst->st_ino)) {
                        wrong++;
                        g_autofree char *xml = lv_domain_xml(guest);
                        g_test_message("round %u: QEMU kept %s open after a failed attach (disk in the XML: %s)", i,
                                       victim, strstr(xml, "ua-luksvol-") ? "yes" : "no");
                        g_usleep(2 * G_USEC_PER_SEC);
                        g_test_message("round %u: 2 s later: %s", i,
                                       qemu_has_open(pid, vst->st_dev, vst->st_ino) ? "still open" : "closed");
                }
                guint n = GPOINTER_TO_UINT(g_hash_table_lookup(outcomes, what));
                g_hash_table_replace(outcomes, g_strdup(what), GUINT_TO_POINTER(n + 1));
        }
        guint64 swaps = lv_swap_stop(sw);

        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, outcomes);
        while (g_hash_table_iter_next(&it, &k, &v))
                g_test_message("%s: %u", (const char *) k, GPOINTER_TO_UINT(v));
        g_test_message("%u rounds in %.1f s, %" G_GUINT64_FORMAT " swaps, %u attached, %u with the other file", rounds,
                       (g_get_monotonic_time() - t0) / 1e6, swaps, attached, wrong);

        g_assert_cmpuint(wrong, ==, 0);
        /* Only typed answers: success, polkit's no for the other name,
         * Busy for "it changed", or libvirt's refusal passed on. */
        g_hash_table_iter_init(&it, outcomes);
        while (g_hash_table_iter_next(&it, &k, &v))
                g_assert_true(g_str_equal(k, "success") || g_str_equal(k, LV_ERR("Busy")) ||
                              g_str_equal(k, "org.freedesktop.DBus.Error.AccessDenied") ||
                              g_str_equal(k, "libvirt's refusal"));
        /* The test attacked: some attaches were caught, and (in the long
         * run: ~10% get through) some got through. */
        g_assert_cmpuint(attached, <, rounds);
        if (rounds >= ROUNDS)
                g_assert_cmpuint(attached, >, 0);
        assert_clean();
}

static char *own_dir_rule(const char *dir) {
        return g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if (subject.user != 'lvuser' || action.id.indexOf('org.example.luksvolume1.') != 0)\n"
                "    return polkit.Result.NOT_HANDLED;\n"
                "  if (action.id == 'org.example.luksvolume1.attach')\n"
                "    return action.lookup('source').indexOf('%s/') == 0 ? polkit.Result.YES : polkit.Result.NO;\n"
                "  return polkit.Result.NO;\n"
                "});\n",
                dir);
}

/* The attack of issue 16, item 3: lvuser may attach only files under its
 * own directory; it attaches its own LUKS file while swapping it with a
 * symlink to another LUKS file (the same passphrase, so the verification
 * alone cannot tell).  Every attach either fails with a typed error or
 * succeeds with QEMU holding the user's own file — never the other. */
static void test_symlink_swap(void) {
        g_autofree char *alice = lv_sandbox_path("alice");
        g_autofree char *vault = lv_sandbox_path("vault");
        make_user_dir(alice);
        g_assert_no_errno(g_mkdir(vault, 0755));

        g_autofree char *own_made = lv_make_luks1_image("alice-own.img", PASS, PATTERN, 4);
        g_autofree char *victim_made = lv_make_luks1_image("victim.img", PASS, PATTERN + 1, 4);
        g_autofree char *own = g_build_filename(alice, "own.img", NULL);
        g_autofree char *victim = g_build_filename(vault, "victim.img", NULL);
        g_autofree char *link = g_build_filename(alice, "link", NULL);
        g_assert_no_errno(rename(own_made, own));
        g_assert_no_errno(rename(victim_made, victim));
        g_assert_no_errno(chown(own, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        g_assert_no_errno(symlink(victim, link));
        g_assert_no_errno(lchown(link, LV_TEST_UID_USER, LV_TEST_GID_GROUP));

        struct stat vst;
        g_assert_no_errno(stat(victim, &vst));

        g_autofree char *rule = own_dir_rule(alice);
        lv_polkit_set_rules("50-own-dir.rules", rule);

        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;

        /* Without the swap the rule works both ways. */
        g_autofree char *path = lv_attach(user, GUEST, own, PASS, native_scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_null(lv_attach(user, GUEST, victim, PASS, native_scsi(), &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.AccessDenied");
        g_clear_error(&error);
        assert_clean();

        attack(user, own, alice, "own.img", "link", &vst, victim, ROUNDS);
        lv_polkit_set_rules("50-own-dir.rules", NULL);
}

/* The same with a directory on the path: the user's vm/ (holding its
 * disk.img) exchanged with a symlink to a directory holding another
 * disk.img.  O_NOFOLLOW alone would not see this one: the symlink is not
 * the last component. */
static void test_symlink_swap_dir(void) {
        g_autofree char *bob = lv_sandbox_path("bob");
        g_autofree char *vm = g_build_filename(bob, "vm", NULL);
        g_autofree char *vault = lv_sandbox_path("vault2");
        make_user_dir(bob);
        make_user_dir(vm);
        g_assert_no_errno(g_mkdir(vault, 0755));

        g_autofree char *own_made = lv_make_luks1_image("bob-own.img", PASS, PATTERN, 4);
        g_autofree char *victim_made = lv_make_luks1_image("victim2.img", PASS, PATTERN + 1, 4);
        g_autofree char *own = g_build_filename(vm, "disk.img", NULL);
        g_autofree char *victim = g_build_filename(vault, "disk.img", NULL);
        g_autofree char *link = g_build_filename(bob, "vmlink", NULL);
        g_assert_no_errno(rename(own_made, own));
        g_assert_no_errno(rename(victim_made, victim));
        g_assert_no_errno(chown(own, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        g_assert_no_errno(symlink(vault, link));
        g_assert_no_errno(lchown(link, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
        struct stat vst;
        g_assert_no_errno(stat(victim, &vst));

        g_autofree char *rule = own_dir_rule(bob);
        lv_polkit_set_rules("50-own-dir.rules", rule);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);

        attack(user, own, bob, "vm", "vmlink", &vst, victim, ROUNDS / 2);
        lv_polkit_set_rules("50-own-dir.rules", NULL);
}

static gboolean wait_state(const char *path, const char *state, guint timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        for (;;) {
                g_autofree char *st = lv_volume_prop_string(bus, path, "State");
                if (g_strcmp0(st, state) == 0)
                        return TRUE;
                if (g_get_monotonic_time() >= deadline) {
                        g_test_message("%s: state '%s', not '%s'", path, st, state);
                        return FALSE;
                }
                g_usleep(20 * 1000);
        }
}

static gboolean has_object(const char *path) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        return g_strv_contains((const char *const *) objs, path);
}

/* ------------------------------------------------- a failed undo stays */

/* libvirt plugged the disk without its encryption (made believed with the
 * fault file) and the unplug that should undo it fails too: the guest has
 * ciphertext as a plain writable disk.  The volume is not dropped: its
 * object stays, "detaching", and the reconciliation unplugs the disk, after
 * which it is cleaned up like any other. */
static void test_failed_undo_stays_visible(void) {
        g_autofree char *img = lv_make_luks1_image("undo.img", PASS, PATTERN, 4);
        GError *error = NULL;

        g_assert_true(g_file_set_contents("/run/lvtest/fault", "attach:unencrypted-stuck", -1, NULL));
        g_assert_null(lv_attach(bus, GUEST, img, PASS, native_scsi(), &error));
        lv_assert_error(error, LV_ERR("Failed"));
        g_test_message("%s", error->message);
        g_assert_nonnull(strstr(error->message, "'detaching'"));
        g_clear_error(&error);
        g_assert_false(g_file_test("/run/lvtest/fault", G_FILE_TEST_EXISTS));

        /* Right after the answer: the object, detaching, and its disk. */
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 1);
        g_autofree char *state = lv_volume_prop_string(bus, objs[0], "State");
        g_assert_cmpstr(state, ==, "detaching");
        g_assert_true(lv_domain_has_disk(guest, "sda"));

        /* The reconciliation (every 2 s) asks the guest again. */
        gint64 deadline = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline && (has_object(objs[0]) || lv_count_secrets() > 0))
                g_usleep(100 * 1000);
        g_assert_true(lv_domain_wait_disk_gone(guest, "sda", 1000));
        assert_clean();
}

/* The same across a restart: a disk of ours in a guest that is neither
 * encrypted by QEMU nor on our mapping (plugged here directly through
 * libvirt, as an undo that never succeeded would leave it) is found by the
 * start-up scan, and the guest is made to let go of it. */
static void test_stray_plain_disk_unplugged(void) {
        g_autofree char *img = lv_make_luks1_image("stray.img", PASS, PATTERN, 4);
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(guest, uuid), ==, 0);
        g_autoptr(GString) hex = g_string_new(NULL);
        for (const char *c = uuid; *c; c++)
                if (*c != '-')
                        g_string_append_c(hex, *c);
        g_autofree char *xml = g_strdup_printf("<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                               "<source file='%s'/><target dev='sdd' bus='scsi'/>"
                                               "<alias name='ua-luksvol-%s_sdd'/></disk>",
                                               img, hex->str);
        g_assert_cmpint(virDomainAttachDeviceFlags(guest, xml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        g_assert_true(lv_domain_has_disk(guest, "sdd"));

        (void) count_objects(); /* running (activated), to be killed */
        goffset mark = lv_daemon_log_mark();
        lv_daemon_kill(bus, SIGKILL);
        (void) count_objects(); /* activates it: the start-up scan */
        g_assert_true(lv_domain_wait_disk_gone(guest, "sdd", 15000));
        g_autofree char *log = lv_daemon_log_since(mark);
        g_assert_nonnull(strstr(log, "is ours but not encrypted"));
        /* The disk leaves libvirt's XML before the daemon has handled the
         * device-removed event and dropped the object (seen on a loaded
         * machine): wait for that too. */
        gint64 until = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
        while (count_objects() > 0 && g_get_monotonic_time() < until)
                g_usleep(50 * 1000);
        assert_clean();
}

/* ------------------------------------------- identity after a restart */

static void exchange(const char *x, const char *y) {
        g_assert_no_errno((int) syscall(SYS_renameat2, AT_FDCWD, x, AT_FDCWD, y, 2 /* RENAME_EXCHANGE */));
}

/* After a restart the daemon re-derives a volume's identity.  From the
 * path it is whatever the path names at that moment: here another file,
 * swapped in for the restart and swapped back after, which then counts as
 * "already attached" for good while it is not.  The identity comes from
 * what the guest's QEMU has open (or stays unknown). */
static void test_rescan_identity(void) {
        g_autofree char *p = lv_make_luks1_image("rescan-p.img", PASS, PATTERN, 4);
        g_autofree char *q = lv_make_luks1_image("rescan-q.img", PASS, PATTERN + 2, 4);
        GError *error = NULL;

        g_autofree char *obj = lv_attach(bus, GUEST, p, PASS, native_scsi(), &error);
        g_assert_no_error(error);

        exchange(p, q);
        lv_daemon_kill(bus, SIGKILL);
        g_assert_true(wait_state(obj, "attached", 15000)); /* re-activated: rescanned */
        exchange(p, q);

        /* q names a file no guest has: it may be attached. */
        g_autofree char *obj_q = lv_attach(bus, "lvtest-other", q, PASS, native_scsi(), &error);
        if (error)
                g_test_message("%s", error->message);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, obj_q, NULL, &error));
        g_assert_no_error(error);
        /* p is the guest's: never a second writer. */
        g_assert_null(lv_attach(bus, "lvtest-other", p, PASS, native_scsi(), &error));
        g_autofree char *name = lv_error_name(error);
        g_test_message("%s: %s", name, error->message);
        g_assert_true(g_str_equal(name, LV_ERR("AlreadyAttached")) || g_str_equal(name, LV_ERR("InUse")));
        g_clear_error(&error);

        g_assert_true(lv_detach(bus, obj, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* A worker thread's libvirt connection that died with libvirtd fails
 * its next call ("libvirt is not reachable") and reconnects after: such an
 * answer is tried again, a few times. */
static void rearm(const char *obj, GError **error) {
        for (int i = 0;; i++) {
                g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
                        bus, LV_BUS_NAME, obj, LV_VOLUME_IFACE, "Rearm",
                        g_variant_new("(@ay@a{sv})",
                                      g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                      lv_opts(NULL)),
                        NULL, G_DBUS_CALL_FLAGS_NONE, 60000, NULL, error);
                if (i >= 5 || !*error || !strstr((*error)->message, "libvirt is not reachable"))
                        return;
                g_test_message("Rearm: %s; again", (*error)->message);
                g_clear_error(error);
        }
}

/* Rearm defines a saved volume's secret again after checking the
 * passphrase against its source: the file that was attached, not whatever
 * took its name meanwhile. */
static void test_rearm_identity(void) {
        virDomainPtr g = lv_start_guest("tp-rearm");
        g_autofree char *a = lv_make_luks1_image("rearm-a.img", PASS, PATTERN, 4);
        g_autofree char *b = lv_make_luks1_image("rearm-b.img", PASS, PATTERN + 3, 4);
        g_autofree char *path_name = lv_sandbox_path("rearm.img");
        g_autofree char *a_moved = lv_sandbox_path("rearm-a-moved.img");
        g_autofree char *state = lv_sandbox_path("tp-rearm.state");
        GError *error = NULL;

        g_assert_no_errno(rename(a, path_name));
        g_autofree char *obj = lv_attach(bus, "tp-rearm", path_name, PASS, native_scsi(), &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(wait_state(obj, "saved", 5000));
        lv_restart_libvirtd();
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        /* Handles of the old connection are dead. */
        virDomainFree(guest);
        virDomainFree(other);
        guest = virDomainLookupByName(lv_virt(), GUEST);
        other = virDomainLookupByName(lv_virt(), "lvtest-other");
        g_assert_nonnull(guest);
        g_assert_nonnull(other);

        g_assert_no_errno(rename(path_name, a_moved));
        g_assert_no_errno(rename(b, path_name));
        rearm(obj, &error);
        lv_assert_error(error, LV_ERR("Busy"));
        g_test_message("%s", error->message);
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);

        /* The file back under its name: re-armed, restored, detached. */
        g_assert_no_errno(rename(path_name, b));
        g_assert_no_errno(rename(a_moved, path_name));
        rearm(obj, &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "tp-rearm");
        g_assert_nonnull(g);
        g_assert_true(wait_state(obj, "attached", 5000));
        g_assert_true(lv_detach(bus, obj, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);
        g_unlink(state);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest(GUEST);
        other = lv_start_guest("lvtest-other");

        g_test_add_func("/trust-path/symlink-swap", test_symlink_swap);
        g_test_add_func("/trust-path/symlink-swap-dir", test_symlink_swap_dir);
        g_test_add_func("/trust-path/failed-undo-stays-visible", test_failed_undo_stays_visible);
        g_test_add_func("/trust-path/stray-plain-disk-unplugged", test_stray_plain_disk_unplugged);
        g_test_add_func("/trust-path/rescan-identity", test_rescan_identity);
        g_test_add_func("/trust-path/rearm-identity", test_rearm_identity);

        int r = g_test_run();
        lv_destroy_guest(other);
        lv_destroy_guest(guest);
        return r;
}
