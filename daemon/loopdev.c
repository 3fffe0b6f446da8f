/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "loopdev.h"
#include "util.h"

/* Another process may grab the device LOOP_CTL_GET_FREE handed us before
 * we configure it; then we simply ask again. */
#define LOOP_ATTACH_ATTEMPTS 16

static int configure(int loop_fd, int fd, bool read_only) {
        struct loop_config config = {
                .fd = (uint32_t) fd,
                .info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0),
        };
        struct loop_info64 info = {
                .lo_flags = LO_FLAGS_AUTOCLEAR,
        };

        if (ioctl(loop_fd, LOOP_CONFIGURE, &config) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOTTY)
                return negative_errno();

        /* Kernels before 5.8 lack LOOP_CONFIGURE: the two-step way.  A
         * read-only loop device comes from a read-only descriptor there. */
        if (ioctl(loop_fd, LOOP_SET_FD, fd) < 0)
                return negative_errno();
        if (ioctl(loop_fd, LOOP_SET_STATUS64, &info) < 0) {
                int r = negative_errno();
                (void) ioctl(loop_fd, LOOP_CLR_FD, 0);
                return r;
        }
        return 0;
}

int loop_attach_fd(int fd, bool read_only, int *ret_fd, char **ret_path) {
        _cleanup_close_ int control = -EBADF;
        int accmode, r = -EBUSY;

        accmode = fcntl(fd, F_GETFL);
        if (accmode < 0)
                return negative_errno();
        if ((accmode & O_ACCMODE) == O_RDONLY)
                read_only = true;

        control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (control < 0)
                return negative_errno();

        for (unsigned attempt = 0; attempt < LOOP_ATTACH_ATTEMPTS; attempt++) {
                _cleanup_close_ int loop_fd = -EBADF;
                _cleanup_free_ char *path = NULL;
                int n;

                n = ioctl(control, LOOP_CTL_GET_FREE);
                if (n < 0)
                        return negative_errno();
                if (asprintf(&path, "/dev/loop%d", n) < 0)
                        return -ENOMEM;

                loop_fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
                if (loop_fd < 0) {
                        /* udev may not have made the node yet, or it went. */
                        r = negative_errno();
                        if (r == -ENOENT || r == -ENXIO)
                                continue;
                        return r;
                }

                r = configure(loop_fd, fd, read_only);
                if (r == -EBUSY)
                        continue; /* taken meanwhile */
                if (r < 0)
                        return r;

                *ret_fd = TAKE_FD(loop_fd);
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        return r;
}

int loop_find_backing(dev_t dev, ino_t ino, char **ret_path) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        d = opendir("/sys/block");
        if (!d)
                return negative_errno();

        while ((de = readdir(d))) {
                _cleanup_free_ char *node = NULL;
                _cleanup_close_ int fd = -EBADF;
                struct loop_info64 info;

                if (!startswith(de->d_name, "loop"))
                        continue;
                if (asprintf(&node, "/dev/%s", de->d_name) < 0)
                        return -ENOMEM;
                /* O_NONBLOCK: an unbound loop device opens fine anyway; no
                 * partition scan or media check is wanted here. */
                fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
                if (fd < 0)
                        continue;
                /* ENXIO: not bound to anything. */
                if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                        continue;
                /* The kernel reports the backing inode's device in the same
                 * encoding as st_dev. */
                if ((dev_t) info.lo_device == dev && (ino_t) info.lo_inode == ino) {
                        if (ret_path)
                                *ret_path = TAKE_PTR(node);
                        return 1;
                }
        }
        return 0;
}

int loop_backing_identity(const char *node, dev_t *ret_dev, ino_t *ret_ino) {
        _cleanup_close_ int fd = -EBADF;
        struct loop_info64 info;

        fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                return negative_errno();
        *ret_dev = (dev_t) info.lo_device;
        *ret_ino = (ino_t) info.lo_inode;
        return 0;
}

int loop_refresh_capacity(const char *node, dev_t dev, ino_t ino) {
        _cleanup_close_ int fd = -EBADF;
        struct loop_info64 info;

        fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                return errno == ENXIO ? -ESTALE : negative_errno();
        /* Never another file's device: it would change under someone else. */
        if ((dev_t) info.lo_device != dev || (ino_t) info.lo_inode != ino)
                return -ESTALE;
        if (ioctl(fd, LOOP_SET_CAPACITY, 0) < 0)
                return negative_errno();
        return 0;
}
