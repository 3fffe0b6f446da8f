/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deadline.h"
#include "errors.h"
#include "rbd-name.h"
#include "source.h"
#include "util.h"

void source_info_done(SourceInfo *s) {
        free(s->path);
        *s = (SourceInfo){};
}

static bool has_dot_component(const char *p) {
        /* "/a/./b", "/a/../b", trailing "/.." … */
        for (const char *c = p; *c;) {
                while (*c == '/')
                        c++;
                size_t n = strcspn(c, "/");
                if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return true;
                c += n;
        }
        return false;
}

static bool has_control_chars(const char *p) {
        for (const unsigned char *c = (const unsigned char *) p; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        return true;
        return false;
}

int source_validate(const char *path, sd_bus_error *error) {
        if (rbd_source_is(path)) {
                const char *reason = NULL;
                if (strlen(path) >= PATH_MAX || has_control_chars(path) || rbd_name_parse(path, NULL, &reason) < 0)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The source is not valid: %s.",
                                                 reason ? reason : "malformed");
                return 0;
        }
        if (isempty(path))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path is empty.");
        if (strlen(path) >= PATH_MAX)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path is too long.");
        if (path[0] != '/')
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path must be absolute.");
        /* Paths with control characters are legal but never what an admin
         * meant, and they make logs and polkit rules ambiguous. */
        if (has_control_chars(path))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path contains control characters.");
        /* Refused rather than normalised: polkit rules match on the path,
         * and a caller spelling it with ".." is trying something. */
        if (has_dot_component(path))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The source path must not contain '.' or '..' components.");
        return 0;
}

/* What the resolving thread fills in; it may outlive the call that asked
 * (a path on a hung file system), so it owns everything it touches. */
typedef struct ResolveTask {
        char *path;
        bool as_caller;
        SourceCreds creds; /* if as_caller; groups owned */

        int creds_errno; /* 0: the caller's credentials were taken */
        char *canonical;
        struct stat st;
        int realpath_errno; /* 0: realpath() worked */
        int stat_errno;     /* 0: stat() worked */
        int open_errno;     /* 0: the caller may open it for reading (or not checked) */
} ResolveTask;

void source_creds_done(SourceCreds *c) {
        free(c->groups);
        *c = (SourceCreds){};
}

static void resolve_task_free(void *p) {
        ResolveTask *t = p;

        free(t->path);
        source_creds_done(&t->creds);
        free(t->canonical);
        free(t);
}

/* The deadline thread, which exists for this task alone (deadline.h), takes
 * the caller's file-system identity.  All three calls change the calling
 * thread only: the kernel keeps credentials per thread, and the raw
 * setgroups system call is used because glibc's setgroups() applies the
 * change to every thread of the process.  setfsuid() and setfsgid() report
 * no errors, so each is read back. */
static int take_creds(const SourceCreds *c) {
        if (syscall(SYS_setgroups, c->n_groups, c->groups) < 0)
                return -errno;
        (void) setfsgid(c->gid);
        if ((gid_t) setfsgid((gid_t) -1) != c->gid)
                return -EPERM;
        /* Last: once the fsuid is not 0 the thread loses the file-system
         * capabilities, CAP_DAC_OVERRIDE among them. */
        (void) setfsuid(c->uid);
        if ((uid_t) setfsuid((uid_t) -1) != c->uid)
                return -EPERM;
        return 0;
}

static void resolve_task_run(void *p) {
        ResolveTask *t = p;
        int r;

        if (t->as_caller) {
                r = take_creds(&t->creds);
                if (r < 0) {
                        t->creds_errno = -r;
                        return;
                }
        }

        t->canonical = realpath(t->path, NULL);
        if (!t->canonical) {
                t->realpath_errno = errno;
                return;
        }
        if (stat(t->canonical, &t->st) < 0) {
                t->stat_errno = errno;
                return;
        }
        /* What follows reads the source as root: only for a caller that
         * could read it itself.  (Regular files and block devices only:
         * opening anything else can have effects.) */
        if (t->as_caller && (S_ISREG(t->st.st_mode) || S_ISBLK(t->st.st_mode))) {
                int fd = open(t->canonical, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd < 0)
                        t->open_errno = errno;
                else
                        close(fd);
        }
}

static bool is_denied(int e) {
        return e == EACCES || e == EPERM;
}

static int resolve_result(const ResolveTask *t, SourceInfo *ret, sd_bus_error *error) {
        if (t->creds_errno)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot take the caller's credentials: %s",
                                         strerror(t->creds_errno));
        if (t->as_caller && (is_denied(t->realpath_errno) || is_denied(t->stat_errno) || is_denied(t->open_errno))) {
                source_error_caller_denied(error);
                return -EACCES;
        }
        if (!t->canonical) {
                int e = t->realpath_errno;
                if (e == ENOENT || e == ENOTDIR)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                                "The source does not exist (or is a dangling symlink).");
                if (e == ELOOP)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path has a symlink loop.");
                if (e == ENAMETOOLONG)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path is too long.");
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot resolve the source path: %s", strerror(e));
        }

        /* A symlink may lead to a name D-Bus cannot carry (properties,
         * polkit details); refuse it here, with a reason. */
        if (!utf8_valid(t->canonical))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The source path (symlinks resolved) is not valid UTF-8.");

        if (t->stat_errno)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot stat the source: %s", strerror(t->stat_errno));

        SourceInfo s = {};
        if (S_ISREG(t->st.st_mode)) {
                s.block = false;
                s.dev = t->st.st_dev;
                s.ino = t->st.st_ino;
        } else if (S_ISBLK(t->st.st_mode)) {
                s.block = true;
                s.dev = t->st.st_rdev;
                s.ino = 0;
        } else
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The source is neither a regular file nor a block device.");

        s.path = strdup(t->canonical);
        if (!s.path)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        *ret = s;
        return 0;
}

int source_resolve(const char *path, unsigned timeout_ms, SourceInfo *ret, sd_bus_error *error) {
        return source_resolve_as(path, NULL, timeout_ms, ret, error);
}

int source_resolve_as(const char *path, const SourceCreds *creds, unsigned timeout_ms, SourceInfo *ret,
                      sd_bus_error *error) {
        ResolveTask *t;
        int r;

        r = source_validate(path, error);
        if (r < 0)
                return r;

        /* An RBD image has no file-system permissions to check the caller
         * against: the daemon reaches it with the host's Ceph key, so a
         * caller other than root is treated as one who cannot read it
         * themselves (the elevated polkit action decides).  Nothing is
         * looked up here; librbd opens it later, under a deadline. */
        if (rbd_source_is(path)) {
                if (creds && creds->uid != 0) {
                        source_error_caller_denied(error);
                        return -EACCES;
                }
                *ret = (SourceInfo){
                        .path = strdup(path), .rbd = true, .dev = RBD_SOURCE_DEV, .ino = rbd_source_ino(path)
                };
                if (!ret->path)
                        return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
                return 0;
        }

        t = calloc(1, sizeof *t);
        if (!t)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        t->path = strdup(path);
        if (creds) {
                t->as_caller = true;
                t->creds = (SourceCreds){ .uid = creds->uid, .gid = creds->gid, .n_groups = creds->n_groups };
                if (creds->n_groups > 0) {
                        t->creds.groups = calloc(creds->n_groups, sizeof(gid_t));
                        if (t->creds.groups)
                                memcpy(t->creds.groups, creds->groups, creds->n_groups * sizeof(gid_t));
                }
        }
        if (!t->path || (t->creds.n_groups > 0 && !t->creds.groups)) {
                resolve_task_free(t);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }

        r = deadline_run(resolve_task_run, t, resolve_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                /* t belongs to the stuck thread now. */
                return source_error_timeout(error, timeout_ms);
        if (r < 0) {
                resolve_task_free(t);
                return source_error_deadline(error, r);
        }

        r = resolve_result(t, ret, error);
        resolve_task_free(t);
        return r;
}

int source_error_timeout(sd_bus_error *error, unsigned timeout_ms) {
        return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                 "The source did not respond within %u s (a hung file system?); try again later.",
                                 (timeout_ms + 999) / 1000);
}

int source_error_caller_denied(sd_bus_error *error) {
        return sd_bus_error_set(error, LV_ERROR_FAILED, "Permission denied: the caller cannot read the source itself.");
}

int source_error_deadline(sd_bus_error *error, int r) {
        if (r == -EBUSY)
                return sd_bus_error_set(error, LV_ERROR_BUSY,
                                        "Too many file system calls on sources are hanging; try again later.");
        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot start a thread: %s", strerror(-r));
}
