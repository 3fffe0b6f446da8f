/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbd.h"
#include "util.h"

/* The functions used, as pointers filled by dlsym(): the prototypes come
 * from Ceph's own headers (librbd-dev, librados-dev at build time), so a
 * changed signature fails the build, not the call. */
#define RBD_SYMBOLS(X)                      \
        X(rados, rados_create2)             \
        X(rados, rados_conf_read_file)      \
        X(rados, rados_conf_set)            \
        X(rados, rados_connect)             \
        X(rados, rados_shutdown)            \
        X(rados, rados_ioctx_create)        \
        X(rados, rados_ioctx_set_namespace) \
        X(rados, rados_ioctx_destroy)       \
        X(rbd, rbd_open_read_only)          \
        X(rbd, rbd_open)                    \
        X(rbd, rbd_lock_acquire)            \
        X(rbd, rbd_lock_release)            \
        X(rbd, rbd_write)                   \
        X(rbd, rbd_flush)                   \
        X(rbd, rbd_close)                   \
        X(rbd, rbd_get_size)                \
        X(rbd, rbd_get_features)            \
        X(rbd, rbd_read)                    \
        X(rbd, rbd_watchers_list)           \
        X(rbd, rbd_watchers_list_cleanup)

#define DECLARE(lib, f) static typeof(f) *sym_##f;
RBD_SYMBOLS(DECLARE)
#undef DECLARE

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *load_error; /* NULL: loaded */
static char load_error_buf[256];

static char *conf_path;
static char *client_name;

void rbd_configure(const char *path, const char *client) {
        free(conf_path);
        free(client_name);
        conf_path = strdup(path ? path : "/etc/ceph/ceph.conf");
        client_name = strdup(client ? client : "admin");
}

const char *rbd_conf_path(void) {
        return conf_path ? conf_path : "/etc/ceph/ceph.conf";
}

const char *rbd_client(void) {
        return client_name ? client_name : "admin";
}

static void load(void) {
        void *rados, *rbd;

        /* RTLD_NODELETE: the symbols stay valid for threads a deadline
         * left behind, whatever happens to the handles. */
        rados = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        rbd = rados ? dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) : NULL;
        if (!rados || !rbd) {
                snprintf(load_error_buf, sizeof load_error_buf, "librbd cannot be loaded (%s): install librbd1",
                         dlerror());
                load_error = load_error_buf;
                return;
        }
#define RESOLVE(lib, f)                                                                 \
        sym_##f = (typeof(f) *) dlsym(lib, #f);                                         \
        if (!sym_##f) {                                                                 \
                snprintf(load_error_buf, sizeof load_error_buf, "librbd lacks %s", #f); \
                load_error = load_error_buf;                                            \
                return;                                                                 \
        }
        RBD_SYMBOLS(RESOLVE)
#undef RESOLVE
}

int rbd_available(const char **ret_reason) {
        pthread_once(&load_once, load);
        if (load_error) {
                if (ret_reason)
                        *ret_reason = load_error;
                return -EOPNOTSUPP;
        }
        return 0;
}

struct RbdImage {
        rados_ioctx_t io;
        rbd_image_t image;
        bool writable; /* opened read-write: our own handle watches the image too */
        bool locked;   /* holds the image's exclusive lock */
};

void rbd_image_close(RbdImage *img) {
        if (!img)
                return;
        if (img->locked)
                (void) sym_rbd_lock_release(img->image);
        if (img->image)
                sym_rbd_close(img->image);
        if (img->io)
                sym_rados_ioctx_destroy(img->io);
        free(img);
}

/* One cluster connection for the daemon's life, made on first use: a
 * connection costs a round of monitor messages and cephx (tens of
 * milliseconds, as much as the rest of an RBD attach), and librados
 * handles are safe to share between threads.  Dropped when an open fails
 * in a way that says the connection itself is gone, and made again by the
 * next caller.  The lock is held across the connect, which librados bounds
 * (client_mount_timeout). */
static pthread_mutex_t cluster_lock = PTHREAD_MUTEX_INITIALIZER;
static rados_t cluster;

static int connect_cluster(rados_t *ret, const char **ret_stage) {
        char id[RBD_NAME_MAX + 8];
        rados_t c = NULL;
        int r;

        snprintf(id, sizeof id, "client.%s", rbd_client());
        *ret_stage = "configure the Ceph client";
        r = sym_rados_create2(&c, "ceph", id, 0);
        if (r < 0)
                return r;
        r = sym_rados_conf_read_file(c, rbd_conf_path());
        /* Bounded waits, so that a thread a deadline gave up on still ends:
         * the monitor connection, and each monitor and OSD operation. */
        if (r >= 0)
                r = sym_rados_conf_set(c, "client_mount_timeout", "10");
        if (r >= 0)
                r = sym_rados_conf_set(c, "rados_mon_op_timeout", "10");
        if (r >= 0)
                r = sym_rados_conf_set(c, "rados_osd_op_timeout", "10");
        /* Its log goes nowhere: failures come back as errors, with context. */
        if (r >= 0)
                r = sym_rados_conf_set(c, "log_to_stderr", "false");
        if (r >= 0)
                r = sym_rados_conf_set(c, "err_to_stderr", "false");
        if (r >= 0) {
                *ret_stage = "connect to the Ceph cluster";
                r = sym_rados_connect(c);
        }
        if (r < 0) {
                sym_rados_shutdown(c);
                return r;
        }
        *ret = c;
        return 0;
}

static int shared_cluster(rados_t *ret, const char **ret_stage) {
        pthread_mutex_lock(&cluster_lock);
        int r = cluster ? 0 : connect_cluster(&cluster, ret_stage);
        *ret = cluster;
        pthread_mutex_unlock(&cluster_lock);
        return r;
}

static void drop_cluster(rados_t c) {
        pthread_mutex_lock(&cluster_lock);
        /* Only the one that failed: another thread may have replaced it.
         * Not shut down — other threads may still use it; it leaks, once
         * per lost connection. */
        if (cluster == c)
                cluster = NULL;
        pthread_mutex_unlock(&cluster_lock);
}

static int image_open(const RbdName *name, bool exclusive, RbdImage **ret, const char **ret_stage);
static int others_watching(RbdImage *img);

int rbd_image_open(const RbdName *name, RbdImage **ret, const char **ret_stage) {
        return image_open(name, false, ret, ret_stage);
}

int rbd_image_open_exclusive(const RbdName *name, RbdImage **ret, const char **ret_stage) {
        return image_open(name, true, ret, ret_stage);
}

static int image_open(const RbdName *name, bool exclusive, RbdImage **ret, const char **ret_stage) {
        RbdImage *img;
        rados_t c;
        int r;

        *ret_stage = "load librbd";
        r = rbd_available(NULL);
        if (r < 0)
                return r;
        r = shared_cluster(&c, ret_stage);
        if (r < 0)
                return r;
        img = calloc(1, sizeof *img);
        if (!img)
                return -ENOMEM;

        *ret_stage = "open the pool";
        r = sym_rados_ioctx_create(c, name->pool, &img->io);
        if (r >= 0 && name->ns[0])
                sym_rados_ioctx_set_namespace(img->io, name->ns);
        if (r >= 0) {
                *ret_stage = "open the image";
                r = exclusive ? sym_rbd_open(img->io, name->image, &img->image, NULL)
                              : sym_rbd_open_read_only(img->io, name->image, &img->image, NULL);
                img->writable = exclusive && r >= 0;
        }
        if (r >= 0 && exclusive) {
                /* Nobody else may have it open, checked before the lock is
                 * asked for: librbd's lock is cooperative, and asking
                 * would make a guest's QEMU hand it over (its writes then
                 * fail until we let go).  And once more with the lock
                 * held, for a client that came in between. */
                *ret_stage = "lock the image";
                r = others_watching(img);
                if (r >= 0) {
                        /* The exclusive-lock feature: -EINVAL without it. */
                        r = sym_rbd_lock_acquire(img->image, RBD_LOCK_MODE_EXCLUSIVE);
                        img->locked = r >= 0;
                }
                if (r >= 0)
                        r = others_watching(img);
                /* Held by someone else (librbd says -EROFS): in use. */
                if (r == -EROFS)
                        r = -EBUSY;
        }
        if (r < 0) {
                /* The connection, not the name or the image, failed: the
                 * next caller connects anew.  (A timeout is the cluster's
                 * health, not the connection's: the handle stays.) */
                if (IN_SET(-r, ENOTCONN, ESHUTDOWN, ECONNRESET))
                        drop_cluster(c);
                rbd_image_close(img);
                return r;
        }
        *ret = img;
        return 0;
}

int rbd_image_facts(RbdImage *img, RbdFacts *ret) {
        rbd_image_watcher_t w[8];
        size_t n = ELEMENTSOF(w);
        RbdFacts f = {};
        int r;

        r = sym_rbd_get_size(img->image, &f.size);
        if (r >= 0)
                r = sym_rbd_get_features(img->image, &f.features);
        if (r < 0)
                return r;
        r = sym_rbd_watchers_list(img->image, w, &n);
        if (r == -ERANGE)
                f.watchers = (unsigned) n; /* more than we asked to see */
        else if (r >= 0) {
                f.watchers = (unsigned) n;
                /* Our own read-write handle is one of them. */
                if (img->writable && f.watchers > 0)
                        f.watchers--;
                if (n > 0 && w[0].addr)
                        snprintf(f.watcher, sizeof f.watcher, "%s", w[0].addr);
                sym_rbd_watchers_list_cleanup(w, n);
        } else
                return r;
        *ret = f;
        return 0;
}

int rbd_image_read(RbdImage *img, uint64_t off, void *buf, size_t len) {
        uint8_t *p = buf;

        while (len > 0) {
                ssize_t k = sym_rbd_read(img->image, off, len, (char *) p);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return -EIO;
                p += k;
                off += (uint64_t) k;
                len -= (size_t) k;
        }
        return 0;
}

/* -EBUSY if a client other than img's own handle watches the image. */
static int others_watching(RbdImage *img) {
        RbdFacts f;
        int r = rbd_image_facts(img, &f);
        if (r < 0)
                return r;
        return f.watchers > 0 ? -EBUSY : 0;
}

int rbd_image_write(RbdImage *img, uint64_t off, const void *buf, size_t len) {
        const uint8_t *p = buf;

        if (!img->locked)
                return -EPERM;
        while (len > 0) {
                ssize_t k = sym_rbd_write(img->image, off, len, (const char *) p);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return -EIO;
                p += k;
                off += (uint64_t) k;
                len -= (size_t) k;
        }
        /* Written through to the OSDs before the next step starts. */
        return sym_rbd_flush(img->image);
}
