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
 *  4. attach latency at concurrency 1, 2, 4, 8 (for the plot);
 *  5. guest stalls (issue 10): how long an Attach freezes a running guest,
 *     the largest gap in a heartbeat guest's 20 ms heartbeat (fixture.h)
 *     during Attach — right passphrase on a 1-slot and an 8-slot volume
 *     (slot 0 and slot 7), wrong passphrase on both — against its idle
 *     gaps, and the latency of each Attach against the PBKDF2 QEMU has to
 *     do for it.  Once the daemon verifies passphrases itself, the wrong
 *     ones should not stall the guest at all, and the latencies show what
 *     the verification adds;
 *  6. a shared host: Probe of a LUKS2 file another process holds locked
 *     (answered Busy, not waited for), against Probe of the same file
 *     unlocked;
 *  7. Volume.Resize of a natively attached volume (grow by 1 MiB), against
 *     virDomainBlockResize() of the same disk done directly over one
 *     persistent libvirt connection;
 *  8. key management: ChangePassphrase of a volume on the host's disk (not
 *     the sandbox's tmpfs: its synced write steps are part of the cost),
 *     against VerifyPassphrase of the same volume — one key derivation; a
 *     change costs two (unlock the old slot, make the new one) plus the
 *     header read and the writes.  LUKS1 and LUKS2 with 1000-iteration
 *     slots (the I/O dominates), and LUKS1 with a slot costing QEMU ~300 ms
 *     (the key derivation dominates).
 *
 * 10. RBD (rbd.c, only with --rbd=CLUSTER_SH): attach and detach of a LUKS1
 *     RBD image against libvirt's API and `virsh attach-device`.
 *
 *  9. scale (scale.c): attach and detach with N volumes over M domains
 *     attached against none, recovery after kill -9 with N attached
 *     against the libvirt calls any recovery makes; cold activation against
 *     a cold virsh; the idle daemon's memory.
 *
 * Usage: luksvolume-bench OUTDIR [--short] [--scale=N,M] [--series]
 *   --short   the CI form: fewer repetitions, scale 40 over 4, and without
 *             the concurrency series, key management and guest stalls;
 *   --scale   N volumes over M domains (default 200,20);
 *   --series  only the scale scenario, at 10, 50, 200 and 500 volumes over
 *             20 domains, into OUTDIR/scale-series.csv (for the plot).
 *
 * Writes a Markdown table to stdout and CSV files into OUTDIR. */

#include <gio/gio.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "fixture.h"
#include "lv-client.h"

#define CYCLES        (short_run ? 10 : 40)
#define SLOW_ITER_MS  1500
/* 6. Probes of a locked and of an unlocked file. */
#define LOCK_PROBES   50
/* 7. Resizes through the daemon and directly, interleaved. */
#define RESIZE_REPS   15
/* 8. Changes (and verifications) per volume; fewer of the costly one. */
#define KEY_REPS      9
#define KEY_REPS_SLOW 5
#define KEY_SLOT_MS   300

GDBusConnection *bus;
const char *outdir;
bool short_run;

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

double percentile(GArray *a, double p) {
        g_array_sort(a, cmp_double);
        if (a->len == 0)
                return 0;
        guint i = (guint) (p / 100.0 * (a->len - 1) + 0.5);
        return g_array_index(a, double, MIN(i, a->len - 1));
}

double now_ms(void) {
        return g_get_monotonic_time() / 1000.0;
}

GArray *samples_new(void) {
        return g_array_new(FALSE, FALSE, sizeof(double));
}

void sample_add(GArray *a, double v) {
        g_array_append_val(a, v);
}

char *load_average(void) {
        g_autofree char *text = NULL;
        if (!g_file_get_contents("/proc/loadavg", &text, NULL, NULL))
                return g_strdup("?");
        g_auto(GStrv) fields = g_strsplit(g_strstrip(text), " ", 2);
        return g_strdup(fields[0]);
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
                "<target dev='sdb' bus='scsi'/></disk>",
                img, uuid);
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
        g_autofree char *path = lv_attach(
                bus, domain, img, PASS,
                lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdb"), NULL), &error);
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

/* 1. The cycle against the floor, interleaved so drift hits both alike. */
typedef struct CycleFigures {
        double floor_med, cycle_med, verify_med, attach_med, detach_med;
} CycleFigures;

static void cycle_figures(virDomainPtr dom, const char *domain, CycleFigures *ret) {
        /* qemu-img, iter-time 10 ms: the key derivation QEMU does per attach. */
        g_autofree char *fast = lv_make_luks1_image_full("bench-fast.img", PASS, 0x5a, 16, 10);
        GArray *floor_ms = samples_new();
        GArray *cycle_ms = samples_new();
        GArray *attach_ms = samples_new();
        GArray *detach_ms = samples_new();
        GArray *verify_ms = samples_new();
        /* The guests have just started: their firmware boots first (in the
         * full run four of them, on two cores). */
        g_usleep(SETTLE_USEC);
        (void) daemon_cycle(domain, fast, NULL, NULL); /* warm-up: activation, caches */
        (void) floor_cycle(dom, fast);
        for (int i = 0; i < CYCLES; i++) {
                double a, d;
                double f = floor_cycle(dom, fast);
                double c = daemon_cycle(domain, fast, &a, &d);
                sample_add(floor_ms, f);
                sample_add(cycle_ms, c);
                sample_add(attach_ms, a);
                sample_add(detach_ms, d);

                /* What an Attach spends before QEMU sees anything: the
                 * daemon's own passphrase check (issue 10), as a call. */
                g_autoptr(GError) verror = NULL;
                double v0 = now_ms();
                g_assert_cmpint(lv_verify_passphrase(bus, fast, PASS, &verror), ==, 0);
                g_assert_no_error(verror);
                sample_add(verify_ms, now_ms() - v0);
        }
        *ret = (CycleFigures){
                .floor_med = percentile(floor_ms, 50),
                .cycle_med = percentile(cycle_ms, 50),
                .verify_med = percentile(verify_ms, 50),
                .attach_med = percentile(attach_ms, 50),
                .detach_med = percentile(detach_ms, 50),
        };
}

static void cycle_rows(const CycleFigures *f) {
        double ratio = f->cycle_med / f->floor_med;

        printf("| Attach+Detach cycle, median of %d (ms) | %.1f | libvirt API floor %.1f | %.3f | ≤ 1.10 %s |\n",
               CYCLES, f->cycle_med, f->floor_med, ratio, ratio <= 1.10 ? "✓" : "✗");
        printf("| of which Attach / Detach, medians (ms) | %.1f / %.1f | — | — | — |\n", f->attach_med, f->detach_med);
        printf("| VerifyPassphrase of the cycle's image, median of %d (ms): the check every Attach makes before "
               "QEMU sees the passphrase | %.1f | floor + check %.1f | cycle / (floor + check) %.3f | — |\n",
               CYCLES, f->verify_med, f->floor_med + f->verify_med, f->cycle_med / (f->floor_med + f->verify_med));
}

/* ---- async attaches ---- */

typedef struct Pending {
        double start, end;
        const char *domain, *img;
        guint busy; /* Error.Busy answers retried */
        GVariant *reply;
        GError *error;
        gboolean done;
} Pending;

static void attach_send(Pending *p);

static gboolean retry(gpointer userdata) {
        attach_send(userdata);
        return G_SOURCE_REMOVE;
}

/* The service runs at most DERIVE_MAX_IN_FLIGHT key derivations at once and
 * answers Error.Busy beyond: a client retries after 250 ms, as
 * luksvolumectl's users would (not at once: a retry storm would be load of
 * the benchmark's own making), and the latency counts from the first try. */
static void on_done(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        p->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);
        if (p->error && g_dbus_error_is_remote_error(p->error)) {
                g_autofree char *name = g_dbus_error_get_remote_error(p->error);
                if (g_str_equal(name, LV_ERR("Busy"))) {
                        g_clear_error(&p->error);
                        p->busy++;
                        g_timeout_add(250, retry, p);
                        return;
                }
        }
        p->end = now_ms();
        p->done = TRUE;
}

static void attach_async(const char *domain, const char *img, Pending *p) {
        p->start = now_ms();
        p->domain = domain;
        p->img = img;
        attach_send(p);
}

static void attach_send(Pending *p) {
        const char *domain = p->domain, *img = p->img;

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
static double run_attaches(const char *const *domains, guint n_domains, char **imgs, guint n, GArray *latencies,
                           GArray *probes) {
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

static double probe_ms(const char *path, const char *want_error) {
        g_autoptr(GError) error = NULL;
        double s = now_ms();
        g_autoptr(GVariant) info = lv_probe(bus, path, &error);
        double d = now_ms() - s;

        if (want_error) {
                g_assert_null(info);
                lv_assert_error(error, want_error);
        } else
                g_assert_no_error(error);
        return d;
}

/* 6. */
static void locked_file(void) {
        g_autofree char *img = lv_make_luks2_image("bench-locked.img", PASS, 20);
        GArray *unlocked = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *locked = g_array_new(FALSE, FALSE, sizeof(double));
        g_autoptr(GError) error = NULL;

        for (int i = 0; i < LOCK_PROBES; i++) {
                double d = probe_ms(img, NULL);
                g_array_append_val(unlocked, d);
        }

        /* One process holding an exclusive flock, as cryptsetup does while
         * it rewrites a LUKS2 header. */
        g_autofree char *script = g_strdup_printf("import fcntl, os, time\n"
                                                  "fd = os.open('%s', os.O_RDONLY)\n"
                                                  "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                                                  "print('locked', flush=True)\n"
                                                  "time.sleep(600)\n",
                                                  img);
        const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };
        g_autoptr(GSubprocess) holder = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
        g_assert_no_error(error);
        g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(holder));
        g_autofree char *line = g_data_input_stream_read_line(in, NULL, NULL, &error);
        g_assert_no_error(error);

        for (int i = 0; i < LOCK_PROBES; i++) {
                double d = probe_ms(img, "org.example.LuksVolume1.Error.Busy");
                g_array_append_val(locked, d);
        }
        g_subprocess_force_exit(holder);
        g_subprocess_wait(holder, NULL, NULL);

        double u = percentile(unlocked, 50), l = percentile(locked, 50);
        printf("| Probe of a LUKS2 file another process holds flock'ed (answered Error.Busy), median of %d (ms) | %.1f | the file unlocked %.1f | %.2f | answered at once ✓ |\n",
               LOCK_PROBES, l, u, l / u);
        g_array_unref(unlocked);
        g_array_unref(locked);
}

/* 7. */
static void resize_latency(virDomainPtr dom, const char *domain) {
        g_autofree char *img = lv_make_luks1_image("bench-resize.img", PASS, 0x5a, 16);
        GArray *daemon_ms = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *direct_ms = g_array_new(FALSE, FALSE, sizeof(double));
        g_autoptr(GError) error = NULL;
        guint64 size = 16ULL << 20;

        g_autofree char *path = lv_attach(
                bus, domain, img, PASS,
                lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdc"), NULL), &error);
        g_assert_no_error(error);
        /* Warm-up: the worker's connection, the first resize's paths. */
        size += 1 << 20;
        g_assert_true(lv_resize(bus, path, size, NULL, &error));
        g_assert_no_error(error);

        for (int i = 0; i < RESIZE_REPS; i++) {
                size += 1 << 20;
                double t0 = now_ms();
                g_assert_true(lv_resize(bus, path, size, NULL, &error));
                g_assert_no_error(error);
                double d = now_ms() - t0;
                g_array_append_val(daemon_ms, d);

                /* The same growth, libvirt alone: what any resize costs. */
                size += 1 << 20;
                t0 = now_ms();
                g_assert_cmpint(virDomainBlockResize(dom, "sdc", size, VIR_DOMAIN_BLOCK_RESIZE_BYTES), ==, 0);
                d = now_ms() - t0;
                g_array_append_val(direct_ms, d);
        }
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        double dm = percentile(daemon_ms, 50), vm = percentile(direct_ms, 50);
        printf("| Resize of a native volume (grow by 1 MiB), median of %d (ms) | %.1f | virDomainBlockResize directly %.1f | %.2f | — |\n",
               RESIZE_REPS, dm, vm, dm / vm);
        g_array_unref(daemon_ms);
        g_array_unref(direct_ms);
}

/* 8. */
static double keys_ms(const char *method, const char *img, const char *pass, const char *new_pass) {
        g_autoptr(GError) error = NULL;
        double s = now_ms();
        gint r = lv_keys_call(bus, method, img, pass, new_pass, FALSE, NULL, &error);
        double d = now_ms() - s;

        g_assert_no_error(error);
        g_assert_cmpint(r, >=, 0);
        return d;
}

/* Moves img (made in the sandbox's tmpfs; the path is freed) to dir, on
 * the host's disk. */
static char *onto_disk(char *img, const char *dir) {
        g_autofree char *path = img;
        g_autofree char *base = g_path_get_basename(path);
        char *dest = g_build_filename(dir, base, NULL);
        const char *argv[] = { "mv", path, dest, NULL };
        g_assert_cmpint(lv_run_as(0, argv, 60, NULL, NULL), ==, 0);
        return dest;
}

static void key_row(const char *what, const char *img, guint reps) {
        static const char *const pass[2] = { PASS, "benchmark passphrase, rotated" };
        GArray *change = g_array_new(FALSE, FALSE, sizeof(double));
        GArray *verify = g_array_new(FALSE, FALSE, sizeof(double));

        (void) keys_ms("VerifyPassphrase", img, pass[0], NULL); /* warm-up */
        for (guint i = 0; i < reps; i++) {
                /* Back and forth between two passphrases: one active slot
                 * throughout, so every verification tries one slot. */
                double v = keys_ms("VerifyPassphrase", img, pass[i % 2], NULL);
                double c = keys_ms("ChangePassphrase", img, pass[i % 2], pass[(i + 1) % 2]);
                g_array_append_val(verify, v);
                g_array_append_val(change, c);
        }
        double c = percentile(change, 50), v = percentile(verify, 50);
        printf("| ChangePassphrase, %s, median of %u (ms) | %.1f | VerifyPassphrase of the same volume %.1f "
               "| %.2f | — |\n",
               what, reps, c, v, c / v);
        g_array_unref(change);
        g_array_unref(verify);
}

static void key_management(void) {
        g_autofree char *dir = g_dir_make_tmp("luksvol-bench-XXXXXX", NULL);
        g_assert_nonnull(dir);
        g_autofree char *l1 = onto_disk(lv_make_luks1_image("bench-keys1.img", PASS, 0x5a, 16), dir);
        g_autofree char *l2 = onto_disk(lv_make_luks2_image("bench-keys2.img", PASS, 20), dir);
        const char *passes[1] = { PASS };
        g_autofree char *slow =
                onto_disk(lv_make_luks1_slots_image("bench-keys-slow.img", passes, 1, KEY_SLOT_MS, 16), dir);

        key_row("LUKS1, 1000-iteration PBKDF2 slot", l1, KEY_REPS);
        key_row("LUKS2, 1000-iteration PBKDF2 slot", l2, KEY_REPS);
        g_autofree char *what = g_strdup_printf("LUKS1, %u-iteration PBKDF2 slot (~%d ms in QEMU)",
                                                lv_pbkdf2_iterations(KEY_SLOT_MS), KEY_SLOT_MS);
        key_row(what, slow, KEY_REPS_SLOW);

        const char *rm_argv[] = { "rm", "-rf", dir, NULL };
        g_assert_cmpint(lv_run_as(0, rm_argv, 60, NULL, NULL), ==, 0);
}

static void table_header(void) {
        printf("| figure | value | baseline (same run) | ratio | target |\n");
        printf("|---|---|---|---|---|\n");
}

static void parse_scale(const char *arg, guint *ret_n, guint *ret_m) {
        guint64 n, m;
        char *end;

        n = g_ascii_strtoull(arg, &end, 10);
        if (*end != ',' || n == 0 || n > 2000)
                g_error("--scale=N,M: N volumes (1-2000) over M domains (1-100), not '%s'", arg);
        m = g_ascii_strtoull(end + 1, &end, 10);
        if (*end != '\0' || m == 0 || m > 100)
                g_error("--scale=N,M: N volumes (1-2000) over M domains (1-100), not '%s'", arg);
        *ret_n = (guint) n;
        *ret_m = (guint) m;
}

/* --series: the scale scenario alone at growing N, for the plot. */
static void scale_series(void) {
        static const guint ns[] = { 10, 50, 200, 500 };
        g_autoptr(GString) csv =
                g_string_new("volumes,domains,attach_1_ms,attach_n_ms,detach_1_ms,detach_n_ms,objects_ms,complete_ms,"
                             "libvirt_scan_ms\n");
        g_autofree char *csv_path = g_build_filename(outdir, "scale-series.csv", NULL);

        table_header();
        for (guint i = 0; i < G_N_ELEMENTS(ns); i++) {
                scale_scenario(ns[i], 20, csv);
                /* Each step on its own: a later crash keeps what was measured. */
                g_assert_true(g_file_set_contents(csv_path, csv->str, -1, NULL));
        }
}

/* Probe('') 200 times idle, then (n_slow images made into slow[]) while
 * n_slow slow attaches run over the four domains; the attaches' wall. */
static double probe_under_load(const char *const *doms4, char **slow, guint n_slow, GArray *idle, GArray *loaded) {
        for (int i = 0; i < 200; i++) {
                g_autoptr(GError) error = NULL;
                double s = now_ms();
                g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
                g_assert_no_error(error);
                sample_add(idle, now_ms() - s);
        }
        for (guint i = 0; i < n_slow; i++) {
                g_autofree char *n = g_strdup_printf("bench-slow%u.img", i);
                slow[i] = lv_make_luks1_image_full(n, PASS, 0x5a, 16, SLOW_ITER_MS);
        }
        return run_attaches(doms4, 4, slow, n_slow, NULL, loaded);
}

static void probe_row(guint n_slow, GArray *idle, GArray *loaded) {
        double p50 = percentile(loaded, 50), p90 = percentile(loaded, 90), p99 = percentile(loaded, 99);
        double ip50 = percentile(idle, 50), ip99 = percentile(idle, 99);
        printf("| Probe('') p50 / p90 / p99 under %u slow attaches (ms, n=%u) | %.1f / %.1f / %.1f | idle p50 %.1f, p99 %.1f | p99 %.2f× idle | p99 ≤ 10 ms %s |\n",
               n_slow, loaded->len, p50, p90, p99, ip50, ip99, p99 / ip99, p99 <= 10 ? "✓" : "✗");
}

int main(int argc, char *argv[]) {
        guint scale_n = 200, scale_m = 20;
        bool series = false, scale_given = false, shim = false, cold = false, cycle_only = false, probe_only = false;
        const char *rbd_cluster = NULL;

        /* Line by line: a row printed before a crash is not lost in a pipe's
         * buffer. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        lv_require_sandbox();
        outdir = ".";
        for (int i = 1; i < argc; i++) {
                if (g_str_equal(argv[i], "--short"))
                        short_run = true;
                else if (g_str_equal(argv[i], "--series"))
                        series = true;
                else if (g_str_equal(argv[i], "--shim"))
                        shim = true;
                else if (g_str_equal(argv[i], "--cold"))
                        cold = true;
                else if (g_str_equal(argv[i], "--cycle"))
                        cycle_only = true;
                else if (g_str_equal(argv[i], "--probe"))
                        probe_only = true;
                else if (g_str_has_prefix(argv[i], "--rbd="))
                        rbd_cluster = argv[i] + strlen("--rbd=");
                else if (g_str_has_prefix(argv[i], "--scale=")) {
                        parse_scale(argv[i] + strlen("--scale="), &scale_n, &scale_m);
                        scale_given = true;
                } else if (argv[i][0] != '-')
                        outdir = argv[i];
                else
                        g_error("unknown argument '%s' (OUTDIR [--short] [--scale=N,M] [--series] [--shim] [--cold])",
                                argv[i]);
        }
        if (short_run && !scale_given)
                scale_n = 40, scale_m = 4;
        bus = lv_bus();
        g_autofree char *load_start = load_average();

        if (cycle_only) {
                /* Only the cycle's rows (profiling: run with --debug). */
                virDomainPtr d = lv_start_guest("bench-a");
                CycleFigures cyc;
                cycle_figures(d, "bench-a", &cyc);
                table_header();
                cycle_rows(&cyc);
                lv_destroy_guest(d);
                return 0;
        }
        if (probe_only) {
                /* Only Probe('') under 8 slow attaches. */
                const char *doms4[4] = { "bench-a", "bench-b", "bench-c", "bench-d" };
                virDomainPtr d[4];
                for (int i = 0; i < 4; i++)
                        d[i] = lv_start_guest(doms4[i]);
                char *slow[8] = {};
                GArray *idle = samples_new(), *loaded = samples_new();
                (void) probe_under_load(doms4, slow, 8, idle, loaded);
                table_header();
                probe_row(8, idle, loaded);
                for (int i = 0; i < 4; i++)
                        lv_destroy_guest(d[i]);
                return 0;
        }
        if (rbd_cluster) {
                /* Only the RBD rows (the daemon runs with ceph-daemon.conf). */
                table_header();
                rbd_figures(rbd_cluster);
                return 0;
        }
        if (cold) {
                /* Only the cold activation and idle memory rows. */
                cold_activation_and_memory();
                return 0;
        }
        if (shim) {
                shim_scenario();
                g_autofree char *load_end = load_average();
                printf("\nLoad average in the VM at the start / end: %s / %s; %d vCPUs, TCG.\n", load_start, load_end,
                       (int) g_get_num_processors());
                return 0;
        }
        if (series && scale_given) {
                /* Only the scale scenario, at the size given. */
                table_header();
                scale_scenario(scale_n, scale_m, NULL);
                return 0;
        }
        if (series) {
                scale_series();
                g_autofree char *load_end = load_average();
                printf("\nHost load average at the start / end: %s / %s; %d cores, TCG guests.\n", load_start, load_end,
                       (int) g_get_num_processors());
                return 0;
        }

        const char *doms4[4] = { "bench-a", "bench-b", "bench-c", "bench-d" };
        virDomainPtr dom[4];
        for (int i = 0; i < 4; i++)
                dom[i] = lv_start_guest(doms4[i]);

        CycleFigures cyc;
        cycle_figures(dom[0], doms4[0], &cyc);

        /* 2. Probe('') idle, then under n_slow slow attaches over 4 domains. */
        guint n_slow = short_run ? 4 : 8;
        char *slow[8] = {};
        GArray *idle = samples_new(), *loaded = samples_new();
        double wall4 = probe_under_load(doms4, slow, n_slow, idle, loaded);

        /* 3. the same on one domain. */
        double wall1 = run_attaches(doms4, 1, slow, n_slow, NULL, NULL);

        /* 4. attach latency by concurrency, spread over 4 domains (not in
         * the short form). */
        guint levels[] = { 1, 2, 4, 8 };
        double med_by_level[4] = {};
        if (!short_run) {
                g_autofree char *csv_path = g_build_filename(outdir, "concurrency.csv", NULL);
                GString *csv = g_string_new("concurrency,median_attach_ms,wall_ms\n");
                for (guint k = 0; k < G_N_ELEMENTS(levels); k++) {
                        GArray *lat = samples_new();
                        double wall = run_attaches(doms4, 4, slow, levels[k], lat, NULL);
                        med_by_level[k] = percentile(lat, 50);
                        g_string_append_printf(csv, "%u,%.1f,%.1f\n", levels[k], med_by_level[k], wall);
                        g_array_unref(lat);
                }
                g_assert_true(g_file_set_contents(csv_path, csv->str, -1, NULL));
                g_string_free(csv, TRUE);
        }

        table_header();
        cycle_rows(&cyc);
        probe_row(n_slow, idle, loaded);
        printf("| %u slow attaches over 4 domains, wall (ms) | %.0f | 1 domain %.0f | %.2f× faster | — |\n", n_slow,
               wall4, wall1, wall1 / wall4);
        if (!short_run)
                for (guint k = 0; k < G_N_ELEMENTS(levels); k++)
                        printf("| median attach latency at concurrency %u (ms) | %.0f | concurrency 1: %.0f | %.2f | — |\n",
                               levels[k], med_by_level[k], med_by_level[0], med_by_level[k] / med_by_level[0]);

        /* 9. nothing attached now: cold activation, idle memory, scale. */
        cold_activation_and_memory();
        scale_scenario(scale_n, scale_m, NULL);

        locked_file();
        resize_latency(dom[0], doms4[0]);
        if (!short_run)
                key_management();

        /* 5. guest stalls, alone on the machine: the four OS-less guests go
         * first, so only the heartbeat guest competes with the attaches. */
        for (int i = 0; i < 4; i++)
                lv_destroy_guest(dom[i]);
        if (!short_run)
                guest_stalls();

        g_autofree char *load_end = load_average();
        printf("\nImages: the cycle's made by qemu-img with iter-time 10 ms; the slow ones with iter-time %d ms; the "
               "scale scenario's by cryptsetup, LUKS1, 1000 PBKDF2 iterations, 1 MiB. Host: %d cores, TCG guests; "
               "load average at the start / end: %s / %s.%s\n",
               SLOW_ITER_MS, (int) g_get_num_processors(), load_start, load_end,
               short_run ? " Short form (CI): fewer repetitions; no concurrency series, key management or guest "
                           "stalls."
                         : "");
        for (guint i = 0; i < n_slow; i++)
                g_free(slow[i]);
        return 0;
}
