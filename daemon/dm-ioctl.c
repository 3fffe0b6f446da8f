/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

#include "deadline.h"
#include "dm-ioctl.h"
#include "errors.h"
#include "source.h"
#include "util.h"

/* Room for one crypt target's table line (cipher, a 512-bit key in hex,
 * the device, optional parameters) many times over. */
#define TABLE_BUFFER_SIZE 16384

void dm_header(struct dm_ioctl *io, size_t size, const char *name, uint32_t flags) {
        io->version[0] = DM_VERSION_MAJOR;
        io->data_size = (uint32_t) size;
        io->data_start = (uint32_t) ALIGN8(sizeof *io);
        io->flags = flags;
        snprintf(io->name, sizeof io->name, "%s", name);
}

int dm_call(unsigned long request, struct dm_ioctl *io) {
        _cleanup_close_ int ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);

        if (ctl < 0)
                return negative_errno();
        if (ioctl(ctl, request, io) < 0)
                return negative_errno();
        return 0;
}

/* Suspends or resumes name; a resume swaps in a loaded inactive table, and
 * does nothing to a mapping that is not suspended. */
int dm_suspend(const char *name, bool suspend) {
        struct dm_ioctl io = {};

        if (strlen(name) >= sizeof io.name)
                return -ENAMETOOLONG;
        dm_header(&io, sizeof io, name, DM_SKIP_LOCKFS_FLAG | (suspend ? DM_SUSPEND_FLAG : 0));
        return dm_call(DM_DEV_SUSPEND, &io);
}

int dm_device_exists(const char *name, bool *ret) {
        struct dm_ioctl io = {};
        int r;

        if (strlen(name) >= sizeof io.name)
                return -ENAMETOOLONG;
        dm_header(&io, sizeof io, name, 0);
        r = dm_call(DM_DEV_STATUS, &io);
        if (r == -ENXIO) {
                *ret = false;
                return 0;
        }
        if (r < 0)
                return r;
        *ret = true;
        return 0;
}

/* The one crypt target of a DM_TABLE_STATUS answer in buf. */
static int parse_status(const char *buf, char **ret_params, uint64_t *ret_sectors, bool *ret_read_only) {
        const struct dm_ioctl *io = (const struct dm_ioctl *) buf;
        const struct dm_target_spec *spec;
        const char *params;
        size_t room;
        char *copy;

        if (io->flags & DM_BUFFER_FULL_FLAG)
                return -ENOBUFS;
        if (io->target_count != 1 || io->data_start + sizeof *spec >= TABLE_BUFFER_SIZE)
                return -EINVAL;
        spec = (const struct dm_target_spec *) (buf + io->data_start);
        params = (const char *) (spec + 1);
        room = TABLE_BUFFER_SIZE - (size_t) (params - buf);
        if (!streq(spec->target_type, "crypt") || strnlen(params, room) >= room)
                return -EINVAL;
        copy = strdup(params);
        if (!copy)
                return -ENOMEM;
        *ret_params = copy;
        *ret_sectors = spec->length;
        *ret_read_only = io->flags & DM_READONLY_FLAG;
        return 0;
}

/* The one crypt target's parameters ("cipher key iv_offset MAJ:MIN offset
 * [opts]": they hold the volume key, so the copy is for wiping) and
 * whether the mapping is read-only. */
static int read_table(const char *name, char **ret_params, uint64_t *ret_sectors, bool *ret_read_only) {
        _cleanup_free_ char *buf = calloc(1, TABLE_BUFFER_SIZE);
        int r;

        if (!buf)
                return -ENOMEM;
        dm_header((struct dm_ioctl *) buf, TABLE_BUFFER_SIZE, name, DM_STATUS_TABLE_FLAG | DM_SECURE_DATA_FLAG);
        r = dm_call(DM_TABLE_STATUS, (struct dm_ioctl *) buf);
        if (r >= 0)
                r = parse_status(buf, ret_params, ret_sectors, ret_read_only);
        explicit_bzero(buf, TABLE_BUFFER_SIZE);
        return r;
}

static int load_table(const char *name, const char *params, uint64_t sectors, bool read_only) {
        size_t plen = strlen(params) + 1;
        size_t head = ALIGN8(sizeof(struct dm_ioctl));
        size_t spec_size = ALIGN8(sizeof(struct dm_target_spec) + plen);
        size_t total = head + spec_size;
        _cleanup_free_ char *buf = NULL;
        struct dm_ioctl *io;
        struct dm_target_spec *spec;
        int r;

        if (total > TABLE_BUFFER_SIZE)
                return -E2BIG;
        buf = calloc(1, total);
        if (!buf)
                return -ENOMEM;
        io = (struct dm_ioctl *) buf;
        dm_header(io, total, name, DM_SECURE_DATA_FLAG | (read_only ? DM_READONLY_FLAG : 0));
        io->target_count = 1;
        spec = (struct dm_target_spec *) (buf + head);
        spec->sector_start = 0;
        spec->length = sectors;
        spec->next = (uint32_t) spec_size;
        snprintf(spec->target_type, sizeof spec->target_type, "crypt");
        memcpy(spec + 1, params, plen);
        r = dm_call(DM_TABLE_LOAD, io);
        explicit_bzero(buf, total);
        return r;
}

typedef struct SuspendTask {
        char *name;
        int r;
        bool taken; /* the waiting worker carries on with the suspended mapping */
} SuspendTask;

static void suspend_task_free(void *p) {
        SuspendTask *t = p;

        /* Abandoned, and the suspend went through after all: nobody else
         * is going to resume the mapping (no table was loaded meanwhile). */
        if (t->r == 0 && !t->taken)
                (void) dm_suspend(t->name, false);
        free(t->name);
        free(t);
}

static void suspend_task_run(void *p) {
        SuspendTask *t = p;
        t->r = dm_suspend(t->name, true);
}

int dm_suspend_bounded(const char *name, unsigned timeout_ms, sd_bus_error *error) {
        SuspendTask *t;
        int r;

        t = calloc(1, sizeof *t);
        if (!t || !(t->name = strdup(name))) {
                free(t);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        t->r = -EINPROGRESS;
        r = deadline_run(suspend_task_run, t, suspend_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "The mapping %s did not settle within %u s: the guest's I/O to the image "
                                         "is stalled (a hung file system?); try again later.",
                                         name, (timeout_ms + 999) / 1000);
        if (r < 0) {
                suspend_task_free(t);
                return source_error_deadline(error, r);
        }
        r = t->r;
        t->taken = true;
        suspend_task_free(t);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot suspend the dm-crypt mapping %s: %s", name,
                                         strerror(-r));
        return 0;
}

/* The second and fourth fields of the crypt parameters: the key, and the
 * device as MAJ:MIN. */
static int check_params(const char *params, dev_t rdev) {
        unsigned maj, min;
        const char *key, *dev;

        key = strchr(params, ' ');
        if (!key)
                return -EINVAL;
        key++;
        /* ":32:logon:…": a key in the kernel keyring, which this process
         * may not reach (an older luksvolumed put it there). */
        if (key[0] == ':')
                return -EPERM;
        dev = key;
        for (int i = 0; i < 2 && dev; i++) {
                dev = strchr(dev, ' ');
                if (dev)
                        dev++;
        }
        if (!dev || sscanf(dev, "%u:%u", &maj, &min) != 2)
                return -EINVAL;
        return makedev(maj, min) == rdev ? 0 : -ESTALE;
}

int dm_crypt_resize(const char *name, dev_t data_device_rdev, uint64_t size, unsigned timeout_ms, sd_bus_error *error) {
        char *params = NULL;
        uint64_t sectors = 0;
        bool read_only = false;
        int r;

        r = read_table(name, &params, &sectors, &read_only);
        if (r >= 0)
                r = check_params(params, data_device_rdev);
        if (r < 0) {
                /* r stays the errno: the error only describes it. */
                if (r == -EPERM)
                        (void) sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                                 "The mapping %s keeps its volume key in the kernel keyring (an older "
                                                 "luksvolumed opened it); detach and attach the volume again to "
                                                 "resize it.",
                                                 name);
                else if (r == -ESTALE)
                        (void) sd_bus_error_setf(error, LV_ERROR_FAILED, "The mapping %s no longer sits on its device.",
                                                 name);
                else
                        (void) sd_bus_error_setf(error, LV_ERROR_FAILED,
                                                 "Cannot read the table of the dm-crypt mapping %s: %s", name,
                                                 strerror(-r));
                goto finish;
        }
        if (sectors == size / 512)
                goto finish;

        /* The table is loaded only once the mapping is quiet: a suspend
         * abandoned to its deadline must find nothing to swap in. */
        r = dm_suspend_bounded(name, timeout_ms, error);
        if (r < 0)
                goto finish;
        r = load_table(name, params, size / 512, read_only);
        if (r < 0)
                r = sd_bus_error_setf(error, LV_ERROR_FAILED,
                                      "Cannot resize the dm-crypt mapping %s to %" PRIu64 " bytes: %s", name, size,
                                      strerror(-r));
        /* Swaps the new table in, if there is one; the old one runs on
         * otherwise. */
        int rr = dm_suspend(name, false);
        if (rr < 0) {
                log_error_errno(rr, "Cannot resume the dm-crypt mapping %s: %m", name);
                if (r >= 0)
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot resume the dm-crypt mapping %s: %s", name,
                                              strerror(-rr));
        }

finish:
        if (params) {
                explicit_bzero(params, strlen(params));
                free(params);
        }
        return r;
}
