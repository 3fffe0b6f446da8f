/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's state: the loop, the bus, the libvirt side, the registry of
 * attached volumes and the operations in flight. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "mode.h"
#include "disk-index.h"
#include "events.h"
#include "polkit.h"
#include "ratelimit.h"
#include "uid-cap.h"
#include "virt.h"
#include "volume.h"
#include "worker.h"

#define LV_BUS_NAME          "org.example.LuksVolume1"
#define LV_MANAGER_INTERFACE "org.example.LuksVolume1"
#define LV_VOLUME_INTERFACE  "org.example.LuksVolume1.Volume"

/* A source claimed by an Attach in flight, so that two concurrent
 * attaches of one source cannot both succeed. */
typedef struct SourceClaim {
        dev_t dev;
        ino_t ino;
        struct SourceClaim *next;
} SourceClaim;

typedef struct Call Call;
typedef struct Staged Staged;

/* Key management (keys.c) answers Busy to a uid that gave this many wrong
 * passphrases within the window. */
#define KEY_GUESSES_BURST      5U
#define KEY_GUESSES_WINDOW_SEC 60U

/* Work a caller can make last, capped (uid-cap.h) well below the workers.
 * Key derivations: each up to the header limits' worth of CPU and memory.
 * Passphrase descriptors being read: a pipe that never delivers holds a
 * worker for PASSPHRASE_FD_TIMEOUT_MS. */
#define DERIVE_MAX_IN_FLIGHT 4U
#define DERIVE_MAX_PER_UID   2U
#define FD_READS_MAX_TOTAL   6U
#define FD_READS_MAX_PER_UID 2U
/* Worker threads (worker.h). */
#define MANAGER_WORKERS      16U
_Static_assert(DERIVE_MAX_IN_FLIGHT < MANAGER_WORKERS, "derivations must never take every worker");
_Static_assert(DERIVE_MAX_IN_FLIGHT + FD_READS_MAX_TOTAL < MANAGER_WORKERS,
               "derivations and passphrase reads together must leave workers to other calls");

typedef struct Manager {
        ManagerConfig config;

        sd_event *event;
        sd_bus *bus;
        Worker *worker;
        Virt *virt;
        DiskIndex *disks; /* what the domains' disks use (the in-use check) */
        PolkitRegistry *polkit;
        VirtEvents *events;

        /* Attach and detach jobs hold it shared for their whole run; the
         * orphan cleanup holds it exclusively, so it can never take a
         * secret or mapping an operation has just created for its own. */
        pthread_rwlock_t ops_lock;

        Volume *volumes;
        unsigned n_volumes;
        uint64_t last_generation; /* Volume.generation of the newest */
        /* Every method call from parse to reply (call.h): at shutdown they
         * are freed — passphrases wiped — even if polkit or a worker never
         * got back to them. */
        Call *calls;
        SourceClaim *claims;
        unsigned n_claims;
        /* Secrets defined for guests expected to migrate here (stage.c). */
        Staged *staged;
        unsigned n_staged;
        /* Wrong passphrases given to the key management methods, per uid
         * (keys.c): KEY_GUESSES_BURST within KEY_GUESSES_WINDOW_SEC. */
        RateLimit *key_guesses;
        /* Passphrase descriptors being read (read_passphrase_option()). */
        UidCap *fd_reads;
        /* Key derivations in flight, in total and per uid (uid-cap.h);
         * workers take and put them. */
        UidCap *derivations;

        /* Recent domain-stopped and device-removed events, numbered, so
         * work that started before an event (an attach plugging a disk into
         * a guest as it stopped, a scan reading XML just before a device
         * went) can tell when it lands in the registry. */
        struct {
                char uuid[37];
                char alias[96]; /* "" for a domain stop */
                uint64_t seq;
        } recent[64];
        uint64_t event_seq;
        /* Bumped whenever a saved or restored event sets a volume's State:
         * a scan that started earlier saw the state before it. */
        uint64_t state_seq;
        bool initial_scan_started;
        uint64_t start_usec; /* CLOCK_MONOTONIC at main()'s start: the start-up's profile */
        /* A guest that came from another host: the next scan reports the
         * volumes of ours it finds in it. */
        char migrated_in[37];
        /* Reconciliation: volumes left "detaching" by a Detach that
         * answered Busy are looked at every few seconds, everything now and
         * then (libvirt does not always send an event). */
        sd_event_source *recheck_timer;
        sd_event_source *rescan_timer;
        unsigned scan_in_flight;
        /* Resizes that ended: a scan that saw sizes before one did must not
         * put its older size back. */
        uint64_t resizes;

        unsigned calls_in_flight;
        sd_event_source *idle_timer;
        bool name_acquired;
        bool exiting;  /* name released: exit once idle */
        bool stopping; /* manager_free() at work: calls end unanswered */
} Manager;

int manager_new(const ManagerConfig *config, Manager **ret);
Manager *manager_free(Manager *m);

/* Connects the bus, exports objects, rebuilds volumes from libvirt, then
 * takes the bus name. */
int manager_start(Manager *m);

Volume *manager_find_volume_by_path(Manager *m, const char *path);
/* The volume at path, if it is still the one of that generation. */
Volume *manager_find_volume(Manager *m, const char *path, uint64_t generation);
Volume *manager_find_volume_by_source(Manager *m, dev_t dev, ino_t ino);
/* Takes ownership; emits InterfacesAdded when the bus is up. */
int manager_add_volume(Manager *m, Volume *v);
/* Unlinks, emits InterfacesRemoved, frees. */
void manager_remove_volume(Manager *m, Volume *v);

bool manager_source_claimed(Manager *m, dev_t dev, ino_t ino);
int manager_claim_source(Manager *m, dev_t dev, ino_t ino);
void manager_release_source(Manager *m, dev_t dev, ino_t ino);

/* Worker threads only: the host facts every mode decision needs (libvirt's
 * and QEMU's versions, the configured minimums, dm-crypt); the volume's
 * part (LUKS version, requested mode, passphrase) is left for the caller. */
int manager_mode_input(Manager *m, ModeInput *ret, HostInfo *ret_host, sd_bus_error *error);

/* Event loop: reserves a guess for uid in Manager.key_guesses (every method
 * that tells whether a passphrase is right: the key methods, Attach,
 * Rearm).  0 and *ret_counted set (never for root, which is not limited);
 * Error.Busy with the wait past the limit.  Settled with
 * manager_guess_end(), failed for a wrong passphrase. */
int manager_guess_begin(Manager *m, uid_t uid, bool *ret_counted, sd_bus_error *error);
void manager_guess_end(Manager *m, uid_t uid, bool *counted, bool failed);

/* Worker threads: a place among the key derivations in flight for uid
 * (uid-cap.h), or Error.Busy naming the cap.  Released with
 * manager_derive_end(). */
/* How long the start-up scan waits for libvirt's events to be subscribed
 * (or libvirt to be found unreachable) before it scans anyway. */
#define MANAGER_EVENTS_WAIT_MS 5000U

/* Logs (debug) how long after main()'s start the start-up reached what;
 * nothing once the name is taken. */
void manager_startup_mark(Manager *m, const char *what);

int manager_derive_begin(Manager *m, uid_t uid, sd_bus_error *error);
void manager_derive_end(Manager *m, uid_t uid);

/* Called when a method call starts and when it has been answered; drives
 * the idle exit. */
void manager_call_begin(Manager *m);
void manager_call_end(Manager *m);
bool manager_is_idle(Manager *m);
/* (Re)arms the idle-exit timer if nothing is in flight. */
void manager_arm_idle(Manager *m);

/* manager-events.c: rebuilding state from libvirt and following its events */
/* Scans libvirt's running domains and reconciles the registry with them;
 * initial: the start-up scan, after which the bus name is requested. */
int manager_rescan(Manager *m, bool initial);
void manager_on_virt_event(const VirtEvent *event, void *userdata);
/* Did an event say v's domain stopped, or v's disk went, after sequence
 * number seq (Manager.event_seq)?  If so, have the live XML looked at
 * (manager_volume_verify_gone()) and return true. */
bool manager_volume_gone_since(Manager *m, Volume *v, uint64_t seq);

/* manager-reconcile.c: clean-up and the looks at the live XML */
/* Undefines the secret / closes the mapping, then removes the object;
 * unless an operation is already at work on the volume. */
void manager_volume_cleanup(Manager *m, Volume *v, const char *why);
/* An event says v's disk or domain is gone: look at the live XML, and
 * clean v up (saying why, a static string) if it is so.  Events name a
 * disk by its alias, the same for every plug at one target: a late one may
 * be about an earlier plug. */
void manager_volume_verify_gone(Manager *m, Volume *v, const char *why);
/* Arms the reconciliation timers. */
int manager_reconcile_start(Manager *m);

/* manager-bus.c */
int manager_bus_register(Manager *m);
/* volume-bus.c */
int volume_bus_register(Manager *m);
int volume_bus_emit_added(Volume *v);
int volume_bus_emit_removed(Volume *v);
int volume_bus_emit_state(Volume *v);
int volume_bus_emit_size(Volume *v);
/* VolumeMigrated(o volume, s domain, s target, s direction) on the manager;
 * direction "out" (it left this host) or "in" (it arrived). */
int volume_bus_emit_migrated(Volume *v, const char *direction);
