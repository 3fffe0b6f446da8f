/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The header snapshot that luks.c (opening, facts), luks-keys.c (key
 * slots, write-back), luks-derive.c and luks-dm.c all work on, below each
 * of them: libcryptsetup's process-wide lock and its context on a
 * snapshot, the copies between the source and the snapshot (on deadline
 * threads: the source may sit on a file system that never answers), and
 * the key slot and header areas added to the snapshot when a derivation or
 * a key change needs them.  It calls nothing of the files above it. */

#include <fcntl.h>
#include <libcryptsetup.h>
#include <pthread.h>
#include <sys/file.h>
#include <unistd.h>

#include "deadline.h"
#include "errors.h"
#include "header-policy.h"
#include "luks-internal.h"
#include "luks.h"
#include "source.h"
#include "util.h"

/* libcryptsetup's process-wide state, one thread at a time: see
 * luks-internal.h. */
pthread_mutex_t crypt_lock = PTHREAD_MUTEX_INITIALIZER;

/* libcryptsetup logs through a callback; by default it prints errors to
 * stderr.  Route them to our debug log: the caller reports the outcome once,
 * with context, as a typed error. */
void luks_log(int level, const char *msg, void *usrptr) {
        if (level == CRYPT_LOG_ERROR || level == CRYPT_LOG_NORMAL || level == CRYPT_LOG_VERBOSE)
                log_debug("libcryptsetup: %.*s", (int) strcspn(msg, "\n"), msg);
}

void crypt_free_locked(struct crypt_device *cd) {
        if (!cd)
                return;
        CRYPT_LOCKED;
        crypt_free(cd);
}

int crypt_init_locked(struct crypt_device **ret, const char *device) {
        luks_init();
        CRYPT_LOCKED;
        int r = crypt_init(ret, device);
        if (r >= 0)
                crypt_set_log_callback(*ret, luks_log, NULL);
        return r;
}

/* Copies [off, off+len) from src to dst at the same offset. */
int copy_range(int src, int dst, uint64_t off, uint64_t len) {
        uint8_t buf[64 * 1024];

        while (len > 0) {
                size_t n = (size_t) MIN(len, (uint64_t) sizeof buf);
                ssize_t k = pread(src, buf, n, (off_t) off);
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return -EIO; /* shorter than its header says */
                if (pwrite(dst, buf, (size_t) k, (off_t) off) != k)
                        return negative_errno();
                off += (uint64_t) k;
                len -= (uint64_t) k;
        }
        return 0;
}

/* crypt_init() + crypt_load() on the snapshot. */
int snapshot_load(LuksSource *s, struct crypt_device **ret, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        int r;

        r = crypt_init_locked(&cd, s->snap_path);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the LUKS header of '%s': %s", s->path,
                                         strerror(-r));
        r = crypt_load(cd, CRYPT_LUKS, NULL);
        if (r < 0) {
                if (IN_SET(-r, EINVAL, ENOENT, EBADMSG, EIO))
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' does not hold a valid LUKS header.",
                                                 s->path);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the LUKS header of '%s': %s", s->path,
                                         strerror(-r));
        }
        *ret = TAKE_PTR(cd);
        return 0;
}

bool slot_active(struct crypt_device *cd, int k) {
        crypt_keyslot_info ki = crypt_keyslot_status(cd, k);
        return ki == CRYPT_SLOT_ACTIVE || ki == CRYPT_SLOT_ACTIVE_LAST;
}

void copy_task_free(void *p) {
        CopyTask *t = p;
        if (t->src >= 0)
                close(t->src);
        if (t->dst >= 0)
                close(t->dst);
        if (t->lock >= 0)
                close(t->lock);
        free(t);
}

CopyTask *copy_task_new(void) {
        CopyTask *t = calloc(1, sizeof *t);
        if (t)
                t->src = t->dst = t->lock = -EBADF;
        return t;
}

static void copy_task_run(void *p) {
        CopyTask *t = p;

        t->r = 0;
        for (unsigned i = 0; i < t->n && t->r >= 0; i++)
                t->r = copy_range(t->src, t->dst, t->off[i], t->len[i]);
        if (t->r >= 0 && t->sync && fsync(t->dst) < 0)
                t->r = negative_errno();
        /* The duplicate shares the source's open file description, and so
         * its flock. */
        if (t->unlock_src)
                (void) flock(t->src, LOCK_UN);
}

/* Runs t (its ranges filled in; freed here) under the deadline: from the
 * source into the snapshot, or to_source.  0: done, *ret_io the copy's own
 * result; -ETIMEDOUT: still running, left to its thread (error not set:
 * the caller says what did not finish); another negative errno: error
 * set. */
int copy_task_finish(LuksSource *s, CopyTask *t, bool to_source, unsigned timeout_ms, int *ret_io,
                     sd_bus_error *error) {
        int r;

        t->src = fcntl(to_source ? s->snap_fd : s->fd, F_DUPFD_CLOEXEC, 3);
        t->dst = fcntl(to_source ? s->fd : s->snap_fd, F_DUPFD_CLOEXEC, 3);
        if (to_source && s->lock_fd >= 0)
                t->lock = fcntl(s->lock_fd, F_DUPFD_CLOEXEC, 3);
        t->sync = to_source;
        if (t->src < 0 || t->dst < 0 || (to_source && s->lock_fd >= 0 && t->lock < 0)) {
                r = negative_errno();
                copy_task_free(t);
                sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot duplicate a descriptor: %s", strerror(-r));
                return r;
        }

        r = deadline_run(copy_task_run, t, copy_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return r;
        if (r < 0) {
                copy_task_free(t);
                (void) source_error_deadline(error, r);
                return r;
        }
        *ret_io = t->r;
        copy_task_free(t);
        return 0;
}

/* The snapshot's ranges of t (freed here), read from the source. */
static int snapshot_copy(LuksSource *s, CopyTask *t, unsigned timeout_ms, sd_bus_error *error) {
        int r, io = 0;

        r = copy_task_finish(s, t, false, timeout_ms, &io, error);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0)
                return r;
        if (io < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the key slots of '%s': %s", s->path,
                                         strerror(-io));
        s->keyslots_copied = true;
        return 0;
}

static int snapshot_keyslots_copy(LuksSource *s, unsigned timeout_ms, sd_bus_error *error);

/* Key derivation needs the key slot areas, which the metadata snapshot
 * lacks; they are copied from the source once, under the deadline (and
 * under the shared lock the metadata was read with, if it is still held:
 * luks_source_open_keys()), which then goes. */
int snapshot_add_keyslots(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        int r;

        if (s->keyslots_copied)
                return 0;
        r = snapshot_keyslots_copy(s, timeout_ms, error);
        s->shared_locked = false;
        if (s->shared_lock_fd >= 0)
                close(s->shared_lock_fd);
        s->shared_lock_fd = -EBADF;
        return r;
}

static int snapshot_keyslots_copy(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        uint64_t total = 0;
        CopyTask *t;
        int r, max;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");

        max = MIN(crypt_keyslot_max(crypt_get_type(cd)), LUKS_MAX_KEYSLOTS);
        for (int k = 0; k < max; k++) {
                uint64_t off, len;

                if (!slot_active(cd, k) || crypt_keyslot_area(cd, k, &off, &len) < 0)
                        continue;
                if (off > s->size || len > s->size - off) {
                        copy_task_free(t);
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                                 "Key slot %d of '%s' lies outside the device.", k, s->path);
                }
                t->off[t->n] = off;
                t->len[t->n] = len;
                t->n++;
                total += len;
        }
        if (total > KEYSLOT_COPY_MAX) {
                copy_task_free(t);
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "The key slots of '%s' are implausibly large.",
                                         s->path);
        }
        t->unlock_src = s->shared_locked;
        if (s->shared_lock_fd >= 0) {
                /* A device's lock file: the task's duplicate keeps the lock
                 * until the copy ends, even if its caller stops waiting. */
                t->lock = fcntl(s->shared_lock_fd, F_DUPFD_CLOEXEC, 3);
                if (t->lock < 0) {
                        r = negative_errno();
                        copy_task_free(t);
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot duplicate a descriptor: %s",
                                                 strerror(-r));
                }
        }

        return snapshot_copy(s, t, timeout_ms, error);
}

/* Copies the rest of the header area — every key slot area, used or not —
 * into the snapshot: all that a change may read or write.  The metadata
 * names its extent; the payload is never part of it. */
int snapshot_add_header(LuksSource *s, unsigned timeout_ms, sd_bus_error *error) {
        _cleanup_(crypt_free_lockedp) struct crypt_device *cd = NULL;
        uint64_t metadata_size, keyslots_size, data_offset, end;
        const char *type;
        CopyTask *t;
        int r;

        r = snapshot_load(s, &cd, error);
        if (r < 0)
                return r;
        type = crypt_get_type(cd);
        if (streq_ptr(type, CRYPT_LUKS1))
                s->version = 1;
        else if (streq_ptr(type, CRYPT_LUKS2))
                s->version = 2;
        else
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS, "'%s' is not a LUKS volume.", s->path);

        r = crypt_get_metadata_size(cd, &metadata_size, &keyslots_size);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the header layout of '%s': %s", s->path,
                                         strerror(-r));
        /* LUKS1: the header, then the key slots; LUKS2: two copies of the
         * metadata, then the key slots area.  And wherever a slot's area
         * lies (LUKS1 names one for each slot, used or not): every area a
         * change may write must be in the snapshot. */
        end = (s->version == 1 ? metadata_size : 2 * metadata_size) + keyslots_size;
        for (int k = 0; k < MIN(crypt_keyslot_max(type), LUKS_MAX_KEYSLOTS); k++) {
                uint64_t off, len;
                if (crypt_keyslot_area(cd, k, &off, &len) < 0)
                        continue;
                if (len > UINT64_MAX - off)
                        return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                                 "Key slot %d of '%s' lies outside the device.", k, s->path);
                end = MAX(end, off + len);
        }
        data_offset = crypt_get_data_offset(cd) * 512;
        if (end > s->size || end < s->metadata_copied || (data_offset > 0 && end > data_offset))
                return sd_bus_error_setf(error, LV_ERROR_NOT_LUKS,
                                         "The header of '%s' overlaps its data or the end of the device.", s->path);
        if (end - s->metadata_copied > KEYSLOT_COPY_MAX)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED, "The key slots of '%s' are implausibly large.",
                                         s->path);
        s->metadata_size = metadata_size;
        s->header_end = end;

        t = copy_task_new();
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->off[0] = s->metadata_copied;
        t->len[0] = end - s->metadata_copied;
        t->n = 1;
        return snapshot_copy(s, t, timeout_ms, error);
}

/* LUKS1: the big-endian mkDigestIterations of the binary header (after
 * magic, version, cipher name and mode, hash, payload offset, key bytes,
 * digest and its salt).  LUKS2: the largest of the digests' "iterations"
 * in the JSON metadata libcryptsetup has validated. */
#define LUKS1_MK_DIGEST_ITERATIONS_OFFSET 164

int digest_iterations(LuksSource *s, struct crypt_device *cd, unsigned version, uint32_t *ret) {
        if (version == 1) {
                uint8_t b[4];
                if (pread(s->snap_fd, b, sizeof b, LUKS1_MK_DIGEST_ITERATIONS_OFFSET) != (ssize_t) sizeof b)
                        return -EIO;
                *ret = (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3];
                return 0;
        }

        const char *json = NULL;
        uint64_t most;
        int r = crypt_dump_json(cd, &json, 0);
        if (r < 0)
                return r;
        most = header_json_digest_iterations(json);
        *ret = (uint32_t) MIN(most, (uint64_t) UINT32_MAX);
        return 0;
}
