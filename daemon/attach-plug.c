/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Plugging a volume's disk into the guest, per mode: native (a secret,
 * the volume's own header or a header shim) and cryptsetup (a dm-crypt
 * mapping); each undoes what it made when a later step fails. */

#include <fcntl.h>
#include <inttypes.h>
#include <time.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <sys/stat.h>

#include "attach-internal.h"
#include "disk-xml.h"
#include "errors.h"
#include "fault.h"
#include "manager.h"
#include "plug-check.h"
#include "qemu-fds.h"
#include "qemu-lock.h"
#include "rbd.h"
#include "util.h"
#include "volume-id.h"

/* Worker.  After a native hot-plug, libvirt's own account of the disk must
 * carry our <encryption format='luks'> with our secret: a guest must never
 * be handed the ciphertext as if it were a plain disk. */
static int check_plugged_encrypted(AttachOp *op, virDomainPtr dom, const char *target, const char *alias,
                                   const char *secret_uuid) {
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        bool ok;
        int r;

        r = virt_domain_live_xml(dom, &xml, &op->error);
        if (r < 0)
                return r;
        r = domain_xml_find_disk(xml, target, &d);
        if (r < 0 && r != -ENOENT)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s",
                                         strerror(-r));
        ok = r >= 0 && d.encrypted && streq_ptr(d.encryption_format, "luks") && streq_ptr(d.secret_uuid, secret_uuid) &&
             streq_ptr(d.alias, alias);
        /* An RBD image has no file of QEMU's to check (qemu_plug_check()):
         * the disk must name the very image. */
        if (ok && op->call.res.source.rbd)
                ok = d.rbd && streq_ptr(d.source, op->call.res.source.path);
        /* Tests cannot make libvirt drop the element; they can make us
         * believe it did, to see the unplug and clean-up that follow (and,
         * with "-stuck", what follows an unplug that fails too). */
        if (fault_trigger("attach:unencrypted"))
                ok = false;
        else if (fault_trigger("attach:unencrypted-stuck")) {
                ok = false;
                op->fault_unplug_fails = true;
        }
        disk_info_free(&d);
        if (ok)
                return 0;
        return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "libvirt did not attach '%s' with its LUKS encryption.",
                                 op->call.res.source.path);
}

/* How long an undone plug waits for QEMU to close what it opened. */
#define QEMU_RELEASE_TIMEOUT_MS 5000U

static uint64_t monotonic_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000ULL + (uint64_t) ts.tv_nsec / 1000000ULL;
}

/* CPU time (ms) of process pid's main thread — QEMU's main loop — or -1. */
static long main_thread_cpu_ms(pid_t pid) {
        char path[64], buf[1024];
        _cleanup_close_ int fd = -EBADF;
        unsigned long utime, stime;
        ssize_t n;

        if (pid <= 0)
                return -1;
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int) pid, (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        /* After the command name's ')': state, then fields 4-13, then
         * utime and stime (fields 14, 15). */
        const char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                return -1;
        return (long) ((utime + stime) * 1000UL / (unsigned long) sysconf(_SC_CLK_TCK));
}

/* The hot-plug, timed: QEMU's blockdev-add runs in its main loop with the
 * guest's vCPUs waiting for it (a native attach with the volume's own
 * header derives the caller's key slots there).  Logged for the benchmark
 * (bench/shim.c): the wall time, and the CPU time QEMU's main thread spent
 * meanwhile — the guest's stall, less what any hot-plug costs. */
static int plug_timed(AttachOp *op, virDomainPtr dom, const char *xml, const char *target, pid_t qemu_pid) {
        uint64_t t0 = monotonic_ms();
        long c0 = main_thread_cpu_ms(qemu_pid);
        int r = virt_attach_disk(dom, xml, &op->error);
        long c1 = main_thread_cpu_ms(qemu_pid);

        if (r >= 0)
                log_info("Hot-plugged %s into '%s' in %" PRIu64 " ms, QEMU's main loop %ld ms of CPU (%s).", target,
                         op->call.res.domain_name, monotonic_ms() - t0, c0 >= 0 && c1 >= c0 ? c1 - c0 : -1L,
                         op->mode == VOLUME_MODE_CRYPTSETUP ? "cryptsetup"
                         : op->header == NATIVE_HEADER_SHIM ? "native, header shim"
                                                            : "native, the volume's header");
        return r;
}

/* Appends text to an error's message, keeping its name. */
static void error_append(sd_bus_error *e, const char *text) {
        sd_bus_error n = SD_BUS_ERROR_NULL;

        if (!sd_bus_error_is_set(e))
                return;
        (void) sd_bus_error_setf(&n, e->name, "%s %s", strempty(e->message), text);
        if (!sd_bus_error_is_set(&n))
                return; /* out of memory: the message as it was */
        sd_bus_error_free(e);
        (void) sd_bus_error_move(e, &n);
}

/* When QEMU sees only a device-mapper device (a mapping, a header shim),
 * the image itself carries the locks another QEMU looks for, on the
 * descriptor the loop device will hold (so they last as long as the device
 * does); a block device's stay with the volume's own duplicate. */
static int hold_source_locks(AttachOp *op) {
        Manager *m = op->call.manager;
        int r;

        r = qemu_lock_check(luks_source_fd(op->source), true, !op->options.read_only, op->call.res.source.path,
                            m->config.source_timeout_sec * 1000U, &op->error);
        if (r < 0)
                return r;
        if (op->call.res.source.block) {
                op->volume->hold_fd = fcntl(luks_source_fd(op->source), F_DUPFD_CLOEXEC, 3);
                if (op->volume->hold_fd < 0)
                        return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot keep '%s' locked: %m",
                                                 op->call.res.source.path);
        }
        return 0;
}

/* The header shim's device: the one-time header, then the volume's
 * payload.  QEMU sees only this device, so the image carries the locks
 * another QEMU looks for, as in cryptsetup mode; *ret_node_src is what QEMU
 * must be found to have open after the plug. */
static int shim_begin(AttachOp *op, const char *domain_uuid, const char *target, char **ret_name, char **ret_node,
                      SourceInfo *ret_node_src) {
        _cleanup_free_ char *name = NULL, *node = NULL;
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        struct stat st;
        uint64_t t0 = monotonic_ms();
        int r;

        r = luks_shim_name(domain_uuid, target, &name);
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the header shim: %s", strerror(-r));
        r = hold_source_locks(op);
        if (r < 0)
                return r;
        r = luks_shim_activate(op->source, &op->luks, &op->shim, name, op->options.read_only, &node, &op->error);
        /* The loop device holds the header now (or nothing does). */
        if (op->shim.memfd >= 0)
                (void) close(op->shim.memfd);
        op->shim.memfd = -EBADF;
        if (r < 0)
                return r;

        fault_point("attach", 5); /* shim device made, no secret */

        if (stat(node, &st) < 0 || !S_ISBLK(st.st_mode)) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "The header shim device %s has no node.", node);
                if (luks_shim_remove(name, &undo_error) < 0)
                        log_error("Failed to remove %s after a failed attach: %s", name, undo_error.message);
                sd_bus_error_free(&undo_error);
                return r;
        }
        log_info("Header shim device %s ready in %" PRIu64 " ms (locks, loop devices, linear table).", node,
                 monotonic_ms() - t0);
        *ret_node_src = (SourceInfo){ .path = node, .block = true, .dev = st.st_rdev };
        *ret_name = TAKE_PTR(name);
        *ret_node = TAKE_PTR(node);
        return 0;
}

static void shim_undo(const char *name) {
        sd_bus_error error = SD_BUS_ERROR_NULL;

        if (!name)
                return;
        if (luks_shim_remove(name, &error) < 0)
                log_error("Failed to remove the header shim %s after a failed attach: %s", name, error.message);
        sd_bus_error_free(&error);
}

int attach_native(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target) {
        Manager *m = op->call.manager;
        _cleanup_free_ char *usage = NULL, *xml = NULL, *alias = NULL, *shim_name = NULL, *shim_node = NULL;
        /* plugged_src.path is the shim node's string, which the volume owns once made. */
        _cleanup_(qemu_files_done) QemuFiles before = {};
        char secret_uuid[VIR_UUID_STRING_BUFLEN];
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        bool shim = op->header == NATIVE_HEADER_SHIM, rbd = op->call.res.source.rbd;
        char rbd_name[3 * (RBD_NAME_MAX + 1)];
        RbdName name;
        SourceInfo plugged_src = op->call.res.source; /* borrowed */
        bool plugged = false;
        int r;

        r = secret_usage_build(domain_uuid, target, &usage);
        if (r >= 0)
                r = disk_alias_build(domain_uuid, target, &alias);
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the secret: %s", strerror(-r));

        /* Which files QEMU opens for the disk; an RBD image is none (its
         * librbd connects to the cluster), and Ceph counts it instead. */
        if (!rbd) {
                r = qemu_plug_before(op->call.res.domain_name, op->call.res.domain_uuid, &before, &op->error);
                call_trace(&op->call, "qemu-files-before");
                if (r < 0)
                        return r;
        }

        if (shim) {
                r = shim_begin(op, domain_uuid, target, &shim_name, &shim_node, &plugged_src);
                if (r < 0)
                        return r;
                /* Kept with the volume from here: a disk that cannot be
                 * unplugged again keeps its shim too. */
                op->volume->shim_device = TAKE_PTR(shim_node);
        }

        /* A shim's secret is its one-time passphrase; the caller's is
         * gone already. */
        r = virt_secret_create(m->virt, usage, shim ? &op->shim.passphrase : &op->passphrase, secret_uuid, &op->error);
        call_trace(&op->call, "secret");
        if (r < 0) {
                shim_undo(shim_name);
                op->volume->shim_device = mfree(op->volume->shim_device);
                return r;
        }

        fault_point("attach", 3); /* secret complete, disk not plugged */

        op->volume->secret_uuid = strdup(secret_uuid);
        if (!op->volume->secret_uuid) {
                r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                goto undo;
        }

        DiskSpec spec = {
                .block = shim || op->call.res.source.block,
                .source = shim ? op->volume->shim_device : op->call.res.source.path,
                .target = target,
                .bus = op->options.bus,
                .read_only = op->options.read_only,
                .secret_uuid = secret_uuid,
                .alias = alias,
                .serial = op->options.serial,
        };
        if (rbd) {
                r = rbd_name_parse(op->call.res.source.path, &name, NULL);
                if (r >= 0)
                        r = rbd_name_format(&name, rbd_name, sizeof rbd_name);
                if (r < 0) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the RBD image: %s",
                                              strerror(-r));
                        goto undo;
                }
                spec.rbd_name = rbd_name;
                spec.ceph_config = rbd_conf_path();
                spec.ceph_user = rbd_client();
                spec.ceph_secret_uuid = op->ceph_secret_uuid;
        }
        r = disk_xml_build(&spec, &xml);
        if (r < 0) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot build the disk XML: %s", strerror(-r));
                goto undo;
        }
        r = plug_timed(op, dom, xml, target, before.pid);
        if (r < 0) {
                /* libvirt took it back; QEMU may still hold what it opened
                 * for a moment. */
                if (!rbd)
                        (void) qemu_files_wait_released(&before, QEMU_RELEASE_TIMEOUT_MS);
                goto undo;
        }
        plugged = true;
        call_trace(&op->call, "plugged");

        r = check_plugged_encrypted(op, dom, target, alias, secret_uuid);
        call_trace(&op->call, "xml-checked");
        if (r >= 0 && !rbd)
                r = qemu_plug_check(op->call.res.domain_name, &before, &plugged_src, &op->error);
        if (r >= 0)
                return 0;

undo:
        if (plugged) {
                int k;

                if (op->fault_unplug_fails)
                        k = sd_bus_error_set(&undo_error, LV_ERROR_FAILED, "fault injection");
                else
                        k = virt_detach_disk(dom, target, alias, 10000, &undo_error);
                if (k < 0) {
                        /* The guest keeps a disk it must not have (ciphertext
                         * as a plain disk, or another file).  Its volume stays,
                         * "detaching", with its secret (QEMU may still use
                         * it): visible to the operator, and the unplug is
                         * asked for again until the guest lets go. */
                        log_error("Failed to unplug '%s' after a failed attach: %s", target, undo_error.message);
                        sd_bus_error_free(&undo_error);
                        op->keep_volume = true;
                        op->volume->state = VOLUME_STATE_DETACHING;
                        op->volume->unplug_retry = true;
                        error_append(&op->error, "The disk could not be removed yet; its volume object stays "
                                                 "'detaching' until the guest releases it.");
                        return r;
                }
                /* Nothing of the plug may stay open in QEMU once we answer. */
                if (!rbd && qemu_files_wait_released(&before, QEMU_RELEASE_TIMEOUT_MS) < 0)
                        log_warning("QEMU of '%s' still holds files of the removed disk %s.", op->call.res.domain_name,
                                    target);
                error_append(&op->error, "The disk was removed again.");
        }
        if (virt_secret_undefine(m->virt, secret_uuid, &undo_error) < 0)
                log_error("Failed to remove secret %s after a failed attach: %s", secret_uuid, undo_error.message);
        sd_bus_error_free(&undo_error);
        op->volume->secret_uuid = mfree(op->volume->secret_uuid);
        shim_undo(shim_name);
        op->volume->shim_device = mfree(op->volume->shim_device);
        return r;
}

int attach_cryptsetup(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target) {
        Manager *m = op->call.manager;
        _cleanup_free_ char *name = NULL, *mapper = NULL, *xml = NULL, *alias = NULL;
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        int r;

        r = luks_mapping_name(domain_uuid, target, &name);
        if (r >= 0)
                r = disk_alias_build(domain_uuid, target, &alias);
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the mapping: %s", strerror(-r));

        /* QEMU only ever sees the mapping: the image itself carries the
         * locks another QEMU looks for, on the descriptor the loop device
         * will hold (so they last as long as the mapping does); a block
         * device's stay with the volume's own duplicate. */
        r = hold_source_locks(op);
        if (r < 0)
                return r;

        r = manager_derive_begin(m, op->call.caller_uid, &op->error);
        if (r < 0)
                return r;
        r = luks_activate(op->source, name, op->options.read_only, op->options.discard,
                          m->config.source_timeout_sec * 1000U, &op->passphrase, &mapper, &op->error);
        manager_derive_end(m, op->call.caller_uid);
        if (r < 0)
                return r;

        DiskSpec spec = {
                .block = true,
                .source = mapper,
                .target = target,
                .bus = op->options.bus,
                .read_only = op->options.read_only,
                .alias = alias,
                .serial = op->options.serial,
                .discard = op->options.discard,
        };
        r = disk_xml_build(&spec, &xml);
        if (r < 0)
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot build the disk XML: %s", strerror(-r));
        else
                r = plug_timed(op, dom, xml, target, 0);
        if (r < 0) {
                if (luks_deactivate(name, &undo_error) < 0)
                        log_error("Failed to close mapping %s after a failed attach: %s", name, undo_error.message);
                sd_bus_error_free(&undo_error);
                return r;
        }

        op->volume->mapper_device = TAKE_PTR(mapper);
        return 0;
}
