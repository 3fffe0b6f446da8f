/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Volume.Resize: the guest's disk grows (or, with allow-shrink, shrinks)
 * while the guest runs.  size is the plaintext the guest will see.
 *
 * parse → authorize (the resize action, with the volume's details) →
 * worker (the live XML must still hold our disk; libvirt's capacity says
 * what the guest sees now) → act → reply, Size's PropertiesChanged.
 *
 * Native mode: virDomainBlockResize() to size.  QEMU resizes its LUKS
 * node, i.e. the plaintext, and the image under it by the payload offset
 * more — handing it the file's size instead (Nova's old bug) would give the
 * guest that much plaintext and the file a header's worth beyond.  A block
 * device cannot grow that way: QEMU gives the guest all of it, so size must
 * be exactly what the device holds.
 *
 * cryptsetup mode: a growing file grows first (a block device must be
 * large enough already) and the loop device takes its new size
 * (LOOP_SET_CAPACITY); then the mapping (crypt_resize), then the guest's
 * disk — QEMU takes a block device's size from the device, so the mapping
 * leads both ways; a shrinking file is truncated last.  A step that fails
 * undoes the ones before it, so the guest never sees a disk larger than
 * what is under it.
 *
 * Native through a header shim: as cryptsetup mode, with the shim's linear
 * table (its payload piece) in the mapping's place; QEMU's LUKS node then
 * takes the new size as in native mode. */

#include <inttypes.h>
#include <libvirt/libvirt.h>

#include "disk-xml.h"
#include "errors.h"
#include "luks-shim.h"
#include "event-log.h"
#include "loopdev.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

/* Far beyond any disk, far enough below 2^63 that a payload offset and
 * QEMU's own rounding still fit an off_t. */
#define RESIZE_MAX (UINT64_C(1) << 60)

typedef struct ResizeOp {
        Call call;

        char *path;
        uint64_t generation;
        uint64_t size;
        ResizeOptions options;

        /* copies for the worker: it must not read the Volume */
        VolumeMode mode;
        bool shim; /* native through a header shim: resized like a mapping */
        char *domain_uuid, *target, *source;
        bool source_identity_known;
        dev_t source_dev;
        ino_t source_ino;

        /* job results */
        uint64_t old_size, new_size;
        int r;
        sd_bus_error error;
} ResizeOp;

static void resize_op_free(Call *c) {
        ResizeOp *op = (ResizeOp *) c;

        free(op->path);
        free(op->domain_uuid);
        free(op->target);
        free(op->source);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

/* The one way a resize ends: the volume's flag, the answer, the chain's
 * reference. */
static void resize_end(ResizeOp *op) {
        Manager *m = op->call.manager;
        Volume *v = manager_find_volume(m, op->path, op->generation);

        if (v && v->resize_pending) {
                v->resize_pending = false;
                m->resizes++;
        }
        if (sd_bus_error_is_set(&op->error)) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, v ? v->domain : NULL, op->source, op->target,
                                 v ? volume_mode_to_string(v->mode) : NULL,
                                 "Resize of %s to %" PRIu64 " bytes failed: %s", op->path, op->size, op->error.message);
                call_reply_error(&op->call, &op->error);
        } else {
                if (v && v->size != op->new_size) {
                        v->size = op->new_size;
                        (void) volume_bus_emit_size(v);
                }
                if (v)
                        log_info("Resized %s (%s on '%s') from %" PRIu64 " to %" PRIu64 " bytes.", op->path, op->target,
                                 v->domain, op->old_size, op->new_size);
                call_reply_empty(&op->call);
        }
        call_unref(&op->call);
}

/* An answer before the job started: op->error, and the chain's reference;
 * the volume's flags are another operation's. */
static void resize_refuse(ResizeOp *op) {
        call_reply_error(&op->call, &op->error);
        call_unref(&op->call);
}

/* ---------------------------------------------------------------- act */

static int refuse_device_size(ResizeOp *op, const char *what, uint64_t holds) {
        if (op->size > holds)
                return sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                         "%s holds at most %" PRIu64 " bytes of plaintext; grow the device first.",
                                         what, holds);
        /* Native mode: QEMU gives the guest the whole device. */
        return sd_bus_error_setf(
                &op->error, LV_ERROR_NOT_SUPPORTED,
                "QEMU gives the guest all of the block device %s: %" PRIu64
                " bytes of plaintext; resize to exactly that (resize the device first for another size).",
                what, holds);
}

/* Worker.  The volume's source as it is now — still the file or device it
 * was attached from — and its header. */
static int open_source(ResizeOp *op, bool want_write, SourceInfo *ret_src, LuksSource **ret, LuksInfo *ret_info) {
        unsigned timeout_ms = op->call.manager->config.source_timeout_sec * 1000U;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        SourceInfo src = {};
        int r;

        r = source_resolve(op->source, timeout_ms, &src, &op->error);
        if (r < 0)
                return r;
        if (op->source_identity_known && (src.dev != op->source_dev || src.ino != op->source_ino))
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED,
                                      "'%s' is no longer the file or device the volume was attached from.", op->source);
        if (r >= 0)
                r = luks_source_open(&src, want_write && !src.block, timeout_ms, &source, &op->error);
        if (r >= 0)
                r = luks_source_info(source, ret_info, &op->error);
        if (r < 0) {
                source_info_done(&src);
                return r;
        }
        *ret_src = src;
        *ret = TAKE_PTR(source);
        return 0;
}

/* Worker.  Native mode: QEMU does it all — for an RBD image too, whose
 * rbd node QEMU's LUKS driver grows or shrinks through librbd
 * (rbd_resize()), the header's offset added. */
static int resize_native(ResizeOp *op, virDomainPtr dom, const DiskInfo *d) {
        int r;

        if (d->block) {
                _cleanup_(luks_source_freep) LuksSource *source = NULL;
                SourceInfo src = {};
                LuksInfo info;

                r = open_source(op, false, &src, &source, &info);
                if (r < 0)
                        return r;
                source_info_done(&src);
                uint64_t holds = volume_size_from_header(info.device_size, info.payload_offset);
                if (op->size != holds)
                        return refuse_device_size(op, op->source, holds);
        }
        return virt_block_resize(dom, op->target, op->size, &op->error);
}

/* The mapping (or shim device) to size bytes of plaintext. */
static int resize_device(ResizeOp *op, LuksSource *source, const char *name, const char *node, uint64_t size,
                         sd_bus_error *error) {
        unsigned timeout_ms = op->call.manager->config.source_timeout_sec * 1000U;

        if (op->shim)
                return luks_shim_resize(name, size, timeout_ms, error);
        return luks_resize(source, name, node, size, timeout_ms, error);
}

/* Worker.  cryptsetup mode and header shims: the file (or device), the
 * loop device, the mapping (or the shim's table), then the guest's disk. */
static int resize_mapped(ResizeOp *op, virDomainPtr dom) {
        Manager *m = op->call.manager;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        _cleanup_free_ char *name = NULL, *node = NULL;
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        bool file_grown = false, mapping_resized = false;
        SourceInfo src = {};
        LuksInfo info;
        uint64_t need;
        int r;

        r = op->shim ? luks_shim_name(op->domain_uuid, op->target, &name)
                     : luks_mapping_name(op->domain_uuid, op->target, &name);
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the mapping: %s", strerror(-r));
        r = op->shim ? luks_shim_data_device(name, &node) : luks_mapping_device(name, &node);
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot find the device under mapping %s: %s",
                                         name, strerror(-r));

        r = open_source(op, true, &src, &source, &info);
        if (r < 0)
                return r;
        if (op->size % info.sector_size != 0) {
                r = sd_bus_error_setf(&op->error, DBUS_ERROR_INVALID_ARGS,
                                      "The size must be a multiple of the volume's sector size, %" PRIu32 " bytes.",
                                      info.sector_size);
                goto finish;
        }
        need = info.payload_offset + op->size;

        if (src.block && info.device_size < need) {
                r = refuse_device_size(op, op->source, volume_size_from_header(info.device_size, info.payload_offset));
                goto finish;
        }

        /* Growing: the file first (a block device holds enough already). */
        if (!src.block && info.device_size < need) {
                r = luks_source_truncate(source, need, timeout_ms, &op->error);
                if (r < 0)
                        goto finish;
                file_grown = true;
                r = loop_refresh_capacity(node, src.dev, src.ino);
                if (r < 0) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot refresh the size of %s: %s", node,
                                              strerror(-r));
                        goto undo;
                }
        }

        /* The mapping before the guest's disk, both ways: QEMU takes the
         * size of a block device from the device itself. */
        r = resize_device(op, source, name, node, op->size, &op->error);
        if (r < 0)
                goto undo;
        mapping_resized = true;
        r = virt_block_resize(dom, op->target, op->size, &op->error);
        if (r < 0)
                goto undo;

        /* Shrinking: the guest no longer reaches beyond need, so the file
         * may go last.  Failing here leaves a file larger than needed, no
         * more. */
        if (!src.block && info.device_size > need &&
            (luks_source_truncate(source, need, timeout_ms, &undo_error) < 0 ||
             loop_refresh_capacity(node, src.dev, src.ino) < 0))
                log_warning("Cannot shrink '%s' to %" PRIu64 " bytes after its volume shrank: %s", op->source, need,
                            strempty(undo_error.message));
        sd_bus_error_free(&undo_error);
        r = 0;
        goto finish;

undo:
        /* Back to where the guest's disk is: the mapping first, then the
         * file under it — unless the mapping stays larger, which still
         * needs it. */
        if (mapping_resized && resize_device(op, source, name, node, op->old_size, &undo_error) < 0)
                log_error("Cannot put mapping %s back to %" PRIu64 " bytes after a failed resize: %s", name,
                          op->old_size, undo_error.message);
        else if (file_grown && (luks_source_truncate(source, info.device_size, timeout_ms, &undo_error) < 0 ||
                                loop_refresh_capacity(node, src.dev, src.ino) < 0))
                log_warning("Cannot shrink '%s' back to %" PRIu64 " bytes after a failed resize: %s", op->source,
                            info.device_size, strempty(undo_error.message));
        sd_bus_error_free(&undo_error);

finish:
        source_info_done(&src);
        return r;
}

/* Worker. */
static void resize_job(Call *c) {
        ResizeOp *op = (ResizeOp *) c;
        Manager *m = c->manager;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        bool locked = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        r = virt_domain_lookup_running(m->virt, op->domain_uuid, &dom, &op->error);
        if (r < 0)
                goto finish;

        /* Ordered against attaches and detach requests on this domain. */
        virt_domain_lock(m->virt, op->domain_uuid);
        locked = true;

        r = virt_domain_live_xml(dom, &xml, &op->error);
        if (r < 0)
                goto finish;
        r = domain_xml_find_disk(xml, op->target, &d);
        if (r < 0 && r != -ENOENT) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s",
                                      strerror(-r));
                goto finish;
        }
        if (r == -ENOENT || !disk_info_is_ours(&d, op->domain_uuid, op->target)) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_NO_SUCH_VOLUME,
                                      "No volume %s: its disk is gone from the guest.", op->path);
                goto finish;
        }

        r = virt_disk_capacity(dom, op->target, &op->old_size, &op->error);
        if (r < 0)
                goto finish;
        if (op->size < op->old_size && !op->options.allow_shrink) {
                r = sd_bus_error_setf(&op->error, DBUS_ERROR_INVALID_ARGS,
                                      "%" PRIu64 " bytes is less than the %" PRIu64 " the guest sees now; shrinking "
                                      "loses the data beyond the new end: pass allow-shrink to do it anyway.",
                                      op->size, op->old_size);
                goto finish;
        }
        if (op->size == op->old_size) {
                op->new_size = op->old_size;
                r = 0;
                goto finish;
        }

        if (op->mode == VOLUME_MODE_NATIVE && !op->shim)
                r = resize_native(op, dom, &d);
        else
                r = resize_mapped(op, dom);
        if (r < 0)
                goto finish;

        /* What the guest sees now, as libvirt says. */
        if (virt_disk_capacity(dom, op->target, &op->new_size, NULL) < 0)
                op->new_size = op->size;
        r = 0;

finish:
        if (locked)
                virt_domain_unlock(m->virt, op->domain_uuid);
        pthread_rwlock_unlock(&m->ops_lock);
        disk_info_free(&d);
        op->r = r;
}

static void resize_done(Call *c) {
        resize_end((ResizeOp *) c);
}

/* ----------------------------------------------------------- authorize */

static void resize_authorized(Call *c, bool allowed) {
        ResizeOp *op = (ResizeOp *) c;
        Volume *v;

        if (!allowed) {
                call_unref(c);
                return;
        }

        /* It may have gone — or been replaced — while polkit was deciding. */
        v = manager_find_volume(c->manager, op->path, op->generation);
        if (!v) {
                sd_bus_error_setf(&op->error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", op->path);
                resize_refuse(op);
                return;
        }
        if (v->state == VOLUME_STATE_SAVED)
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY,
                                  "The domain of %s is saved; resize the volume after the domain is restored.",
                                  op->path);
        else if (v->state == VOLUME_STATE_DETACHING || v->operation_pending)
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "%s is being detached.", op->path);
        else if (v->resize_pending)
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "A resize of %s is already in progress.", op->path);
        else if (v->read_only)
                sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED, "%s is attached read-only; it cannot be resized.",
                                  op->path);
        else if (isempty(v->source))
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "The source of %s is not known.", op->path);
        if (sd_bus_error_is_set(&op->error)) {
                resize_refuse(op);
                return;
        }

        op->mode = v->mode;
        op->shim = v->mode == VOLUME_MODE_NATIVE && v->shim_device;
        op->domain_uuid = strdup(v->domain_uuid);
        op->target = strdup(v->target);
        op->source = strdup(v->source);
        op->source_identity_known = v->source_identity_known;
        op->source_dev = v->source_dev;
        op->source_ino = v->source_ino;
        if (!op->domain_uuid || !op->target || !op->source) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                resize_refuse(op);
                return;
        }

        /* From here on resize_end() clears it. */
        v->resize_pending = true;
        if (call_submit(c, resize_job, resize_done) < 0)
                resize_end(op);
}

/* --------------------------------------------------------------- parse */

int method_resize(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Volume *v = userdata;
        Manager *m = v->manager;
        ResizeOptions options = {};
        char size_text[32];
        uint64_t size;
        ResizeOp *op;
        int r;

        r = sd_bus_message_read(message, "t", &size);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = resize_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);
        if (size == 0 || size % 512 != 0)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                         "The size must be a positive multiple of 512 bytes, not %" PRIu64 ".", size);
        if (size > RESIZE_MAX)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The size must be at most %" PRIu64 " bytes.",
                                         RESIZE_MAX);

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, resize_op_free);
        op->size = size;
        op->options = options;
        op->generation = v->generation;
        op->path = strdup(v->path);
        if (!op->path) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                resize_refuse(op);
                return 1;
        }

        snprintf(size_text, sizeof size_text, "%" PRIu64, size);
        const char *const details[] = {
                "domain", v->domain, "domain-uuid", v->domain_uuid, "source", strempty(v->source),
                "target", v->target, "size",        size_text,      NULL,
        };
        if (call_authorize(&op->call, ACTION_RESIZE, call_details(&op->call, details), resize_authorized) < 0)
                call_unref(&op->call);
        return 1;
}
