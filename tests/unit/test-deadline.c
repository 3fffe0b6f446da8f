/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* deadline.c: work bounded in time, abandoned threads accounted for. */
#include <glib.h>
#include <stdatomic.h>
#include <unistd.h>

#include "deadline.h"
#include "util.h"

static atomic_uint freed;

typedef struct Arg {
        unsigned sleep_ms;
        int result;
} Arg;

static void run(void *p) {
        Arg *a = p;
        g_usleep(a->sleep_ms * 1000);
        a->result = 42;
}

static void arg_free(void *p) {
        atomic_fetch_add(&freed, 1);
        g_free(p);
}

static void wait_abandoned(unsigned n) {
        for (unsigned i = 0; i < 500 && deadline_abandoned() != n; i++)
                g_usleep(10 * 1000);
        g_assert_cmpuint(deadline_abandoned(), ==, n);
}

static void test_in_time(void) {
        Arg *a = g_new0(Arg, 1);
        unsigned before = atomic_load(&freed);

        g_assert_cmpint(deadline_run(run, a, arg_free, 2000), ==, 0);
        /* Done in time: the results are the caller's, nothing freed. */
        g_assert_cmpint(a->result, ==, 42);
        g_assert_cmpuint(atomic_load(&freed), ==, before);
        g_free(a);
        g_assert_cmpuint(deadline_abandoned(), ==, 0);
}

static void test_abandoned(void) {
        Arg *a = g_new0(Arg, 1);
        unsigned before = atomic_load(&freed);
        gint64 t0 = g_get_monotonic_time();

        a->sleep_ms = 400;
        g_assert_cmpint(deadline_run(run, a, arg_free, 50), ==, -ETIMEDOUT);
        /* The caller got its answer at the deadline, not when the work ended. */
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 300 * 1000);
        g_assert_cmpuint(deadline_abandoned(), ==, 1);
        /* The thread frees its argument when it comes back, and counts
         * itself out. */
        wait_abandoned(0);
        g_assert_cmpuint(atomic_load(&freed), ==, before + 1);
}

static void test_wait_then_release(void) {
        DeadlineTask *t = NULL;
        Arg *a = g_new0(Arg, 1);
        unsigned before = atomic_load(&freed);

        a->sleep_ms = 200;
        g_assert_cmpint(deadline_start(run, a, arg_free, &t), ==, 0);
        g_assert_cmpint(deadline_wait(t, 10), ==, -ETIMEDOUT);
        /* Still the caller's: it may wait again. */
        g_assert_cmpint(deadline_wait(t, 2000), ==, 0);
        g_assert_cmpint(((Arg *) deadline_arg(t))->result, ==, 42);
        deadline_release(t);
        g_assert_cmpuint(atomic_load(&freed), ==, before + 1);
        g_assert_cmpuint(deadline_abandoned(), ==, 0);
}

static void stick(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                Arg *a = g_new0(Arg, 1);
                a->sleep_ms = 1000;
                g_assert_cmpint(deadline_run(run, a, arg_free, 1), ==, -ETIMEDOUT);
        }
}

static void test_cap(void) {
        /* Fill one owner's cap with stuck threads: its next task does not
         * start. */
        deadline_set_owner(4201);
        stick(DEADLINE_MAX_ABANDONED_PER_UID);
        g_assert_cmpuint(deadline_abandoned(), ==, DEADLINE_MAX_ABANDONED_PER_UID);
        g_assert_cmpuint(deadline_abandoned_by(4201), ==, DEADLINE_MAX_ABANDONED_PER_UID);

        Arg *b = g_new0(Arg, 1);
        g_assert_cmpint(deadline_run(run, b, arg_free, 1000), ==, -EBUSY);
        g_assert_cmpint(b->result, ==, 0); /* never ran, still ours */

        /* Another user's work, the daemon's own and root's still start. */
        deadline_set_owner(4202);
        g_assert_cmpint(deadline_run(run, b, arg_free, 1000), ==, 0);
        g_assert_cmpint(b->result, ==, 42);
        b->result = 0;
        deadline_set_owner((uid_t) -1);
        g_assert_cmpint(deadline_run(run, b, arg_free, 1000), ==, 0);
        b->result = 0;
        /* Root is never refused, however many of its threads are stuck. */
        deadline_set_owner(0);
        stick(DEADLINE_MAX_ABANDONED_PER_UID + 2);
        g_assert_cmpuint(deadline_abandoned_by(0), ==, DEADLINE_MAX_ABANDONED_PER_UID + 2);
        g_assert_cmpint(deadline_run(run, b, arg_free, 1000), ==, 0);
        g_free(b);

        /* Once they come back, work starts again. */
        wait_abandoned(0);
        g_assert_cmpuint(deadline_abandoned_by(4201), ==, 0);
        deadline_set_owner(4201);
        Arg *c = g_new0(Arg, 1);
        g_assert_cmpint(deadline_run(run, c, arg_free, 1000), ==, 0);
        g_free(c);
        deadline_set_owner((uid_t) -1);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/deadline/in-time", test_in_time);
        g_test_add_func("/deadline/abandoned", test_abandoned);
        g_test_add_func("/deadline/wait-then-release", test_wait_then_release);
        g_test_add_func("/deadline/cap", test_cap);
        return g_test_run();
}
