/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libcryptsetup, in-process: LUKS header facts, passphrase verification,
 * dm-crypt mappings.
 *
 * The caller's file is touched only by luks_source_open() and the keyslot
 * copy behind luks_source_verify()/luks_activate(), each on a thread of its
 * own under a deadline (deadline.h).  libcryptsetup itself only ever reads
 * a private in-memory snapshot of the header areas (a memfd), so no lock
 * another process holds on the file, and no file system that stops
 * answering, can stall it — or, through libcryptsetup's process-wide state,
 * every other call of the daemon. */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "passphrase.h"
#include "source.h"

/* LUKS2 has 32 key slots, LUKS1 8. */
#define LUKS_MAX_KEYSLOTS 32

typedef struct LuksKeyslot {
        unsigned slot;
        char pbkdf[16];            /* "pbkdf2", "argon2i", "argon2id" */
        char hash[32];             /* PBKDF2's hash; "" for argon2 */
        uint32_t iterations;       /* PBKDF2 iterations, or argon2's time cost */
        uint32_t memory_kib;       /* argon2 */
        uint32_t parallel_threads; /* argon2 */
        char cipher[64];           /* the key slot's own encryption */
        unsigned cipher_key_bits;  /* and its key size */
} LuksKeyslot;

typedef struct LuksInfo {
        unsigned version; /* 1 or 2 */
        char uuid[40];
        char cipher[96];      /* "aes-xts-plain64" */
        char cipher_name[32]; /* "aes" */
        char cipher_mode[64]; /* "xts-plain64" */
        char hash[32];        /* the first active key slot's PBKDF2 hash; "" for argon2 */
        unsigned key_size_bits;
        unsigned active_keyslots;
        LuksKeyslot keyslots[LUKS_MAX_KEYSLOTS]; /* the active ones, in slot order */
        uint64_t payload_offset;                 /* bytes from the start of the device to the data */
        uint32_t sector_size;
        uint64_t device_size; /* bytes of the whole source */
        /* The volume key's digest: PBKDF2 iterations libcryptsetup spends
         * checking the key every slot try yields (the most of any digest). */
        uint32_t digest_iterations;
        /* LUKS2: data integrity tags (dm-integrity), requirement flags
         * (e.g. an unfinished reencryption): no header shim for either. */
        bool integrity;
        bool requirements;
        /* Since 0.3, an RBD image (source "rbd:…"): its features
         * (RBD_FEATURE_* bits) and the clients watching it. */
        bool rbd;
        uint64_t rbd_features;
        unsigned rbd_watchers;
        char rbd_watcher[64]; /* the first one's address, "" if none */
} LuksInfo;

typedef struct LuksSource LuksSource;

/* Sets up libcryptsetup's process-wide state (crypto backend, RNG), once:
 * its first initialisation is not thread-safe, so every entry into the
 * library (crypt_init_locked() and the like) calls this first, and a
 * concurrent first caller waits for the one doing it.  Not at start-up: a
 * cold activation whose first call is a Probe('') never needs it (issue 20). */
void luks_init(void);

/* Opens src (read-write if want_write and the file allows it; else
 * read-only), checks that it is still the file or device src describes,
 * refuses it at once if another process holds a lock on it (a flock on a
 * file, libcryptsetup's metadata lock on a device: Error.Busy "locked by
 * another process"), and copies its LUKS metadata into a private snapshot.
 * All on a thread of its own, waiting at most timeout_ms (then Error.Busy).
 * Not LUKS → Error.NotLuks. */
int luks_source_open(const SourceInfo *src, bool want_write, unsigned timeout_ms, LuksSource **ret,
                     sd_bus_error *error);
/* For a change of key slots: src opened read-write under an exclusive lock
 * taken without waiting — a flock on a file, libcryptsetup's lock file
 * /run/cryptsetup/L_<major>:<minor> on a device — and held until
 * luks_source_free(); another holder → Error.Busy "locked by another
 * process" at once.  The snapshot holds the whole header area: the
 * metadata and every key slot area (never the payload).  Deadline as for
 * luks_source_open(). */
int luks_source_open_exclusive(const SourceInfo *src, unsigned timeout_ms, LuksSource **ret, sd_bus_error *error);
LuksSource *luks_source_free(LuksSource *s);
static inline void luks_source_freep(LuksSource **s) {
        if (*s)
                luks_source_free(*s);
}

/* The source, as opened (for loop devices and exclusive holds). */
int luks_source_fd(const LuksSource *s);
bool luks_source_writable(const LuksSource *s);
const char *luks_source_path(const LuksSource *s);

/* Sets a file source's size (ftruncate(), sparse; on a thread of its own,
 * at most timeout_ms).  Refused for block devices and read-only opens.
 * The snapshot keeps the size it was taken with. */
int luks_source_truncate(LuksSource *s, uint64_t size, unsigned timeout_ms, sd_bus_error *error);

/* Header facts from the snapshot. */
int luks_source_info(LuksSource *s, LuksInfo *ret, sd_bus_error *error);

/* The limits of header-policy.h that every derivation checks first (set
 * once at start-up, before any thread). */
struct KdfLimits;
void luks_set_kdf_limits(const struct KdfLimits *limits);
const struct KdfLimits *luks_kdf_limits(void);

/* The header's cipher and every active key slot against header-policy.h:
 * Error.NotSupported naming the source, the slot and its cost otherwise.
 * Called by everything below that derives a key, before it does. */
int luks_source_check(LuksSource *s, sd_bus_error *error);

/* Like luks_source_open(), and the key slot areas copied into the snapshot
 * too, under the same shared lock as the metadata: a key change that
 * starts in between (it needs the lock exclusively) cannot leave the
 * snapshot with metadata naming a slot whose area it has rewritten. */
int luks_source_open_keys(const SourceInfo *src, bool want_write, unsigned timeout_ms, LuksSource **ret,
                          sd_bus_error *error);

/* Tries the passphrase on each active key slot in slot order — the order
 * QEMU tries them in — and times each try.  *ret_slot: the slot it opens;
 * *ret_cost_ms: the key derivation time of all slots tried up to and
 * including that one, i.e. about how long QEMU's own try will hold the
 * guest.  Error.BadPassphrase if no slot opens.  Reads the key slot areas
 * (deadline timeout_ms) unless luks_source_open_keys() did; the header is
 * checked first (luks_source_check(): Error.NotSupported, nothing derived),
 * so the derivation — CPU work on a SCHED_BATCH thread, never under the library
 * lock — costs at most what the limits allow per slot. */
int luks_source_verify(LuksSource *s, const Passphrase *passphrase, unsigned timeout_ms, int *ret_slot,
                       uint64_t *ret_cost_ms, sd_bus_error *error);

/* Key slots, on a source from luks_source_open_exclusive().  libcryptsetup
 * changes the snapshot; the changed areas are then written back to the
 * source step by step, each step synced, in an order where a crash at any
 * point leaves a header that opens with the old passphrase or with the new
 * (see luks-keys.c).  Each write step runs under the deadline timeout_ms; one
 * that does not finish in time is left to run (the source stays locked
 * until it ends) and answers Error.Busy.
 *
 * The existing passphrase is tried on each active slot in slot order;
 * none opens → Error.BadPassphrase.  A new slot is made like the slot it
 * opened (the same PBKDF with fixed parameters — no benchmark —, for LUKS2
 * the same key slot cipher); iterations, if not 0, overrides PBKDF2's
 * iteration count or argon2's time cost.  No free slot → Error.NotSupported.
 * *ret_slot: the new slot (add, change), the removed one (remove). */
int luks_key_add(LuksSource *s, const Passphrase *existing, const Passphrase *new_passphrase, uint32_t iterations,
                 unsigned timeout_ms, int *ret_slot, sd_bus_error *error);
/* A new slot for new_passphrase, then the one old opened is destroyed:
 * needs a free slot (a slot changed in place could be lost to a crash). */
int luks_key_change(LuksSource *s, const Passphrase *old, const Passphrase *new_passphrase, uint32_t iterations,
                    unsigned timeout_ms, int *ret_slot, sd_bus_error *error);
/* Destroys the slot passphrase opens; the volume's last active slot only
 * if force (else Error.NotSupported). */
int luks_key_remove(LuksSource *s, const Passphrase *passphrase, bool force, unsigned timeout_ms, int *ret_slot,
                    sd_bus_error *error);

/* Device-mapper with the crypt target usable on this host. */
bool luks_dm_crypt_available(void);

/* Every dm-crypt mapping this service opens is named
 * LUKS_MAPPING_PREFIX + the volume id (domain UUID hex + "_" + target), so
 * the start-up scan can tell ours from anyone else's.  With DeviceTag=TAG
 * the prefix is "luksvol-TAG-": for several libvirt hosts that share one
 * kernel (nested test hosts, containers), whose services would otherwise
 * name the same disk's devices alike and take each other's for orphans. */
#define LUKS_MAPPING_PREFIX "luksvol-"
#define LUKS_DEVICE_TAG_MAX 16

/* Sets the tag ([a-z0-9], 1 to LUKS_DEVICE_TAG_MAX characters, not
 * "shim"; NULL or "" for none) once at start-up, before any thread runs;
 * -EINVAL if malformed. */
int luks_device_tag_set(const char *tag);
/* Inline: the configuration parser checks it too. */
static inline bool luks_device_tag_valid(const char *tag) {
        size_t n = tag ? strlen(tag) : 0;

        if (n == 0 || n > LUKS_DEVICE_TAG_MAX || strcmp(tag, "shim") == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((tag[i] >= 'a' && tag[i] <= 'z') || (tag[i] >= '0' && tag[i] <= '9')))
                        return false;
        return true;
}
/* "luksvol-" or "luksvol-TAG-". */
const char *luks_mapping_prefix(void);

int luks_mapping_name(const char *domain_uuid, const char *target, char **ret);

/* Is name a device-mapper device this service (with its tag) names: its
 * prefix, then (*ret_shim) "shim-" or not, then a volume id.  Another
 * tag's devices and anything else are not. */
bool luks_device_name_ours(const char *name, bool *ret_shim);
/* "/dev/mapper/" + a header shim's name of ours. */
bool luks_shim_path_ours(const char *path);

/* Opens s as /dev/mapper/NAME (a file gets a loop device bound to the
 * descriptor s holds; the mapping is private to the service: udev's disk
 * rules, blkid and so automounters and LVM leave it alone).  The key is
 * derived outside libcryptsetup's global lock; the passphrase is freed
 * (wiped) here on every path.  Wrong passphrase → Error.BadPassphrase.
 * discard: the guest's discards reach the image (allow_discards). */
int luks_activate(LuksSource *s, const char *name, bool read_only, bool discard, unsigned timeout_ms,
                  Passphrase **passphrase, char **ret_mapper_path, sd_bus_error *error);

/* Closes the mapping; retries while busy; not active counts as done.
 * Reads nothing from the device under it. */
int luks_deactivate(const char *name, sd_bus_error *error);

/* For an active mapping of ours, from the kernel's own account (sysfs and
 * the dm UUID, nothing read from the device): the device it sits on (a
 * loop device's backing file for file sources), and the LUKS version and
 * UUID (ret_info's other fields stay zero).  -ENODEV if not active. */
int luks_mapping_info(const char *name, char **ret_source, LuksInfo *ret_info);

/* The block device node an active mapping of ours sits on ("/dev/loop3"
 * for a file source), from sysfs.  -ENODEV if not active. */
int luks_mapping_device(const char *name, char **ret_node);

/* The payload offset and size, in bytes, of an active mapping, from its
 * device-mapper table. */
int luks_mapping_geometry(const char *name, uint64_t *ret_payload_offset, uint64_t *ret_size);

/* Resizes the active mapping name of the volume s to size bytes of
 * plaintext (a multiple of 512 and of the volume's sector size), its table
 * rebuilt on data_device — the device it sits on (luks_mapping_device()),
 * which must already be large enough.  Reads only the header snapshot. */
int luks_resize(LuksSource *s, const char *name, const char *data_device, uint64_t size, unsigned timeout_ms,
                sd_bus_error *error);
