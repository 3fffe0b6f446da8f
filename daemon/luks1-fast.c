/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <nettle/aes.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/xts.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks1-fast.h"
#include "util.h"

/* The on-disk LUKS1 header (big-endian), as the LUKS1 specification lays
 * it out. */
#define LUKS1_MAGIC_LEN    6
#define LUKS1_KEY_SLOTS    8
#define LUKS1_SLOT_ACTIVE  0x00AC71F3U
#define LUKS1_SECTOR       512U
#define LUKS1_MAX_STRIPES  4000U
#define LUKS1_HEADER_BYTES 592U

typedef struct __attribute__((packed)) Luks1Slot {
        uint32_t active;
        uint32_t iterations;
        uint8_t salt[32];
        uint32_t key_material_offset; /* sectors */
        uint32_t stripes;
} Luks1Slot;

typedef struct Luks1Header {
        char magic[LUKS1_MAGIC_LEN];
        uint16_t version;
        char cipher_name[32];
        char cipher_mode[32];
        char hash_spec[32];
        uint32_t payload_offset;
        uint32_t key_bytes;
        uint8_t mk_digest[20];
        uint8_t mk_digest_salt[32];
        uint32_t mk_digest_iterations;
        char uuid[40];
        Luks1Slot slots[LUKS1_KEY_SLOTS];
} __attribute__((packed)) Luks1Header;

_Static_assert(sizeof(Luks1Header) == LUKS1_HEADER_BYTES, "LUKS1 header layout");
_Static_assert(LUKS1_HEADER_FACTS_BYTES == LUKS1_HEADER_BYTES, "LUKS1 facts read the whole header");

typedef struct Hash {
        const struct nettle_hash *nettle;
        const char *name;
} Hash;

static const Hash *hash_by_name(const char *name) {
        static const Hash hashes[] = {
                { &nettle_sha1, "sha1" },
                { &nettle_sha256, "sha256" },
                { &nettle_sha512, "sha512" },
        };
        for (size_t i = 0; i < ELEMENTSOF(hashes); i++)
                if (streq(hashes[i].name, name))
                        return &hashes[i];
        return NULL;
}

int luks1_active_areas(const void *buf, size_t n, uint64_t ret_off[8], uint64_t ret_len[8], unsigned *ret_n) {
        Luks1Header h;
        unsigned k = 0;

        if (n < sizeof h)
                return -EBADMSG;
        memcpy(&h, buf, sizeof h);
        if (memcmp(h.magic, "LUKS\xba\xbe", LUKS1_MAGIC_LEN) != 0 || be16toh(h.version) != 1)
                return -EBADMSG;
        for (unsigned i = 0; i < LUKS1_KEY_SLOTS; i++) {
                const Luks1Slot *ks = &h.slots[i];
                uint64_t len;

                if (be32toh(ks->active) != LUKS1_SLOT_ACTIVE)
                        continue;
                /* 32-bit factors: the product fits in 64 bits. */
                len = (uint64_t) be32toh(h.key_bytes) * be32toh(ks->stripes);
                ret_off[k] = (uint64_t) be32toh(ks->key_material_offset) * LUKS1_SECTOR;
                ret_len[k] = (len + LUKS1_SECTOR - 1) / LUKS1_SECTOR * LUKS1_SECTOR;
                k++;
        }
        *ret_n = k;
        return 0;
}

int luks1_header_facts(const void *buf, size_t n, uint64_t source_size, Luks1Facts *ret) {
        Luks1Header h;
        uint64_t offset;
        size_t len;

        if (n < sizeof h)
                return -EBADMSG;
        memcpy(&h, buf, sizeof h);
        if (memcmp(h.magic, "LUKS\xba\xbe", LUKS1_MAGIC_LEN) != 0)
                return -EBADMSG;
        if (be16toh(h.version) == 2)
                return -EPROTONOSUPPORT;
        if (be16toh(h.version) != 1)
                return -EBADMSG;
        len = strnlen(h.uuid, sizeof h.uuid);
        if (len == 0 || len == sizeof h.uuid)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++)
                if (h.uuid[i] < 0x20 || h.uuid[i] > 0x7e)
                        return -EBADMSG;
        offset = (uint64_t) be32toh(h.payload_offset) * LUKS1_SECTOR;
        if (offset == 0 || offset > source_size)
                return -EBADMSG;
        memcpy(ret->uuid, h.uuid, len + 1);
        ret->payload_offset = offset;
        return 0;
}

/* PBKDF2-HMAC with the header's hash, through nettle's generic HMAC. */
static void derive_key(const Hash *h, const void *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       unsigned iterations, uint8_t *out, size_t out_len) {
        if (h->nettle == &nettle_sha1) {
                struct hmac_sha1_ctx ctx;
                hmac_sha1_set_key(&ctx, pass_len, pass);
                PBKDF2(&ctx, hmac_sha1_update, hmac_sha1_digest, SHA1_DIGEST_SIZE, iterations, salt_len, salt, out_len,
                       out);
                explicit_bzero(&ctx, sizeof ctx);
        } else if (h->nettle == &nettle_sha256) {
                struct hmac_sha256_ctx ctx;
                hmac_sha256_set_key(&ctx, pass_len, pass);
                PBKDF2(&ctx, hmac_sha256_update, hmac_sha256_digest, SHA256_DIGEST_SIZE, iterations, salt_len, salt,
                       out_len, out);
                explicit_bzero(&ctx, sizeof ctx);
        } else {
                struct hmac_sha512_ctx ctx;
                hmac_sha512_set_key(&ctx, pass_len, pass);
                PBKDF2(&ctx, hmac_sha512_update, hmac_sha512_digest, SHA512_DIGEST_SIZE, iterations, salt_len, salt,
                       out_len, out);
                explicit_bzero(&ctx, sizeof ctx);
        }
}

/* LUKS's anti-forensic diffusion: each digest-sized block of buf hashed
 * with its index (big-endian) in front. */
static void diffuse(const Hash *h, uint8_t *buf, size_t size) {
        size_t ds = h->nettle->digest_size;
        uint8_t ctx[sizeof(struct sha512_ctx)];
        uint8_t digest[SHA512_DIGEST_SIZE];

        for (size_t off = 0, i = 0; off < size; off += ds, i++) {
                uint32_t iv = htobe32((uint32_t) i);
                size_t n = MIN(ds, size - off);

                h->nettle->init(ctx);
                h->nettle->update(ctx, sizeof iv, (const uint8_t *) &iv);
                h->nettle->update(ctx, n, buf + off);
                h->nettle->digest(ctx, ds, digest);
                memcpy(buf + off, digest, n);
        }
        explicit_bzero(ctx, sizeof ctx);
        explicit_bzero(digest, sizeof digest);
}

/* AF-merge: stripes blocks of size bytes back into the one block. */
static void af_merge(const Hash *h, const uint8_t *material, size_t size, unsigned stripes, uint8_t *out) {
        memset(out, 0, size);
        for (unsigned s = 0; s + 1 < stripes; s++) {
                for (size_t i = 0; i < size; i++)
                        out[i] ^= material[(size_t) s * size + i];
                diffuse(h, out, size);
        }
        for (size_t i = 0; i < size; i++)
                out[i] ^= material[(size_t) (stripes - 1) * size + i];
}

/* aes-xts-plain64 over whole 512-byte sectors numbered from 0. */
static void xts_decrypt(const uint8_t *key, size_t key_len, uint8_t *buf, size_t len) {
        uint8_t tweak[16];

        for (size_t off = 0, sector = 0; off < len; off += LUKS1_SECTOR, sector++) {
                uint64_t le = htole64((uint64_t) sector);
                memset(tweak, 0, sizeof tweak);
                memcpy(tweak, &le, sizeof le);
                if (key_len == 64) {
                        struct xts_aes256_key ctx;
                        xts_aes256_set_decrypt_key(&ctx, key);
                        xts_aes256_decrypt_message(&ctx, tweak, LUKS1_SECTOR, buf + off, buf + off);
                        explicit_bzero(&ctx, sizeof ctx);
                } else {
                        struct xts_aes128_key ctx;
                        xts_aes128_set_decrypt_key(&ctx, key);
                        xts_aes128_decrypt_message(&ctx, tweak, LUKS1_SECTOR, buf + off, buf + off);
                        explicit_bzero(&ctx, sizeof ctx);
                }
        }
}

static bool field_is(const char *field, size_t size, const char *want) {
        return strnlen(field, size) < size && streq(field, want);
}

int luks1_fast_candidate(int fd, unsigned slot, const void *passphrase, size_t passphrase_len, uint8_t *vk,
                         size_t *ret_len) {
        Luks1Header hdr;
        uint8_t key[LUKS1_FAST_MAX_KEY];
        uint8_t *material;
        const Hash *h;
        size_t key_bytes, af_bytes, area;
        ssize_t n;

        if (slot >= LUKS1_KEY_SLOTS)
                return -EINVAL;
        n = pread(fd, &hdr, sizeof hdr, 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof hdr || memcmp(hdr.magic, "LUKS\xba\xbe", LUKS1_MAGIC_LEN) != 0 ||
            be16toh(hdr.version) != 1)
                return -EBADMSG;

        const Luks1Slot *ks = &hdr.slots[slot];
        if (be32toh(ks->active) != LUKS1_SLOT_ACTIVE)
                return 0;
        key_bytes = be32toh(hdr.key_bytes);
        h = strnlen(hdr.hash_spec, sizeof hdr.hash_spec) < sizeof hdr.hash_spec ? hash_by_name(hdr.hash_spec) : NULL;
        if (!h || !field_is(hdr.cipher_name, sizeof hdr.cipher_name, "aes") ||
            !field_is(hdr.cipher_mode, sizeof hdr.cipher_mode, "xts-plain64") || (key_bytes != 32 && key_bytes != 64))
                return 0;
        unsigned stripes = be32toh(ks->stripes), iterations = be32toh(ks->iterations);
        if (stripes == 0 || stripes > LUKS1_MAX_STRIPES || iterations == 0)
                return -EBADMSG;

        af_bytes = key_bytes * stripes;
        area = (af_bytes + LUKS1_SECTOR - 1) / LUKS1_SECTOR * LUKS1_SECTOR;
        material = malloc(area);
        if (!material)
                return -ENOMEM;
        n = pread(fd, material, area, (off_t) be32toh(ks->key_material_offset) * LUKS1_SECTOR);
        if (n < 0 || (size_t) n != area) {
                int r = n < 0 ? negative_errno() : -EBADMSG;
                free(material);
                return r;
        }

        derive_key(h, passphrase, passphrase_len, ks->salt, sizeof ks->salt, iterations, key, key_bytes);
        xts_decrypt(key, key_bytes, material, area);
        af_merge(h, material, key_bytes, stripes, vk);
        *ret_len = key_bytes;

        explicit_bzero(key, sizeof key);
        explicit_bzero(material, area);
        free(material);
        return 1;
}
