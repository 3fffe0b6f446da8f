/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every domain's disks use, kept between one attach's in-use check
 * and the next (source-use.c), so that an attach no longer reads the XML
 * of every domain on the host: only of those whose disks may have changed
 * since it was read last.
 *
 * An entry holds the host paths of one domain definition (its live XML, or
 * its persistent configuration) and is forgotten when libvirt says the
 * domain changed — any lifecycle event, a device added or removed, a block
 * job (a copy's pivot, a commit), a tray change — straight from the events
 * thread, before the event even reaches the main loop.  Changes libvirt
 * has no event for (an external snapshot, a CD-ROM's media changed in
 * place) are seen once the entry is older than DISK_INDEX_MAX_AGE_USEC.
 * While libvirt's events do not reach the daemon (before the first
 * connection of the events thread, after a lost one) nothing is kept and
 * every check reads every definition, as before. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_INDEX_MAX_AGE_USEC (2ULL * 1000000ULL)

typedef struct DiskIndex DiskIndex;

int disk_index_new(DiskIndex **ret);
DiskIndex *disk_index_free(DiskIndex *x);

/* Events flow (true) or may be missed (false: everything forgotten, and
 * nothing kept until they flow again).  Any thread. */
void disk_index_set_watched(DiskIndex *x, bool watched);
/* Forgets what is known of the domain with that UUID, NULL: of all.  Any
 * thread. */
void disk_index_forget(DiskIndex *x, const char *uuid);

typedef int (*disk_index_visit_t)(const char *path, const char *target, void *userdata);

/* Calls fn for each path the definition (uuid; inactive: the persistent
 * configuration) was last seen to use, under the index's lock (fn must not
 * call back into the index); stops at fn's first negative return and
 * returns it.  -ENOENT if nothing fresh is known: read the XML then, and
 * disk_index_store() what it says.  *ret_stamp is what the store needs. */
int disk_index_visit(DiskIndex *x, const char *uuid, bool inactive, disk_index_visit_t fn, void *userdata,
                     uint64_t *ret_stamp);

/* A definition's paths as just read (paths[i] used by targets[i]; n may be
 * 0), kept unless the domain was forgotten after stamp was handed out (the
 * XML may predate the change).  Copies what it keeps; -ENOMEM. */
int disk_index_store(DiskIndex *x, const char *uuid, bool inactive, uint64_t stamp, char *const *paths,
                     char *const *targets, size_t n);
