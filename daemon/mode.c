/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>

#include "mode.h"
#include "util.h"

static const char *const mode_table[_VOLUME_MODE_MAX] = {
        [VOLUME_MODE_AUTO] = "auto",
        [VOLUME_MODE_NATIVE] = "native",
        [VOLUME_MODE_CRYPTSETUP] = "cryptsetup",
};

static const char *const native_header_table[_NATIVE_HEADER_MAX] = {
        [NATIVE_HEADER_AUTO] = "auto",
        [NATIVE_HEADER_VOLUME] = "volume",
        [NATIVE_HEADER_SHIM] = "shim",
};

const char *native_header_to_string(NativeHeader h) {
        if (h < 0 || h >= _NATIVE_HEADER_MAX)
                return NULL;
        return native_header_table[h];
}

NativeHeader native_header_from_string(const char *s) {
        if (!s)
                return _NATIVE_HEADER_INVALID;
        for (NativeHeader h = 0; h < _NATIVE_HEADER_MAX; h++)
                if (streq(native_header_table[h], s))
                        return h;
        return _NATIVE_HEADER_INVALID;
}

const char *volume_mode_to_string(VolumeMode m) {
        if (m < 0 || m >= _VOLUME_MODE_MAX)
                return NULL;
        return mode_table[m];
}

VolumeMode volume_mode_from_string(const char *s) {
        if (!s)
                return _VOLUME_MODE_INVALID;
        for (VolumeMode m = 0; m < _VOLUME_MODE_MAX; m++)
                if (streq(mode_table[m], s))
                        return m;
        return _VOLUME_MODE_INVALID;
}

void version_format(unsigned long v, char *buf, size_t size) {
        snprintf(buf, size, "%lu.%lu.%lu", v / 1000000UL, (v / 1000UL) % 1000UL, v % 1000UL);
}

int version_parse(const char *s, unsigned long *ret) {
        unsigned long part[3] = {};
        unsigned n = 0;
        const char *p = s;

        if (isempty(s))
                return -EINVAL;

        for (;;) {
                char *end;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                errno = 0;
                unsigned long v = strtoul(p, &end, 10);
                if (errno != 0 || v > 999)
                        return -EINVAL;
                part[n++] = v;
                p = end;
                if (*p == '\0')
                        break;
                if (*p != '.' || n == 3)
                        return -EINVAL;
                p++;
        }
        if (n < 2)
                return -EINVAL;

        *ret = LV_VERSION(part[0], part[1], part[2]);
        return 0;
}

bool mode_native_gate(const ModeInput *in) {
        return in->hypervisor_is_qemu && in->libvirt_version >= in->min_libvirt_version &&
               in->hypervisor_version >= in->min_hypervisor_version;
}

static VolumeMode refuse(char *reason, size_t size, const char *fmt, ...) _printf_(3, 4);
static VolumeMode refuse(char *reason, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, size, fmt, ap);
        va_end(ap);
        return _VOLUME_MODE_INVALID;
}

static bool in_list(const char *s, const char *const *list) {
        for (const char *const *i = list; *i; i++)
                if (streq(s, *i))
                        return true;
        return false;
}

const char *mode_qemu_cipher_obstacle(const char *cipher, const char *cipher_mode, const char *hash, char *buf,
                                      size_t size) {
        /* QEMU's crypto/block-luks.c: the cipher names it maps, the chain
         * modes, the IV generators, and the hashes its PBKDF and ESSIV take. */
        static const char *const ciphers[] = { "aes", "cast5", "serpent", "twofish", NULL };
        static const char *const modes[] = { "ecb", "cbc", "xts", "ctr", NULL };
        static const char *const ivgens[] = { "plain", "plain64", "essiv", NULL };
        static const char *const hashes[] = {
                "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160", NULL
        };
        char chain[32] = "", ivgen[32] = "", ivhash[32] = "";

        /* An empty field is a header libcryptsetup will refuse anyway; no
         * objection of ours to report for it. */
        if (!isempty(cipher) && !in_list(cipher, ciphers)) {
                snprintf(buf, size, "QEMU's LUKS driver has no cipher '%s' (it knows aes, cast5, serpent, twofish)",
                         cipher);
                return buf;
        }
        if (!isempty(cipher_mode)) {
                /* "xts-plain64", "cbc-essiv:sha256", "ecb" */
                const char *dash = strchr(cipher_mode, '-');
                size_t n = dash ? (size_t) (dash - cipher_mode) : strlen(cipher_mode);
                snprintf(chain, sizeof chain, "%.*s", (int) MIN(n, sizeof chain - 1), cipher_mode);
                if (dash) {
                        const char *colon = strchr(dash + 1, ':');
                        size_t m = colon ? (size_t) (colon - dash - 1) : strlen(dash + 1);
                        snprintf(ivgen, sizeof ivgen, "%.*s", (int) MIN(m, sizeof ivgen - 1), dash + 1);
                        if (colon)
                                snprintf(ivhash, sizeof ivhash, "%s", colon + 1);
                }
                if (!in_list(chain, modes)) {
                        snprintf(buf, size, "QEMU's LUKS driver has no cipher mode '%s'", chain);
                        return buf;
                }
                if (ivgen[0] && !in_list(ivgen, ivgens)) {
                        snprintf(buf, size,
                                 "QEMU's LUKS driver has no IV generator '%s' (it knows plain, plain64, essiv)", ivgen);
                        return buf;
                }
                if (ivhash[0] && !in_list(ivhash, hashes)) {
                        snprintf(buf, size, "QEMU's LUKS driver has no hash '%s' for the IV generator", ivhash);
                        return buf;
                }
        }
        if (hash && hash[0] && !in_list(hash, hashes)) {
                snprintf(buf, size, "QEMU's LUKS driver has no PBKDF2 hash '%s'", hash);
                return buf;
        }
        return NULL;
}

const char *mode_shim_obstacle(const ModeInput *in, char *buf, size_t size) {
        uint32_t sector = in->sector_size ?: 512;

        if (!in->dm_linear_available)
                return "device-mapper, which a header shim needs, is not available on this host";
        /* QEMU's LUKS driver (7.2, and upstream) counts IVs in 512-byte
         * sectors; a payload written in 4096-byte sectors uses other IVs. */
        if (sector != 512) {
                snprintf(buf, size,
                         "its data is encrypted in %" PRIu32 "-byte sectors and QEMU's LUKS driver reads 512-byte "
                         "sectors only",
                         sector);
                return buf;
        }
        if (in->integrity)
                return "its data carries integrity tags (dm-integrity), which QEMU's LUKS driver cannot read";
        if (in->requirements)
                return "its header has requirement flags (e.g. a reencryption in progress)";
        /* A LUKS1 key slot is encrypted with the data cipher: libcryptsetup
         * writes it in-process for aes only (others would need the kernel's
         * crypto API or a temporary dm-crypt device). */
        if (!isempty(in->cipher) && !streq(in->cipher, "aes")) {
                snprintf(buf, size, "the one-time header would need a %s key slot, and only aes is used for shims",
                         in->cipher);
                return buf;
        }
        /* The shim's own key slot uses a hash QEMU knows; the data's cipher,
         * mode and IV generator are the volume's. */
        return mode_qemu_cipher_obstacle(in->cipher, in->cipher_mode, NULL, buf, size);
}

/* Can the shim be used for this input, and is it wanted? */
static bool shim_chosen(const ModeInput *in) {
        char buf[160];

        if (in->native_header == NATIVE_HEADER_VOLUME)
                return false;
        return !mode_shim_obstacle(in, buf, sizeof buf);
}

NativeHeader mode_native_header(const ModeInput *in) {
        return shim_chosen(in) ? NATIVE_HEADER_SHIM : NATIVE_HEADER_VOLUME;
}

const char *mode_native_obstacle(const ModeInput *in, char *buf, size_t size) {
        char have[32], need[32];

        /* First: it rules out every mode, this one too. */
        if (in->header_obstacle)
                return in->header_obstacle;
        if (!in->hypervisor_is_qemu)
                return "the hypervisor is not QEMU";
        if (in->libvirt_version < in->min_libvirt_version) {
                version_format(in->libvirt_version, have, sizeof have);
                version_format(in->min_libvirt_version, need, sizeof need);
                snprintf(buf, size, "libvirt %s is older than %s", have, need);
                return buf;
        }
        if (in->hypervisor_version < in->min_hypervisor_version) {
                version_format(in->hypervisor_version, have, sizeof have);
                version_format(in->min_hypervisor_version, need, sizeof need);
                snprintf(buf, size, "QEMU %s is older than %s", have, need);
                return buf;
        }
        if (in->native_header == NATIVE_HEADER_SHIM ||
            (in->luks_version != 1 && in->dm_linear_available && in->native_header != NATIVE_HEADER_VOLUME)) {
                char why[160];
                const char *s = mode_shim_obstacle(in, why, sizeof why);
                if (s) {
                        if (in->luks_version != 1)
                                snprintf(buf, size,
                                         "QEMU decrypts LUKS1 only and this LUKS%u volume cannot be given a LUKS1 "
                                         "header shim: %s",
                                         in->luks_version, s);
                        else
                                snprintf(buf, size, "no LUKS1 header shim can be made: %s", s);
                        return buf;
                }
        }
        if (shim_chosen(in)) {
                /* QEMU gets a one-time text passphrase and a PBKDF2-sha256
                 * slot of ours: the caller's passphrase and key slots never
                 * reach it. */
                if (in->discard)
                        return "QEMU's LUKS driver passes no discard requests to the image (discard needs "
                               "cryptsetup mode)";
                return NULL;
        }
        if (in->luks_version != 1) {
                snprintf(buf, size, "QEMU decrypts LUKS1 only and this volume is LUKS%u", in->luks_version);
                return buf;
        }
        if (in->passphrase_not_text)
                return "QEMU takes a passphrase as UTF-8 text without NUL bytes, and this one is not";
        const char *c = mode_qemu_cipher_obstacle(in->cipher, in->cipher_mode, in->hash, buf, size);
        if (c)
                return c;
        if (in->discard)
                return "QEMU's LUKS driver passes no discard requests to the image (discard needs cryptsetup mode)";
        return NULL;
}

VolumeMode mode_select(const ModeInput *in, char *reason, size_t reason_size) {
        char obstacle_buf[160];
        const char *obstacle;

        if (reason_size > 0)
                reason[0] = '\0';

        if (in->luks_version != 1 && in->luks_version != 2)
                return refuse(reason, reason_size, "unknown LUKS version %u", in->luks_version);
        /* Headers nobody here wrote: refused in every mode, before the
         * choice (a null cipher is as plaintext through dm-crypt as
         * through QEMU). */
        if (in->header_obstacle)
                return refuse(reason, reason_size, "the volume's header is refused: %s", in->header_obstacle);

        obstacle = mode_native_obstacle(in, obstacle_buf, sizeof obstacle_buf);

        switch (in->requested) {
        case VOLUME_MODE_NATIVE:
                if (obstacle)
                        return refuse(reason, reason_size, "native mode is not possible: %s", obstacle);
                return VOLUME_MODE_NATIVE;

        case VOLUME_MODE_CRYPTSETUP:
                if (!in->dm_crypt_available)
                        return refuse(reason, reason_size,
                                      "cryptsetup mode needs dm-crypt, which is not available on this host");
                return VOLUME_MODE_CRYPTSETUP;

        case VOLUME_MODE_AUTO:
                /* Native is preferred: no cleartext device ever exists on the host. */
                if (!obstacle)
                        return VOLUME_MODE_NATIVE;
                if (in->dm_crypt_available)
                        return VOLUME_MODE_CRYPTSETUP;
                if (in->luks_version == 2 && mode_native_gate(in) && !in->dm_linear_available)
                        return refuse(
                                reason, reason_size,
                                "LUKS2 volumes need dm-crypt (QEMU decrypts LUKS1 only), which is not available on this host");
                return refuse(reason, reason_size,
                              "native mode is not possible (%s) and dm-crypt is not available on this host", obstacle);

        default:
                return refuse(reason, reason_size, "invalid mode requested");
        }
}
