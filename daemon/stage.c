/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* StageIncoming (stage.h): parse → resolve the source (worker, window) →
 * authorize (stage-incoming, the details of attach) → registry checks and
 * the caller's guess allowance → the entry registered, so that the orphan
 * cleanup keeps its secret and device from now on → job (stage-job.c:
 * passphrase-fd, the header, the source's mode possible here, the
 * passphrase checked under the derive caps as Attach does, then the
 * device and the secret made) → expiry armed → reply (the device's path).
 *
 * Cryptsetup-mode and header-shim volumes (since 0.3): this host makes its
 * own device for the disk, named as its Attach would name it (with its
 * DeviceTag=, another name than the source's when several hosts share a
 * kernel); the migrating client puts that path into the destination's
 * domain XML (VIR_MIGRATE_PARAM_DEST_XML).  A shim's secret here holds
 * this host's own one-time passphrase under the source's secret UUID.
 *
 * RBD images (issue 18) stage as files do, with Attach's RBD checks
 * (attach-rbd.h) except the one for other Ceph clients: the source host's
 * QEMU has the image open, as it must.  The migrated XML names the source
 * host's libvirt 'ceph' secret by UUID; this host must hold a ceph secret
 * (CephSecret=), and it must be the same UUID, as for every client of
 * RBD live migration (Nova's rbd_secret_uuid): checked when the option
 * 'ceph-secret' is given (luksvolumectl migrate does not know it and does
 * not give it; libvirt then refuses a mismatch when the guest arrives). */

#include <pthread.h>
#include <stdio.h>

#include "attach-rbd.h"
#include "errors.h"
#include "luks-shim.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "passphrase.h"
#include "stage-internal.h"
#include "stage.h"
#include "util.h"
#include "volume-id.h"

/* The list is changed on the event loop only, and read by the orphan
 * cleanup on a worker (stage_keep_secrets()). */
static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;

static Staged *staged_free(Staged *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->timer);
        free(s->target);
        free(s->usage);
        free(s->source);
        free(s->device);
        free(s);
        return NULL;
}

static void staged_unlink(Manager *m, Staged *s) {
        pthread_mutex_lock(&stage_lock);
        for (Staged **p = &m->staged; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        m->n_staged--;
                        break;
                }
        pthread_mutex_unlock(&stage_lock);
        staged_free(s);
        manager_arm_idle(m);
}

static Staged *staged_find(Manager *m, const char *domain_uuid, const char *target, const char *secret_uuid) {
        for (Staged *s = m->staged; s; s = s->next)
                if ((streq(s->domain_uuid, domain_uuid) && streq(s->target, target)) ||
                    (secret_uuid && streq(s->secret_uuid, secret_uuid)))
                        return s;
        return NULL;
}

/* What an entry holds, for the journal: its secret, else its mapping. */
static const char *staged_what(const Staged *s) {
        return s->secret_uuid[0] ? s->secret_uuid : s->device ? s->device : "?";
}

bool stage_keep_secrets(Manager *m, Volume **list) {
        bool ok = true;

        pthread_mutex_lock(&stage_lock);
        for (Staged *s = m->staged; s; s = s->next) {
                Volume *v = NULL;
                char **device_slot;

                if (volume_new("", s->domain_uuid, s->target, &v) < 0 ||
                    (s->secret_uuid[0] && !(v->secret_uuid = strdup(s->secret_uuid)))) {
                        volume_free(v);
                        ok = false;
                        break;
                }
                /* Its device too (made or being made): no orphan either. */
                device_slot = s->shim ? &v->shim_device : &v->mapper_device;
                if (s->device && asprintf(device_slot, "/dev/mapper/%s", s->device) < 0) {
                        *device_slot = NULL;
                        volume_free(v);
                        ok = false;
                        break;
                }
                v->next = *list;
                *list = v;
        }
        pthread_mutex_unlock(&stage_lock);
        return ok;
}

/* --------------------------------------------------------- releasing */

typedef struct ReleaseJob {
        Manager *manager;
        Staged *staged;
        char *domain_uuid, *secret_uuid, *usage, *device;
        bool shim;
        const char *why;
        bool kept; /* its domain runs here: the secret is the guest's */
        sd_bus_error error;
        int r;
} ReleaseJob;

static void release_job(void *userdata) {
        ReleaseJob *j = userdata;
        Manager *m = j->manager;
        _cleanup_(sd_bus_error_free) sd_bus_error lookup_error = SD_BUS_ERROR_NULL;
        virDomainPtr dom = NULL;

        pthread_rwlock_rdlock(&m->ops_lock);
        /* The timeout may pass while the domain is arriving or has just
         * arrived (the adopting scan not finished yet): its QEMU names
         * this secret, and the scan adopts it; it must not go then. */
        if (virt_domain_lookup_running(m->virt, j->domain_uuid, &dom, &lookup_error) >= 0) {
                virDomainFree(dom);
                j->kept = true;
                j->r = 0;
        } else {
                sd_bus_error device_error = SD_BUS_ERROR_NULL;
                int k = 0;

                j->r = j->secret_uuid[0] ? virt_secret_undefine_ours(m->virt, j->secret_uuid, j->usage, &j->error) : 0;
                /* The secret first: nothing can open the shim with it
                 * then.  No QEMU has the device open: none runs the domain
                 * here. */
                if (j->device)
                        k = j->shim ? luks_shim_remove(j->device, &device_error)
                                    : luks_deactivate(j->device, &device_error);
                if (k < 0 && j->r >= 0) {
                        j->r = k;
                        (void) sd_bus_error_copy(&j->error, &device_error);
                }
                sd_bus_error_free(&device_error);
        }
        pthread_rwlock_unlock(&m->ops_lock);
}

static void release_done(void *userdata) {
        ReleaseJob *j = userdata;
        Manager *m = j->manager;
        Staged *s = j->staged;

        if (j->kept) {
                log_info("Staged %s: domain %s runs here; left to its volume.", staged_what(s), j->domain_uuid);
                (void) manager_rescan(m, false);
        } else if (j->r < 0)
                /* Left defined: the next orphan cleanup takes it (its
                 * usage or name is ours and nothing names it). */
                log_warning("Cannot release staged %s (%s): %s", staged_what(s), j->why, j->error.message);
        else
                log_info("Staged %s for domain %s released (%s).", staged_what(s), j->domain_uuid, j->why);
        staged_unlink(m, s);

        free(j->domain_uuid);
        free(j->secret_uuid);
        free(j->usage);
        free(j->device);
        sd_bus_error_free(&j->error);
        free(j);
}

static void staged_release(Staged *s, const char *why) {
        Manager *m = s->manager;
        ReleaseJob *j;

        if (s->releasing)
                return;
        s->timer = sd_event_source_disable_unref(s->timer);
        j = calloc(1, sizeof *j);
        if (j) {
                *j = (ReleaseJob){
                        .manager = m,
                        .staged = s,
                        .domain_uuid = strdup(s->domain_uuid),
                        .secret_uuid = strdup(s->secret_uuid),
                        .usage = strdup(s->usage),
                        .device = s->device ? strdup(s->device) : NULL,
                        .shim = s->shim,
                        .why = why,
                };
                if (j->domain_uuid && j->secret_uuid && j->usage && (j->device || !s->device) &&
                    worker_submit(m->worker, release_job, release_done, j) >= 0) {
                        s->releasing = true;
                        return;
                }
                free(j->domain_uuid);
                free(j->secret_uuid);
                free(j->usage);
                free(j->device);
                free(j);
        }
        /* No job: the entry goes, its secret or device is an orphan for
         * the next cleanup. */
        log_warning("Cannot release staged %s now; the orphan cleanup will.", staged_what(s));
        staged_unlink(m, s);
}

static int on_expired(sd_event_source *source, uint64_t usec, void *userdata) {
        Staged *s = userdata;

        log_notice("Staged %s for domain %s (%s): no domain arrived in time.", staged_what(s), s->domain_uuid,
                   s->target);
        staged_release(s, "expired");
        return 0;
}

/* ---------------------------------------------------------- lifecycle */

void stage_after_scan(Manager *m) {
        for (Staged *s = m->staged, *n; s; s = n) {
                n = s->next;
                if (!s->defined || s->releasing)
                        continue;
                for (Volume *v = m->volumes; v; v = v->next)
                        if (streq(v->domain_uuid, s->domain_uuid) && streq(v->target, s->target) &&
                            (s->secret_uuid[0] ? streq_ptr(v->secret_uuid, s->secret_uuid)
                                               : v->mode == VOLUME_MODE_CRYPTSETUP)) {
                                log_info("Staged %s adopted by volume %s of domain '%s'.", staged_what(s), v->path,
                                         v->domain);
                                staged_unlink(m, s);
                                break;
                        }
        }
}

void stage_domain_arrived(Manager *m, const char *domain_uuid) {
        for (Staged *s = m->staged; s; s = s->next)
                if (streq(s->domain_uuid, domain_uuid))
                        s->arrived = true;
}

void stage_domain_gone(Manager *m, const char *domain_uuid) {
        for (Staged *s = m->staged, *n; s; s = n) {
                n = s->next;
                if (s->defined && s->arrived && streq(s->domain_uuid, domain_uuid)) {
                        log_notice("Domain %s stopped before its staged %s was adopted (failed migration?).",
                                   domain_uuid, staged_what(s));
                        staged_release(s, "its domain stopped");
                }
        }
}

void stage_free_all(Manager *m) {
        pthread_mutex_lock(&stage_lock);
        Staged *list = TAKE_PTR(m->staged);
        m->n_staged = 0;
        pthread_mutex_unlock(&stage_lock);
        for (Staged *s = list, *n; s; s = n) {
                n = s->next;
                staged_free(s);
        }
}

/* ----------------------------------------------------------- the call */

/* Details beyond source: attach's, the domain named by its UUID (it does
 * not exist here yet). */
#define STAGE_EXTRA(op)                                                                                  \
        ((const char *const[]){ "domain", (op)->domain_uuid, "domain-uuid", (op)->domain_uuid, "target", \
                                (op)->options.target, "mode", volume_mode_to_string((op)->options.mode), NULL })

static void stage_op_free(Call *c) {
        StageOp *op = (StageOp *) c;

        manager_guess_end(c->manager, c->caller_uid, &op->guess_counted, false);
        stage_options_done(&op->options);
        free(op->usage);
        passphrase_free(op->passphrase);
        luks_shim_done(&op->shim);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void stage_end(StageOp *op) {
        Call *c = &op->call;

        manager_guess_end(c->manager, c->caller_uid, &op->guess_counted,
                          sd_bus_error_has_name(&op->error, LV_ERROR_BAD_PASSPHRASE));
        if (sd_bus_error_is_set(&op->error)) {
                log_notice("StageIncoming of '%s' for domain %s refused: %s", c->res.source.path ?: c->res.source_given,
                           op->domain_uuid, op->error.message);
                call_reply_error(c, &op->error);
        }
        op->passphrase = passphrase_free(op->passphrase);
        call_unref(c);
}

/* a{sv}: "device", the path the migrated disk must name here, if a device
 * was made (its name carries this host's DeviceTag=). */
static int stage_reply(sd_bus_message *call, const Staged *s) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0 && s->device) {
                if (asprintf(&path, "/dev/mapper/%s", s->device) < 0)
                        return -ENOMEM;
                r = sd_bus_message_append(reply, "{sv}", "device", "s", path);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        return r;
}

static void stage_done(Call *c) {
        StageOp *op = (StageOp *) c;
        Manager *m = c->manager;
        Staged *s = TAKE_PTR(op->staged);
        uint32_t timeout_sec = op->options.timeout_sec ?: m->config.stage_timeout_sec;
        int r;

        if (op->r < 0) {
                /* The job removed what it made. */
                staged_unlink(m, s);
                stage_end(op);
                return;
        }

        s->defined = true;
        r = sd_event_add_time_relative(m->event, &s->timer, CLOCK_MONOTONIC, (uint64_t) timeout_sec * 1000000ULL,
                                       1000ULL, on_expired, s);
        if (r < 0) {
                /* Without its expiry the secret would stay for good. */
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot arm the staging timeout: %s", strerror(-r));
                staged_release(s, "the staging failed");
                stage_end(op);
                return;
        }
        log_info("Staged %s for domain %s (%s, '%s', key slot %d) for %" PRIu32 " s.", staged_what(s), s->domain_uuid,
                 s->target, s->source, op->slot, timeout_sec);
        r = stage_reply(c->message, s);
        if (r < 0)
                log_warning("Cannot answer StageIncoming: %s", strerror(-r));
        c->replied = true;
        stage_end(op);
}

static void stage_authorized(Call *c, bool allowed);

static void stage_ask(Call *c) {
        StageOp *op = (StageOp *) c;

        if (call_authorize(c, ACTION_STAGE_INCOMING, call_details(c, STAGE_EXTRA(op)), stage_authorized) < 0)
                stage_end(op);
}

static void stage_resolved(Call *c) {
        StageOp *op = (StageOp *) c;
        Manager *m = c->manager;
        _cleanup_free_ char *path = NULL;
        Staged *s;

        if (sd_bus_error_is_set(&c->res.source_error)) {
                sd_bus_error_copy(&op->error, &c->res.source_error);
                stage_end(op);
                return;
        }
        if (call_details_changed(c, STAGE_EXTRA(op))) {
                stage_ask(c);
                return;
        }

        if (c->res.source.rbd && rbd_native_preflight(m, c->res.source.path, &op->error) < 0) {
                stage_end(op);
                return;
        }

        /* Checked after authorization: the answers reveal state. */
        if (volume_path_build(op->domain_uuid, op->options.target, &path) < 0) {
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                stage_end(op);
                return;
        }
        if (manager_find_volume_by_path(m, path) ||
            manager_find_volume_by_source(m, c->res.source.dev, c->res.source.ino))
                sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED,
                                  "That volume (or '%s') is attached by this service here already.",
                                  c->res.source.path);
        else if (staged_find(m, op->domain_uuid, op->options.target, op->options.secret_uuid))
                sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED,
                                  "That disk or secret UUID is staged here already.");
        else if (c->res.source.rbd &&
                 (op->options.mode != VOLUME_MODE_NATIVE || op->options.native_header != NATIVE_HEADER_VOLUME))
                sd_bus_error_set(&op->error, LV_ERROR_NOT_SUPPORTED,
                                 "An RBD image stages in native mode with its own header only.");
        else if (m->n_volumes + m->n_claims + m->n_staged >= m->config.max_volumes)
                sd_bus_error_setf(&op->error, LV_ERROR_BUSY, "The limit of %u attached volumes is reached.",
                                  m->config.max_volumes);
        if (sd_bus_error_is_set(&op->error) ||
            manager_guess_begin(m, c->caller_uid, &op->guess_counted, &op->error) < 0) {
                stage_end(op);
                return;
        }

        s = calloc(1, sizeof *s);
        if (s) {
                s->manager = m;
                snprintf(s->domain_uuid, sizeof s->domain_uuid, "%s", op->domain_uuid);
                snprintf(s->secret_uuid, sizeof s->secret_uuid, "%s", strempty(op->options.secret_uuid));
                s->target = strdup(op->options.target);
                s->usage = strdup(op->usage);
                s->source = strdup(c->res.source.path);
                /* Named here, so that the orphan cleanup keeps it from
                 * before it exists. */
                s->shim = op->options.mode == VOLUME_MODE_NATIVE && op->options.native_header == NATIVE_HEADER_SHIM;
                if (op->options.mode == VOLUME_MODE_CRYPTSETUP)
                        (void) luks_mapping_name(op->domain_uuid, op->options.target, &s->device);
                else if (s->shim)
                        (void) luks_shim_name(op->domain_uuid, op->options.target, &s->device);
        }
        if (!s || !s->target || !s->usage || !s->source ||
            (!s->device && (s->shim || op->options.mode == VOLUME_MODE_CRYPTSETUP))) {
                staged_free(s);
                sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                stage_end(op);
                return;
        }
        /* Registered before the secret exists: an orphan cleanup from now
         * on keeps it (stage_keep_secrets()). */
        pthread_mutex_lock(&stage_lock);
        s->next = m->staged;
        m->staged = s;
        m->n_staged++;
        pthread_mutex_unlock(&stage_lock);
        op->staged = s;

        if (call_submit(c, stage_job, stage_done) < 0) {
                staged_unlink(m, TAKE_PTR(op->staged));
                stage_end(op);
        }
}

static void stage_authorized(Call *c, bool allowed) {
        StageOp *op = (StageOp *) c;

        if (!allowed) {
                stage_end(op);
                return;
        }
        call_after_resolution(c, stage_resolved);
}

int method_stage_incoming(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_passphrase_ Passphrase *passphrase = NULL;
        _cleanup_(stage_options_done) StageOptions options = { .passphrase_fd = -1 };
        _cleanup_free_ char *usage = NULL;
        const char *domain_uuid, *source;
        StageOp *op;
        int r;

        r = sd_bus_message_read(message, "ss", &domain_uuid, &source);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = read_passphrase_arg(message, "passphrase", &passphrase, error);
        if (r < 0)
                return r;
        r = stage_options_parse(message, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);

        if ((passphrase != NULL) == (options.passphrase_fd >= 0))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "Give the passphrase either as the argument or as passphrase-fd (and the "
                                        "argument empty).");
        if (!uuid_valid(domain_uuid))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "The domain must be given by its UUID (lower case): it does not exist here "
                                        "yet.");
        r = secret_usage_build(domain_uuid, options.target, &usage);
        if (r < 0)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        /* The disk's secret is found by UUID; the usage must be the one
         * the source's service gave it all the same, or the volume object
         * here would not recognise it as ours. */
        if (options.usage && !streq(options.usage, usage))
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                         "Option 'usage' must be '%s' for that domain and target.", usage);
        r = source_validate(source, error);
        if (r < 0)
                return r;

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, stage_op_free);
        op->shim = LUKS_SHIM_NULL;
        snprintf(op->domain_uuid, sizeof op->domain_uuid, "%s", domain_uuid);
        op->options = options;
        options = (StageOptions){ .passphrase_fd = -1 };
        op->usage = TAKE_PTR(usage);
        op->passphrase = TAKE_PTR(passphrase);
        if (call_resolve_source(&op->call, source, stage_ask) < 0)
                stage_end(op);
        return 1;
}
