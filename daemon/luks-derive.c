/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Key derivation (luks-internal.h's derive_run()), passphrase
 * verification (luks.h's luks_source_verify()) — the CPU-heavy part of
 * every key slot try, on SCHED_BATCH threads of their own — and what a header
 * may cost before any of it runs: the limits of header-policy.h and
 * luks_source_check().  Apart from luks-keys.c, which writes key slots,
 * because this only ever reads the snapshot. */

#include <assert.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "header-policy.h"
#include "luks-internal.h"
#include "luks1-fast.h"
#include "luks.h"
#include "util.h"

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Every key derivation (PBKDF2 or argon2, seconds of CPU for a real
 * volume, as much as the header asks within the limits) runs on a thread
 * of its own under SCHED_BATCH at the daemon's nice (0).
 *
 * Why not niced (0.2 ran them at nice 10): on a host whose guests keep the
 * CPUs busy, a nice-10 thread competing with vCPU threads at nice 0 gets
 * about a tenth of a core (CFS weights 110 against 1024 each) — measured in
 * issue 17: a 300 ms slot's attach took 2.6 s with one busy TCG guest on 2
 * cores, and with two busy processes inside the test VM an 8-slot attach
 * outlived its caller's 120 s timeout.  SCHED_BATCH keeps the fair share
 * (the caller asked for this work, as cryptsetup would do it at nice 0) but
 * marks the thread CPU-bound: it never preempts on wakeup, while the event
 * loop, a normal thread that sleeps most of the time, preempts it when it
 * wakes — so callers keep getting answers (trust-kdf measures Probe while
 * derivations run).  What bounds a caller who attaches costly volumes over
 * and over is the cap on derivations in flight (4, 2 per uid: uid-cap.h)
 * and the header limits, not the priority; a LUKS1 slot's derivation may
 * use a thread per PBKDF2 block (up to the cores, luks1-fast.c), so a uid's
 * two derivations may hold every core for their time, as two cryptsetup
 * runs would.  Threads libcryptsetup starts for argon2, and those the
 * LUKS1 fast path starts for PBKDF2's output blocks, inherit the policy.
 * Never under crypt_lock: slots that would need it are refused first
 * (luks_source_check()). */

typedef struct DeriveThread {
        void (*fn)(void *arg);
        void *arg;
} DeriveThread;

static void *derive_thread(void *p) {
        static atomic_bool warned = false;
        DeriveThread *d = p;
        int r;

        /* Best effort: at worst the derivation runs as a normal thread —
         * said once, so that a sandbox that forbids it (the unit's system
         * call filter) shows in the journal (tests/systemd checks). */
        r = pthread_setschedparam(pthread_self(), SCHED_BATCH, &(struct sched_param){ .sched_priority = 0 });
        if (r != 0 && !atomic_exchange(&warned, true))
                log_warning("Key derivations run as normal threads: cannot set SCHED_BATCH: %s", strerror(r));
        d->fn(d->arg);
        /* The derived keys passed through libcryptsetup's frames, on this
         * thread's stack, which glibc keeps for the next thread. */
        stack_scrub();
        return NULL;
}

int derive_run(void (*fn)(void *arg), void *arg) {
        DeriveThread d = { .fn = fn, .arg = arg };
        pthread_t thread;
        int r;

        r = pthread_create(&thread, NULL, derive_thread, &d);
        if (r != 0)
                return -r;
        r = pthread_join(thread, NULL);
        assert(r == 0);
        return 0;
}

int slot_search_result(int run_r, int slot_r, int failed_slot, int found, const char *path, sd_bus_error *error) {
        if (run_r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot start a thread: %s", strerror(-run_r));
        if (slot_r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot try key slot %d of '%s': %s", failed_slot,
                                         path, strerror(-slot_r));
        if (found < 0)
                return sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                        "The passphrase does not open any key slot of the volume.");
        return 0;
}

/* Slot k by libcryptsetup: its key into vk (if vk), else just whether the
 * passphrase opens it.  0, -EPERM (wrong), -ENOENT (inactive), or another
 * failure. */
static int slot_try_libcryptsetup(SlotSearch *t, int k) {
        int r;

        if (!t->vk)
                r = crypt_activate_by_passphrase(t->cd, NULL, k, (const char *) t->passphrase->data,
                                                 t->passphrase->size, 0);
        else {
                size_t size = t->vk->size;
                r = crypt_volume_key_get(t->cd, k, (char *) t->vk->data, &size, (const char *) t->passphrase->data,
                                         t->passphrase->size);
                if (r >= 0)
                        t->vk_size = size;
        }
        return r < 0 ? r : 0;
}

/* Slot k by the fast path (luks1-fast.h): 0 opened (its candidate accepted
 * by libcryptsetup's digest check), -EPERM refused (to be confirmed),
 * -EOPNOTSUPP not a slot it handles. */
static int slot_try_fast(SlotSearch *t, int k) {
        uint8_t key[LUKS1_FAST_MAX_KEY];
        size_t len = 0;
        int r;

        r = luks1_fast_candidate(t->snap_fd, (unsigned) k, t->passphrase->data, t->passphrase->size, key, &len);
        if (r <= 0) {
                explicit_bzero(key, sizeof key);
                return -EOPNOTSUPP;
        }
        /* The authority: the header's digest, checked by libcryptsetup. */
        r = crypt_volume_key_verify(t->cd, (const char *) key, len);
        if (r >= 0 && t->vk) {
                if (len > t->vk->size)
                        r = -ENOBUFS;
                else {
                        memcpy(t->vk->data, key, len);
                        t->vk_size = len;
                }
        }
        explicit_bzero(key, sizeof key);
        return r < 0 ? -EPERM : 0;
}

void slot_search_run(void *p) {
        SlotSearch *t = p;
        int max = MIN(crypt_keyslot_max(crypt_get_type(t->cd)), LUKS_MAX_KEYSLOTS);
        bool luks1 = streq_ptr(crypt_get_type(t->cd), CRYPT_LUKS1);
        bool refused_fast[LUKS_MAX_KEYSLOTS] = {};

        /* In slot order, the order QEMU tries them in: slot and cost say
         * what a direct native attach would have stalled the guest for. */
        for (int k = 0; k < max && t->found < 0; k++) {
                uint64_t t0;
                int r = -EOPNOTSUPP;

                if (!slot_active(t->cd, k))
                        continue;
                t0 = now_ms();
                if (luks1 && t->snap_fd >= 0) {
                        r = slot_try_fast(t, k);
                        if (r == 0)
                                t->fast_opened = true;
                        else if (r == -EPERM)
                                refused_fast[k] = true;
                }
                if (r == -EOPNOTSUPP)
                        r = slot_try_libcryptsetup(t, k);
                t->cost_ms += now_ms() - t0;
                if (r >= 0)
                        t->found = k;
                else if (r != -EPERM && r != -ENOENT) {
                        t->failed_slot = k;
                        t->r = r;
                        return;
                }
        }
        /* No BadPassphrase on the fast path's word alone: libcryptsetup
         * tries the slots it refused (a wrong passphrase costs both). */
        for (int k = 0; k < max && t->found < 0; k++) {
                int r;

                if (!refused_fast[k])
                        continue;
                r = slot_try_libcryptsetup(t, k);
                if (r >= 0) {
                        log_warning("Key slot %d: the fast PBKDF2 path refused a passphrase libcryptsetup accepts.", k);
                        t->found = k;
                } else if (r != -EPERM && r != -ENOENT) {
                        t->failed_slot = k;
                        t->r = r;
                        return;
                }
        }
}

int luks_source_verify(LuksSource *s, const Passphrase *passphrase, unsigned timeout_ms, int *ret_slot,
                       uint64_t *ret_cost_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        SlotSearch t = { .passphrase = passphrase, .snap_fd = s->snap_fd, .found = -1, .failed_slot = -1 };
        int r;

        r = luks_source_check(s, error);
        if (r < 0)
                return r;
        r = snapshot_add_keyslots(s, timeout_ms, error);
        if (r < 0)
                return r;
        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        t.cd = cd;
        /* derive_run() first: the outcome is read from t afterwards. */
        r = derive_run(slot_search_run, &t);
        r = slot_search_result(r, t.r, t.failed_slot, t.found, s->path, error);
        if (r < 0)
                return r;
        *ret_slot = t.found;
        *ret_cost_ms = t.cost_ms;
        return 0;
}

/* ------------------------------------------------- what a header may cost */

static KdfLimits kdf_limits = {
        .max_pbkdf2_iterations = KDF_DEFAULT_MAX_PBKDF2_ITERATIONS,
        .max_argon2_memory_kib = KDF_DEFAULT_MAX_ARGON2_MEMORY_KIB,
        .max_argon2_cost = KDF_DEFAULT_MAX_ARGON2_COST,
};

void luks_set_kdf_limits(const KdfLimits *limits) {
        kdf_limits = *limits;
}

const KdfLimits *luks_kdf_limits(void) {
        return &kdf_limits;
}

int luks_source_check(LuksSource *s, sd_bus_error *error) {
        LuksInfo info;
        char buf[384];
        const char *o;
        int r;

        r = luks_source_info(s, &info, error);
        if (r < 0)
                return r;
        o = header_obstacle(&info, &kdf_limits, buf, sizeof buf);
        if (o)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "'%s' is refused: %s.", s->path, o);
        return 0;
}
