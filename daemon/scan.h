/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Rebuilding the registry from the truth: libvirt's running domains and
 * their live XML.  Runs on a worker thread; returns detached Volumes. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "virt.h"
#include "volume.h"

/* *ret is a singly linked list through Volume.next (may be NULL).
 * *ret_complete is false if some running domain could not be read: then
 * the list is not the whole truth, and nothing may be concluded from what
 * is missing from it (no orphan cleanup, no object removal). */
int scan_volumes(Virt *v, Volume **ret, bool *ret_complete, sd_bus_error *error);

/* Fills in what the file system and the header say about v->source
 * (identity; for native volumes LUKS version and UUID, and for block
 * devices the exclusive hold), each access under the deadline; failures
 * leave fields unset.  Not for the event loop. */
void volume_fill_source_facts(Volume *v, unsigned timeout_ms);

/* The same for every volume of a list (through Volume.next), several at a
 * time: a rescan after a crash must not take the sum of all of them. */
#define SCAN_FACT_THREADS   8U
/* Domains read at once by a scan. */
#define SCAN_DOMAIN_THREADS 8U
void volume_fill_source_facts_all(Volume *list, unsigned timeout_ms);

/* Undefines secrets in our usage namespace and closes mappings with our
 * prefix that no volume in keep (a list through Volume.next) uses: what a
 * crash between two steps of an attach or detach can leave.  The caller
 * guarantees no attach or detach is running (Manager.ops_lock). */
void scan_cleanup_orphans(Virt *v, const Volume *keep);
