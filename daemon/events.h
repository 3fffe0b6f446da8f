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
        VIRT_EVENT_DOMAIN_STOPPED,   /* shut off, crashed, destroyed, undefined */
        VIRT_EVENT_DEVICE_REMOVED,   /* QEMU let go of a device */
        VIRT_EVENT_CONNECTED,        /* (re)connected: state may have changed meanwhile */
        VIRT_EVENT_DISCONNECTED,
} VirtEventKind;

typedef struct VirtEvent {
        VirtEventKind kind;
        char domain_uuid[37];
        char *device_alias;          /* DEVICE_REMOVED only */
        bool first;                  /* CONNECTED: the first connection of this process */
        struct VirtEvent *next;
} VirtEvent;

typedef void (*virt_event_handler_t)(const VirtEvent *event, void *userdata);

typedef struct VirtEvents VirtEvents;

/* Must be called before any libvirt connection is opened in the process
 * (connections opened later use the loop for keepalive and close
 * detection). */
int virt_events_init(void);

/* Lets a worker thread wait for a device-removed event without going
 * through the sd-event loop: the events thread signals it directly.
 * Watch before asking for the removal, so the event cannot be missed. */
typedef struct RemovalWatch RemovalWatch;
RemovalWatch *virt_events_watch_removal(VirtEvents *e, const char *domain_uuid, const char *alias);
/* 1 once the removal was seen, 0 after timeout_ms, -ECANCELED once the
 * daemon is shutting down (virt_events_cancel_waits). */
int virt_events_wait_removal(VirtEvents *e, RemovalWatch *w, unsigned timeout_ms);
/* Wakes every waiter for good: called first at shutdown, so worker jobs
 * waiting for a guest return promptly and the worker can be joined before
 * this object is freed. */
void virt_events_cancel_waits(VirtEvents *e);
void virt_events_unwatch_removal(VirtEvents *e, RemovalWatch *w);

int virt_events_start(sd_event *event, const char *uri, virt_event_handler_t handler, void *userdata,
                      VirtEvents **ret);
VirtEvents *virt_events_stop(VirtEvents *e);
