/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The model of one attached volume.  Owned by the Manager's registry and
 * touched on the event loop only; worker threads build a detached Volume
 * and hand it over to the loop for registration. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mode.h"

typedef struct Manager Manager;

typedef enum VolumeState {
        VOLUME_STATE_ATTACHED,
        VOLUME_STATE_DETACHING,
        VOLUME_STATE_SAVED, /* its domain is saved (save, managedsave); back on restore */
        _VOLUME_STATE_MAX,
} VolumeState;

/* An operation waiting on the event loop for what happens to a volume's
 * disk (a Detach waiting for the guest): libvirt's events for it are handed
 * here instead of starting a cleanup of their own. */
typedef struct VolumeWaiter VolumeWaiter;
struct VolumeWaiter {
        void (*removed)(VolumeWaiter *w);     /* QEMU let go of the device */
        void (*refused)(VolumeWaiter *w);     /* the guest refused to */
        void (*domain_gone)(VolumeWaiter *w); /* the domain stopped, or left for another host */
        void (*saved)(VolumeWaiter *w);       /* the domain was saved with the disk in it */
};

typedef struct Volume {
        Manager *manager; /* NULL until registered */
        struct Volume *next;

        char *path;   /* object path, from (domain_uuid, target) */
        char *domain; /* domain name */
        char *domain_uuid;
        char *source; /* canonical path, or "rbd:POOL/IMAGE" */
        bool rbd;     /* since 0.3: an RBD image, QEMU's librbd opens it (source is not a path) */
        char *target;
        char *bus;
        VolumeMode mode;
        char *secret_uuid;   /* native: the libvirt secret; else NULL */
        char *mapper_device; /* cryptsetup: /dev/mapper/…; else NULL */
        /* native: the header QEMU was given (the volume's own, or a
         * one-time LUKS1 header shim in front of its payload) and the
         * linear device that carries the shim (/dev/mapper/luksvol-shim-…;
         * else NULL). */
        NativeHeader native_header;
        char *shim_device;
        unsigned luks_version;
        char *luks_uuid;
        bool read_only;
        VolumeState state;
        char *serial; /* the disk's <serial>, the guest's /dev/disk/by-id name; NULL if none */
        bool discard; /* cryptsetup mode: discards pass to the image (allow_discards, discard='unmap') */

        /* What the guest sees: plaintext bytes (libvirt's capacity of the
         * disk, else the header's arithmetic); 0 if unknown.  Changes with
         * Resize (PropertiesChanged). */
        uint64_t size;
        uint64_t payload_offset; /* bytes of LUKS metadata before the payload; 0 if unknown */
        /* Who attached it and when: known to the daemon that did it only (a
         * volume the start-up scan rebuilt has VOLUME_UID_UNKNOWN and 0). */
        uid_t attached_by_uid;
        uint64_t attach_usec; /* CLOCK_REALTIME, µs */

        dev_t source_dev; /* identity of the source, for AlreadyAttached */
        ino_t source_ino;
        bool source_identity_known;

        /* Set when registered, never reused: a completion that carries the
         * generation it started on cannot touch a newer volume that took
         * the same object path meanwhile. */
        uint64_t generation;
        /* A native block device source, held open O_EXCL for as long as it
         * is attached, so the host cannot mount it, swap on it or stack
         * dm/md/LVM on it while the guest writes it; -1 otherwise. */
        int hold_fd;

        bool operation_pending;  /* a Detach or cleanup is running for it */
        bool resize_pending;     /* a Resize is running for it */
        uint64_t state_seq;      /* Manager.state_seq when an event last set State */
        VolumeWaiter *waiter;    /* a Detach waiting for the guest; NULL otherwise */
        bool rechecking;         /* a look at the live XML is on its way (reconciliation) */
        const char *recheck_why; /* an event asked for a look while one ran: look again (static text) */
        bool unplug_retry;       /* "detaching" after an attach whose undo could not unplug: ask again */
        uint64_t last_recheck_usec;
} Volume;

/* AttachedByUID of a volume whose attaching caller is not known (rebuilt
 * from libvirt by a later daemon): (uid_t) -1, 4294967295 on the bus. */
#define VOLUME_UID_UNKNOWN ((uid_t) -1)

const char *volume_state_to_string(VolumeState s);

/* The plaintext a guest sees of a volume on a device_size-byte source
 * whose payload starts at payload_offset, in whole 512-byte sectors; 0 if
 * that makes no sense. */
uint64_t volume_size_from_header(uint64_t device_size, uint64_t payload_offset);

/* A Volume not yet in any registry; path is derived here. */
int volume_new(const char *domain, const char *domain_uuid, const char *target, Volume **ret);
Volume *volume_free(Volume *v);

static inline void volume_freep(Volume **v) {
        if (*v)
                volume_free(*v);
}
