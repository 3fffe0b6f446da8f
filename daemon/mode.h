/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Which way a volume gets to the guest: a pure function of the host's
 * versions, the volume's LUKS version, what the caller asked for and
 * whether dm-crypt is usable.  Table-tested in tests/unit/test-mode.c. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum VolumeMode {
        VOLUME_MODE_AUTO, /* only as a request */
        VOLUME_MODE_NATIVE,
        VOLUME_MODE_CRYPTSETUP,
        _VOLUME_MODE_MAX,
        _VOLUME_MODE_INVALID = -1,
} VolumeMode;

const char *volume_mode_to_string(VolumeMode m);
VolumeMode volume_mode_from_string(const char *s);

/* Which LUKS header QEMU is given in native mode: the volume's own (LUKS1
 * only; QEMU derives the caller's key slots while the guest is stopped) or
 * a one-time LUKS1 header shim for the volume's key, in front of its
 * payload through device-mapper's linear target (luks-shim.h). */
typedef enum NativeHeader {
        NATIVE_HEADER_AUTO, /* only as a request: the shim where it can be made */
        NATIVE_HEADER_VOLUME,
        NATIVE_HEADER_SHIM,
        _NATIVE_HEADER_MAX,
        _NATIVE_HEADER_INVALID = -1,
} NativeHeader;

const char *native_header_to_string(NativeHeader h);
NativeHeader native_header_from_string(const char *s);

/* Versions in libvirt's encoding: major * 1000000 + minor * 1000 + micro. */
#define LV_VERSION(maj, min, mic) \
        ((unsigned long) (maj) *1000000UL + (unsigned long) (min) *1000UL + (unsigned long) (mic))
/* The lowest libvirt with everything the native path uses: the disk's
 * <encryption> under <source> and user aliases ("ua-…", 3.9.0), correct
 * handling of passphrases whose length is a multiple of 16 bytes (broken
 * before 3.3.0), and virDomainDetachDeviceAlias() (4.4.0). */
#define LV_MIN_LIBVIRT_VERSION LV_VERSION(4, 4, 0)
#define LV_MIN_QEMU_VERSION    LV_VERSION(2, 6, 0)

typedef struct ModeInput {
        unsigned long libvirt_version;
        unsigned long hypervisor_version;
        unsigned long min_libvirt_version; /* the gate; normally LV_MIN_LIBVIRT_VERSION */
        unsigned long min_hypervisor_version;
        bool hypervisor_is_qemu;
        unsigned luks_version; /* 1 or 2 */
        VolumeMode requested;
        bool dm_crypt_available;
        /* The passphrase has a NUL byte or is not valid UTF-8: QEMU cannot
         * take it as a secret (false when there is no passphrase, as for
         * Probe). */
        bool passphrase_not_text;
        /* The caller wants the guest's discards to reach the image: QEMU's
         * LUKS driver passes none on, dm-crypt does (allow_discards). */
        bool discard;
        /* The volume's encryption as its header says (NULL: not known, no
         * objection): QEMU's LUKS driver knows fewer ciphers, modes, IV
         * generators and hashes than dm-crypt. */
        const char *cipher;      /* "aes" */
        const char *cipher_mode; /* "xts-plain64", "cbc-essiv:sha256" */
        const char *hash;        /* the key slots' PBKDF2 hash, "sha256" */
        /* Why the header is refused whatever the mode (header-policy.h:
         * cipher allow-list, key derivation limits), or NULL. */
        const char *header_obstacle;

        /* The header shim (issue 17): device-mapper's linear target usable,
         * and the facts of the volume's data segment it depends on. */
        bool dm_linear_available;
        uint32_t sector_size;       /* of the data segment; 0: 512 */
        bool integrity;             /* LUKS2 with dm-integrity */
        bool requirements;          /* LUKS2 requirement flags (e.g. reencryption) */
        NativeHeader native_header; /* what the caller asked for; AUTO by default */
} ModeInput;

/* Why QEMU's LUKS driver could not decrypt a volume with this cipher,
 * mode/IV generator and hash (a sentence in buf), or NULL if it can.
 * Pure; NULL or empty arguments raise no objection. */
const char *mode_qemu_cipher_obstacle(const char *cipher, const char *cipher_mode, const char *hash, char *buf,
                                      size_t size);

/* Returns the mode to use, or _VOLUME_MODE_INVALID with a human reason in
 * reason (always NUL-terminated, never empty on refusal).  A header
 * obstacle refuses every request, before any mode is considered. */
VolumeMode mode_select(const ModeInput *in, char *reason, size_t reason_size);

/* Why native mode is impossible for this input (a sentence without a final
 * period, in buf or static), or NULL if it is possible. */
const char *mode_native_obstacle(const ModeInput *in, char *buf, size_t size);

/* Why no header shim can be made for this input (a sentence in buf or
 * static), or NULL if one can. */
const char *mode_shim_obstacle(const ModeInput *in, char *buf, size_t size);

/* The header a native attach of this input gives QEMU (VOLUME or SHIM);
 * meaningful when mode_native_obstacle() is NULL. */
NativeHeader mode_native_header(const ModeInput *in);

/* Whether the host's versions allow native LUKS at all (Probe's native-luks). */
bool mode_native_gate(const ModeInput *in);

/* "2.6.0" from 2006000. */
void version_format(unsigned long v, char *buf, size_t size);
/* Parses "MAJOR.MINOR[.MICRO]" into libvirt's encoding; -EINVAL if malformed. */
int version_parse(const char *s, unsigned long *ret);
