/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

int passphrase_fd_check(int fd) {
        struct stat st;

        if (fd < 0)
                return -EBADF;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISFIFO(st.st_mode) && !S_ISREG(st.st_mode))
                return -EBADFD;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return negative_errno();
        if ((fl & O_ACCMODE) == O_WRONLY)
                return -EBADFD;
        return 0;
}

/* Fills p from fd until EOF (see passphrase_read_fd()). */
static int read_until_eof(int fd, int timeout_ms, Passphrase *p) {
        struct timespec start;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &start);

        /* Read one byte past the cap so an over-long input is refused
         * instead of silently truncated into a different passphrase.  One
         * deadline for the whole read: a writer that trickles a byte now
         * and then must not hold a worker for hours. */
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                struct timespec now;
                long elapsed_ms;
                ssize_t n;

                clock_gettime(CLOCK_MONOTONIC, &now);
                elapsed_ms = (now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L;
                if (elapsed_ms >= timeout_ms)
                        return -ETIMEDOUT;

                r = poll(&pfd, 1, (int) (timeout_ms - elapsed_ms));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        return -ETIMEDOUT;

                n = read(fd, p->data + p->size, PASSPHRASE_MAX + 1 - p->size);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                p->size += (size_t) n;
                if (p->size > PASSPHRASE_MAX)
                        return -E2BIG;
        }

        return p->size == 0 ? -EINVAL : 0;
}

int passphrase_read_fd(int fd, int timeout_ms, Passphrase **ret) {
        Passphrase *p;
        int r;

        r = passphrase_fd_check(fd);
        if (r < 0)
                return r;

        r = passphrase_alloc(&p);
        if (r < 0)
                return r;

        /* One way out for the buffer: handed over, or wiped and freed. */
        r = read_until_eof(fd, timeout_ms, p);
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
