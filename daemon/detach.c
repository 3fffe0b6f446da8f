/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Detach: parse → authorize → worker: the live XML decides (<encryption>
 * → native: the secret it names; none → cryptsetup: our mapping), the
 * device is removed from the guest first, its backing after → reply. */

#include <libvirt/libvirt.h>

#include "backing.h"
#include "disk-xml.h"
#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

typedef struct DetachOp {
        Call call;

        char *path;
        uint64_t generation;            /* of the volume it was asked for */
        DetachOptions options;

        /* copies for the worker: it must not read the Volume */
        VolumeBacking backing;
        char *source;

        int r;
        sd_bus_error error;
} DetachOp;

static void detach_op_free(Call *c) {
        DetachOp *op = (DetachOp *) c;

        free(op->path);
        volume_backing_done(&op->backing);
        free(op->source);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void detach_end(DetachOp *op) {
        if (sd_bus_error_is_set(&op->error))
                call_reply_error(&op->call, &op->error);
        call_unref(&op->call);
}

/* Ours: it carries the alias we give every disk we plug in, for exactly
 * this domain and target (the same test the start-up scan applies). */
static bool disk_is_ours(const DiskInfo *d, const char *domain_uuid, const char *target) {
        _cleanup_free_ char *alias = NULL;

        return disk_alias_build(domain_uuid, target, &alias) >= 0 && streq_ptr(d->alias, alias);
}

typedef struct RemovalWaiter {
        VirtEvents *events;
        RemovalWatch *watch;
        bool seen;
} RemovalWaiter;

static int removal_wait(void *userdata, unsigned ms) {
        RemovalWaiter *w = userdata;
        int r;

        /* After the event, only the periodic look remains (the live XML
         * may lag the event by a moment in theory). */
        if (w->seen || !w->watch) {
                usleep(MIN(ms, 50U) * 1000U);
                return 0;
        }
        r = virt_events_wait_removal(w->events, w->watch, ms);
        w->seen = r > 0;
        return r;
}

/* Worker. */
static void detach_job(Call *c) {
        DetachOp *op = (DetachOp *) c;
        Manager *m = c->manager;
        VolumeBacking *b = &op->backing;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        bool locked = false, have_disk = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        r = virt_domain_lookup_running(m->virt, b->domain_uuid, &dom, &op->error);
        if (r < 0) {
                if (!sd_bus_error_has_names(&op->error, LV_ERROR_NO_SUCH_DOMAIN, LV_ERROR_DOMAIN_NOT_RUNNING))
                        goto finish;
                /* The guest is gone and the disk with it: only our
                 * backing remains to be cleaned up. */
                sd_bus_error_free(&op->error);
        } else {
                virt_domain_lock(m->virt, b->domain_uuid);
                locked = true;

                r = virt_domain_live_xml(dom, &xml, &op->error);
                if (r < 0)
                        goto finish;
                r = domain_xml_find_disk(xml, b->target, &d);
                if (r < 0 && r != -ENOENT) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s",
                                              strerror(-r));
                        goto finish;
                }
                if (r == -ENOENT)
                        ; /* gone already: only the backing is left */
                else if (!disk_is_ours(&d, b->domain_uuid, b->target)) {
                        /* Someone else's disk now sits on that target; ours
                         * is gone.  Never touch theirs. */
                        log_notice("Target %s now holds a disk not plugged in by this service; treating the volume as detached.",
                                   b->target);
                        disk_info_free(&d);
                        d = (DiskInfo) {};
                } else
                        have_disk = true;
        }

        if (have_disk) {
                /* The wait can be long (a guest that does not let go); other
                 * operations on this domain need not wait for it: the disk
                 * stays in the live XML, so its target cannot be taken. */
                if (locked) {
                        virt_domain_unlock(m->virt, b->domain_uuid);
                        locked = false;
                }

                RemovalWaiter waiter = {
                        .events = m->events,
                        .watch = d.alias ? virt_events_watch_removal(m->events, b->domain_uuid, d.alias) : NULL,
                };
                r = virt_detach_disk(dom, b->target, d.alias, op->options.timeout_sec * 1000U,
                                     removal_wait, &waiter, &op->error);
                virt_events_unwatch_removal(waiter.events, waiter.watch);
                if (r < 0)
                        goto finish;
                /* The XML decides the mode: <encryption> names the secret in
                 * use; without it the source is our mapping. */
                if (d.encrypted)
                        r = volume_backing_set(b, b->domain_uuid, b->target, d.secret_uuid, NULL);
                else
                        r = volume_backing_set(b, b->domain_uuid, b->target, NULL, d.source ?: b->mapper_device);
                if (r < 0) {
                        r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                        goto finish;
                }
        }

        fault_point("detach", 2);   /* device gone, backing still there */

        /* The device is gone from the guest: now its backing can go. */
        r = volume_backing_release(m->virt, b, &op->error);
        if (r >= 0)
                fault_point("detach", 3);   /* all gone but the object */

finish:
        if (locked)
                virt_domain_unlock(m->virt, b->domain_uuid);
        pthread_rwlock_unlock(&m->ops_lock);
        disk_info_free(&d);
        if (r < 0 && !sd_bus_error_is_set(&op->error))
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Detach failed: %s", strerror(-r));
        op->r = r;
}

static void detach_done(Call *c) {
        DetachOp *op = (DetachOp *) c;
        Manager *m = c->manager;
        Volume *v = manager_find_volume(m, op->path, op->generation);

        if (v)
                v->operation_pending = false;

        if (op->r < 0 && v && (v->removal_seen || v->domain_gone_seen)) {
                /* The guest let go (or went away) after our last look: the
                 * event that said so was held back while we worked. */
                v->removal_seen = v->domain_gone_seen = false;
                manager_volume_cleanup(m, v, "the guest released it");
        }

        if (op->r < 0) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, v ? v->domain : NULL, op->source,
                                 op->backing.target, v ? volume_mode_to_string(v->mode) : NULL,
                                 "Detach of %s failed: %s", op->path, op->error.message);
                /* Busy keeps State=detaching: the request stands with the
                 * guest.  Anything else: the volume is still attached. */
                if (v && !sd_bus_error_has_name(&op->error, LV_ERROR_BUSY)) {
                        v->state = VOLUME_STATE_ATTACHED;
                        (void) volume_bus_emit_state(v);
                }
                detach_end(op);
                return;
        }

        if (v) {
                log_volume_event(VOLUME_EVENT_DETACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode), "Detached %s (%s from %s).",
                                 v->path, v->source, v->domain);
                manager_remove_volume(m, v);
        }
        call_reply_empty(c);
        detach_end(op);
}

static void detach_authorized(Call *c, bool allowed) {
        DetachOp *op = (DetachOp *) c;
        Manager *m = c->manager;
        Volume *v;

        if (!allowed) {
                detach_end(op);
                return;
        }

        /* It may have gone — or been replaced — while polkit was deciding. */
        v = manager_find_volume(m, op->path, op->generation);
        if (!v) {
                sd_bus_error_setf(&op->error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", op->path);
                detach_end(op);
                return;
        }
        if (v->operation_pending) {
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "A detach of %s is already in progress.", op->path);
                detach_end(op);
                return;
        }

        op->source = strdup(strempty(v->source));
        if (!op->source || volume_backing_set(&op->backing, v->domain_uuid, v->target, v->secret_uuid,
                                              v->mapper_device) < 0) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                detach_end(op);
                return;
        }

        if (call_submit(c, detach_job, detach_done) < 0) {
                detach_end(op);
                return;
        }

        v->operation_pending = true;
        if (v->state != VOLUME_STATE_DETACHING) {
                v->state = VOLUME_STATE_DETACHING;
                (void) volume_bus_emit_state(v);
        }
}

int method_detach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *u = NULL, *t = NULL;
        DetachOptions options = {};
        const char *path;
        DetachOp *op;
        Volume *v;
        int r;

        r = sd_bus_message_read(message, "o", &path);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = detach_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);
        if (!options.timeout_set)
                options.timeout_sec = m->config.detach_timeout_sec;

        if (volume_path_parse(path, &u, &t) < 0)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "'%s' is not a volume object path.", path);

        /* NoSuchVolume before authorization reveals only what the object
         * tree already shows to anyone. */
        v = manager_find_volume_by_path(m, path);
        if (!v)
                return sd_bus_error_setf(error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", path);

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, detach_op_free);
        op->options = options;
        op->generation = v->generation;
        op->path = strdup(path);
        if (!op->path) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                detach_end(op);
                return 1;
        }

        const char *const details[] = {
                "domain", v->domain,
                "domain-uuid", v->domain_uuid,
                "source", strempty(v->source),
                "target", v->target,
                NULL,
        };
        if (call_authorize(&op->call, ACTION_DETACH, call_details(&op->call, details), detach_authorized) < 0)
                detach_end(op);
        return 1;
}
