/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <nettle/aes.h>
#include <nettle/hmac.h>
#include <nettle/memxor.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/xts.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luks1-fast.h"
#include "passphrase.h"
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

/* PBKDF2-HMAC (RFC 8018) with the header's hash, one output block at a
 * time: block i is U_1 ^ ... ^ U_c with U_1 = HMAC(P, salt || INT(i)) and
 * U_j = HMAC(P, U_j-1).
 *
 * Why not nettle's PBKDF2() in one go: a slot's key material is as long as
 * the volume key, so cryptsetup's LUKS1 default (aes-xts-plain64, 512-bit
 * key, sha256) needs two blocks — and each block costs the slot's whole
 * iteration count, independently of the other.  QEMU and libcryptsetup
 * compute them one after the other; here each runs on a thread of its own
 * when the machine has the cores, so a slot costs the wall time of one
 * block (issue 17: a shim attach's derivation against QEMU's own).  The
 * CPU spent is the same; the threads inherit the caller's SCHED_BATCH
 * (luks-derive.c).  A block whose thread cannot be started is computed by
 * the caller: the result never depends on the threads. */

typedef union HmacCtx {
        struct hmac_sha1_ctx sha1;
        struct hmac_sha256_ctx sha256;
        struct hmac_sha512_ctx sha512;
} HmacCtx;

#define PBKDF2_MAX_THREADS 4U

typedef struct Pbkdf2 {
        HmacCtx keyed; /* HMAC keyed with the passphrase: read-only once set */
        nettle_hash_update_func *update;
        nettle_hash_digest_func *digest;
        size_t digest_size;
        const uint8_t *salt;
        size_t salt_len;
        unsigned iterations;
        uint8_t *out;
        size_t out_len;
        unsigned n_blocks, stride;
} Pbkdf2;

typedef struct Pbkdf2Part {
        const Pbkdf2 *job;
        unsigned first; /* blocks first, first + stride, ... */
} Pbkdf2Part;

/* nettle's HMAC functions take their own context types; these give them
 * the one signature Pbkdf2 calls through. */
#define HMAC_CALLS(h)                                                                  \
        static void call_##h##_update(void *ctx, size_t length, const uint8_t *data) { \
                hmac_##h##_update(ctx, length, data);                                  \
        }                                                                              \
        static void call_##h##_digest(void *ctx, size_t length, uint8_t *digest) {     \
                hmac_##h##_digest(ctx, length, digest);                                \
        }
HMAC_CALLS(sha1)
HMAC_CALLS(sha256)
HMAC_CALLS(sha512)

static void pbkdf2_block(const Pbkdf2 *job, unsigned i) {
        size_t ds = job->digest_size, off = (size_t) i * ds, n = MIN(ds, job->out_len - off);
        uint8_t u[SHA512_DIGEST_SIZE], t[SHA512_DIGEST_SIZE];
        uint32_t index = htobe32(i + 1);
        HmacCtx ctx = job->keyed;

        job->update(&ctx, job->salt_len, job->salt);
        job->update(&ctx, sizeof index, (const uint8_t *) &index);
        job->digest(&ctx, ds, u);
        memcpy(t, u, ds);
        for (unsigned c = 1; c < job->iterations; c++) {
                job->update(&ctx, ds, u);
                job->digest(&ctx, ds, u);
                memxor(t, u, ds);
        }
        memcpy(job->out + off, t, n);
        explicit_bzero(u, sizeof u);
        explicit_bzero(t, sizeof t);
        explicit_bzero(&ctx, sizeof ctx);
}

/* Blocks first, first + stride, ... */
static void pbkdf2_blocks(const Pbkdf2 *job, unsigned first) {
        for (unsigned i = first; i < job->n_blocks; i += job->stride)
                pbkdf2_block(job, i);
}

static void *pbkdf2_thread(void *p) {
        const Pbkdf2Part *part = p;

        pbkdf2_blocks(part->job, part->first);
        /* The hash functions' frames held the key's intermediate values;
         * glibc keeps this stack for the next thread. */
        stack_scrub();
        return NULL;
}

static unsigned cpus_usable(void) {
        cpu_set_t set;

        if (sched_getaffinity(0, sizeof set, &set) < 0)
                return 1;
        return (unsigned) MAX(CPU_COUNT(&set), 1);
}

int luks1_fast_pbkdf2(const char *hash_name, const void *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                      unsigned iterations, uint8_t *out, size_t out_len) {
        const Hash *h = hash_by_name(hash_name);
        Pbkdf2Part parts[PBKDF2_MAX_THREADS];
        pthread_t threads[PBKDF2_MAX_THREADS];
        bool started[PBKDF2_MAX_THREADS] = {};
        Pbkdf2 job;

        if (!h || iterations == 0 || out_len == 0)
                return -EINVAL;
        job = (Pbkdf2){
                .digest_size = h->nettle->digest_size,
                .salt = salt,
                .salt_len = salt_len,
                .iterations = iterations,
                .out = out,
                .out_len = out_len,
                .n_blocks = (unsigned) ((out_len + h->nettle->digest_size - 1) / h->nettle->digest_size),
        };
        /* Once: MIN() evaluates its arguments more than once, and the
         * affinity may change meanwhile. */
        const unsigned cpus = cpus_usable();
        /* A local bound for the loops: job escapes to the threads. */
        const unsigned stride = MIN(MIN(job.n_blocks, cpus), PBKDF2_MAX_THREADS);
        job.stride = stride;
        if (h->nettle == &nettle_sha1) {
                hmac_sha1_set_key(&job.keyed.sha1, pass_len, pass);
                job.update = call_sha1_update;
                job.digest = call_sha1_digest;
        } else if (h->nettle == &nettle_sha256) {
                hmac_sha256_set_key(&job.keyed.sha256, pass_len, pass);
                job.update = call_sha256_update;
                job.digest = call_sha256_digest;
        } else {
                hmac_sha512_set_key(&job.keyed.sha512, pass_len, pass);
                job.update = call_sha512_update;
                job.digest = call_sha512_digest;
        }

        for (unsigned w = 1; w < stride; w++)
                parts[w] = (Pbkdf2Part){ .job = &job, .first = w };
        for (unsigned w = 1; w < stride; w++)
                started[w] = pthread_create(&threads[w], NULL, pbkdf2_thread, &parts[w]) == 0;
        pbkdf2_blocks(&job, 0);
        for (unsigned w = 1; w < stride; w++) {
                if (started[w])
                        (void) pthread_join(threads[w], NULL);
                else
                        pbkdf2_blocks(&job, w);
        }
        explicit_bzero(&job.keyed, sizeof job.keyed);
        return 0;
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
        int r;

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
                r = n < 0 ? negative_errno() : -EBADMSG;
                free(material);
                return r;
        }

        r = luks1_fast_pbkdf2(h->name, passphrase, passphrase_len, ks->salt, sizeof ks->salt, iterations, key,
                              key_bytes);
        if (r < 0) {
                explicit_bzero(material, area);
                free(material);
                return r;
        }
        xts_decrypt(key, key_bytes, material, area);
        af_merge(h, material, key_bytes, stripes, vk);
        *ret_len = key_bytes;

        explicit_bzero(key, sizeof key);
        explicit_bzero(material, area);
        free(material);
        return 1;
}
