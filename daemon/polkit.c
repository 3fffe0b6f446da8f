/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Asynchronous polkit CheckAuthorization over sd-bus, without libpolkit.
 *
 * Each query is a PolkitQuery: a reference on the caller's message, the
 * reply slot of our call to polkitd, and the continuation.  Queries live on
 * a list in the registry so that the registry can bound them (max_pending)
 * and drop them all on free.  The subject is always the caller's unique bus
 * name: polkitd resolves it to uid/pid/session itself through the bus, so
 * nothing the caller could lie about (a pid, a uid) enters the decision.
 *
 * If polkitd cannot give an answer we fail closed: only a caller whose
 * bus-verified effective uid is 0 is let through (polkitd would have said
 * yes to root anyway), everybody else gets AccessDenied. */

#include <stdint.h>
#include <sys/types.h>

#include "errors.h"
#include "polkit.h"
#include "util.h"

#define POLKIT_BUS_NAME    "org.freedesktop.PolicyKit1"
#define POLKIT_OBJECT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE   "org.freedesktop.PolicyKit1.Authority"

/* PolkitCheckAuthorizationFlags: the only flag there is. */
#define POLKIT_CHECK_ALLOW_USER_INTERACTION UINT32_C(1)

#define USEC_PER_SEC UINT64_C(1000000)

/* polkitd kills a runaway rules script after 15 s and then answers "not
 * authorized"; wait a little longer so that its verdict, not our timeout,
 * decides, while still answering before a client's usual 25 s method-call
 * timeout runs out. */
#define POLKIT_TIMEOUT_USEC (20 * USEC_PER_SEC)

/* With AllowUserInteraction polkitd waits for a human typing a password
 * into an authentication agent.  Long enough for that, short enough that
 * abandoned dialogs do not hold max_pending slots for long. */
#define POLKIT_TIMEOUT_INTERACTIVE_USEC (120 * USEC_PER_SEC)

/* Queries one uid may have waiting for polkitd at a time: room for an
 * agent firing a burst of calls, not for one user to take all of
 * max_pending.  Counted per uid, not per connection: a user can open as
 * many connections as the bus allows. */
#define POLKIT_MAX_PENDING_PER_UID 32U

/* Queries still waiting for the bus driver to name the caller's uid.  The
 * driver answers at once, so this only bounds memory under a flood; it is
 * far above anything the per-uid and global caps let through. */
#define POLKIT_MAX_LOOKUPS 4096U

typedef struct PolkitQuery PolkitQuery;

struct PolkitQuery {
        PolkitRegistry *registry; /* NULL once unlinked */
        PolkitQuery *prev, *next;

        sd_bus_message *message; /* the caller's method call, referenced */
        sd_bus_message *check;   /* CheckAuthorization, built, sent after the uid look-up */
        sd_bus_slot *slot;       /* our pending call: GetConnectionUnixUser, then CheckAuthorization */
        char *action;
        bool interactive;
        bool asking_polkitd; /* past the uid look-up, counted against the caps */
        uid_t uid;           /* as the bus driver said; (uid_t) -1 until then or if it could not */

        polkit_continuation_t callback;
        void *userdata;
};

struct PolkitRegistry {
        sd_bus *bus;
        bool root_shortcut;
        bool caps_exempt_root;
        unsigned max_pending;
        unsigned n_pending; /* every query, look-ups included */
        unsigned n_asking;  /* of those, counted against max_pending */
        PolkitQuery *queries;
};

static void polkit_query_unlink(PolkitQuery *q) {
        PolkitRegistry *r = q->registry;

        if (!r)
                return;

        if (q->prev)
                q->prev->next = q->next;
        else
                r->queries = q->next;
        if (q->next)
                q->next->prev = q->prev;

        q->prev = q->next = NULL;
        q->registry = NULL;
        r->n_pending--;
        if (q->asking_polkitd) {
                q->asking_polkitd = false;
                r->n_asking--;
        }
}

static PolkitQuery *polkit_query_free(PolkitQuery *q) {
        if (!q)
                return NULL;

        polkit_query_unlink(q);

        /* Unreferencing a non-floating slot disconnects it: the reply
         * callback will never run for it afterwards. */
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->check);
        sd_bus_message_unref(q->message);
        free(q->action);
        free(q);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(PolkitQuery *, polkit_query_free);

int polkit_registry_new(sd_bus *bus, unsigned max_pending, PolkitRegistry **ret) {
        PolkitRegistry *r;

        if (!bus || max_pending == 0 || !ret)
                return -EINVAL;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;

        r->bus = sd_bus_ref(bus);
        r->max_pending = max_pending;
        r->root_shortcut = true;
        r->caps_exempt_root = true;

        *ret = r;
        return 0;
}

PolkitRegistry *polkit_registry_free(PolkitRegistry *r) {
        if (!r)
                return NULL;

        /* Pending queries are dropped without running their continuations:
         * the owner is tearing down and its userdata may already be half
         * gone.  The callers' messages are released unanswered; when our
         * connection closes the bus tells them NoReply. */
        for (PolkitQuery *q = r->queries, *next; q; q = next) {
                next = q->next;
                polkit_query_unlink(q);
                polkit_query_free(q);
        }

        sd_bus_unref(r->bus);
        free(r);
        return NULL;
}

void polkit_registry_set_root_shortcut(PolkitRegistry *r, bool b) {
        r->root_shortcut = b;
}

void polkit_registry_set_caps_exempt_root(PolkitRegistry *r, bool b) {
        r->caps_exempt_root = b;
}

unsigned polkit_registry_pending(PolkitRegistry *r) {
        return r ? r->n_pending : 0;
}

bool polkit_verdict(bool is_authorized, bool is_challenge, bool dismissed, bool interactive_allowed, const char *action,
                    sd_bus_error *error) {
        action = strempty(action);

        if (is_authorized)
                return true;

        if (dismissed) {
                sd_bus_error_setf(error, DBUS_ERROR_ACCESS_DENIED, "Authorization dialog dismissed (action %s)",
                                  action);
                return false;
        }

        if (is_challenge) {
                /* The caller could get the authorization by authenticating.
                 * If it said it cannot interact, tell it so with the
                 * standard error, so that it may retry with interaction
                 * (e.g. busctl/gdbus from a terminal with an agent). */
                if (!interactive_allowed)
                        sd_bus_error_setf(error, DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                          "Interactive authentication required for %s", action);
                else
                        /* Interaction was allowed and polkitd still could not
                         * authenticate: typically no agent is registered. */
                        sd_bus_error_setf(error, DBUS_ERROR_ACCESS_DENIED,
                                          "Authentication required for %s but not obtained "
                                          "(no polkit authentication agent available?)",
                                          action);
                return false;
        }

        sd_bus_error_setf(error, DBUS_ERROR_ACCESS_DENIED, "Not authorized to perform %s", action);
        return false;
}

/* polkitd gave no usable answer.  Fail closed: only root, as verified by the
 * bus (the sender's unique name is never reused, so this is the very
 * connection that sent the call), gets through. */
static bool polkit_unavailable(PolkitQuery *q, const char *why, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *sender = strempty(sd_bus_message_get_sender(q->message));
        uid_t euid = (uid_t) -1;
        int k;

        /* This is a synchronous round trip to the bus driver; it only
         * happens on this failure path and the driver answers at once. */
        k = sd_bus_query_sender_creds(q->message, SD_BUS_CREDS_EUID | SD_BUS_CREDS_AUGMENT, &creds);
        if (k >= 0)
                k = sd_bus_creds_get_euid(creds, &euid);
        /* AUGMENT lets sd-bus fill gaps from /proc/PID, which races with
         * PID reuse; only a uid the bus driver vouched for may open the
         * root exception. */
        if (k >= 0 && (sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID))
                k = -EPERM;
        if (k < 0)
                log_warning_errno(k, "Cannot determine the uid of %s: %m", sender);

        if (k >= 0 && euid == 0) {
                log_warning("polkit is unavailable (%s); allowing %s for root caller %s", why, q->action, sender);
                return true;
        }

        if (k >= 0)
                log_warning("polkit is unavailable (%s); denying %s to %s (uid %u)", why, q->action, sender,
                            (unsigned) euid);
        else
                log_warning("polkit is unavailable (%s); denying %s to %s (uid unknown)", why, q->action, sender);
        sd_bus_error_setf(error, DBUS_ERROR_ACCESS_DENIED, "polkit is unavailable (%s); only root may call this method",
                          why);
        return false;
}

/* Reads (bba{ss}); anything else is a malformed reply. */
static int polkit_parse_reply(sd_bus_message *reply, bool *ret_authorized, bool *ret_challenge, bool *ret_dismissed) {
        int authorized, challenge, k;
        bool dismissed = false;

        k = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (k < 0)
                return k;
        if (k == 0)
                return -EBADMSG;

        k = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (k < 0)
                return k;

        k = sd_bus_message_enter_container(reply, 'a', "{ss}");
        if (k < 0)
                return k;

        for (;;) {
                const char *key, *value;

                k = sd_bus_message_read(reply, "{ss}", &key, &value);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;

                if (streq(key, "polkit.dismissed") && streq(value, "true"))
                        dismissed = true;
        }

        k = sd_bus_message_exit_container(reply);
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(reply);
        if (k < 0)
                return k;

        *ret_authorized = authorized;
        *ret_challenge = challenge;
        *ret_dismissed = dismissed;
        return 0;
}

static int polkit_reply_handler(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        _cleanup_(polkit_query_freep) PolkitQuery *q = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        bool allowed;

        /* Out of the registry before the continuation runs: it may start a
         * new query (which must not find the limit taken by this one) or
         * free the registry (which must not free this query under us). */
        polkit_query_unlink(q);

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                /* No owner, timeout (synthesized by sd-bus), disconnect,
                 * polkitd's own errors (e.g. unknown action) all land here. */
                allowed = polkit_unavailable(q,
                                             e && e->message ? e->message
                                             : e && e->name  ? e->name
                                                             : "unknown error",
                                             &error);
        } else {
                bool authorized, challenge, dismissed;
                int k;

                k = polkit_parse_reply(reply, &authorized, &challenge, &dismissed);
                if (k < 0) {
                        log_warning_errno(k, "Malformed CheckAuthorization reply from polkitd: %m");
                        allowed = polkit_unavailable(q, "malformed reply from polkitd", &error);
                } else {
                        allowed = polkit_verdict(authorized, challenge, dismissed, q->interactive, q->action, &error);
                        log_debug("polkit: %s for %s: %s", q->action, strempty(sd_bus_message_get_sender(q->message)),
                                  allowed ? "allowed" : error.name);
                }
        }

        q->callback(q->message, allowed, allowed ? NULL : &error, q->uid, q->userdata);
        return 0;
}

static int polkit_send_check(PolkitQuery *q, PolkitRegistry *r) {
        sd_bus_slot_unref(q->slot);
        q->slot = NULL;
        /* sd_bus_call_async() never calls back from in here: the reply
         * (or a synthesized timeout/disconnect error) is dispatched by
         * sd_bus_process(), i.e. from the event loop. */
        return sd_bus_call_async(r->bus, &q->slot, q->check, polkit_reply_handler, q,
                                 q->interactive ? POLKIT_TIMEOUT_INTERACTIVE_USEC : POLKIT_TIMEOUT_USEC);
}

/* Step 2, for a caller that is not let through on its uid alone: the caps,
 * then polkitd.  The caps count what waits for polkitd (an agent that never
 * answers can hold a query for minutes), per uid and in all; root is never
 * counted or capped, so no flood from another user can lock root out. */
static void polkit_ask_polkitd(PolkitQuery *q, PolkitRegistry *r) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        bool exempt = q->uid == 0 && r->caps_exempt_root;
        bool allowed;
        int k;

        if (!exempt) {
                unsigned mine = 0;

                for (PolkitQuery *i = r->queries; i; i = i->next)
                        if (i->asking_polkitd && i->uid == q->uid)
                                mine++;
                if (mine >= POLKIT_MAX_PENDING_PER_UID || r->n_asking >= r->max_pending) {
                        _cleanup_(polkit_query_freep) PolkitQuery *done = q;

                        polkit_query_unlink(done);
                        sd_bus_error_set(&error, LV_ERROR_BUSY,
                                         "Too many authorization checks pending; try again later.");
                        done->callback(done->message, false, &error, done->uid, done->userdata);
                        return;
                }
                q->asking_polkitd = true;
                r->n_asking++;
        }

        k = polkit_send_check(q, r);
        if (k >= 0)
                return;

        _cleanup_(polkit_query_freep) PolkitQuery *done = q;
        polkit_query_unlink(done);
        allowed = polkit_unavailable(done, "cannot send CheckAuthorization", &error);
        done->callback(done->message, allowed, allowed ? NULL : &error, done->uid, done->userdata);
}

/* Step 1: who is calling, as the bus driver says.  polkitd authorizes uid 0
 * for every action without running rules, so for root the answer is known
 * without asking it: one round trip to the bus driver instead of the
 * driver plus polkitd (and its own look-ups), and root keeps working at
 * once when polkitd is slow. */
static int polkit_uid_handler(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        PolkitQuery *q = userdata;
        PolkitRegistry *r = q->registry;
        uint32_t uid;

        if (!r) /* cannot happen: an unlinked query has no slot left */
                return 0;

        if (!sd_bus_message_is_method_error(reply, NULL) && sd_bus_message_read(reply, "u", &uid) > 0)
                q->uid = (uid_t) uid;

        if (q->uid == 0 && r->root_shortcut) {
                _cleanup_(polkit_query_freep) PolkitQuery *done = q;
                polkit_query_unlink(done);
                log_debug("polkit: %s for root caller %s: allowed without asking polkitd", done->action,
                          strempty(sd_bus_message_get_sender(done->message)));
                done->callback(done->message, true, NULL, done->uid, done->userdata);
                return 0;
        }

        /* Anyone else (or an unanswered look-up, counted as an unknown
         * uid of its own): polkitd decides. */
        polkit_ask_polkitd(q, r);
        return 0;
}

int polkit_check_async(PolkitRegistry *r, sd_bus_message *m, const char *action, const char *const *details,
                       polkit_continuation_t cb, void *userdata) {
        return polkit_check_async_full(r, m, action, details, false, cb, userdata);
}

int polkit_check_async_full(PolkitRegistry *r, sd_bus_message *m, const char *action, const char *const *details,
                            bool no_interaction, polkit_continuation_t cb, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        PolkitQuery *q;
        const char *sender;
        bool interactive;
        int k;

        if (!r || !m || isempty(action) || !cb)
                return -EINVAL;

        if (r->n_pending >= POLKIT_MAX_LOOKUPS)
                return -EBUSY;

        /* Without a sender (a direct, bus-less connection) there is no
         * system-bus-name subject to ask about. */
        sender = sd_bus_message_get_sender(m);
        if (!sender)
                return -EINVAL;

        interactive = !no_interaction && sd_bus_message_get_allow_interactive_authorization(m) > 0;

        k = sd_bus_message_new_method_call(r->bus, &call, POLKIT_BUS_NAME, POLKIT_OBJECT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (k < 0)
                return k;

        /* subject: ("system-bus-name", {"name": <sender>}), then action id */
        k = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s", sender, action);
        if (k < 0)
                return k;

        k = sd_bus_message_open_container(call, 'a', "{ss}");
        if (k < 0)
                return k;
        for (const char *const *i = details; i && *i; i += 2) {
                if (!i[1]) /* a key without a value */
                        return -EINVAL;

                k = sd_bus_message_append(call, "{ss}", i[0], i[1]);
                if (k < 0)
                        return k;
        }
        k = sd_bus_message_close_container(call);
        if (k < 0)
                return k;

        /* flags, and an empty cancellation id: we never cancel */
        k = sd_bus_message_append(call, "us", interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0, "");
        if (k < 0)
                return k;

        /* Everything that can fail before the query exists has been done;
         * from here, a failure frees the (not yet linked) query by hand. */
        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;

        q->action = strdup(action);
        if (!q->action) {
                polkit_query_free(q);
                return -ENOMEM;
        }
        q->message = sd_bus_message_ref(m);
        q->check = TAKE_PTR(call);
        q->interactive = interactive;
        q->uid = (uid_t) -1;
        q->callback = cb;
        q->userdata = userdata;

        /* Always the uid first: both the root shortcut and the per-uid caps
         * need it, and only the bus driver's word counts. */
        k = sd_bus_call_method_async(r->bus, &q->slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetConnectionUnixUser", polkit_uid_handler, q, "s",
                                     sender);
        if (k < 0) {
                polkit_query_free(q);
                return k;
        }

        q->registry = r;
        q->next = r->queries;
        if (r->queries)
                r->queries->prev = q;
        r->queries = q;
        r->n_pending++;
        return 0;
}
