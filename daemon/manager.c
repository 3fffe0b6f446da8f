/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <systemd/sd-daemon.h>

#include "call.h"
#include "disk-xml.h"
#include "errors.h"
#include "dm-linear.h"
#include "luks.h"
#include "manager.h"
#include "scan.h"
#include "stage.h"
#include "util.h"
#include "volume-id.h"

int manager_new(const ManagerConfig *config, Manager **ret) {
        Manager *m;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->config = *config;
        m->config.libvirt_uri = strdup(config->libvirt_uri);
        if (!m->config.libvirt_uri) {
                free(m);
                return -ENOMEM;
        }

        pthread_rwlock_init(&m->ops_lock, NULL);

        r = sd_event_default(&m->event);
        if (r < 0)
                goto fail;
        (void) sd_event_set_watchdog(m->event, true);

        /* The threads mostly wait on RPCs, so a handful is plenty for
         * parallel domains; key derivations (seconds of CPU each) may take
         * only DERIVE_MAX_IN_FLIGHT of them. */
        r = worker_new(m->event, MANAGER_WORKERS, &m->worker);
        if (r < 0)
                goto fail;

        r = virt_new(m->config.libvirt_uri, &m->virt);
        if (r < 0)
                goto fail;
        worker_set_thread_exit(m->worker, virt_thread_done, m->virt);

        r = disk_index_new(&m->disks);
        if (r < 0)
                goto fail;

        r = ratelimit_new(KEY_GUESSES_BURST, KEY_GUESSES_WINDOW_SEC * 1000000ULL, &m->key_guesses);
        if (r < 0)
                goto fail;
        r = uid_cap_new(FD_READS_MAX_TOTAL, FD_READS_MAX_PER_UID, &m->fd_reads);
        if (r < 0)
                goto fail;
        r = uid_cap_new(DERIVE_MAX_IN_FLIGHT, DERIVE_MAX_PER_UID, &m->derivations);
        if (r < 0)
                goto fail;

        *ret = m;
        return 0;

fail:
        manager_free(m);
        return r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* The calls freed below go unanswered: the bus tells their callers
         * the service went away, which is the truth (an attach may have
         * plugged its disk); call_done() must not answer Failed. */
        m->stopping = true;
        /* Threads first: their done callbacks reference the manager.  (No
         * job waits for a guest: detaches wait on the loop.) */
        m->name_acquired = false;
        m->worker = worker_free(m->worker);
        m->events = virt_events_stop(m->events);
        /* polkit drops pending queries without calling back, and the
         * worker dropped queued jobs: the calls they belonged to (attaches
         * among them, holding passphrases) are freed here, whatever their
         * references say — nothing else will ever release them. */
        m->polkit = polkit_registry_free(m->polkit);
        while (m->calls)
                m->calls->free_fn(m->calls);
        m->key_guesses = ratelimit_free(m->key_guesses);
        m->fd_reads = uid_cap_free(m->fd_reads);
        m->derivations = uid_cap_free(m->derivations);

        for (Volume *v = m->volumes, *n; v; v = n) {
                n = v->next;
                volume_free(v);
        }
        for (SourceClaim *c = m->claims, *n; c; c = n) {
                n = c->next;
                free(c);
        }
        stage_free_all(m);

        sd_event_source_disable_unref(m->idle_timer);
        sd_event_source_disable_unref(m->recheck_timer);
        sd_event_source_disable_unref(m->rescan_timer);
        sd_bus_flush_close_unref(m->bus);
        m->virt = virt_free(m->virt);
        m->disks = disk_index_free(m->disks);
        sd_event_unref(m->event);
        free(m->config.libvirt_uri);
        pthread_rwlock_destroy(&m->ops_lock);
        free(m);
        return NULL;
}

Volume *manager_find_volume_by_path(Manager *m, const char *path) {
        for (Volume *v = m->volumes; v; v = v->next)
                if (streq(v->path, path))
                        return v;
        return NULL;
}

Volume *manager_find_volume(Manager *m, const char *path, uint64_t generation) {
        Volume *v = manager_find_volume_by_path(m, path);
        return v && v->generation == generation ? v : NULL;
}

Volume *manager_find_volume_by_source(Manager *m, dev_t dev, ino_t ino) {
        for (Volume *v = m->volumes; v; v = v->next)
                if (v->source_identity_known && v->source_dev == dev && v->source_ino == ino)
                        return v;
        return NULL;
}

int manager_add_volume(Manager *m, Volume *v) {
        Volume *old = manager_find_volume_by_path(m, v->path);

        /* Same domain and target: the old object describes a disk that is
         * no longer there (the new one took its place). */
        if (old)
                manager_remove_volume(m, old);

        v->manager = m;
        v->generation = ++m->last_generation;
        v->next = m->volumes;
        m->volumes = v;
        m->n_volumes++;
        (void) volume_bus_emit_added(v);
        return 0;
}

void manager_remove_volume(Manager *m, Volume *v) {
        /* Emitted while the object still exists: sd-bus builds the
         * interface list of InterfacesRemoved by looking the object up. */
        (void) volume_bus_emit_removed(v);

        for (Volume **pp = &m->volumes; *pp; pp = &(*pp)->next)
                if (*pp == v) {
                        *pp = v->next;
                        m->n_volumes--;
                        volume_free(v);
                        return;
                }
}

int manager_mode_input(Manager *m, ModeInput *ret, HostInfo *ret_host, sd_bus_error *error) {
        HostInfo h;
        int r;

        r = virt_host_info(m->virt, &h, error);
        if (r < 0)
                return r;

        *ret = (ModeInput){
                .libvirt_version = h.libvirt_version,
                .hypervisor_version = h.hypervisor_version,
                .min_libvirt_version = m->config.min_libvirt_version,
                .min_hypervisor_version = m->config.min_qemu_version,
                .hypervisor_is_qemu = streq(h.hypervisor, "QEMU"),
                .dm_crypt_available = luks_dm_crypt_available(),
                .dm_linear_available = dm_linear_available(),
                .requested = VOLUME_MODE_AUTO,
        };
        if (ret_host)
                *ret_host = h;
        return 0;
}

bool manager_source_claimed(Manager *m, dev_t dev, ino_t ino) {
        for (SourceClaim *c = m->claims; c; c = c->next)
                if (c->dev == dev && c->ino == ino)
                        return true;
        return false;
}

int manager_claim_source(Manager *m, dev_t dev, ino_t ino) {
        SourceClaim *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->dev = dev;
        c->ino = ino;
        c->next = m->claims;
        m->claims = c;
        m->n_claims++;
        return 0;
}

void manager_release_source(Manager *m, dev_t dev, ino_t ino) {
        for (SourceClaim **pp = &m->claims; *pp; pp = &(*pp)->next)
                if ((*pp)->dev == dev && (*pp)->ino == ino) {
                        SourceClaim *c = *pp;
                        *pp = c->next;
                        free(c);
                        m->n_claims--;
                        return;
                }
}

/* Idle exit: with nothing in flight for idle_timeout_sec, give the name
 * back first and exit only once the bus confirms, so that calls queued
 * meanwhile are still ours to answer and later ones activate a new
 * instance, which rebuilds the same state from libvirt. */
static void manager_exit_if_idle(Manager *m) {
        if (!m->exiting || !manager_is_idle(m))
                return;
        log_info("Exiting after %u s idle.", m->config.idle_timeout_sec);
        (void) sd_notify(false, "STOPPING=1");
        (void) sd_event_exit(m->event, 0);
}

static int on_name_released(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;

        m->name_acquired = false;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* Still ours: carry on as if the timer had not fired. */
                log_warning("Failed to release the bus name: %s", sd_bus_message_get_error(reply)->message);
                m->name_acquired = true;
                manager_arm_idle(m);
                return 0;
        }
        /* Calls routed to us before the release took effect arrive before
         * this reply; answer them all, then exit. */
        m->exiting = true;
        manager_exit_if_idle(m);
        return 0;
}

bool manager_is_idle(Manager *m) {
        if (m->calls_in_flight > 0 || worker_in_flight(m->worker) > 0)
                return false;
        /* While anything is attached the daemon must follow libvirt's
         * events: a guest that stops must take its secret (in libvirtd's
         * memory) or its dm-crypt mapping (a cleartext device on the host)
         * along at once, not whenever the next call happens to come.
         * A staged secret likewise waits for its domain or its expiry. */
        return !m->volumes && !m->staged;
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        if (!manager_is_idle(m))
                return 0;

        r = sd_bus_release_name_async(m->bus, NULL, LV_BUS_NAME, on_name_released, m);
        if (r < 0) {
                log_warning_errno(r, "Failed to release the bus name, exiting anyway: %m");
                return sd_event_exit(m->event, 0);
        }
        return 0;
}

void manager_arm_idle(Manager *m) {
        uint64_t now;
        int r;

        if (m->exiting) {
                manager_exit_if_idle(m);
                return;
        }
        if (m->config.idle_timeout_sec == 0 || !m->name_acquired || !manager_is_idle(m))
                return;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        now += (uint64_t) m->config.idle_timeout_sec * 1000000ULL;

        if (m->idle_timer) {
                (void) sd_event_source_set_time(m->idle_timer, now);
                (void) sd_event_source_set_enabled(m->idle_timer, SD_EVENT_ONESHOT);
                return;
        }
        r = sd_event_add_time(m->event, &m->idle_timer, CLOCK_MONOTONIC, now, 0, on_idle_timer, m);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the idle timer: %m");
}

void manager_call_begin(Manager *m) {
        m->calls_in_flight++;
        if (m->idle_timer)
                (void) sd_event_source_set_enabled(m->idle_timer, SD_EVENT_OFF);
}

void manager_call_end(Manager *m) {
        if (m->calls_in_flight > 0)
                m->calls_in_flight--;
        if (m->exiting)
                manager_exit_if_idle(m);
        else
                manager_arm_idle(m);
}

void manager_startup_mark(Manager *m, const char *what) {
        struct timespec ts;

        if (log_get_max_level() < LOG_LEVEL_DEBUG || m->name_acquired)
                return;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        log_debug("Start-up: %s at +%.1f ms.", what,
                  (double) ((uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000U - m->start_usec) /
                          1000.0);
}

int manager_start(Manager *m) {
        int r;

        manager_startup_mark(m, "manager set up");

        /* libvirt first: its connections take longest, and the bus set-up
         * below runs meanwhile.  Events go to the loop, which runs once
         * this returns. */
        r = virt_events_start(m->event, m->config.libvirt_uri, m->disks, manager_on_virt_event, m, &m->events);
        if (r < 0)
                return log_error_errno(r, "Failed to start following libvirt events: %m");
        /* The start-up scan's worker connects (and reads the host's facts)
         * while the events thread does, then waits for it to subscribe —
         * or to find libvirt unreachable — before it reads anything, so
         * that nothing can happen unseen between what the scan reads and
         * what the events report (scan_job()). */
        r = manager_rescan(m, true);
        if (r < 0)
                return r;

        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the system bus: %m");
        r = sd_bus_attach_event(m->bus, m->event, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        /* Without the bus the daemon has no purpose; leave instead of
         * spinning on a dead connection. */
        (void) sd_bus_set_exit_on_disconnect(m->bus, true);

        r = polkit_registry_new(m->bus, m->config.max_pending_polkit, &m->polkit);
        if (r < 0)
                return log_error_errno(r, "Failed to set up polkit: %m");

        r = sd_bus_add_object_manager(m->bus, NULL, LV_OBJECT_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to add the object manager: %m");
        r = manager_bus_register(m);
        if (r < 0)
                return r;
        r = volume_bus_register(m);
        if (r < 0)
                return r;

        r = manager_reconcile_start(m);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the reconciliation timers: %m");
        manager_startup_mark(m, "on the bus");
        return 0;
}

int manager_derive_begin(Manager *m, uid_t uid, sd_bus_error *error) {
        int r = uid_cap_take(m->derivations, uid);

        if (r == -EUSERS)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "This user already has %u key derivations in flight; try again when one "
                                         "has finished.",
                                         DERIVE_MAX_PER_UID);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "%u key derivations are in flight, the most this service runs at once; try "
                                         "again in a moment.",
                                         DERIVE_MAX_IN_FLIGHT);
        return 0;
}

void manager_derive_end(Manager *m, uid_t uid) {
        uid_cap_put(m->derivations, uid);
}

static uint64_t guess_now_usec(Manager *m) {
        uint64_t t = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

int manager_guess_begin(Manager *m, uid_t uid, bool *ret_counted, sd_bus_error *error) {
        uint64_t wait = 0;
        int r;

        *ret_counted = false;
        if (uid == 0)
                return 0;
        r = ratelimit_begin(m->key_guesses, uid, guess_now_usec(m), &wait);
        if (r == -EBUSY)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "Too many wrong passphrases (%u within %u s) from this user; try again in "
                                         "%" PRIu64 " s.",
                                         KEY_GUESSES_BURST, KEY_GUESSES_WINDOW_SEC, (wait + 999999) / 1000000);
        if (r < 0)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        *ret_counted = true;
        return 0;
}

void manager_guess_end(Manager *m, uid_t uid, bool *counted, bool failed) {
        if (!*counted)
                return;
        *counted = false;
        ratelimit_end(m->key_guesses, uid, guess_now_usec(m), failed);
}
