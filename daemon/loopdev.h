/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Loop devices, set up from a file descriptor the daemon already holds.
 *
 * cryptsetup mode needs a block device under a file source.  libcryptsetup
 * would make one itself, by opening the path again — while holding its
 * process-wide state, and after the daemon has checked what the path is.
 * Binding the loop device to the descriptor that was opened, checked and
 * read under a deadline closes both gaps: no second path look-up, and no
 * file system call on the caller's path inside the library. */

#include <stdbool.h>
#include <sys/types.h>

/* Binds a free loop device to fd (read-only if read_only or fd is not open
 * for writing), with autoclear: the kernel detaches it once its last user
 * (the dm-crypt mapping) lets go.  Returns the open loop device in
 * *ret_fd — closing it without anything else holding the device detaches
 * it — and its node in *ret_path. */
int loop_attach_fd(int fd, bool read_only, int *ret_fd, char **ret_path);

/* Is there a loop device whose backing file is (dev, ino)?  1 and its node
 * in *ret_path (may be NULL) if so, 0 if not, negative errno on failure. */
int loop_find_backing(dev_t dev, ino_t ino, char **ret_path);

/* Makes the loop device node, which must be bound to the file (dev, ino),
 * take its file's current size (LOOP_SET_CAPACITY): after the file grew or
 * shrank.  -ESTALE if node is bound to another file (or none). */
int loop_refresh_capacity(const char *node, dev_t dev, ino_t ino);

/* The file a loop device is bound to, as the kernel holds it: its (st_dev,
 * st_ino), not the name in sysfs' backing_file (a path, which may lead
 * elsewhere by now).  -ENXIO if node is bound to nothing. */
int loop_backing_identity(const char *node, dev_t *ret_dev, ino_t *ret_ino);
