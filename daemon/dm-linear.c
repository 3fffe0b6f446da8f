/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>

#include "dm-ioctl.h"
#include "dm-linear.h"
#include "errors.h"
#include "util.h"

#define LINEAR_BUFFER_SIZE 4096
/* How long a removal waits for the last opener (QEMU after an unplug). */
#define REMOVE_ATTEMPTS    50
#define REMOVE_PAUSE_MS    100
/* How long a service that may not make device nodes waits for udev's. */
#define NODE_WAIT_ATTEMPTS 100
#define NODE_WAIT_PAUSE_MS 50

static bool proc_misc_has(const char *what) {
        _cleanup_fclose_ FILE *f = fopen("/proc/misc", "re");
        char line[128];

        if (!f)
                return false;
        while (fgets(line, sizeof line, f))
                if (strstr(line, what))
                        return true;
        return false;
}

bool dm_linear_available(void) {
        static const char *const suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
        struct utsname u;
        char path[512];

        if (proc_misc_has("device-mapper"))
                return true;
        if (uname(&u) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                snprintf(path, sizeof path, "/lib/modules/%s/kernel/drivers/md/dm-mod%s", u.release, suffixes[i]);
                if (access(path, F_OK) >= 0)
                        return true;
        }
        return false;
}

/* The table request for pieces into buf (LINEAR_BUFFER_SIZE bytes,
 * zeroed): its size, or a negative errno. */
static int fill_linear(char *buf, const char *name, const DmLinearPiece *pieces, size_t n, bool read_only) {
        struct dm_ioctl *io = (struct dm_ioctl *) buf;
        size_t off = ALIGN8(sizeof *io);
        uint64_t start = 0;

        if (n == 0 || n > DM_LINEAR_MAX_PIECES)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                struct dm_target_spec *spec = (struct dm_target_spec *) (buf + off);
                char params[64];
                size_t size;

                if (pieces[i].length == 0)
                        return -EINVAL;
                snprintf(params, sizeof params, "%u:%u %" PRIu64, major(pieces[i].dev), minor(pieces[i].dev),
                         pieces[i].offset);
                size = ALIGN8(sizeof *spec + strlen(params) + 1);
                if (off + size > LINEAR_BUFFER_SIZE)
                        return -E2BIG;
                spec->sector_start = start;
                spec->length = pieces[i].length;
                spec->next = (uint32_t) size;
                snprintf(spec->target_type, sizeof spec->target_type, "linear");
                memcpy(spec + 1, params, strlen(params) + 1);
                start += pieces[i].length;
                off += size;
        }
        dm_header(io, off, name, read_only ? DM_READONLY_FLAG : 0);
        io->target_count = (uint32_t) n;
        return (int) off;
}

static int load_linear(const char *name, const DmLinearPiece *pieces, size_t n, bool read_only) {
        char *buf = calloc(1, LINEAR_BUFFER_SIZE);
        int r;

        if (!buf)
                return -ENOMEM;
        r = fill_linear(buf, name, pieces, n, read_only);
        if (r >= 0)
                r = dm_call(DM_TABLE_LOAD, (struct dm_ioctl *) buf);
        free(buf);
        return r;
}

static int dev_remove(const char *name) {
        struct dm_ioctl io = {};

        dm_header(&io, sizeof io, name, 0);
        return dm_call(DM_DEV_REMOVE, &io);
}

static int node_path(const char *name, char **ret) {
        return asprintf(ret, "/dev/mapper/%s", name) < 0 ? -ENOMEM : 0;
}

static bool node_is(const char *path, dev_t dev) {
        struct stat st;
        return stat(path, &st) >= 0 && S_ISBLK(st.st_mode) && st.st_rdev == dev;
}

/* The node: made here where nothing else makes it (no udev), as
 * libdevmapper does then; where udev runs, its device-mapper rules link it
 * too, and a service without CAP_MKNOD (the unit) waits for that link. */
static int make_node(const char *path, dev_t dev) {
        if (mknod(path, S_IFBLK | 0600, dev) >= 0)
                return 0;
        if (errno == EEXIST) {
                if (node_is(path, dev))
                        return 0;
                /* A stale node of an earlier device of that name. */
                if (unlink(path) >= 0 && mknod(path, S_IFBLK | 0600, dev) >= 0)
                        return 0;
        }
        if (errno != EPERM && errno != EACCES && errno != EEXIST)
                return negative_errno();
        for (unsigned i = 0; i < NODE_WAIT_ATTEMPTS; i++) {
                if (node_is(path, dev))
                        return 0;
                (void) nanosleep(&(struct timespec){ .tv_nsec = NODE_WAIT_PAUSE_MS * 1000000L }, NULL);
        }
        return -ETIMEDOUT;
}

int dm_linear_create(const char *name, const char *uuid, const DmLinearPiece *pieces, size_t n, bool read_only,
                     char **ret_node) {
        _cleanup_free_ char *node = NULL;
        struct dm_ioctl io = {};
        dev_t dev;
        int r;

        if (strlen(name) >= sizeof io.name || (uuid && strlen(uuid) >= sizeof io.uuid))
                return -ENAMETOOLONG;
        r = node_path(name, &node);
        if (r < 0)
                return r;

        dm_header(&io, sizeof io, name, read_only ? DM_READONLY_FLAG : 0);
        if (uuid)
                snprintf(io.uuid, sizeof io.uuid, "%s", uuid);
        r = dm_call(DM_DEV_CREATE, &io);
        if (r < 0)
                return r == -EBUSY ? -EEXIST : r;
        dev = makedev(major(io.dev), minor(io.dev));

        r = load_linear(name, pieces, n, read_only);
        if (r >= 0)
                r = dm_suspend(name, false); /* activates the loaded table */
        if (r >= 0)
                r = make_node(node, dev);
        if (r < 0) {
                (void) dev_remove(name);
                return r;
        }
        *ret_node = TAKE_PTR(node);
        return 0;
}

/* The pieces of a DM_TABLE_STATUS answer in buf, if all are linear. */
static int parse_linear(const char *buf, DmLinearPiece *ret, size_t max, size_t *ret_n) {
        const struct dm_ioctl *io = (const struct dm_ioctl *) buf;
        size_t off, n = 0;

        if (io->flags & DM_BUFFER_FULL_FLAG)
                return -ENOBUFS;
        if (io->target_count == 0 || io->target_count > max)
                return -EMEDIUMTYPE;

        off = io->data_start;
        for (uint32_t i = 0; i < io->target_count; i++) {
                const struct dm_target_spec *spec;
                const char *params;
                unsigned maj, min;
                uint64_t o;

                if (off + sizeof *spec >= LINEAR_BUFFER_SIZE)
                        return -EBADMSG;
                spec = (const struct dm_target_spec *) (buf + off);
                params = (const char *) (spec + 1);
                if (strnlen(params, LINEAR_BUFFER_SIZE - (size_t) (params - buf)) >=
                    LINEAR_BUFFER_SIZE - (size_t) (params - buf))
                        return -EBADMSG;
                if (!streq(spec->target_type, "linear") || sscanf(params, "%u:%u %" SCNu64, &maj, &min, &o) != 3)
                        return -EMEDIUMTYPE;
                ret[n++] = (DmLinearPiece){ .dev = makedev(maj, min), .offset = o, .length = spec->length };
                /* The status answer's next is relative to the buffer's data. */
                off = io->data_start + spec->next;
                if (spec->next == 0 && i + 1 < io->target_count)
                        return -EBADMSG;
        }
        *ret_n = n;
        return 0;
}

int dm_linear_table(const char *name, DmLinearPiece *ret, size_t max, size_t *ret_n, char **ret_uuid) {
        char *buf;
        size_t n = 0;
        int r;

        if (strlen(name) >= sizeof(((struct dm_ioctl *) NULL)->name))
                return -ENAMETOOLONG;
        buf = calloc(1, LINEAR_BUFFER_SIZE);
        if (!buf)
                return -ENOMEM;
        dm_header((struct dm_ioctl *) buf, LINEAR_BUFFER_SIZE, name, DM_STATUS_TABLE_FLAG);
        r = dm_call(DM_TABLE_STATUS, (struct dm_ioctl *) buf);
        if (r >= 0)
                r = parse_linear(buf, ret, max, &n);
        free(buf);
        if (r < 0)
                return r;

        if (ret_uuid) {
                struct dm_ioctl info = {};
                dm_header(&info, sizeof info, name, 0);
                r = dm_call(DM_DEV_STATUS, &info);
                if (r < 0)
                        return r;
                *ret_uuid = strndup(info.uuid, sizeof info.uuid);
                if (!*ret_uuid)
                        return -ENOMEM;
        }
        *ret_n = n;
        return 0;
}

int dm_linear_reload(const char *name, const DmLinearPiece *pieces, size_t n, unsigned timeout_ms,
                     sd_bus_error *error) {
        struct dm_ioctl info = {};
        bool read_only;
        int r, rr;

        dm_header(&info, sizeof info, name, 0);
        r = dm_call(DM_DEV_STATUS, &info);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read the state of %s: %s", name, strerror(-r));
        read_only = info.flags & DM_READONLY_FLAG;

        /* Loaded only once the device is quiet: a suspend abandoned to its
         * deadline must find nothing to swap in. */
        r = dm_suspend_bounded(name, timeout_ms, error);
        if (r < 0)
                return r;
        r = load_linear(name, pieces, n, read_only);
        if (r < 0)
                r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot load the new table of %s: %s", name,
                                      strerror(-r));
        rr = dm_suspend(name, false);
        if (rr < 0) {
                log_error_errno(rr, "Cannot resume %s: %m", name);
                if (r >= 0)
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot resume %s: %s", name, strerror(-rr));
        }
        return r;
}

int dm_linear_remove(const char *name) {
        _cleanup_free_ char *node = NULL;
        struct stat st;
        int r = -EBUSY;

        if (node_path(name, &node) < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < REMOVE_ATTEMPTS; i++) {
                r = dev_remove(name);
                if (r != -EBUSY)
                        break;
                (void) nanosleep(&(struct timespec){ .tv_nsec = REMOVE_PAUSE_MS * 1000000L }, NULL);
        }
        if (r == -ENXIO)
                r = 0;
        /* Our own node (udev's link goes with its own remove event). */
        if (r >= 0 && lstat(node, &st) >= 0 && S_ISBLK(st.st_mode))
                (void) unlink(node);
        return r;
}
