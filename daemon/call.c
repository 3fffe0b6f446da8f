/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "call.h"
#include "deadline.h"
#include "errors.h"
#include "manager.h"
#include "util.h"

/* sd-event's default accuracy (accuracy 0) is 250 ms — as long as the
 * window itself. */
#define TIMER_ACCURACY_USEC 1000ULL

static uint64_t now_usec(Manager *m) {
        uint64_t t = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

void call_init(Call *c, Manager *m, sd_bus_message *message, void (*free_fn)(Call *c)) {
        c->manager = m;
        c->caller_uid = (uid_t) -1;
        c->n_ref = 1;
        c->free_fn = free_fn;
        c->message = sd_bus_message_ref(message);
        c->arrival_usec = now_usec(m);
        c->res.source_error = SD_BUS_ERROR_NULL;
        c->res.domain_error = SD_BUS_ERROR_NULL;
        c->held_error = SD_BUS_ERROR_NULL;

        c->next = m->calls;
        if (m->calls)
                m->calls->prev = c;
        m->calls = c;
        manager_call_begin(m);
}

void call_trace(Call *c, const char *what) {
        struct timespec ts;
        unsigned i;

        if (log_get_max_level() < LOG_LEVEL_DEBUG)
                return;
        i = __atomic_fetch_add(&c->n_trace, 1, __ATOMIC_RELAXED);
        if (i >= CALL_TRACE_MAX)
                return;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        c->trace[i].what = what;
        c->trace[i].at_usec = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000U - c->arrival_usec;
}

/* One line a call: "Attach took 74.1 ms: resolved +1.2, polkit +3.0, …". */
static void trace_log(Call *c) {
        char line[1536];
        size_t n = 0;
        unsigned count = MIN(c->n_trace, (unsigned) CALL_TRACE_MAX);

        if (count == 0 || log_get_max_level() < LOG_LEVEL_DEBUG)
                return;
        call_trace(c, "end");
        count = MIN(c->n_trace, (unsigned) CALL_TRACE_MAX);
        for (unsigned i = 0; i < count && n < sizeof line; i++)
                n += (size_t) snprintf(line + n, sizeof line - n, "%s%s +%.2f", i ? "," : "", c->trace[i].what,
                                       (double) c->trace[i].at_usec / 1000.0);
        log_debug("Trace of %s (ms since arrival):%s", sd_bus_message_get_member(c->message) ?: "?", line);
}

void call_done(Call *c) {
        Manager *m = c->manager;

        trace_log(c);

        /* Every method call gets an answer: a path that ended without one
         * (a failure that set no error) must not leave its caller waiting
         * for its timeout.  Not while the service stops (manager_free()):
         * then the bus answers that it went away, outcome unknown. */
        if (c->message && !c->replied && !m->stopping) {
                if (sd_bus_error_is_set(&c->held_error))
                        (void) sd_bus_reply_method_error(c->message, &c->held_error);
                else {
                        log_error("A %s call ended without an answer (a bug); answering Failed.",
                                  strempty(sd_bus_message_get_member(c->message)));
                        (void) sd_bus_reply_method_errorf(c->message, LV_ERROR_FAILED,
                                                          "Internal error: the call ended without an answer.");
                }
                c->replied = true;
        }

        if (c->prev)
                c->prev->next = c->next;
        else if (m->calls == c)
                m->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;

        sd_bus_slot_unref(c->creds_slot);
        source_creds_done(&c->res.creds);
        sd_event_source_disable_unref(c->window_timer);
        sd_event_source_disable_unref(c->reply_timer);
        sd_bus_error_free(&c->held_error);
        sd_bus_message_unref(c->message);
        free(c->res.source_given);
        free(c->res.domain_given);
        source_info_done(&c->res.source);
        sd_bus_error_free(&c->res.source_error);
        free(c->res.domain_name);
        free(c->res.domain_uuid);
        sd_bus_error_free(&c->res.domain_error);
        free(c->action);
        strv_free(c->asked);
        manager_call_end(m);
}

Call *call_ref(Call *c) {
        c->n_ref++;
        return c;
}

void call_unref(Call *c) {
        if (!c)
                return;
        if (--c->n_ref > 0)
                return;
        c->free_fn(c);
}

/* ------------------------------------------------------------- replies */

void call_reply_error(Call *c, const sd_bus_error *error) {
        /* A refusal held back until the window's end is the answer. */
        if (c->replied || c->reply_timer)
                return;
        c->replied = true;
        (void) sd_bus_reply_method_error(c->message, error);
}

void call_reply_errorf(Call *c, const char *name, const char *fmt, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        va_list ap;

        va_start(ap, fmt);
        (void) sd_bus_error_setfv(&e, name, fmt, ap);
        va_end(ap);
        call_reply_error(c, &e);
}

void call_reply_message(Call *c, sd_bus_message *reply) {
        if (c->replied || c->reply_timer)
                return;
        c->replied = true;
        (void) sd_bus_send(NULL, reply, NULL);
}

void call_reply_empty(Call *c) {
        if (c->replied || c->reply_timer)
                return;
        c->replied = true;
        (void) sd_bus_reply_method_return(c->message, NULL);
}

/* ----------------------------------------------------------------- jobs */

typedef struct CallJob {
        Call *call;
        call_job_t job;
        call_step_t done;
} CallJob;

/* The uid a call's work is done for: deadline threads count against it. */
static uid_t call_owner(const Call *c) {
        return c->res.creds_known ? c->res.creds.uid : c->caller_uid;
}

static void call_job_run(void *userdata) {
        CallJob *j = userdata;

        deadline_set_owner(call_owner(j->call));
        call_trace(j->call, "job");
        j->job(j->call);
        call_trace(j->call, "job-end");
        deadline_set_owner((uid_t) -1);
}

static void call_job_done(void *userdata) {
        CallJob *j = userdata;
        Call *c = j->call;
        call_step_t done = j->done;

        free(j);
        if (done)
                done(c);
        call_unref(c);
}

int call_submit(Call *c, call_job_t job, call_step_t done) {
        CallJob *j;
        int r;

        /* The operation went on without asking polkit again: the details
         * it was asked about last were the resolved ones already. */
        c->quiet_recheck = false;

        j = calloc(1, sizeof *j);
        if (!j) {
                call_reply_errorf(c, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }
        *j = (CallJob){ .call = call_ref(c), .job = job, .done = done };

        r = worker_submit(c->manager->worker, call_job_run, call_job_done, j);
        if (r < 0) {
                call_unref(c);
                free(j);
                call_reply_errorf(c, LV_ERROR_FAILED, "Cannot start the work: %s", strerror(-r));
                return r;
        }
        return 0;
}

/* ----------------------------------------------------------- resolution */

/* Worker thread. */
static void resolve_source(Call *c) {
        Resolution *res = &c->res;

        if (!res->source_given || sd_bus_error_is_set(&res->source_error))
                return;
        if (res->elevated || res->creds.uid == 0) {
                (void) source_resolve(res->source_given, res->source_timeout_ms, &res->source, &res->source_error);
                return;
        }
        if (source_resolve_as(res->source_given, &res->creds, res->source_timeout_ms, &res->source,
                              &res->source_error) == -EACCES)
                res->caller_denied = true;
}

/* Worker thread. */
static void resolve_job(Call *c) {
        Resolution *res = &c->res;
        Manager *m = c->manager;

        resolve_source(c);

        if (res->domain_given) {
                virDomainPtr dom = NULL;
                char uuid[VIR_UUID_STRING_BUFLEN];

                if (virt_domain_lookup(m->virt, res->domain_given, &dom, &res->domain_error) < 0)
                        return;
                if (virt_domain_identity(dom, uuid, &res->domain_name, &res->domain_error) >= 0) {
                        res->domain_uuid = strdup(uuid);
                        if (!res->domain_uuid)
                                res->domain_name = mfree(res->domain_name);
                }
                if (!res->domain_name && !sd_bus_error_is_set(&res->domain_error))
                        sd_bus_error_set(&res->domain_error, LV_ERROR_FAILED, "Out of memory.");
                /* Looked up, yet not running: the name and UUID still serve
                 * polkit; the error is for the authorized caller. */
                if (res->domain_name)
                        (void) virt_domain_check_running(dom, res->domain_name, &res->domain_error);
                virDomainFree(dom);
        }
}

static void report_ready(Call *c) {
        call_step_t step = c->on_ready_to_ask;

        c->window_timer = sd_event_source_disable_unref(c->window_timer);
        c->on_ready_to_ask = NULL;
        if (step)
                step(c);
}

static void resolve_done(Call *c) {
        call_step_t step;

        call_trace(c, "resolved");
        c->resolving = false;
        c->res.done = true;
        report_ready(c);

        step = c->on_resolved;
        c->on_resolved = NULL;
        if (step)
                call_after_resolution(c, step);
}

/* The per-uid cap on source resolutions in flight, before one starts. */
static int resolving_admit(Call *c) {
        unsigned mine = 0;

        if (!c->res.source_given || sd_bus_error_is_set(&c->res.source_error))
                return 0;
        if (c->res.creds.uid != 0) {
                for (Call *i = c->manager->calls; i; i = i->next)
                        if (i->resolving && i->res.creds_known && i->res.creds.uid == c->res.creds.uid)
                                mine++;
                if (mine >= CALL_MAX_RESOLVING_PER_UID)
                        return sd_bus_error_set(&c->res.source_error, LV_ERROR_BUSY,
                                                "Too many look-ups of sources by this user are in progress; "
                                                "try again later.");
        }
        c->resolving = true;
        return 0;
}

/* Submits job, then done; if that cannot even start, done runs at once with
 * the source error set, like any failed resolution. */
static void resolve_submit(Call *c, call_job_t job, call_step_t done) {
        CallJob *j;
        int r = -ENOMEM;

        (void) resolving_admit(c);
        j = calloc(1, sizeof *j);
        if (j) {
                *j = (CallJob){ .call = call_ref(c), .job = job, .done = done };
                r = worker_submit(c->manager->worker, call_job_run, call_job_done, j);
                if (r >= 0)
                        return;
                call_unref(c);
                free(j);
        }
        sd_bus_error_free(&c->res.source_error);
        sd_bus_error_setf(&c->res.source_error, LV_ERROR_FAILED, "Cannot start the work: %s", strerror(-r));
        done(c);
}

/* GetConnectionCredentials' a{sv}: UnixUserID and UnixGroupIDs (dbus-daemon
 * ≥ 1.10: the primary and supplementary groups). */
static int parse_creds(sd_bus_message *reply, SourceCreds *ret) {
        SourceCreds creds = { .uid = (uid_t) -1 };
        bool have_uid = false;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        break;
                if (streq(key, "UnixUserID")) {
                        uint32_t u;
                        r = sd_bus_message_read(reply, "v", "u", &u);
                        creds.uid = u;
                        have_uid = r >= 0;
                } else if (streq(key, "UnixGroupIDs") && !creds.groups) {
                        const void *a;
                        size_t n;

                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &a, &n);
                        if (r >= 0 && n >= sizeof(uint32_t)) {
                                creds.groups = malloc(n);
                                if (!creds.groups)
                                        r = -ENOMEM;
                                else {
                                        memcpy(creds.groups, a, n);
                                        creds.n_groups = n / sizeof(uint32_t);
                                }
                        }
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0 || !have_uid) {
                source_creds_done(&creds);
                return r < 0 ? r : -ENODATA;
        }
        /* The fsgid only adds to the groups' permissions, so any of the
         * caller's groups will do; with none known, the overflow gid, which
         * owns nothing. */
        creds.gid = creds.n_groups > 0 ? creds.groups[0] : (gid_t) 65534;
        *ret = creds;
        return 0;
}

static int on_creds(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        Call *c = userdata;
        int r = -EIO;

        c->creds_slot = sd_bus_slot_unref(c->creds_slot);
        if (!sd_bus_message_is_method_error(reply, NULL))
                r = parse_creds(reply, &c->res.creds);
        if (r >= 0)
                c->res.creds_known = true;
        else {
                log_warning_errno(r, "Cannot get the credentials of %s: %m",
                                  strempty(sd_bus_message_get_sender(c->message)));
                /* Nobody's credentials, nothing resolved: fail closed. */
                sd_bus_error_set(&c->res.source_error, LV_ERROR_FAILED, "Cannot determine the caller's credentials.");
        }
        resolve_submit(c, resolve_job, resolve_done);
        call_unref(c);
        return 0;
}

static int on_window(sd_event_source *s, uint64_t usec, void *userdata) {
        Call *c = userdata;

        call_ref(c);
        report_ready(c);
        call_unref(c);
        return 0;
}

int call_resolve(Call *c, call_step_t ready_to_ask) {
        int r;

        c->on_ready_to_ask = ready_to_ask;
        r = sd_event_add_time(c->manager->event, &c->window_timer, CLOCK_MONOTONIC,
                              c->arrival_usec + CALL_RESOLVE_WINDOW_MS * 1000ULL, TIMER_ACCURACY_USEC, on_window, c);
        if (r < 0) {
                call_reply_errorf(c, LV_ERROR_FAILED, "Cannot arm a timer: %s", strerror(-r));
                return r;
        }
        if (!c->res.source_given)
                return call_submit(c, resolve_job, resolve_done);

        /* Whose permissions the source is resolved with: the bus driver's
         * word, asked without blocking the loop. */
        r = sd_bus_call_method_async(c->manager->bus, &c->creds_slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetConnectionCredentials", on_creds, c, "s",
                                     strempty(sd_bus_message_get_sender(c->message)));
        if (r < 0) {
                call_reply_errorf(c, LV_ERROR_FAILED, "Cannot ask for the caller's credentials: %s", strerror(-r));
                return r;
        }
        call_ref(c);
        return 0;
}

int call_resolve_source(Call *c, const char *source, call_step_t ready_to_ask) {
        c->res.source_given = strdup(source);
        c->res.source_timeout_ms = c->manager->config.source_timeout_sec * 1000U;
        if (!c->res.source_given) {
                call_reply_errorf(c, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }
        return call_resolve(c, ready_to_ask);
}

static void elevate_done(Call *c) {
        call_step_t step = c->elevated_step;

        c->elevated_step = NULL;
        c->resolving = false;
        c->res.done = true;
        if (!c->elevation_gated) {
                if (sd_bus_error_is_set(&c->res.source_error)) {
                        /* Root found nothing: answered as when it found
                         * something polkit refuses (below). */
                        sd_bus_error_free(&c->res.source_error);
                        source_error_caller_denied(&c->res.source_error);
                        call_reply_refusal(c, &c->res.source_error);
                } else
                        c->quiet_recheck = true;
        }
        if (step)
                step(c);
}

/* Worker thread. */
static void elevate_job(Call *c) {
        resolve_source(c);
}

static void elevate_resolve(Call *c) {
        sd_bus_error_free(&c->res.source_error);
        c->res.caller_denied = false;
        c->res.done = false;
        resolve_submit(c, elevate_job, elevate_done);
}

static void elevate_gate_done(Call *c, bool allowed) {
        if (allowed) {
                c->elevation_gated = true;
                elevate_resolve(c);
                return;
        }
        /* Refused, and answered so: the operation only cleans up. */
        call_step_t step = c->elevated_step;
        c->elevated_step = NULL;
        if (step)
                step(c);
}

void call_after_resolution(Call *c, call_step_t step) {
        if (!c->res.done) {
                c->on_resolved = step;
                return;
        }
        if (!c->res.caller_denied || c->res.elevated) {
                step(c);
                return;
        }

        c->res.elevated = true;
        c->elevated_step = step;
        if (!c->res.unreadable_action) {
                elevate_resolve(c);
                return;
        }
        if (call_authorize(c, c->res.unreadable_action, call_details(c, NULL), elevate_gate_done) < 0) {
                /* Answered already; the operation only cleans up. */
                c->elevated_step = NULL;
                step(c);
        }
}

/* --------------------------------------------------------------- polkit */

char **call_details(Call *c, const char *const *extra) {
        const Resolution *res = &c->res;
        const char *v[16];
        size_t n = 0;
        char **l;

        if (res->domain_given) {
                v[n++] = "domain";
                v[n++] = res->domain_name ?: res->domain_given;
                v[n++] = "domain-uuid";
                v[n++] = strempty(res->domain_uuid);
        }
        if (res->source_given) {
                v[n++] = "source";
                v[n++] = res->source.path ?: res->source_given;
        }
        for (const char *const *i = extra; i && *i && n + 2 < ELEMENTSOF(v); i += 2) {
                v[n++] = i[0];
                v[n++] = strempty(i[1]);
        }

        l = calloc(n + 1, sizeof *l);
        if (!l)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!(l[i] = strdup(v[i]))) {
                        strv_free(l);
                        return NULL;
                }
        return l;
}

static bool strv_equal(char **a, char **b) {
        for (; a && b && *a && *b; a++, b++)
                if (!streq(*a, *b))
                        return false;
        return (!a || !*a) && (!b || !*b);
}

bool call_details_changed(Call *c, const char *const *extra) {
        char **now = call_details(c, extra);
        bool changed = !now || !strv_equal(now, c->asked);

        strv_free(now);
        return changed;
}

static int on_reply_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Call *c = userdata;

        c->reply_timer = sd_event_source_disable_unref(c->reply_timer);
        call_reply_error(c, &c->held_error);
        call_unref(c);
        return 0;
}

/* A refusal goes out no earlier than the resolution window's end. */
void call_reply_refusal(Call *c, const sd_bus_error *error) {
        uint64_t at = c->arrival_usec + CALL_RESOLVE_WINDOW_MS * 1000ULL;

        if (now_usec(c->manager) < at && !c->reply_timer) {
                /* (sd_bus_error_copy() returns the errno the name maps to.) */
                (void) sd_bus_error_copy(&c->held_error, error);
                if (sd_bus_error_is_set(&c->held_error) &&
                    sd_event_add_time(c->manager->event, &c->reply_timer, CLOCK_MONOTONIC, at, TIMER_ACCURACY_USEC,
                                      on_reply_timer, c) >= 0) {
                        call_ref(c);
                        return;
                }
        }
        call_reply_error(c, error);
}

static void polkit_done(sd_bus_message *message, bool allowed, const sd_bus_error *error, uid_t uid, void *userdata) {
        _cleanup_(sd_bus_error_free) sd_bus_error denied = SD_BUS_ERROR_NULL;
        Call *c = userdata;
        call_authorized_t cb = c->authorized_cb;
        bool hide = c->hide_refusal;

        call_trace(c, "polkit-answer");
        c->authorized_cb = NULL;
        c->caller_uid = uid;
        c->hide_refusal = false;
        if (hide && !allowed)
                source_error_caller_denied(&denied);
        if (!allowed)
                call_reply_refusal(c, hide ? &denied : error);
        if (cb)
                cb(c, allowed);
        call_unref(c);
}

int call_authorize(Call *c, const char *action, char **details, call_authorized_t cb) {
        int r;

        strv_free(c->asked);
        c->asked = details;
        free(c->action);
        c->action = strdup(action);
        if (!c->action || !details) {
                call_reply_errorf(c, LV_ERROR_FAILED, "Out of memory.");
                return -ENOMEM;
        }

        /* Right after a resolution as root past the caller's own
         * permissions, without polkit's yes to a helper action: polkit's
         * answer about the resolved details must tell the caller nothing,
         * not even by prompting (call.h). */
        c->hide_refusal = c->quiet_recheck;
        c->quiet_recheck = false;
        c->authorized_cb = cb;
        call_trace(c, "polkit-ask");
        r = polkit_check_async_full(c->manager->polkit, c->message, action, (const char *const *) details,
                                    c->hide_refusal, polkit_done, call_ref(c));
        if (r < 0) {
                c->authorized_cb = NULL;
                c->hide_refusal = false;
                call_unref(c);
                if (r == -EBUSY)
                        call_reply_errorf(c, LV_ERROR_BUSY, "Too many authorization checks pending; try again later.");
                else
                        call_reply_errorf(c, LV_ERROR_FAILED, "Cannot start the authorization check: %s", strerror(-r));
                return r;
        }
        return 0;
}
