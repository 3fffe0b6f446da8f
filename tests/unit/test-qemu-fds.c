/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* QEMU's descriptor table by name (daemon/qemu-fds.h): a rescan finds a
 * native volume's file among the names its guest's QEMU has open.  The
 * "QEMU" here is this very binary, run again as a child with "-uuid UUID"
 * on its command line, holding two files open; its pid file is written as
 * libvirt writes one. */

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qemu-fds.h"

#define UUID "6a1c3e2b-0d4f-4e5a-9b8c-7d6e5f4a3b2c"

static char *self_path;

/* The child: opens argv[4] and argv[5] (after "child -uuid UUID"), says
 * so, and waits to be killed. */
static int child_main(char **argv) {
        int a, b;

        /* Not left behind by a test that fails before killing it. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                return 1;
        a = open(argv[4], O_RDONLY | O_CLOEXEC);
        b = open(argv[5], O_RDONLY | O_CLOEXEC);
        if (a < 0 || b < 0)
                return 1;
        if (write(STDOUT_FILENO, "ready\n", 6) != 6)
                return 1;
        for (;;)
                pause();
}

static void assert_identity(const OpenFile *f, const char *path) {
        struct stat st;

        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_false(f->block);
        g_assert_cmpuint(f->dev, ==, st.st_dev);
        g_assert_cmpuint(f->ino, ==, st.st_ino);
}

static void test_paths(void) {
        g_autofree char *dir = g_dir_make_tmp("lv-qemu-fds-XXXXXX", NULL);
        g_autofree char *a = g_build_filename(dir, "a.img", NULL);
        g_autofree char *b = g_build_filename(dir, "b.img", NULL);
        g_autofree char *pidfile = g_build_filename(dir, "guest.pid", NULL);
        const char *argv[] = { self_path, "child", "-uuid", UUID, a, b, NULL };
        g_autoptr(GError) error = NULL;
        QemuPaths p = {};
        OpenFile f = {};
        GPid pid;
        int out;

        g_assert_nonnull(dir);
        g_assert_true(g_file_set_contents(a, "a", 1, NULL));
        g_assert_true(g_file_set_contents(b, "b", 1, NULL));
        g_assert_true(g_spawn_async_with_pipes(NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid,
                                               NULL, &out, NULL, &error));
        g_assert_no_error(error);
        char line[8] = "";
        g_assert_cmpint(read(out, line, 6), ==, 6);
        g_assert_cmpstr(line, ==, "ready\n");
        g_autofree char *pidtext = g_strdup_printf("%d\n", (int) pid);
        g_assert_true(g_file_set_contents(pidfile, pidtext, -1, NULL));

        /* One read, every name in it. */
        g_assert_cmpint(qemu_paths_read(dir, "guest", UUID, &p), ==, 0);
        g_assert_cmpint(p.pid, ==, pid);
        g_assert_cmpuint(p.n, >=, 2);
        g_assert_cmpint(qemu_paths_find(&p, a, &f), ==, 0);
        assert_identity(&f, a);
        g_assert_cmpint(qemu_paths_find(&p, b, &f), ==, 0);
        assert_identity(&f, b);
        g_assert_cmpint(qemu_paths_find(&p, "/nonexistent.img", &f), ==, -ENOENT);
        /* A name, not a prefix of one. */
        g_autofree char *prefix = g_strndup(a, strlen(a) - 1);
        g_assert_cmpint(qemu_paths_find(&p, prefix, &f), ==, -ENOENT);
        qemu_paths_done(&p);
        g_assert_cmpuint(p.n, ==, 0);

        /* The one-path look-up agrees. */
        g_assert_cmpint(qemu_files_find_path(dir, "guest", UUID, b, &f), ==, 0);
        assert_identity(&f, b);

        /* Renamed since it was opened: found under the name it has now. */
        g_autofree char *moved = g_build_filename(dir, "moved.img", NULL);
        g_assert_cmpint(rename(a, moved), ==, 0);
        g_assert_cmpint(qemu_files_find_path(dir, "guest", UUID, a, &f), ==, -ENOENT);
        g_assert_cmpint(qemu_files_find_path(dir, "guest", UUID, moved, &f), ==, 0);
        assert_identity(&f, moved);

        /* Another domain's UUID, another name, no such process: none. */
        g_assert_cmpint(qemu_paths_read(dir, "guest", "00000000-0000-0000-0000-000000000000", &p), ==, -ESRCH);
        g_assert_cmpint(qemu_paths_read(dir, "other", UUID, &p), ==, -ESRCH);
        g_assert_cmpint(qemu_paths_read(dir, "../guest", UUID, &p), <, 0);
        g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
        g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
        g_spawn_close_pid(pid);
        g_assert_cmpint(qemu_paths_read(dir, "guest", UUID, &p), ==, -ESRCH);

        close(out);
        (void) g_unlink(moved);
        (void) g_unlink(b);
        (void) g_unlink(pidfile);
        (void) g_rmdir(dir);
}

int main(int argc, char **argv) {
        if (argc >= 6 && g_str_equal(argv[1], "child"))
                return child_main(argv);
        self_path = argv[0];
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/qemu-fds/paths", test_paths);
        return g_test_run();
}
