/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Test-only fault injection: proves that a kill -9 between any two steps
 * of an attach or detach leaves a state the start-up scan repairs.
 *
 * With --fault-file=PATH, each numbered step checks PATH; if it holds
 * "OP:STEP" (e.g. "attach:2") matching this step, the file is removed
 * (one shot) and the process kills itself with SIGKILL, exactly as an
 * outside kill -9 would.  Without the option this costs one branch. */

#include <stdbool.h>

void fault_set_file(const char *path);
void fault_point(const char *op, unsigned step);

/* The same file, for a one-shot misbehaviour instead of a kill: true (and
 * the file removed) if it holds exactly name. */
bool fault_trigger(const char *name);
