/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

/* Opening a canonical path exactly as resolved.
 *
 * source_resolve() (source.h) gives the canonical path: every symlink
 * resolved, so none is left on it.  Whatever a later open of that path
 * meets that is a symlink was planted since — by someone who can write a
 * directory on it — and would lead to a file polkit never saw.  Such opens
 * fail instead of following. */

/* openat2(path, flags, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a
 * symlink on any component → -ELOOP.  Kernels without openat2 (before
 * 5.6): open() with O_NOFOLLOW, which guards the last component only — the
 * caller's identity check catches the rest.  Returns the descriptor or a
 * negative errno. */
int open_pinned(const char *path, int flags);

/* The error every "the source is not what was checked" reports:
 * Error.Busy, naming the path; the caller may try again. */
int source_error_changed(sd_bus_error *error, const char *path);
