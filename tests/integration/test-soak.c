/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A bounded soak: 200 attach/detach cycles over two domains, with the
 * daemon killed mid-attach and mid-detach (fault injection) and between
 * calls, and libvirtd restarted once.  At the end nothing is left (no
 * orphan secret, disk or object) and, over the last stretch served by one
 * daemon instance, its fd count and RSS are stable.
 *
 * Runs with --fault-file=$LV_SANDBOX_DIR/fault. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS   "soak passphrase"
#define CYCLES 200

static GDBusConnection *bus;

static guint count_fds(guint32 pid) {
        g_autofree char *dir = g_strdup_printf("/proc/%u/fd", pid);
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        guint n = 0;
        g_assert_nonnull(d);
        while (g_dir_read_name(d))
                n++;
        return n;
}

static guint64 rss_kib(guint32 pid) {
        g_autofree char *path = g_strdup_printf("/proc/%u/status", pid);
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        const char *p = strstr(text, "VmRSS:");
        g_assert_nonnull(p);
        return g_ascii_strtoull(p + 6, NULL, 10);
}

/* ASan keeps freed memory in quarantine (up to 256 MiB), so RSS says
 * nothing about leaks in a sanitizer build; LeakSanitizer does that job. */
static gboolean daemon_has_asan(guint32 pid) {
        g_autofree char *path = g_strdup_printf("/proc/%u/maps", pid);
        g_autofree char *maps = NULL;
        g_assert_true(g_file_get_contents(path, &maps, NULL, NULL));
        return strstr(maps, "libasan") != NULL;
}

static void set_fault(const char *spec) {
        g_autofree char *f = lv_sandbox_path("fault");
        g_assert_true(g_file_set_contents(f, spec, -1, NULL));
}

/* After a crash: whatever the daemon rebuilt, clear it through its API. */
static void detach_everything(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        for (char **o = objs; *o; o++) {
                g_autoptr(GError) error = NULL;
                g_assert_true(lv_detach(bus, *o, NULL, &error));
                g_assert_no_error(error);
        }
}

static void test_soak(void) {
        const char *names[2] = { "soak-a", "soak-b" };
        virDomainPtr doms[2] = { lv_start_guest(names[0]), lv_start_guest(names[1]) };
        char *imgs[2] = { lv_make_luks1_image("soak-a.img", PASS, 0x11, 16),
                          lv_make_luks1_image("soak-b.img", PASS, 0x22, 16) };
        guint32 pid_mark = 0;
        guint fds_mark = 0, kills = 0;
        guint64 rss_mark = 0;
        gint64 t0 = g_get_monotonic_time();

        for (int c = 1; c <= CYCLES; c++) {
                const char *dom = names[c % 2];
                const char *img = imgs[c % 2];
                GError *error = NULL;

                if (c == 60 || c == 110)
                        set_fault(c == 60 ? "attach:3" : "detach:2");
                if (c == 90) {
                        lv_restart_libvirtd();
                        for (int i = 0; i < 2; i++) {
                                char uuid[VIR_UUID_STRING_BUFLEN];
                                g_assert_cmpint(virDomainGetUUIDString(doms[i], uuid), ==, 0);
                                virDomainFree(doms[i]);
                                doms[i] = virDomainLookupByUUIDString(lv_virt(), uuid);
                                g_assert_nonnull(doms[i]);
                        }
                }
                if (c == 130) {
                        lv_daemon_kill(bus, SIGKILL);
                        kills++;
                }

                char *path = NULL;
                /* Right after a libvirtd restart the daemon may still be
                 * reconnecting: it must answer Failed, never hang. */
                for (int tries = 0; tries < 50 && !path; tries++) {
                        path = lv_attach(bus, dom, img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL),
                                         &error);
                        if (path)
                                break;
                        g_autofree char *name = lv_error_name(error);
                        if (g_str_equal(name, "org.freedesktop.DBus.Error.NoReply")) {
                                /* The injected kill. */
                                kills++;
                                g_clear_error(&error);
                                detach_everything();
                                continue;
                        }
                        lv_assert_error(error, LV_ERR("Failed"));
                        g_clear_error(&error);
                        g_usleep(100 * 1000);
                }
                g_assert_nonnull(path);

                if (!lv_detach(bus, path, NULL, &error)) {
                        g_autofree char *name = lv_error_name(error);
                        g_assert_cmpstr(name, ==, "org.freedesktop.DBus.Error.NoReply");
                        kills++;
                        g_clear_error(&error);
                        detach_everything();
                }
                g_free(path);

                if (c == 150) {
                        pid_mark = lv_daemon_pid(bus);
                        fds_mark = count_fds(pid_mark);
                        rss_mark = rss_kib(pid_mark);
                }
        }

        guint32 pid = lv_daemon_pid(bus);
        guint fds = count_fds(pid);
        guint64 rss = rss_kib(pid);
        g_test_message("%d cycles in %.1f s, %u daemon kills, 1 libvirtd restart", CYCLES,
                       (g_get_monotonic_time() - t0) / 1e6, kills);
        g_test_message("daemon after cycle 150: %u fds, %" G_GUINT64_FORMAT
                       " KiB RSS; after %d: %u fds, %" G_GUINT64_FORMAT " KiB RSS",
                       fds_mark, rss_mark, CYCLES, fds, rss);

        g_assert_cmpuint(kills, ==, 3);
        g_assert_cmpuint(pid, ==, pid_mark); /* one instance served the stretch */
        /* Worker threads (each with its libvirt connection) come and go. */
        g_assert_cmpuint(fds, <=, fds_mark + 4);
        if (daemon_has_asan(pid))
                g_test_message("AddressSanitizer build: RSS not compared (quarantine)");
        else
                g_assert_cmpuint(rss, <=, rss_mark + 2048);

        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        for (int i = 0; i < 2; i++) {
                g_assert_false(lv_domain_has_disk(doms[i], "sda"));
                lv_destroy_guest(doms[i]);
                g_free(imgs[i]);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        bus = lv_bus();
        g_test_add_func("/soak/cycles", test_soak);
        return g_test_run();
}
