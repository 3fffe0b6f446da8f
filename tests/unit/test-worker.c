/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The worker: jobs run off the loop, completions come back on it, and a
 * job never waits behind a slow one while threads are available — also
 * when it is submitted right after the slow one, before any thread woke. */
#include <glib.h>
#include <semaphore.h>

#include <systemd/sd-event.h>

#include "util.h"
#include "worker.h"

typedef struct Job {
        sem_t *release; /* NULL: finish at once */
        bool ran, done;
        GThread *thread;
} Job;

static void job_run(void *p) {
        Job *j = p;
        j->thread = g_thread_self();
        if (j->release)
                sem_wait(j->release);
        j->ran = true;
}

static void job_done(void *p) {
        Job *j = p;
        j->done = true;
}

static void run_until(sd_event *e, bool *flag) {
        for (int i = 0; i < 500 && !*flag; i++)
                g_assert_cmpint(sd_event_run(e, 10 * 1000), >=, 0);
        g_assert_true(*flag);
}

static void test_not_behind_slow(void) {
        sd_event *e = NULL;
        Worker *w = NULL;
        sem_t release;

        g_assert_cmpint(sd_event_new(&e), >=, 0);
        g_assert_cmpint(worker_new(e, 4, &w), >=, 0);
        sem_init(&release, 0, 0);

        /* A warm-up job leaves one idle thread, the situation in which a
         * second job used to queue behind the first. */
        Job warm = {};
        g_assert_cmpint(worker_submit(w, job_run, job_done, &warm), ==, 0);
        run_until(e, &warm.done);

        Job slow = { .release = &release }, quick = {};
        g_assert_cmpint(worker_submit(w, job_run, job_done, &slow), ==, 0);
        g_assert_cmpint(worker_submit(w, job_run, job_done, &quick), ==, 0);
        g_assert_cmpuint(worker_in_flight(w), ==, 2);
        run_until(e, &quick.done);
        g_assert_false(slow.ran);
        g_assert_true(quick.thread != g_thread_self());

        sem_post(&release);
        run_until(e, &slow.done);
        g_assert_cmpuint(worker_in_flight(w), ==, 0);

        worker_free(w);
        sd_event_unref(e);
        sem_destroy(&release);
}

static void test_many(void) {
        sd_event *e = NULL;
        Worker *w = NULL;
        Job jobs[64] = {};
        bool all = false;

        g_assert_cmpint(sd_event_new(&e), >=, 0);
        g_assert_cmpint(worker_new(e, 3, &w), >=, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(jobs); i++)
                g_assert_cmpint(worker_submit(w, job_run, job_done, &jobs[i]), ==, 0);
        for (int k = 0; k < 500 && !all; k++) {
                g_assert_cmpint(sd_event_run(e, 10 * 1000), >=, 0);
                all = true;
                for (size_t i = 0; i < G_N_ELEMENTS(jobs); i++)
                        all = all && jobs[i].done;
        }
        g_assert_true(all);
        worker_free(w);
        sd_event_unref(e);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/worker/not-behind-slow", test_not_behind_slow);
        g_test_add_func("/worker/many", test_many);
        return g_test_run();
}
