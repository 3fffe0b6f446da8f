/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Runs blocking jobs (libvirt RPCs, LUKS header reads) on threads and
 * hands their completion back to the event loop.  sd-event and sd-bus are
 * single-threaded: a job function must not touch either; only its done
 * callback, which runs on the loop, may. */

#include <systemd/sd-event.h>

typedef struct Worker Worker;

typedef void (*worker_job_t)(void *userdata);
typedef void (*worker_done_t)(void *userdata);

int worker_new(sd_event *event, unsigned max_threads, Worker **ret);
/* Waits for running jobs (their done callbacks are not run any more). */
Worker *worker_free(Worker *w);

/* Runs job(userdata) on a thread, then done(userdata) on the event loop.
 * Jobs beyond max_threads queue in FIFO order. */
int worker_submit(Worker *w, worker_job_t job, worker_done_t done, void *userdata);

/* Called on each worker thread right before it ends (e.g. to close a
 * per-thread connection). */
typedef void (*worker_thread_exit_t)(void *userdata);
void worker_set_thread_exit(Worker *w, worker_thread_exit_t fn, void *userdata);

/* Jobs submitted and not yet completed (including their done callback). */
unsigned worker_in_flight(Worker *w);
