/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Volume.Rearm: a saved domain's volume gets back what its restore needs.
 *
 * A guest saved with its disks (save, managedsave, libvirt-guests at host
 * shutdown) is restored against the same secret UUID (native mode) or the
 * same /dev/mapper path (cryptsetup mode).  Ephemeral secrets die with
 * libvirtd and mappings with the host, so after a libvirtd restart or a
 * reboot the restore would fail; given the passphrase once more, Rearm
 * defines the secret again under its old UUID, or opens the mapping again
 * under its old name.  Nothing to do if they are still there.
 *
 * parse → authorize (the attach action: it hands a passphrase to libvirt
 * or the kernel just like an attach) → worker → reply. */

#include "errors.h"
#include "luks-shim.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "passphrase.h"
#include "util.h"
#include "volume-id.h"

typedef struct RearmOp {
        Call call;

        char *path;
        uint64_t generation;
        int passphrase_fd;
        Passphrase *passphrase;

        /* copies for the worker */
        VolumeMode mode;
        bool shim; /* native through a header shim */
        char *domain_uuid, *target, *source, *secret_uuid;
        bool read_only, discard;
        bool identity_known; /* the volume's source identity (scan.c, attach.c) */
        dev_t source_dev;
        ino_t source_ino;

        int r;
        bool already;         /* nothing was missing */
        bool cleartext_asked; /* cryptsetup mode: attach-cleartext granted too */
        bool guess_counted;   /* a guess reserved in Manager.key_guesses */
        sd_bus_error error;
} RearmOp;

static void rearm_op_free(Call *c) {
        RearmOp *op = (RearmOp *) c;

        if (op->passphrase_fd >= 0)
                close(op->passphrase_fd);
        manager_guess_end(c->manager, c->caller_uid, &op->guess_counted, false);
        passphrase_free(op->passphrase);
        free(op->path);
        free(op->domain_uuid);
        free(op->target);
        free(op->source);
        free(op->secret_uuid);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void rearm_end(RearmOp *op) {
        /* A wrong passphrase counts against the caller, as for Attach. */
        manager_guess_end(op->call.manager, op->call.caller_uid, &op->guess_counted,
                          sd_bus_error_has_name(&op->error, LV_ERROR_BAD_PASSPHRASE));
        if (sd_bus_error_is_set(&op->error))
                call_reply_error(&op->call, &op->error);
        else
                call_reply_empty(&op->call);
        op->passphrase = passphrase_free(op->passphrase);
        call_unref(&op->call);
}

/* Worker. */
static void rearm_job(Call *c) {
        RearmOp *op = (RearmOp *) c;
        Manager *m = c->manager;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        SourceInfo src = {};
        bool derive_counted = false;
        int r;

        /* Before the lock: a caller's slow pipe must never keep the orphan
         * cleanup (which takes ops_lock exclusively) waiting. */
        if (!op->passphrase) {
                r = read_passphrase_option(c, &op->passphrase_fd, "passphrase-fd", &op->passphrase, &op->error);
                if (r < 0) {
                        op->r = r;
                        return;
                }
        }

        pthread_rwlock_rdlock(&m->ops_lock);

        if (op->mode == VOLUME_MODE_NATIVE) {
                bool exists = false;

                r = virt_secret_exists(m->virt, op->secret_uuid, &exists, &op->error);
                if (r >= 0 && exists && op->shim) {
                        /* The secret alone opens nothing without its shim. */
                        _cleanup_free_ char *name = NULL;
                        LuksInfo info;
                        exists = luks_shim_name(op->domain_uuid, op->target, &name) >= 0 &&
                                 luks_shim_info(name, NULL, &info) >= 0;
                }
                if (r < 0 || exists) {
                        op->already = exists;
                        goto finish;
                }
        } else {
                _cleanup_free_ char *name = NULL, *backing = NULL;

                r = luks_mapping_name(op->domain_uuid, op->target, &name);
                if (r < 0) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the mapping: %s", strerror(-r));
                        goto finish;
                }
                if (luks_mapping_info(name, &backing, NULL) >= 0) {
                        op->already = true;
                        r = 0;
                        goto finish;
                }
        }

        /* What the secret (or mapping) will hold must open the volume — the
         * volume that was attached, not whatever its path names by now: the
         * open below is pinned to that identity (luks_source_open() checks
         * what it opened against src). */
        r = source_resolve(op->source, timeout_ms, &src, &op->error);
        if (r < 0)
                goto finish;
        if (!op->identity_known) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED,
                                      "Which file %s was attached from is not known; it cannot be re-armed safely.",
                                      op->path);
                goto finish;
        }
        if (src.dev != op->source_dev || src.ino != op->source_ino) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_BUSY,
                                      "'%s' no longer leads to the file %s was attached from; not re-armed.",
                                      op->source, op->path);
                goto finish;
        }
        r = luks_source_open_keys(&src, (op->mode == VOLUME_MODE_CRYPTSETUP || op->shim) && !op->read_only, timeout_ms,
                                  &source, &op->error);
        if (r < 0)
                goto finish;

        r = manager_derive_begin(m, c->caller_uid, &op->error);
        if (r < 0)
                goto finish;
        derive_counted = true;

        if (op->mode == VOLUME_MODE_NATIVE) {
                _cleanup_free_ char *usage = NULL;
                char uuid[VIR_UUID_STRING_BUFLEN];
                uint64_t cost;
                int slot;

                if (op->shim) {
                        /* A new one-time header (its passphrase is the
                         * secret's value now); the caller's is done with. */
                        _cleanup_free_ char *name = NULL;
                        LuksInfo info;
                        Passphrase *onetime = NULL;

                        r = luks_shim_name(op->domain_uuid, op->target, &name);
                        if (r < 0) {
                                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the shim: %s",
                                                      strerror(-r));
                                goto finish;
                        }
                        r = luks_source_info(source, &info, &op->error);
                        if (r >= 0)
                                r = luks_shim_rearm(source, &info, op->passphrase, name, op->read_only, timeout_ms,
                                                    &onetime, &op->error);
                        if (r < 0)
                                goto finish;
                        passphrase_free(op->passphrase);
                        op->passphrase = onetime;
                } else {
                        r = luks_source_verify(source, op->passphrase, timeout_ms, &slot, &cost, &op->error);
                        if (r < 0)
                                goto finish;
                }
                r = secret_usage_build(op->domain_uuid, op->target, &usage);
                if (r < 0) {
                        r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot name the secret: %s", strerror(-r));
                        goto finish;
                }
                r = virt_secret_create_with_uuid(m->virt, op->secret_uuid, usage, &op->passphrase, uuid, &op->error);
        } else {
                _cleanup_free_ char *name = NULL, *mapper = NULL;

                r = luks_mapping_name(op->domain_uuid, op->target, &name);
                if (r >= 0)
                        r = luks_activate(source, name, op->read_only, op->discard, timeout_ms, &op->passphrase,
                                          &mapper, &op->error);
        }

finish:
        if (derive_counted)
                manager_derive_end(m, c->caller_uid);
        pthread_rwlock_unlock(&m->ops_lock);
        op->passphrase = passphrase_free(op->passphrase);
        source_info_done(&src);
        op->r = r;
}

static void rearm_done(Call *c) {
        RearmOp *op = (RearmOp *) c;
        Volume *v = manager_find_volume(c->manager, op->path, op->generation);

        if (op->r >= 0 && v)
                log_info("%s re-armed for the restore of '%s'%s.", v->path, v->domain,
                         op->already ? " (nothing was missing)" : "");
        rearm_end(op);
}

static void rearm_authorized(Call *c, bool allowed) {
        RearmOp *op = (RearmOp *) c;
        Volume *v;

        if (!allowed) {
                op->passphrase = passphrase_free(op->passphrase);
                call_unref(c);
                return;
        }
        v = manager_find_volume(c->manager, op->path, op->generation);
        /* A mapping is a cleartext device on the host: its own action,
         * as for an attach. */
        if (v && v->mode == VOLUME_MODE_CRYPTSETUP && !op->cleartext_asked) {
                op->cleartext_asked = true;
                char **details = strv_copy(c->asked);
                if (call_authorize(c, ACTION_ATTACH_CLEARTEXT, details, rearm_authorized) < 0) {
                        op->passphrase = passphrase_free(op->passphrase);
                        call_unref(c);
                }
                return;
        }
        if (!v) {
                sd_bus_error_setf(&op->error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", op->path);
                rearm_end(op);
                return;
        }
        if (v->state != VOLUME_STATE_SAVED) {
                sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                  "%s is %s: only a volume of a saved domain is re-armed.", op->path,
                                  volume_state_to_string(v->state));
                rearm_end(op);
                return;
        }
        if (isempty(v->source) || (v->mode == VOLUME_MODE_NATIVE && isempty(v->secret_uuid))) {
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "The saved disk of %s does not say which %s to re-arm.",
                                  op->path, isempty(v->source) ? "source" : "secret");
                rearm_end(op);
                return;
        }

        op->mode = v->mode;
        op->shim = v->mode == VOLUME_MODE_NATIVE && v->shim_device;
        op->read_only = v->read_only;
        op->discard = v->discard;
        op->domain_uuid = strdup(v->domain_uuid);
        op->target = strdup(v->target);
        op->source = strdup(v->source);
        op->secret_uuid = v->secret_uuid ? strdup(v->secret_uuid) : NULL;
        op->identity_known = v->source_identity_known;
        op->source_dev = v->source_dev;
        op->source_ino = v->source_ino;
        if (!op->domain_uuid || !op->target || !op->source || (v->secret_uuid && !op->secret_uuid)) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                rearm_end(op);
                return;
        }
        if (manager_guess_begin(c->manager, c->caller_uid, &op->guess_counted, &op->error) < 0) {
                rearm_end(op);
                return;
        }
        if (call_submit(c, rearm_job, rearm_done) < 0)
                rearm_end(op);
}

int method_rearm(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Volume *v = userdata;
        Manager *m = v->manager;
        _cleanup_passphrase_ Passphrase *passphrase = NULL;
        int fd = -EBADF, r;
        RearmOp *op;

        r = read_passphrase_arg(message, "passphrase", &passphrase, error);
        if (r < 0)
                return r;
        r = rearm_options_parse(message, &fd, error);
        if (r < 0)
                return lv_error_bad_message(error, r);
        if ((passphrase != NULL) == (fd >= 0)) {
                if (fd >= 0)
                        close(fd);
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "Give the passphrase either as the argument or as passphrase-fd.");
        }

        op = calloc(1, sizeof *op);
        if (!op) {
                if (fd >= 0)
                        close(fd);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        call_init(&op->call, m, message, rearm_op_free);
        op->passphrase_fd = fd;
        op->passphrase = TAKE_PTR(passphrase);
        op->generation = v->generation;
        op->path = strdup(v->path);
        if (!op->path) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                rearm_end(op);
                return 1;
        }

        const char *const details[] = {
                "domain",      v->domain,
                "domain-uuid", v->domain_uuid,
                "source",      strempty(v->source),
                "target",      v->target,
                "mode",        volume_mode_to_string(v->mode),
                NULL,
        };
        if (call_authorize(&op->call, ACTION_ATTACH, call_details(&op->call, details), rearm_authorized) < 0) {
                op->passphrase = passphrase_free(op->passphrase);
                call_unref(&op->call);
        }
        return 1;
}
