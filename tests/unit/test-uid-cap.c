/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The per-uid and overall cap on work in flight (uid-cap.h): root is
 * exempt from the per-uid cap, not from the total. */
#include <glib.h>

#include "uid-cap.h"
#include "util.h"

static void test_caps(void) {
        UidCap *c = NULL;

        g_assert_cmpint(uid_cap_new(0, 1, &c), ==, -EINVAL);
        g_assert_cmpint(uid_cap_new(4, 2, &c), ==, 0);

        /* Per uid: two, then EUSERS; another uid is not affected. */
        g_assert_cmpint(uid_cap_take(c, 1000), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, -EUSERS);
        g_assert_cmpint(uid_cap_take(c, 1001), ==, 0);
        /* Root is not capped per uid, but counts in the total. */
        g_assert_cmpint(uid_cap_take(c, 0), ==, 0);
        g_assert_cmpuint(uid_cap_in_flight(c), ==, 4);
        g_assert_cmpint(uid_cap_take(c, 0), ==, -EBUSY);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, -EBUSY);

        uid_cap_put(c, 1000);
        g_assert_cmpint(uid_cap_take(c, 0), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, -EBUSY);
        uid_cap_put(c, 0);
        uid_cap_put(c, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, 0);
        g_assert_cmpint(uid_cap_take(c, 1000), ==, -EUSERS);
        g_assert_cmpint(uid_cap_take(c, 1002), ==, 0);
        g_assert_cmpuint(uid_cap_in_flight(c), ==, 4);

        /* Releasing what was never taken changes nothing. */
        uid_cap_put(c, 4242);
        g_assert_cmpuint(uid_cap_in_flight(c), ==, 4);
        uid_cap_put(c, 1000);
        uid_cap_put(c, 1000);
        uid_cap_put(c, 1001);
        uid_cap_put(c, 1002);
        g_assert_cmpuint(uid_cap_in_flight(c), ==, 0);
        c = uid_cap_free(c);
        g_assert_null(c);
        g_assert_null(uid_cap_free(NULL));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/uid-cap/caps", test_caps);
        return g_test_run();
}
