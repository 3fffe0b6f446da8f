/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "ratelimit.h"
#include "util.h"

#define RATELIMIT_BURST_MAX 64U

typedef struct Entry {
        uid_t uid;
        unsigned pending;    /* attempts reserved, not settled */
        unsigned n_failures; /* in failures[], oldest first */
        uint64_t failures[RATELIMIT_BURST_MAX];
        struct Entry *next;
} Entry;

struct RateLimit {
        unsigned burst;
        uint64_t window_usec;
        Entry *entries;
};

int ratelimit_new(unsigned burst, uint64_t window_usec, RateLimit **ret) {
        RateLimit *rl;

        if (burst == 0 || burst > RATELIMIT_BURST_MAX || window_usec == 0)
                return -EINVAL;
        rl = calloc(1, sizeof *rl);
        if (!rl)
                return -ENOMEM;
        rl->burst = burst;
        rl->window_usec = window_usec;
        *ret = rl;
        return 0;
}

RateLimit *ratelimit_free(RateLimit *rl) {
        if (!rl)
                return NULL;
        while (rl->entries) {
                Entry *e = rl->entries;
                rl->entries = e->next;
                free(e);
        }
        free(rl);
        return NULL;
}

/* Forgets failures older than the window. */
static void expire(RateLimit *rl, Entry *e, uint64_t now) {
        unsigned k = 0;

        while (k < e->n_failures && e->failures[k] + rl->window_usec <= now)
                k++;
        if (k == 0)
                return;
        memmove(e->failures, e->failures + k, (e->n_failures - k) * sizeof e->failures[0]);
        e->n_failures -= k;
}

/* Drops entries with nothing left to count, so the list stays as long as
 * the number of callers active within the window. */
static void prune(RateLimit *rl, uint64_t now) {
        for (Entry **p = &rl->entries; *p;) {
                Entry *e = *p;
                expire(rl, e, now);
                if (e->pending == 0 && e->n_failures == 0) {
                        *p = e->next;
                        free(e);
                } else
                        p = &e->next;
        }
}

static Entry *find(RateLimit *rl, uid_t uid) {
        for (Entry *e = rl->entries; e; e = e->next)
                if (e->uid == uid)
                        return e;
        return NULL;
}

int ratelimit_begin(RateLimit *rl, uid_t uid, uint64_t now_usec, uint64_t *ret_wait_usec) {
        Entry *e;

        prune(rl, now_usec);
        e = find(rl, uid);
        if (!e) {
                e = calloc(1, sizeof *e);
                if (!e)
                        return -ENOMEM;
                e->uid = uid;
                e->next = rl->entries;
                rl->entries = e;
        }

        if (e->n_failures + e->pending >= rl->burst) {
                uint64_t wait = 1000000;
                /* Room comes when enough failures have aged out; if the
                 * attempts in flight fill the burst on their own, their
                 * outcome decides, and that is not known yet. */
                if (e->pending < rl->burst) {
                        unsigned must_expire = e->n_failures + e->pending - rl->burst + 1;
                        wait = MAX(e->failures[must_expire - 1] + rl->window_usec - now_usec, wait);
                }
                *ret_wait_usec = wait;
                return -EBUSY;
        }
        e->pending++;
        return 0;
}

void ratelimit_end(RateLimit *rl, uid_t uid, uint64_t now_usec, bool failed) {
        Entry *e = find(rl, uid);

        if (!e || e->pending == 0)
                return;
        e->pending--;
        if (!failed)
                return;
        expire(rl, e, now_usec);
        /* At most burst are ever kept: pending + failures never pass it. */
        if (e->n_failures == RATELIMIT_BURST_MAX) {
                memmove(e->failures, e->failures + 1, (RATELIMIT_BURST_MAX - 1) * sizeof e->failures[0]);
                e->n_failures--;
        }
        e->failures[e->n_failures++] = now_usec;
}

unsigned ratelimit_tracked(RateLimit *rl, uint64_t now_usec) {
        unsigned n = 0;

        prune(rl, now_usec);
        for (Entry *e = rl->entries; e; e = e->next)
                n++;
        return n;
}
