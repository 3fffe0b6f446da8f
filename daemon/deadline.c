/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <time.h>

#include "deadline.h"
#include "util.h"

struct DeadlineTask {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        deadline_fn_t fn;
        deadline_free_t free_fn;
        void *arg;
        bool done;      /* fn returned */
        bool abandoned; /* the owner went away; the thread frees the task */
        uid_t owner;    /* counted against this uid while abandoned */
};

/* Abandoned threads per owner.  A plain table under a mutex: it is touched
 * when a task starts, is abandoned or comes back, never while a task's own
 * work runs. */
typedef struct OwnerCount {
        uid_t uid;
        unsigned n; /* 0: a free entry */
} OwnerCount;

static pthread_mutex_t owners_lock = PTHREAD_MUTEX_INITIALIZER;
static OwnerCount owners[DEADLINE_MAX_OWNERS];
static unsigned n_abandoned;      /* all owners */
static unsigned n_abandoned_root; /* of those, uid 0's */

static _Thread_local uid_t current_owner = (uid_t) -1;

void deadline_set_owner(uid_t uid) {
        current_owner = uid;
}

uid_t deadline_get_owner(void) {
        return current_owner;
}

/* With owners_lock held. */
static OwnerCount *owner_find(uid_t uid) {
        for (size_t i = 0; i < ELEMENTSOF(owners); i++)
                if (owners[i].n > 0 && owners[i].uid == uid)
                        return &owners[i];
        return NULL;
}

/* With owners_lock held: -EBUSY if uid may not start another task. */
static int owner_check(uid_t uid) {
        OwnerCount *o;

        if (uid == 0)
                return 0;
        if (n_abandoned - n_abandoned_root >= DEADLINE_MAX_ABANDONED)
                return -EBUSY;
        o = owner_find(uid);
        if (o)
                return o->n >= DEADLINE_MAX_ABANDONED_PER_UID ? -EBUSY : 0;
        /* A new owner needs a free entry when it is abandoned. */
        for (size_t i = 0; i < ELEMENTSOF(owners); i++)
                if (owners[i].n == 0)
                        return 0;
        return -EBUSY;
}

/* With owners_lock held.  owner_check() saw room when the task started,
 * but other owners' tasks may have taken the last entries since: then the
 * task is counted in the totals only (owner_sub() finds no entry either). */
static void owner_add(uid_t uid) {
        OwnerCount *o = owner_find(uid);

        n_abandoned++;
        if (uid == 0)
                n_abandoned_root++;
        if (!o)
                for (size_t i = 0; i < ELEMENTSOF(owners) && !o; i++)
                        if (owners[i].n == 0) {
                                o = &owners[i];
                                o->uid = uid;
                        }
        if (o)
                o->n++;
}

static void owner_sub(uid_t uid) {
        OwnerCount *o;

        pthread_mutex_lock(&owners_lock);
        o = owner_find(uid);
        if (o)
                o->n--;
        n_abandoned--;
        if (uid == 0)
                n_abandoned_root--;
        pthread_mutex_unlock(&owners_lock);
}

unsigned deadline_abandoned(void) {
        unsigned n;

        pthread_mutex_lock(&owners_lock);
        n = n_abandoned;
        pthread_mutex_unlock(&owners_lock);
        return n;
}

unsigned deadline_abandoned_by(uid_t uid) {
        OwnerCount *o;
        unsigned n;

        pthread_mutex_lock(&owners_lock);
        o = owner_find(uid);
        n = uid == 0 ? n_abandoned_root : o ? o->n : 0;
        pthread_mutex_unlock(&owners_lock);
        return n;
}

static void task_destroy(DeadlineTask *t) {
        if (t->free_fn)
                t->free_fn(t->arg);
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

static void *task_thread(void *p) {
        DeadlineTask *t = p;
        bool abandoned;

        t->fn(t->arg);

        /* Both "done" and "abandoned" change under the lock, so exactly one
         * side frees the task: the owner (after joining us) or we. */
        pthread_mutex_lock(&t->lock);
        t->done = true;
        abandoned = t->abandoned;
        if (!abandoned)
                pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);

        if (abandoned) {
                uid_t owner = t->owner;

                task_destroy(t);
                owner_sub(owner);
        }
        return NULL;
}

int deadline_start(deadline_fn_t fn, void *arg, deadline_free_t free_fn, DeadlineTask **ret) {
        pthread_condattr_t ca;
        DeadlineTask *t;
        int r;

        if (!fn || !ret)
                return -EINVAL;
        pthread_mutex_lock(&owners_lock);
        r = owner_check(current_owner);
        pthread_mutex_unlock(&owners_lock);
        if (r < 0)
                return r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->fn = fn;
        t->arg = arg;
        t->free_fn = free_fn;
        t->owner = current_owner;
        pthread_mutex_init(&t->lock, NULL);
        /* Deadlines are intervals: immune to the wall clock being set. */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&t->cond, &ca);
        pthread_condattr_destroy(&ca);

        r = -pthread_create(&t->thread, NULL, task_thread, t);
        if (r < 0) {
                /* fn never ran: arg is still the caller's. */
                t->free_fn = NULL;
                task_destroy(t);
                return r;
        }

        *ret = t;
        return 0;
}

int deadline_wait(DeadlineTask *t, unsigned timeout_ms) {
        struct timespec until;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&t->lock);
        while (!t->done && r != ETIMEDOUT)
                r = pthread_cond_timedwait(&t->cond, &t->lock, &until);
        r = t->done ? 0 : -ETIMEDOUT;
        pthread_mutex_unlock(&t->lock);
        return r;
}

void *deadline_arg(DeadlineTask *t) {
        return t->arg;
}

DeadlineTask *deadline_release(DeadlineTask *t) {
        bool done;

        if (!t)
                return NULL;

        pthread_mutex_lock(&t->lock);
        done = t->done;
        if (!done) {
                t->abandoned = true;
                /* Counted while the lock is held, so the thread cannot
                 * finish and count itself out first. */
                pthread_mutex_lock(&owners_lock);
                owner_add(t->owner);
                pthread_mutex_unlock(&owners_lock);
        }
        pthread_mutex_unlock(&t->lock);

        if (done) {
                /* fn returned; the thread is on its way out and no longer
                 * touches t once we hold the result of the join. */
                pthread_join(t->thread, NULL);
                task_destroy(t);
        } else
                pthread_detach(t->thread);
        return NULL;
}

int deadline_run(deadline_fn_t fn, void *arg, deadline_free_t free_fn, unsigned timeout_ms) {
        DeadlineTask *t;
        int r;

        r = deadline_start(fn, arg, free_fn, &t);
        if (r < 0)
                return r;

        r = deadline_wait(t, timeout_ms);
        if (r < 0) {
                deadline_release(t);
                return r;
        }
        /* Done: hand arg back to the caller, then free the task alone. */
        t->free_fn = NULL;
        deadline_release(t);
        return 0;
}
