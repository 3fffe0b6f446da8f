/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdint.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "errors.h"
#include "plug-check.h"
#include "util.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

int qemu_plug_before(const char *domain_name, const char *domain_uuid, QemuFiles *ret, sd_bus_error *error) {
        int r;

        r = qemu_files_read(QEMU_RUN_DIR, domain_name, domain_uuid, ret);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                         "Cannot see which files the QEMU process of '%s' has open: %s", domain_name,
                                         strerror(-r));
        return 0;
}

/* libvirt and QEMU opened the source by its path, seconds after it was
 * checked; a symlink planted meanwhile would have given the guest another
 * file.  QEMU's own descriptor table says what it opened. */
int qemu_plug_check(const char *domain_name, const QemuFiles *before, const SourceInfo *src, sd_bus_error *error) {
        OpenFile want = { .block = src->block, .dev = src->dev, .ino = src->ino }, found;
        _cleanup_(qemu_files_done) QemuFiles after = {};
        uint64_t t0 = now_usec();
        int r;

        r = qemu_files_reread(before, &after);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED,
                                         "Cannot see which file the QEMU process of '%s' opened: %s", domain_name,
                                         strerror(-r));
        r = qemu_files_check_plug(before, &after, &want, &found);
        log_debug("What QEMU opened for %s checked in %" PRIu64 " us (%zu files before, %zu after).", src->path,
                  now_usec() - t0, before->n, after.n);
        if (r >= 0)
                return 0;
        if (found.dev == want.dev && found.ino == want.ino && found.block == want.block)
                log_warning("QEMU of '%s' does not have '%s' open (%u:%u inode %ju) after plugging it in: it opened "
                            "another file.",
                            domain_name, src->path, major(src->dev), minor(src->dev), (uintmax_t) src->ino);
        else
                log_warning("QEMU of '%s' opened %s %u:%u inode %ju when plugging in '%s' (checked: %u:%u inode %ju).",
                            domain_name, found.block ? "device" : "file", major(found.dev), minor(found.dev),
                            (uintmax_t) found.ino, src->path, major(src->dev), minor(src->dev), (uintmax_t) src->ino);
        return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                 "'%s' changed during the attach: QEMU opened another file; try again.", src->path);
}
