/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "header-policy.h"
#include "util.h"

static bool in_list(const char *s, const char *const *list) {
        for (const char *const *i = list; *i; i++)
                if (streq(s, *i))
                        return true;
        return false;
}

static const char *const allowed_modes[] = {
        "xts-plain64", "xts-plain", "cbc-essiv:sha256", "cbc-plain64", "cbc-plain", NULL,
};

/* Bits of key each cipher instance gets: XTS's key is two keys. */
static unsigned cipher_key_bits(const char *mode, unsigned key_bits) {
        return startswith(mode, "xts-") ? key_bits / 2 : key_bits;
}

static const char *check_cipher(const char *what, const char *cipher, const char *mode, unsigned key_bits,
                                const char *const *ciphers, const char *ciphers_text, char *buf, size_t size) {
        if (isempty(cipher) || !in_list(cipher, ciphers)) {
                snprintf(buf, size, "%s cipher '%s' is not one this service accepts (%s)", what, strempty(cipher),
                         ciphers_text);
                return buf;
        }
        if (isempty(mode) || !in_list(mode, allowed_modes)) {
                snprintf(buf, size,
                         "%s cipher mode '%s' is not one this service accepts (xts-plain64, xts-plain, "
                         "cbc-essiv:sha256, cbc-plain64, cbc-plain)",
                         what, strempty(mode));
                return buf;
        }
        /* 256 bits exactly: fewer is weak, and more is no key size these
         * ciphers have — OpenSSL would not take it, and libcryptsetup
         * would fall back to the kernel for the key slot, see
         * header_keyslot_obstacle(). */
        if (cipher_key_bits(mode, key_bits) != 256) {
                snprintf(buf, size, "%s key is %u bits, i.e. %u-bit %s: this service needs 256-bit keys%s", what,
                         key_bits, cipher_key_bits(mode, key_bits), cipher,
                         startswith(mode, "xts-") ? " (XTS takes two: a 512-bit key)" : "");
                return buf;
        }
        return NULL;
}

const char *header_cipher_obstacle(const char *cipher, const char *mode, unsigned key_bits, char *buf, size_t size) {
        static const char *const ciphers[] = { "aes", "serpent", "twofish", NULL };
        return check_cipher("the volume's", cipher, mode, key_bits, ciphers, "aes, serpent, twofish", buf, size);
}

const char *header_new_slot_obstacle(const char *pbkdf, uint32_t iterations, uint32_t memory_kib, uint32_t lanes,
                                     const KdfLimits *limits, char *buf, size_t size) {
        if (streq_ptr(pbkdf, "pbkdf2")) {
                if (iterations > limits->max_pbkdf2_iterations) {
                        snprintf(buf, size,
                                 "it costs %" PRIu32 " PBKDF2 iterations, more than this host allows "
                                 "(MaxPbkdf2Iterations=%" PRIu32 ")",
                                 iterations, limits->max_pbkdf2_iterations);
                        return buf;
                }
                return NULL;
        }
        if (streq_ptr(pbkdf, "argon2i") || streq_ptr(pbkdf, "argon2id")) {
                if (memory_kib > limits->max_argon2_memory_kib) {
                        snprintf(buf, size,
                                 "its %s costs %" PRIu32 " KiB of memory, more than this host allows "
                                 "(MaxArgon2MemoryKiB=%" PRIu32 ")",
                                 pbkdf, memory_kib, limits->max_argon2_memory_kib);
                        return buf;
                }
                if ((uint64_t) iterations * memory_kib > limits->max_argon2_cost) {
                        snprintf(buf, size,
                                 "its %s costs %" PRIu32 " passes over %" PRIu32 " KiB, more than this host allows "
                                 "(MaxArgon2Cost=%" PRIu64 " KiB passes)",
                                 pbkdf, iterations, memory_kib, limits->max_argon2_cost);
                        return buf;
                }
                if (lanes > KDF_MAX_ARGON2_LANES) {
                        snprintf(buf, size, "its %s uses %" PRIu32 " lanes, more than %u", pbkdf, lanes,
                                 KDF_MAX_ARGON2_LANES);
                        return buf;
                }
                return NULL;
        }
        snprintf(buf, size,
                 "its key derivation function '%s' is not one this service accepts (pbkdf2, argon2i, "
                 "argon2id)",
                 strempty(pbkdf));
        return buf;
}

const char *header_keyslot_obstacle(const LuksKeyslot *ks, const KdfLimits *limits, char *buf, size_t size) {
        static const char *const aes_only[] = { "aes", NULL };
        char cipher[64] = "", why[224];
        const char *mode = NULL, *o;

        o = header_new_slot_obstacle(ks->pbkdf, ks->iterations, ks->memory_kib, ks->parallel_threads, limits, why,
                                     sizeof why);
        if (o) {
                snprintf(buf, size, "key slot %u: %s; nothing was derived", ks->slot, o);
                return buf;
        }

        /* "aes-xts-plain64": the cipher up to the first dash, the mode after. */
        const char *dash = strchr(ks->cipher, '-');
        size_t n = dash ? (size_t) (dash - ks->cipher) : strlen(ks->cipher);
        snprintf(cipher, sizeof cipher, "%.*s", (int) MIN(n, sizeof cipher - 1), ks->cipher);
        if (dash)
                mode = dash + 1;
        o = check_cipher("its", cipher, mode, ks->cipher_key_bits, aes_only,
                         "aes only: for any other libcryptsetup would need the kernel's crypto API or "
                         "device-mapper, and hold the daemon-wide lock while deriving",
                         why, sizeof why);
        if (o) {
                snprintf(buf, size, "key slot %u is encrypted with '%s': %s", ks->slot, ks->cipher, o);
                return buf;
        }
        return NULL;
}

const char *header_obstacle(const LuksInfo *info, const KdfLimits *limits, char *buf, size_t size) {
        const char *o = header_cipher_obstacle(info->cipher_name, info->cipher_mode, info->key_size_bits, buf, size);
        if (o)
                return o;
        /* Each slot try checks the key it yields against the digest:
         * PBKDF2 again, at a cost the header names too — and cryptsetup
         * mode's activation checks it once more, under the library lock. */
        if (info->digest_iterations > header_digest_iterations_max(limits)) {
                snprintf(buf, size,
                         "the volume key's digest costs %" PRIu32 " PBKDF2 iterations per key slot tried, more than "
                         "this host allows (%" PRIu32 ", MaxPbkdf2Iterations=/%u); nothing was derived",
                         info->digest_iterations, header_digest_iterations_max(limits), KDF_DIGEST_DIVISOR);
                return buf;
        }
        for (unsigned i = 0; i < info->active_keyslots && i < LUKS_MAX_KEYSLOTS; i++) {
                o = header_keyslot_obstacle(&info->keyslots[i], limits, buf, size);
                if (o)
                        return o;
        }
        return NULL;
}

uint64_t header_refusal_iterations(const LuksInfo *info) {
        uint64_t total = 0;

        for (unsigned i = 0; i < info->active_keyslots && i < LUKS_MAX_KEYSLOTS; i++) {
                if (!streq(info->keyslots[i].pbkdf, "pbkdf2"))
                        return UINT64_MAX;
                total += (uint64_t) info->keyslots[i].iterations + info->digest_iterations;
        }
        return total;
}

/* A small scanner over JSON libcryptsetup has already parsed and
 * validated: strings are skipped whole (escapes included), so braces or
 * key names inside a token's strings never count; only keys of the
 * top-level "digests" object's members are looked at. */
uint64_t header_json_digest_iterations(const char *json) {
        const char *p = json;
        unsigned depth = 0, digests_depth = 0; /* depth inside "digests", 0: outside */
        uint64_t most = 0;
        bool next_is_digests = false;

        if (!p)
                return 0;
        while (*p) {
                if (*p == '"') {
                        const char *start = ++p;
                        while (*p && *p != '"')
                                p += (*p == '\\' && p[1]) ? 2 : 1;
                        size_t n = (size_t) (p - start);
                        if (*p)
                                p++;
                        const char *q = p + strspn(p, " \t\r\n");
                        if (*q != ':')
                                continue; /* a value, not a key */
                        if (depth == 1 && n == strlen("digests") && strncmp(start, "digests", n) == 0)
                                next_is_digests = true;
                        else if (digests_depth > 0 && n == strlen("iterations") &&
                                 strncmp(start, "iterations", n) == 0) {
                                uint64_t v = 0;
                                q++;
                                q += strspn(q, " \t\r\n");
                                for (; *q >= '0' && *q <= '9' && v <= UINT32_MAX; q++)
                                        v = v * 10 + (uint64_t) (*q - '0');
                                most = MAX(most, v);
                        }
                        p = q + 1;
                        continue;
                }
                if (*p == '{' || *p == '[') {
                        depth++;
                        if (next_is_digests) {
                                digests_depth = depth;
                                next_is_digests = false;
                        }
                } else if (*p == '}' || *p == ']') {
                        if (digests_depth == depth)
                                digests_depth = 0;
                        if (depth > 0)
                                depth--;
                } else if (*p == ',')
                        next_is_digests = false;
                p++;
        }
        return most;
}
