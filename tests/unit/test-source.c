/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Validation of the source path, against a scratch tree of the odd
 * things callers may point at. */
#include <glib.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

#include "errors.h"
#include "source.h"
#include "util.h"

static char *dir;

static char *check(const char *path, SourceInfo *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        SourceInfo s = {};
        int r = source_resolve(path, 5000, &s, &error);
        char *name = r < 0 ? g_strdup(error.name) : NULL;
        if (r < 0)
                g_assert_null(s.path);
        sd_bus_error_free(&error);
        if (ret)
                *ret = s;
        else
                source_info_done(&s);
        return name;
}

static void test_good(void) {
        g_autofree char *file = g_build_filename(dir, "img", NULL);
        g_autofree char *link = g_build_filename(dir, "link", NULL);
        SourceInfo s;

        g_assert_null(check(file, &s));
        g_assert_cmpstr(s.path, ==, file);
        g_assert_false(s.block);
        g_assert_cmpuint(s.ino, !=, 0);
        source_info_done(&s);

        /* A symlink resolves to its target: policy sees the real file. */
        g_assert_null(check(link, &s));
        g_assert_cmpstr(s.path, ==, file);
        source_info_done(&s);
}

static void test_bad(void) {
        g_autofree char *dangling = g_build_filename(dir, "dangling", NULL);
        g_autofree char *loop = g_build_filename(dir, "loop1", NULL);
        g_autofree char *fifo = g_build_filename(dir, "fifo", NULL);
        g_autofree char *base = g_path_get_basename(dir);
        g_autofree char *dotdot = g_strdup_printf("%s/../%s/img", dir, base);
        g_autofree char *dot = g_strdup_printf("%s/./img", dir);
        g_autofree char *missing = g_build_filename(dir, "missing", NULL);
        g_autofree char *longpath = g_strnfill(5000, 'a');
        longpath[0] = '/';
        const char *cases[] = {
                "",  "relative/path", "img",       dangling,    loop,         fifo,     dir,         dotdot,
                dot, missing,         "/dev/zero", "/dev/null", "/proc/self", longpath, "/tmp/a\nb", "/tmp/\x7f",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *err = check(cases[i], NULL);
                if (!err)
                        g_error("accepted: '%s'", cases[i]);
                g_assert_cmpstr(err, ==, DBUS_ERROR_INVALID_ARGS);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        dir = g_dir_make_tmp("lv-source-XXXXXX", NULL);
        g_assert_nonnull(dir);
        g_autofree char *img = g_build_filename(dir, "img", NULL);
        g_assert_true(g_file_set_contents(img, "x", 1, NULL));
        g_autofree char *p1 = g_build_filename(dir, "link", NULL);
        g_assert_cmpint(symlink(img, p1), ==, 0);
        g_autofree char *p2 = g_build_filename(dir, "dangling", NULL);
        g_assert_cmpint(symlink("/nonexistent/x", p2), ==, 0);
        g_autofree char *l1 = g_build_filename(dir, "loop1", NULL);
        g_autofree char *l2 = g_build_filename(dir, "loop2", NULL);
        g_assert_cmpint(symlink(l2, l1), ==, 0);
        g_assert_cmpint(symlink(l1, l2), ==, 0);
        g_autofree char *fifo = g_build_filename(dir, "fifo", NULL);
        g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);

        g_test_add_func("/source/good", test_good);
        g_test_add_func("/source/bad", test_bad);
        int r = g_test_run();

        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
        (void) !system(cmd);
        return r;
}
