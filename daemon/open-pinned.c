/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errors.h"
#include "open-pinned.h"
#include "util.h"

int open_pinned(const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd;

        /* glibc 2.36 has no wrapper. */
        fd = (int) syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
        if (fd >= 0)
                return fd;
        if (errno != ENOSYS)
                return negative_errno();
        fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW);
        return fd >= 0 ? fd : negative_errno();
}

int source_error_changed(sd_bus_error *error, const char *path) {
        return sd_bus_error_setf(error, LV_ERROR_BUSY, "'%s' changed while it was being checked; try again.", path);
}
