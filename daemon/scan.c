/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libvirt/virterror.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "deadline.h"
#include "disk-xml.h"
#include "loopdev.h"
#include "luks1-fast.h"
#include "luks-shim.h"
#include "luks.h"
#include "open-pinned.h"
#include "parallel.h"
#include "qemu-fds.h"
#include "qemu-lock.h"
#include "source-use.h"
#include "rbd-name.h"
#include "scan.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);

/* The source as the guest has it: the file its loop device is bound to, or
 * the device under its mapping (cryptsetup mode); the file its QEMU has
 * open under the source's name (native mode).  Not what the path names
 * now: that may be another file since. */
/* A native disk on our header shim for (domain, target): the volume's
 * facts come from the shim device's table and UUID, not the disk's
 * source, which names the shim. */
static bool disk_on_shim(Volume *v, const DiskInfo *d) {
        _cleanup_free_ char *expected = NULL, *source = NULL;
        LuksInfo info;

        if (!luks_shim_path_ours(d->source) || luks_shim_name(v->domain_uuid, v->target, &expected) < 0 ||
            !streq(d->source + strlen("/dev/mapper/"), expected))
                return false;
        v->native_header = NATIVE_HEADER_SHIM;
        v->shim_device = strdup(d->source);
        if (luks_shim_info(expected, &source, &info) >= 0) {
                v->source = TAKE_PTR(source);
                v->luks_version = info.version;
                free(v->luks_uuid);
                v->luks_uuid = strdup(info.uuid);
                v->payload_offset = info.payload_offset;
        }
        return true;
}

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

static int guest_source_identity(const Volume *v, OpenFile *ret) {
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

void volume_fill_source_facts(Volume *v, unsigned timeout_ms) {
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

        r = guest_source_identity(v, &id);
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

/* saved: dom is not running but has a managed save image, whose XML is
 * read instead of the live one; its volumes are in state "saved". */
static int scan_domain(virConnectPtr conn, virDomainPtr dom, bool saved, Volume **list) {
        _cleanup_free_ char *xml = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];
        DiskInfo *disks = NULL;
        size_t n = 0;
        const char *name;
        int r;

        name = virDomainGetName(dom);
        if (!name || virDomainGetUUIDString(dom, uuid) < 0)
                return -EIO;
        xml = saved ? virDomainManagedSaveGetXMLDesc(dom, 0) : virDomainGetXMLDesc(dom, 0);
        if (!xml) {
                virErrorPtr e = virGetLastError();
                /* It stopped since the listing: nothing of ours is in it. */
                if (e && (e->code == VIR_ERR_NO_DOMAIN || e->code == VIR_ERR_OPERATION_INVALID))
                        return -ENODEV;
                /* Anything else: we do not know what it holds. */
                return -EIO;
        }

        r = domain_xml_list_disks(xml, &disks, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                DiskInfo *d = &disks[i];
                uint64_t mapping_size = 0;
                Volume *v;

                if (!d->target || !bus_from_target(d->target))
                        continue;

                if (!disk_info_is_ours(d, uuid, d->target))
                        continue;

                if (d->encrypted) {
                        r = volume_new(name, uuid, d->target, &v);
                        if (r < 0)
                                break;
                        v->mode = VOLUME_MODE_NATIVE;
                        v->native_header = NATIVE_HEADER_VOLUME;
                        /* The secret may be gone (libvirtd restarts drop
                         * ephemeral secrets); QEMU already has the key. */
                        v->secret_uuid = d->secret_uuid ? strdup(d->secret_uuid) : NULL;
                        if (!disk_on_shim(v, d))
                                v->source = d->source ? strdup(d->source) : NULL;
                } else {
                        _cleanup_free_ char *expected = NULL, *source = NULL;
                        LuksInfo info;

                        if (!d->source || luks_mapping_name(uuid, d->target, &expected) < 0 ||
                            !startswith(d->source, "/dev/mapper/") ||
                            !streq(d->source + strlen("/dev/mapper/"), expected)) {
                                /* Our disk, neither encrypted by QEMU nor on
                                 * our mapping: ciphertext as a plain disk, left
                                 * by an attach whose undo could not unplug it
                                 * (attach.c).  The guest must not keep it: a
                                 * volume "detaching" that the reconciliation
                                 * unplugs. */
                                if (saved)
                                        continue;
                                r = volume_new(name, uuid, d->target, &v);
                                if (r < 0)
                                        break;
                                v->mode = VOLUME_MODE_NATIVE;
                                v->source = d->source ? strdup(d->source) : NULL;
                                v->unplug_retry = true;
                                log_warning(
                                        "Disk %s of '%s' is ours but not encrypted: asking the guest to release it.",
                                        d->target, name);
                        } else {
                                r = volume_new(name, uuid, d->target, &v);
                                if (r < 0)
                                        break;
                                v->mode = VOLUME_MODE_CRYPTSETUP;
                                v->mapper_device = strdup(d->source);
                                if (luks_mapping_info(expected, &source, &info) >= 0) {
                                        v->source = TAKE_PTR(source);
                                        v->luks_version = info.version;
                                        free(v->luks_uuid);
                                        v->luks_uuid = strdup(info.uuid);
                                }
                                /* The mapping's own table knows where the
                                 * payload starts and how much of it the guest
                                 * gets. */
                                if (luks_mapping_geometry(expected, &v->payload_offset, &mapping_size) < 0)
                                        mapping_size = 0;
                        }
                }
                /* What the guest sees: a mapping's own table says; a native
                 * volume's header and source size do (the facts below, as
                 * at its attach) — QEMU's LUKS driver presents exactly that,
                 * and asking QEMU for every domain's block statistics cost
                 * the rescan most of its time (issue 20). */
                if (v->mode == VOLUME_MODE_CRYPTSETUP)
                        v->size = mapping_size;
                /* What only the attaching daemon knew (AttachedByUID,
                 * AttachTimestamp) stays unknown: volume_new()'s sentinels. */
                v->serial = d->serial ? strdup(d->serial) : NULL;
                v->discard = d->discard;
                v->bus = d->bus ? strdup(d->bus) : strdup(bus_from_target(d->target));
                v->read_only = d->read_only;
                if (saved)
                        v->state = VOLUME_STATE_SAVED;
                else if (v->unplug_retry)
                        v->state = VOLUME_STATE_DETACHING;
                v->next = *list;
                *list = v;
                log_info("Found attached volume %s (%s on %s).", v->path, strempty(v->source), name);
        }

        disk_info_array_free(disks, n);
        return r < 0 ? r : 0;
}

typedef struct FillFacts {
        Volume **volumes;
        unsigned timeout_ms;
} FillFacts;

static void fill_one(size_t i, void *userdata) {
        FillFacts *f = userdata;

        volume_fill_source_facts(f->volumes[i], f->timeout_ms);
}

void volume_fill_source_facts_all(Volume *list, unsigned timeout_ms) {
        _cleanup_free_ Volume **volumes = NULL;
        size_t n = 0;

        for (Volume *v = list; v; v = v->next)
                n++;
        volumes = n > 0 ? calloc(n, sizeof *volumes) : NULL;
        if (!volumes) {
                /* Nothing to do, or no memory for the list: one by one. */
                for (Volume *v = list; v; v = v->next)
                        volume_fill_source_facts(v, timeout_ms);
                return;
        }
        n = 0;
        for (Volume *v = list; v; v = v->next)
                volumes[n++] = v;
        /* Each volume's facts are its own (its source, its guest's QEMU):
         * nothing is shared between the steps. */
        parallel_for(n, SCAN_FACT_THREADS, fill_one, &(FillFacts){ .volumes = volumes, .timeout_ms = timeout_ms });
}

/* One domain's part of a scan. */
typedef struct DomainScan {
        virConnectPtr conn;
        virDomainPtr dom;
        bool saved;
        Volume *found;
        int r;
} DomainScan;

static void scan_one(size_t i, void *userdata) {
        DomainScan *d = (DomainScan *) userdata + i;

        d->r = scan_domain(d->conn, d->dom, d->saved, &d->found);
}

/* Scans the listed domains several at a time (each costs round trips to
 * libvirtd and QEMU, not CPU) and prepends what each found to *list, in
 * the listing's order.  False if some domain could not be read. */
static bool scan_domains(virConnectPtr conn, virDomainPtr *doms, int n, bool saved, Volume **list) {
        _cleanup_free_ DomainScan *scans = NULL;
        bool complete = true;

        if (n <= 0)
                return true;
        scans = calloc((size_t) n, sizeof *scans);
        if (!scans) {
                log_oom();
                return false;
        }
        for (int i = 0; i < n; i++)
                scans[i] = (DomainScan){ .conn = conn, .dom = doms[i], .saved = saved };
        parallel_for((size_t) n, SCAN_DOMAIN_THREADS, scan_one, scans);

        for (int i = 0; i < n; i++) {
                Volume *last = scans[i].found;

                if (scans[i].r < 0 && scans[i].r != -ENODEV) {
                        log_warning_errno(scans[i].r, "Failed to scan %sdomain '%s': %m", saved ? "saved " : "",
                                          strempty(virDomainGetName(doms[i])));
                        complete = false;
                }
                if (!last)
                        continue;
                while (last->next)
                        last = last->next;
                last->next = *list;
                *list = scans[i].found;
        }
        return complete;
}

static void domains_free(virDomainPtr *doms, int n) {
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
}

int scan_volumes(Virt *v, Volume **ret, bool *ret_complete, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        virDomainPtr *doms = NULL;
        Volume *list = NULL;
        bool complete = true;
        int n, r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0)
                return sd_bus_error_setf(error, "org.example.LuksVolume1.Error.Failed", "Cannot list domains: %s",
                                         strempty(virGetLastErrorMessage()));
        if (!scan_domains(conn, doms, n, false, &list))
                complete = false;
        domains_free(doms, n);

        /* Guests saved with managedsave (libvirt-guests at host shutdown
         * does that) come back with their disks: their volumes are ours
         * still, in state "saved", and their secrets and mappings are no
         * orphans. */
        doms = NULL;
        n = virConnectListAllDomains(conn, &doms,
                                     VIR_CONNECT_LIST_DOMAINS_INACTIVE | VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE);
        if (n < 0) {
                log_warning("Cannot list saved domains: %s", strempty(virGetLastErrorMessage()));
                complete = false;
                n = 0;
        }
        if (!scan_domains(conn, doms, n, true, &list))
                complete = false;
        domains_free(doms, n);

        *ret = list;
        *ret_complete = complete;
        return 0;
}

static bool secret_kept(const Volume *keep, const char *uuid) {
        for (const Volume *v = keep; v; v = v->next)
                if (streq_ptr(v->secret_uuid, uuid))
                        return true;
        return false;
}

static bool device_named(const char *device, const char *name) {
        return device && startswith(device, "/dev/mapper/") && streq(device + strlen("/dev/mapper/"), name);
}

static bool mapping_kept(const Volume *keep, const char *name) {
        for (const Volume *v = keep; v; v = v->next)
                if (device_named(v->mapper_device, name) || device_named(v->shim_device, name))
                        return true;
        return false;
}

static void cleanup_orphan_secrets(Virt *v, const Volume *keep) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        virSecretPtr *secrets = NULL;
        int n;

        if (virt_connect(v, &conn, &error) < 0) {
                sd_bus_error_free(&error);
                return;
        }
        n = virConnectListAllSecrets(conn, &secrets, VIR_CONNECT_LIST_SECRETS_EPHEMERAL);
        if (n < 0)
                return;
        for (int i = 0; i < n; i++) {
                const char *usage = virSecretGetUsageID(secrets[i]);
                char uuid[VIR_UUID_STRING_BUFLEN];

                if (usage && startswith(usage, LV_SECRET_USAGE_PREFIX) &&
                    virSecretGetUUIDString(secrets[i], uuid) >= 0 && !secret_kept(keep, uuid)) {
                        if (virSecretUndefine(secrets[i]) >= 0)
                                log_notice("Cleaned up orphaned secret %s (%s).", uuid, usage);
                        else
                                log_warning("Cannot undefine orphaned secret %s: %s", uuid,
                                            strempty(virGetLastErrorMessage()));
                }
                virSecretFree(secrets[i]);
        }
        free(secrets);
}

static void cleanup_orphan_mappings(const Volume *keep) {
        DIR *d = opendir("/dev/mapper");
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                sd_bus_error error = SD_BUS_ERROR_NULL;

                bool shim = false;

                /* Ours by name: another service's (DeviceTag=) are not. */
                if (!luks_device_name_ours(de->d_name, &shim) || mapping_kept(keep, de->d_name))
                        continue;
                /* A header shim: ciphertext only, but nothing of ours
                 * uses it any more. */
                if (shim) {
                        if (luks_shim_remove(de->d_name, &error) >= 0)
                                log_notice("Removed orphaned header shim %s.", de->d_name);
                        else
                                log_warning("Cannot remove orphaned header shim %s: %s", de->d_name, error.message);
                } else if (luks_deactivate(de->d_name, &error) >= 0)
                        log_notice("Closed orphaned mapping %s.", de->d_name);
                else
                        log_warning("Cannot close orphaned mapping %s: %s", de->d_name, error.message);
                sd_bus_error_free(&error);
        }
        closedir(d);
}

void scan_cleanup_orphans(Virt *v, const Volume *keep) {
        cleanup_orphan_secrets(v, keep);
        cleanup_orphan_mappings(keep);
}
