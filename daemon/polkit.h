/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one asynchronous polkit CheckAuthorization helper.
 *
 * A method handler calls polkit_check_async() after validating its
 * arguments and returns; when polkitd answers (or cannot be reached), the
 * continuation runs on the event loop with the verdict.  The original
 * message is kept referenced for as long as the query is pending. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

typedef struct PolkitRegistry PolkitRegistry;

/* Called once per query on the event loop.  allowed=true: go on with the
 * work.  allowed=false: error is set to the D-Bus error to reply with
 * (AccessDenied, InteractiveAuthorizationRequired, …); the continuation
 * replies itself (it usually just does sd_bus_reply_method_error(m, error)). */
typedef void (*polkit_continuation_t)(sd_bus_message *m, bool allowed, const sd_bus_error *error, void *userdata);

/* max_pending bounds concurrently pending queries; past it
 * polkit_check_async() returns -EBUSY (callers reply Error.Busy). */
int polkit_registry_new(sd_bus *bus, unsigned max_pending, PolkitRegistry **ret);
PolkitRegistry *polkit_registry_free(PolkitRegistry *r);
unsigned polkit_registry_pending(PolkitRegistry *r);

/* details: NULL-terminated list of key, value, key, value, …, NULL (may be NULL).
 * Returns 0 when the query was sent (the continuation will run later),
 * negative errno when it could not even be started (nothing will run). */
int polkit_check_async(PolkitRegistry *r, sd_bus_message *m, const char *action,
                       const char *const *details, polkit_continuation_t cb, void *userdata);

/* Pure: maps polkit's (is_authorized, is_challenge, details) answer plus
 * whether the caller allowed interactive authorization to allowed / error. */
bool polkit_verdict(bool is_authorized, bool is_challenge, bool dismissed,
                    bool interactive_allowed, const char *action, sd_bus_error *error);
