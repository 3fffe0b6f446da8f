/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "disk-index.h"
#include "events.h"
#include "fault.h"
#include "util.h"

struct VirtEvents {
        char *uri;
        virt_event_handler_t handler;
        void *userdata;
        DiskIndex *disks; /* told of changes on this thread, at once */

        sd_event_source *source;
        int efd;

        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock;
        pthread_cond_t settled_cond;
        VirtEvent *head, *tail; /* for the sd-event loop */
        bool stopping;
        /* The first connection is subscribed, or libvirt was found
         * unreachable (virt_events_wait_settled()). */
        bool settled;
        bool wait_gave_up;
        int wake_timer; /* a libvirt timeout used to wake the loop */

        /* events thread only */
        virConnectPtr conn;
        int cb_lifecycle, cb_removed, cb_removal_failed;
        /* Only for the disk index: these change what a domain's disks use. */
        int cb_added, cb_block_job, cb_tray;
        bool closed;
        bool ever_connected;
        bool told_unreachable;
};

int virt_events_init(void) {
        return virEventRegisterDefaultImpl() < 0 ? -EIO : 0;
}

static void post(VirtEvents *e, VirtEvent *ev) {
        uint64_t one = 1;

        pthread_mutex_lock(&e->lock);
        ev->next = NULL;
        if (e->tail)
                e->tail->next = ev;
        else
                e->head = ev;
        e->tail = ev;
        pthread_mutex_unlock(&e->lock);
        (void) !write(e->efd, &one, sizeof one);
}

static void post_simple(VirtEvents *e, VirtEventKind kind, virDomainPtr dom, const char *alias) {
        VirtEvent *ev = calloc(1, sizeof *ev);

        if (!ev)
                return log_oom(), (void) 0;
        ev->kind = kind;
        if (dom && virDomainGetUUIDString(dom, ev->domain_uuid) < 0)
                ev->domain_uuid[0] = '\0';
        if (alias)
                ev->device_alias = strdup(alias);
        post(e, ev);
}

/* Straight from the events thread: an attach's in-use check running now
 * must not trust what the index held of this domain. */
static void disks_changed(VirtEvents *e, virDomainPtr dom) {
        char uuid[VIR_UUID_STRING_BUFLEN];

        if (!e->disks)
                return;
        disk_index_forget(e->disks, dom && virDomainGetUUIDString(dom, uuid) >= 0 ? uuid : NULL);
}

static void on_device_added(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        disks_changed(opaque, dom);
}

static void on_block_job(virConnectPtr conn, virDomainPtr dom, const char *disk, int type, int status, void *opaque) {
        disks_changed(opaque, dom);
}

static void on_tray_change(virConnectPtr conn, virDomainPtr dom, const char *alias, int reason, void *opaque) {
        disks_changed(opaque, dom);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        /* Defined, started, stopped, undefined…: any of them may change
         * what the domain's definitions use. */
        disks_changed(opaque, dom);

        /* A guest saved to disk (virsh save, managedsave, libvirt-guests at
         * host shutdown) comes back with its disks as they were: its
         * volumes' secrets or mappings must outlive the stop.  A guest that
         * migrated away runs elsewhere: here it is gone. */
        if (event == VIR_DOMAIN_EVENT_STOPPED && detail == VIR_DOMAIN_EVENT_STOPPED_SAVED) {
                /* Test-only: the event reaches the manager late, as it can
                 * on a loaded host. */
                if (fault_trigger("events:late-saved"))
                        (void) usleep(4 * 1000 * 1000);
                post_simple(opaque, VIRT_EVENT_DOMAIN_SAVED, dom, NULL);
        } else if (event == VIR_DOMAIN_EVENT_STOPPED && detail == VIR_DOMAIN_EVENT_STOPPED_MIGRATED)
                post_simple(opaque, VIRT_EVENT_DOMAIN_MIGRATED_OUT, dom, NULL);
        else if (event == VIR_DOMAIN_EVENT_STARTED && detail == VIR_DOMAIN_EVENT_STARTED_RESTORED)
                post_simple(opaque, VIRT_EVENT_DOMAIN_RESTORED, dom, NULL);
        else if (event == VIR_DOMAIN_EVENT_STARTED && detail == VIR_DOMAIN_EVENT_STARTED_MIGRATED)
                post_simple(opaque, VIRT_EVENT_DOMAIN_MIGRATED_IN, dom, NULL);
        /* Stopped covers shutdown, destroy, crash, failed migration… */
        else if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_UNDEFINED ||
                 (event == VIR_DOMAIN_EVENT_CRASHED && detail != VIR_DOMAIN_EVENT_CRASHED_PANICKED))
                post_simple(opaque, VIRT_EVENT_DOMAIN_STOPPED, dom, NULL);
        return 0;
}

static void on_device_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        post_simple(opaque, VIRT_EVENT_DEVICE_REMOVAL_FAILED, dom, alias);
}

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        disks_changed(opaque, dom);
        /* Test-only: the event reaches the manager after the disk's target
         * has been plugged again, as it can on a loaded host. */
        if (fault_trigger("events:late-removed"))
                (void) usleep(4 * 1000 * 1000);
        /* Test-only: lost, as libvirt 9.0 sometimes loses it. */
        if (fault_trigger("events:drop-removed"))
                return;
        post_simple(opaque, VIRT_EVENT_DEVICE_REMOVED, dom, alias);
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        VirtEvents *e = opaque;
        e->closed = true;
}

static void on_wake(int timer, void *opaque) {
        /* Nothing: running at all made virEventRunDefaultImpl return. */
}

static void disconnect(VirtEvents *e) {
        if (!e->conn)
                return;
        /* Events may be missed from now on: nothing kept is trusted. */
        if (e->disks)
                disk_index_set_watched(e->disks, false);
        if (e->cb_lifecycle >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_lifecycle);
        if (e->cb_removed >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_removed);
        if (e->cb_removal_failed >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_removal_failed);
        if (e->cb_added >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_added);
        if (e->cb_block_job >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_block_job);
        if (e->cb_tray >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_tray);
        (void) virConnectUnregisterCloseCallback(e->conn, on_close);
        virConnectClose(e->conn);
        e->conn = NULL;
        e->cb_lifecycle = e->cb_removed = e->cb_removal_failed = -1;
        e->cb_added = e->cb_block_job = e->cb_tray = -1;
}

static int try_connect(VirtEvents *e) {
        e->conn = virConnectOpen(e->uri);
        if (!e->conn)
                return -ECONNREFUSED;
        e->closed = false;

        /* Keepalive notices a libvirtd that hangs, not only one that exits. */
        (void) virConnectSetKeepAlive(e->conn, 5, 3);
        if (virConnectRegisterCloseCallback(e->conn, on_close, e, NULL) < 0)
                goto fail;
        e->cb_lifecycle = virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                           VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), e, NULL);
        if (e->cb_lifecycle < 0)
                goto fail;
        e->cb_removed = virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                                         VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), e, NULL);
        if (e->cb_removed < 0)
                goto fail;
        /* libvirt ≥ 4.4.0, as the rest of the native path. */
        e->cb_removal_failed =
                virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                                 VIR_DOMAIN_EVENT_CALLBACK(on_device_removal_failed), e, NULL);
        if (e->cb_removal_failed < 0)
                goto fail;
        e->cb_added = virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
                                                       VIR_DOMAIN_EVENT_CALLBACK(on_device_added), e, NULL);
        e->cb_block_job = virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                                                           VIR_DOMAIN_EVENT_CALLBACK(on_block_job), e, NULL);
        e->cb_tray = virConnectDomainEventRegisterAny(e->conn, NULL, VIR_DOMAIN_EVENT_ID_TRAY_CHANGE,
                                                      VIR_DOMAIN_EVENT_CALLBACK(on_tray_change), e, NULL);
        /* Without all three the index would miss changes: it stays off
         * (every check reads every definition), nothing else depends on it. */
        if (e->disks && e->cb_added >= 0 && e->cb_block_job >= 0 && e->cb_tray >= 0)
                disk_index_set_watched(e->disks, true);
        return 0;

fail:
        log_warning("Cannot subscribe to libvirt events: %s", strempty(virGetLastErrorMessage()));
        disconnect(e);
        return -EIO;
}

/* Returns whether a waiter can have seen it (none gave up before). */
static bool settle(VirtEvents *e) {
        bool seen;

        pthread_mutex_lock(&e->lock);
        e->settled = true;
        seen = !e->wait_gave_up;
        pthread_cond_broadcast(&e->settled_cond);
        pthread_mutex_unlock(&e->lock);
        return seen;
}

bool virt_events_wait_settled(VirtEvents *e, unsigned timeout_ms) {
        struct timespec deadline;
        bool settled;

        (void) clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000U;
        deadline.tv_nsec += (long) (timeout_ms % 1000U) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&e->lock);
        while (!e->settled && !e->stopping)
                if (pthread_cond_timedwait(&e->settled_cond, &e->lock, &deadline) == ETIMEDOUT)
                        break;
        settled = e->settled;
        if (!settled)
                e->wait_gave_up = true;
        pthread_mutex_unlock(&e->lock);
        return settled;
}

static bool stopping(VirtEvents *e) {
        pthread_mutex_lock(&e->lock);
        bool s = e->stopping;
        pthread_mutex_unlock(&e->lock);
        return s;
}

static void *events_thread(void *p) {
        VirtEvents *e = p;
        unsigned backoff_ms = 250;

        while (!stopping(e)) {
                if (!e->conn) {
                        if (try_connect(e) < 0) {
                                /* The daemon waits for our first connection
                                 * before its start-up scan; say that there
                                 * is none to wait for. */
                                if (!e->ever_connected && !e->told_unreachable) {
                                        e->told_unreachable = true;
                                        (void) settle(e);
                                        post_simple(e, VIRT_EVENT_DISCONNECTED, NULL, NULL);
                                }
                                /* Wait out the outage without spinning; calls
                                 * meanwhile fail fast in their own threads. */
                                for (unsigned waited = 0; waited < backoff_ms && !stopping(e); waited += 50)
                                        usleep(50 * 1000);
                                backoff_ms = backoff_ms * 2 > 8000 ? 8000 : backoff_ms * 2;
                                continue;
                        }
                        backoff_ms = 250;
                        /* Settled before the event is posted: a start-up scan
                         * that waited for this reads after the subscription. */
                        bool seen = settle(e);
                        VirtEvent *ev = calloc(1, sizeof *ev);
                        if (ev) {
                                ev->kind = VIRT_EVENT_CONNECTED;
                                ev->first = !e->ever_connected && !e->told_unreachable && seen;
                                post(e, ev);
                        }
                        e->ever_connected = true;
                }

                if (virEventRunDefaultImpl() < 0)
                        usleep(50 * 1000);

                if (e->closed || (e->conn && virConnectIsAlive(e->conn) != 1)) {
                        log_warning("Lost the connection to libvirt; reconnecting.");
                        disconnect(e);
                        post_simple(e, VIRT_EVENT_DISCONNECTED, NULL, NULL);
                }
        }

        disconnect(e);
        return NULL;
}

static int on_efd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VirtEvents *e = userdata;
        uint64_t n;

        (void) !read(fd, &n, sizeof n);
        for (;;) {
                pthread_mutex_lock(&e->lock);
                VirtEvent *ev = e->head;
                if (ev) {
                        e->head = ev->next;
                        if (!e->head)
                                e->tail = NULL;
                }
                pthread_mutex_unlock(&e->lock);
                if (!ev)
                        break;
                e->handler(ev, e->userdata);
                free(ev->device_alias);
                free(ev);
        }
        return 0;
}

int virt_events_start(sd_event *event, const char *uri, DiskIndex *disks, virt_event_handler_t handler, void *userdata,
                      VirtEvents **ret) {
        VirtEvents *e;
        int r;

        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->uri = strdup(uri);
        e->handler = handler;
        e->userdata = userdata;
        e->disks = disks;
        e->cb_lifecycle = e->cb_removed = e->cb_removal_failed = -1;
        e->cb_added = e->cb_block_job = e->cb_tray = -1;
        e->wake_timer = -1;
        pthread_mutex_init(&e->lock, NULL);
        {
                pthread_condattr_t attr;
                pthread_condattr_init(&attr);
                pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
                pthread_cond_init(&e->settled_cond, &attr);
                pthread_condattr_destroy(&attr);
        }
        e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!e->uri || e->efd < 0) {
                virt_events_stop(e);
                return -ENOMEM;
        }

        r = sd_event_add_io(event, &e->source, e->efd, EPOLLIN, on_efd, e);
        if (r < 0) {
                virt_events_stop(e);
                return r;
        }

        r = -pthread_create(&e->thread, NULL, events_thread, e);
        if (r < 0) {
                virt_events_stop(e);
                return r;
        }
        e->thread_started = true;

        *ret = e;
        return 0;
}

VirtEvents *virt_events_stop(VirtEvents *e) {
        if (!e)
                return NULL;

        if (e->thread_started) {
                pthread_mutex_lock(&e->lock);
                e->stopping = true;
                pthread_cond_broadcast(&e->settled_cond);
                pthread_mutex_unlock(&e->lock);
                /* A zero timeout makes the libvirt loop iterate once, so
                 * the thread sees the flag. */
                e->wake_timer = virEventAddTimeout(0, on_wake, NULL, NULL);
                pthread_join(e->thread, NULL);
                if (e->wake_timer >= 0)
                        virEventRemoveTimeout(e->wake_timer);
        }

        for (VirtEvent *ev = e->head, *n; ev; ev = n) {
                n = ev->next;
                free(ev->device_alias);
                free(ev);
        }
        sd_event_source_disable_unref(e->source);
        if (e->efd >= 0)
                close(e->efd);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->settled_cond);
        free(e->uri);
        free(e);
        return NULL;
}
