/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Internal to the luks-*.c files — not part of luks.h's API, and included
 * by nothing else: what they share.  The source behind luks.h's opaque
 * LuksSource, libcryptsetup's process-wide lock, and the snapshot helpers
 * (luks-snapshot.c, below the others). */

#include <libcryptsetup.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "luks.h"
#include "rbd.h"
#include "util.h"

/* libcryptsetup keeps process-global state that crypt_init() and
 * crypt_free() change (the device-mapper backend's use count and logging
 * set-up) and that every device-mapper call uses, so those never run in two
 * threads at once.  The lock is held only around them: crypt_init() on a
 * snapshot (a memfd, which never blocks), crypt_free(), and dm operations
 * (activation, deactivation).  Header parsing and key derivation run
 * without it, on the snapshot, in parallel.
 *
 * Key slots whose cipher OpenSSL lacks (serpent, twofish…) would make
 * libcryptsetup decrypt the key slot through the kernel (AF_ALG, which the
 * unit forbids) or a temporary dm-crypt device, i.e. device-mapper, after a
 * derivation the header sizes: the lock would be held across it, and one
 * crafted header would stall every other caller.  Such slots are refused
 * before anything is derived (header-policy.h), so no derivation ever runs
 * under the lock. */
extern pthread_mutex_t crypt_lock;

static inline void unlockp(pthread_mutex_t **m) {
        if (*m)
                pthread_mutex_unlock(*m);
}

static inline pthread_mutex_t *crypt_lock_take(void) {
        pthread_mutex_lock(&crypt_lock);
        return &crypt_lock;
}

#define CRYPT_LOCKED _cleanup_(unlockp) _unused_ pthread_mutex_t *_crypt_guard_ = crypt_lock_take()

/* LUKS1's header is one 592-byte block; LUKS2's binary header names the
 * size of each of its two copies (JSON included). */
#define LUKS1_PHDR_AREA         4096U
#define LUKS2_HDR_SIZE_MIN      0x4000ULL
#define LUKS2_HDR_SIZE_MAX      0x400000ULL
/* LUKS1's payloadOffset (sectors), big-endian after magic, version,
 * cipher name and mode and hash. */
#define LUKS1_PAYLOAD_OFFSET_AT 104

static inline uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (unsigned i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

static inline uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static inline uint16_t be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

/* Key slot areas copied for one verification or activation: LUKS1's eight
 * slots take 2 MiB with a 512-bit key, LUKS2's default argon2 slots ~256 KiB
 * each.  Anything far beyond is not a header libcryptsetup made. */
#define KEYSLOT_COPY_MAX (128ULL << 20)

/* luks-rbd.c: an RBD image's header areas, read through librbd into a
 * memfd of the image's size (the rest left sparse), which then stands in
 * for the source's descriptor: every copy into the snapshot reads it. */
int rbd_header_copy(const char *source, bool exclusive, int *ret_fd, uint64_t *ret_size, RbdFacts *ret_facts,
                    RbdImage **ret_image, const char **ret_stage);
/* librbd's failure at stage, in words a caller can act on. */
int rbd_error(sd_bus_error *error, const char *source, const char *stage, int e);
/* A write-back step of an RBD image's header ([off, off+len) of the
 * snapshot) through librbd, under the image's exclusive lock.  On the
 * calling worker thread: librados' op timeout bounds it. */
int rbd_write_back(LuksSource *s, uint64_t off, uint64_t len);

/* libcryptsetup's log callback (luks.c): to our debug log. */
void luks_log(int level, const char *msg, void *usrptr);

/* crypt_free() under crypt_lock. */
void crypt_free_locked(struct crypt_device *cd);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct crypt_device *, crypt_free_locked);

struct LuksSource {
        char *path;
        int fd; /* the source, as opened */
        bool writable;
        bool block;
        int snap_fd;        /* memfd: same size as the source, header areas copied */
        char snap_path[40]; /* /proc/self/fd/N, for crypt_init() */
        uint64_t size;
        uint64_t metadata_copied; /* [0, this) was copied when it was opened */
        bool keyslots_copied;
        /* luks_source_open_keys(): the shared lock taken to copy the
         * metadata, kept until the key slot areas are copied too — a flock
         * on fd itself for a file (shared_locked), libcryptsetup's lock file
         * for a device (shared_lock_fd). */
        bool shared_locked;
        int shared_lock_fd;

        /* luks_source_open_exclusive(): the lock is ours until the source is
         * freed — a flock on fd itself for a file, lock_fd (libcryptsetup's
         * lock file) for a device. */
        bool exclusive;
        int lock_fd;
        dev_t lock_rdev;
        bool writer_abandoned; /* a write-back outlived its deadline and still holds the lock */
        uint64_t header_end;   /* metadata and every key slot area: [0, header_end) is in the snapshot */
        bool rbd;              /* since 0.3: fd is a memfd of the RBD image's header areas (luks-rbd.c) */
        RbdFacts rbd_facts;
        RbdImage *rbd_image;    /* exclusive opens: the image, read-write, locked until freed */
        uint64_t metadata_size; /* LUKS2: one copy of the metadata (the secondary starts there) */
        unsigned version;
};

/* luks-snapshot.c */

/* The volume key digest's PBKDF2 iterations (LuksInfo.digest_iterations),
 * from the snapshot s and its loaded header cd. */
int digest_iterations(LuksSource *s, struct crypt_device *cd, unsigned version, uint32_t *ret);
/* crypt_init() under crypt_lock, logging through luks_log(). */
int crypt_init_locked(struct crypt_device **ret, const char *device);
/* Copies [off, off+len) from src to dst at the same offset. */
int copy_range(int src, int dst, uint64_t off, uint64_t len);
/* crypt_init() + crypt_load() on the snapshot. */
int snapshot_load(LuksSource *s, struct crypt_device **ret, sd_bus_error *error);
bool slot_active(struct crypt_device *cd, int k);

#define MAX_RANGES (LUKS_MAX_KEYSLOTS + 1)

/* Ranges copied between the source and the snapshot, at the same offsets,
 * on a thread of its own (deadline.h): into the snapshot, or back to the
 * source and fsync()ed.  The task owns duplicates of the descriptors; a
 * write-back's duplicates of the source (a file's flock lives on it) and of
 * the device lock file keep the source locked until the task ends, even if
 * its caller stopped waiting. */
typedef struct CopyTask {
        int src, dst, lock;
        bool sync;
        bool unlock_src; /* let go of the source's shared flock when done */
        uint64_t off[MAX_RANGES], len[MAX_RANGES];
        unsigned n;
        int r;
} CopyTask;

CopyTask *copy_task_new(void);
void copy_task_free(void *p);
/* Runs t (its ranges filled in; freed here) under the deadline: from the
 * source into the snapshot, or to_source (fsync()ed).  0: done, *ret_io the
 * copy's own result; -ETIMEDOUT: still running, left to its thread (error
 * not set: the caller says what did not finish); another negative errno:
 * error set. */
int copy_task_finish(LuksSource *s, CopyTask *t, bool to_source, unsigned timeout_ms, int *ret_io, sd_bus_error *error);
/* The key slot areas (active slots) into the snapshot, once. */
int snapshot_add_keyslots(LuksSource *s, unsigned timeout_ms, sd_bus_error *error);
/* The whole header area into the snapshot (luks_source_open_exclusive()). */
int snapshot_add_header(LuksSource *s, unsigned timeout_ms, sd_bus_error *error);

/* luks-dm.c: the first line of a sysfs attribute, without its newline;
 * -ENOENT if it is not there. */
int sysfs_read_line(const char *path, char **ret);

/* luks-derive.c */

/* Runs fn(arg) on a thread of its own under SCHED_BATCH (luks-derive.c says why) and waits for
 * it: every key derivation runs there.  -errno if no
 * thread could be started (fn did not run). */
int derive_run(void (*fn)(void *arg), void *arg);
/* The outcome of trying the key slots on a derive_run() thread as an
 * error: run_r derive_run()'s result, slot_r the first failure other than a
 * wrong passphrase (at failed_slot), found the slot that opened (< 0:
 * none).  0 if one did; BadPassphrase if none did. */
int slot_search_result(int run_r, int slot_r, int failed_slot, int found, const char *path, sd_bus_error *error);

/* The key slots tried with a passphrase, in slot order, on a derive_run()
 * thread: LUKS1 slots through the fast path where it applies (luks1-fast.h:
 * nettle's PBKDF2, its key checked by libcryptsetup against the digest, and
 * a refusal tried by libcryptsetup again before it counts), the others by
 * libcryptsetup.  With vk, the volume key of the slot that opens goes there
 * (vk_size its length). */
typedef struct SlotSearch {
        struct crypt_device *cd;
        int snap_fd; /* the snapshot the fast path reads; -1: none */
        const Passphrase *passphrase;
        Passphrase *vk; /* NULL: only whether a slot opens */
        size_t vk_size;
        int found; /* the slot, or -1 */
        int failed_slot;
        int r; /* < 0: trying failed_slot failed other than by a wrong passphrase */
        uint64_t cost_ms;
        bool fast_opened; /* the fast path found it */
} SlotSearch;
void slot_search_run(void *p);
