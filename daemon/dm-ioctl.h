/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A dm-crypt mapping resized through device-mapper's own ioctls, not
 * libdevmapper or libcryptsetup: those keep process-wide state, so the
 * daemon calls them under crypt_lock only — and a table swap needs the
 * mapping suspended, which waits for the guest's I/O in flight, i.e. for
 * the caller's file, for as long as that takes.  Here nothing is shared,
 * so no lock is held, and the wait runs under the deadline. */

#include <linux/dm-ioctl.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

/* Makes the active dm-crypt mapping name size bytes long (a multiple of
 * 512 and of its sector size): its table as it is, with the new length,
 * loaded after the mapping has been suspended, then resumed.  The suspend
 * waits at most timeout_ms for the I/O in flight (then Error.Busy, nothing
 * changed; the abandoned suspend resumes the mapping itself once the I/O
 * ends).  The table must sit on the block device data_device_rdev.
 * A key kept in the kernel keyring → -EPERM (Error.NotSupported). */
int dm_crypt_resize(const char *name, dev_t data_device_rdev, uint64_t size, unsigned timeout_ms, sd_bus_error *error);

/* The raw interface, shared with dm-linear.c. */
#define ALIGN8(x) (((x) + 7) & ~(size_t) 7)
/* Fills in the version, sizes, flags and name of a request of size bytes. */
void dm_header(struct dm_ioctl *io, size_t size, const char *name, uint32_t flags);
/* One request on /dev/mapper/control; negative errno. */
int dm_call(unsigned long request, struct dm_ioctl *io);
/* Whether the kernel has a device-mapper device name (any target). */
int dm_device_exists(const char *name, bool *ret);
/* Suspends or resumes name; a resume swaps in a loaded inactive table. */
int dm_suspend(const char *name, bool suspend);
/* Suspends name, waiting at most timeout_ms for the I/O in flight (then
 * Error.Busy; the abandoned suspend resumes the device itself once it
 * goes through).  On success the caller loads a table and resumes. */
int dm_suspend_bounded(const char *name, unsigned timeout_ms, sd_bus_error *error);
