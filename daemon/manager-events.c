/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The truth is what libvirt says: the registry is rebuilt from the live
 * XML of running domains at start and after every reconnect, and follows
 * libvirt's events in between.  A guest that stops takes its volumes with
 * it (their secrets and mappings are cleaned up); a device the guest
 * releases after a Detach answered Busy finishes its cleanup when the
 * device-removed event arrives. */

#include <stdio.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "manager.h"
#include "scan.h"
#include "stage.h"
#include "util.h"
#include "volume-id.h"

/* ------------------------------------------------------------ rescanning */

typedef struct ScanJob {
        Manager *manager;
        bool initial;
        bool cleanup_orphans;
        bool complete;
        uint64_t event_seq; /* Manager.event_seq when the scan started */
        uint64_t state_seq; /* Manager.state_seq when the scan started */
        /* Copies of the registry's saved volumes that no scan finds (a
         * guest saved with "virsh save" is no domain libvirt can list):
         * their secrets and mappings are no orphans either. */
        Volume *keep_saved;
        char migrated_in[37]; /* report this domain's volumes (VolumeMigrated "in") */
        uint64_t resizes;     /* Manager.resizes when the scan started */
        Volume *found;
        sd_bus_error error;
        int r;
} ScanJob;

static void scan_job(void *userdata) {
        ScanJob *j = userdata;
        Manager *m = j->manager;

        if (j->initial) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                HostInfo h;

                /* While the events thread connects: this worker's own
                 * connection, and the host's versions, which the first call
                 * after an activation (most often a Probe or an Attach)
                 * needs (issue 20: cold activation). */
                if (virt_host_info(m->virt, &h, &error) < 0)
                        log_debug("Host facts not read ahead: %s", error.message);
                sd_bus_error_free(&error);
                manager_startup_mark(m, "host facts read");
                if (!virt_events_wait_settled(m->events, MANAGER_EVENTS_WAIT_MS))
                        log_warning("libvirt's events are not subscribed after %u s; scanning anyway.",
                                    MANAGER_EVENTS_WAIT_MS / 1000U);
                manager_startup_mark(m, "scan started");
        }
        if (j->cleanup_orphans)
                pthread_rwlock_wrlock(&m->ops_lock);
        j->r = scan_volumes(m->virt, &j->found, &j->complete, &j->error);
        /* Test-only: a scan whose picture ages while events arrive. */
        if (fault_trigger("scan:slow"))
                (void) usleep(3 * 1000 * 1000);
        if (j->initial)
                manager_startup_mark(m, "volumes scanned");
        /* Secrets staged for incoming guests (stage.c) are nobody's
         * orphans; read under the lock, where no staging defines one. */
        if (j->cleanup_orphans && !stage_keep_secrets(m, &j->keep_saved)) {
                log_warning("Out of memory; orphan cleanup postponed to the next scan.");
                j->complete = false;
        }
        /* Only with a complete picture: a domain we could not read must
         * not make its secrets and mappings look orphaned. */
        if (j->r >= 0 && j->complete && j->cleanup_orphans) {
                /* Both lists, for the cleanup's look-up only. */
                Volume *last = j->found;
                while (last && last->next)
                        last = last->next;
                if (last)
                        last->next = j->keep_saved;
                scan_cleanup_orphans(m->virt, last ? j->found : j->keep_saved);
                if (last)
                        last->next = NULL;
        } else if (j->r >= 0 && !j->complete)
                log_warning("Scan incomplete; orphan cleanup postponed to the next scan.");
        if (j->cleanup_orphans)
                pthread_rwlock_unlock(&m->ops_lock);

        /* Reading the sources (their LUKS headers, their identity) may
         * take until the deadline on a hung file system: not while every
         * attach and detach waits for the lock above. */
        if (j->initial)
                manager_startup_mark(m, "orphans cleaned up");
        volume_fill_source_facts_all(j->found, m->config.source_timeout_sec * 1000U);
        if (j->initial)
                manager_startup_mark(m, "sources read");
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                log_error("Failed to acquire the bus name %s: %s", LV_BUS_NAME, e->message);
                return sd_event_exit(m->event, 1);
        }
        manager_startup_mark(m, "name acquired");
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
 * after an incomplete scan, except for removals (absence proves nothing).
 * Sizes only if no Resize ended meanwhile (the scan's may be older). */
static void reconcile(Manager *m, Volume *found, bool complete, bool sizes_current, uint64_t state_seq) {
        for (Volume *v = m->volumes, *n; v; v = n) {
                n = v->next;
                /* A saved volume no scan can see (virsh save) stays until
                 * its domain is restored or gone. */
                if (complete && !v->operation_pending && v->state != VOLUME_STATE_SAVED &&
                    !find_in_list(found, v->path)) {
                        log_info("Volume %s is gone from libvirt; removing its object.", v->path);
                        manager_remove_volume(m, v);
                }
        }

        for (Volume *v = found, *n; v; v = n) {
                n = v->next;
                v->next = NULL;
                Volume *have = manager_find_volume_by_path(m, v->path);
                if (have && (have->operation_pending || streq_ptr(have->source, v->source))) {
                        /* Saved or running, as libvirt says now — unless a
                         * saved or restored event set the state after the
                         * scan began: its picture is older then (a save
                         * during the scan looked "running" to it, and the
                         * volume would have lost its saved state, and with
                         * it, to the next recheck, its secret and shim). */
                        bool saved = v->state == VOLUME_STATE_SAVED;
                        if (!have->operation_pending && have->state_seq <= state_seq &&
                            saved != (have->state == VOLUME_STATE_SAVED)) {
                                have->state = saved ? VOLUME_STATE_SAVED : VOLUME_STATE_ATTACHED;
                                (void) volume_bus_emit_state(have);
                        }
                        /* Resized behind our back (virsh blockresize): the
                         * guest's size is libvirt's. */
                        if (sizes_current && !have->operation_pending && !have->resize_pending && v->size != 0 &&
                            v->size != have->size) {
                                have->size = v->size;
                                (void) volume_bus_emit_size(have);
                        }
                        volume_free(v);
                        continue;
                }
                (void) manager_add_volume(m, v);
        }
}

static void report_migrated_in(Manager *m, const char *uuid) {
        for (Volume *v = m->volumes; v; v = v->next)
                if (streq(v->domain_uuid, uuid)) {
                        /* Not adopted silently: whoever moved the guest
                         * must know that this host now holds (or lacks)
                         * what decrypts its disk. */
                        log_volume_event(
                                VOLUME_EVENT_MIGRATED, LOG_LEVEL_WARNING, v->domain, v->source, v->target,
                                volume_mode_to_string(v->mode),
                                "Domain '%s' arrived from another host with %s attached by this service there; "
                                "its %s %s here.",
                                v->domain, v->path, v->mode == VOLUME_MODE_NATIVE ? "secret" : "mapping",
                                (v->mode == VOLUME_MODE_NATIVE ? !isempty(v->secret_uuid) : !isempty(v->mapper_device))
                                        ? "is defined"
                                        : "is missing");
                        (void) volume_bus_emit_migrated(v, "in");
                }
}

static void scan_done(void *userdata) {
        ScanJob *j = userdata;
        Manager *m = j->manager;
        int r;

        m->scan_in_flight--;
        if (j->r < 0)
                /* Start anyway: calls report libvirt's state, and the next
                 * (re)connect rescans. */
                log_warning("Could not rebuild volumes from libvirt: %s",
                            j->error.message ? j->error.message : "unknown error");
        else {
                reconcile(m, TAKE_PTR(j->found), j->complete, j->resizes == m->resizes, j->state_seq);
                /* What the scan read may have changed before it finished:
                 * events since its start are applied again now that the
                 * volumes they concern are in the registry. */
                for (Volume *v = m->volumes; v; v = v->next)
                        (void) manager_volume_gone_since(m, v, j->event_seq);
                if (j->migrated_in[0])
                        report_migrated_in(m, j->migrated_in);
                stage_after_scan(m);
        }

        bool initial = j->initial;
        for (Volume *v = j->found, *n; v; v = n) {
                n = v->next;
                volume_free(v);
        }
        for (Volume *v = j->keep_saved, *n; v; v = n) {
                n = v->next;
                volume_free(v);
        }
        sd_bus_error_free(&j->error);
        free(j);

        if (initial) {
                manager_startup_mark(m, "registry rebuilt, asking for the name");
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
        j->state_seq = m->state_seq;
        j->resizes = m->resizes;
        /* Orphans can only be told apart from work in progress when none
         * is in progress; at start there is none by construction. */
        j->cleanup_orphans = true;
        m->scan_in_flight++;
        snprintf(j->migrated_in, sizeof j->migrated_in, "%s", m->migrated_in);
        m->migrated_in[0] = '\0';

        for (Volume *v = m->volumes; v; v = v->next) {
                Volume *copy = NULL;

                if (v->state != VOLUME_STATE_SAVED)
                        continue;
                if (volume_new(v->domain, v->domain_uuid, v->target, &copy) < 0 ||
                    (v->secret_uuid && !(copy->secret_uuid = strdup(v->secret_uuid))) ||
                    (v->mapper_device && !(copy->mapper_device = strdup(v->mapper_device))) ||
                    (v->shim_device && !(copy->shim_device = strdup(v->shim_device)))) {
                        /* Without the full list, no orphan cleanup. */
                        j->cleanup_orphans = false;
                        if (copy)
                                volume_free(copy);
                        break;
                }
                copy->next = j->keep_saved;
                j->keep_saved = copy;
        }

        r = worker_submit(m->worker, scan_job, scan_done, j);
        if (r < 0) {
                m->scan_in_flight--;
                for (Volume *v = j->keep_saved, *n; v; v = n) {
                        n = v->next;
                        volume_free(v);
                }
                free(j);
                return log_error_errno(r, "Failed to start the volume scan: %m");
        }
        return 0;
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
                        /* Its domain's stop event: as on_domain_gone() does. */
                        manager_volume_cleanup(m, v, "its domain stopped meanwhile");
                        return true;
                }
                if (streq(m->recent[i].alias, ours)) {
                        manager_volume_verify_gone(m, v, "its disk went away meanwhile");
                        return true;
                }
        }
        return false;
}

/* The volume whose disk has that alias in that domain. */
static Volume *volume_of_disk(Manager *m, const char *uuid, const char *alias) {
        for (Volume *v = m->volumes; v; v = v->next) {
                _cleanup_free_ char *ours = NULL;

                if (streq(v->domain_uuid, uuid) && disk_alias_build(uuid, v->target, &ours) >= 0 &&
                    streq_ptr(alias, ours))
                        return v;
        }
        return NULL;
}

/* The domain is not running here any more (stopped, crashed, undefined,
 * migrated away): its volumes' secrets and mappings go. */
static void on_domain_gone(Manager *m, const char *uuid, const char *why) {
        remember_event(m, uuid, NULL);

        for (Volume *v = m->volumes, *n; v; v = n) {
                n = v->next;
                if (!streq(v->domain_uuid, uuid))
                        continue;
                if (v->waiter)
                        v->waiter->domain_gone(v->waiter);
                else
                        manager_volume_cleanup(m, v, why);
        }
}

/* Saved with its disks (virsh save, managedsave, libvirt-guests at host
 * shutdown): the restore needs the secrets and mappings as they are. */
static void on_domain_saved(Manager *m, const char *uuid) {
        for (Volume *v = m->volumes; v; v = v->next) {
                if (!streq(v->domain_uuid, uuid))
                        continue;
                if (v->waiter)
                        v->waiter->saved(v->waiter);
                if (v->state != VOLUME_STATE_SAVED) {
                        v->state = VOLUME_STATE_SAVED;
                        v->state_seq = ++m->state_seq;
                        (void) volume_bus_emit_state(v);
                }
                log_volume_event(VOLUME_EVENT_SAVED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode),
                                 "Domain '%s' was saved with %s: its %s is kept for the restore.", v->domain, v->path,
                                 v->mode == VOLUME_MODE_NATIVE ? "secret" : "mapping");
        }
}

static void on_domain_restored(Manager *m, const char *uuid) {
        bool any = false;

        for (Volume *v = m->volumes; v; v = v->next)
                if (streq(v->domain_uuid, uuid) && v->state == VOLUME_STATE_SAVED) {
                        v->state = VOLUME_STATE_ATTACHED;
                        v->state_seq = ++m->state_seq;
                        (void) volume_bus_emit_state(v);
                        any = true;
                }
        /* An older save image may lack a disk attached since: the live XML
         * decides which volumes came back. */
        if (any)
                (void) manager_rescan(m, false);
}

static void on_migrated_out(Manager *m, const char *uuid) {
        for (Volume *v = m->volumes; v; v = v->next)
                if (streq(v->domain_uuid, uuid)) {
                        log_volume_event(VOLUME_EVENT_MIGRATED, LOG_LEVEL_NOTICE, v->domain, v->source, v->target,
                                         volume_mode_to_string(v->mode),
                                         "Domain '%s' migrated to another host with %s; cleaning up here.", v->domain,
                                         v->path);
                        (void) volume_bus_emit_migrated(v, "out");
                }
        on_domain_gone(m, uuid, "its domain migrated to another host");
}

static void on_device_removed(Manager *m, const char *uuid, const char *alias) {
        Volume *v;

        remember_event(m, uuid, alias);
        v = volume_of_disk(m, uuid, alias);
        if (!v)
                return;
        /* A Detach waiting for it finishes (it confirms in the live XML);
         * otherwise it is a guest that let go after a Detach answered Busy,
         * or someone unplugging our disk behind our back, which ends the
         * volume just the same -- or an event about an earlier plug at this
         * target (same alias) arriving late, after a new plug: so the live
         * XML decides (seen in CI, 2026-12-06: the clean-up of a disk the
         * guest had). */
        if (v->waiter)
                v->waiter->removed(v->waiter);
        else
                manager_volume_verify_gone(m, v,
                                           v->state == VOLUME_STATE_DETACHING
                                                   ? "the guest released it"
                                                   : "it was unplugged outside this service");
}

static void on_device_removal_failed(Manager *m, const char *uuid, const char *alias) {
        Volume *v = volume_of_disk(m, uuid, alias);

        if (!v)
                return;
        if (v->waiter) {
                v->waiter->refused(v->waiter);
                return;
        }
        /* The guest refused a request a Detach made earlier (and answered
         * Busy for): the disk stays. */
        log_notice("The guest refused to release %s; it stays attached.", v->path);
        if (v->state == VOLUME_STATE_DETACHING) {
                v->state = VOLUME_STATE_ATTACHED;
                (void) volume_bus_emit_state(v);
        }
}

void manager_on_virt_event(const VirtEvent *event, void *userdata) {
        Manager *m = userdata;

        log_debug("libvirt event %d: domain %s, device %s", event->kind, event->domain_uuid,
                  strempty(event->device_alias));

        switch (event->kind) {
        case VIRT_EVENT_DOMAIN_STOPPED:
                on_domain_gone(m, event->domain_uuid, "its domain stopped");
                stage_domain_gone(m, event->domain_uuid);
                break;
        case VIRT_EVENT_DOMAIN_SAVED:
                on_domain_saved(m, event->domain_uuid);
                break;
        case VIRT_EVENT_DOMAIN_RESTORED:
                on_domain_restored(m, event->domain_uuid);
                break;
        case VIRT_EVENT_DOMAIN_MIGRATED_OUT:
                on_migrated_out(m, event->domain_uuid);
                break;
        case VIRT_EVENT_DOMAIN_MIGRATED_IN:
                /* Disks of ours in a guest that comes from another host: the
                 * scan finds them, and reports them (scan_done()). */
                snprintf(m->migrated_in, sizeof m->migrated_in, "%s", event->domain_uuid);
                stage_domain_arrived(m, event->domain_uuid);
                (void) manager_rescan(m, false);
                break;
        case VIRT_EVENT_DEVICE_REMOVED:
                on_device_removed(m, event->domain_uuid, event->device_alias);
                break;
        case VIRT_EVENT_DEVICE_REMOVAL_FAILED:
                on_device_removal_failed(m, event->domain_uuid, event->device_alias);
                break;
        case VIRT_EVENT_CONNECTED:
                manager_startup_mark(m, "events connection up");
                /* The first connection is the one the start-up scan waited
                 * for (the host's facts it read are current). */
                if (event->first && m->initial_scan_started)
                        break;
                virt_connection_changed(m->virt);
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
                virt_connection_changed(m->virt);
                /* Unreachable from the start: start anyway; calls will say
                 * so, and the eventual connection rescans. */
                if (!m->initial_scan_started)
                        (void) manager_rescan(m, true);
                log_warning("libvirt is unreachable; calls fail until it is back.");
                break;
        }
}
