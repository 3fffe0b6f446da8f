/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>

#include "util.h"
#include "worker.h"

typedef struct Job {
        worker_job_t job;
        worker_done_t done;
        void *userdata;
        struct Job *next;
} Job;

typedef struct JobQueue {
        Job *head, *tail;
} JobQueue;

struct Worker {
        sd_event_source *event_source;
        int efd;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        JobQueue pending; /* waiting for a thread */
        unsigned n_pending;
        JobQueue finished; /* waiting for the loop */
        unsigned max_threads;
        unsigned threads; /* threads alive */
        unsigned idle;    /* of those, waiting for work */
        unsigned in_flight;
        bool stopping;

        worker_thread_exit_t thread_exit;
        void *thread_exit_userdata;
};

static void queue_push(JobQueue *q, Job *j) {
        j->next = NULL;
        if (q->tail)
                q->tail->next = j;
        else
                q->head = j;
        q->tail = j;
}

static Job *queue_pop(JobQueue *q) {
        Job *j = q->head;
        if (j) {
                q->head = j->next;
                if (!q->head)
                        q->tail = NULL;
        }
        return j;
}

static void *worker_thread(void *p) {
        Worker *w = p;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                Job *j;

                while (!(j = queue_pop(&w->pending)) && !w->stopping) {
                        /* Idle threads linger briefly so a burst of calls
                         * does not pay thread creation each time, then go. */
                        struct timespec deadline;
                        clock_gettime(CLOCK_REALTIME, &deadline);
                        deadline.tv_sec += 10;
                        w->idle++;
                        int r = pthread_cond_timedwait(&w->cond, &w->lock, &deadline);
                        w->idle--;
                        if (r == ETIMEDOUT && !w->pending.head)
                                goto out;
                }
                if (!j)
                        break;
                w->n_pending--;

                pthread_mutex_unlock(&w->lock);
                j->job(j->userdata);
                pthread_mutex_lock(&w->lock);

                queue_push(&w->finished, j);
                uint64_t one = 1;
                (void) !write(w->efd, &one, sizeof one);
        }
out:
        /* Per-thread resources go before the thread counts as gone, so
         * worker_free() returning means they are all released. */
        if (w->thread_exit) {
                pthread_mutex_unlock(&w->lock);
                w->thread_exit(w->thread_exit_userdata);
                pthread_mutex_lock(&w->lock);
        }
        w->threads--;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static int on_efd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        uint64_t n;

        (void) !read(fd, &n, sizeof n);

        for (;;) {
                pthread_mutex_lock(&w->lock);
                Job *j = queue_pop(&w->finished);
                pthread_mutex_unlock(&w->lock);
                if (!j)
                        break;

                /* Counted out before done runs: done may ask whether the
                 * daemon is idle, and this job no longer keeps it busy. */
                w->in_flight--;
                if (j->done)
                        j->done(j->userdata);
                free(j);
        }
        return 0;
}

int worker_new(sd_event *event, unsigned max_threads, Worker **ret) {
        Worker *w;
        int r;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->max_threads = max_threads > 0 ? max_threads : 1;

        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = negative_errno();
                worker_free(w);
                return r;
        }

        r = sd_event_add_io(event, &w->event_source, w->efd, EPOLLIN, on_efd, w);
        if (r < 0) {
                worker_free(w);
                return r;
        }
        (void) sd_event_source_set_description(w->event_source, "worker-completion");

        *ret = w;
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;

        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        /* Jobs not started yet are dropped; their owners are going away
         * with the loop anyway. */
        for (Job *j; (j = queue_pop(&w->pending));)
                free(j);
        w->n_pending = 0;
        pthread_cond_broadcast(&w->cond);
        while (w->threads > 0)
                pthread_cond_wait(&w->cond, &w->lock);
        for (Job *j; (j = queue_pop(&w->finished));)
                free(j);
        pthread_mutex_unlock(&w->lock);

        sd_event_source_disable_unref(w->event_source);
        if (w->efd >= 0)
                close(w->efd);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

int worker_submit(Worker *w, worker_job_t job, worker_done_t done, void *userdata) {
        Job *j;
        int r = 0;

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (Job){ .job = job, .done = done, .userdata = userdata };

        pthread_mutex_lock(&w->lock);
        queue_push(&w->pending, j);
        w->n_pending++;
        /* More queued jobs than idle threads: one more thread.  Comparing
         * with the queue, not just "is any thread idle", matters: a thread
         * that was signalled for the previous job still counts as idle
         * until it wakes, and a second job must not wait behind the first
         * (a Probe behind an attach reading a slow passphrase-fd did). */
        if (w->n_pending > w->idle && w->threads < w->max_threads) {
                pthread_t t;
                pthread_attr_t attr;

                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                r = -pthread_create(&t, &attr, worker_thread, w);
                pthread_attr_destroy(&attr);
                if (r == 0)
                        w->threads++;
                else if (w->threads > 0)
                        r = 0; /* an existing thread will get to it */
                else {
                        /* Nobody would ever run it: take it back. */
                        w->n_pending--;
                        JobQueue *q = &w->pending;
                        Job **pp = &q->head, *prev = NULL;
                        while (*pp != j) {
                                prev = *pp;
                                pp = &(*pp)->next;
                        }
                        *pp = j->next;
                        if (q->tail == j)
                                q->tail = prev;
                        free(j);
                }
        } else
                pthread_cond_signal(&w->cond);
        if (r == 0)
                w->in_flight++;
        pthread_mutex_unlock(&w->lock);

        return r;
}

void worker_set_thread_exit(Worker *w, worker_thread_exit_t fn, void *userdata) {
        pthread_mutex_lock(&w->lock);
        w->thread_exit = fn;
        w->thread_exit_userdata = userdata;
        pthread_mutex_unlock(&w->lock);
}

unsigned worker_in_flight(Worker *w) {
        return w->in_flight;
}
