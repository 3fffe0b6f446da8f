/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* /etc/luksvolumed.conf and drop-ins /etc/luksvolumed.conf.d/NAME.conf (in
 * lexical order, later files win), parsed with inih.  Command-line options
 * override the files. */

#include <stdbool.h>

#include "header-policy.h"

typedef struct ManagerConfig {
        char *libvirt_uri;
        unsigned long min_libvirt_version;
        unsigned long min_qemu_version;
        unsigned max_volumes;
        unsigned idle_timeout_sec;   /* 0: never exit when idle */
        unsigned detach_timeout_sec; /* Detach's default 'timeout' */
        unsigned source_timeout_sec; /* deadline of file system calls on a source */
        unsigned max_pending_polkit;
        /* How long a StageIncoming secret waits for its domain (stage.c). */
        unsigned stage_timeout_sec;
        /* MaxPbkdf2Iterations=, MaxArgon2MemoryKiB=, MaxArgon2Cost=:
         * what a key slot may cost to try (header-policy.h). */
        KdfLimits kdf;
        /* PassphrasePrecheckIterations=: a native attach checks the
         * passphrase itself first only where QEMU refusing a wrong one
         * would cost more (header_refusal_iterations()); 0: always. */
        uint32_t precheck_iterations;
        /* Since 0.3 (RBD sources): the Ceph configuration the daemon's
         * client reads, and its id (client.ID); NULL: /etc/ceph/ceph.conf,
         * "admin". */
        const char *ceph_config;
        const char *ceph_client;
        /* The libvirt 'ceph' secret QEMU authenticates with (UUID or usage
         * name); NULL: RBD sources can be probed, not attached. */
        const char *ceph_secret;
        /* DeviceTag= (since 0.3): in this service's device-mapper names,
         * for several libvirt hosts sharing one kernel (luks.h); NULL: none. */
        const char *device_tag;
} ManagerConfig;

#define CONFIG_FILE_DEFAULT "/etc/luksvolumed.conf"

/* Reads path and then every PATH.d/NAME.conf in lexical order; a missing
 * main file is fine.  On a bad file logs "FILE:LINE: …key…" and returns
 * -EINVAL.  Strings in config are strdup()ed into config_strings_free(). */
int config_load(const char *path, ManagerConfig *config);
void config_strings_free(void);
