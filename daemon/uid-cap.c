/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "uid-cap.h"

typedef struct UidCount {
        uid_t uid;
        unsigned n;
} UidCount;

struct UidCap {
        pthread_mutex_t lock;
        unsigned max_total, max_per_uid;
        unsigned total;
        /* One entry per piece of work in flight at most, so max_total
         * entries are enough; n == 0 is a free entry. */
        UidCount *uids;
};

int uid_cap_new(unsigned max_total, unsigned max_per_uid, UidCap **ret) {
        UidCap *c;

        if (max_total == 0 || max_per_uid == 0)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->uids = calloc(max_total, sizeof *c->uids);
        if (!c->uids) {
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        c->max_total = max_total;
        c->max_per_uid = max_per_uid;
        *ret = c;
        return 0;
}

UidCap *uid_cap_free(UidCap *c) {
        if (!c)
                return NULL;
        pthread_mutex_destroy(&c->lock);
        free(c->uids);
        free(c);
        return NULL;
}

static UidCount *find(UidCap *c, uid_t uid) {
        for (unsigned i = 0; i < c->max_total; i++)
                if (c->uids[i].n > 0 && c->uids[i].uid == uid)
                        return &c->uids[i];
        return NULL;
}

int uid_cap_take(UidCap *c, uid_t uid) {
        UidCount *e;
        int r = 0;

        pthread_mutex_lock(&c->lock);
        e = find(c, uid);
        if (c->total >= c->max_total)
                r = -EBUSY;
        else if (uid != 0 && e && e->n >= c->max_per_uid)
                r = -EUSERS;
        else {
                /* total < max_total: a free entry exists if uid has none
                 * (each entry in use holds at least one of total). */
                for (unsigned i = 0; !e && i < c->max_total; i++)
                        if (c->uids[i].n == 0) {
                                e = &c->uids[i];
                                e->uid = uid;
                        }
                if (e) {
                        e->n++;
                        c->total++;
                } else
                        r = -EBUSY;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void uid_cap_put(UidCap *c, uid_t uid) {
        UidCount *e;

        pthread_mutex_lock(&c->lock);
        e = find(c, uid);
        if (e) {
                e->n--;
                c->total--;
        }
        pthread_mutex_unlock(&c->lock);
}

unsigned uid_cap_in_flight(UidCap *c) {
        unsigned n;

        pthread_mutex_lock(&c->lock);
        n = c->total;
        pthread_mutex_unlock(&c->lock);
        return n;
}
