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

typedef void (*deadline_fn_t)(void *arg);
/* Releases whatever fn left in arg (fds, memory) and arg itself. */
typedef void (*deadline_free_t)(void *arg);

typedef struct DeadlineTask DeadlineTask;

/* The cap on abandoned threads, daemon-wide. */
#define DEADLINE_MAX_ABANDONED 32U

/* Starts fn(arg) on a new thread.  -EBUSY when DEADLINE_MAX_ABANDONED
 * threads are stuck already (fn does not run; arg stays the caller's). */
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

/* Threads currently abandoned (running past their deadline). */
unsigned deadline_abandoned(void);
