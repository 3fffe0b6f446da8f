/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* File system work on a path a caller named, bounded in time.
 *
 * A system call on a hung NFS mount or a FUSE file system that never
 * answers cannot be interrupted or cancelled, so the only way to bound it is
 * not to wait for it: the work runs on a thread of its own, the worker that
 * asked waits at most a deadline, and if the deadline passes the thread is
 * abandoned — it keeps the task, frees it whenever the call returns, and
 * touches nothing else.  The number of abandoned threads is capped; past the
 * cap no new task starts (-EBUSY) until one of them comes back.
 *
 * Rules for a task function: it works only on its own argument block (what
 * it opens or allocates goes into that block), never on shared daemon state,
 * and never takes a lock another thread could hold: it may outlive every
 * other part of the daemon. */

#include <stdbool.h>
#include <sys/types.h>

typedef void (*deadline_fn_t)(void *arg);
/* Releases whatever fn left in arg (fds, memory) and arg itself. */
typedef void (*deadline_free_t)(void *arg);

typedef struct DeadlineTask DeadlineTask;

/* The caps on abandoned threads.  Each task is counted against its owner:
 * the uid on whose behalf the calling thread works (deadline_set_owner()),
 * so that one user's hung mount makes new tasks fail for that user only.
 * Tasks owned by uid 0 are counted but never refused. */
#define DEADLINE_MAX_ABANDONED_PER_UID 8U
/* Over all owners but root: bounds the threads (and memory) a crowd of
 * users can leave behind. */
#define DEADLINE_MAX_ABANDONED         256U
/* Owners with abandoned threads at once; a new owner past it is refused. */
#define DEADLINE_MAX_OWNERS            64U

/* The owner of the tasks the calling thread starts from now on (a thread-
 * local setting; (uid_t) -1, the default, is "the daemon itself", a bucket
 * like any user's).  Workers set it for the duration of a caller's job, so
 * that every deadline-bound access on the caller's behalf, in any module,
 * counts against the caller. */
void deadline_set_owner(uid_t uid);
uid_t deadline_get_owner(void);

/* Starts fn(arg) on a new thread, a thread of its own that ends with the
 * task (fn may change the thread's own credentials).  -EBUSY when the
 * owner's abandoned threads are at DEADLINE_MAX_ABANDONED_PER_UID, or all
 * non-root ones at DEADLINE_MAX_ABANDONED (fn does not run; arg stays the
 * caller's). */
int deadline_start(deadline_fn_t fn, void *arg, deadline_free_t free_fn, DeadlineTask **ret);

/* Waits up to timeout_ms for the task: 0 once fn returned (arg holds its
 * results), -ETIMEDOUT if it has not yet (the task stays the caller's: wait
 * again or abandon it).  May be called from any one thread at a time. */
int deadline_wait(DeadlineTask *t, unsigned timeout_ms);

/* Ends the caller's interest.  A finished task is freed (free_fn(arg)); a
 * running one is left to its thread, which frees it when fn returns.
 * Never blocks.  Accepts NULL; returns NULL. */
DeadlineTask *deadline_release(DeadlineTask *t);

/* The task's argument block, for reading results after deadline_wait()
 * returned 0. */
void *deadline_arg(DeadlineTask *t);

/* Start, wait, and on timeout abandon: 0 (fn done; arg is the caller's to
 * read and free), -ETIMEDOUT (arg now belongs to the thread), -EBUSY (too
 * many abandoned threads; fn never ran; arg is the caller's), or another
 * negative errno from thread creation (likewise). */
int deadline_run(deadline_fn_t fn, void *arg, deadline_free_t free_fn, unsigned timeout_ms);

/* Threads currently abandoned (running past their deadline): all of them,
 * and those owned by uid. */
unsigned deadline_abandoned(void);
unsigned deadline_abandoned_by(uid_t uid);
