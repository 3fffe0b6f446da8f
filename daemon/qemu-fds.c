/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "qemu-fds.h"
#include "util.h"

/* A QEMU command line is a few KiB; a process that claims more is not one
 * of libvirt's. */
#define CMDLINE_MAX (256U * 1024U)

void qemu_files_done(QemuFiles *f) {
        free(f->files);
        *f = (QemuFiles){};
}

static int read_pid_file(const char *path, pid_t *ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        long pid;

        if (!f)
                return negative_errno();
        if (fscanf(f, "%ld", &pid) != 1 || pid <= 1 || pid > INT32_MAX)
                return -EBADMSG;
        *ret = (pid_t) pid;
        return 0;
}

/* Whether pid's command line has "-uuid" followed by uuid: the pid file
 * may be stale and its number reused. */
static bool cmdline_has_uuid(pid_t pid, const char *uuid) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        char path[64];
        size_t len = 0;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        buf = malloc(CMDLINE_MAX + 1);
        if (!buf)
                return false;
        while (len < CMDLINE_MAX) {
                ssize_t k = read(fd, buf + len, CMDLINE_MAX - len);
                if (k < 0)
                        return false;
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        buf[len] = 0;
        for (size_t i = 0; i < len;) {
                const char *arg = buf + i;
                size_t n = strlen(arg) + 1;
                if (streq(arg, "-uuid") && i + n < len && streq(buf + i + n, uuid))
                        return true;
                i += n;
        }
        return false;
}

static int list_files(pid_t pid, QemuFiles *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ OpenFile *files = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        char path[64];

        snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return errno == ENOENT ? -ESRCH : negative_errno();

        while ((de = readdir(d))) {
                struct statx stx;
                OpenFile f;

                if (de->d_name[0] == '.')
                        continue;
                /* Through the magic link to the open file; the cached
                 * attributes are enough for type and identity. */
                if (statx(dirfd(d), de->d_name, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &stx) < 0)
                        continue; /* closed meanwhile */
                if (S_ISREG(stx.stx_mode))
                        f = (OpenFile){ .dev = makedev(stx.stx_dev_major, stx.stx_dev_minor), .ino = stx.stx_ino };
                else if (S_ISBLK(stx.stx_mode))
                        f = (OpenFile){ .block = true, .dev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor) };
                else
                        continue;
                if (n == allocated) {
                        size_t m = allocated ? allocated * 2 : 32;
                        OpenFile *p = reallocarray(files, m, sizeof *p);
                        if (!p)
                                return -ENOMEM;
                        files = p;
                        allocated = m;
                }
                files[n++] = f;
        }

        /* The process may have gone while we read: then nothing read is
         * its. */
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return -ESRCH;
        *ret = (QemuFiles){ .pid = pid, .files = TAKE_PTR(files), .n = n };
        return 0;
}

static int qemu_pid(const char *run_dir, const char *domain_name, const char *domain_uuid, pid_t *ret) {
        _cleanup_free_ char *path = NULL;
        pid_t pid = 0;
        int r;

        /* libvirt forbids '/' in domain names; a name with one is not ours
         * to build a path from. */
        if (isempty(domain_name) || strchr(domain_name, '/'))
                return -EINVAL;
        if (asprintf(&path, "%s/%s.pid", run_dir, domain_name) < 0)
                return -ENOMEM;
        r = read_pid_file(path, &pid);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        if (!cmdline_has_uuid(pid, domain_uuid))
                return -ESRCH;
        *ret = pid;
        return 0;
}

int qemu_files_read(const char *run_dir, const char *domain_name, const char *domain_uuid, QemuFiles *ret) {
        pid_t pid = 0;
        int r;

        r = qemu_pid(run_dir, domain_name, domain_uuid, &pid);
        if (r < 0)
                return r;
        return list_files(pid, ret);
}

void qemu_paths_done(QemuPaths *p) {
        for (size_t i = 0; i < p->n; i++)
                free(p->items[i].name);
        free(p->items);
        *p = (QemuPaths){};
}

int qemu_paths_read(const char *run_dir, const char *domain_name, const char *domain_uuid, QemuPaths *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(qemu_paths_done) QemuPaths p = {};
        size_t allocated = 0;
        char dir[64], name[PATH_MAX];
        struct dirent *de;
        int r;

        r = qemu_pid(run_dir, domain_name, domain_uuid, &p.pid);
        if (r < 0)
                return r;
        snprintf(dir, sizeof dir, "/proc/%d/fd", (int) p.pid);
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? -ESRCH : negative_errno();

        while ((de = readdir(d))) {
                struct statx stx;
                OpenFile f;
                ssize_t k;

                if (de->d_name[0] == '.')
                        continue;
                k = readlinkat(dirfd(d), de->d_name, name, sizeof name - 1);
                if (k < 0 || name[0] != '/')
                        continue; /* closed meanwhile, or no file's name */
                name[k] = 0;
                if (statx(dirfd(d), de->d_name, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &stx) < 0)
                        continue;
                if (S_ISREG(stx.stx_mode))
                        f = (OpenFile){ .dev = makedev(stx.stx_dev_major, stx.stx_dev_minor), .ino = stx.stx_ino };
                else if (S_ISBLK(stx.stx_mode))
                        f = (OpenFile){ .block = true, .dev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor) };
                else
                        continue;
                if (p.n == allocated) {
                        size_t m = allocated ? allocated * 2 : 32;
                        QemuPath *q = reallocarray(p.items, m, sizeof *q);
                        if (!q)
                                return -ENOMEM;
                        p.items = q;
                        allocated = m;
                }
                p.items[p.n].name = strdup(name);
                if (!p.items[p.n].name)
                        return -ENOMEM;
                p.items[p.n++].file = f;
        }
        *ret = p;
        /* Ours no more: the cleanup frees nothing. */
        memset(&p, 0, sizeof p);
        return 0;
}

int qemu_paths_find(const QemuPaths *p, const char *path, OpenFile *ret) {
        bool found = false;
        OpenFile f = {};

        for (size_t i = 0; i < p->n; i++) {
                const OpenFile *g = &p->items[i].file;

                if (!streq(p->items[i].name, path))
                        continue;
                if (found && (g->block != f.block || g->dev != f.dev || g->ino != f.ino))
                        return -ENOTUNIQ;
                f = *g;
                found = true;
        }
        if (!found)
                return -ENOENT;
        *ret = f;
        return 0;
}

int qemu_files_find_path(const char *run_dir, const char *domain_name, const char *domain_uuid, const char *path,
                         OpenFile *ret) {
        _cleanup_(qemu_paths_done) QemuPaths p = {};
        int r;

        r = qemu_paths_read(run_dir, domain_name, domain_uuid, &p);
        if (r < 0)
                return r;
        return qemu_paths_find(&p, path, ret);
}

int qemu_files_reread(const QemuFiles *before, QemuFiles *ret) {
        return list_files(before->pid, ret);
}

static bool same(const OpenFile *a, const OpenFile *b) {
        return a->block == b->block && a->dev == b->dev && a->ino == b->ino;
}

bool qemu_files_has(const QemuFiles *f, const OpenFile *want) {
        for (size_t i = 0; i < f->n; i++)
                if (same(&f->files[i], want))
                        return true;
        return false;
}

int qemu_files_check_plug(const QemuFiles *before, const QemuFiles *after, const OpenFile *want, OpenFile *ret_found) {
        if (!qemu_files_has(after, want)) {
                *ret_found = *want;
                return -ESTALE;
        }
        for (size_t i = 0; i < after->n; i++)
                if (!same(&after->files[i], want) && !qemu_files_has(before, &after->files[i])) {
                        *ret_found = after->files[i];
                        return -ESTALE;
                }
        return 0;
}

int qemu_files_wait_released(const QemuFiles *before, unsigned timeout_ms) {
        for (unsigned waited = 0;; waited += 20) {
                _cleanup_(qemu_files_done) QemuFiles now = {};
                bool added = false;
                int r;

                r = qemu_files_reread(before, &now);
                if (r < 0)
                        return r == -ESRCH ? 0 : r;
                for (size_t i = 0; i < now.n && !added; i++)
                        added = !qemu_files_has(before, &now.files[i]);
                if (!added)
                        return 0;
                if (waited >= timeout_ms)
                        return -ETIMEDOUT;
                (void) usleep(20 * 1000);
        }
}
