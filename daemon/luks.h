/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libcryptsetup, in-process: LUKS header facts. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

typedef struct LuksInfo {
        unsigned version;          /* 1 or 2 */
        char uuid[40];
        char cipher[96];           /* "aes-xts-plain64" */
        unsigned key_size_bits;
        unsigned active_keyslots;
} LuksInfo;

/* Reads the LUKS header of path. Not LUKS → -EBADMSG with Error.NotLuks set. */
int luks_probe(const char *path, LuksInfo *ret, sd_bus_error *error);

/* Device-mapper with the crypt target usable on this host. */
bool luks_dm_crypt_available(void);
