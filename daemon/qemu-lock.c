/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "deadline.h"
#include "errors.h"
#include "qemu-lock.h"
#include "source.h"
#include "util.h"

/* QEMU's byte offsets and permission bits (block/file-posix.c, and
 * include/block/block-common.h's BLK_PERM_*); part of how QEMU processes
 * of every version since 2.10 recognise each other, so they do not move. */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
#define PERM_READ        0 /* consistent read */
#define PERM_WRITE       1
#define PERM_RESIZE      3
/* The bytes another QEMU's lock may sit on: 100…, 200…, including the
 * bit QEMU 6.1 and older still lock (graph-mod, 4). */
#define LOCK_BYTES_END   (LOCK_SHARED_BASE + 8)

/* What a guest's disk holds: consistent read, and write unless read-only. */
static unsigned held_perms(bool write) {
        return 1U << PERM_READ | (write ? 1U << PERM_WRITE : 0);
}

/* …and what it does not share: write and resize, read-only or not (a
 * read-only guest must not see its disk change under it either). */
static unsigned unshared_perms(void) {
        return 1U << PERM_WRITE | 1U << PERM_RESIZE;
}

static int lock_byte(int fd, off_t off, short type) {
        struct flock fl = {
                .l_type = type,
                .l_whence = SEEK_SET,
                .l_start = off,
                .l_len = 1,
        };

        if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
                return negative_errno();
        return 0;
}

/* Does someone else hold a lock on byte off?  Our own open file
 * description's locks never conflict with themselves.  1 and the holder's
 * pid (0 if the kernel does not say: OFD locks have none) if so. */
static int byte_taken(int fd, off_t off, pid_t *ret_pid) {
        struct flock fl = {
                .l_type = F_WRLCK,
                .l_whence = SEEK_SET,
                .l_start = off,
                .l_len = 1,
        };

        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
                return negative_errno();
        if (fl.l_type == F_UNLCK)
                return 0;
        *ret_pid = fl.l_pid > 0 ? fl.l_pid : 0;
        return 1;
}

/* The bytes QEMU's own check would test before taking our permissions:
 * someone not sharing one we hold, or holding one we do not share. */
static int find_conflict(int fd, bool write, pid_t *ret_pid) {
        for (unsigned bit = 0; bit < 4; bit++) {
                int r;

                if (held_perms(write) & (1U << bit)) {
                        r = byte_taken(fd, LOCK_SHARED_BASE + bit, ret_pid);
                        if (r != 0)
                                return r;
                }
                if (unshared_perms() & (1U << bit)) {
                        r = byte_taken(fd, LOCK_PERM_BASE + bit, ret_pid);
                        if (r != 0)
                                return r;
                }
        }
        return 0;
}

/* Does this /proc/PID/fdinfo/N list a lock on (dev, ino) at QEMU's bytes?
 * Lines: "lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:1234 100 101". */
static bool fdinfo_has_lock(const char *path, const char *inode) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[256];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f)) {
                const char *p;
                long long start;

                if (!startswith(line, "lock:"))
                        continue;
                p = strstr(line, inode);
                if (!p || sscanf(p + strlen(inode), " %lld", &start) != 1)
                        continue;
                if (start >= LOCK_PERM_BASE && start < LOCK_BYTES_END)
                        return true;
        }
        return false;
}

/* Reads no file behind a descriptor: fdinfo is the kernel's own account,
 * so a holder on a hung file system cannot stall the search. */
static pid_t find_holder_pid(const struct stat *st) {
        _cleanup_(closedirp) DIR *proc = opendir("/proc");
        char inode[64];
        struct dirent *de;
        pid_t self = getpid();

        if (!proc)
                return 0;
        snprintf(inode, sizeof inode, " %02x:%02x:%llu ", major(st->st_dev), minor(st->st_dev),
                 (unsigned long long) st->st_ino);
        while ((de = readdir(proc))) {
                _cleanup_(closedirp) DIR *fds = NULL;
                struct dirent *fe;
                char p[300];
                pid_t pid;

                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                pid = (pid_t) strtol(de->d_name, NULL, 10);
                if (pid <= 0 || pid == self)
                        continue;
                snprintf(p, sizeof p, "/proc/%d/fdinfo", (int) pid);
                fds = opendir(p);
                if (!fds)
                        continue;
                while ((fe = readdir(fds))) {
                        if (fe->d_name[0] == '.')
                                continue;
                        snprintf(p, sizeof p, "/proc/%d/fdinfo/%.32s", (int) pid, fe->d_name);
                        if (fdinfo_has_lock(p, inode))
                                return pid;
                }
        }
        return 0;
}

static int describe_holder(int fd, pid_t pid, char **ret) {
        char comm[64] = "", p[64];
        struct stat st;

        if (pid == 0 && fstat(fd, &st) >= 0)
                pid = find_holder_pid(&st);
        if (pid == 0) {
                *ret = strdup("a process this service cannot see (another PID namespace, or a loop device)");
                return *ret ? 0 : -ENOMEM;
        }
        snprintf(p, sizeof p, "/proc/%d/comm", (int) pid);
        {
                _cleanup_fclose_ FILE *f = fopen(p, "re");
                if (f && fgets(comm, sizeof comm, f))
                        comm[strcspn(comm, "\n")] = '\0';
        }
        if (asprintf(ret, "%s (pid %d)", comm[0] ? comm : "process", (int) pid) < 0)
                return -ENOMEM;
        return 0;
}

static void release_all(int fd) {
        struct flock fl = {
                .l_type = F_UNLCK,
                .l_whence = SEEK_SET,
                .l_start = LOCK_PERM_BASE,
                .l_len = LOCK_BYTES_END - LOCK_PERM_BASE,
        };
        (void) fcntl(fd, F_OFD_SETLK, &fl);
}

typedef struct LockTask {
        int fd; /* a duplicate: the task may outlive the caller's */
        bool take, write;
        int r; /* 1: conflict, holder set */
        char *holder;
} LockTask;

static void lock_task_free(void *p) {
        LockTask *t = p;
        if (t->fd >= 0)
                close(t->fd);
        free(t->holder);
        free(t);
}

static void lock_task_run(void *p) {
        LockTask *t = p;
        pid_t pid = 0;
        int r = 0;

        for (unsigned bit = 0; t->take && bit < 4 && r >= 0; bit++) {
                if (held_perms(t->write) & (1U << bit))
                        r = lock_byte(t->fd, LOCK_PERM_BASE + bit, F_RDLCK);
                if (r >= 0 && (unshared_perms() & (1U << bit)))
                        r = lock_byte(t->fd, LOCK_SHARED_BASE + bit, F_RDLCK);
        }
        if (r >= 0)
                r = find_conflict(t->fd, t->write, &pid);
        /* A file system without record locks: no QEMU can lock there
         * either, so there is nothing to find and nothing to take. */
        if (IN_SET(r, -ENOLCK, -EOPNOTSUPP, -EINVAL))
                r = 0;
        if (r > 0 && describe_holder(t->fd, pid, &t->holder) < 0)
                r = -ENOMEM;
        if (r != 0 && t->take)
                release_all(t->fd);
        t->r = r;
}

int qemu_lock_check(int fd, bool take, bool write, const char *what, unsigned timeout_ms, sd_bus_error *error) {
        LockTask *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->take = take;
        t->write = write;
        t->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (t->fd < 0) {
                r = negative_errno();
                lock_task_free(t);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot check the locks on '%s': %s", what,
                                         strerror(-r));
        }

        r = deadline_run(lock_task_run, t, lock_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                lock_task_free(t);
                return source_error_deadline(error, r);
        }
        r = t->r;
        if (r > 0)
                r = sd_bus_error_setf(error, LV_ERROR_IN_USE, "'%s' is in use: %s has it open with QEMU's locks.", what,
                                      t->holder);
        else if (r < 0)
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot check the locks on '%s': %s", what, strerror(-r));
        lock_task_free(t);
        return r;
}
