/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What keeps a volume readable by its guest besides the disk itself: the
 * libvirt secret (native mode) or the dm-crypt mapping (cryptsetup mode).
 * Detach and the cleanups after a guest stopped or let go release it the
 * same way, here. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

#include "virt.h"

typedef struct VolumeBacking {
        char *domain_uuid;
        char *target;
        char *secret_uuid;   /* native: the secret the disk's <encryption> names; else NULL */
        char *mapper_device; /* cryptsetup: /dev/mapper/luksvol-…; native with a header shim: its device */
} VolumeBacking;

void volume_backing_done(VolumeBacking *b);
/* Copies of the four fields; -ENOMEM. */
int volume_backing_set(VolumeBacking *b, const char *domain_uuid, const char *target, const char *secret_uuid,
                       const char *mapper_device);

/* Worker threads only.  Undefines the secret if its usage id is the one
 * this service gives (domain, target), closes the mapping if its name is
 * exactly the one this service gives (domain, target); anything else is
 * left alone (logged).  Gone already counts as done. */
int volume_backing_release(Virt *virt, const VolumeBacking *b, sd_bus_error *error);
