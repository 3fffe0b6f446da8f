/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What stage.c (the call, the staged entries' life) shares with
 * stage-job.c (the call's worker part: the checks, the device and the
 * secret made on this host). */

#include <stdbool.h>

#include "call.h"
#include "luks-shim.h"
#include "options.h"
#include "passphrase.h"
#include "virt.h"

typedef struct Manager Manager;

struct Staged {
        Manager *manager;
        Staged *next;
        char domain_uuid[VIR_UUID_STRING_BUFLEN];
        char secret_uuid[VIR_UUID_STRING_BUFLEN]; /* "" in cryptsetup mode */
        char *target;
        char *usage;
        char *source;
        /* The device-mapper device made here (cryptsetup mode's mapping or
         * the header shim), by name; NULL for the volume's own header. */
        char *device;
        bool shim;
        bool defined;   /* the secret and device exist (the staging job succeeded) */
        bool arrived;   /* its domain arrived here as an incoming migration */
        bool releasing; /* a release job is at work */
        sd_event_source *timer;
};

typedef struct StageOp {
        Call call;

        char domain_uuid[VIR_UUID_STRING_BUFLEN];
        StageOptions options;
        char *usage;
        Passphrase *passphrase;
        bool guess_counted;
        Staged *staged; /* registered, not yet defined */

        int slot;
        LuksShim shim;
        sd_bus_error error;
        int r;
} StageOp;

/* Worker: the staging job proper; op->r and op->error say how it went.
 * On failure nothing it made is left. */
void stage_job(Call *c);
