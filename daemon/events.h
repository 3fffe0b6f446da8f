/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libvirt's events, and the connection's own life.  libvirt delivers
 * events through its own event loop implementation; a dedicated thread
 * runs it, holds one connection with domain-lifecycle and device-removed
 * callbacks, reconnects with backoff when libvirtd goes away, and hands
 * every event to the sd-event loop through an eventfd. */

#include <stdbool.h>

#include <systemd/sd-event.h>

typedef enum VirtEventKind {
        VIRT_EVENT_DOMAIN_STOPPED,        /* shut off, crashed, destroyed, undefined */
        VIRT_EVENT_DOMAIN_SAVED,          /* stopped into a saved state (save, managedsave) */
        VIRT_EVENT_DOMAIN_RESTORED,       /* started from a saved state */
        VIRT_EVENT_DOMAIN_MIGRATED_OUT,   /* stopped: it runs on another host now */
        VIRT_EVENT_DOMAIN_MIGRATED_IN,    /* started: it came from another host */
        VIRT_EVENT_DEVICE_REMOVED,        /* QEMU let go of a device */
        VIRT_EVENT_DEVICE_REMOVAL_FAILED, /* the guest refused to let go of a device */
        VIRT_EVENT_CONNECTED,             /* (re)connected: state may have changed meanwhile */
        VIRT_EVENT_DISCONNECTED,
} VirtEventKind;

typedef struct VirtEvent {
        VirtEventKind kind;
        char domain_uuid[37];
        char *device_alias; /* DEVICE_REMOVED, DEVICE_REMOVAL_FAILED */
        /* CONNECTED: the connection the start-up scan waited for (the
         * first, libvirt not found unreachable before it, and not waited
         * for in vain: virt_events_wait_settled()). */
        bool first;
        struct VirtEvent *next;
} VirtEvent;

typedef void (*virt_event_handler_t)(const VirtEvent *event, void *userdata);

typedef struct VirtEvents VirtEvents;

/* Must be called before any libvirt connection is opened in the process
 * (connections opened later use the loop for keepalive and close
 * detection). */
int virt_events_init(void);

/* disks (may be NULL): told on the events thread of every event that may
 * change a domain's disks, and whether events flow at all (disk-index.h). */
typedef struct DiskIndex DiskIndex;
int virt_events_start(sd_event *event, const char *uri, DiskIndex *disks, virt_event_handler_t handler, void *userdata,
                      VirtEvents **ret);
VirtEvents *virt_events_stop(VirtEvents *e);

/* Any thread: waits until the first connection's events are subscribed or
 * libvirt was found unreachable (true), at most timeout_ms (false). */
bool virt_events_wait_settled(VirtEvents *e, unsigned timeout_ms);
