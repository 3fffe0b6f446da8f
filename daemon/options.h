/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The a{sv} option dictionaries of the methods: one table of
 * known keys and their types.  Unknown key, wrong type or bad value →
 * InvalidArgs, before anything is authorized or touched. */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "mode.h"

typedef struct AttachOptions {
        char *target;    /* NULL: first free name for the bus */
        char *bus;       /* never NULL after parsing: "virtio" default */
        VolumeMode mode; /* VOLUME_MODE_AUTO default */
        bool read_only;
        int passphrase_fd;          /* dup()ed, owned; -1 if not given */
        char *serial;               /* NULL: none; else checked by serial_valid() */
        bool discard;               /* pass discards to the image: cryptsetup mode only */
        NativeHeader native_header; /* NATIVE_HEADER_AUTO default (since 0.3) */
        char *request_id;           /* NULL: none (attach-request.h) */
} AttachOptions;

/* The longest serial every bus takes whole (virtio-blk's ID field, ATA's
 * serial number: 20 bytes). */
#define SERIAL_MAX 20U

typedef struct DetachOptions {
        unsigned timeout_sec; /* seconds to wait for the guest to let go */
        bool timeout_set;
} DetachOptions;

typedef struct ResizeOptions {
        bool allow_shrink; /* a smaller size is refused unless set */
} ResizeOptions;

#define DETACH_TIMEOUT_DEFAULT_SEC 30U
#define DETACH_TIMEOUT_MAX_SEC     3600U

void attach_options_done(AttachOptions *o);

/* m must be positioned at the a{sv}. */
int attach_options_parse(sd_bus_message *m, AttachOptions *ret, sd_bus_error *error);
int detach_options_parse(sd_bus_message *m, DetachOptions *ret, sd_bus_error *error);
int resize_options_parse(sd_bus_message *m, ResizeOptions *ret, sd_bus_error *error);

/* A disk serial the daemon hands to libvirt: 1 to SERIAL_MAX characters
 * from A-Z a-z 0-9 . _ - (what udev keeps as is in /dev/disk/by-id names,
 * and no bus mangles). */
bool serial_valid(const char *s);
/* Rearm: passphrase-fd only (-1 if not given; dup()ed, owned). */
int rearm_options_parse(sd_bus_message *m, int *ret_passphrase_fd, sd_bus_error *error);

/* ChangePassphrase, AddPassphrase, RemovePassphrase, VerifyPassphrase:
 * passphrase-fd for all; the rest only where allowed says. */
typedef struct KeysOptions {
        int passphrase_fd;         /* dup()ed, owned; -1 if not given */
        int new_passphrase_fd;     /* likewise */
        uint32_t pbkdf_iterations; /* 0: as the slot the passphrase opens */
        bool force;
} KeysOptions;

#define KEYS_OPTIONS_NEW          (1U << 0) /* new-passphrase-fd, pbkdf-iterations */
#define KEYS_OPTIONS_FORCE        (1U << 1) /* force */
/* A worker's key derivation, and the source's lock, for minutes at most. */
#define KEYS_PBKDF_ITERATIONS_MAX 10000000U

void keys_options_done(KeysOptions *o);
int keys_options_parse(sd_bus_message *m, unsigned allowed, KeysOptions *ret, sd_bus_error *error);

/* Probe has no options yet; anything given is refused so that adding some
 * later does not change what old callers get. */
int probe_options_parse(sd_bus_message *m, sd_bus_error *error);

/* StageIncoming (stage.c): what the source host's service made for the
 * volume.  secret-uuid and target are required; usage, if given, must be
 * the one this service derives from domain and target (a check that both
 * hosts name the secret alike); timeout is how long the staged secret waits
 * for the domain (seconds; 0: the configured StageTimeoutSec). */
typedef struct StageOptions {
        char *secret_uuid; /* native mode only */
        char *target;
        char *usage;
        char *ceph_secret; /* since 0.3: the UUID of the libvirt 'ceph' secret the RBD disk names */
        uint32_t timeout_sec;
        int passphrase_fd; /* dup()ed, owned; -1 if not given */
        /* Since 0.3: the volume's Mode and NativeHeader on the source
         * (native and volume by default); read-only and discard as it was
         * attached there: the device made here must match. */
        VolumeMode mode;
        NativeHeader native_header;
        bool read_only, discard;
        bool seen_mode, seen_header, seen_ro, seen_discard;
} StageOptions;

#define STAGE_TIMEOUT_MAX_SEC 86400U

void stage_options_done(StageOptions *o);
int stage_options_parse(sd_bus_message *m, StageOptions *ret, sd_bus_error *error);
