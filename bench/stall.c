/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The benchmark's guest-stall figures (part 5, see bench.c): how long an
 * Attach freezes a running guest, measured on a heartbeat guest. */

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "fixture.h"
#include "lv-client.h"

/* 5. guest stalls: key slots costing QEMU ~300 ms each, 5 of each case. */
#define STALL_SLOT_MS 300
#define STALL_REPS    5
#define STALL_IDLE_MS 5000
#define STALL_GUEST   "bench-heartbeat"

/* ---- 5. guest stalls ---- */

typedef struct StallCase {
        const char *label; /* for the table */
        const char *csv_name;
        const char *img; /* set at run time */
        const char *pass;
        gboolean right;
        guint slots_tried; /* key slots QEMU derives when asked with pass */
        GArray *gap_ms, *attach_ms;
} StallCase;

/* One Attach (and Detach, if it attached) with the heartbeats watched
 * around the Attach: the largest gap from the last heartbeat before the
 * call to one printed after it returned. */
static void stall_once(const char *console, StallCase *c, guint rep, GString *csv) {
        g_autoptr(GError) error = NULL;
        LvHeartbeat before = lv_heartbeat_latest(console);
        double t0 = now_ms();
        g_autofree char *path = lv_attach(bus, STALL_GUEST, c->img, c->pass,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        double attach = now_ms() - t0;
        LvHeartbeat after = lv_heartbeat_next(console);
        LvHeartbeatGaps g;
        g_assert_true(lv_heartbeat_gaps(console, before.guest_us, after.guest_us, &g));
        if (c->right) {
                g_assert_no_error(error);
                g_assert_true(lv_detach(bus, path, NULL, &error));
                g_assert_no_error(error);
        } else {
                g_assert_null(path);
                g_autofree char *name = lv_error_name(error);
                g_assert_cmpstr(name, ==, LV_ERR("BadPassphrase"));
        }
        double gap = g.max_gap_us / 1000.0;
        g_array_append_val(c->gap_ms, gap);
        g_array_append_val(c->attach_ms, attach);
        g_string_append_printf(csv, "%s,%u,%.1f,%.1f,%.1f\n", c->csv_name, rep, attach, gap, g.excess_us / 1000.0);
}

/* CPU time libcryptsetup spends on one wrong try of a 1-slot image: what
 * daemon-side verification costs per slot (information for the table). */
static double cryptsetup_slot_ms(const char *img) {
        g_autofree char *keyfile = lv_sandbox_path("bench-wrong-key");
        g_assert_true(g_file_set_contents_full(keyfile, "wrong", -1, G_FILE_SET_CONTENTS_NONE, 0600, NULL));
        const char *argv[] = { "cryptsetup", "open", "--test-passphrase", "--key-file", keyfile, img, NULL };
        double best = G_MAXDOUBLE;
        for (int i = 0; i < 3; i++) {
                struct rusage a, b;
                gint status;
                getrusage(RUSAGE_CHILDREN, &a);
                g_assert_true(
                        g_spawn_sync(NULL, (char **) argv, NULL,
                                     G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                                     NULL, NULL, NULL, NULL, &status, NULL));
                getrusage(RUSAGE_CHILDREN, &b);
                double ms =
                        (b.ru_utime.tv_sec - a.ru_utime.tv_sec + b.ru_stime.tv_sec - a.ru_stime.tv_sec) * 1000.0 +
                        (b.ru_utime.tv_usec - a.ru_utime.tv_usec + b.ru_stime.tv_usec - a.ru_stime.tv_usec) / 1000.0;
                best = MIN(best, ms);
        }
        unlink(keyfile);
        return best;
}

/* The same bound as tests/integration/test-stall.c: a wrong passphrase
 * "does not stall the guest" if the largest gap stays within
 * max(3 × the largest idle gap, the largest idle gap + 150 ms). */
static double stall_allowed_ms(double idle_max_ms) {
        return MAX(3 * idle_max_ms, idle_max_ms + 150);
}

void guest_stalls(void) {
        if (lv_heartbeat_kernel() == NULL) {
                printf("| guest stalls | skipped: no /boot/vmlinuz-6.1.*-amd64 (install linux-image-amd64) | — | — | — |\n");
                return;
        }
        char *pass8[8];
        for (int i = 0; i < 8; i++)
                pass8[i] = g_strdup_printf("bench stall slot %d", i);
        g_autofree char *img1 =
                lv_make_luks1_slots_image("bench-stall-1slot.img", (const char *const *) pass8, 1, STALL_SLOT_MS, 16);
        g_autofree char *img8 =
                lv_make_luks1_slots_image("bench-stall-8slots.img", (const char *const *) pass8, 8, STALL_SLOT_MS, 16);
        guint iters = lv_pbkdf2_iterations(STALL_SLOT_MS);
        double cs_ms = cryptsetup_slot_ms(img1);

        /* The host's load (not namespaced): the guest's timings are only as
         * good as the machine is quiet. */
        g_autofree char *load = load_average();

        g_autofree char *console = NULL;
        virDomainPtr hb = lv_start_heartbeat_guest(STALL_GUEST, &console);
        g_usleep(1000 * 1000); /* let the kernel finish its asynchronous start-up */
        LvHeartbeat b = lv_heartbeat_latest(console);
        g_usleep(STALL_IDLE_MS * 1000);
        LvHeartbeat e = lv_heartbeat_next(console);
        LvHeartbeatGaps idle;
        g_assert_true(lv_heartbeat_gaps(console, b.guest_us, e.guest_us, &idle));
        double idle_max = idle.max_gap_us / 1000.0, idle_med = idle.median_gap_us / 1000.0;

        StallCase cases[] = {
                { "right passphrase, 1-slot volume", "right-1slot", img1, pass8[0], TRUE, 1 },
                { "right passphrase, 8-slot volume, slot 0", "right-8slots-slot0", img8, pass8[0], TRUE, 1 },
                { "right passphrase, 8-slot volume, slot 7", "right-8slots-slot7", img8, pass8[7], TRUE, 8 },
                { "wrong passphrase, 1-slot volume", "wrong-1slot", img1, "not a slot's passphrase", FALSE, 1 },
                { "wrong passphrase, 8-slot volume", "wrong-8slots", img8, "not a slot's passphrase", FALSE, 8 },
        };
        g_autofree char *csv_path = g_build_filename(outdir, "stall.csv", NULL);
        GString *csv = g_string_new("case,rep,attach_ms,max_gap_ms,stood_still_ms\n");
        for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
                cases[k].gap_ms = g_array_new(FALSE, FALSE, sizeof(double));
                cases[k].attach_ms = g_array_new(FALSE, FALSE, sizeof(double));
        }
        /* Round robin, so that drift in the machine's load hits every case alike. */
        for (guint rep = 0; rep < STALL_REPS; rep++)
                for (guint k = 0; k < G_N_ELEMENTS(cases); k++)
                        stall_once(console, &cases[k], rep, csv);
        g_assert_true(g_file_set_contents(csv_path, csv->str, -1, NULL));
        g_string_free(csv, TRUE);

        printf("| guest heartbeat at idle, median / largest gap over %d s (ms) | %.1f / %.1f | period 20 | — | — |\n",
               STALL_IDLE_MS / 1000, idle_med, idle_max);
        for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
                StallCase *c = &cases[k];
                double gap = percentile(c->gap_ms, 50);
                if (c->right)
                        printf("| guest stall during Attach, %s (largest heartbeat gap, ms, median of %d) | %.0f | idle largest gap %.1f | %.1f× idle | — |\n",
                               c->label, STALL_REPS, gap, idle_max, gap / idle_max);
                else
                        printf("| guest stall during Attach, %s (largest heartbeat gap, ms, median of %d) | %.0f | idle largest gap %.1f | %.1f× idle | ≤ %.0f %s |\n",
                               c->label, STALL_REPS, gap, idle_max, gap / idle_max, stall_allowed_ms(idle_max),
                               gap <= stall_allowed_ms(idle_max) ? "✓" : "✗");
        }
        for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
                StallCase *c = &cases[k];
                double lat = percentile(c->attach_ms, 50);
                double pbkdf = c->slots_tried * (double) STALL_SLOT_MS;
                printf("| Attach latency, %s (ms, median of %d) | %.0f | QEMU's PBKDF2 for %u slot%s %.0f | %.2f | — |\n",
                       c->label, STALL_REPS, lat, c->slots_tried, c->slots_tried == 1 ? "" : "s", pbkdf, lat / pbkdf);
        }
        printf("\nGuest stalls: a guest booting Debian's kernel prints its CLOCK_MONOTONIC every 20 ms to a serial "
               "console; a stall is the largest gap between two of its heartbeats from before an Attach to after it "
               "returned. Volumes: LUKS1, PBKDF2 %u iterations per key slot, calibrated to cost QEMU ~%d ms "
               "(libcryptsetup needs %.0f ms of CPU for the same slot). Wrong-passphrase target: the bound of "
               "tests/integration/test-stall.c, max(3 × idle, idle + 150 ms). Host load average when this part "
               "began: %s.%s\n",
               iters, STALL_SLOT_MS, cs_ms, load,
               idle_max > 150 ? " **The idle guest already went over 150 ms without a heartbeat: the machine was too "
                                "busy for these stall figures to mean much; run again on a quiet machine.**"
                              : "");

        for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
                g_array_unref(cases[k].gap_ms);
                g_array_unref(cases[k].attach_ms);
        }
        for (int i = 0; i < 8; i++)
                g_free(pass8[i]);
        lv_destroy_guest(hb);
}
