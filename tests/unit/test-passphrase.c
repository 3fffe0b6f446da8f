/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The passphrase buffer and the fd reader: caps, types, timeouts. */
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "passphrase.h"
#include "util.h"

static void test_buffer(void) {
        Passphrase *p = NULL;
        uint8_t big[PASSPHRASE_MAX + 1];

        memset(big, 'x', sizeof big);
        g_assert_cmpint(passphrase_new_from_buffer("a\0b", 3, &p), ==, 0);
        g_assert_cmpuint(p->size, ==, 3);
        g_assert_cmpmem(p->data, 3, "a\0b", 3); /* binary-safe */
        passphrase_free(p);

        g_assert_cmpint(passphrase_new_from_buffer(big, PASSPHRASE_MAX, &p), ==, 0);
        passphrase_free(p);
        p = NULL;
        g_assert_cmpint(passphrase_new_from_buffer(big, PASSPHRASE_MAX + 1, &p), ==, -E2BIG);
        g_assert_null(p);
        g_assert_cmpint(passphrase_new_from_buffer(big, 0, &p), ==, -EINVAL);
        g_assert_null(passphrase_free(NULL));
}

static int pipe_with(const void *data, size_t n) {
        int p[2];
        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
        g_assert_cmpint(fcntl(p[1], F_SETPIPE_SZ, 65536), >=, 0);
        if (n > 0)
                g_assert_cmpint(write(p[1], data, n), ==, (ssize_t) n);
        close(p[1]);
        return p[0];
}

static void test_fd_pipe(void) {
        Passphrase *p = NULL;
        int fd = pipe_with("secret\n", 7);

        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, 0);
        g_assert_cmpmem(p->data, p->size, "secret\n", 7); /* verbatim, newline included */
        passphrase_free(p);
        close(fd);
}

static void test_fd_memfd(void) {
        Passphrase *p = NULL;
        int fd = memfd_create("pass", MFD_CLOEXEC);

        g_assert_cmpint(write(fd, "memfd-pass", 10), ==, 10);
        g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, 0);
        g_assert_cmpmem(p->data, p->size, "memfd-pass", 10);
        passphrase_free(p);
        close(fd);
}

static gpointer trickle(gpointer data) {
        int fd = GPOINTER_TO_INT(data);
        for (int i = 0; i < 40; i++) {
                if (write(fd, "x", 1) != 1)
                        break;
                g_usleep(50 * 1000);
        }
        return NULL;
}

static void test_fd_limits(void) {
        static uint8_t big[PASSPHRASE_MAX + 1];
        Passphrase *p = NULL;
        int fd, s[2], w[2];

        memset(big, 'y', sizeof big);
        fd = pipe_with(big, PASSPHRASE_MAX);
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, 0);
        g_assert_cmpuint(p->size, ==, PASSPHRASE_MAX);
        p = passphrase_free(p);
        close(fd);

        fd = pipe_with(big, PASSPHRASE_MAX + 1);
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, -E2BIG);
        g_assert_null(p);
        close(fd);

        fd = pipe_with(NULL, 0);
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, -EINVAL);
        close(fd);

        /* A writer that trickles a byte every 50 ms (each gap well inside
         * the 200 ms limit) still meets one overall deadline, not a fresh
         * one per chunk. */
        g_assert_cmpint(pipe2(w, O_CLOEXEC), ==, 0);
        GThread *trickler = g_thread_new("trickle", trickle, GINT_TO_POINTER(w[1]));
        gint64 t0 = g_get_monotonic_time();
        g_assert_cmpint(passphrase_read_fd(w[0], 200, &p), ==, -ETIMEDOUT);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
        close(w[0]); /* the trickler's next write fails: it stops */
        g_thread_join(trickler);
        close(w[1]);

        /* A writer that never writes nor closes. */
        g_assert_cmpint(pipe2(w, O_CLOEXEC), ==, 0);
        g_assert_cmpint(passphrase_read_fd(w[0], 100, &p), ==, -ETIMEDOUT);
        close(w[0]);
        close(w[1]);

        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), ==, 0);
        g_assert_cmpint(passphrase_read_fd(s[0], 100, &p), ==, -EBADFD);
        close(s[0]);
        close(s[1]);

        fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(passphrase_read_fd(fd, 100, &p), ==, -EBADFD);
        close(fd);
        g_assert_cmpint(passphrase_fd_check(-1), ==, -EBADF);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        signal(SIGPIPE, SIG_IGN); /* the trickler writes into a closed pipe */
        g_test_add_func("/passphrase/buffer", test_buffer);
        g_test_add_func("/passphrase/fd-pipe", test_fd_pipe);
        g_test_add_func("/passphrase/fd-memfd", test_fd_memfd);
        g_test_add_func("/passphrase/fd-limits", test_fd_limits);
        return g_test_run();
}
