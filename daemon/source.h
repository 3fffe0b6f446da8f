/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The caller's `source` argument: its spelling is checked on the event loop
 * (pure), its resolution — realpath() and stat(), as root, on a path that
 * may sit on a hung file system — runs on a worker, on a thread of its own
 * with a deadline (deadline.h), and is kept from callers polkit refuses. */

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct SourceInfo {
        char *path; /* canonical absolute path, symlinks resolved */
        bool block; /* block device, else regular file */
        dev_t dev;  /* identity: st_rdev for block devices, st_dev for files */
        ino_t ino;  /* 0 for block devices */
        bool rbd;   /* since 0.3: path is "rbd:POOL[/NAMESPACE]/IMAGE"; dev, ino: rbd_source_ino() (rbd-name.h) */
} SourceInfo;

void source_info_done(SourceInfo *s);

/* Pure, for the event loop: InvalidArgs for empty, relative, over-long,
 * control characters, "." or ".." components. */
int source_validate(const char *path, sd_bus_error *error);

/* Worker threads only.  source_validate(), then realpath() and stat() on a
 * thread of their own, waiting at most timeout_ms: InvalidArgs for
 * nonexistent, dangling or looping symlinks, a canonical path that is not
 * UTF-8, anything but a regular file or block device; Busy when the file
 * system did not answer in time; Failed for other errors (their text, never
 * an errno-named D-Bus error).  As the daemon (root). */
int source_resolve(const char *path, unsigned timeout_ms, SourceInfo *ret, sd_bus_error *error);

/* A caller's file-system identity, as the bus driver vouches for it. */
typedef struct SourceCreds {
        uid_t uid;
        gid_t gid;     /* the file-system gid */
        gid_t *groups; /* supplementary groups */
        size_t n_groups;
} SourceCreds;

void source_creds_done(SourceCreds *c);

/* source_resolve(), but with the caller's file-system credentials (creds
 * NULL: as root): the resolving thread takes creds' fsuid, fsgid and
 * supplementary groups for itself alone, so root's permissions (and
 * CAP_DAC_OVERRIDE) play no part, and it also checks that the caller may
 * open the source for reading.  -EACCES, with error set to
 * source_error_caller_denied(), when the caller's permissions stop it
 * anywhere on the way: the answer is then the same whatever lies behind
 * the place it stopped. */
int source_resolve_as(const char *path, const SourceCreds *creds, unsigned timeout_ms, SourceInfo *ret,
                      sd_bus_error *error);
int source_error_caller_denied(sd_bus_error *error);

/* The errors every deadline-bound source access reports: Busy "did not
 * respond within N s", and for a deadline_*() failure (-EBUSY: too many
 * stuck threads) Busy or Failed. */
int source_error_timeout(sd_bus_error *error, unsigned timeout_ms);
int source_error_deadline(sd_bus_error *error, int r);
