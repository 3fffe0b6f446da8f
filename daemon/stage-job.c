/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* StageIncoming's worker part (stage-internal.h): the volume's header,
 * whether this host can take it in the source host's mode, the passphrase,
 * then what the migrated disk will name here — the ephemeral private
 * secret under the source's UUID, the dm-crypt mapping (cryptsetup mode)
 * or the header shim and its secret. */

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "attach-rbd.h"
#include "dm-ioctl.h"
#include "errors.h"
#include "fault.h"
#include "header-policy.h"
#include "luks-shim.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "stage-internal.h"
#include "util.h"

/* Worker, under the ops lock: the device the migrated disk will name, made
 * here as Attach makes it, with the same name (this host's, DeviceTag=)
 * and without QEMU's image locks, which the source host's QEMU holds until
 * it hands the guest over.  The passphrase is checked by the one key
 * derivation this needs. */
static int stage_device(StageOp *op, LuksSource *source, const LuksInfo *luks, unsigned timeout_ms) {
        Call *c = &op->call;
        Manager *m = c->manager;
        const char *name = op->staged->device;
        _cleanup_free_ char *node = NULL;
        bool exists = false;
        int r;

        r = dm_device_exists(name, &exists);
        if (r >= 0 && exists)
                return sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED,
                                         "The device %s exists on this host already.", name);

        r = manager_derive_begin(m, c->caller_uid, &op->error);
        if (r < 0)
                return r;
        if (op->staged->shim) {
                r = luks_shim_make(source, luks, op->passphrase, timeout_ms, &op->shim, &op->error);
                op->slot = op->shim.slot;
                op->passphrase = passphrase_free(op->passphrase);
        } else
                r = luks_activate(source, name, op->options.read_only, op->options.discard, timeout_ms, &op->passphrase,
                                  &node, &op->error);
        manager_derive_end(m, c->caller_uid);
        if (r < 0 || !op->staged->shim)
                return r;

        r = luks_shim_activate(source, luks, &op->shim, name, op->options.read_only, &node, &op->error);
        /* The loop device holds the header now (or nothing does). */
        if (op->shim.memfd >= 0)
                (void) close(op->shim.memfd);
        op->shim.memfd = -EBADF;
        return r;
}

static void device_undo(const Staged *s) {
        sd_bus_error error = SD_BUS_ERROR_NULL;

        if (s->device && (s->shim ? luks_shim_remove(s->device, &error) : luks_deactivate(s->device, &error)) < 0)
                log_error("Failed to remove %s after a failed staging: %s", s->device, error.message);
        sd_bus_error_free(&error);
}

/* Worker. */
void stage_job(Call *c) {
        StageOp *op = (StageOp *) c;
        Manager *m = c->manager;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        char reason[512], obstacle[384], uuid[VIR_UUID_STRING_BUFLEN];
        bool exists = false, native = op->options.mode == VOLUME_MODE_NATIVE, device = op->staged->device;
        Passphrase **secret_value = &op->passphrase;
        uint64_t cost;
        LuksInfo luks;
        ModeInput in;
        int r = 0;

        if (!op->passphrase)
                r = read_passphrase_option(c, &op->options.passphrase_fd, "passphrase-fd", &op->passphrase, &op->error);
        if (r < 0)
                goto finish;

        /* No check for QEMU's locks: the guest's QEMU on the source host
         * has the volume open, as it must.  Read-only unless a device
         * made here writes to it. */
        r = luks_source_open_keys(&c->res.source, device && !op->options.read_only, timeout_ms, &source, &op->error);
        if (r >= 0)
                r = luks_source_info(source, &luks, &op->error);
        if (r < 0)
                goto finish;

        /* What Attach would decide for it here, asked for the mode and
         * header the source host's volume has: the same refusals (a cipher
         * QEMU lacks, a passphrase QEMU cannot take, an older libvirt or
         * QEMU, no device-mapper, a header over the limits). */
        r = manager_mode_input(m, &in, NULL, &op->error);
        if (r < 0)
                goto finish;
        in.luks_version = luks.version;
        in.cipher = luks.cipher_name;
        in.cipher_mode = luks.cipher_mode;
        in.hash = luks.hash;
        in.sector_size = luks.sector_size;
        in.integrity = luks.integrity;
        in.requirements = luks.requirements;
        in.discard = op->options.discard;
        in.requested = op->options.mode;
        in.native_header = native ? op->options.native_header : NATIVE_HEADER_AUTO;
        in.passphrase_not_text = !passphrase_qemu_compatible(op->passphrase);
        in.header_obstacle = header_obstacle(&luks, luks_kdf_limits(), obstacle, sizeof obstacle);
        if (c->res.source.rbd) {
                r = rbd_native_header_check(c->res.source.path, &luks, &op->error);
                if (r < 0)
                        goto finish;
                /* Neither exists for an image the host never maps: RBD
                 * volumes stage with their own header. */
                in.dm_crypt_available = in.dm_linear_available = false;
        }
        if (mode_select(&in, reason, sizeof reason) != op->options.mode) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                      "This host cannot take the volume in %s mode: %s.",
                                      volume_mode_to_string(op->options.mode), reason);
                goto finish;
        }
        if (native && mode_native_header(&in) != op->options.native_header) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                      "This host cannot give QEMU the volume through a header shim: %s.",
                                      mode_shim_obstacle(&in, reason, sizeof reason) ?: "device-mapper is missing");
                goto finish;
        }

        if (c->res.source.rbd) {
                char ceph_uuid[VIR_UUID_STRING_BUFLEN];

                r = virt_ceph_secret(m->virt, m->config.ceph_secret, ceph_uuid, &op->error);
                if (r < 0)
                        goto finish;
                if (op->options.ceph_secret && !streq(op->options.ceph_secret, ceph_uuid)) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                              "The guest's disk names the libvirt 'ceph' secret %s, this host's "
                                              "CephSecret= is %s: define the Ceph client's secret under the same "
                                              "UUID on every host guests migrate between.",
                                              op->options.ceph_secret, ceph_uuid);
                        goto finish;
                }
        }

        if (!device) {
                r = manager_derive_begin(m, c->caller_uid, &op->error);
                if (r < 0)
                        goto finish;
                r = luks_source_verify(source, op->passphrase, timeout_ms, &op->slot, &cost, &op->error);
                manager_derive_end(m, c->caller_uid);
                if (r < 0)
                        goto finish;
        }

        pthread_rwlock_rdlock(&m->ops_lock);
        if (native) {
                r = virt_secret_exists(m->virt, op->staged->secret_uuid, &exists, &op->error);
                if (r >= 0 && exists)
                        r = sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED,
                                              "A secret with UUID %s is already defined on this host.",
                                              op->staged->secret_uuid);
        }
        if (r >= 0 && device) {
                r = stage_device(op, source, &luks, timeout_ms);
                fault_point("stage", 1); /* device made, no secret */
        }
        /* A shim's secret is its one-time passphrase. */
        if (op->staged->shim)
                secret_value = &op->shim.passphrase;
        if (r >= 0 && native) {
                r = virt_secret_create_with_uuid(m->virt, op->staged->secret_uuid, op->usage, secret_value, uuid,
                                                 &op->error);
                if (r < 0 && device)
                        device_undo(op->staged);
        }
        pthread_rwlock_unlock(&m->ops_lock);

finish:
        op->passphrase = passphrase_free(op->passphrase);
        luks_shim_done(&op->shim);
        op->r = r;
}
