/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* QEMU's image locks, spoken by the daemon: "a second writer never" in
 * cryptsetup mode, where QEMU only ever sees /dev/mapper/… and would
 * leave the image itself unlocked.
 *
 * QEMU's file driver (block/file-posix.c) marks what it does with an image
 * by open-file-description locks (F_OFD_SETLK), all of them shared
 * (F_RDLCK), one byte per block permission: byte 100 + bit for a
 * permission it holds, byte 200 + bit for one it does not let others have.
 * Bits: 0 consistent read, 1 write, 2 write-unchanged, 3 resize.  Before
 * it opens an image it tests (F_OFD_GETLK with F_WRLCK) whether anyone
 * else holds byte 200 + bit for a permission it wants, or byte 100 + bit
 * for one it will not share — and refuses the image if so ("Failed to get
 * \"write\" lock").  The daemon takes exactly what a guest's disk takes:
 * it holds consistent read (and write, unless read-only), and shares
 * neither write nor resize.
 *
 * The locks belong to the open file description, not to the process or
 * the descriptor: they last until the description's last reference is
 * gone.  A loop device bound to the descriptor holds such a reference, so
 * for a file source the locks live exactly as long as the mapping, also
 * across a crash or restart of the daemon. */

#include <stdbool.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

/* Is fd's file in use by a QEMU (or anyone speaking its locks) in a way
 * that conflicts with what a guest's disk would take (write: read-write)?
 * With take, our lock bytes are taken first and the check follows (as QEMU
 * does it, in that order, so that of two racing openers at least one sees
 * the other); on a conflict they are released again.  A conflict is
 * Error.InUse naming the holder ("qemu-io (pid 123)") when a process can be
 * found; what is the source's name in messages.
 *
 * Lock calls reach the file system (a FUSE daemon, an NFS lock server), so
 * they run on a thread of their own under the deadline (Error.Busy after
 * timeout_ms), on a duplicate of fd: the same open file description. */
int qemu_lock_check(int fd, bool take, bool write, const char *what, unsigned timeout_ms, sd_bus_error *error);
