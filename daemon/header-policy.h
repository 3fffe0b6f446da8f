/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the daemon accepts in a LUKS header it did not write, checked before
 * anything is derived from it or created for it, in every mode.  Pure (the
 * header facts come from luks_source_info()); table-tested in
 * tests/unit/test-header-policy.c.
 *
 * Key derivation costs.  The header decides how long a derivation runs (PBKDF2
 * iterations; argon2 time cost, memory and lanes) and libcryptsetup takes it
 * at its word: a slot patched to 2^32-1 iterations holds a thread for hours,
 * an argon2 slot with a huge memory cost takes the host's RAM.  Every slot
 * that may be tried must fit the limits below (configurable: MaxPbkdf2Iterations=,
 * MaxArgon2MemoryKiB=, MaxArgon2Cost=).  Fixed defaults, never a benchmark at
 * start-up (a cold bus activation must stay fast), a few times what
 * libcryptsetup's own benchmark picks on a typical host:
 *  - PBKDF2: cryptsetup sizes a LUKS1 slot for 2 s (--iter-time 2000).
 *    OpenSSL's PBKDF2-HMAC-SHA256 does 2.5 M iterations/s on the test
 *    machines, 4–8 M on a current desktop core, so 2 s is 5–16 M: the limit
 *    is 50 M (20 s of CPU here, worst case per slot).
 *  - argon2: cryptsetup uses time cost ≥ 4 and up to 1 GiB of memory (its
 *    maximum, also what it picks on any host with ≥ 2 GiB free), and raises
 *    the time cost on fast hosts to fill 2 s: typically 4–8 passes over
 *    1 GiB.  Memory is not a resource to be generous with, several
 *    derivations may run at once: the limit is 1 GiB (libcryptsetup's own
 *    ceiling); the time × memory budget is 32 passes over 1 GiB (4× the
 *    benchmark's).  At most 16 lanes (cryptsetup's default is at most 4;
 *    libcryptsetup starts a thread per lane). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "luks.h"

typedef struct KdfLimits {
        uint32_t max_pbkdf2_iterations;
        uint32_t max_argon2_memory_kib;
        uint64_t max_argon2_cost; /* time cost × memory in KiB */
} KdfLimits;

#define KDF_DEFAULT_MAX_PBKDF2_ITERATIONS 50000000U
#define KDF_DEFAULT_MAX_ARGON2_MEMORY_KIB 1048576U
#define KDF_DEFAULT_MAX_ARGON2_COST       (32ULL * 1048576ULL)
#define KDF_MAX_ARGON2_LANES              16U

/* The volume key's digest (a PBKDF2 run after every slot tried, and once
 * more by libcryptsetup when it activates a mapping, which it does under
 * the daemon-wide lock): cryptsetup and QEMU size it at an eighth of a
 * slot's time, so its limit is an eighth of MaxPbkdf2Iterations=
 * (6.25 M by default, ~2.5 s here at the very worst, ~4× what a fast
 * host's 2 s benchmark gives it). */
#define KDF_DIGEST_DIVISOR 8U

static inline uint32_t header_digest_iterations_max(const KdfLimits *limits) {
        return limits->max_pbkdf2_iterations / KDF_DIGEST_DIVISOR;
}

/* The argon2 time cost a caller may ask for a new slot (pbkdf-iterations);
 * the README's range. */
#define KDF_ARGON2_TIME_MIN 4U
#define KDF_ARGON2_TIME_MAX 1000U

static inline KdfLimits kdf_limits_default(void) {
        return (KdfLimits){
                .max_pbkdf2_iterations = KDF_DEFAULT_MAX_PBKDF2_ITERATIONS,
                .max_argon2_memory_kib = KDF_DEFAULT_MAX_ARGON2_MEMORY_KIB,
                .max_argon2_cost = KDF_DEFAULT_MAX_ARGON2_COST,
        };
}

/* Why the volume's data encryption is refused (a sentence without a final
 * period, in buf), or NULL.  Allowed: cipher aes, serpent or twofish (128-bit
 * blocks, what dm-crypt and QEMU both know), in mode xts-plain64, xts-plain,
 * cbc-essiv:sha256, cbc-plain64 or cbc-plain, with a 256-bit key per cipher
 * (the most these ciphers take): XTS splits its key in two, so aes-xts
 * needs a 512-bit key (AES-256), and a 256-bit XTS key — AES-128 — is
 * refused, as is any size these ciphers do not have.  Anything else:
 * cipher_null, ECB (identical blocks stay identical), CTR and the like
 * (malleable, IVs reused on every rewrite), 64-bit block ciphers, and all
 * the modes nobody formats with. */
const char *header_cipher_obstacle(const char *cipher, const char *mode, unsigned key_bits, char *buf, size_t size);

/* Why key slot ks is refused (sentence in buf), or NULL: its PBKDF must be
 * pbkdf2, argon2i or argon2id within limits, and its own encryption (the
 * cipher the key material is stored with) AES in an allowed mode with a key
 * as above: OpenSSL, libcryptsetup's crypto backend here, does AES itself;
 * for any other cipher libcryptsetup would go through the kernel — AF_ALG,
 * which the unit forbids, or a temporary dm-crypt device, i.e.
 * device-mapper, whose process-wide state would have to be locked across
 * the whole derivation. */
const char *header_keyslot_obstacle(const LuksKeyslot *ks, const KdfLimits *limits, char *buf, size_t size);

/* The first of the above for the volume and each active key slot. */
const char *header_obstacle(const LuksInfo *info, const KdfLimits *limits, char *buf, size_t size);

/* The PBKDF2 iterations QEMU spends refusing a wrong passphrase — every
 * active key slot's, each followed by the digest's — in its main loop,
 * with the guest stopped; UINT64_MAX if any active slot is not PBKDF2. */
uint64_t header_refusal_iterations(const LuksInfo *info);

/* PassphrasePrecheckIterations='s default: below it, a native attach lets
 * QEMU be the passphrase check (about 40 ms of a refusal on the test
 * machines, 10-15 ms on a current desktop core); above it, the daemon
 * checks first, off the guest's time.  Real volumes (cryptsetup sizes a
 * slot for 2 s: millions of iterations) are always checked first. */
#define HEADER_PRECHECK_ITERATIONS_DEFAULT 100000U

/* Whether a new key slot with this PBKDF and these costs fits the limits
 * (for pbkdf-iterations); a sentence in buf if not. */
const char *header_new_slot_obstacle(const char *pbkdf, uint32_t iterations, uint32_t memory_kib, uint32_t lanes,
                                     const KdfLimits *limits, char *buf, size_t size);

/* The largest PBKDF2 "iterations" among the digests of a LUKS2 header's
 * JSON metadata (crypt_dump_json()), or some value above UINT32_MAX for a
 * larger one; 0 if none.
 * Only the top-level "digests" object counts (key slots have their own
 * limits; a token's strings are not keys). */
uint64_t header_json_digest_iterations(const char *json);
