/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Staging for an incoming live migration (stage.c): StageIncoming defines,
 * on the destination host, the ephemeral private secret a native volume's
 * disk names, under the UUID and usage the source host's service gave it,
 * so that the destination libvirt finds it when it prepares the incoming
 * QEMU; for a cryptsetup-mode volume it opens the dm-crypt mapping, for a
 * header-shim volume the shim device and its secret.  What is staged waits
 * for its domain at most a timeout; when the domain has arrived, the
 * rescan that follows adopts the disk as a normal volume object and the
 * staged entry goes (its secret and device are the volume's now); when the
 * timeout passes first, or the incoming domain stops before it was adopted
 * (a failed migration), the secret is undefined and the device removed. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "volume.h"

typedef struct Manager Manager;

#define ACTION_STAGE_INCOMING "org.example.luksvolume1.stage-incoming"

int method_stage_incoming(sd_bus_message *message, void *userdata, sd_bus_error *error);

/* Worker threads, under the exclusive ops lock (the orphan cleanup):
 * prepends to *list a Volume per staged entry, carrying only its secret's
 * UUID and its device, so that the cleanup keeps them.  False if memory ran out (then no cleanup). */
bool stage_keep_secrets(Manager *m, Volume **list);

/* Event loop hooks (manager-events.c). */
/* After a scan's reconciliation: staged entries whose secret a registered
 * volume of their domain now names are adopted, and go. */
void stage_after_scan(Manager *m);
/* The domain arrived here as an incoming migration. */
void stage_domain_arrived(Manager *m, const char *domain_uuid);
/* The domain stopped here: a staged entry it arrived for (the migration
 * failed after all) is torn down now. */
void stage_domain_gone(Manager *m, const char *domain_uuid);

/* At exit: the entries go; their secrets are left to the next start's
 * orphan cleanup (undefining them needs libvirt, i.e. a worker). */
void stage_free_all(Manager *m);
