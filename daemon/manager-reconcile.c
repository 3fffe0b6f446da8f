/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Ending a volume whose disk or domain is gone (the clean-up job), and the
 * reconciliation that looks at the live XML itself: periodically, for the
 * events libvirt 9.0 sometimes loses, and on demand, when an event names a
 * disk.  An event is a hint and the live XML the truth: a disk's alias is
 * the same for every plug at one target, so a device-removed event that
 * arrives late may be about an earlier plug of a disk that is back. */

#include <libvirt/libvirt.h>
#include <unistd.h>

#include "backing.h"
#include "disk-xml.h"
#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "manager.h"
#include "util.h"
#include "volume-id.h"

/* ------------------------------------------------- cleaning up a volume */

typedef struct CleanupJob {
        Manager *manager;
        char *path;
        uint64_t generation;
        VolumeBacking backing;
        const char *why;
        sd_bus_error error;
        int r;
} CleanupJob;

static CleanupJob *cleanup_job_free(CleanupJob *j) {
        if (!j)
                return NULL;
        free(j->path);
        volume_backing_done(&j->backing);
        sd_bus_error_free(&j->error);
        free(j);
        return NULL;
}

static void cleanup_job(void *userdata) {
        CleanupJob *j = userdata;
        Manager *m = j->manager;

        pthread_rwlock_rdlock(&m->ops_lock);
        j->r = volume_backing_release(m->virt, &j->backing, &j->error);
        pthread_rwlock_unlock(&m->ops_lock);
}

static void cleanup_done(void *userdata) {
        CleanupJob *j = userdata;
        Manager *m = j->manager;
        Volume *v = manager_find_volume(m, j->path, j->generation);

        if (j->r < 0) {
                /* Keep the object: it is the handle for a later Detach. */
                log_warning("Cleanup of %s (%s) failed: %s", j->path, j->why, j->error.message);
                if (v)
                        v->operation_pending = false;
        } else if (v) {
                log_volume_event(VOLUME_EVENT_CLEANED_UP, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode), "Volume %s cleaned up (%s).", j->path, j->why);
                manager_remove_volume(m, v);
        }

        cleanup_job_free(j);
        manager_arm_idle(m);
}

void manager_volume_cleanup(Manager *m, Volume *v, const char *why) {
        CleanupJob *j;

        if (v->operation_pending)
                return; /* the operation at work finishes it */

        j = calloc(1, sizeof *j);
        if (!j)
                return log_oom(), (void) 0;
        j->manager = m;
        j->why = why;
        j->generation = v->generation;
        j->path = strdup(v->path);
        if (!j->path || volume_backing_set(&j->backing, v->domain_uuid, v->target, v->secret_uuid,
                                           v->mapper_device ?: v->shim_device) < 0) {
                cleanup_job_free(j);
                return log_oom(), (void) 0;
        }
        if (worker_submit(m->worker, cleanup_job, cleanup_done, j) < 0) {
                cleanup_job_free(j);
                return;
        }
        v->operation_pending = true;
}

/* ------------------------------------------------------ reconciliation */

/* libvirt 9.0 sometimes drops a disk from the live XML without a
 * device-removed event.  A volume left "detaching" by a Detach that
 * answered Busy is therefore looked at every 2 s, every other attached
 * volume every 10 s, and everything is rescanned once a minute (orphans
 * included), so that such a volume is cleaned up within seconds without
 * anybody calling.
 *
 * A look reads a domain's live XML once for all its volumes that are due:
 * one look a volume made 20 reads a second of libvirtd at 200 volumes, and
 * libvirt's own hot-plug was 1.43x slower for it (bench/, scale scenario,
 * 2026-12-06); one a domain is 2 a second at 20 domains. */
#define RECHECK_INTERVAL_USEC (2 * 1000000ULL)
#define RECHECK_ATTACHED_USEC (10 * 1000000ULL)
#define RESCAN_INTERVAL_USEC  (60 * 1000000ULL)

typedef struct RecheckItem {
        char *path;
        uint64_t generation;
        char *target;
        bool unplug;     /* ask the guest to release the disk (again) if it is there */
        const char *why; /* what asked for the look (an event); NULL: the timer */
        bool gone;
} RecheckItem;

/* One domain's volumes, looked at with one read of its live XML. */
typedef struct RecheckJob {
        Manager *manager;
        char *domain_uuid;
        RecheckItem *items;
        size_t n, allocated;
} RecheckJob;

static RecheckJob *recheck_job_free(RecheckJob *j) {
        if (!j)
                return NULL;
        for (size_t i = 0; i < j->n; i++) {
                free(j->items[i].path);
                free(j->items[i].target);
        }
        free(j->items);
        free(j->domain_uuid);
        free(j);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(RecheckJob *, recheck_job_free);

static RecheckJob *recheck_job_new(Manager *m, const char *domain_uuid) {
        RecheckJob *j = calloc(1, sizeof *j);

        if (!j)
                return NULL;
        j->manager = m;
        j->domain_uuid = strdup(domain_uuid);
        if (!j->domain_uuid)
                return recheck_job_free(j);
        return j;
}

static int recheck_job_add(RecheckJob *j, Volume *v, const char *why) {
        RecheckItem *it;

        if (j->n == j->allocated) {
                size_t a = j->allocated ? j->allocated * 2 : 4;
                RecheckItem *p = reallocarray(j->items, a, sizeof *p);
                if (!p)
                        return -ENOMEM;
                j->items = p;
                j->allocated = a;
        }
        it = &j->items[j->n];
        *it = (RecheckItem){
                .path = strdup(v->path),
                .generation = v->generation,
                .target = strdup(v->target),
                .unplug = v->unplug_retry,
                .why = why,
        };
        if (!it->path || !it->target) {
                free(it->path);
                free(it->target);
                return -ENOMEM;
        }
        j->n++;
        return 0;
}

static bool has_target(const DiskInfo *disks, size_t n, const char *target) {
        for (size_t i = 0; i < n; i++)
                if (streq_ptr(disks[i].target, target))
                        return true;
        return false;
}

/* Worker.  Which of the items' disks are still in the guest?  Not knowing
 * (libvirt unreachable, unparseable XML) is never "gone". */
static void recheck_job(void *userdata) {
        RecheckJob *j = userdata;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        DiskInfo *disks = NULL;
        size_t nd = 0;
        bool looked = false;

        /* Only the live XML of a domain that runs, before and after it was
         * read, says a disk is gone.  A domain that is not running (or not
         * there) is its lifecycle event's to decide: stopped ends its
         * volumes, saved keeps them for the restore.  A save to a file
         * makes a transient domain vanish before the saved event arrives;
         * a look that took that for "gone" closed the mapping the restore
         * needed (seen in CI, 2026-12-07, test-cryptsetup's
         * saved-keep-mapping). */
        if (virt_domain_lookup_running(j->manager->virt, j->domain_uuid, &dom, &error) >= 0) {
                /* Test-only: a save or stop lands between the look-up and
                 * the look at the disks. */
                if (fault_trigger("recheck:pause"))
                        (void) usleep(3 * 1000 * 1000);
                if (virt_domain_live_xml(dom, &xml, &error) >= 0 && domain_xml_list_disks(xml, &disks, &nd) >= 0)
                        looked = true;
                /* It stopped or was saved meanwhile (after a managed save
                 * the domain's XML is its definition, without the disks
                 * plugged in): no conclusion either.  A saved volume
                 * cleaned up here lost the secret its restore needs (seen
                 * in CI, 2026-12-06). */
                if (looked && virDomainIsActive(dom) != 1)
                        looked = false;
        }

        for (size_t i = 0; i < j->n; i++) {
                RecheckItem *it = &j->items[i];
                bool present = !looked || has_target(disks, nd, it->target);

                it->gone = !present;
                if (present && looked && it->unplug) {
                        /* A disk an attach failed to take back (attach.c):
                         * the guest must not keep it, so the request is
                         * repeated until it lets go; the device-removed
                         * event, or the next look, ends the volume. */
                        _cleanup_free_ char *alias = NULL;
                        sd_bus_error_free(&error);
                        if (disk_alias_build(j->domain_uuid, it->target, &alias) >= 0 &&
                            virt_detach_request(dom, it->target, alias, &error) < 0)
                                log_warning("Cannot ask %s to release %s again: %s", j->domain_uuid, it->target,
                                            error.message);
                }
        }
        disk_info_array_free(disks, nd);
        if (dom)
                virDomainFree(dom);
        sd_bus_error_free(&error);
}

static int recheck_submit(Manager *m, RecheckJob *j);

static void recheck_done(void *userdata) {
        RecheckJob *j = userdata;
        Manager *m = j->manager;
        _cleanup_(recheck_job_freep) RecheckJob *again_job = NULL;

        for (size_t i = 0; i < j->n; i++) {
                const RecheckItem *it = &j->items[i];
                Volume *v = manager_find_volume(m, it->path, it->generation);
                const char *again;

                if (!v)
                        continue;
                again = TAKE_PTR(v->recheck_why);
                v->rechecking = false;
                if (it->gone && v->state != VOLUME_STATE_SAVED && !v->waiter)
                        manager_volume_cleanup(m, v,
                                               it->why ? it->why
                                               : again ? again
                                               : v->state == VOLUME_STATE_DETACHING
                                                       ? "the guest released it (no event came)"
                                                       : "its disk is gone from the guest (no event came)");
                else if (!it->gone && again) {
                        /* An event came while this look ran: what it read
                         * may be older than the event. */
                        if (!again_job)
                                again_job = recheck_job_new(m, j->domain_uuid);
                        if (again_job && recheck_job_add(again_job, v, again) >= 0)
                                again_job->items[again_job->n - 1].unplug = false; /* as in verify_gone */
                        else
                                log_warning("Cannot look at the disk of %s again now; the periodic look will.",
                                            v->path);
                }
        }
        recheck_job_free(j);
        if (again_job)
                (void) recheck_submit(m, TAKE_PTR(again_job));
}

/* Takes j; marks its volumes as being looked at. */
static int recheck_submit(Manager *m, RecheckJob *j) {
        if (j->n == 0) {
                recheck_job_free(j);
                return 0;
        }
        /* Marked before the job is handed over: from then on it is the
         * worker's until its completion runs here. */
        for (size_t i = 0; i < j->n; i++) {
                Volume *v = manager_find_volume(m, j->items[i].path, j->items[i].generation);
                if (v)
                        v->rechecking = true;
        }
        if (worker_submit(m->worker, recheck_job, recheck_done, j) < 0) {
                for (size_t i = 0; i < j->n; i++) {
                        Volume *v = manager_find_volume(m, j->items[i].path, j->items[i].generation);
                        if (v)
                                v->rechecking = false;
                }
                recheck_job_free(j);
                return -ENOMEM;
        }
        return 0;
}

static bool recheck_eligible(const Volume *v) {
        return v->state != VOLUME_STATE_SAVED && !v->waiter && !v->operation_pending && !v->rechecking;
}

void manager_volume_verify_gone(Manager *m, Volume *v, const char *why) {
        RecheckJob *j;

        if (v->state == VOLUME_STATE_SAVED || v->waiter || v->operation_pending)
                return; /* its lifecycle event, or the operation at work, decides */
        if (v->rechecking) {
                v->recheck_why = why; /* looked at again when this look is done */
                return;
        }
        j = recheck_job_new(m, v->domain_uuid);
        if (!j || recheck_job_add(j, v, why) < 0) {
                recheck_job_free(j);
                log_warning("Cannot look at the disk of %s now; the periodic look will.", v->path);
                return;
        }
        /* An event said the disk went: no new request to let go of it.  A
         * disk now at that target may be a newer plug (same alias) that an
         * attach made the moment the target was free. */
        j->items[0].unplug = false;
        if (recheck_submit(m, TAKE_PTR(j)) < 0) {
                recheck_job_free(j);
                /* No look possible: the 10 s one will do. */
                log_warning("Cannot look at the disk of %s now; the periodic look will.", v->path);
        }
}

static bool recheck_due(const Volume *v, uint64_t usec) {
        return v->state == VOLUME_STATE_DETACHING || usec - v->last_recheck_usec >= RECHECK_ATTACHED_USEC;
}

static int on_recheck_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        /* A domain with a volume due is read once, for all its volumes that
         * may be looked at: their next looks fall together from then on.
         * Once submitted they are all "rechecking", so the rest of the
         * list skips them. */
        for (Volume *v = m->volumes; v; v = v->next) {
                RecheckJob *j;

                if (!recheck_eligible(v) || !recheck_due(v, usec))
                        continue;
                j = recheck_job_new(m, v->domain_uuid);
                if (!j)
                        break;
                for (Volume *w = m->volumes; w; w = w->next)
                        if (streq(w->domain_uuid, v->domain_uuid) && recheck_eligible(w)) {
                                w->last_recheck_usec = usec;
                                if (recheck_job_add(j, w, NULL) < 0)
                                        break;
                        }
                if (recheck_submit(m, j) < 0)
                        break;
        }

        (void) sd_event_source_set_time_relative(s, RECHECK_INTERVAL_USEC);
        return 0;
}

static int on_rescan_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->volumes && m->initial_scan_started && m->scan_in_flight == 0)
                (void) manager_rescan(m, false);
        (void) sd_event_source_set_time_relative(s, RESCAN_INTERVAL_USEC);
        return 0;
}

int manager_reconcile_start(Manager *m) {
        int r;

        r = sd_event_add_time_relative(m->event, &m->recheck_timer, CLOCK_MONOTONIC, RECHECK_INTERVAL_USEC, 0,
                                       on_recheck_timer, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(m->recheck_timer, SD_EVENT_ON);
        r = sd_event_add_time_relative(m->event, &m->rescan_timer, CLOCK_MONOTONIC, RESCAN_INTERVAL_USEC, 0,
                                       on_rescan_timer, m);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(m->rescan_timer, SD_EVENT_ON);
}
