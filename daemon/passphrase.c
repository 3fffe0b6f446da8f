/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "passphrase.h"
#include "util.h"

static int passphrase_alloc(Passphrase **ret) {
        long page = sysconf(_SC_PAGESIZE);
        size_t mapped = ((PASSPHRASE_MAX + 1 + (size_t) page - 1) / (size_t) page) * (size_t) page;
        Passphrase *p;
        void *m;

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;

        m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                free(p);
                return -ENOMEM;
        }
        /* Never swapped, never in a core dump, never inherited. mlock can
         * fail under a tight RLIMIT_MEMLOCK; the unit file raises it, and
         * a passphrase that might be swapped is still better than none. */
        (void) mlock(m, mapped);
        (void) madvise(m, mapped, MADV_DONTDUMP);
        (void) madvise(m, mapped, MADV_DONTFORK);

        p->data = m;
        p->mapped = mapped;
        *ret = p;
        return 0;
}

Passphrase *passphrase_free(Passphrase *p) {
        if (!p)
                return NULL;
        if (p->data) {
                explicit_bzero(p->data, p->mapped);
                munlock(p->data, p->mapped);
                munmap(p->data, p->mapped);
        }
        free(p);
        return NULL;
}

int passphrase_new_from_buffer(const void *buf, size_t n, Passphrase **ret) {
        Passphrase *p;
        int r;

        if (n == 0)
                return -EINVAL;
        if (n > PASSPHRASE_MAX)
                return -E2BIG;

        r = passphrase_alloc(&p);
        if (r < 0)
                return r;
        memcpy(p->data, buf, n);
        p->size = n;
        *ret = p;
        return 0;
}

int passphrase_new_zeroed(size_t n, Passphrase **ret) {
        Passphrase *p;
        int r;

        if (n == 0)
                return -EINVAL;
        if (n > PASSPHRASE_MAX)
                return -E2BIG;

        r = passphrase_alloc(&p);
        if (r < 0)
                return r;
        p->size = n;
        *ret = p;
        return 0;
}

bool passphrase_qemu_compatible(const Passphrase *p) {
        /* QEMU reads a secret as a C string in UTF-8: a NUL ends it early
         * and invalid UTF-8 is refused ("Data from secret … is not valid
         * UTF-8"). */
        if (memchr(p->data, 0, p->size))
                return false;
        return utf8_valid_n((const char *) p->data, p->size);
}

/* What the caller handed us, told apart without any I/O on it: neither
 * F_GETFL, F_GET_SEALS nor the name of /proc/self/fd/N reaches a file
 * system's driver, so a descriptor on a FUSE or NFS mount that never
 * answers cannot hold us here (an fstat() could: it asks the file system). */
int passphrase_fd_kind(int fd) {
        char link[64], target[64];
        ssize_t n;
        int fl;

        if (fd < 0)
                return -EBADF;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return negative_errno();
        if ((fl & O_ACCMODE) == O_WRONLY)
                return -EBADFD;

        (void) snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof target - 1);
        if (n < 0)
                return negative_errno();
        target[n] = 0;

        /* An anonymous pipe's name is "pipe:[INODE]"; a named FIFO's is its
         * path, on whatever file system it lives: refused. */
        if (startswith(target, "pipe:["))
                return PASSPHRASE_FD_PIPE;
        /* F_GET_SEALS answers for shmem files only, and only memfd_create()
         * names them "/memfd:…" (a tmpfs file has its real path). */
        if (startswith(target, "/memfd:") && fcntl(fd, F_GET_SEALS) >= 0)
                return PASSPHRASE_FD_MEMFD;
        return -EBADFD;
}

/* A pipe, through a description of our own: the caller can neither clear
 * its O_NONBLOCK nor make a read block by draining the pipe before us (a
 * read on the caller's blocking description would wait past any deadline).
 * One deadline for the whole read: a writer that trickles a byte now and
 * then must not hold a worker for long. */
static int read_pipe(int fd, int timeout_ms, Passphrase *p) {
        _cleanup_close_ int own = -EBADF;
        struct timespec start;
        char link[64];
        int r;

        (void) snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        own = open(link, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (own < 0)
                return negative_errno();

        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
                struct pollfd pfd = { .fd = own, .events = POLLIN };
                struct timespec now;
                long elapsed_ms;
                ssize_t n;

                /* Read one byte past the cap so an over-long input is
                 * refused instead of silently truncated into a different
                 * passphrase. */
                n = read(own, p->data + p->size, PASSPHRASE_MAX + 1 - p->size);
                if (n == 0)
                        break;
                if (n > 0) {
                        p->size += (size_t) n;
                        if (p->size > PASSPHRASE_MAX)
                                return -E2BIG;
                        continue;
                }
                if (errno != EAGAIN && errno != EINTR)
                        return negative_errno();

                clock_gettime(CLOCK_MONOTONIC, &now);
                elapsed_ms = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
                if (elapsed_ms >= timeout_ms)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int) (timeout_ms - elapsed_ms));
                if (r < 0 && errno != EINTR)
                        return negative_errno();
        }
        return 0;
}

/* A memfd lives in memory: reading it cannot block.  pread() from its
 * start, so the caller's file offset is neither used nor moved. */
static int read_memfd(int fd, Passphrase *p) {
        for (;;) {
                ssize_t n = pread(fd, p->data + p->size, PASSPHRASE_MAX + 1 - p->size, (off_t) p->size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        return 0;
                p->size += (size_t) n;
                if (p->size > PASSPHRASE_MAX)
                        return -E2BIG;
        }
}

int passphrase_read_fd(int fd, int timeout_ms, Passphrase **ret) {
        Passphrase *p;
        int kind, r;

        kind = passphrase_fd_kind(fd);
        if (kind < 0)
                return kind;

        r = passphrase_alloc(&p);
        if (r < 0)
                return r;

        /* One way out for the buffer: handed over, or wiped and freed. */
        r = kind == PASSPHRASE_FD_PIPE ? read_pipe(fd, timeout_ms, p) : read_memfd(fd, p);
        if (r >= 0 && p->size == 0)
                r = -EINVAL;
        if (r < 0) {
                passphrase_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

_noinline_ void stack_scrub(void) {
        volatile char area[256 * 1024];

        explicit_bzero((void *) area, sizeof area);
        /* Keep the compiler from proving the area dead. */
        __asm__ __volatile__("" : : "r"(area) : "memory");
}
