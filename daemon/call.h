/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every method call of the Manager goes through between parsing and
 * acting: resolving what polkit's details need, authorizing, running jobs on
 * workers, and answering — refusals so that they reveal nothing.
 *
 * Resolution (the canonical source path, the domain's name and UUID) runs on
 * a worker, on things the caller named.  The source is resolved with the
 * caller's own file-system credentials (uid, gid and groups from the bus
 * driver; root callers as root), so that what it finds is what the caller
 * could find with stat() itself.  Its outcome must not reach a caller
 * polkit refuses, neither as an error nor through timing:
 *  - polkit is asked as soon as resolution is done or CALL_RESOLVE_WINDOW_MS
 *    after the call arrived, whichever comes first; what is not resolved by
 *    then is asked about as the caller gave it;
 *  - a refusal is never sent earlier than CALL_RESOLVE_WINDOW_MS after the
 *    call arrived, so an existing, a missing, an unreadable and a hanging
 *    path all get the same answer at about the same time;
 *  - an authorized caller then gets the resolution's own outcome (errors
 *    included); if the resolved details differ from those polkit was asked
 *    about, polkit is asked again with the resolved ones.
 *
 * Where the caller's permissions stop the resolution (a directory it cannot
 * search, a file it cannot read), polkit has been asked with the caller's
 * strings, and only once it said yes is the source resolved again as root
 * (call_after_resolution()):
 *  - with res.unreadable_action set (Probe), that admin action must allow
 *    it first, asked with the caller's strings; once it did, the caller
 *    learns what root finds, as an admin would;
 *  - without (Attach, the key methods), polkit is then asked, without
 *    interaction, about the resolved details; until it said yes every
 *    outcome — root found nothing, or found something polkit refuses — is
 *    answered alike, as the caller's own "permission denied" at the end
 *    of the window.  An admin whom a rule allows the resolved path keeps
 *    working; nobody learns what lies behind a place it cannot see unless
 *    polkit allowed the resolved details.
 * Source resolutions in flight are capped per uid (root exempt), and their
 * deadline threads count against the caller's uid (deadline.h).
 *
 * A Call is reference counted: the operation holds one reference, each job
 * on a worker and each held-back reply one more; the operation's free
 * function runs when the last goes.  At shutdown the manager frees whatever
 * is left (manager_free()). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "source.h"

typedef struct Manager Manager;

#define CALL_RESOLVE_WINDOW_MS     250U
/* Source resolutions one uid may have in flight (each may hold a worker for
 * the source deadline); root is exempt. */
#define CALL_MAX_RESOLVING_PER_UID 4U

/* What the caller named, and what it resolves to. */
typedef struct Resolution {
        char *source_given; /* NULL: the call names no source */
        char *domain_given; /* NULL: the call names no domain */
        unsigned source_timeout_ms;

        /* Probe: the admin action that lets a caller see past its own
         * permissions (above); NULL: the other methods' way. */
        const char *unreadable_action;
        bool creds_known;
        SourceCreds creds;  /* the caller's, as the bus driver said */
        bool caller_denied; /* the caller's permissions stopped resolution */
        bool elevated;      /* past them: resolving (or resolved) as root */

        bool done;
        SourceInfo source; /* .path NULL unless resolved */
        sd_bus_error source_error;
        char *domain_name; /* NULL unless resolved */
        char *domain_uuid;
        sd_bus_error domain_error; /* NoSuchDomain, DomainNotRunning, Failed */
} Resolution;

#define CALL_TRACE_MAX 32

typedef struct Call Call;
typedef void (*call_step_t)(Call *c);
typedef void (*call_job_t)(Call *c);
/* allowed: go on.  !allowed: the call has been answered (or will be, when
 * its refusal is held back); the operation only cleans up. */
typedef void (*call_authorized_t)(Call *c, bool allowed);

struct Call {
        Manager *manager;
        Call *prev, *next; /* Manager.calls */
        unsigned n_ref;
        void (*free_fn)(Call *c); /* frees the operation; calls call_done() */

        sd_bus_message *message;
        uint64_t arrival_usec; /* CLOCK_MONOTONIC */
        bool replied;

        Resolution res;
        sd_bus_slot *creds_slot; /* GetConnectionCredentials, pending */
        bool resolving;          /* a source resolution in flight (the per-uid cap) */
        call_step_t elevated_step;
        bool elevation_gated; /* res.unreadable_action allowed the elevation */
        bool quiet_recheck;   /* the next check: no interaction, a refusal answered as the caller's denial */
        bool hide_refusal;
        sd_event_source *window_timer;
        call_step_t on_ready_to_ask; /* resolution done or its window over, once */
        call_step_t on_resolved;     /* resolution done, once */

        char *action;
        char **asked;     /* the details polkit was last asked with */
        uid_t caller_uid; /* as the bus driver said, once authorized; (uid_t) -1 before */
        call_authorized_t authorized_cb;

        sd_event_source *reply_timer; /* a refusal held back until the window ends */
        sd_bus_error held_error;

        /* Where the time went (--log-level=debug only; logged by
         * call_done()): the benchmark's profile of each method. */
        struct {
                const char *what;
                uint64_t at_usec; /* since arrival */
        } trace[CALL_TRACE_MAX];
        unsigned n_trace;
};

/* Notes that the call reached `what` (a string literal) now; any thread.
 * Costs nothing unless the log level is debug. */
void call_trace(Call *c, const char *what);

/* Embeds Call at the start of each operation, with one reference. */
void call_init(Call *c, Manager *m, sd_bus_message *message, void (*free_fn)(Call *c));
/* Releases what call_init() and the rest of this API set up; from free_fn. */
void call_done(Call *c);

Call *call_ref(Call *c);
void call_unref(Call *c);

/* Runs job(c) on a worker thread, then done(c) on the loop; holds a
 * reference meanwhile.  On failure to submit, answers the call with
 * Error.Failed and returns < 0 (done does not run). */
int call_submit(Call *c, call_job_t job, call_step_t done);

/* Starts resolution (fill c->res first) and runs ready_to_ask once it is
 * done or the window is over, whichever is first. */
int call_resolve(Call *c, call_step_t ready_to_ask);
/* call_resolve() for a call that names a source and no domain: source
 * (copied) under the manager's source deadline.  On failure the call has
 * been answered. */
int call_resolve_source(Call *c, const char *source, call_step_t ready_to_ask);
/* Runs step once resolution is done: now, or when it is.  Call it only
 * once polkit said yes: where the caller's permissions stopped resolution,
 * this is where the source is resolved again as root (above). */
void call_after_resolution(Call *c, call_step_t step);

/* Details as polkit sees them now: "domain" the domain's resolved name (or
 * the caller's string), "domain-uuid" its UUID (or ""), "source" the
 * canonical path (or the caller's string) — each only if the call names
 * one — then the extra pairs (NULL-terminated, may be NULL). */
char **call_details(Call *c, const char *const *extra);
/* Whether call_details(c, extra) differs from what polkit was last asked. */
bool call_details_changed(Call *c, const char *const *extra);

/* Asks polkit (takes details).  cb(c, true) when allowed; on refusal the
 * call is answered no earlier than the window's end and cb(c, false) runs.
 * If the check cannot even start, the call is answered at once and cb does
 * not run; returns < 0 then. */
int call_authorize(Call *c, const char *action, char **details, call_authorized_t cb);

/* Answers with a refusal, no earlier than the resolution window's end;
 * answers after it are dropped. */
void call_reply_refusal(Call *c, const sd_bus_error *error);
/* Answers (once; later answers, and answers while a refusal is held back,
 * are dropped). */
void call_reply_error(Call *c, const sd_bus_error *error);
void call_reply_errorf(Call *c, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void call_reply_message(Call *c, sd_bus_message *reply);
void call_reply_empty(Call *c);
