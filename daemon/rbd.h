/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Ceph RBD images through librados/librbd (issue 18), loaded with dlopen()
 * on first use: most hosts have no Ceph, and librbd's dependencies would
 * otherwise cost every cold activation their relocations (issue 20).
 *
 * Everything here blocks on the network: callers run it on a deadline
 * thread (deadline.h).  librados' own timeouts are set too (monitor and
 * OSD operations, the initial mount), so a thread a deadline left behind
 * still ends. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rbd-name.h"
#include "util.h"

typedef struct RbdImage RbdImage;

typedef struct RbdFacts {
        uint64_t size;
        uint64_t features; /* RBD_FEATURE_* bits */
        unsigned watchers; /* clients watching the image's header (a QEMU that opened it, `rbd map`…) */
        char watcher[64];  /* the first one's address, for messages */
} RbdFacts;

/* Where the daemon's Ceph client reads its configuration (monitors, the
 * keyring) and which client it is: CephConfig= and CephClient= of
 * luksvolumed.conf.  Main thread, before any worker runs. */
void rbd_configure(const char *conf_path, const char *client);
const char *rbd_conf_path(void);
const char *rbd_client(void);

/* Is librbd loadable?  (Loads it.)  -EOPNOTSUPP with a reason if not. */
int rbd_available(const char **ret_reason);

/* Opens the image read-only.  Negative errno: -EOPNOTSUPP (no librbd),
 * -ENOENT (no such pool or image), -EACCES/-EPERM (cephx refused),
 * -ETIMEDOUT (the cluster did not answer), else librados' own; *ret_stage
 * says which step failed ("connect", "pool", "image"). */
int rbd_image_open(const RbdName *name, RbdImage **ret, const char **ret_stage);
/* Read-write, holding the image's exclusive lock (the exclusive-lock
 * feature; -EINVAL without it) until rbd_image_close(): for changes of
 * its LUKS header.  *ret_stage "lock the image" when the lock failed. */
int rbd_image_open_exclusive(const RbdName *name, RbdImage **ret, const char **ret_stage);
/* Writes [off, off+len) of an image opened exclusively, then flushes it to
 * the OSDs (librados' op timeout bounds both). */
int rbd_image_write(RbdImage *img, uint64_t off, const void *buf, size_t len);
void rbd_image_close(RbdImage *img);
DEFINE_TRIVIAL_CLEANUP_FUNC(RbdImage *, rbd_image_close);
int rbd_image_facts(RbdImage *img, RbdFacts *ret);
/* Reads [off, off+len) of the image (raw: no encryption is loaded). */
int rbd_image_read(RbdImage *img, uint64_t off, void *buf, size_t len);
