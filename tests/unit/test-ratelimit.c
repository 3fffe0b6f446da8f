/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ratelimit.c: wrong passphrases per uid, attempts in flight counted. */
#include <glib.h>

#include "ratelimit.h"
#include "util.h"

#define SEC    1000000ULL
#define WINDOW (60 * SEC)

static RateLimit *new_limit(void) {
        RateLimit *rl = NULL;
        g_assert_cmpint(ratelimit_new(5, WINDOW, &rl), ==, 0);
        return rl;
}

/* One attempt: reserved, then settled. */
static int attempt(RateLimit *rl, uid_t uid, uint64_t now, bool failed, uint64_t *wait) {
        int r = ratelimit_begin(rl, uid, now, wait);
        if (r >= 0)
                ratelimit_end(rl, uid, now, failed);
        return r;
}

static void test_sixth_failure_refused(void) {
        RateLimit *rl = new_limit();
        uint64_t wait = 0;

        for (unsigned i = 0; i < 5; i++)
                g_assert_cmpint(attempt(rl, 1000, i * SEC, true, &wait), ==, 0);
        /* The sixth within the minute: refused, until the first is a minute old. */
        g_assert_cmpint(attempt(rl, 1000, 10 * SEC, false, &wait), ==, -EBUSY);
        g_assert_cmpuint(wait, ==, 50 * SEC);
        /* Other users are not affected. */
        g_assert_cmpint(attempt(rl, 1001, 10 * SEC, true, &wait), ==, 0);
        /* A minute after the first failure, one more is allowed, then none. */
        g_assert_cmpint(attempt(rl, 1000, 60 * SEC, true, &wait), ==, 0);
        g_assert_cmpint(attempt(rl, 1000, 60 * SEC, true, &wait), ==, -EBUSY);
        g_assert_cmpuint(wait, ==, 1 * SEC);
        ratelimit_free(rl);
}

static void test_successes_do_not_count(void) {
        RateLimit *rl = new_limit();
        uint64_t wait = 0;

        for (unsigned i = 0; i < 100; i++)
                g_assert_cmpint(attempt(rl, 1000, i, false, &wait), ==, 0);
        for (unsigned i = 0; i < 4; i++)
                g_assert_cmpint(attempt(rl, 1000, 200 + i, true, &wait), ==, 0);
        g_assert_cmpint(attempt(rl, 1000, 300, false, &wait), ==, 0);
        ratelimit_free(rl);
}

/* Guesses sent all at once count before their outcome is known. */
static void test_in_flight_counted(void) {
        RateLimit *rl = new_limit();
        uint64_t wait = 0;

        for (unsigned i = 0; i < 5; i++)
                g_assert_cmpint(ratelimit_begin(rl, 1000, 0, &wait), ==, 0);
        g_assert_cmpint(ratelimit_begin(rl, 1000, 0, &wait), ==, -EBUSY);
        g_assert_cmpuint(wait, ==, 1 * SEC);
        /* Two of them turn out right: room for two more. */
        ratelimit_end(rl, 1000, 5 * SEC, false);
        ratelimit_end(rl, 1000, 5 * SEC, false);
        g_assert_cmpint(ratelimit_begin(rl, 1000, 5 * SEC, &wait), ==, 0);
        g_assert_cmpint(ratelimit_begin(rl, 1000, 5 * SEC, &wait), ==, 0);
        g_assert_cmpint(ratelimit_begin(rl, 1000, 5 * SEC, &wait), ==, -EBUSY);
        /* Three fail at 6 s; with two still in flight the third-oldest
         * failure must age out first. */
        for (unsigned i = 0; i < 3; i++)
                ratelimit_end(rl, 1000, 6 * SEC + i, true);
        g_assert_cmpint(ratelimit_begin(rl, 1000, 7 * SEC, &wait), ==, -EBUSY);
        g_assert_cmpuint(wait, ==, 6 * SEC + WINDOW - 7 * SEC);
        ratelimit_free(rl);
}

static void test_forgets(void) {
        RateLimit *rl = new_limit();
        uint64_t wait = 0;

        for (uid_t u = 0; u < 50; u++)
                g_assert_cmpint(attempt(rl, u, 0, u % 2 == 0, &wait), ==, 0);
        g_assert_cmpuint(ratelimit_tracked(rl, 1), ==, 25);
        g_assert_cmpuint(ratelimit_tracked(rl, WINDOW), ==, 0);
        /* Settling an attempt never reserved changes nothing. */
        ratelimit_end(rl, 7, WINDOW, true);
        g_assert_cmpuint(ratelimit_tracked(rl, WINDOW), ==, 0);
        ratelimit_free(rl);
}

static void test_bad_parameters(void) {
        RateLimit *rl = NULL;
        g_assert_cmpint(ratelimit_new(0, WINDOW, &rl), ==, -EINVAL);
        g_assert_cmpint(ratelimit_new(5, 0, &rl), ==, -EINVAL);
        g_assert_cmpint(ratelimit_new(1000, WINDOW, &rl), ==, -EINVAL);
        g_assert_null(rl);
        g_assert_null(ratelimit_free(NULL));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/ratelimit/sixth-failure-refused", test_sixth_failure_refused);
        g_test_add_func("/ratelimit/successes-do-not-count", test_successes_do_not_count);
        g_test_add_func("/ratelimit/in-flight-counted", test_in_flight_counted);
        g_test_add_func("/ratelimit/forgets", test_forgets);
        g_test_add_func("/ratelimit/bad-parameters", test_bad_parameters);
        return g_test_run();
}
