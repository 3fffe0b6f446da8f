/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Passphrase descriptors that never deliver (issue 16, item 1), on the real
 * stack, as a user a polkit rule lets attach:
 *
 *   /trust-fd/fuse-file     20 Attach calls whose passphrase-fd is a regular
 *                           file on a FUSE mount whose read never returns.
 *                           Each gets InvalidArgs (only pipes and memfds)
 *                           within the deadline; Probe('') of root keeps
 *                           answering in < 1 s throughout.
 *   /trust-fd/pipe-race     20 Attach calls whose pipes the caller drains
 *                           itself, through a non-blocking description of
 *                           its own, whenever it puts a byte in: a daemon
 *                           that poll()s and then read()s the caller's
 *                           blocking description sits in read() for good.
 *                           Each call gets a typed error within the
 *                           deadline, Probe('') answers in < 1 s.
 *   /trust-fd/kinds         a regular file on an ordinary file system is
 *                           refused too; a memfd (sealed) and a pipe attach.
 *
 * Run against 0.2's daemon, the first two fail: the FUSE reads pin every
 * worker (Probe('') got no answer), the pipe race leaves reads that never
 * return. */

#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/mman.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS      "trust fd passphrase"
#define PATTERN   0x3c
#define GUEST     "lvtest-trust-fd"
#define N_CALLS   20
#define DEADLINE  10 /* s: the daemon's PASSPHRASE_FD_TIMEOUT_MS */
#define TYPED_ERR "org.example.LuksVolume1.Error."

static GDBusConnection *root_bus, *admin_bus;
static virDomainPtr guest;
static GSubprocess *fuse_fs;
static char *fuse_dir, *img;
/* One image per concurrent call: a second attach of one source is refused
 * (AlreadyAttached) before its descriptor would be read. */
static char *imgs[N_CALLS];

typedef struct Pending {
        GVariant *reply;
        GError *error;
        gboolean done;
        gint64 started, finished;
} Pending;

static void on_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        p->reply = g_dbus_connection_call_with_unix_fd_list_finish(G_DBUS_CONNECTION(source), NULL, res, &p->error);
        p->finished = g_get_monotonic_time();
        p->done = TRUE;
}

/* Attach of source as the delegated admin with passphrase-fd = fd (dup'ed
 * into the message; the caller keeps its own). */
static void attach_source_async(const char *source, int fd, Pending *p) {
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        gint idx = g_unix_fd_list_append(fds, fd, NULL);
        g_assert_cmpint(idx, >=, 0);
        GVariant *params = g_variant_new(
                "(ss@ay@a{sv})", GUEST, source, g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, "", 0, 1),
                lv_opts("passphrase-fd", g_variant_new_handle(idx), "bus", g_variant_new_string("scsi"), NULL));
        p->started = g_get_monotonic_time();
        g_dbus_connection_call_with_unix_fd_list(admin_bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params,
                                                 G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 60000, fds, NULL,
                                                 on_reply, p);
}

static void attach_async(int fd, Pending *p) {
        attach_source_async(img, fd, p);
}

static gboolean all_done(const Pending *p, gsize n) {
        for (gsize i = 0; i < n; i++)
                if (!p[i].done)
                        return FALSE;
        return TRUE;
}

/* Probe('') from root's connection, timed. */
static gint64 probe_usec(void) {
        g_autoptr(GError) error = NULL;
        gint64 t0 = g_get_monotonic_time();
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(root_bus, "", &error);
        g_assert_no_error(error);
        return g_get_monotonic_time() - t0;
}

typedef void (*tick_fn)(gpointer userdata);

/* Until every call is answered (or 40 s): Probe('') every ~50 ms, tick()
 * in between.  Asserts each Probe took < 1 s; returns the slowest. */
static gint64 probe_while_pending(Pending *p, gsize n, tick_fn tick, gpointer userdata) {
        gint64 until = g_get_monotonic_time() + 40 * G_USEC_PER_SEC, worst = 0;
        guint probes = 0;

        while (!all_done(p, n) && g_get_monotonic_time() < until) {
                gint64 took = probe_usec();
                probes++;
                worst = MAX(worst, took);
                if (took >= G_USEC_PER_SEC)
                        g_error("Probe('') took %.0f ms while passphrase reads were pending", took / 1000.0);
                for (int i = 0; i < 10; i++) {
                        if (tick)
                                tick(userdata);
                        g_main_context_iteration(NULL, FALSE);
                        g_usleep(5000);
                }
        }
        g_test_message("%u Probe('') calls while the attaches were pending, slowest %.1f ms", probes, worst / 1000.0);
        g_assert_true(all_done(p, n));
        return worst;
}

/* Every call: a typed D-Bus error (ours or InvalidArgs), within the
 * deadline and a little. */
static void assert_typed_within_deadline(Pending *p, gsize n) {
        guint busy = 0, invalid = 0;

        for (gsize i = 0; i < n; i++) {
                g_assert_null(p[i].reply);
                g_assert_nonnull(p[i].error);
                g_autofree char *name = lv_error_name(p[i].error);
                gint64 took = p[i].finished - p[i].started;
                g_test_message("call %zu: %s after %.1f s: %s", i, name, took / 1e6, p[i].error->message);
                g_assert_true(g_str_has_prefix(name, TYPED_ERR) ||
                              g_str_equal(name, "org.freedesktop.DBus.Error.InvalidArgs"));
                g_assert_cmpint(took, <, (DEADLINE + 3) * G_USEC_PER_SEC);
                if (g_str_equal(name, LV_ERR("Busy")))
                        busy++;
                else
                        invalid++;
                g_clear_error(&p[i].error);
        }
        g_test_message("%u Busy, %u InvalidArgs", busy, invalid);
        /* At least one call got as far as its descriptor. */
        g_assert_cmpuint(invalid, >=, 1);
}

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(root_bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_false(lv_domain_has_disk(guest, "sda"));
}

static void test_fuse_file(void) {
        g_autofree char *hang_read = g_build_filename(fuse_dir, "hang-read.img", NULL);
        Pending p[N_CALLS] = { 0 };
        int fds[N_CALLS];

        for (gsize i = 0; i < N_CALLS; i++) {
                fds[i] = open(hang_read, O_RDONLY | O_CLOEXEC);
                g_assert_cmpint(fds[i], >=, 0);
                attach_source_async(imgs[i], fds[i], &p[i]);
        }
        probe_while_pending(p, N_CALLS, NULL, NULL);
        /* Those past the per-uid caps (look-ups, descriptor reads) in flight
         * are refused for what the descriptor is; the rest are Busy. */
        guint refused_kind = 0;
        for (gsize i = 0; i < N_CALLS; i++) {
                g_autofree char *name = lv_error_name(p[i].error);
                if (g_str_equal(name, "org.freedesktop.DBus.Error.InvalidArgs")) {
                        g_assert_nonnull(strstr(p[i].error->message, "pipe or a memfd"));
                        refused_kind++;
                } else
                        g_assert_cmpstr(name, ==, LV_ERR("Busy"));
                close(fds[i]);
        }
        g_assert_cmpuint(refused_kind, >=, 1);
        assert_typed_within_deadline(p, N_CALLS);
        assert_clean();
}

typedef struct Race {
        int writer[N_CALLS];
        int thief[N_CALLS]; /* the caller's own non-blocking read description */
        gint64 stop_at;
        guint stolen;
} Race;

/* The caller puts a byte into each pipe and takes it back at once, for the
 * first few seconds, then stops writing but keeps the pipes open. */
static void race_tick(gpointer userdata) {
        Race *r = userdata;
        char c;

        if (g_get_monotonic_time() >= r->stop_at)
                return;
        for (gsize i = 0; i < N_CALLS; i++) {
                if (write(r->writer[i], "x", 1) != 1)
                        continue;
                if (read(r->thief[i], &c, 1) == 1)
                        r->stolen++;
        }
}

static void test_pipe_race(void) {
        Pending p[N_CALLS] = { 0 };
        Race r = { 0 };

        for (gsize i = 0; i < N_CALLS; i++) {
                int pp[2];
                char link[64];

                g_assert_no_errno(pipe2(pp, O_CLOEXEC)); /* blocking, as the daemon gets it */
                g_snprintf(link, sizeof link, "/proc/self/fd/%d", pp[0]);
                r.thief[i] = open(link, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
                g_assert_cmpint(r.thief[i], >=, 0);
                r.writer[i] = pp[1];
                attach_source_async(imgs[i], pp[0], &p[i]);
                close(pp[0]);
        }
        r.stop_at = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
        probe_while_pending(p, N_CALLS, race_tick, &r);
        g_test_message("the caller took back %u of its own bytes", r.stolen);
        assert_typed_within_deadline(p, N_CALLS);
        for (gsize i = 0; i < N_CALLS; i++) {
                close(r.writer[i]);
                close(r.thief[i]);
        }
        assert_clean();
}

static void test_kinds(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *file = lv_sandbox_path("passphrase.txt");
        Pending p = { 0 };

        /* A regular file on an ordinary file system: refused like any. */
        g_assert_true(g_file_set_contents(file, PASS, -1, NULL));
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        attach_async(fd, &p);
        while (!p.done)
                g_main_context_iteration(NULL, TRUE);
        close(fd);
        g_assert_null(p.reply);
        g_autofree char *name = lv_error_name(p.error);
        g_assert_cmpstr(name, ==, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&p.error);
        assert_clean();

        /* A sealed memfd attaches, read from its start. */
        fd = memfd_create("lv-pass", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, PASS, strlen(PASS)), ==, (gssize) strlen(PASS));
        g_assert_no_errno(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
        p = (Pending){ 0 };
        attach_async(fd, &p);
        while (!p.done)
                g_main_context_iteration(NULL, TRUE);
        close(fd);
        g_assert_no_error(p.error);
        const char *path;
        g_variant_get(p.reply, "(&o)", &path);
        g_assert_true(lv_domain_has_disk(guest, "sda"));
        g_assert_true(lv_detach(root_bus, path, NULL, &error));
        g_assert_no_error(error);
        g_variant_unref(p.reply);

        /* And the ordinary pipe (luksvolumectl's way). */
        g_autofree char *path2 =
                lv_attach_fd(admin_bus, GUEST, img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(root_bus, path2, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        if (argc < 2)
                g_error("usage: test-trust-fd [GTEST-OPTIONS] PATH-TO-hang-fuse.py");

        root_bus = lv_bus();
        /* lvadmin may attach (as a delegated admin would); it is not root,
         * so the daemon's per-uid caps apply to it. */
        lv_polkit_set_rules("50-trust-fd.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (subject.user == 'lvadmin' && action.id.indexOf('org.example.luksvolume1.') == 0)\n"
                            "    return polkit.Result.YES;\n"
                            "  return polkit.Result.NOT_HANDLED;\n"
                            "});\n");
        admin_bus = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        guest = lv_start_guest(GUEST);
        img = lv_make_luks1_image("trust-fd.img", PASS, PATTERN, 4);
        for (gsize i = 0; i < N_CALLS; i++) {
                g_autofree char *name = g_strdup_printf("trust-fd-%zu.img", i);
                imgs[i] = lv_make_luks1_image(name, PASS, PATTERN, 1);
        }
        fuse_fs = lv_mount_hang_fuse(argv[1], "fuse", NULL, &fuse_dir);

        g_test_add_func("/trust-fd/kinds", test_kinds);
        g_test_add_func("/trust-fd/fuse-file", test_fuse_file);
        g_test_add_func("/trust-fd/pipe-race", test_pipe_race);

        int r = g_test_run();
        lv_unmount_hang_fuse(g_steal_pointer(&fuse_fs), fuse_dir);
        lv_destroy_guest(guest);
        return r;
}
