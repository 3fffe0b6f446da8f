/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>

#include "errors.h"
#include "source.h"
#include "util.h"

void source_info_done(SourceInfo *s) {
        free(s->path);
        *s = (SourceInfo) {};
}

static bool has_dot_component(const char *p) {
        /* "/a/./b", "/a/../b", trailing "/.." … */
        for (const char *c = p; *c; ) {
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

int source_resolve(const char *path, SourceInfo *ret, sd_bus_error *error) {
        _cleanup_free_ char *canonical = NULL;
        struct stat st;

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

        canonical = realpath(path, NULL);
        if (!canonical) {
                int e = errno;
                if (e == ENOENT || e == ENOTDIR)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                                "The source does not exist (or is a dangling symlink).");
                if (e == ELOOP)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path has a symlink loop.");
                if (e == ENAMETOOLONG)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The source path is too long.");
                return sd_bus_error_set_errnof(error, e, "Cannot resolve the source path: %s", strerror(e));
        }

        /* A symlink may lead to a name D-Bus cannot carry (properties,
         * polkit details); refuse it here, with a reason. */
        if (!utf8_valid(canonical))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The source path (symlinks resolved) is not valid UTF-8.");

        if (stat(canonical, &st) < 0)
                return sd_bus_error_set_errnof(error, errno, "Cannot stat the source: %m");

        if (S_ISREG(st.st_mode)) {
                ret->block = false;
                ret->dev = st.st_dev;
                ret->ino = st.st_ino;
        } else if (S_ISBLK(st.st_mode)) {
                ret->block = true;
                ret->dev = st.st_rdev;
                ret->ino = 0;
        } else
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The source is neither a regular file nor a block device.");

        ret->path = TAKE_PTR(canonical);
        return 0;
}
