/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Linear device-mapper devices: the header shim's concatenation of a
 * one-time LUKS1 header and a volume's untouched ciphertext payload
 * (luks-shim.h).  Through device-mapper's own ioctls (dm-ioctl.h says why
 * not libdevmapper: its process-wide state would put every call under
 * libcryptsetup's lock); the device node is made here, as libdevmapper does
 * without udev, and a udev that makes its own link finds the same device.
 * A linear table holds no secret: it maps ciphertext only. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct DmLinearPiece {
        dev_t dev;       /* the block device it maps */
        uint64_t offset; /* sectors into dev */
        uint64_t length; /* sectors */
} DmLinearPiece;

#define DM_LINEAR_MAX_PIECES 2

/* Device-mapper usable on this host (the kernel's misc device list, or a
 * module it can load); the linear target is part of device-mapper itself. */
bool dm_linear_available(void);

/* Creates name (with the device-mapper UUID uuid) mapping the pieces one
 * after the other (read-only if read_only), and its node /dev/mapper/NAME, returned in
 * *ret_node.  -EEXIST if a device of that name exists; nothing is left
 * behind on failure. */
int dm_linear_create(const char *name, const char *uuid, const DmLinearPiece *pieces, size_t n, bool read_only,
                     char **ret_node);

/* The table of name: its pieces (at most max, *ret_n of them), only if it
 * is linear through and through (-EMEDIUMTYPE otherwise); its UUID
 * (may be NULL).  -ENXIO if there is no such device. */
int dm_linear_table(const char *name, DmLinearPiece *ret, size_t max, size_t *ret_n, char **ret_uuid);

/* Replaces name's table with pieces, suspending it for at most timeout_ms
 * (dm_suspend_bounded()); the guest's I/O resumes on the new table. */
int dm_linear_reload(const char *name, const DmLinearPiece *pieces, size_t n, unsigned timeout_ms, sd_bus_error *error);

/* Removes name and its node, retrying for a while if it is still open (a
 * guest's QEMU closing it).  Gone already → 0; still busy → -EBUSY. */
int dm_linear_remove(const char *name);
