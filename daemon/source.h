/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Validation of the caller's `source` argument, done before authorization
 * so that polkit rules see the canonical path that will be used. */

#include <stdbool.h>
#include <sys/stat.h>

#include <systemd/sd-bus.h>

typedef struct SourceInfo {
        char *path;        /* canonical absolute path, symlinks resolved */
        bool block;        /* block device, else regular file */
        dev_t dev;         /* identity: st_rdev for block devices, st_dev for files */
        ino_t ino;         /* 0 for block devices */
} SourceInfo;

void source_info_done(SourceInfo *s);

/* InvalidArgs (set on error) for: empty, relative, over-long, control
 * characters, "." or ".." components, nonexistent, dangling or looping
 * symlinks, anything but a regular file or block device. */
int source_resolve(const char *path, SourceInfo *ret, sd_bus_error *error);
