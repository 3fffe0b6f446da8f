/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The disk index (daemon/disk-index.h): what it hands back is only ever
 * what was stored since the domain was last forgotten, and nothing while
 * events do not flow. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "disk-index.h"

#define UUID_A "6f1f7a5c-5d3e-4b1a-9c1e-0a0b0c0d0e01"
#define UUID_B "6f1f7a5c-5d3e-4b1a-9c1e-0a0b0c0d0e02"

static int collect(const char *path, const char *target, void *userdata) {
        g_string_append_printf(userdata, "%s=%s;", target, path);
        return 0;
}

/* The paths of (uuid, inactive) as "target=path;…", or NULL if unknown. */
static char *known(DiskIndex *x, const char *uuid, bool inactive, uint64_t *stamp) {
        GString *s = g_string_new("");
        int r = disk_index_visit(x, uuid, inactive, collect, s, stamp);

        if (r == -ENOENT) {
                g_assert_cmpuint(s->len, ==, 0);
                g_string_free(s, TRUE);
                return NULL;
        }
        g_assert_cmpint(r, ==, 0);
        return g_string_free(s, FALSE);
}

static void store(DiskIndex *x, const char *uuid, bool inactive, uint64_t stamp) {
        char *paths[] = { (char *) "/img/a.img", (char *) "/img/base.qcow2" };
        char *targets[] = { (char *) "vdb", (char *) "vdb" };

        g_assert_cmpint(disk_index_store(x, uuid, inactive, stamp, paths, targets, 2), ==, 0);
}

static void test_keeps_and_forgets(void) {
        DiskIndex *x = NULL;
        uint64_t stamp;
        char *s;

        g_assert_cmpint(disk_index_new(&x), ==, 0);
        /* Not watched: nothing is kept. */
        g_assert_null(known(x, UUID_A, false, &stamp));
        store(x, UUID_A, false, stamp);
        g_assert_null(known(x, UUID_A, false, &stamp));

        disk_index_set_watched(x, true);
        g_assert_null(known(x, UUID_A, false, &stamp));
        store(x, UUID_A, false, stamp);
        s = known(x, UUID_A, false, &stamp);
        g_assert_nonnull(strstr(s, "vdb=/img/a.img;"));
        g_assert_nonnull(strstr(s, "vdb=/img/base.qcow2;"));
        g_free(s);
        /* The live XML is not the configuration. */
        g_assert_null(known(x, UUID_A, true, &stamp));
        g_assert_null(known(x, UUID_B, false, &stamp));

        /* Empty is a fact too: a domain without disks. */
        g_assert_cmpint(disk_index_store(x, UUID_B, true, stamp, NULL, NULL, 0), ==, 0);
        s = known(x, UUID_B, true, &stamp);
        g_assert_cmpstr(s, ==, "");
        g_free(s);

        /* An event for A forgets A, not B. */
        disk_index_forget(x, UUID_A);
        g_assert_null(known(x, UUID_A, false, &stamp));
        s = known(x, UUID_B, true, &stamp);
        g_assert_nonnull(s);
        g_free(s);

        /* Events stop: everything goes. */
        disk_index_set_watched(x, false);
        g_assert_null(known(x, UUID_B, true, &stamp));
        disk_index_free(x);
}

/* An XML read before an event must not be kept after it: the event may be
 * about exactly the change the XML does not show. */
static void test_store_after_forget(void) {
        DiskIndex *x = NULL;
        uint64_t stamp, later;

        g_assert_cmpint(disk_index_new(&x), ==, 0);
        disk_index_set_watched(x, true);
        g_assert_null(known(x, UUID_A, false, &stamp));
        /* (the XML is being read here) */
        disk_index_forget(x, UUID_B);
        store(x, UUID_A, false, stamp);
        g_assert_null(known(x, UUID_A, false, &later));
        /* Read again after the event: kept. */
        store(x, UUID_A, false, later);
        char *s = known(x, UUID_A, false, &later);
        g_assert_nonnull(s);
        g_free(s);
        /* Stored twice: one entry, the newer. */
        store(x, UUID_A, false, later);
        s = known(x, UUID_A, false, &later);
        g_assert_cmpuint(strlen(s), ==, strlen("vdb=/img/a.img;vdb=/img/base.qcow2;"));
        g_free(s);
        disk_index_free(x);
}

/* What no event announces is read again once the entry is old. */
static void test_max_age(void) {
        DiskIndex *x = NULL;
        uint64_t stamp;
        char *s;

        g_assert_cmpint(disk_index_new(&x), ==, 0);
        disk_index_set_watched(x, true);
        g_assert_null(known(x, UUID_A, false, &stamp));
        store(x, UUID_A, false, stamp);
        s = known(x, UUID_A, false, &stamp);
        g_assert_nonnull(s);
        g_free(s);
        g_usleep(DISK_INDEX_MAX_AGE_USEC + 100000);
        g_assert_null(known(x, UUID_A, false, &stamp));
        disk_index_free(x);
}

static int stop_early(const char *path, const char *target, void *userdata) {
        (*(int *) userdata)++;
        return -ENOMEM;
}

static void test_visitor_error(void) {
        DiskIndex *x = NULL;
        uint64_t stamp;
        int calls = 0;

        g_assert_cmpint(disk_index_new(&x), ==, 0);
        disk_index_set_watched(x, true);
        g_assert_null(known(x, UUID_A, false, &stamp));
        store(x, UUID_A, false, stamp);
        g_assert_cmpint(disk_index_visit(x, UUID_A, false, stop_early, &calls, &stamp), ==, -ENOMEM);
        g_assert_cmpint(calls, ==, 1);
        disk_index_free(x);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/disk-index/keeps-and-forgets", test_keeps_and_forgets);
        g_test_add_func("/disk-index/store-after-forget", test_store_after_forget);
        g_test_add_func("/disk-index/max-age", test_max_age);
        g_test_add_func("/disk-index/visitor-error", test_visitor_error);
        return g_test_run();
}
