/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdatomic.h>
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
};

static atomic_uint n_abandoned;

unsigned deadline_abandoned(void) {
        return atomic_load(&n_abandoned);
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
                task_destroy(t);
                atomic_fetch_sub(&n_abandoned, 1);
        }
        return NULL;
}

int deadline_start(deadline_fn_t fn, void *arg, deadline_free_t free_fn, DeadlineTask **ret) {
        pthread_condattr_t ca;
        DeadlineTask *t;
        int r;

        if (!fn || !ret)
                return -EINVAL;
        if (atomic_load(&n_abandoned) >= DEADLINE_MAX_ABANDONED)
                return -EBUSY;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->fn = fn;
        t->arg = arg;
        t->free_fn = free_fn;
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
                atomic_fetch_add(&n_abandoned, 1);
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
