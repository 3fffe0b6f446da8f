/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A cap on work in flight, per uid and in all, for work a caller can make
 * last (a passphrase pipe that never delivers holds a worker until its
 * deadline): one user cannot take every worker, nor many users together
 * more than max_total.  Root is neither refused nor counted — it can stop
 * the service anyway.  Thread-safe: taken and put on worker threads. */

#include <sys/types.h>

typedef struct UidCap UidCap;

int uid_cap_new(unsigned max_total, unsigned max_per_uid, UidCap **ret);
UidCap *uid_cap_free(UidCap *c);

/* 0, or -EBUSY when uid (or everybody but root) is at its cap. */
int uid_cap_take(UidCap *c, uid_t uid);
/* Gives back what uid_cap_take() granted. */
void uid_cap_put(UidCap *c, uid_t uid);
