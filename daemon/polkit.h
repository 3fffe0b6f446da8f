/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one asynchronous polkit CheckAuthorization helper.
 *
 * A method handler calls polkit_check_async() after validating its
 * arguments and returns; when polkitd answers (or cannot be reached), the
 * continuation runs on the event loop with the verdict.  The original
 * message is kept referenced for as long as the query is pending. */

#include <stdbool.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct PolkitRegistry PolkitRegistry;

/* Called once per query on the event loop.  allowed=true: go on with the
 * work (error is NULL).  allowed=false: error is set to the D-Bus error to
 * reply with (AccessDenied, InteractiveAuthorizationRequired, …); the
 * continuation replies itself (it usually just does
 * sd_bus_reply_method_error(m, error)).  Never called from inside
 * polkit_check_async(), and never for queries still pending when the
 * registry is freed (see polkit_registry_free()).  It may start new checks
 * or free the registry.  uid: the caller's, as the bus driver said, or
 * (uid_t) -1 if it could not say. */
typedef void (*polkit_continuation_t)(sd_bus_message *m, bool allowed, const sd_bus_error *error, uid_t uid,
                                      void *userdata);

/* max_pending (> 0) bounds the queries of non-root callers waiting for
 * polkitd at once; besides, one uid may have at most 32 of them.  A query
 * over either cap gets its continuation run with allowed=false and
 * Error.Busy.  Neither cap applies to uid 0.  The registry holds a
 * reference on bus. */
int polkit_registry_new(sd_bus *bus, unsigned max_pending, PolkitRegistry **ret);
/* Drops pending queries WITHOUT calling their continuations (their userdata
 * must be owned elsewhere) and without replying to their messages: at
 * shutdown the bus sends callers NoReply when our connection goes.  Free it
 * before closing the bus.  Accepts NULL; returns NULL. */
PolkitRegistry *polkit_registry_free(PolkitRegistry *r);
unsigned polkit_registry_pending(PolkitRegistry *r);

/* On by default: a caller whose uid the bus driver reports as 0 is allowed
 * without asking polkitd (which would allow it without running any rule).
 * Tests of the polkitd conversation turn it off. */
void polkit_registry_set_root_shortcut(PolkitRegistry *r, bool b);
/* On by default: uid 0 is never counted against the caps.  Tests that run
 * as root and exercise the caps turn it off. */
void polkit_registry_set_caps_exempt_root(PolkitRegistry *r, bool b);

/* details: NULL-terminated list of key, value, key, value, …, NULL (may be NULL).
 * The subject is m's sender (its unique bus name), AllowUserInteraction is
 * set iff m allows interactive authorization.  If polkitd gives no usable
 * answer (not running, error reply, timeout, malformed reply) the check
 * fails closed: allowed only if the bus-verified euid of the sender is 0,
 * else AccessDenied "polkit is unavailable (…); only root may call this
 * method".
 * Returns 0 when the query was sent (the continuation will run later),
 * negative errno when it could not even be started (nothing will run):
 * -EBUSY when thousands of queries are waiting for the bus driver already
 * (a flood; the caps above are what normally answer Busy); -EINVAL for bad arguments (empty action, a
 * key without value, no callback) or a message without sender; -ENOMEM;
 * or sd-bus's error (e.g. -ENOTCONN). */
int polkit_check_async(PolkitRegistry *r, sd_bus_message *m, const char *action, const char *const *details,
                       polkit_continuation_t cb, void *userdata);
/* The same; no_interaction: never ask polkitd to interact, whatever the
 * message allows (a check whose mere prompting would tell the caller
 * something). */
int polkit_check_async_full(PolkitRegistry *r, sd_bus_message *m, const char *action, const char *const *details,
                            bool no_interaction, polkit_continuation_t cb, void *userdata);

/* Pure: maps polkit's (is_authorized, is_challenge, details) answer plus
 * whether the caller allowed interactive authorization to allowed / error.
 * authorized → true; dismissed → AccessDenied; challenge → Interactive-
 * AuthorizationRequired if !interactive_allowed, else AccessDenied; else
 * AccessDenied.  Every error message names the action.  error may be NULL. */
bool polkit_verdict(bool is_authorized, bool is_challenge, bool dismissed, bool interactive_allowed, const char *action,
                    sd_bus_error *error);
