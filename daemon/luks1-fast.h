/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A LUKS1 key slot opened with nettle's PBKDF2 — the implementation QEMU
 * uses, 2-3× faster here than OpenSSL 3.0's, which libcryptsetup uses on
 * Debian 12 (measured: 200,000 PBKDF2-SHA256 iterations in 28-39 ms
 * against 79-81 ms).  It only proposes: what it yields is a candidate
 * volume key, which libcryptsetup checks against the header's digest
 * (crypt_volume_key_verify()) before anything uses it, and a passphrase it
 * finds no key for is tried by libcryptsetup again before the caller hears
 * BadPassphrase (luks-shim.c).  So a mistake here can cost time, never
 * accept a wrong key or refuse a right passphrase.  tests/unit/
 * test-luks1-fast.c runs it against libcryptsetup on generated headers.
 *
 * Pure (no I/O but pread() on the descriptor given), for the unit test. */

#include <stddef.h>
#include <stdint.h>

#define LUKS1_FAST_MAX_KEY 64

/* Tries key slot `slot` of the LUKS1 header in fd (from offset 0: the
 * daemon's snapshot) with passphrase; the candidate volume key goes to
 * vk (at least LUKS1_FAST_MAX_KEY bytes), its length to *ret_len.
 * 1: a candidate (right only if the digest says so); 0: this slot is not
 * one it handles (inactive, or a hash, cipher or mode other than
 * sha1/sha256/sha512 and aes-xts-plain64: libcryptsetup's turn); negative
 * errno on a malformed header or a read error. */
int luks1_fast_candidate(int fd, unsigned slot, const void *passphrase, size_t passphrase_len, uint8_t *vk,
                         size_t *ret_len);

/* PBKDF2-HMAC with hash_name (sha1, sha256 or sha512) into out[out_len],
 * its output blocks computed on up to four threads at once (as many as the
 * caller may run on): luks1-fast.c says why.  0, or -EINVAL for another
 * hash, no iterations or no output.  The threads scrub their stacks; the
 * caller's own (which computes the first block) is the caller's to scrub
 * (luks-derive.c's derivation threads do).  The unit test holds it against
 * nettle's PBKDF2() and RFC 6070's vectors. */
int luks1_fast_pbkdf2(const char *hash_name, const void *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                      unsigned iterations, uint8_t *out, size_t out_len);

#define LUKS1_HEADER_FACTS_BYTES 592U

/* What a rescan shows of a native volume (scan.c), from the first
 * LUKS1_HEADER_FACTS_BYTES of its source without libcryptsetup and its
 * process-wide lock: reading 200 headers through crypt_load() one after
 * the other was half of a restart's time (issue 20).  Display facts only:
 * nothing is derived or decided from them. */
typedef struct Luks1Facts {
        char uuid[40];           /* NUL-terminated, printable */
        uint64_t payload_offset; /* bytes */
} Luks1Facts;

/* 0, or -EPROTONOSUPPORT for a LUKS2 header (libcryptsetup's turn), or
 * -EBADMSG: not LUKS, n too short, a UUID that is not a terminated
 * printable string, or a payload offset of 0 or past source_size. */
int luks1_header_facts(const void *buf, size_t n, uint64_t source_size, Luks1Facts *ret);

/* The byte ranges of the active key slots' key material (offset, length
 * rounded up to whole sectors), in slot order: what a derivation reads
 * beyond the header (an RBD image's header is read only that far,
 * luks-rbd.c).  *ret_n of them; -EBADMSG if buf holds no LUKS1 header or
 * an active slot's numbers overflow.  Validation is libcryptsetup's. */
int luks1_active_areas(const void *buf, size_t n, uint64_t ret_off[8], uint64_t ret_len[8], unsigned *ret_n);
