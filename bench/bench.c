/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luksvolumed benchmark (not a test): run inside tests/sandbox/sandbox.sh by
 * bench/run.sh.  Every figure is compared with a baseline measured in the
 * same run:
 *
 *  1. cycle: D-Bus Attach+Detach through the daemon, against the floor of
 *     the same libvirt work done directly over one persistent connection
 *     (secret define+set, attach, detach and wait until gone, undefine);
 *  2. Probe('') latency percentiles while 8 slow attaches run, against
 *     Probe('') on an idle daemon;
 *  3. 8 slow attaches spread over 4 domains, against 8 on one domain;
 *  4. attach latency at concurrency 1, 2, 4, 8 (for the plot).
 *
 * Writes a Markdown table to stdout and CSV files into the directory given
 * as argv[1]. */

#include <gio/gio.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS "benchmark passphrase"
#define CYCLES 40
#define SLOW_ITER_MS 1500

static GDBusConnection *bus;
static const char *outdir;

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double percentile(GArray *a, double p) {
        g_array_sort(a, cmp_double);
        if (a->len == 0)
                return 0;
        guint i = (guint) (p / 100.0 * (a->len - 1) + 0.5);
        return g_array_index(a, double, MIN(i, a->len - 1));
}

static double now_ms(void) {
        return g_get_monotonic_time() / 1000.0;
}

/* ---- 1. cycle against the floor ---- */

static double floor_cycle(virDomainPtr dom, const char *img) {
        g_autofree char *sxml = g_strdup(
                "<secret ephemeral='yes' private='yes'><usage type='volume'><volume>bench-floor</volume></usage></secret>");
        char uuid[VIR_UUID_STRING_BUFLEN];
        double t0 = now_ms();

        virSecretPtr s = virSecretDefineXML(lv_virt(), sxml, 0);
        g_assert_nonnull(s);
        g_assert_cmpint(virSecretSetValue(s, (const unsigned char *) PASS, strlen(PASS), 0), ==, 0);
        g_assert_cmpint(virSecretGetUUIDString(s, uuid), ==, 0);
        g_autofree char *dxml = g_strdup_printf(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                "<source file='%s'><encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption></source>"
                "<target dev='sdb' bus='scsi'/></disk>", img, uuid);
        g_assert_cmpint(virDomainAttachDeviceFlags(dom, dxml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        /* libvirt's own synchronous detach waits for QEMU's DEVICE_DELETED. */
        g_assert_cmpint(virDomainDetachDeviceFlags(dom, dxml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        g_assert_true(lv_domain_wait_disk_gone(dom, "sdb", 10000));
        g_assert_cmpint(virSecretUndefine(s), ==, 0);
        virSecretFree(s);
        return now_ms() - t0;
}

static double daemon_cycle(const char *domain, const char *img, double *ret_attach, double *ret_detach) {
        g_autoptr(GError) error = NULL;
        double t0 = now_ms();
        g_autofree char *path = lv_attach(bus, domain, img, PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"),
                                                  "target", g_variant_new_string("sdb"), NULL), &error);
        g_assert_no_error(error);
        double t1 = now_ms();
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        double t2 = now_ms();
        if (ret_attach)
                *ret_attach = t1 - t0;
        if (ret_detach)
                *ret_detach = t2 - t1;
        return t2 - t0;
}

/* ---- async attaches ---- */

typedef struct Pending {
        double start, end;
        GVariant *reply;
        GError *error;
        gboolean done;
} Pending;

static void on_done(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        p->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);
        p->end = now_ms();
        p->done = TRUE;
}

static void attach_async(const char *domain, const char *img, Pending *p) {
        p->start = now_ms();
        g_dbus_connection_call(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach",
                               g_variant_new("(ss@ay@a{sv})", domain, img,
                                             g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                             lv_opts("bus", g_variant_new_string("scsi"), NULL)),
                               G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 300000, NULL, on_done, p);
}

static gboolean all_done(Pending *p, guint n) {
        for (guint i = 0; i < n; i++)
                if (!p[i].done)
                        return FALSE;
        return TRUE;
}

static void detach_all(Pending *p, guint n) {
        for (guint i = 0; i < n; i++) {
                g_autoptr(GError) error = NULL;
                const char *path;
                g_assert_no_error(p[i].error);
                g_variant_get(p[i].reply, "(&o)", &path);
                g_assert_true(lv_detach(bus, path, NULL, &error));
                g_assert_no_error(error);
                g_variant_unref(p[i].reply);
        }
}

/* Runs n slow attaches over the given domains (round robin); returns the
 * wall time until all are done; fills per-attach latencies; samples
 * Probe('') latency meanwhile if probes != NULL. */
static double run_attaches(const char *const *domains, guint n_domains, char **imgs, guint n,
                           GArray *latencies, GArray *probes) {
        Pending p[16] = {};
        double t0 = now_ms();

        for (guint i = 0; i < n; i++)
                attach_async(domains[i % n_domains], imgs[i], &p[i]);
        while (!all_done(p, n)) {
                if (probes) {
                        g_autoptr(GError) error = NULL;
                        double s = now_ms();
                        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
                        g_assert_no_error(error);
                        double d = now_ms() - s;
                        g_array_append_val(probes, d);
                        g_usleep(5000);
                }
                while (g_main_context_iteration(NULL, FALSE))
                        ;
                if (!probes)
                        g_usleep(2000);
        }
        double wall = now_ms() - t0;
        for (guint i = 0; i < n; i++) {
                double l = p[i].end - p[i].start;
                if (latencies)
                        g_array_append_val(latencies, l);
        }
        detach_all(p, n);
        return wall;
}

int main(int argc, char *argv[]) {
        lv_require_sandbox();
        outdir = argc > 1 ? argv[1] : ".";
        bus = lv_bus();

        const char *doms4[4] = { "bench-a", "bench-b", "bench-c", "bench-d" };
        virDomainPtr dom[4];
        for (int i = 0; i < 4; i++)
                dom[i] = lv_start_guest(doms4[i]);

        /* 1. cycle vs floor, interleaved so drift hits both alike. */
        /* qemu-img, iter-time 10 ms: the key derivation QEMU does per attach. */
        g_autofree char *fast = lv_make_luks1_image_full("bench-fast.img", PASS, 0x5a, 16, 10);
        GArray *floor_ms = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *cycle_ms = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *attach_ms = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *detach_ms = g_array_new(FALSE, FALSE, sizeof(double));
        (void) daemon_cycle(doms4[0], fast, NULL, NULL);    /* warm-up: activation, caches */
        (void) floor_cycle(dom[0], fast);
        for (int i = 0; i < CYCLES; i++) {
                double a, d;
                double f = floor_cycle(dom[0], fast);
                double c = daemon_cycle(doms4[0], fast, &a, &d);
                g_array_append_val(floor_ms, f);
                g_array_append_val(cycle_ms, c);
                g_array_append_val(attach_ms, a);
                g_array_append_val(detach_ms, d);
        }
        double floor_med = percentile(floor_ms, 50), cycle_med = percentile(cycle_ms, 50);
        double attach_med = percentile(attach_ms, 50), detach_med = percentile(detach_ms, 50);

        /* 2. Probe('') idle, then under 8 slow attaches over 4 domains. */
        GArray *idle = g_array_new(FALSE, FALSE, sizeof(double));
        for (int i = 0; i < 200; i++) {
                g_autoptr(GError) error = NULL;
                double s = now_ms();
                g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
                g_assert_no_error(error);
                double d = now_ms() - s;
                g_array_append_val(idle, d);
        }
        char *slow[8];
        for (int i = 0; i < 8; i++) {
                g_autofree char *n = g_strdup_printf("bench-slow%d.img", i);
                slow[i] = lv_make_luks1_image_full(n, PASS, 0x5a, 16, SLOW_ITER_MS);
        }
        GArray *loaded = g_array_new(FALSE, FALSE, sizeof(double));
        double wall4 = run_attaches(doms4, 4, slow, 8, NULL, loaded);

        /* 3. the same 8 on one domain. */
        double wall1 = run_attaches(doms4, 1, slow, 8, NULL, NULL);

        /* 4. attach latency by concurrency, spread over 4 domains. */
        g_autofree char *csv_path = g_build_filename(outdir, "concurrency.csv", NULL);
        GString *csv = g_string_new("concurrency,median_attach_ms,wall_ms\n");
        guint levels[] = { 1, 2, 4, 8 };
        double med_by_level[4];
        for (guint k = 0; k < G_N_ELEMENTS(levels); k++) {
                GArray *lat = g_array_new(FALSE, FALSE, sizeof(double));
                double wall = run_attaches(doms4, 4, slow, levels[k], lat, NULL);
                med_by_level[k] = percentile(lat, 50);
                g_string_append_printf(csv, "%u,%.1f,%.1f\n", levels[k], med_by_level[k], wall);
                g_array_unref(lat);
        }
        g_assert_true(g_file_set_contents(csv_path, csv->str, -1, NULL));
        g_string_free(csv, TRUE);

        double p50 = percentile(loaded, 50), p90 = percentile(loaded, 90), p99 = percentile(loaded, 99);
        double ip50 = percentile(idle, 50), ip99 = percentile(idle, 99);
        double ratio = cycle_med / floor_med;

        printf("| measure | value | baseline (same run) | ratio | target |\n");
        printf("|---|---|---|---|---|\n");
        printf("| Attach+Detach cycle, median of %d (ms) | %.1f | libvirt API floor %.1f | %.3f | ≤ 1.10 %s |\n",
               CYCLES, cycle_med, floor_med, ratio, ratio <= 1.10 ? "✓" : "✗");
        printf("| of which Attach / Detach, medians (ms) | %.1f / %.1f | — | — | — |\n", attach_med, detach_med);
        printf("| Probe('') p50 / p90 / p99 under 8 slow attaches (ms, n=%u) | %.1f / %.1f / %.1f | idle p50 %.1f, p99 %.1f | p99 %.2f× idle | p99 ≤ 10 ms %s |\n",
               loaded->len, p50, p90, p99, ip50, ip99, p99 / ip99, p99 <= 10 ? "✓" : "✗");
        printf("| 8 slow attaches over 4 domains, wall (ms) | %.0f | 1 domain %.0f | %.2f× faster | — |\n",
               wall4, wall1, wall1 / wall4);
        for (guint k = 0; k < G_N_ELEMENTS(levels); k++)
                printf("| median attach latency at concurrency %u (ms) | %.0f | concurrency 1: %.0f | %.2f | — |\n",
                       levels[k], med_by_level[k], med_by_level[0], med_by_level[k] / med_by_level[0]);
        printf("\nImages: the cycle's made by qemu-img with iter-time 10 ms; the slow ones with iter-time %d ms. Host: %d cores, TCG guests.\n",
               SLOW_ITER_MS, (int) g_get_num_processors());


        for (int i = 0; i < 4; i++)
                lv_destroy_guest(dom[i]);
        return 0;
}
