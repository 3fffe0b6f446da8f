/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the daemon accepts in a header it did not write (header-policy.h):
 * the cipher allow-list and key sizes, the key slots' derivation limits
 * and their own encryption.  (The cap on derivations in flight:
 * test-uid-cap.c.) */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "header-policy.h"

static void test_ciphers(void) {
        static const struct {
                const char *cipher, *mode;
                unsigned bits;
                const char *expect; /* NULL: accepted */
        } rows[] = {
                { "aes", "xts-plain64", 512, NULL },
                { "serpent", "xts-plain64", 512, NULL },
                { "twofish", "xts-plain", 512, NULL },
                { "aes", "cbc-essiv:sha256", 256, NULL },
                { "aes", "cbc-plain64", 256, NULL },
                { "aes", "cbc-plain", 256, NULL },
                { "cipher_null", "ecb", 512, "cipher 'cipher_null'" },
                { "aes", "ecb", 256, "mode 'ecb'" },
                { "aes", "ctr-plain64", 256, "mode 'ctr-plain64'" },
                { "aes", "cbc-benbi", 256, "mode 'cbc-benbi'" },
                { "aes", "cbc-essiv:md5", 256, "mode 'cbc-essiv:md5'" },
                { "cast5", "cbc-plain64", 128, "cipher 'cast5'" },
                { "camellia", "xts-plain64", 512, "cipher 'camellia'" },
                { "", "xts-plain64", 512, "cipher ''" },
                { NULL, NULL, 0, "cipher ''" },
                { "aes", "", 512, "mode ''" },
                /* XTS takes two keys: 256 bits is AES-128. */
                { "aes", "xts-plain64", 256, "128-bit aes" },
                { "aes", "xts-plain64", 384, "192-bit aes" },
                { "aes", "cbc-essiv:sha256", 128, "128-bit aes" },
                { "aes", "cbc-essiv:sha256", 192, "192-bit aes" },
                { "serpent", "cbc-plain64", 0, "0-bit serpent" },
                /* No such AES key: OpenSSL would refuse it and libcryptsetup
                 * fall back to the kernel. */
                { "aes", "cbc-plain64", 512, "512-bit aes" },
                { "aes", "xts-plain64", 1024, "512-bit aes" },
        };
        char buf[256];

        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                const char *o = header_cipher_obstacle(rows[i].cipher, rows[i].mode, rows[i].bits, buf, sizeof buf);
                if (!rows[i].expect) {
                        if (o)
                                g_error("row %zu refused: %s", i, o);
                        continue;
                }
                if (!o || !strstr(o, rows[i].expect))
                        g_error("row %zu: expected '%s', got '%s'", i, rows[i].expect, o ? o : "(accepted)");
        }
}

static LuksKeyslot slot(unsigned k, const char *pbkdf, uint32_t iters, uint32_t mem, uint32_t lanes, const char *cipher,
                        unsigned bits) {
        LuksKeyslot ks = {
                .slot = k, .iterations = iters, .memory_kib = mem, .parallel_threads = lanes, .cipher_key_bits = bits
        };
        g_strlcpy(ks.pbkdf, pbkdf, sizeof ks.pbkdf);
        g_strlcpy(ks.cipher, cipher, sizeof ks.cipher);
        return ks;
}

static void test_keyslots(void) {
        const KdfLimits lim = { .max_pbkdf2_iterations = 1000000,
                                .max_argon2_memory_kib = 65536,
                                .max_argon2_cost = 8 * 65536 };
        static const char *const ok_ciphers[] = { "aes-xts-plain64", NULL };
        const struct {
                LuksKeyslot ks;
                const char *expect;
        } rows[] = {
                { slot(0, "pbkdf2", 1000000, 0, 0, ok_ciphers[0], 512), NULL },
                { slot(0, "pbkdf2", 1000001, 0, 0, ok_ciphers[0], 512), "1000001 PBKDF2 iterations" },
                { slot(3, "pbkdf2", UINT32_MAX, 0, 0, ok_ciphers[0], 512), "key slot 3: it costs 4294967295" },
                { slot(1, "argon2id", 8, 65536, 4, ok_ciphers[0], 512), NULL },
                { slot(1, "argon2i", 4, 65537, 1, ok_ciphers[0], 512), "65537 KiB" },
                { slot(1, "argon2id", 9, 65536, 1, ok_ciphers[0], 512), "9 passes over 65536 KiB" },
                { slot(1, "argon2id", UINT32_MAX, 32, 1, ok_ciphers[0], 512), "4294967295 passes" },
                { slot(1, "argon2id", 4, 1024, 17, ok_ciphers[0], 512), "17 lanes" },
                { slot(2, "scrypt", 4, 1024, 1, ok_ciphers[0], 512), "'scrypt'" },
                { slot(2, "", 4, 1024, 1, ok_ciphers[0], 512), "function ''" },
                /* Only AES key slots: any other would need device-mapper or AF_ALG. */
                { slot(0, "pbkdf2", 1000, 0, 0, "serpent-xts-plain64", 512), "'serpent-xts-plain64'" },
                { slot(0, "pbkdf2", 1000, 0, 0, "twofish-cbc-essiv:sha256", 256), "aes only" },
                { slot(0, "pbkdf2", 1000, 0, 0, "cipher_null-ecb", 512), "cipher_null" },
                { slot(0, "pbkdf2", 1000, 0, 0, "aes-ecb", 256), "mode 'ecb'" },
                { slot(0, "pbkdf2", 1000, 0, 0, "aes-xts-plain64", 256), "128-bit" },
                { slot(0, "pbkdf2", 1000, 0, 0, "aes-cbc-plain64", 384), "384-bit" },
                { slot(0, "pbkdf2", 1000, 0, 0, "aes", 256), "mode ''" },
                { slot(0, "pbkdf2", 1000, 0, 0, "", 256), "cipher ''" },
        };
        char buf[384];

        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                const char *o = header_keyslot_obstacle(&rows[i].ks, &lim, buf, sizeof buf);
                if (!rows[i].expect) {
                        if (o)
                                g_error("row %zu refused: %s", i, o);
                        continue;
                }
                if (!o || !strstr(o, rows[i].expect))
                        g_error("row %zu: expected '%s', got '%s'", i, rows[i].expect, o ? o : "(accepted)");
                if (strstr(o, "costs") && !strstr(o, "nothing was derived"))
                        g_error("row %zu: '%s' does not say nothing was derived", i, o);
        }

        /* The defaults take what cryptsetup makes by default. */
        const KdfLimits def = kdf_limits_default();
        LuksKeyslot luks2 = slot(0, "argon2id", 4, 1048576, 4, "aes-xts-plain64", 512);
        g_assert_null(header_keyslot_obstacle(&luks2, &def, buf, sizeof buf));
        LuksKeyslot luks1 = slot(0, "pbkdf2", 5000000, 0, 0, "aes-xts-plain64", 512);
        g_assert_null(header_keyslot_obstacle(&luks1, &def, buf, sizeof buf));
}

/* The volume first, then each active slot in order. */
static void test_header(void) {
        const KdfLimits lim = kdf_limits_default();
        LuksInfo info = { .version = 1, .key_size_bits = 512, .active_keyslots = 2 };
        char buf[384];

        g_strlcpy(info.cipher_name, "aes", sizeof info.cipher_name);
        g_strlcpy(info.cipher_mode, "xts-plain64", sizeof info.cipher_mode);
        info.keyslots[0] = slot(0, "pbkdf2", 1000, 0, 0, "aes-xts-plain64", 512);
        info.keyslots[1] = slot(5, "pbkdf2", 1000, 0, 0, "aes-xts-plain64", 512);
        g_assert_null(header_obstacle(&info, &lim, buf, sizeof buf));

        info.keyslots[1].iterations = UINT32_MAX;
        g_assert_nonnull(strstr(header_obstacle(&info, &lim, buf, sizeof buf), "key slot 5"));

        info.keyslots[1].iterations = 1000;
        info.digest_iterations = lim.max_pbkdf2_iterations / 8;
        g_assert_null(header_obstacle(&info, &lim, buf, sizeof buf));
        info.digest_iterations = lim.max_pbkdf2_iterations / 8 + 1;
        g_assert_nonnull(strstr(header_obstacle(&info, &lim, buf, sizeof buf), "digest costs"));
        info.digest_iterations = UINT32_MAX;
        g_assert_nonnull(strstr(header_obstacle(&info, &lim, buf, sizeof buf), "digest costs 4294967295"));

        g_strlcpy(info.cipher_name, "cipher_null", sizeof info.cipher_name);
        g_assert_nonnull(strstr(header_obstacle(&info, &lim, buf, sizeof buf), "cipher_null"));
}

/* pbkdf-iterations for a new slot: the same limits. */
static void test_new_slot(void) {
        const KdfLimits lim = { .max_pbkdf2_iterations = 2000000,
                                .max_argon2_memory_kib = 65536,
                                .max_argon2_cost = 100 * 32768ULL };
        char buf[256];

        g_assert_null(header_new_slot_obstacle("pbkdf2", 2000000, 0, 0, &lim, buf, sizeof buf));
        g_assert_nonnull(header_new_slot_obstacle("pbkdf2", 2000001, 0, 0, &lim, buf, sizeof buf));
        g_assert_null(header_new_slot_obstacle("argon2id", 100, 32768, 1, &lim, buf, sizeof buf));
        g_assert_nonnull(header_new_slot_obstacle("argon2id", 101, 32768, 1, &lim, buf, sizeof buf));
}

static void test_json_digests(void) {
        static const struct {
                const char *json;
                uint64_t expect;
        } rows[] = {
                { "{\"keyslots\":{\"0\":{\"kdf\":{\"type\":\"pbkdf2\",\"iterations\":9000000}}},\"tokens\":{},"
                  "\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\"],\"iterations\":1000,\"salt\":\"x\"}},"
                  "\"config\":{}}",
                  1000 },
                { "{\"digests\":{\"0\":{\"iterations\" : 4294967295},\"1\":{\"iterations\":77}}}", 4294967295ULL },
                { "{\"digests\":{\"0\":{\"iterations\":99999999999999}}}", 0 }, /* above UINT32_MAX: checked below */
                /* A token naming "digests" and braces in its strings. */
                { "{\"tokens\":{\"0\":{\"digests\":{\"iterations\":5},\"s\":\"}}{\\\"digests\\\":\"}},"
                  "\"digests\":{\"0\":{\"iterations\":1234}}}",
                  1234 },
                { "{\"keyslots\":{\"0\":{\"iterations\":42}}}", 0 },
                { "", 0 },
                { NULL, 0 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                uint64_t got = header_json_digest_iterations(rows[i].json);
                if (i == 2)
                        g_assert_cmpuint(got, >, UINT32_MAX);
                else if (got != rows[i].expect)
                        g_error("row %zu: %" G_GUINT64_FORMAT ", not %" G_GUINT64_FORMAT, i, got, rows[i].expect);
        }
}

/* What QEMU spends refusing a wrong passphrase: each active slot, each
 * followed by the digest; argon2 is never cheap enough to let QEMU try. */
static void test_refusal_iterations(void) {
        LuksInfo info = { .version = 1, .active_keyslots = 0, .digest_iterations = 9771 };

        g_assert_cmpuint(header_refusal_iterations(&info), ==, 0);
        info.active_keyslots = 1;
        info.keyslots[0] = slot(0, "pbkdf2", 36776, 0, 0, "aes-xts-plain64", 512);
        /* qemu-img's iter-time 10 ms: under the default, QEMU checks. */
        g_assert_cmpuint(header_refusal_iterations(&info), ==, 36776 + 9771);
        g_assert_cmpuint(header_refusal_iterations(&info), <=, HEADER_PRECHECK_ITERATIONS_DEFAULT);
        info.active_keyslots = 3;
        info.keyslots[1] = slot(3, "pbkdf2", 1000, 0, 0, "aes-xts-plain64", 512);
        info.keyslots[2] = slot(7, "pbkdf2", UINT32_MAX, 0, 0, "aes-xts-plain64", 512);
        /* No overflow: 64-bit sums of 32-bit counts. */
        g_assert_cmpuint(header_refusal_iterations(&info), ==, 36776ULL + 1000 + UINT32_MAX + 3 * 9771ULL);
        /* cryptsetup's 2 s default slot: the daemon checks first. */
        info.active_keyslots = 1;
        info.keyslots[0].iterations = 2000000;
        g_assert_cmpuint(header_refusal_iterations(&info), >, HEADER_PRECHECK_ITERATIONS_DEFAULT);
        info.keyslots[0] = slot(0, "argon2id", 4, 1048576, 4, "aes-xts-plain64", 512);
        g_assert_cmpuint(header_refusal_iterations(&info), ==, UINT64_MAX);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/header-policy/ciphers", test_ciphers);
        g_test_add_func("/header-policy/keyslots", test_keyslots);
        g_test_add_func("/header-policy/header", test_header);
        g_test_add_func("/header-policy/new-slot", test_new_slot);
        g_test_add_func("/header-policy/json-digests", test_json_digests);
        g_test_add_func("/header-policy/refusal-iterations", test_refusal_iterations);
        return g_test_run();
}
