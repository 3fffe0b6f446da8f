/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <time.h>

#include "events.h"
#include "util.h"

struct RemovalWatch {
        char domain_uuid[37];
        char *alias;
        bool removed;
        RemovalWatch *next;
};

struct VirtEvents {
        char *uri;
        virt_event_handler_t handler;
        void *userdata;

        sd_event_source *source;
        int efd;

        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock;
        VirtEvent *head, *tail;    /* for the sd-event loop */
        bool stopping;
        int wake_timer;            /* a libvirt timeout used to wake the loop */
        RemovalWatch *watches;     /* under lock */
        pthread_cond_t removal_cond;
        bool waits_cancelled;      /* under lock */

        /* events thread only */
        virConnectPtr conn;
        int cb_lifecycle, cb_removed;
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

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        /* Stopped covers shutdown, destroy, crash, failed migration… */
        if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_UNDEFINED ||
            (event == VIR_DOMAIN_EVENT_CRASHED && detail != VIR_DOMAIN_EVENT_CRASHED_PANICKED))
                post_simple(opaque, VIRT_EVENT_DOMAIN_STOPPED, dom, NULL);
        return 0;
}

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        VirtEvents *e = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];

        if (virDomainGetUUIDString(dom, uuid) >= 0) {
                pthread_mutex_lock(&e->lock);
                for (RemovalWatch *w = e->watches; w; w = w->next)
                        if (streq(w->domain_uuid, uuid) && streq_ptr(w->alias, alias))
                                w->removed = true;
                pthread_cond_broadcast(&e->removal_cond);
                pthread_mutex_unlock(&e->lock);
        }
        post_simple(e, VIRT_EVENT_DEVICE_REMOVED, dom, alias);
}

RemovalWatch *virt_events_watch_removal(VirtEvents *e, const char *domain_uuid, const char *alias) {
        RemovalWatch *w;

        if (!e)
                return NULL;
        w = calloc(1, sizeof *w);
        if (!w)
                return NULL;
        snprintf(w->domain_uuid, sizeof w->domain_uuid, "%s", domain_uuid);
        w->alias = strdup(alias);
        if (!w->alias) {
                free(w);
                return NULL;
        }
        pthread_mutex_lock(&e->lock);
        w->next = e->watches;
        e->watches = w;
        pthread_mutex_unlock(&e->lock);
        return w;
}

int virt_events_wait_removal(VirtEvents *e, RemovalWatch *w, unsigned timeout_ms) {
        struct timespec deadline;
        int r;

        if (!e || !w) {
                usleep(timeout_ms * 1000U);
                return 0;
        }
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&e->lock);
        while (!w->removed && !e->waits_cancelled)
                if (pthread_cond_timedwait(&e->removal_cond, &e->lock, &deadline) == ETIMEDOUT)
                        break;
        r = e->waits_cancelled ? -ECANCELED : w->removed ? 1 : 0;
        pthread_mutex_unlock(&e->lock);
        return r;
}

void virt_events_cancel_waits(VirtEvents *e) {
        if (!e)
                return;
        pthread_mutex_lock(&e->lock);
        e->waits_cancelled = true;
        pthread_cond_broadcast(&e->removal_cond);
        pthread_mutex_unlock(&e->lock);
}

void virt_events_unwatch_removal(VirtEvents *e, RemovalWatch *w) {
        if (!e || !w)
                return;
        pthread_mutex_lock(&e->lock);
        for (RemovalWatch **pp = &e->watches; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        pthread_mutex_unlock(&e->lock);
        free(w->alias);
        free(w);
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
        if (e->cb_lifecycle >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_lifecycle);
        if (e->cb_removed >= 0)
                (void) virConnectDomainEventDeregisterAny(e->conn, e->cb_removed);
        (void) virConnectUnregisterCloseCallback(e->conn, on_close);
        virConnectClose(e->conn);
        e->conn = NULL;
        e->cb_lifecycle = e->cb_removed = -1;
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
        return 0;

fail:
        log_warning("Cannot subscribe to libvirt events: %s", strempty(virGetLastErrorMessage()));
        disconnect(e);
        return -EIO;
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
                        VirtEvent *ev = calloc(1, sizeof *ev);
                        if (ev) {
                                ev->kind = VIRT_EVENT_CONNECTED;
                                ev->first = !e->ever_connected;
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

int virt_events_start(sd_event *event, const char *uri, virt_event_handler_t handler, void *userdata,
                      VirtEvents **ret) {
        VirtEvents *e;
        int r;

        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->uri = strdup(uri);
        e->handler = handler;
        e->userdata = userdata;
        e->cb_lifecycle = e->cb_removed = -1;
        e->wake_timer = -1;
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->removal_cond, NULL);
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
        pthread_cond_destroy(&e->removal_cond);
        pthread_mutex_destroy(&e->lock);
        free(e->uri);
        free(e);
        return NULL;
}
