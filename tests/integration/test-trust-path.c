/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One identity from check to use (issue 16, item 3), on the real stack:
 * what polkit approved is what the guest's QEMU gets, even when the caller
 * can write a directory on the path and swaps the approved file for a
 * symlink to another LUKS file while the attach runs.
 *
 * Native mode only: this host has no device-mapper, so cryptsetup mode
 * (whose loop device is bound to the checked descriptor) runs in tests/vm.
 *
 * The daemon runs with --fault-file=/run/lvtest/fault. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
static virDomainPtr guest;

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

/* ------------------------------------------------------------ the swapper */

typedef struct Swapper {
        int dir_fd;
        volatile gint stop;
        guint64 swaps;
} Swapper;

/* Exchanges own.img (the caller's LUKS file) and link (a symlink to
 * another LUKS file) in the caller's directory, atomically, again and
 * again: at any moment the approved name is one or the other. */
static gpointer swap_loop(gpointer data) {
        Swapper *s = data;
        guint32 seed = 0x9e3779b9;

        while (!g_atomic_int_get(&s->stop)) {
                if (syscall(SYS_renameat2, s->dir_fd, "own.img", s->dir_fd, "link", 2 /* RENAME_EXCHANGE */) < 0)
                        g_error("renameat2: %s", g_strerror(errno));
                s->swaps++;
                /* Leave each state for 20-300 µs: the daemon's and QEMU's
                 * opens each see one or the other. */
                seed = seed * 1664525 + 1013904223;
                g_usleep(20 + (seed >> 8) % 280);
        }
        /* Leave own.img a file again. */
        struct stat st;
        if (fstatat(s->dir_fd, "own.img", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                (void) syscall(SYS_renameat2, s->dir_fd, "own.img", s->dir_fd, "link", 2);
        return NULL;
}

static void make_user_dir(const char *path) {
        g_assert_no_errno(g_mkdir(path, 0755));
        g_assert_no_errno(chown(path, LV_TEST_UID_USER, LV_TEST_GID_GROUP));
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

        g_autofree char *rule = g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if (subject.user != 'lvuser' || action.id.indexOf('org.example.luksvolume1.') != 0)\n"
                "    return polkit.Result.NOT_HANDLED;\n"
                "  if (action.id == 'org.example.luksvolume1.attach')\n"
                "    return action.lookup('source').indexOf('%s/') == 0 ? polkit.Result.YES : polkit.Result.NO;\n"
                "  return polkit.Result.NO;\n"
                "});\n",
                alice);
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

        pid_t pid = qemu_pid(GUEST);
        Swapper sw = { .dir_fd = open(alice, O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
        g_assert_cmpint(sw.dir_fd, >=, 0);
        GThread *t = g_thread_new("swap", swap_loop, &sw);

        g_autoptr(GHashTable) outcomes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        guint attached = 0, wrong = 0;
        gint64 t0 = g_get_monotonic_time();
        for (guint i = 0; i < ROUNDS; i++) {
                g_autofree char *p = lv_attach(user, GUEST, own, PASS, native_scsi(), &error);
                g_autofree char *what = NULL;
                if (p) {
                        attached++;
                        what = g_strdup("success");
                        if (qemu_has_open(pid, vst.st_dev, vst.st_ino)) {
                                wrong++;
                                g_test_message("round %u: the guest's QEMU has %s open", i, victim);
                        }
                        g_assert_true(lv_detach(bus, p, NULL, &error));
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
                if (!p && qemu_has_open(pid, vst.st_dev, vst.st_ino)) {
                        wrong++;
                        g_autofree char *xml = lv_domain_xml(guest);
                        g_test_message("round %u: QEMU kept %s open after a failed attach (disk in the XML: %s)", i,
                                       victim, strstr(xml, "ua-luksvol-") ? "yes" : "no");
                        g_usleep(2 * G_USEC_PER_SEC);
                        g_test_message("round %u: 2 s later: %s", i,
                                       qemu_has_open(pid, vst.st_dev, vst.st_ino) ? "still open" : "closed");
                }
                guint n = GPOINTER_TO_UINT(g_hash_table_lookup(outcomes, what));
                g_hash_table_replace(outcomes, g_strdup(what), GUINT_TO_POINTER(n + 1));
        }
        g_atomic_int_set(&sw.stop, 1);
        g_thread_join(t);
        close(sw.dir_fd);

        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, outcomes);
        while (g_hash_table_iter_next(&it, &k, &v))
                g_test_message("%s: %u", (const char *) k, GPOINTER_TO_UINT(v));
        g_test_message("%u rounds in %.1f s, %" G_GUINT64_FORMAT " swaps, %u attached, %u with the other file", ROUNDS,
                       (g_get_monotonic_time() - t0) / 1e6, sw.swaps, attached, wrong);

        g_assert_cmpuint(wrong, ==, 0);
        /* Only typed answers: success, polkit's no for the other name,
         * Busy for "it changed", or libvirt's refusal passed on. */
        g_hash_table_iter_init(&it, outcomes);
        while (g_hash_table_iter_next(&it, &k, &v))
                g_assert_true(g_str_equal(k, "success") || g_str_equal(k, LV_ERR("Busy")) ||
                              g_str_equal(k, "org.freedesktop.DBus.Error.AccessDenied") ||
                              g_str_equal(k, "libvirt's refusal"));
        /* The test attacked: some attaches got through, some were caught. */
        g_assert_cmpuint(attached, >, 0);
        g_assert_cmpuint(attached, <, ROUNDS);
        assert_clean();
        lv_polkit_set_rules("50-own-dir.rules", NULL);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest(GUEST);

        g_test_add_func("/trust-path/symlink-swap", test_symlink_swap);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
