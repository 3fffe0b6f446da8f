/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The source form of a Ceph RBD image: "rbd:POOL/IMAGE" or
 * "rbd:POOL/NAMESPACE/IMAGE" (issue 18).  Pure: for the event loop, the
 * unit tests and the fuzzer alike.
 *
 * Names are held to a safe subset of what Ceph allows — ASCII letters,
 * digits, '_', '-', '.', '+', not starting with '.' — because the same
 * text goes into polkit details, the guest's disk XML (libxml2 escapes it,
 * but QEMU's rbd option string has separators of its own: ':', '@', '/'
 * and '=') and log lines; no snapshot ("@snap") either: a snapshot is
 * read-only and not a volume a guest writes to. */

#include <stdbool.h>
#include <sys/types.h>

#define RBD_SOURCE_PREFIX "rbd:"
#define RBD_NAME_MAX      127

typedef struct RbdName {
        char pool[RBD_NAME_MAX + 1];
        char ns[RBD_NAME_MAX + 1]; /* "" for the pool's default namespace */
        char image[RBD_NAME_MAX + 1];
} RbdName;

/* Does source use the rbd: form (whether or not it is valid)? */
bool rbd_source_is(const char *source);

/* A valid rbd: source naming a namespace (POOL/NAMESPACE/IMAGE)? */
bool rbd_source_has_namespace(const char *source);

/* 0, or -EINVAL with *ret_reason a static text saying what is wrong. */
int rbd_name_parse(const char *source, RbdName *ret, const char **ret_reason);

/* The identity the service keys an RBD source by where a file has its
 * (st_dev, st_ino): a device number no file system has, and 64 bits of
 * the SHA-256 of the canonical "rbd:…" text (one spelling per image: names are taken
 * as written, there is nothing to resolve). */
#define RBD_SOURCE_DEV ((dev_t) -1)
ino_t rbd_source_ino(const char *source);

/* "pool/image" or "pool/ns/image": libvirt's <source name=…>. */
int rbd_name_format(const RbdName *n, char *buf, unsigned size);
