/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What an Attach of an RBD image (source "rbd:POOL/IMAGE", issue 18)
 * checks before anything is made, beside attach.c's checks of files:
 *
 * - native only.  QEMU's librbd reaches the image itself, so the host
 *   never holds a cleartext device — nor even a ciphertext one.  Cryptsetup
 *   mode would need a kernel mapping of the image (`rbd map`), a cleartext
 *   device on the host: not offered.  No header shim either (it needs the
 *   payload as a host block device).
 * - LUKS1, opened by QEMU's own LUKS driver over the rbd node: hot-plugs on
 *   libvirt 9.0 (tested).  LUKS2 on RBD opens only through librbd's own
 *   encryption (engine='librbd'), and libvirt before 11.3 cannot hot-plug
 *   that: qemuBlockStorageSourceAttachApply() adds the rbd node, which
 *   names the passphrase secret, before the secret object (README "RBD
 *   images").  Refused, by name, never downgraded; attaching LUKS2 on a
 *   newer libvirt is not built (nothing here could test it).
 * - in use: Ceph's own word, the image's watchers — every client that has
 *   it open read-write (a QEMU, on any host; a kernel mapping) watches it.
 * - QEMU authenticates with a libvirt 'ceph' secret the host already has
 *   (CephSecret=): no Ceph key travels over the bus or into the XML. */

#include "errors.h"
#include "header-policy.h"
#include "manager.h"
#include "rbd-name.h"
#include "util.h"
#include "virt.h"

#include "attach-internal.h"
#include "attach-rbd.h"

int rbd_native_preflight(Manager *m, const char *path, sd_bus_error *error) {
        RbdName name;

        /* libvirt's <source name> for a namespaced image is not something
         * this service has seen work: probed, not attached. */
        if (rbd_name_parse(path, &name, NULL) < 0 || name.ns[0])
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "RBD images in a namespace ('%s') can be probed but not attached yet.", path);
        if (!m->config.ceph_secret)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "Attaching RBD images needs CephSecret= in luksvolumed.conf: the libvirt "
                                         "'ceph' secret QEMU authenticates with.");
        return 0;
}

int rbd_native_header_check(const char *path, const LuksInfo *luks, sd_bus_error *error) {
        if (luks->version != 1)
                return sd_bus_error_setf(
                        error, LV_ERROR_NOT_SUPPORTED,
                        "'%s' is LUKS%u: QEMU opens LUKS2 on RBD only through librbd's encryption "
                        "(engine='librbd'), which libvirt before 11.3 cannot hot-plug into a running "
                        "guest (it adds the passphrase secret after the disk that names it); LUKS1 RBD "
                        "images attach natively.",
                        path, luks->version);
        return 0;
}

int attach_inspect_rbd(AttachOp *op) {
        Call *c = &op->call;
        Manager *m = c->manager;
        const char *path = c->res.source.path;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        char reason[512], obstacle[384];
        ModeInput in;
        int r;

        if (op->options.mode == VOLUME_MODE_CRYPTSETUP)
                return sd_bus_error_setf(
                        &op->error, LV_ERROR_NOT_SUPPORTED,
                        "Cryptsetup mode is not offered for RBD images ('%s'): it would need a kernel "
                        "mapping of the image, a cleartext device on the host; native mode needs none.",
                        path);
        if (op->options.native_header == NATIVE_HEADER_SHIM)
                return sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                         "No header shim can be made for an RBD image ('%s').", path);
        r = rbd_native_preflight(m, path, &op->error);
        if (r < 0)
                return r;

        r = luks_source_open_keys(&c->res.source, false, timeout_ms, &op->source, &op->error);
        if (r < 0)
                return r;
        r = luks_source_info(op->source, &op->luks, &op->error);
        if (r < 0)
                return r;
        call_trace(c, "header-read");

        if (op->luks.rbd_watchers > 0)
                return sd_bus_error_setf(
                        &op->error, LV_ERROR_IN_USE,
                        "'%s' is open by %u other Ceph client%s (a guest on this or another host, or a "
                        "kernel mapping), the first at %s.",
                        path, op->luks.rbd_watchers, op->luks.rbd_watchers == 1 ? "" : "s",
                        op->luks.rbd_watcher[0] ? op->luks.rbd_watcher : "an address Ceph did not give");
        r = rbd_native_header_check(path, &op->luks, &op->error);
        if (r < 0)
                return r;

        r = manager_mode_input(m, &in, NULL, &op->error);
        if (r < 0)
                return r;
        in.luks_version = op->luks.version;
        in.cipher = op->luks.cipher_name;
        in.cipher_mode = op->luks.cipher_mode;
        in.hash = op->luks.hash;
        in.requested = VOLUME_MODE_NATIVE;
        in.passphrase_not_text = !passphrase_qemu_compatible(op->passphrase);
        in.discard = op->options.discard;
        in.header_obstacle = header_obstacle(&op->luks, luks_kdf_limits(), obstacle, sizeof obstacle);
        in.sector_size = op->luks.sector_size;
        in.native_header = NATIVE_HEADER_VOLUME;
        /* Neither exists for an image the host never maps. */
        in.dm_crypt_available = false;
        in.dm_linear_available = false;
        op->mode = mode_select(&in, reason, sizeof reason);
        op->header = NATIVE_HEADER_VOLUME;
        if (op->mode != VOLUME_MODE_NATIVE)
                return sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED, "%s.", reason);

        return virt_ceph_secret(m->virt, m->config.ceph_secret, op->ceph_secret_uuid, &op->error);
}
