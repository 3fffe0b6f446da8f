/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Key derivations in flight (attach, rearm, the key methods): at most
 * DERIVE_MAX_IN_FLIGHT at once in the whole daemon — fewer than its 16
 * worker threads, so derivations, each up to the header limits'
 * worth of CPU and memory (header-policy.h), can never take the whole pool
 * and every other call still finds a worker — and at most
 * DERIVE_MAX_PER_UID per caller uid (root exempt: it can run cryptsetup
 * itself), so one user cannot take all of those.  Beyond either: Busy at
 * once, never a wait.
 *
 * Taken and released on worker threads: a mutex inside. */

#include <stdbool.h>
#include <sys/types.h>

#define DERIVE_MAX_IN_FLIGHT 4U
#define DERIVE_MAX_PER_UID   2U

typedef struct DeriveCap DeriveCap;

int derive_cap_new(unsigned max_total, unsigned max_per_uid, DeriveCap **ret);
DeriveCap *derive_cap_free(DeriveCap *c);

/* 0: counted for uid; -EBUSY: max_total in flight; -EUSERS: uid (not 0)
 * has max_per_uid in flight. */
int derive_cap_take(DeriveCap *c, uid_t uid);
void derive_cap_release(DeriveCap *c, uid_t uid);
/* In flight, all callers (for tests). */
unsigned derive_cap_in_flight(DeriveCap *c);
