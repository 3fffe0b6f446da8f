/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Validation of the source path, against a scratch tree of the odd
 * things callers may point at. */
#include <glib.h>
#include <glib/gstdio.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "rbd-name.h"
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

static int resolve_as(const char *path, const SourceCreds *creds, char **ret_message) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        SourceInfo s = {};
        int r = source_resolve_as(path, creds, 5000, &s, &error);

        *ret_message = g_strdup(error.message);
        sd_bus_error_free(&error);
        source_info_done(&s);
        return r;
}

/* A look-up with a caller's credentials: the caller's permissions decide,
 * one answer wherever they stop it, and nothing of the caller's identity
 * stays on the calling thread or reaches the others. */
static void test_as_caller(void) {
        gid_t other_gid = 65533;
        gid_t groups_member[] = { 65534, other_gid }, groups_stranger[] = { 65534 };
        SourceCreds member = { .uid = 65534, .gid = 65534, .groups = groups_member, .n_groups = 2 };
        SourceCreds stranger = { .uid = 65534, .gid = 65534, .groups = groups_stranger, .n_groups = 1 };
        g_autofree char *closed = g_build_filename(dir, "closed", NULL);
        g_autofree char *closed_img = g_build_filename(closed, "img", NULL);
        g_autofree char *closed_missing = g_build_filename(closed, "missing", NULL);
        g_autofree char *group = g_build_filename(dir, "group", NULL);
        g_autofree char *group_img = g_build_filename(group, "img", NULL);
        g_autofree char *private_img = g_build_filename(dir, "private", NULL);
        g_autofree char *open_img = g_build_filename(dir, "img", NULL);
        g_autofree char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL, *m5 = NULL;
        gid_t before[64], after[64];
        int n_before, n_after;

        if (geteuid() != 0) {
                g_test_skip("needs root (setfsuid to another user)");
                return;
        }
        g_assert_cmpint(chmod(dir, 0755), ==, 0);
        g_assert_cmpint(g_mkdir(closed, 0700), ==, 0);
        g_assert_true(g_file_set_contents(closed_img, "x", 1, NULL));
        g_assert_cmpint(g_mkdir(group, 0750), ==, 0);
        g_assert_cmpint(chown(group, 0, other_gid), ==, 0);
        g_assert_true(g_file_set_contents(group_img, "x", 1, NULL));
        g_assert_cmpint(chown(group_img, 0, other_gid), ==, 0);
        g_assert_cmpint(chmod(group_img, 0640), ==, 0);
        g_assert_true(g_file_set_contents(private_img, "x", 1, NULL));
        g_assert_cmpint(chmod(private_img, 0600), ==, 0);
        g_assert_cmpint(chmod(open_img, 0644), ==, 0);
        n_before = getgroups(G_N_ELEMENTS(before), before);
        g_assert_cmpint(n_before, >=, 0);

        /* Behind a directory it may not search: existing or not, one
         * answer; a file it may see but not read likewise. */
        g_assert_cmpint(resolve_as(closed_img, &member, &m1), ==, -EACCES);
        g_assert_cmpint(resolve_as(closed_missing, &member, &m2), ==, -EACCES);
        g_assert_cmpint(resolve_as(private_img, &member, &m3), ==, -EACCES);
        g_assert_cmpstr(m1, ==, m2);
        g_assert_cmpstr(m1, ==, m3);
        /* A supplementary group opens the way for its members only. */
        g_assert_cmpint(resolve_as(group_img, &member, &m4), ==, 0);
        g_assert_cmpint(resolve_as(group_img, &stranger, &m5), ==, -EACCES);
        g_clear_pointer(&m4, g_free);
        g_assert_cmpint(resolve_as(open_img, &stranger, &m4), ==, 0);
        /* As root (no creds), everything as before. */
        g_clear_pointer(&m4, g_free);
        g_assert_cmpint(resolve_as(closed_img, NULL, &m4), ==, 0);

        /* The calling thread and the process are untouched. */
        g_assert_cmpint(setfsuid((uid_t) -1), ==, 0);
        g_assert_cmpint(setfsgid((gid_t) -1), ==, 0);
        n_after = getgroups(G_N_ELEMENTS(after), after);
        g_assert_cmpint(n_after, ==, n_before);
        g_assert_cmpmem(after, n_after * sizeof(gid_t), before, n_before * sizeof(gid_t));
}

/* The rbd: form (issue 18): what is taken, how it splits, and what is
 * refused before anything is looked up. */
static void test_rbd(void) {
        static const struct {
                const char *source, *pool, *ns, *image, *name;
        } good[] = {
                { "rbd:rbd/vol", "rbd", "", "vol", "rbd/vol" },
                { "rbd:pool-1/ns_2/img.3+x", "pool-1", "ns_2", "img.3+x", "pool-1/ns_2/img.3+x" },
        };
        static const char *const bad[] = {
                "rbd:",        "rbd:rbd",   "rbd:/vol",        "rbd:rbd/",    "rbd:rbd//vol", "rbd:a/b/c/d",
                "rbd:rbd/v@s", "rbd:.p/v",  "rbd:rbd/..",      "rbd:rbd/a b", "rbd:rbd/a:b",  "rbd:rbd/a\nb",
                "rbd:rbd/é",   "rbd:p/v=x", "rbd:p/ns/.image", "rbd:p/v/",
        };
        char buf[3 * (RBD_NAME_MAX + 1)];
        g_autofree char *long_name = g_strnfill(RBD_NAME_MAX + 1, 'a');
        g_autofree char *too_long = g_strconcat("rbd:rbd/", long_name, NULL);
        g_autofree char *longest = g_strconcat("rbd:rbd/", long_name + 1, NULL);
        const char *reason = NULL;
        RbdName n;

        for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                SourceInfo s = {};

                g_assert_cmpint(rbd_name_parse(good[i].source, &n, &reason), ==, 0);
                g_assert_cmpstr(n.pool, ==, good[i].pool);
                g_assert_cmpstr(n.ns, ==, good[i].ns);
                g_assert_cmpstr(n.image, ==, good[i].image);
                g_assert_cmpint(rbd_name_format(&n, buf, sizeof buf), ==, 0);
                g_assert_cmpstr(buf, ==, good[i].name);
                /* Resolved as root: nothing looked up, the same text back. */
                g_assert_cmpint(source_resolve(good[i].source, 1000, &s, &error), ==, 0);
                g_assert_true(s.rbd);
                g_assert_cmpstr(s.path, ==, good[i].source);
                source_info_done(&s);
                /* Another caller cannot read it "itself". */
                SourceCreds creds = { .uid = 4201, .gid = 4201 };
                g_assert_cmpint(source_resolve_as(good[i].source, &creds, 1000, &s, &error), ==, -EACCES);
                g_assert_null(s.path);
                sd_bus_error_free(&error);
        }
        g_assert_cmpint(rbd_name_parse(longest, &n, NULL), ==, 0);
        g_assert_cmpint(rbd_name_parse(too_long, &n, &reason), ==, -EINVAL);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;

                reason = NULL;
                if (rbd_name_parse(bad[i], &n, &reason) != -EINVAL)
                        g_error("'%s' was taken", bad[i]);
                g_assert_nonnull(reason);
                g_assert_cmpint(source_validate(bad[i], &error), <, 0);
                g_assert_cmpstr(error.name, ==, SD_BUS_ERROR_INVALID_ARGS);
                sd_bus_error_free(&error);
        }
        g_assert_false(rbd_source_is("/rbd:x/y"));
        g_assert_false(rbd_source_is("RBD:x/y"));
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
        g_test_add_func("/source/as-caller", test_as_caller);
        g_test_add_func("/source/rbd", test_rbd);
        int r = g_test_run();

        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
        (void) !system(cmd);
        return r;
}
