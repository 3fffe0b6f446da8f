/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdatomic.h>

#include "parallel.h"

typedef struct Shared {
        atomic_size_t next;
        size_t n;
        parallel_fn_t fn;
        void *userdata;
} Shared;

static void *run(void *p) {
        Shared *s = p;

        for (size_t i; (i = atomic_fetch_add(&s->next, 1)) < s->n;)
                s->fn(i, s->userdata);
        return NULL;
}

#define PARALLEL_THREADS_MAX 16U

void parallel_for(size_t n, unsigned max_threads, parallel_fn_t fn, void *userdata) {
        pthread_t threads[PARALLEL_THREADS_MAX];
        Shared s = { .n = n, .fn = fn, .userdata = userdata };
        unsigned started = 0;

        atomic_init(&s.next, 0);
        if (max_threads > PARALLEL_THREADS_MAX)
                max_threads = PARALLEL_THREADS_MAX;
        /* No more threads than there are steps beyond the caller's own. */
        while (started + 1 < max_threads && started + 1 < n && pthread_create(&threads[started], NULL, run, &s) == 0)
                started++;

        run(&s);
        for (unsigned t = 0; t < started; t++)
                (void) pthread_join(threads[t], NULL);
}
