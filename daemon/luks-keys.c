/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Key slots on a source from luks.c: the key slot areas copied into the
 * snapshot under the deadline (for passphrase verification, in
 * luks-derive.c, and activation), and key management — add, change,
 * remove — with libcryptsetup changing only the snapshot and our
 * own tasks writing it back to the source step by step, each step synced,
 * in the crash-safe order described below.  Apart from luks.c because the
 * write-back is the one place the header is ever written: its ordering
 * rules are easier to keep, and to review, in a file of their own. */

#include <assert.h>
#include <fcntl.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#include "deadline.h"
#include "errors.h"
#include "fault.h"
#include "header-policy.h"
#include "luks-internal.h"
#include "luks.h"
#include "util.h"

/* ---------------------------------------------------------- key slots */

/* ------------------------------------------------------ key management
 *
 * Changing key slots without breaking the rules above: libcryptsetup
 * changes the snapshot, never the source; the source is only read (into
 * the snapshot) and written (from it) by tasks of our own under the
 * deadline; the process-wide lock is not held across any of it.  The
 * source stays locked exclusively from the snapshot to the last write
 * (luks_source_open_exclusive()), so nothing changes it in between and
 * nobody (libcryptsetup elsewhere, another call of ours) reads it half
 * written.
 *
 * Torn writes.  A crash (or power loss, or a deadline that lets the write
 * run on alone) may stop the write-back anywhere, and a write may land
 * only in part.  The write-back is therefore a sequence of steps, each
 * written and fsync()ed before the next starts, in an order where every
 * prefix leaves a header that opens with the old passphrase or the new:
 *
 *  - a key slot area that becomes used is written before any metadata
 *    names it, and one that is given up is wiped only after every copy of
 *    the metadata has stopped naming it;
 *  - LUKS2 keeps two copies of its metadata, each with a checksum and a
 *    sequence number; libcryptsetup loads the copy with the higher number
 *    among those whose checksum holds.  The primary is written and synced
 *    first, the secondary after: a torn primary fails its checksum and the
 *    untouched secondary (the old state) is used; a torn secondary leaves
 *    the complete primary (the new state).  Never both at once;
 *  - LUKS1 has one 592-byte header, whose only change is the 48-byte
 *    descriptor of one key slot per step.  So a change of passphrase is
 *    two steps — add the new slot (header: both slots active), then
 *    destroy the old one (header: only the new) — and a torn header write
 *    can damage only the descriptor it was changing: the other
 *    passphrase's slot is intact in either step.  (Changing a slot in
 *    place, as libcryptsetup does when no slot is free, could lose the
 *    only key on a crash: we need a free slot instead.)
 */

#define LUKS1_PHDR_SIZE 592U

/* One step of a write-back (see above): [off, off+len) from the snapshot
 * to the source, then fsync(); the source stays locked until it ends. */
static int write_step(LuksSource *s, uint64_t off, uint64_t len, unsigned timeout_ms, sd_bus_error *error) {
        CopyTask *t;
        int r, io = 0;

        /* Only ever the header, which the exclusive open read whole. */
        if (!s->exclusive || off > s->header_end || len > s->header_end - off)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Refusing to write outside the header of '%s'.",
                                         s->path);

        /* An RBD image: through librbd, under the image's exclusive lock
         * (luks-rbd.c), each step flushed to the OSDs before the next. */
        if (s->rbd) {
                r = rbd_write_back(s, off, len);
                if (r < 0)
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot write the header of '%s': %s", s->path,
                                                 strerror(-r));
                return 0;
        }

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->off[0] = off;
        t->len[0] = len;
        t->n = 1;

        r = copy_task_finish(s, t, true, timeout_ms, &io, error);
        if (r == -ETIMEDOUT) {
                s->writer_abandoned = true;
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "'%s' did not finish writing its header within %u s (a hung file system?); "
                                         "the header opens with the passphrases it had before, or with the new "
                                         "ones: try them, or check again later.",
                                         s->path, (timeout_ms + 999) / 1000);
        }
        if (r < 0)
                return r;
        if (io < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot write the header of '%s': %s", s->path,
                                         strerror(-io));
        return 0;
}

/* Every copy of the metadata, one step each: LUKS2's primary, then its
 * secondary; LUKS1's one header. */
static int write_metadata(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        int r;

        if (s->version == 1)
                return write_step(s, 0, LUKS1_PHDR_SIZE, timeout_ms, error);
        r = write_step(s, 0, s->metadata_size, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 1); /* primary written, secondary old */
        return write_step(s, s->metadata_size, s->metadata_size, timeout_ms, error);
}

static unsigned count_active(struct crypt_device *cd) {
        int max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        unsigned n = 0;

        for (int k = 0; k < max; k++)
                if (slot_active(cd, k))
                        n++;
        return n;
}

static bool have_free_slot(struct crypt_device *cd) {
        int max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);

        for (int k = 0; k < max; k++)
                if (crypt_keyslot_status(cd, k) == CRYPT_SLOT_INACTIVE)
                        return true;
        return false;
}

typedef struct UnlockTask {
        struct crypt_device *cd;
        const Passphrase *passphrase;
        Passphrase *vk;
        int found, failed_slot, r;
} UnlockTask;

static void unlock_task_run(void *p) {
        UnlockTask *t = p;
        int max = MIN(crypt_keyslot_max(crypt_get_type(t->cd)), LUKS_MAX_KEYSLOTS);

        for (int k = 0; k < max && t->found < 0; k++) {
                size_t n = t->vk->size;
                int r;

                if (!slot_active(t->cd, k))
                        continue;
                r = crypt_volume_key_get(t->cd, k, (char *) t->vk->data, &n, (const char *) t->passphrase->data,
                                         t->passphrase->size);
                if (r >= 0)
                        t->found = k;
                else if (r != -EPERM && r != -ENOENT) {
                        t->failed_slot = k;
                        t->r = r;
                        break;
                }
        }
}

/* The first active key slot, in slot order (QEMU's), that passphrase
 * opens, and the volume key it unlocks, into locked memory. */
static int unlock_volume_key(LuksSource *s, struct crypt_device *cd, const Passphrase *passphrase, int *ret_slot,
                             Passphrase **ret_vk, sd_bus_error *error) {
        _cleanup_passphrase_ Passphrase *vk = NULL;
        UnlockTask t = { .cd = cd, .passphrase = passphrase, .found = -1, .failed_slot = -1 };
        int r;

        r = luks_source_check(s, error);
        if (r < 0)
                return r;
        r = crypt_get_volume_key_size(cd);
        if (r <= 0)
                return sd_bus_error_set(error, LV_ERROR_NOT_LUKS, "The volume has no key size.");
        r = passphrase_new_zeroed((size_t) r, &vk);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot allocate the key buffer: %s", strerror(-r));

        t.vk = vk;
        /* derive_run() first: the outcome is read from t afterwards. */
        r = derive_run(unlock_task_run, &t);
        r = slot_search_result(r, t.r, t.failed_slot, t.found, s->path, error);
        if (r < 0)
                return r;
        *ret_slot = t.found;
        *ret_vk = TAKE_PTR(vk);
        return 0;
}

/* The new slot is made like the one the existing passphrase opened: the
 * same PBKDF (type, hash, iterations or argon2 costs — fixed, not
 * benchmarked) and, for LUKS2, the same key slot cipher; for LUKS1 the
 * hash is the header's anyway, so a volume QEMU could open stays one it
 * can open.  iterations, if not 0, replaces the iteration count (PBKDF2)
 * or time cost (argon2).  libcryptsetup still caps argon2's threads at the
 * CPUs online and its memory at what the host has. */
static int set_new_slot_like(LuksSource *s, struct crypt_device *cd, int like, uint32_t iterations,
                             sd_bus_error *error) {
        struct crypt_pbkdf_type pbkdf = {};
        bool pbkdf2;
        int r;

        r = crypt_keyslot_get_pbkdf(cd, like, &pbkdf);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the PBKDF of key slot %d of '%s': %s",
                                         like, s->path, strerror(-r));
        pbkdf2 = streq_ptr(pbkdf.type, CRYPT_KDF_PBKDF2);
        if (iterations > 0) {
                char buf[256];
                const char *o;

                if (iterations < (pbkdf2 ? 1000U : KDF_ARGON2_TIME_MIN))
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'pbkdf-iterations' must be at least %u for %s key slots.",
                                                 pbkdf2 ? 1000U : KDF_ARGON2_TIME_MIN, strempty(pbkdf.type));
                /* argon2's time cost: what the README promises. */
                if (!pbkdf2 && iterations > KDF_ARGON2_TIME_MAX)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'pbkdf-iterations' (the time cost) must be from %u to %u "
                                                 "for %s key slots.",
                                                 KDF_ARGON2_TIME_MIN, KDF_ARGON2_TIME_MAX, strempty(pbkdf.type));
                /* The new slot is derived now and on every use: the same
                 * limits as any slot. */
                o = header_new_slot_obstacle(pbkdf.type, iterations, pbkdf.max_memory_kb, pbkdf.parallel_threads,
                                             luks_kdf_limits(), buf, sizeof buf);
                if (o)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'pbkdf-iterations' is too high: the new key slot %s.", o);
                pbkdf.iterations = iterations;
        }
        pbkdf.flags |= CRYPT_PBKDF_NO_BENCHMARK;
        r = crypt_set_pbkdf_type(cd, &pbkdf);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot use the PBKDF of key slot %d of '%s': %s",
                                         like, s->path, strerror(-r));

        if (s->version == 2) {
                size_t key_size = 0;
                const char *enc = crypt_keyslot_get_encryption(cd, like, &key_size);
                if (enc && key_size > 0) {
                        r = crypt_keyslot_set_encryption(cd, enc, key_size);
                        if (r < 0)
                                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                                         "Cannot use the key slot cipher of '%s': %s", s->path,
                                                         strerror(-r));
                }
        }
        return 0;
}

typedef struct AddTask {
        struct crypt_device *cd;
        const Passphrase *vk, *passphrase;
        int slot;
} AddTask;

static void add_task_run(void *p) {
        AddTask *t = p;
        t->slot = crypt_keyslot_add_by_volume_key(t->cd, CRYPT_ANY_SLOT, (const char *) t->vk->data, t->vk->size,
                                                  (const char *) t->passphrase->data, t->passphrase->size);
}

/* Step one of an add or change: a new slot for new_passphrase, made like
 * slot like, written area first, metadata after. */
static int stage_add(LuksSource *s, struct crypt_device *cd, const Passphrase *vk, int like,
                     const Passphrase *new_passphrase, uint32_t iterations, unsigned timeout_ms, int *ret_slot,
                     sd_bus_error *error) {
        uint64_t off, len;
        int r, slot;

        if (!have_free_slot(cd))
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "All %d key slots of '%s' are in use; remove one first.",
                                         MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS), s->path);
        r = set_new_slot_like(s, cd, like, iterations, error);
        if (r < 0)
                return r;

        /* Key derivation for the new slot, and its area written into the
         * snapshot: on a derivation thread, never under crypt_lock (slot like is
         * AES, luks_source_check()). */
        AddTask task = { .cd = cd, .vk = vk, .passphrase = new_passphrase };
        r = derive_run(add_task_run, &task);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot start a thread: %s", strerror(-r));
        slot = task.slot;
        if (slot == -ENOSPC)
                return sd_bus_error_setf(
                        error, LV_ERROR_NOT_SUPPORTED,
                        "The key slot area of '%s' has no room for another key slot; remove one first.", s->path);
        if (slot < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot add a key slot to '%s': %s", s->path,
                                         strerror(-slot));

        r = crypt_keyslot_area(cd, slot, &off, &len);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot locate the new key slot of '%s': %s", s->path,
                                         strerror(-r));
        r = write_step(s, off, len, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 2); /* new area written, not named by any metadata */
        r = write_metadata(s, timeout_ms, error);
        if (r < 0)
                return r;
        *ret_slot = slot;
        return 0;
}

/* The last step of a change or a removal: slot destroyed, metadata
 * written first, the slot's area wiped after. */
static int stage_destroy(LuksSource *s, struct crypt_device *cd, int slot, unsigned timeout_ms, sd_bus_error *error) {
        uint64_t off, len;
        int r;

        r = crypt_keyslot_area(cd, slot, &off, &len);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot locate key slot %d of '%s': %s", slot, s->path,
                                         strerror(-r));
        r = crypt_keyslot_destroy(cd, slot);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot remove key slot %d of '%s': %s", slot, s->path,
                                         strerror(-r));
        r = write_metadata(s, timeout_ms, error);
        if (r < 0)
                return r;
        fault_point("keys", 3); /* metadata without the slot, its area not yet wiped */
        return write_step(s, off, len, timeout_ms, error);
}

static int key_add(LuksSource *s, const Passphrase *existing, const Passphrase *new_passphrase, uint32_t iterations,
                   bool replace, unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        int r, old_slot = -1, new_slot = -1;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        r = unlock_volume_key(s, cd, existing, &old_slot, &vk, error);
        if (r < 0)
                return r;
        r = stage_add(s, cd, vk, old_slot, new_passphrase, iterations, timeout_ms, &new_slot, error);
        if (r < 0)
                return r;
        vk = passphrase_free(vk);
        if (replace) {
                r = stage_destroy(s, cd, old_slot, timeout_ms, error);
                if (r < 0)
                        return r;
        }
        *ret_slot = new_slot;
        return 0;
}

int luks_key_add(LuksSource *s, const Passphrase *existing, const Passphrase *new_passphrase, uint32_t iterations,
                 unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        return key_add(s, existing, new_passphrase, iterations, false, timeout_ms, ret_slot, error);
}

int luks_key_change(LuksSource *s, const Passphrase *old, const Passphrase *new_passphrase, uint32_t iterations,
                    unsigned timeout_ms, int *ret_slot, sd_bus_error *error) {
        return key_add(s, old, new_passphrase, iterations, true, timeout_ms, ret_slot, error);
}

int luks_key_remove(LuksSource *s, const Passphrase *passphrase, bool force, unsigned timeout_ms, int *ret_slot,
                    sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        _cleanup_passphrase_ Passphrase *vk = NULL;
        int r, slot = -1;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        r = unlock_volume_key(s, cd, passphrase, &slot, &vk, error);
        if (r < 0)
                return r;
        vk = passphrase_free(vk);
        if (count_active(cd) <= 1 && !force)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "Key slot %d is the last one of '%s': without it nothing opens the volume "
                                         "ever again.  Pass 'force' to remove it anyway.",
                                         slot, s->path);
        r = stage_destroy(s, cd, slot, timeout_ms, error);
        if (r < 0)
                return r;
        *ret_slot = slot;
        return 0;
}
