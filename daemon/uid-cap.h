/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A cap on work in flight that a caller can make last, per uid and in all:
 * key derivations (each up to the header limits' worth of CPU and memory,
 * header-policy.h), passphrase descriptors being read (a pipe that never
 * delivers holds a worker until its deadline).  The total stays below the
 * worker count (manager.h), so such work never takes the whole pool and
 * every other call still finds a worker; the per-uid cap keeps one user
 * from taking all of it.  Root is exempt from the per-uid cap (it can run
 * cryptsetup itself) but counts in the total.  Beyond either cap: Busy at
 * once, never a wait.
 *
 * Taken and put on worker threads: a mutex inside. */

#include <sys/types.h>

typedef struct UidCap UidCap;

int uid_cap_new(unsigned max_total, unsigned max_per_uid, UidCap **ret);
UidCap *uid_cap_free(UidCap *c);

/* 0: counted for uid; -EBUSY: max_total in flight; -EUSERS: uid (not 0)
 * has max_per_uid in flight. */
int uid_cap_take(UidCap *c, uid_t uid);
/* Gives back what uid_cap_take() granted (a put without a take: nothing). */
void uid_cap_put(UidCap *c, uid_t uid);
/* In flight, all callers (for tests). */
unsigned uid_cap_in_flight(UidCap *c);
