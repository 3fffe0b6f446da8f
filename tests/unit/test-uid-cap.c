/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The per-uid and overall cap on work in flight. */
#include <glib.h>

#include "uid-cap.h"
#include "util.h"

static void test_caps(void) {
        UidCap *c = NULL;

        g_assert_cmpint(uid_cap_new(0, 1, &c), ==, -EINVAL);
        g_assert_cmpint(uid_cap_new(3, 2, &c), ==, 0);

        /* Per uid. */
        g_assert_cmpint(uid_cap_take(c, 1000), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, -EBUSY);
        /* In all: the third for another uid fits, the fourth not. */
        g_assert_cmpint(uid_cap_take(c, 1001), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, -EBUSY);
        /* Root is neither refused nor counted. */
        for (int i = 0; i < 100; i++)
                g_assert_cmpint(uid_cap_take(c, 0), ==, 0);

        /* Giving back frees the slot for anyone. */
        uid_cap_put(c, 1000);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, -EBUSY);
        uid_cap_put(c, 1002);
        uid_cap_put(c, 1001);
        uid_cap_put(c, 1000);
        /* A put without a take changes nothing. */
        uid_cap_put(c, 4242);
        g_assert_cmpint(uid_cap_take(c, 4242), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 4242), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 7), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 8), ==, -EBUSY);
        g_assert_null(uid_cap_free(c));
        g_assert_null(uid_cap_free(NULL));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/uid-cap/caps", test_caps);
        return g_test_run();
}
