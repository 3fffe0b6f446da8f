/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The truth is what libvirt says: the registry is rebuilt from the live
 * XML of running domains at start and after every reconnect, and follows
 * libvirt's events in between.  A guest that stops takes its volumes with
 * it (their secrets and mappings are cleaned up); a device the guest
 * releases after a Detach answered Busy finishes its cleanup when the
 * device-removed event arrives. */

#include <stdio.h>

#include <systemd/sd-daemon.h>

#include "backing.h"
#include "event-log.h"
#include "luks.h"
#include "manager.h"
#include "scan.h"
#include "util.h"
#include "volume-id.h"

/* ------------------------------------------------------------ rescanning */

typedef struct ScanJob {
        Manager *manager;
        bool initial;
        bool cleanup_orphans;
        bool complete;
        uint64_t event_seq;     /* Manager.event_seq when the scan started */
        Volume *found;
        sd_bus_error error;
        int r;
} ScanJob;

static void scan_job(void *userdata) {
        ScanJob *j = userdata;
        Manager *m = j->manager;

        if (j->cleanup_orphans)
                pthread_rwlock_wrlock(&m->ops_lock);
        j->r = scan_volumes(m->virt, &j->found, &j->complete, &j->error);
        /* Only with a complete picture: a domain we could not read must
         * not make its secrets and mappings look orphaned. */
        if (j->r >= 0 && j->complete && j->cleanup_orphans)
                scan_cleanup_orphans(m->virt, j->found);
        else if (j->r >= 0 && !j->complete)
                log_warning("Scan incomplete; orphan cleanup postponed to the next scan.");
        if (j->cleanup_orphans)
                pthread_rwlock_unlock(&m->ops_lock);

        /* Reading the sources (their LUKS headers, their identity) may
         * take until the deadline on a hung file system: not while every
         * attach and detach waits for the lock above. */
        for (Volume *v = j->found; v; v = v->next)
                volume_fill_source_facts(v, m->config.source_timeout_sec * 1000U);
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                log_error("Failed to acquire the bus name %s: %s", LV_BUS_NAME, e->message);
                return sd_event_exit(m->event, 1);
        }
        m->name_acquired = true;
        log_info("Ready on the bus as %s, %u volume(s) attached.", LV_BUS_NAME, m->n_volumes);
        (void) sd_notify(false, "READY=1\nSTATUS=Processing requests...");
        manager_arm_idle(m);
        return 0;
}

static Volume *find_in_list(Volume *list, const char *path) {
        for (Volume *v = list; v; v = v->next)
                if (streq(v->path, path))
                        return v;
        return NULL;
}

/* The registry becomes what the scan found, except for volumes an
 * operation is working on right now (that operation finishes them), and,
 * after an incomplete scan, except for removals (absence proves nothing). */
static void reconcile(Manager *m, Volume *found, bool complete) {
        for (Volume *v = m->volumes, *n; v; v = n) {
                n = v->next;
                if (complete && !v->operation_pending && !find_in_list(found, v->path)) {
                        log_info("Volume %s is gone from libvirt; removing its object.", v->path);
                        manager_remove_volume(m, v);
                }
        }

        for (Volume *v = found, *n; v; v = n) {
                n = v->next;
                v->next = NULL;
                Volume *have = manager_find_volume_by_path(m, v->path);
                if (have && (have->operation_pending || streq_ptr(have->source, v->source))) {
                        volume_free(v);
                        continue;
                }
                (void) manager_add_volume(m, v);
        }
}

static void scan_done(void *userdata) {
        ScanJob *j = userdata;
        Manager *m = j->manager;
        int r;

        if (j->r < 0)
                /* Start anyway: calls report libvirt's state, and the next
                 * (re)connect rescans. */
                log_warning("Could not rebuild volumes from libvirt: %s",
                            j->error.message ? j->error.message : "unknown error");
        else {
                reconcile(m, TAKE_PTR(j->found), j->complete);
                /* What the scan read may have changed before it finished:
                 * events since its start are applied again now that the
                 * volumes they concern are in the registry. */
                for (Volume *v = m->volumes; v; v = v->next)
                        (void) manager_volume_gone_since(m, v, j->event_seq);
        }

        bool initial = j->initial;
        for (Volume *v = j->found, *n; v; v = n) {
                n = v->next;
                volume_free(v);
        }
        sd_bus_error_free(&j->error);
        free(j);

        if (initial) {
                r = sd_bus_request_name_async(m->bus, NULL, LV_BUS_NAME, 0, on_name_acquired, m);
                if (r < 0) {
                        log_error_errno(r, "Failed to request the bus name: %m");
                        sd_event_exit(m->event, 1);
                }
        } else
                manager_arm_idle(m);
}

int manager_rescan(Manager *m, bool initial) {
        ScanJob *j;
        int r;

        if (initial) {
                if (m->initial_scan_started)
                        return 0;
                m->initial_scan_started = true;
        }

        j = calloc(1, sizeof *j);
        if (!j)
                return log_oom();
        j->manager = m;
        j->initial = initial;
        j->event_seq = m->event_seq;
        /* Orphans can only be told apart from work in progress when none
         * is in progress; at start there is none by construction. */
        j->cleanup_orphans = true;

        r = worker_submit(m->worker, scan_job, scan_done, j);
        if (r < 0) {
                free(j);
                return log_error_errno(r, "Failed to start the volume scan: %m");
        }
        return 0;
}

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
        if (!j->path || volume_backing_set(&j->backing, v->domain_uuid, v->target, v->secret_uuid, v->mapper_device) < 0) {
                cleanup_job_free(j);
                return log_oom(), (void) 0;
        }
        if (worker_submit(m->worker, cleanup_job, cleanup_done, j) < 0) {
                cleanup_job_free(j);
                return;
        }
        v->operation_pending = true;
}

/* ---------------------------------------------------------------- events */

static void remember_event(Manager *m, const char *uuid, const char *alias) {
        size_t slot = m->event_seq % ELEMENTSOF(m->recent);

        m->event_seq++;
        snprintf(m->recent[slot].uuid, sizeof m->recent[slot].uuid, "%s", uuid);
        snprintf(m->recent[slot].alias, sizeof m->recent[slot].alias, "%s", strempty(alias));
        m->recent[slot].seq = m->event_seq;
}

bool manager_volume_gone_since(Manager *m, Volume *v, uint64_t seq) {
        _cleanup_free_ char *ours = NULL;

        if (disk_alias_build(v->domain_uuid, v->target, &ours) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(m->recent); i++) {
                if (m->recent[i].seq <= seq || !streq(m->recent[i].uuid, v->domain_uuid))
                        continue;
                if (isempty(m->recent[i].alias)) {
                        manager_volume_cleanup(m, v, "its domain stopped meanwhile");
                        return true;
                }
                if (streq(m->recent[i].alias, ours)) {
                        manager_volume_cleanup(m, v, "its disk went away meanwhile");
                        return true;
                }
        }
        return false;
}

static void on_domain_stopped(Manager *m, const char *uuid) {
        remember_event(m, uuid, NULL);

        for (Volume *v = m->volumes; v; v = v->next)
                if (streq(v->domain_uuid, uuid)) {
                        if (v->operation_pending)
                                v->domain_gone_seen = true;
                        manager_volume_cleanup(m, v, "its domain stopped");
                }
}

static void on_device_removed(Manager *m, const char *uuid, const char *alias) {
        remember_event(m, uuid, alias);

        for (Volume *v = m->volumes; v; v = v->next) {
                _cleanup_free_ char *ours = NULL;

                if (!streq(v->domain_uuid, uuid) || disk_alias_build(uuid, v->target, &ours) < 0 ||
                    !streq_ptr(alias, ours))
                        continue;
                /* Only a detach that already answered Busy is waiting for
                 * this; anything else is someone unplugging our disk behind
                 * our back, which ends the volume just the same. */
                if (v->operation_pending)
                        v->removal_seen = true;
                manager_volume_cleanup(m, v, v->state == VOLUME_STATE_DETACHING ?
                                     "the guest released it" : "it was unplugged outside this service");
        }
}

void manager_on_virt_event(const VirtEvent *event, void *userdata) {
        Manager *m = userdata;

        log_debug("libvirt event %d: domain %s, device %s", event->kind, event->domain_uuid,
                  strempty(event->device_alias));

        switch (event->kind) {
        case VIRT_EVENT_DOMAIN_STOPPED:
                on_domain_stopped(m, event->domain_uuid);
                break;
        case VIRT_EVENT_DEVICE_REMOVED:
                on_device_removed(m, event->domain_uuid, event->device_alias);
                break;
        case VIRT_EVENT_CONNECTED:
                virt_invalidate_host_info(m->virt);
                if (!m->initial_scan_started) {
                        (void) manager_rescan(m, true);
                        break;
                }
                /* After an outage (or a start without libvirt, or a start-up
                 * scan that did not wait for us) anything may have happened. */
                log_info("Connected to libvirt; rescanning.");
                (void) manager_rescan(m, false);
                break;
        case VIRT_EVENT_DISCONNECTED:
                virt_invalidate_host_info(m->virt);
                /* Unreachable from the start: start anyway; calls will say
                 * so, and the eventual connection rescans. */
                if (!m->initial_scan_started)
                        (void) manager_rescan(m, true);
                log_warning("libvirt is unreachable; calls fail until it is back.");
                break;
        }
}
