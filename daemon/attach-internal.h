/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by attach.c (the flow: parse, resolve, authorize, inspect, act,
 * register) and attach-plug.c (what plugging a disk takes in each mode,
 * and undoing it). */

#include <libvirt/libvirt.h>

#include "attach-request.h"
#include "call.h"
#include "luks-shim.h"
#include "luks.h"
#include "mode.h"
#include "options.h"
#include "passphrase.h"
#include "volume.h"

typedef struct AttachOp {
        Call call;

        AttachOptions options;
        AttachRequest *request; /* request-id: progress, cancellation */
        Passphrase *passphrase;
        bool claimed;
        bool guess_counted; /* a guess reserved in Manager.key_guesses */
        dev_t claim_dev;
        ino_t claim_ino;
        uint64_t event_seq; /* Manager.event_seq when the work began */

        /* inspect */
        LuksSource *source;
        LuksInfo luks;
        VolumeMode mode;
        NativeHeader header;                           /* native: the volume's own header, or a shim */
        char ceph_secret_uuid[VIR_UUID_STRING_BUFLEN]; /* an RBD image: the libvirt 'ceph' secret */

        /* act */
        int slot;
        uint64_t unlock_ms;
        LuksShim shim; /* native with a shim: the one-time header, until plugged */
        char *target;
        Volume *volume;
        /* The attach failed but its disk could not be unplugged: the
         * volume is registered all the same, "detaching", so that it is
         * seen and the unplug retried (manager-reconcile.c). */
        bool keep_volume;
        bool fault_unplug_fails; /* test hook: the undo's unplug "fails" */

        int r;
        sd_bus_error error;
} AttachOp;

/* Worker.  The secret (or mapping, or shim device), the hot-plug, and the
 * check of what libvirt and QEMU made of it; on failure everything made
 * is undone (or the volume kept "detaching" if its disk cannot be
 * unplugged: op->keep_volume).  op->volume's mode-specific fields are
 * filled in on success. */
/* Worker: the inspection of an RBD source (attach-rbd.c), instead of a
 * file's; fills op->source, op->luks, op->mode, op->ceph_secret_uuid. */
int attach_inspect_rbd(AttachOp *op);

int attach_native(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target);
int attach_cryptsetup(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target);
