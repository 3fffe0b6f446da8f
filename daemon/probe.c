/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Probe: host facts (source "") or a volume's LUKS header facts.
 * parse → resolve (worker, window) → authorize → header snapshot (worker,
 * deadline) → reply. */

#include <rbd/features.h>

#include "errors.h"
#include "rbd-name.h"
#include "header-policy.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "util.h"

typedef struct ProbeOp {
        Call call;

        bool host_only;
        HostInfo host;
        bool host_known;
        ModeInput in;
        LuksInfo luks;

        int r;
        sd_bus_error error;
} ProbeOp;

static void probe_op_free(Call *c) {
        ProbeOp *op = (ProbeOp *) c;

        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void probe_end(ProbeOp *op) {
        if (sd_bus_error_is_set(&op->error))
                call_reply_error(&op->call, &op->error);
        call_unref(&op->call);
}

/* Worker. */
static void probe_job(Call *c) {
        ProbeOp *op = (ProbeOp *) c;
        Manager *m = c->manager;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        sd_bus_error ignored = SD_BUS_ERROR_NULL;
        int r;

        if (op->host_only) {
                r = manager_mode_input(m, &op->in, &op->host, &op->error);
                op->host_known = r >= 0;
                op->r = r;
                return;
        }

        r = luks_source_open(&c->res.source, false, m->config.source_timeout_sec * 1000U, &source, &op->error);
        if (r >= 0)
                r = luks_source_info(source, &op->luks, &op->error);
        if (r < 0) {
                op->r = r;
                return;
        }
        /* native-capable needs the host's versions; without libvirt the
         * header facts are still worth reporting. */
        op->host_known = manager_mode_input(m, &op->in, &op->host, &ignored) >= 0;
        sd_bus_error_free(&ignored);
        op->r = 0;
}

static int append_entry(sd_bus_message *reply, const char *key, char type, const void *value) {
        char t[2] = { type, 0 };
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, 's', key);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'v', t);
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, type, value);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int append_host(ProbeOp *op, sd_bus_message *reply) {
        char buf[32];
        int b, r;

        r = append_entry(reply, "version", 's', PACKAGE_VERSION);
        if (r < 0)
                return r;
        version_format(op->host.libvirt_version, buf, sizeof buf);
        r = append_entry(reply, "libvirt-version", 's', buf);
        if (r < 0)
                return r;
        r = append_entry(reply, "hypervisor", 's', op->host.hypervisor);
        if (r < 0)
                return r;
        version_format(op->host.hypervisor_version, buf, sizeof buf);
        r = append_entry(reply, "hypervisor-version", 's', buf);
        if (r < 0)
                return r;
        b = mode_native_gate(&op->in);
        r = append_entry(reply, "native-luks", 'b', &b);
        if (r < 0)
                return r;
        b = op->in.dm_crypt_available;
        r = append_entry(reply, "dm-crypt", 'b', &b);
        if (r < 0)
                return r;
        /* Since 0.3: LUKS2 (512-byte sectors) native through a header shim. */
        b = mode_native_gate(&op->in) && op->in.dm_linear_available;
        return append_entry(reply, "header-shim", 'b', &b);
}

static int append_keyslots(const LuksInfo *luks, sd_bus_message *reply) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(reply, 's', "keyslots");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'v', "aa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < luks->active_keyslots; i++) {
                const LuksKeyslot *ks = &luks->keyslots[i];
                uint32_t u;

                r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r < 0)
                        return r;
                u = ks->slot;
                r = append_entry(reply, "slot", 'u', &u);
                if (r >= 0)
                        r = append_entry(reply, "state", 's', "active");
                if (r >= 0)
                        r = append_entry(reply, "pbkdf", 's', ks->pbkdf);
                if (r >= 0 && ks->hash[0])
                        r = append_entry(reply, "hash", 's', ks->hash);
                if (r >= 0)
                        r = append_entry(reply, streq(ks->pbkdf, "pbkdf2") ? "iterations" : "time-cost", 'u',
                                         &ks->iterations);
                if (r >= 0 && !streq(ks->pbkdf, "pbkdf2"))
                        r = append_entry(reply, "memory-kib", 'u', &ks->memory_kib);
                if (r >= 0 && !streq(ks->pbkdf, "pbkdf2"))
                        r = append_entry(reply, "parallel", 'u', &ks->parallel_threads);
                if (r >= 0 && ks->cipher[0])
                        r = append_entry(reply, "cipher", 's', ks->cipher);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* Since 0.3, for "rbd:" sources: the image's features by name and how
 * many clients watch it (a QEMU or a kernel mapping that has it open). */
static int append_rbd(const LuksInfo *luks, sd_bus_message *reply) {
        static const struct {
                uint64_t bit;
                const char *name;
        } features[] = {
                { RBD_FEATURE_LAYERING, "layering" },
                { RBD_FEATURE_STRIPINGV2, "striping" },
                { RBD_FEATURE_EXCLUSIVE_LOCK, "exclusive-lock" },
                { RBD_FEATURE_OBJECT_MAP, "object-map" },
                { RBD_FEATURE_FAST_DIFF, "fast-diff" },
                { RBD_FEATURE_DEEP_FLATTEN, "deep-flatten" },
                { RBD_FEATURE_JOURNALING, "journaling" },
                { RBD_FEATURE_DATA_POOL, "data-pool" },
                { RBD_FEATURE_OPERATIONS, "operations" },
                { RBD_FEATURE_MIGRATING, "migrating" },
                { RBD_FEATURE_NON_PRIMARY, "non-primary" },
        };
        uint32_t u = luks->rbd_watchers;
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 's', "rbd-features");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "s");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(features); i++)
                if (luks->rbd_features & features[i].bit)
                        r = sd_bus_message_append_basic(reply, 's', features[i].name);
        for (unsigned k = 0; k < 3 && r >= 0; k++)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return append_entry(reply, "rbd-watchers", 'u', &u);
}

static int append_volume(ProbeOp *op, sd_bus_message *reply) {
        const LuksInfo *luks = &op->luks;
        Volume *v = manager_find_volume_by_source(op->call.manager, op->call.res.source.dev, op->call.res.source.ino);
        char obstacle_buf[384], header_buf[384];
        const char *obstacle = "the host's libvirt is not reachable";
        const char *native_header = ""; /* which header a native attach would give QEMU */
        const char *header = header_obstacle(luks, luks_kdf_limits(), header_buf, sizeof header_buf);
        uint32_t u;
        uint64_t t;
        int b, r;

        u = luks->version;
        r = append_entry(reply, "luks-version", 'u', &u);
        if (r < 0)
                return r;
        r = append_entry(reply, "uuid", 's', luks->uuid);
        if (r < 0)
                return r;
        r = append_entry(reply, "cipher", 's', luks->cipher);
        if (r < 0)
                return r;
        u = luks->key_size_bits;
        r = append_entry(reply, "key-size", 'u', &u);
        if (r < 0)
                return r;
        u = luks->active_keyslots;
        r = append_entry(reply, "active-keyslots", 'u', &u);
        if (r < 0)
                return r;

        b = false;
        if (header)
                obstacle = header; /* whatever the host */
        if (op->host_known) {
                char reason[512];
                op->in.luks_version = luks->version;
                op->in.cipher = luks->cipher_name;
                op->in.cipher_mode = luks->cipher_mode;
                op->in.hash = luks->hash;
                op->in.requested = VOLUME_MODE_AUTO;
                op->in.header_obstacle = header;
                op->in.sector_size = luks->sector_size;
                op->in.integrity = luks->integrity;
                op->in.requirements = luks->requirements;
                if (luks->rbd) {
                        /* QEMU's librbd opens an RBD image: no host device of
                         * it for a mapping or a shim (attach-rbd.c). */
                        op->in.dm_crypt_available = false;
                        op->in.dm_linear_available = false;
                        op->in.native_header = NATIVE_HEADER_VOLUME;
                }
                b = mode_select(&op->in, reason, sizeof reason) == VOLUME_MODE_NATIVE;
                obstacle = mode_native_obstacle(&op->in, obstacle_buf, sizeof obstacle_buf);
                if (b)
                        native_header = native_header_to_string(mode_native_header(&op->in));
        }
        if (luks->rbd && luks->version != 1) {
                b = false;
                native_header = "";
                obstacle = "LUKS2 on RBD opens only through librbd's encryption, which libvirt before 11.3 cannot "
                           "hot-plug";
        } else if (luks->rbd && rbd_source_has_namespace(op->call.res.source.path)) {
                b = false;
                native_header = "";
                obstacle = "RBD images in a namespace can be probed but not attached yet";
        } else if (luks->rbd && !op->call.manager->config.ceph_secret) {
                b = false;
                native_header = "";
                obstacle = "attaching RBD images needs CephSecret= in luksvolumed.conf";
        }
        r = append_entry(reply, "native-capable", 'b', &b);
        if (r < 0)
                return r;
        r = append_entry(reply, "attached", 'o', v ? v->path : "/");
        if (r < 0)
                return r;

        /* Since 0.2: more of the header, and why native mode is out. */
        r = append_entry(reply, "native-obstacle", 's', strempty(obstacle));
        if (r < 0)
                return r;
        /* Since 0.3: "volume", "shim", or "" when native is out. */
        r = append_entry(reply, "native-header", 's', native_header);
        if (r < 0)
                return r;
        t = luks->payload_offset;
        r = append_entry(reply, "payload-offset", 't', &t);
        if (r < 0)
                return r;
        u = luks->sector_size;
        r = append_entry(reply, "sector-size", 'u', &u);
        if (r < 0)
                return r;
        t = luks->device_size > luks->payload_offset ? luks->device_size - luks->payload_offset : 0;
        r = append_entry(reply, "size", 't', &t);
        if (r < 0)
                return r;
        if (luks->rbd) {
                r = append_rbd(luks, reply);
                if (r < 0)
                        return r;
        }
        return append_keyslots(luks, reply);
}

static void probe_done(Call *c) {
        ProbeOp *op = (ProbeOp *) c;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (op->r < 0) {
                probe_end(op);
                return;
        }

        r = sd_bus_message_new_method_return(c->message, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = op->host_only ? append_host(op, reply) : append_volume(op, reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot build the reply: %s", strerror(-r));
        else
                call_reply_message(c, reply);
        probe_end(op);
}

static void probe_authorized(Call *c, bool allowed);

static void probe_resolved(Call *c) {
        ProbeOp *op = (ProbeOp *) c;

        if (sd_bus_error_is_set(&c->res.source_error)) {
                sd_bus_error_copy(&op->error, &c->res.source_error);
                probe_end(op);
                return;
        }
        if (call_details_changed(c, NULL)) {
                if (call_authorize(c, ACTION_PROBE, call_details(c, NULL), probe_authorized) < 0)
                        probe_end(op);
                return;
        }
        if (call_submit(c, probe_job, probe_done) < 0)
                probe_end(op);
}

static void probe_authorized(Call *c, bool allowed) {
        ProbeOp *op = (ProbeOp *) c;

        if (!allowed) {
                probe_end(op);
                return;
        }
        if (op->host_only) {
                if (call_submit(c, probe_job, probe_done) < 0)
                        probe_end(op);
                return;
        }
        call_after_resolution(c, probe_resolved);
}

static void probe_ask(Call *c) {
        ProbeOp *op = (ProbeOp *) c;

        if (call_authorize(c, ACTION_PROBE, call_details(c, NULL), probe_authorized) < 0)
                probe_end(op);
}

int method_probe(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *source;
        ProbeOp *op;
        int r;

        r = sd_bus_message_read(message, "s", &source);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = probe_options_parse(message, error);
        if (r < 0)
                return lv_error_bad_message(error, r);
        if (!isempty(source)) {
                r = source_validate(source, error);
                if (r < 0)
                        return r;
        }

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, probe_op_free);

        if (isempty(source)) {
                /* Host facts: nothing to resolve; the rules see source "". */
                op->host_only = true;
                if (call_authorize(&op->call, ACTION_PROBE,
                                   call_details(&op->call, (const char *const[]){ "source", "", NULL }),
                                   probe_authorized) < 0)
                        probe_end(op);
                return 1;
        }

        /* Reading a header the caller could not read itself is an admin's
         * business (call.h). */
        op->call.res.unreadable_action = ACTION_PROBE_UNREADABLE;
        if (call_resolve_source(&op->call, source, probe_ask) < 0)
                probe_end(op);
        return 1;
}
