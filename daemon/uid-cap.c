/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "uid-cap.h"
#include "util.h"

typedef struct UidCount {
        uid_t uid;
        unsigned n;
} UidCount;

struct UidCap {
        pthread_mutex_t lock;
        unsigned max_total, max_per_uid;
        unsigned total;
        /* At most max_total uids hold anything at once: a fixed table. */
        UidCount *counts;
};

int uid_cap_new(unsigned max_total, unsigned max_per_uid, UidCap **ret) {
        UidCap *c;

        if (max_total == 0 || max_per_uid == 0)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->counts = calloc(max_total, sizeof *c->counts);
        if (!c->counts) {
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
        free(c->counts);
        free(c);
        return NULL;
}

/* The slot of uid, or of a free entry (n == 0) if uid holds nothing. */
static UidCount *slot_of(UidCap *c, uid_t uid) {
        UidCount *free_slot = NULL;

        for (unsigned i = 0; i < c->max_total; i++) {
                if (c->counts[i].n > 0 && c->counts[i].uid == uid)
                        return &c->counts[i];
                if (c->counts[i].n == 0 && !free_slot)
                        free_slot = &c->counts[i];
        }
        return free_slot;
}

int uid_cap_take(UidCap *c, uid_t uid) {
        UidCount *s;
        int r = -EBUSY;

        if (uid == 0)
                return 0;
        pthread_mutex_lock(&c->lock);
        s = c->total < c->max_total ? slot_of(c, uid) : NULL;
        if (s && s->n < c->max_per_uid) {
                s->uid = uid;
                s->n++;
                c->total++;
                r = 0;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void uid_cap_put(UidCap *c, uid_t uid) {
        UidCount *s;

        if (uid == 0)
                return;
        pthread_mutex_lock(&c->lock);
        s = slot_of(c, uid);
        if (s && s->n > 0 && s->uid == uid) {
                s->n--;
                c->total--;
        }
        pthread_mutex_unlock(&c->lock);
}
