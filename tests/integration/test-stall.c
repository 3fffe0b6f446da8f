/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Does an Attach freeze the guest?  (issue 10: "A wrong passphrase never
 * stalls the guest")
 *
 * In native mode QEMU opens the LUKS volume inside blockdev-add, in its main
 * loop, deriving the key of every key slot it tries; the guest's vCPU waits
 * for the main loop's lock meanwhile.  A right passphrase costs the slots up
 * to the one it opens; a wrong one costs every active slot.  The witness is
 * the heartbeat guest (fixture.h): a Debian kernel whose init prints its
 * CLOCK_MONOTONIC every 20 ms; the largest gap between two heartbeats over
 * an Attach is how long the guest stood still.
 *
 * The volume: LUKS1, 8 active key slots of ~300 ms PBKDF2 each (calibrated
 * on this machine by cryptsetup), so QEMU trying them all is ~2.4 s.
 *
 *   /stall/wrong-passphrase   the requirement: BadPassphrase, and no gap
 *                             beyond the idle noise — QEMU must never be
 *                             asked with a passphrase the daemon has not
 *                             verified.  FAILS on a daemon that lets QEMU
 *                             find out (f56ba28 and before).
 *   /stall/right-passphrase/slot-0, slot-7
 *                             information: what a good passphrase costs the
 *                             guest (QEMU tries slots in order: slot 0 one
 *                             slot's PBKDF, slot 7 all eight).  slot-7 also
 *                             proves the instrument sees a stall at all. */

#include <gio/gio.h>
#include <libvirt/virterror.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define GUEST     "lvtest-heartbeat"
#define N_SLOTS   8
#define SLOT_MS   300
/* Idle observation before the attaches. */
#define SETTLE_MS 1000
#define IDLE_MS   5000

/* The allowed stall over idle, see allowed_gap_us(). */
#define ALLOWED_OVER_IDLE_US (150 * 1000)
#define ALLOWED_IDLE_FACTOR  3
/* Above this the machine is too busy for a timing requirement to mean
 * anything: even idle, the guest is not scheduled for this long. */
#define MAX_SANE_IDLE_GAP_US (150 * 1000)

static GDBusConnection *bus;
static virDomainPtr guest;
static char *console;
static char *image;
static char *passphrases[N_SLOTS];
static LvHeartbeatGaps idle;
static gboolean have_setup;

static void setup_once(void) {
        if (have_setup)
                return;
        have_setup = TRUE;
        bus = lv_bus();
        for (guint i = 0; i < N_SLOTS; i++)
                passphrases[i] = g_strdup_printf("stall test slot %u", i);
        gint64 t0 = g_get_monotonic_time();
        image = lv_make_luks1_slots_image("stall-8slots.img", (const char *const *) passphrases, N_SLOTS, SLOT_MS, 16);
        g_test_message("LUKS1 image with %u slots of ~%u ms (%u PBKDF2 iterations each) made in %.1f s", N_SLOTS,
                       SLOT_MS, lv_pbkdf2_iterations(SLOT_MS), (g_get_monotonic_time() - t0) / 1e6);

        guest = lv_start_heartbeat_guest(GUEST, &console);
        /* The kernel may still be finishing asynchronous work right after
         * init started; then the idle baseline. */
        g_usleep(SETTLE_MS * 1000);
        LvHeartbeat b = lv_heartbeat_latest(console);
        g_usleep(IDLE_MS * 1000);
        LvHeartbeat e = lv_heartbeat_next(console);
        if (!lv_heartbeat_gaps(console, b.guest_us, e.guest_us, &idle))
                g_error("no idle heartbeats to measure");
        g_test_message("idle over %.1f s (guest time): %u heartbeats, gaps median %.1f ms, max %.1f ms, %u lost lines",
                       (e.guest_us - b.guest_us) / 1e6, idle.n_beats, idle.median_gap_us / 1000.0,
                       idle.max_gap_us / 1000.0, idle.n_lost);
}

/* The only reason to skip: no kernel for the heartbeat guest. */
static gboolean skip_without_kernel(void) {
        if (lv_heartbeat_kernel() != NULL)
                return FALSE;
        g_test_skip("no /boot/vmlinuz-6.1.*-amd64 for the heartbeat guest (install linux-image-amd64)");
        return TRUE;
}

/* How much stall over an Attach still counts as "the guest was not
 * stalled": max(3 × the largest idle gap, the largest idle gap + 150 ms).
 *
 * Why: the idle gaps are this machine's scheduling noise right now (~20 ms
 * period plus the time the TCG vCPU thread waits for a core); an Attach adds
 * host load of its own (the daemon, libvirtd, D-Bus and polkit work, and —
 * once the daemon verifies passphrases itself — up to 8 × 300 ms of PBKDF2
 * on a worker thread, on a 2-core machine shared with QEMU), which can delay
 * the vCPU by a few scheduler slices, not by hundreds of milliseconds.  The
 * factor covers a noisy baseline, the 150 ms a quiet one.  With the usual
 * idle maximum of ~30 ms the bound is ~180 ms: below the ~300 ms a single
 * key slot tried by QEMU would cost, so this catches QEMU trying even one
 * slot, let alone all eight (~2.4 s). */
static gint64 allowed_gap_us(void) {
        return MAX(ALLOWED_IDLE_FACTOR * idle.max_gap_us, idle.max_gap_us + ALLOWED_OVER_IDLE_US);
}

typedef struct Attempt {
        char *path; /* the volume, if attached */
        GError *error;
        double attach_ms; /* host time of the Attach call */
        LvHeartbeatGaps gaps;
} Attempt;

static void attempt_clear(Attempt *a) {
        g_clear_pointer(&a->path, g_free);
        g_clear_error(&a->error);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Attempt, attempt_clear)

/* Attach on the scsi bus, with the guest's heartbeats watched from the last
 * one printed before the call to one printed after it returned. */
static void attach_watched(const char *passphrase, Attempt *a) {
        LvHeartbeat before = lv_heartbeat_latest(console);
        gint64 t0 = g_get_monotonic_time();
        a->path =
                lv_attach(bus, GUEST, image, passphrase, lv_opts("bus", g_variant_new_string("scsi"), NULL), &a->error);
        a->attach_ms = (g_get_monotonic_time() - t0) / 1000.0;
        LvHeartbeat after = lv_heartbeat_next(console);
        if (!lv_heartbeat_gaps(console, before.guest_us, after.guest_us, &a->gaps))
                g_error("no heartbeats around the Attach");
}

static gboolean idle_is_sane(void) {
        if (idle.max_gap_us <= MAX_SANE_IDLE_GAP_US)
                return TRUE;
        g_test_fail_printf("the machine is too busy to measure stalls: the idle guest already went %.0f ms "
                           "without a heartbeat (more than %d ms)",
                           idle.max_gap_us / 1000.0, MAX_SANE_IDLE_GAP_US / 1000);
        return FALSE;
}

static void test_wrong_passphrase(void) {
        if (skip_without_kernel())
                return;
        setup_once();
        if (!idle_is_sane())
                return;

        g_auto(Attempt) a = { 0 };
        attach_watched("not any slot's passphrase", &a);
        g_test_message("wrong passphrase, %u slots: Attach %.0f ms, largest heartbeat gap %.1f ms "
                       "(idle max %.1f ms, %.1fx idle; allowed %.1f ms); stood still %.0f ms in %u long gaps",
                       N_SLOTS, a.attach_ms, a.gaps.max_gap_us / 1000.0, idle.max_gap_us / 1000.0,
                       (double) a.gaps.max_gap_us / (double) idle.max_gap_us, allowed_gap_us() / 1000.0,
                       a.gaps.excess_us / 1000.0, a.gaps.n_long);

        if (a.path != NULL) {
                g_autoptr(GError) error = NULL;
                g_test_fail_printf("a wrong passphrase attached %s", a.path);
                lv_detach(bus, a.path, NULL, &error);
                return;
        }
        g_autofree char *name = lv_error_name(a.error);
        if (g_strcmp0(name, LV_ERR("BadPassphrase")) != 0) {
                g_test_fail_printf("expected %s, got %s: %s", LV_ERR("BadPassphrase"), name, a.error->message);
                return;
        }
        /* Nothing left behind either way. */
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, image));

        if (a.gaps.max_gap_us > allowed_gap_us())
                g_test_fail_printf("a wrong passphrase froze the guest for %.0f ms (allowed %.0f ms: idle gaps up to "
                                   "%.0f ms): QEMU was asked to try the key slots; the daemon must verify the "
                                   "passphrase before QEMU sees it",
                                   a.gaps.max_gap_us / 1000.0, allowed_gap_us() / 1000.0, idle.max_gap_us / 1000.0);
}

static void right_passphrase(guint slot) {
        if (skip_without_kernel())
                return;
        setup_once();
        if (!idle_is_sane())
                return;

        g_auto(Attempt) a = { 0 };
        attach_watched(passphrases[slot], &a);
        if (a.path == NULL) {
                g_test_fail_printf("Attach with slot %u's passphrase failed: %s", slot, a.error->message);
                return;
        }
        g_test_message("right passphrase, slot %u of %u: Attach %.0f ms, largest heartbeat gap %.1f ms "
                       "(idle max %.1f ms, %.1fx idle); stood still %.0f ms in %u long gaps",
                       slot, N_SLOTS, a.attach_ms, a.gaps.max_gap_us / 1000.0, idle.max_gap_us / 1000.0,
                       (double) a.gaps.max_gap_us / (double) idle.max_gap_us, a.gaps.excess_us / 1000.0, a.gaps.n_long);

        g_autofree char *target = lv_volume_prop_string(bus, a.path, "Target");
        g_autoptr(GError) error = NULL;
        g_assert_true(lv_detach(bus, a.path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(lv_domain_has_disk(guest, target));
        g_assert_cmpuint(lv_count_secrets(), ==, 0);

        /* The positive control: opening the last slot makes QEMU derive all
         * eight slots' keys, whoever verified the passphrase before, so the
         * instrument must see a stall well past the wrong-passphrase bound;
         * if it does not, a passing /stall/wrong-passphrase proves nothing. */
        if (slot == N_SLOTS - 1 && a.gaps.max_gap_us <= allowed_gap_us())
                g_test_fail_printf("the heartbeat guest showed no stall (%.0f ms, bound %.0f ms) while QEMU derived "
                                   "%u slots' keys: the instrument is blind",
                                   a.gaps.max_gap_us / 1000.0, allowed_gap_us() / 1000.0, N_SLOTS);
}

static void test_right_slot0(void) {
        right_passphrase(0);
}

static void test_right_slot7(void) {
        right_passphrase(N_SLOTS - 1);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        /* Each case is a separate finding: one failing must not keep the
         * others from reporting their figures. */
        g_test_set_nonfatal_assertions();
        lv_require_sandbox();

        g_test_add_func("/stall/wrong-passphrase", test_wrong_passphrase);
        g_test_add_func("/stall/right-passphrase/slot-0", test_right_slot0);
        g_test_add_func("/stall/right-passphrase/slot-7", test_right_slot7);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
