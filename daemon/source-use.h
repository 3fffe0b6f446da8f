/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* "No second writer": is a source already in use outside this service?
 * Checked after authorization and before anything is created; the answer is
 * Error.InUse naming who uses it — before the header is read, so that a
 * mounted file system is "in use", not "not LUKS".  Worker threads only (libvirt RPCs; the
 * paths other guests use are stat()ed under a deadline). */

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "disk-index.h"
#include "luks.h"
#include "source.h"
#include "virt.h"

/* In use means any of:
 *  - a block device that is mounted (itself or a partition), used as swap,
 *    held by another block device (dm, md, LVM, bcache), or that cannot be
 *    opened O_EXCL;
 *  - a file that backs a loop device;
 *  - a file or device that a domain of our libvirt connection has as a
 *    disk, its backing chain or a block-copy mirror — running, or defined
 *    and not running (its persistent configuration: the next start would
 *    open it) — compared by identity (device and inode), so symlinks and
 *    other paths to the same inode count.
 * The domains' paths come from index (disk-index.h; NULL: every
 * definition's XML is read).
 * QEMUs this connection cannot list (qemu:///session guests, another
 * libvirt, qemu-io) are found by their locks on the image instead
 * (qemu-lock.h, after the source is opened). */
int source_check_in_use(Virt *virt, DiskIndex *index, const SourceInfo *src, unsigned timeout_ms, sd_bus_error *error);

/* Opens the block device src O_EXCL, so that for as long as the returned
 * descriptor stays open the kernel refuses to mount it, swap on it or build
 * dm/md/LVM devices on it.  Error.InUse if something holds it already. */
int source_hold_exclusive(LuksSource *opened, int *ret_fd, sd_bus_error *error);
