/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Attach: parse → resolve (worker, window) → authorize → registry checks →
 * inspect (worker: passphrase-fd, header snapshot, mode, "in use
 * elsewhere?") → authorize cleartext (cryptsetup mode only) → act (worker:
 * verify the passphrase, secret or mapping, hot-plug, check what libvirt
 * made of it) → register → reply.
 *
 * Order matters for "nothing half-done": everything that can be checked
 * without side effects is checked first; the secret (or mapping) is created
 * only right before the hot-plug and removed if the hot-plug fails. */

#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <time.h>

#include "attach-request.h"
#include "disk-xml.h"
#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "header-policy.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "passphrase.h"
#include "plug-check.h"
#include "qemu-fds.h"
#include "qemu-lock.h"
#include "source-use.h"
#include "util.h"
#include "volume-id.h"

#include "attach-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

static void attach_op_free(Call *c) {
        AttachOp *op = (AttachOp *) c;
        Manager *m = c->manager;

        if (op->claimed)
                manager_release_source(m, op->claim_dev, op->claim_ino);
        manager_guess_end(m, c->caller_uid, &op->guess_counted, false);
        attach_options_done(&op->options);
        attach_request_free(op->request);
        passphrase_free(op->passphrase);
        luks_source_free(op->source);
        luks_shim_done(&op->shim);
        free(op->target);
        volume_free(op->volume);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static const char *requested_mode(const AttachOp *op) {
        return volume_mode_to_string(op->options.mode);
}

/* Details beyond domain, domain-uuid and source. */
#define ATTACH_EXTRA(op) \
        ((const char *const[]){ "target", strempty((op)->options.target), "mode", requested_mode(op), NULL })

/* The one way an attach ends (but for success): the chain's reference
 * goes, and with it — once jobs and held replies are over — the operation.
 * op->error, if set, is the answer (unless one went out already). */
static void attach_end(AttachOp *op) {
        Call *c = &op->call;

        /* A wrong passphrase counts against the caller, as for the key
         * methods: Attach tells as well whether a passphrase is right. */
        manager_guess_end(c->manager, c->caller_uid, &op->guess_counted,
                          sd_bus_error_has_name(&op->error, LV_ERROR_BAD_PASSPHRASE));

        if (sd_bus_error_is_set(&op->error)) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, c->res.domain_name ?: c->res.domain_given,
                                 c->res.source.path ?: c->res.source_given, op->options.target, requested_mode(op),
                                 "Attach of '%s' to '%s' refused: %s", c->res.source.path ?: c->res.source_given,
                                 c->res.domain_name ?: c->res.domain_given, op->error.message);
                call_reply_error(c, &op->error);
        }
        /* The passphrase is of no use any more. */
        op->passphrase = passphrase_free(op->passphrase);
        call_unref(c);
}

/* ---------------------------------------------------------------- act */

/* AttachTimestamp's clock: wall time, for people and logs to match. */
static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* -ESRCH (no error set): the XML says the domain is not running. */
static int pick_target(AttachOp *op, const char *xml, char **ret) {
        int r;

        r = domain_xml_pick_target_running(xml, op->options.target, op->options.bus, ret);
        if (r == -ESRCH)
                return r;
        if (r == -EEXIST)
                return sd_bus_error_setf(&op->error, LV_ERROR_TARGET_IN_USE,
                                         "Target '%s' is already in use in the domain.", op->options.target);
        if (r == -ENOSPC)
                return sd_bus_error_set(&op->error, LV_ERROR_TARGET_IN_USE, "No free target name left on that bus.");
        if (r == -ENOMEM)
                return sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
        if (r < 0)
                return sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s",
                                         strerror(-r));
        return 0;
}

/* The running domain, and op->target on it.  Whether it still runs, its
 * live XML says in the same parse as the target (its root's id): one call
 * to libvirtd fewer an Attach than a virDomainIsActive() would cost.  The
 * look-up is this thread's own, on its own connection: the plug below may
 * wait seconds for QEMU, and no other thread's calls may queue behind it
 * (virt.c). */
static int domain_and_target(AttachOp *op, virDomainPtr *ret_dom) {
        Call *c = &op->call;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        int r;

        r = virt_domain_lookup(c->manager->virt, c->res.domain_uuid, &dom, &op->error);
        if (r < 0)
                return r;
        r = virt_domain_live_xml(dom, &xml, &op->error);
        if (r < 0)
                return r;
        r = pick_target(op, xml, &op->target);
        if (r == -ESRCH)
                return sd_bus_error_setf(&op->error, LV_ERROR_DOMAIN_NOT_RUNNING, "Domain '%s' is not running.",
                                         c->res.domain_name);
        if (r < 0)
                return r;
        *ret_dom = TAKE_PTR(dom);
        return 0;
}

/* Worker. */
static void attach_act_job(Call *c) {
        AttachOp *op = (AttachOp *) c;
        Manager *m = c->manager;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_close_ int hold_fd = -EBADF;
        const char *domain_uuid = c->res.domain_uuid;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        bool locked = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        /* A failure that sets no error: call_done() still answers. */
        if (fault_trigger("attach:no-error")) {
                r = -EIO;
                goto finish;
        }

        if (op->mode == VOLUME_MODE_NATIVE && op->header != NATIVE_HEADER_SHIM &&
            header_refusal_iterations(&op->luks) <= m->config.precheck_iterations) {
                /* A header this cheap costs QEMU less to refuse a wrong
                 * passphrase than a check of ours would cost every attach:
                 * QEMU's own try is the check (virt_attach_disk() names its
                 * refusal Error.BadPassphrase, counted as any guess). */
                op->slot = -1;
        } else if (op->mode == VOLUME_MODE_NATIVE) {
                /* QEMU tries every key slot inside blockdev-add, in its main
                 * loop, with the guest stopped; past the precheck limit it
                 * must only ever be handed a passphrase known to open one. */
                r = manager_derive_begin(m, c->caller_uid, &op->error);
                if (r < 0)
                        goto finish;
                if (op->header == NATIVE_HEADER_SHIM) {
                        /* The one derivation: it checks the passphrase and
                         * yields the key the shim wraps; QEMU derives only
                         * the shim's minimum-cost slot. */
                        r = luks_shim_make(op->source, &op->luks, op->passphrase, timeout_ms, &op->shim, &op->error);
                        op->slot = op->shim.slot;
                        op->unlock_ms = op->shim.cost_ms;
                        /* The one-time passphrase stands in for it now. */
                        op->passphrase = passphrase_free(op->passphrase);
                } else
                        r = luks_source_verify(op->source, op->passphrase, timeout_ms, &op->slot, &op->unlock_ms,
                                               &op->error);
                manager_derive_end(m, c->caller_uid);
                call_trace(c, "derived");
                if (r < 0)
                        goto finish;
        }
        if (op->mode == VOLUME_MODE_NATIVE) {
                /* Nothing else may write the device while the guest does
                 * (a shim's device-mapper table claims it itself). */
                if (c->res.source.block && op->header != NATIVE_HEADER_SHIM) {
                        r = source_hold_exclusive(op->source, &hold_fd, &op->error);
                        if (r < 0)
                                goto finish;
                }
        }

        /* The lock first: the target is chosen from the live XML. */
        virt_domain_lock(m->virt, domain_uuid);
        locked = true;
        r = domain_and_target(op, &dom);
        if (r < 0)
                goto finish;
        const char *target = op->target;
        call_trace(c, "target");

        fault_point("attach", 1); /* everything checked, nothing created */

        r = volume_new(c->res.domain_name, domain_uuid, target, &op->volume);
        if (r < 0) {
                r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                goto finish;
        }
        Volume *v = op->volume;
        v->mode = op->mode;
        v->native_header = op->mode == VOLUME_MODE_NATIVE ? op->header : NATIVE_HEADER_AUTO;
        v->bus = strdup(op->options.bus);
        v->source = strdup(c->res.source.path);
        v->luks_version = op->luks.version;
        v->luks_uuid = strdup(op->luks.uuid);
        v->read_only = op->options.read_only;
        v->discard = op->options.discard;
        v->payload_offset = op->luks.payload_offset;
        v->attached_by_uid = c->caller_uid;
        v->source_dev = c->res.source.dev;
        v->source_ino = c->res.source.ino;
        v->source_identity_known = true;
        v->rbd = c->res.source.rbd;
        if (op->options.serial)
                v->serial = strdup(op->options.serial);
        if (!v->bus || !v->source || !v->luks_uuid || (op->options.serial && !v->serial)) {
                r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                goto finish;
        }

        /* The point of no return: nothing so far left a trace. */
        r = attach_request_commit(op->request, &op->error);
        if (r < 0)
                goto finish;

        if (op->mode == VOLUME_MODE_NATIVE)
                r = attach_native(op, dom, domain_uuid, target);
        else
                r = attach_cryptsetup(op, dom, domain_uuid, target);
        if (r >= 0) {
                if (hold_fd >= 0)
                        v->hold_fd = TAKE_FD(hold_fd);
                call_trace(c, "plugged+checked");
                /* What the guest sees: QEMU's LUKS driver and dm-crypt
                 * alike present the payload, whole 512-byte sectors of it
                 * (no query of QEMU: it costs as much as the checks). */
                v->size = volume_size_from_header(op->luks.device_size, op->luks.payload_offset);
                call_trace(c, "sized");
                v->attach_usec = realtime_usec();
                fault_point("attach", 4); /* plugged in, no object, no reply */
        }

finish:
        if (locked)
                virt_domain_unlock(m->virt, domain_uuid);
        pthread_rwlock_unlock(&m->ops_lock);
        /* On every path: the passphrase is gone once the job is over. */
        op->passphrase = passphrase_free(op->passphrase);
        if (r < 0 && !op->keep_volume)
                op->volume = volume_free(op->volume);
        op->r = r;
}

static void attach_act_done(Call *c) {
        AttachOp *op = (AttachOp *) c;
        Manager *m = c->manager;
        Volume *v;

        if (op->r < 0) {
                /* A disk the guest must not keep and could not be made to
                 * give back: its object, for all to see (attach_native()). */
                if (op->keep_volume && op->volume) {
                        v = TAKE_PTR(op->volume);
                        if (manager_add_volume(m, v) >= 0)
                                (void) manager_volume_gone_since(m, v, op->event_seq);
                }
                attach_end(op);
                return;
        }

        v = TAKE_PTR(op->volume);
        (void) manager_add_volume(m, v);
        /* The guest stopped while we were plugging the disk in: the event
         * found no volume to clean up then; it does now. */
        (void) manager_volume_gone_since(m, v, op->event_seq);
        if (v->mode == VOLUME_MODE_NATIVE && op->slot < 0)
                log_volume_event(VOLUME_EVENT_ATTACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode),
                                 "Attached '%s' to '%s' as %s (native mode, passphrase checked by QEMU: its header "
                                 "costs little to try), object %s.",
                                 v->source, v->domain, v->target, v->path);
        else if (v->mode == VOLUME_MODE_NATIVE)
                log_volume_event(VOLUME_EVENT_ATTACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode),
                                 "Attached '%s' to '%s' as %s (native mode, key slot %d: QEMU spent about %" PRIu64
                                 " ms of the guest's time unlocking it), object %s.",
                                 v->source, v->domain, v->target, op->slot, op->unlock_ms, v->path);
        else
                log_volume_event(VOLUME_EVENT_ATTACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode), "Attached '%s' to '%s' as %s (%s mode), object %s.",
                                 v->source, v->domain, v->target, volume_mode_to_string(v->mode), v->path);
        (void) sd_bus_reply_method_return(c->message, "o", v->path);
        c->replied = true;
        attach_end(op);
}

/* ------------------------------------------------------------ inspect */

static void attach_cleartext_authorized(Call *c, bool allowed) {
        AttachOp *op = (AttachOp *) c;

        if (!allowed || attach_request_proceed(op->request, &op->error) < 0 ||
            call_submit(c, attach_act_job, attach_act_done) < 0)
                attach_end(op);
}

/* Worker.  Reads what the caller handed over and what the source is; no
 * side effects. */
static void attach_inspect_job(Call *c) {
        AttachOp *op = (AttachOp *) c;
        Manager *m = c->manager;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        char reason[512], obstacle[384];
        ModeInput in;
        int r;

        if (!op->passphrase) {
                r = read_passphrase_option(c, &op->options.passphrase_fd, "passphrase-fd", &op->passphrase, &op->error);
                if (r < 0)
                        goto finish;
        }

        if (c->res.source.rbd) {
                r = attach_inspect_rbd(op);
                goto finish;
        }

        /* No second writer: whoever else uses the source, it is theirs. */
        r = source_check_in_use(m->virt, m->disks, &c->res.source, timeout_ms, &op->error);
        call_trace(c, "in-use-checked");
        if (r < 0)
                goto finish;

        /* Read-write, so a cryptsetup-mode loop device can write through
         * the very descriptor that was checked. */
        r = luks_source_open_keys(&c->res.source, !op->options.read_only, timeout_ms, &op->source, &op->error);
        if (r < 0)
                goto finish;
        r = luks_source_info(op->source, &op->luks, &op->error);
        if (r < 0)
                goto finish;
        /* Another QEMU with it open (a qemu:///session guest, qemu-io, a
         * guest of another libvirt) says so by its locks; in native mode
         * QEMU would find them only inside blockdev-add, after the secret. */
        call_trace(c, "header-read");
        r = qemu_lock_check(luks_source_fd(op->source), false, !op->options.read_only, c->res.source.path, timeout_ms,
                            &op->error);
        call_trace(c, "lock-checked");
        if (r < 0)
                goto finish;

        r = manager_mode_input(m, &in, NULL, &op->error);
        if (r < 0)
                goto finish;
        in.luks_version = op->luks.version;
        in.cipher = op->luks.cipher_name;
        in.cipher_mode = op->luks.cipher_mode;
        in.hash = op->luks.hash;
        in.requested = op->options.mode;
        in.passphrase_not_text = !passphrase_qemu_compatible(op->passphrase);
        in.discard = op->options.discard;
        in.header_obstacle = header_obstacle(&op->luks, luks_kdf_limits(), obstacle, sizeof obstacle);
        in.sector_size = op->luks.sector_size;
        in.integrity = op->luks.integrity;
        in.requirements = op->luks.requirements;
        in.native_header = op->options.native_header;
        op->mode = mode_select(&in, reason, sizeof reason);
        op->header = mode_native_header(&in);
        if (op->mode < 0)
                r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED, "%s.", reason);

finish:
        if (r < 0)
                op->passphrase = passphrase_free(op->passphrase);
        op->r = r;
}

static void attach_inspect_done(Call *c) {
        AttachOp *op = (AttachOp *) c;

        if (op->r < 0) {
                attach_end(op);
                return;
        }

        /* A cleartext device on the host is its own decision: an admin may
         * forbid it outright and still allow native attaches. */
        if (op->mode == VOLUME_MODE_CRYPTSETUP) {
                if (call_authorize(c, ACTION_ATTACH_CLEARTEXT, call_details(c, ATTACH_EXTRA(op)),
                                   attach_cleartext_authorized) < 0)
                        attach_end(op);
                return;
        }
        /* Unless the caller cancelled meanwhile. */
        if (attach_request_proceed(op->request, &op->error) < 0 || call_submit(c, attach_act_job, attach_act_done) < 0)
                attach_end(op);
}

/* ----------------------------------------------------------- authorize */

static void attach_authorized(Call *c, bool allowed);

static void attach_resolved(Call *c) {
        AttachOp *op = (AttachOp *) c;
        Manager *m = c->manager;
        const Resolution *res = &c->res;
        int r;

        if (sd_bus_error_is_set(&res->domain_error) || sd_bus_error_is_set(&res->source_error)) {
                sd_bus_error_copy(&op->error,
                                  sd_bus_error_is_set(&res->domain_error) ? &res->domain_error : &res->source_error);
                attach_end(op);
                return;
        }

        /* polkit saw what the caller wrote (resolution was slow): ask again
         * about what it resolved to. */
        if (call_details_changed(c, ATTACH_EXTRA(op))) {
                if (call_authorize(c, ACTION_ATTACH, call_details(c, ATTACH_EXTRA(op)), attach_authorized) < 0)
                        attach_end(op);
                return;
        }

        /* Checked after authorization: the answers reveal state. */
        if (manager_find_volume_by_source(m, res->source.dev, res->source.ino) ||
            manager_source_claimed(m, res->source.dev, res->source.ino))
                sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED, "'%s' is already attached by this service.",
                                  res->source.path);
        else if (m->n_volumes + m->n_claims >= m->config.max_volumes)
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "The limit of %u attached volumes is reached.",
                                  m->config.max_volumes);
        else if ((r = manager_claim_source(m, res->source.dev, res->source.ino)) < 0)
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot record the attach: %s", strerror(-r));
        if (sd_bus_error_is_set(&op->error)) {
                attach_end(op);
                return;
        }
        op->claimed = true;
        op->claim_dev = res->source.dev;
        op->claim_ino = res->source.ino;
        op->event_seq = m->event_seq;

        if (manager_guess_begin(m, c->caller_uid, &op->guess_counted, &op->error) < 0) {
                attach_end(op);
                return;
        }

        if (call_submit(c, attach_inspect_job, attach_inspect_done) < 0)
                attach_end(op);
}

static void attach_authorized(Call *c, bool allowed) {
        AttachOp *op = (AttachOp *) c;

        if (!allowed) {
                attach_end(op);
                return;
        }
        call_after_resolution(c, attach_resolved);
}

static void attach_ask(Call *c) {
        AttachOp *op = (AttachOp *) c;

        if (call_authorize(c, ACTION_ATTACH, call_details(c, ATTACH_EXTRA(op)), attach_authorized) < 0)
                attach_end(op);
}

/* --------------------------------------------------------------- parse */

int method_attach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_passphrase_ Passphrase *passphrase = NULL;
        _cleanup_(attach_options_done) AttachOptions options = { .passphrase_fd = -1 };
        const char *domain, *source;
        AttachOp *op;
        int r;

        r = sd_bus_message_read(message, "ss", &domain, &source);
        if (r < 0)
                return lv_error_bad_message(error, r);

        r = read_passphrase_arg(message, "passphrase", &passphrase, error);
        if (r < 0)
                return r;

        r = attach_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);

        if (passphrase && options.passphrase_fd >= 0)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The passphrase argument must be empty when passphrase-fd is given.");
        if (!passphrase && options.passphrase_fd < 0)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "No passphrase given (neither the argument nor passphrase-fd).");

        r = validate_domain(domain, error);
        if (r < 0)
                return r;
        r = source_validate(source, error);
        if (r < 0)
                return r;

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, attach_op_free);
        op->shim = LUKS_SHIM_NULL;
        op->options = options;
        options = (AttachOptions){ .passphrase_fd = -1 };
        op->passphrase = TAKE_PTR(passphrase);
        op->call.res.source_given = strdup(source);
        op->call.res.domain_given = strdup(domain);
        op->call.res.source_timeout_ms = m->config.source_timeout_sec * 1000U;
        if (!op->call.res.source_given || !op->call.res.domain_given) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                attach_end(op);
                return 1;
        }
        if (attach_request_new(m, message, op->options.request_id, &op->request, &op->error) < 0) {
                attach_end(op);
                return 1;
        }

        if (call_resolve(&op->call, attach_ask) < 0)
                attach_end(op);
        return 1;
}
