/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The header shim: native mode for volumes QEMU cannot open by their own
 * header (LUKS2), and without QEMU deriving the caller's key slots while
 * the guest is stopped (any LUKS).
 *
 * The daemon derives the volume key once (this is the passphrase check),
 * writes a fresh LUKS1 header for that key into a memfd — one key slot,
 * PBKDF2 at the minimum cost, under a random one-time passphrase that goes
 * into the ephemeral, private libvirt secret — and hands QEMU a linear
 * device-mapper device: that header, then the volume's untouched
 * ciphertext payload.  QEMU's LUKS1 driver decrypts; the host never holds
 * a cleartext device (the linear table maps ciphertext only).  The volume
 * key is wiped as soon as the header is written. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "luks.h"
#include "passphrase.h"

/* The shim's header area, in 512-byte sectors: its payload offset (a LUKS1
 * header with one slot of a 512-bit key takes ~256 KiB; 2 MiB is LUKS1's
 * usual alignment). */
#define LUKS_SHIM_HEADER_SECTORS 4096U
#define LUKS_SHIM_ITERATIONS     1000U
/* Device names: the mapping prefix (so the udev rule hides them too; with
 * DeviceTag= the tagged one, luks_mapping_prefix()), then "shim-": never a
 * hex digit, so never a cryptsetup-mode mapping's name. */
#define LUKS_SHIM_PREFIX         "luksvol-shim-"

typedef struct LuksShim {
        int memfd;              /* the one-time LUKS1 header; -EBADF if none */
        Passphrase *passphrase; /* the one-time passphrase (text, for QEMU) */
        int slot;               /* the volume's key slot the passphrase opened */
        uint64_t cost_ms;       /* derivation time of the slots tried, up to that one */
} LuksShim;

#define LUKS_SHIM_NULL ((LuksShim){ .memfd = -EBADF, .slot = -1 })

void luks_shim_done(LuksShim *shim);

/* Derives the volume key of s with passphrase (key slots tried in slot
 * order, each derivation on the derivation thread, after the header
 * policy; wrong passphrase → Error.BadPassphrase) and writes the one-time
 * header for it.  The key never leaves locked memory and is wiped before
 * returning. */
int luks_shim_make(LuksSource *s, const LuksInfo *info, const Passphrase *passphrase, unsigned timeout_ms,
                   LuksShim *ret, sd_bus_error *error);

/* "luksvol-shim-<domain uuid hex>_<target>" ("luksvol-TAG-shim-…" with a
 * DeviceTag=). */
int luks_shim_name(const char *domain_uuid, const char *target, char **ret);

/* Makes the linear device name: the shim's header (through a loop device
 * on its memfd), then s's payload (s itself for a block device, else a loop
 * device bound to the descriptor s holds).  Loop devices clear themselves
 * when the device goes.  Its device-mapper UUID carries the volume's LUKS
 * version and UUID, for recovery.  *ret_node: /dev/mapper/NAME. */
int luks_shim_activate(LuksSource *s, const LuksInfo *info, const LuksShim *shim, const char *name, bool read_only,
                       char **ret_node, sd_bus_error *error);

/* For an active shim device of ours, from the kernel's account (its table,
 * UUID and sysfs): the volume under it (a loop device's backing file, or
 * the block device's node), its LUKS version and UUID, and the payload
 * offset in bytes.  -ENXIO if not active, -EMEDIUMTYPE if name is not a
 * shim device. */
int luks_shim_info(const char *name, char **ret_source, LuksInfo *ret_info);

/* The block device the payload piece sits on, as a node ("/dev/loop3"). */
int luks_shim_data_device(const char *name, char **ret_node);

/* Grows or shrinks the payload piece to size bytes of plaintext (the data
 * device already has room for it). */
int luks_shim_resize(const char *name, uint64_t size, unsigned timeout_ms, sd_bus_error *error);

/* Rearm of a saved domain's shim volume: a new one-time header for the
 * volume's key (derived from passphrase, as luks_shim_make()); the device
 * name keeps its payload piece and gets the new header in place of the old
 * one, or is made again if it is gone.  *ret_passphrase: the new one-time
 * passphrase, for the secret.  The domain is saved: nothing reads the
 * device meanwhile. */
int luks_shim_rearm(LuksSource *s, const LuksInfo *info, const Passphrase *passphrase, const char *name, bool read_only,
                    unsigned timeout_ms, Passphrase **ret_passphrase, sd_bus_error *error);

/* Removes the device if it is one of ours (name and linear table); the
 * loop devices under it clear themselves.  Gone already → 0. */
int luks_shim_remove(const char *name, sd_bus_error *error);
