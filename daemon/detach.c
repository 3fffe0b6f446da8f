/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Detach: parse → authorize → request (worker: the live XML decides —
 * <encryption> → native: the secret it names; none → cryptsetup: our
 * mapping — and the guest is asked to let go) → wait, on the event loop
 * (libvirt's device-removed and device-removal-failed events, a periodic
 * look at the live XML, the caller's timeout) → release (worker: confirm
 * the disk is gone, then release its backing) → reply.
 *
 * The wait holds no worker thread: a hundred guests that never let go
 * cannot starve Attach. */

#include <libvirt/libvirt.h>

#include "backing.h"
#include "disk-xml.h"
#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "luks-shim.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

/* How often a waiting Detach looks at the live XML itself: covers an event
 * lost to a reconnect (and libvirt 9.0 sometimes dropping a disk without
 * one). */
#define DETACH_POLL_USEC    (1000 * 1000ULL)
#define TIMER_ACCURACY_USEC (1000ULL)

typedef enum DetachStep {
        DETACH_REQUESTING, /* the request job is running */
        DETACH_WAITING,    /* asked; waiting for the guest */
        DETACH_CHECKING,   /* a look at the live XML (and maybe the release) is running */
        DETACH_DONE,
} DetachStep;

typedef struct DetachOp {
        Call call;
        VolumeWaiter waiter; /* registered on the volume while we wait */

        char *path;
        uint64_t generation; /* of the volume it was asked for */
        DetachOptions options;
        DetachStep step;
        bool timed_out;   /* the caller's timeout passed */
        bool event_seen;  /* device-removed or domain gone arrived */
        bool domain_gone; /* the domain stopped or left (set on the loop only) */
        sd_event_source *timeout_timer, *poll_timer;

        /* copies for the worker: it must not read the Volume */
        VolumeBacking backing;
        /* The domain, as the request job found it running: the release
         * job's look at the live XML is then one call to libvirt, not
         * three (look-up, running?, XML).  Worker jobs only, one at a time. */
        virDomainPtr dom;
        char *source;
        char *alias;

        /* job results */
        bool gone; /* the disk is not in the guest any more */
        int r;
        sd_bus_error error;
} DetachOp;

static Volume *detach_volume(DetachOp *op) {
        return manager_find_volume(op->call.manager, op->path, op->generation);
}

static void detach_unregister(DetachOp *op) {
        Volume *v = detach_volume(op);

        if (v && v->waiter == &op->waiter) {
                v->waiter = NULL;
                v->operation_pending = false;
        }
        op->timeout_timer = sd_event_source_disable_unref(op->timeout_timer);
        op->poll_timer = sd_event_source_disable_unref(op->poll_timer);
}

static void detach_op_free(Call *c) {
        DetachOp *op = (DetachOp *) c;

        detach_unregister(op);
        free(op->path);
        if (op->dom)
                virDomainFree(op->dom);
        volume_backing_done(&op->backing);
        free(op->source);
        free(op->alias);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

/* The one way a detach ends: the answer (op->error, or success), the
 * volume's state, and the chain's reference. */
static void detach_end(DetachOp *op) {
        Manager *m = op->call.manager;
        Volume *v = detach_volume(op);

        op->step = DETACH_DONE;
        detach_unregister(op);

        if (sd_bus_error_is_set(&op->error)) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, v ? v->domain : NULL, op->source,
                                 op->backing.target, v ? volume_mode_to_string(v->mode) : NULL,
                                 "Detach of %s failed: %s", op->path, op->error.message);
                /* Busy keeps State=detaching: the request stands with the
                 * guest (the manager keeps watching).  Saved: the domain's.
                 * Anything else: the volume is still attached. */
                if (v && v->state == VOLUME_STATE_DETACHING && !sd_bus_error_has_name(&op->error, LV_ERROR_BUSY)) {
                        v->state = VOLUME_STATE_ATTACHED;
                        (void) volume_bus_emit_state(v);
                }
                call_reply_error(&op->call, &op->error);
        } else if (!op->call.replied) {
                if (v) {
                        log_volume_event(VOLUME_EVENT_DETACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                         volume_mode_to_string(v->mode), "Detached %s (%s from %s).", v->path,
                                         v->source, v->domain);
                        manager_remove_volume(m, v);
                }
                call_reply_empty(&op->call);
        }
        call_unref(&op->call);
}

/* Worker.  Finds our disk in the live XML and asks the guest to let go of
 * it; op->gone if there is nothing (left) to unplug. */
static void detach_request_job(Call *c) {
        DetachOp *op = (DetachOp *) c;
        Manager *m = c->manager;
        VolumeBacking *b = &op->backing;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        /* Whether it still runs, its live XML says below (its id). */
        r = virt_domain_lookup(m->virt, b->domain_uuid, &dom, &op->error);
        if (r < 0) {
                if (!sd_bus_error_has_names(&op->error, LV_ERROR_NO_SUCH_DOMAIN, LV_ERROR_DOMAIN_NOT_RUNNING))
                        goto finish;
                /* The guest is gone and the disk with it: only our
                 * backing remains to be cleaned up. */
                sd_bus_error_free(&op->error);
                op->gone = true;
                r = 0;
                goto finish;
        }

        /* The disk stays in the live XML until the guest lets go, so its
         * target cannot be taken meanwhile; the lock only orders this
         * look and request against attaches to the same domain. */
        virt_domain_lock(m->virt, b->domain_uuid);
        call_trace(c, "looked-up");
        r = virt_domain_live_xml(dom, &xml, &op->error);
        call_trace(c, "live-xml");
        if (r < 0 && sd_bus_error_has_name(&op->error, LV_ERROR_DOMAIN_NOT_RUNNING)) {
                /* A transient domain that went away since the look-up: its
                 * disk with it, as for one the look-up no longer finds. */
                sd_bus_error_free(&op->error);
                op->gone = true;
                r = 0;
        } else if (r >= 0) {
                r = domain_xml_find_disk_running(xml, b->target, &d);
                if (r == -ESRCH)
                        /* Stopped (a persistent domain's XML is now its
                         * configuration): no hot-plugged disk is left. */
                        r = -ENOENT;
                if (r == -ENOENT) {
                        op->gone = true;
                        r = 0;
                } else if (r < 0)
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s",
                                              strerror(-r));
                else if (!disk_info_is_ours(&d, b->domain_uuid, b->target)) {
                        /* Someone else's disk now sits on that target; ours
                         * is gone.  Never touch theirs. */
                        log_notice(
                                "Target %s now holds a disk not plugged in by this service; treating the volume as detached.",
                                b->target);
                        op->gone = true;
                } else {
                        /* The XML decides the mode: <encryption> names the
                         * secret in use; without it the source is our mapping. */
                        if (d.encrypted)
                                /* A header shim of ours goes with the secret. */
                                r = volume_backing_set(b, b->domain_uuid, b->target, d.secret_uuid,
                                                       luks_shim_path_ours(d.source) ? d.source : NULL);
                        else
                                r = volume_backing_set(b, b->domain_uuid, b->target, NULL,
                                                       d.source ?: b->mapper_device);
                        if (r >= 0 && d.alias)
                                r = (op->alias = strdup(d.alias)) ? 0 : -ENOMEM;
                        if (r < 0)
                                r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                        else
                                r = virt_detach_request(dom, b->target, d.alias, &op->error);
                }
        }
        virt_domain_unlock(m->virt, b->domain_uuid);
        if (r >= 0 && !op->gone && virDomainRef(dom) >= 0)
                op->dom = dom;

finish:
        pthread_rwlock_unlock(&m->ops_lock);
        disk_info_free(&d);
        op->r = r;
}

/* Worker.  Is the disk gone from the guest?  Then release its backing. */
static void detach_release_job(Call *c) {
        DetachOp *op = (DetachOp *) c;
        Manager *m = c->manager;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        bool present = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        /* One call: the live XML of the domain the request found.  A domain
         * that stopped since answers with its configuration (no hot-plugged
         * disk: gone, as the look-up below would say) or "gone away"; any
         * other failure (a connection lost meanwhile) falls back to a
         * fresh look-up. */
        if (!op->gone && op->dom) {
                if (virt_disk_present(op->dom, op->backing.target, &present, &op->error) >= 0)
                        op->gone = !present;
                else {
                        sd_bus_error_free(&op->error);
                        virDomainFree(op->dom);
                        op->dom = NULL;
                }
        }
        if (!op->gone && !op->dom) {
                r = virt_domain_lookup_running(m->virt, op->backing.domain_uuid, &dom, &op->error);
                if (r < 0) {
                        if (!sd_bus_error_has_names(&op->error, LV_ERROR_NO_SUCH_DOMAIN, LV_ERROR_DOMAIN_NOT_RUNNING))
                                goto finish;
                        sd_bus_error_free(&op->error);
                } else {
                        r = virt_disk_present(dom, op->backing.target, &present, &op->error);
                        if (r < 0)
                                goto finish;
                }
                op->gone = !present;
        }

        r = 0;
        if (!op->gone)
                goto finish;

        fault_point("detach", 2); /* device gone, backing still there */

        /* The device is gone from the guest: now its backing can go. */
        call_trace(c, "gone");
        r = volume_backing_release(m->virt, &op->backing, &op->error);
        call_trace(c, "released");
        if (r >= 0)
                fault_point("detach", 3); /* all gone but the object */

finish:
        pthread_rwlock_unlock(&m->ops_lock);
        op->r = r;
}

static void detach_released(Call *c);

static void detach_check(DetachOp *op) {
        if (op->step != DETACH_WAITING)
                return;
        /* No job runs now: the worker's fields are ours to set. */
        if (op->domain_gone)
                op->gone = true;
        op->step = DETACH_CHECKING;
        if (call_submit(&op->call, detach_release_job, detach_released) < 0)
                detach_end(op);
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        detach_check(userdata);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        DetachOp *op = userdata;

        op->timed_out = true;
        /* One last look before answering Busy. */
        detach_check(op);
        return 0;
}

static void detach_wait(DetachOp *op) {
        Manager *m = op->call.manager;
        uint64_t now;

        op->step = DETACH_WAITING;
        /* Something already said it is over while a job ran. */
        if (op->event_seen) {
                op->event_seen = false;
                detach_check(op);
                return;
        }
        if (op->timed_out) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "The guest has not released disk '%s' within %u s.",
                                  op->backing.target, op->options.timeout_sec);
                detach_end(op);
                return;
        }

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (!op->timeout_timer && sd_event_add_time(m->event, &op->timeout_timer, CLOCK_MONOTONIC,
                                                    op->call.arrival_usec + op->options.timeout_sec * 1000000ULL,
                                                    TIMER_ACCURACY_USEC, on_timeout, op) < 0) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Cannot arm a timer.");
                detach_end(op);
                return;
        }
        op->poll_timer = sd_event_source_disable_unref(op->poll_timer);
        if (sd_event_add_time(m->event, &op->poll_timer, CLOCK_MONOTONIC, now + DETACH_POLL_USEC, TIMER_ACCURACY_USEC,
                              on_poll, op) < 0) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Cannot arm a timer.");
                detach_end(op);
        }
}

static void detach_released(Call *c) {
        DetachOp *op = (DetachOp *) c;

        if (op->step == DETACH_DONE)
                return;
        if (op->r < 0 || op->gone) {
                detach_end(op);
                return;
        }
        /* Still there. */
        if (op->timed_out) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "The guest has not released disk '%s' within %u s.",
                                  op->backing.target, op->options.timeout_sec);
                detach_end(op);
                return;
        }
        detach_wait(op);
}

static void detach_requested(Call *c) {
        DetachOp *op = (DetachOp *) c;

        if (op->step == DETACH_DONE)
                return;
        if (op->r < 0) {
                detach_end(op);
                return;
        }
        if (op->gone) {
                op->step = DETACH_WAITING;
                detach_check(op);
                return;
        }
        /* A timeout of 0: the request stands; answer Busy unless the disk
         * is already gone (one look). */
        if (op->options.timeout_sec == 0)
                op->timed_out = true;
        detach_wait(op);
}

/* ------------------------------------------------------ libvirt's events */

static DetachOp *from_waiter(VolumeWaiter *w) {
        return (DetachOp *) ((char *) w - offsetof(DetachOp, waiter));
}

static void waiter_changed(DetachOp *op) {
        if (op->step == DETACH_WAITING)
                detach_check(op);
        else
                op->event_seen = true;
}

static void waiter_removed(VolumeWaiter *w) {
        DetachOp *op = from_waiter(w);

        call_trace(&op->call, "removed-event");
        /* Only a reason to look now: the alias is the same for every plug
         * at this target, and an event about an earlier plug can arrive
         * late (manager-reconcile.c).  The release job's look decides. */
        waiter_changed(op);
}

static void waiter_domain_gone(VolumeWaiter *w) {
        DetachOp *op = from_waiter(w);

        /* Not op->gone: a job may be writing that right now. */
        op->domain_gone = true;
        waiter_changed(op);
}

static void waiter_refused(VolumeWaiter *w) {
        DetachOp *op = from_waiter(w);

        if (op->step == DETACH_DONE)
                return;
        /* Answered at once; a job still running finds the op done. */
        sd_bus_error_setf(&op->error, LV_ERROR_GUEST_REFUSED, "The guest refused to release disk '%s'.",
                          op->backing.target);
        detach_end(op);
}

static void waiter_saved(VolumeWaiter *w) {
        DetachOp *op = from_waiter(w);

        if (op->step == DETACH_DONE)
                return;
        /* The disk is in the saved state now and comes back with the guest:
         * the request died with the running guest. */
        sd_bus_error_setf(&op->error, LV_ERROR_BUSY,
                          "The domain was saved with disk '%s' in it; detach it after the domain is restored.",
                          op->backing.target);
        detach_end(op);
}

/* ----------------------------------------------------------------- parse */

static void detach_authorized(Call *c, bool allowed) {
        DetachOp *op = (DetachOp *) c;
        Volume *v;

        if (!allowed) {
                call_unref(c);
                return;
        }

        /* It may have gone — or been replaced — while polkit was deciding. */
        v = detach_volume(op);
        if (!v) {
                sd_bus_error_setf(&op->error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", op->path);
                detach_end(op);
                return;
        }
        if (v->operation_pending) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "A detach of %s is already in progress.", op->path);
                /* Not ours to reset: the other operation's volume state stays. */
                call_reply_error(c, &op->error);
                call_unref(c);
                return;
        }
        if (v->resize_pending) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "%s is being resized; detach it when that is done.",
                                  op->path);
                call_reply_error(c, &op->error);
                call_unref(c);
                return;
        }
        if (v->state == VOLUME_STATE_SAVED) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY,
                                  "The domain of %s is saved; detach the volume after the domain is restored.",
                                  op->path);
                call_reply_error(c, &op->error);
                call_unref(c);
                return;
        }

        op->source = strdup(strempty(v->source));
        if (!op->source || volume_backing_set(&op->backing, v->domain_uuid, v->target, v->secret_uuid,
                                              v->mapper_device ?: v->shim_device) < 0) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                detach_end(op);
                return;
        }

        /* Events for the disk come to us from now on, also while the
         * request is still on its way. */
        v->operation_pending = true;
        v->waiter = &op->waiter;
        if (v->state != VOLUME_STATE_DETACHING) {
                v->state = VOLUME_STATE_DETACHING;
                (void) volume_bus_emit_state(v);
        }

        op->step = DETACH_REQUESTING;
        if (call_submit(c, detach_request_job, detach_requested) < 0)
                detach_end(op);
}

/* The one core of Manager.Detach and Volume.Detach: authorize, then
 * request, wait, release.  Takes options (the caller's timeout, or the
 * configured default). */
static int detach_start(Manager *m, sd_bus_message *message, Volume *v, const DetachOptions *options,
                        sd_bus_error *error) {
        DetachOp *op;

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, detach_op_free);
        op->waiter = (VolumeWaiter){
                .removed = waiter_removed,
                .refused = waiter_refused,
                .domain_gone = waiter_domain_gone,
                .saved = waiter_saved,
        };
        op->options = *options;
        if (!op->options.timeout_set)
                op->options.timeout_sec = m->config.detach_timeout_sec;
        op->generation = v->generation;
        op->path = strdup(v->path);
        if (!op->path) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                call_reply_error(&op->call, &op->error);
                call_unref(&op->call);
                return 1;
        }

        const char *const details[] = {
                "domain", v->domain, "domain-uuid", v->domain_uuid, "source", strempty(v->source),
                "target", v->target, NULL,
        };
        if (call_authorize(&op->call, ACTION_DETACH, call_details(&op->call, details), detach_authorized) < 0)
                call_unref(&op->call);
        return 1;
}

int method_detach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *u = NULL, *t = NULL;
        DetachOptions options = {};
        const char *path;
        Volume *v;
        int r;

        r = sd_bus_message_read(message, "o", &path);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = detach_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);

        if (volume_path_parse(path, &u, &t) < 0)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "'%s' is not a volume object path.", path);

        /* NoSuchVolume before authorization reveals only what the object
         * tree already shows to anyone. */
        v = manager_find_volume_by_path(m, path);
        if (!v)
                return sd_bus_error_setf(error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", path);

        return detach_start(m, message, v, &options, error);
}

int method_volume_detach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Volume *v = userdata;
        DetachOptions options = {};
        int r;

        r = detach_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);
        return detach_start(v->manager, message, v, &options, error);
}
