/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Wrong passphrases per caller: key management must not be a faster
 * guessing oracle than Attach.  After `burst` failures within `window`, a
 * uid is refused (Busy) until the oldest of them is `window` old.
 *
 * Attempts are reserved before they run and settled after: attempts in
 * flight count as failures until they are known not to be, so a caller
 * cannot get past the limit by sending a hundred guesses at once.
 *
 * Pure: the caller passes the time (CLOCK_MONOTONIC µs); the event loop
 * alone uses it. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct RateLimit RateLimit;

int ratelimit_new(unsigned burst, uint64_t window_usec, RateLimit **ret);
RateLimit *ratelimit_free(RateLimit *rl);

/* Reserves an attempt for uid: 0, or -EBUSY with *ret_wait_usec, how long
 * until an attempt would be allowed (at least 1 s when only attempts still
 * in flight fill the burst: their outcome is not known yet).  -ENOMEM. */
int ratelimit_begin(RateLimit *rl, uid_t uid, uint64_t now_usec, uint64_t *ret_wait_usec);
/* Settles a reserved attempt: failed → a failure at now_usec. */
void ratelimit_end(RateLimit *rl, uid_t uid, uint64_t now_usec, bool failed);

/* Uids with failures or attempts still counted (for tests). */
unsigned ratelimit_tracked(RateLimit *rl, uint64_t now_usec);
