/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Independent blocking steps (one libvirt RPC, one header read each) done
 * side by side instead of one after the other: their cost is mostly
 * waiting for libvirtd or QEMU, so the wall time of n of them is what
 * grows with the number of volumes and domains, not the CPU time. */

#include <stddef.h>

typedef void (*parallel_fn_t)(size_t i, void *userdata);

/* Calls fn(i, userdata) once for every i in [0, n), on the calling thread
 * and up to max_threads - 1 helper threads, and returns when all calls
 * returned.  If a thread cannot be started, the others do its share: every
 * i is done whatever happens.  fn must be safe to run concurrently with
 * itself for different i. */
void parallel_for(size_t n, unsigned max_threads, parallel_fn_t fn, void *userdata);
