/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libcryptsetup, in-process: LUKS header facts. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "passphrase.h"

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

/* Every dm-crypt mapping this service opens is named
 * LUKS_MAPPING_PREFIX + the volume id (domain UUID hex + "_" + target), so
 * the start-up scan can tell ours from anyone else's. */
#define LUKS_MAPPING_PREFIX "luksvol-"

int luks_mapping_name(const char *domain_uuid, const char *target, char **ret);

/* Opens source (a file gets a loop device from libcryptsetup, released
 * when the mapping goes) as /dev/mapper/NAME.  The passphrase is freed
 * (wiped) here on every path.  Wrong passphrase → Error.BadPassphrase. */
int luks_activate(const char *source, const char *name, bool read_only, Passphrase **passphrase,
                  char **ret_mapper_path, sd_bus_error *error);

/* Closes the mapping; retries while busy; not active counts as done. */
int luks_deactivate(const char *name, sd_bus_error *error);

/* For a mapping of ours: the device it sits on (a loop device's backing
 * file for file sources) and the header facts.  -ENODEV if not active. */
int luks_mapping_info(const char *name, char **ret_source, LuksInfo *ret_info);
