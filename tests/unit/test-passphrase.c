/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The passphrase buffer and the fd reader: caps, types, timeouts. */
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

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
        /* Read from its start, wherever the caller's offset is, and the
         * offset is left alone. */
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, 0);
        g_assert_cmpmem(p->data, p->size, "memfd-pass", 10);
        g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 10);
        p = passphrase_free(p);
        /* Sealed as a careful caller would. */
        g_assert_cmpint(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW), <, 0); /* no sealing */
        close(fd);
        fd = memfd_create("pass", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        g_assert_cmpint(write(fd, "sealed", 6), ==, 6);
        g_assert_cmpint(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), ==, 0);
        g_assert_cmpint(passphrase_read_fd(fd, 1000, &p), ==, 0);
        g_assert_cmpmem(p->data, p->size, "sealed", 6);
        passphrase_free(p);
        close(fd);
}

/* The caller keeps its pipe's read end too and drains it before the daemon
 * can: on the caller's blocking description the daemon's read() would then
 * wait for good.  Through a description of its own, non-blocking, it meets
 * its deadline. */
static void test_fd_pipe_race(void) {
        Passphrase *p = NULL;
        int w[2];
        char c;

        g_assert_cmpint(pipe2(w, O_CLOEXEC), ==, 0); /* blocking, as a caller would leave it */
        g_assert_cmpint(write(w[1], "x", 1), ==, 1);
        /* poll() would say "readable" now; the byte goes before we read. */
        g_assert_cmpint(read(w[0], &c, 1), ==, 1);
        gint64 t0 = g_get_monotonic_time();
        g_assert_cmpint(passphrase_read_fd(w[0], 300, &p), ==, -ETIMEDOUT);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
        /* The caller's description stays blocking: nothing changed under it. */
        g_assert_false(fcntl(w[0], F_GETFL) & O_NONBLOCK);
        close(w[0]);
        close(w[1]);
}

/* Only pipes and memfds: a regular file may sit on a file system whose
 * read never returns (FUSE, a hung NFS mount). */
static void test_fd_kinds(void) {
        char path[] = "/tmp/lv-test-passphrase-XXXXXX";
        Passphrase *p = NULL;
        int fd, w[2];

        fd = mkstemp(path);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, "file-pass", 9), ==, 9);
        g_assert_cmpint(passphrase_fd_kind(fd), ==, -EBADFD);
        g_assert_cmpint(passphrase_read_fd(fd, 100, &p), ==, -EBADFD);
        close(fd);
        unlink(path);

        /* A named FIFO is refused like any other file-system object. */
        g_assert_cmpint(mkfifo(path, 0600), ==, 0);
        fd = open(path, O_RDWR | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(passphrase_fd_kind(fd), ==, -EBADFD);
        close(fd);
        unlink(path);

        g_assert_cmpint(pipe2(w, O_CLOEXEC), ==, 0);
        g_assert_cmpint(passphrase_fd_kind(w[0]), ==, PASSPHRASE_FD_PIPE);
        g_assert_cmpint(passphrase_fd_kind(w[1]), ==, -EBADFD); /* the write end */
        close(w[0]);
        close(w[1]);

        fd = memfd_create("k", MFD_CLOEXEC);
        g_assert_cmpint(passphrase_fd_kind(fd), ==, PASSPHRASE_FD_MEMFD);
        close(fd);
        g_assert_cmpint(passphrase_fd_kind(-1), ==, -EBADF);
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
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        signal(SIGPIPE, SIG_IGN); /* the trickler writes into a closed pipe */
        g_test_add_func("/passphrase/buffer", test_buffer);
        g_test_add_func("/passphrase/fd-pipe", test_fd_pipe);
        g_test_add_func("/passphrase/fd-memfd", test_fd_memfd);
        g_test_add_func("/passphrase/fd-limits", test_fd_limits);
        g_test_add_func("/passphrase/fd-pipe-race", test_fd_pipe_race);
        g_test_add_func("/passphrase/fd-kinds", test_fd_kinds);
        return g_test_run();
}
