/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What a rescan learns of each found volume's source beyond the domain's
 * XML (scan.h: volume_fill_source_facts()): the file the guest really has
 * open (the loop device's backing file, the device under a mapping, or the
 * file in its QEMU's descriptor table), its LUKS header facts, and the
 * locks and holds the previous process had.  Apart from scan.c, which
 * reads libvirt's picture: this is the kernel's and the file system's. */

#include <fcntl.h>
#include <sys/stat.h>

#include "deadline.h"
#include "loopdev.h"
#include "luks1-fast.h"
#include "luks-shim.h"
#include "luks.h"
#include "open-pinned.h"
#include "parallel.h"
#include "qemu-fds.h"
#include "qemu-lock.h"
#include "rbd-name.h"
#include "scan.h"
#include "source-use.h"
#include "util.h"

/* The block device under a volume's device-mapper device (a dm-crypt
 * mapping, or a header shim's payload piece): "/dev/loop3", "/dev/sdb". */
static int device_under(const Volume *v, char **ret_node) {
        _cleanup_free_ char *name = NULL;
        int r;

        if (v->mode == VOLUME_MODE_CRYPTSETUP) {
                r = luks_mapping_name(v->domain_uuid, v->target, &name);
                if (r < 0)
                        return r;
                return luks_mapping_device(name, ret_node);
        }
        if (v->shim_device) {
                r = luks_shim_name(v->domain_uuid, v->target, &name);
                if (r < 0)
                        return r;
                return luks_shim_data_device(name, ret_node);
        }
        return -ENODEV;
}

/* The source as the guest has it: the file its loop device is bound to, or
 * the device under its mapping (cryptsetup mode); the file its QEMU has
 * open under the source's name (native mode).  Not what the path names
 * now: that may be another file since.  paths: the descriptor table of v's
 * domain's QEMU, read once for all its volumes (qemu_paths_read(), or its
 * error), or NULL to read it here. */
typedef struct DomainPaths {
        const char *domain_uuid;
        const char *domain;
        QemuPaths paths;
        int r;
} DomainPaths;

static int guest_source_identity(const Volume *v, const DomainPaths *paths, OpenFile *ret) {
        if (v->mode == VOLUME_MODE_CRYPTSETUP || v->shim_device) {
                _cleanup_free_ char *node = NULL;
                struct stat st;
                int r;

                r = device_under(v, &node);
                if (r < 0)
                        return r;
                if (startswith(node, "/dev/loop")) {
                        *ret = (OpenFile){};
                        return loop_backing_identity(node, &ret->dev, &ret->ino);
                }
                if (stat(node, &st) < 0)
                        return negative_errno();
                if (!S_ISBLK(st.st_mode))
                        return -ENOTBLK;
                *ret = (OpenFile){ .block = true, .dev = st.st_rdev };
                return 0;
        }
        /* A saved guest has nothing open. */
        if (v->state == VOLUME_STATE_SAVED)
                return -ESRCH;
        if (paths)
                return paths->r < 0 ? paths->r : qemu_paths_find(&paths->paths, v->source, ret);
        return qemu_files_find_path(QEMU_RUN_DIR, v->domain, v->domain_uuid, v->source, ret);
}

/* cryptsetup mode: QEMU's locks (qemu-lock.h) on the device the mapping
 * sits on.  A file's locks outlive the daemon that took them — the loop
 * device holds the locked open file — but a block device's went with the
 * previous process.  Which of the two a mapping over a loop device had
 * cannot be told from the kernel's account, so the device under the
 * mapping (the block device itself, or the loop device) is locked again,
 * on a descriptor of the volume's own, unless something holds it already.
 * A /dev node the kernel names: no file system of a caller's. */
static void relock(Volume *v, unsigned timeout_ms) {
        _cleanup_free_ char *node = NULL;
        _cleanup_close_ int fd = -EBADF;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct stat st;

        if (v->hold_fd >= 0 || (!v->mapper_device && !v->shim_device))
                return;
        if (device_under(v, &node) < 0)
                return;
        fd = open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
                return;
        /* Held already: done. */
        if (qemu_lock_check(fd, false, !v->read_only, node, timeout_ms, &error) < 0 ||
            qemu_lock_check(fd, true, !v->read_only, node, timeout_ms, &error) < 0) {
                log_debug("Not locking %s again: %s", node, error.message);
                sd_bus_error_free(&error);
                return;
        }
        v->hold_fd = TAKE_FD(fd);
        log_info("Locked %s under %s against a second writer again (QEMU's locks).", node,
                 v->mapper_device ?: v->shim_device);
}

/* A LUKS1 file's display facts straight from its first bytes, on a thread
 * of its own under the deadline (luks1_header_facts(): no libcryptsetup,
 * whose process-wide lock would read a rescan's headers one at a time).
 * The file is opened as the attach opened it (no symlink on the path) and
 * must be the one QEMU has open.  < 0: take the full way. */
typedef struct PeekTask {
        char *path;
        dev_t dev;
        ino_t ino;
        uint64_t size;
        uint8_t buf[LUKS1_HEADER_FACTS_BYTES];
        int r;
} PeekTask;

static void peek_task_free(void *p) {
        PeekTask *t = p;

        free(t->path);
        free(t);
}

static void peek_task_run(void *p) {
        PeekTask *t = p;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        ssize_t k;

        fd = open_pinned(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                t->r = fd;
                return;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != t->dev || st.st_ino != t->ino) {
                t->r = -ESTALE;
                return;
        }
        k = pread(fd, t->buf, sizeof t->buf, 0);
        t->size = (uint64_t) st.st_size;
        t->r = k == (ssize_t) sizeof t->buf ? 0 : -EBADMSG;
}

static int peek_luks1(const SourceInfo *src, unsigned timeout_ms, Luks1Facts *ret, uint64_t *ret_size) {
        PeekTask *t;
        int r;

        if (src->block)
                return -ENOTBLK; /* a device's exclusive hold needs the full open */
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->path = strdup(src->path);
        t->dev = src->dev;
        t->ino = src->ino;
        if (!t->path) {
                peek_task_free(t);
                return -ENOMEM;
        }
        r = deadline_run(peek_task_run, t, peek_task_free, timeout_ms);
        if (r == -ETIMEDOUT)
                return r; /* t is the thread's now */
        if (r >= 0)
                r = t->r >= 0 ? luks1_header_facts(t->buf, sizeof t->buf, t->size, ret) : t->r;
        if (r >= 0)
                *ret_size = t->size;
        peek_task_free(t);
        return r;
}

/* What the header says of a volume, for its properties. */
static void volume_take_header_facts(Volume *v, const LuksInfo *info) {
        v->luks_version = info->version;
        free(v->luks_uuid);
        v->luks_uuid = strdup(info->uuid);
        v->payload_offset = info->payload_offset;
        if (v->size == 0)
                v->size = volume_size_from_header(info->device_size, info->payload_offset);
}

/* An RBD image (issue 18): its identity is its name, and its header is
 * read through librbd (QEMU holds no file of it to find). */
static void volume_fill_rbd_facts(Volume *v, unsigned timeout_ms) {
        _cleanup_(luks_source_freep) LuksSource *opened = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        SourceInfo src = {};
        LuksInfo info;

        v->rbd = true;
        v->source_identity_known = true;
        v->source_dev = RBD_SOURCE_DEV;
        v->source_ino = rbd_source_ino(v->source);
        if (source_resolve(v->source, timeout_ms, &src, &error) >= 0 &&
            luks_source_open(&src, false, timeout_ms, &opened, &error) >= 0 &&
            luks_source_info(opened, &info, &error) >= 0) {
                volume_take_header_facts(v, &info);
        } else
                log_notice("Cannot read the LUKS header of %s (%s): %s", v->source, v->path, error.message);
        sd_bus_error_free(&error);
        source_info_done(&src);
}

static void fill_source_facts(Volume *v, const DomainPaths *paths, unsigned timeout_ms) {
        _cleanup_(luks_source_freep) LuksSource *opened = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        SourceInfo src = {};
        LuksInfo info;
        OpenFile id = {};
        int r;

        if (v->mode == VOLUME_MODE_CRYPTSETUP || v->shim_device)
                relock(v, timeout_ms);
        if (!v->source)
                return;
        if (rbd_source_is(v->source)) {
                volume_fill_rbd_facts(v, timeout_ms);
                return;
        }

        r = guest_source_identity(v, paths, &id);
        if (r >= 0) {
                v->source_identity_known = true;
                v->source_dev = id.dev;
                v->source_ino = id.ino;
        }

        /* A mapping's facts come from the kernel already (scan_domain()),
         * and so does the identity of what a guest has open: the path
         * needs no resolving then.  A native volume's file was found by the
         * very name the kernel gives it (readlink() of QEMU's descriptor:
         * absolute, no symlinks), so the header is read through that name,
         * the open checking the identity (issue 20: resolving 200 paths,
         * each on a deadline thread, was a third of a rescan). */
        if (r >= 0 && v->mode != VOLUME_MODE_NATIVE)
                goto finish;
        if (r >= 0 && !v->shim_device) {
                src = (SourceInfo){ .path = strdup(v->source), .block = id.block, .dev = id.dev, .ino = id.ino };
                if (!src.path)
                        goto finish;
        } else if (source_resolve(v->source, timeout_ms, &src, &error) < 0) {
                /* Each step under the deadline: the source of a running
                 * guest may sit on a file system that stopped answering. */
                log_debug("Cannot check the source of %s: %s", v->path, error.message);
                goto finish;
        }

        /* QEMU has no file of that name open (renamed since?): what the
         * path names now counts only if QEMU has exactly that open. */
        if (r == -ENOENT && v->mode == VOLUME_MODE_NATIVE) {
                _cleanup_(qemu_files_done) QemuFiles files = {};
                OpenFile want = { .block = src.block, .dev = src.dev, .ino = src.ino };

                if (qemu_files_read(QEMU_RUN_DIR, v->domain, v->domain_uuid, &files) >= 0 &&
                    qemu_files_has(&files, &want)) {
                        id = want;
                        r = 0;
                        v->source_identity_known = true;
                        v->source_dev = id.dev;
                        v->source_ino = id.ino;
                }
        }
        if (r < 0 && (r != -ESRCH || v->state != VOLUME_STATE_SAVED))
                log_notice("Cannot tell which file the guest of %s has open as '%s' (%s); its identity stays unknown.",
                           v->path, v->source, strerror(-r));

        if (r >= 0) {
                /* Header facts and the exclusive hold below come from the
                 * guest's file only: the open checks this identity. */
                if (src.block != id.block || src.dev != id.dev || src.ino != id.ino)
                        log_notice("'%s' no longer leads to the file the guest of %s has open.", v->source, v->path);
                src.block = id.block;
                src.dev = id.dev;
                src.ino = id.ino;
        } else if (v->state == VOLUME_STATE_SAVED) {
                /* Nothing is open anywhere: the path is all there is (Rearm
                 * checks the file against this identity). */
                v->source_identity_known = true;
                v->source_dev = src.dev;
                v->source_ino = src.ino;
        } else
                goto finish;

        /* A mapping's facts come from the kernel already (scan_domain());
         * a native volume's from its header. */
        if (v->mode != VOLUME_MODE_NATIVE)
                goto finish;
        Luks1Facts facts;
        uint64_t file_size;
        if (peek_luks1(&src, timeout_ms, &facts, &file_size) >= 0) {
                v->luks_version = 1;
                free(v->luks_uuid);
                v->luks_uuid = strdup(facts.uuid);
                v->payload_offset = facts.payload_offset;
                if (v->size == 0)
                        v->size = volume_size_from_header(file_size, facts.payload_offset);
                goto finish;
        }
        if (luks_source_open(&src, false, timeout_ms, &opened, &error) < 0) {
                log_debug("Cannot read the LUKS header of %s: %s", v->source, error.message);
                goto finish;
        }
        if (luks_source_info(opened, &info, &error) >= 0) {
                volume_take_header_facts(v, &info);
        }
        /* A block device the guest writes: hold it exclusively again, as
         * the attach did (the hold went with the previous process). */
        if (src.block && v->hold_fd < 0) {
                sd_bus_error_free(&error);
                if (source_hold_exclusive(opened, &v->hold_fd, &error) < 0)
                        log_debug("Cannot hold %s exclusively: %s", v->source, error.message);
        }

finish:
        source_info_done(&src);
        sd_bus_error_free(&error);
}

void volume_fill_source_facts(Volume *v, unsigned timeout_ms) {
        fill_source_facts(v, NULL, timeout_ms);
}

typedef struct FillFacts {
        Volume **volumes;
        DomainPaths **paths; /* per volume: its domain's, or NULL */
        unsigned timeout_ms;
} FillFacts;

static void read_paths(size_t i, void *userdata) {
        DomainPaths *d = (DomainPaths *) userdata + i;

        d->r = qemu_paths_read(QEMU_RUN_DIR, d->domain, d->domain_uuid, &d->paths);
}

static void fill_one(size_t i, void *userdata) {
        FillFacts *f = userdata;

        fill_source_facts(f->volumes[i], f->paths[i], f->timeout_ms);
}

/* Native volumes of running domains find their file in their QEMU's
 * descriptor table: one table per domain, read before the volumes'
 * facts, in parallel as they are. */
static size_t collect_domains(Volume **volumes, size_t n, DomainPaths *domains, DomainPaths **paths) {
        size_t m = 0;

        for (size_t i = 0; i < n; i++) {
                Volume *v = volumes[i];
                size_t k;

                paths[i] = NULL;
                if (v->mode != VOLUME_MODE_NATIVE || v->shim_device || v->state == VOLUME_STATE_SAVED || !v->source ||
                    rbd_source_is(v->source))
                        continue;
                for (k = 0; k < m; k++)
                        if (streq(domains[k].domain_uuid, v->domain_uuid))
                                break;
                if (k == m)
                        domains[m++] = (DomainPaths){ .domain_uuid = v->domain_uuid, .domain = v->domain };
                paths[i] = &domains[k];
        }
        return m;
}

void volume_fill_source_facts_all(Volume *list, unsigned timeout_ms) {
        Volume **volumes = NULL;
        DomainPaths **paths = NULL, *domains = NULL;
        size_t n = 0, m;

        for (Volume *v = list; v; v = v->next)
                n++;
        if (n > 0) {
                volumes = calloc(n, sizeof *volumes);
                paths = calloc(n, sizeof *paths);
                domains = calloc(n, sizeof *domains);
        }
        if (!volumes || !paths || !domains) {
                free(volumes);
                free(paths);
                free(domains);
                /* Nothing to do, or no memory for the lists: one by one. */
                for (Volume *v = list; v; v = v->next)
                        volume_fill_source_facts(v, timeout_ms);
                return;
        }
        n = 0;
        for (Volume *v = list; v; v = v->next)
                volumes[n++] = v;
        m = collect_domains(volumes, n, domains, paths);
        parallel_for(m, SCAN_FACT_THREADS, read_paths, domains);
        /* Each volume's facts are its own (its source, its guest's QEMU):
         * nothing is shared between the steps but the tables, read only. */
        parallel_for(n, SCAN_FACT_THREADS, fill_one,
                     &(FillFacts){ .volumes = volumes, .paths = paths, .timeout_ms = timeout_ms });
        for (size_t k = 0; k < m; k++)
                qemu_paths_done(&domains[k].paths);
        free(volumes);
        free(paths);
        free(domains);
}
