/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* StageIncoming (stage.h): parse → resolve the source (worker, window) →
 * authorize (stage-incoming, the details of attach) → registry checks and
 * the caller's guess allowance → the entry registered, so that the orphan
 * cleanup keeps its secret from now on → job (worker: passphrase-fd, the
 * header, native mode possible, the passphrase verified under the derive
 * caps as Attach does, the secret defined) → expiry armed → reply.
 *
 * Native mode only: cryptsetup mode would need the mapping the migrated
 * XML names prepared here (a device-mapper device), which is not done.
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
#include "disk-xml.h"
#include "errors.h"
#include "header-policy.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "passphrase.h"
#include "stage.h"
#include "util.h"
#include "volume-id.h"

struct Staged {
        Manager *manager;
        Staged *next;
        char domain_uuid[VIR_UUID_STRING_BUFLEN];
        char secret_uuid[VIR_UUID_STRING_BUFLEN];
        char *target;
        char *usage;
        char *source;
        bool defined;   /* the secret exists (the staging job succeeded) */
        bool arrived;   /* its domain arrived here as an incoming migration */
        bool releasing; /* a release job is at work */
        sd_event_source *timer;
};

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
                    streq(s->secret_uuid, secret_uuid))
                        return s;
        return NULL;
}

bool stage_keep_secrets(Manager *m, Volume **list) {
        bool ok = true;

        pthread_mutex_lock(&stage_lock);
        for (Staged *s = m->staged; s; s = s->next) {
                Volume *v = NULL;

                if (volume_new("", s->domain_uuid, s->target, &v) < 0 || !(v->secret_uuid = strdup(s->secret_uuid))) {
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
        char *domain_uuid, *secret_uuid, *usage;
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
        } else
                j->r = virt_secret_undefine_ours(m->virt, j->secret_uuid, j->usage, &j->error);
        pthread_rwlock_unlock(&m->ops_lock);
}

static void release_done(void *userdata) {
        ReleaseJob *j = userdata;
        Manager *m = j->manager;
        Staged *s = j->staged;

        if (j->kept) {
                log_info("Staged secret %s: domain %s runs here; left to its volume.", j->secret_uuid, j->domain_uuid);
                (void) manager_rescan(m, false);
        } else if (j->r < 0)
                /* Left defined: the next orphan cleanup takes it (its
                 * usage is ours and nothing names it). */
                log_warning("Cannot undefine staged secret %s (%s): %s", j->secret_uuid, j->why, j->error.message);
        else
                log_info("Staged secret %s for domain %s undefined (%s).", j->secret_uuid, j->domain_uuid, j->why);
        staged_unlink(m, s);

        free(j->domain_uuid);
        free(j->secret_uuid);
        free(j->usage);
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
                        .why = why,
                };
                if (j->domain_uuid && j->secret_uuid && j->usage &&
                    worker_submit(m->worker, release_job, release_done, j) >= 0) {
                        s->releasing = true;
                        return;
                }
                free(j->domain_uuid);
                free(j->secret_uuid);
                free(j->usage);
                free(j);
        }
        /* No job: the entry goes, its secret is an orphan for the next
         * cleanup. */
        log_warning("Cannot undefine staged secret %s now; the orphan cleanup will.", s->secret_uuid);
        staged_unlink(m, s);
}

static int on_expired(sd_event_source *source, uint64_t usec, void *userdata) {
        Staged *s = userdata;

        log_notice("Staged secret %s for domain %s (%s): no domain arrived in time.", s->secret_uuid, s->domain_uuid,
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
                        if (streq(v->domain_uuid, s->domain_uuid) && streq_ptr(v->secret_uuid, s->secret_uuid)) {
                                log_info("Staged secret %s adopted by volume %s of domain '%s'.", s->secret_uuid,
                                         v->path, v->domain);
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
                        log_notice("Domain %s stopped before its staged secret %s was adopted (failed migration?).",
                                   domain_uuid, s->secret_uuid);
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

typedef struct StageOp {
        Call call;

        char domain_uuid[VIR_UUID_STRING_BUFLEN];
        StageOptions options;
        char *usage;
        Passphrase *passphrase;
        bool guess_counted;
        Staged *staged; /* registered, not yet defined */

        int slot;
        sd_bus_error error;
        int r;
} StageOp;

/* Details beyond source: attach's, the domain named by its UUID (it does
 * not exist here yet). */
#define STAGE_EXTRA(op)                                                                                  \
        ((const char *const[]){ "domain", (op)->domain_uuid, "domain-uuid", (op)->domain_uuid, "target", \
                                (op)->options.target, "mode", "native", NULL })

static void stage_op_free(Call *c) {
        StageOp *op = (StageOp *) c;

        manager_guess_end(c->manager, c->caller_uid, &op->guess_counted, false);
        stage_options_done(&op->options);
        free(op->usage);
        passphrase_free(op->passphrase);
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

/* Worker. */
static void stage_job(Call *c) {
        StageOp *op = (StageOp *) c;
        Manager *m = c->manager;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        char reason[512], obstacle[384], uuid[VIR_UUID_STRING_BUFLEN];
        bool exists = false;
        uint64_t cost;
        LuksInfo luks;
        ModeInput in;
        int r = 0;

        if (!op->passphrase)
                r = read_passphrase_option(c, &op->options.passphrase_fd, "passphrase-fd", &op->passphrase, &op->error);
        if (r < 0)
                goto finish;

        /* Read-only, and no check for QEMU's locks: the guest's QEMU on
         * the source host has the volume open, as it must. */
        r = luks_source_open_keys(&c->res.source, false, timeout_ms, &source, &op->error);
        if (r >= 0)
                r = luks_source_info(source, &luks, &op->error);
        if (r < 0)
                goto finish;

        /* What Attach would decide for it here, asked for native mode: the
         * same refusals (LUKS2, a cipher QEMU lacks, a passphrase QEMU
         * cannot take, an older libvirt or QEMU, a header over the limits). */
        r = manager_mode_input(m, &in, NULL, &op->error);
        if (r < 0)
                goto finish;
        in.luks_version = luks.version;
        in.cipher = luks.cipher_name;
        in.cipher_mode = luks.cipher_mode;
        in.hash = luks.hash;
        in.requested = VOLUME_MODE_NATIVE;
        /* The migrated disk names the volume itself: what is staged is a
         * secret for the volume's own header (no header shim is prepared
         * here; luksvolumectl migrate refuses shim volumes). */
        in.native_header = NATIVE_HEADER_VOLUME;
        in.passphrase_not_text = !passphrase_qemu_compatible(op->passphrase);
        in.header_obstacle = header_obstacle(&luks, luks_kdf_limits(), obstacle, sizeof obstacle);
        if (c->res.source.rbd) {
                r = rbd_native_header_check(c->res.source.path, &luks, &op->error);
                if (r < 0)
                        goto finish;
                /* Neither exists for an image the host never maps. */
                in.dm_crypt_available = in.dm_linear_available = false;
        }
        if (mode_select(&in, reason, sizeof reason) != VOLUME_MODE_NATIVE) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED,
                                      "Only native-mode volumes can be staged for migration: %s.", reason);
                goto finish;
        }

        r = manager_derive_begin(m, c->caller_uid, &op->error);
        if (r < 0)
                goto finish;
        r = luks_source_verify(source, op->passphrase, timeout_ms, &op->slot, &cost, &op->error);
        manager_derive_end(m, c->caller_uid);
        if (r < 0)
                goto finish;

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

        pthread_rwlock_rdlock(&m->ops_lock);
        r = virt_secret_exists(m->virt, op->staged->secret_uuid, &exists, &op->error);
        if (r >= 0 && exists)
                r = sd_bus_error_setf(&op->error, LV_ERROR_ALREADY_ATTACHED,
                                      "A secret with UUID %s is already defined on this host.",
                                      op->staged->secret_uuid);
        if (r >= 0)
                r = virt_secret_create_with_uuid(m->virt, op->staged->secret_uuid, op->usage, &op->passphrase, uuid,
                                                 &op->error);
        pthread_rwlock_unlock(&m->ops_lock);

finish:
        op->passphrase = passphrase_free(op->passphrase);
        op->r = r;
}

static void stage_done(Call *c) {
        StageOp *op = (StageOp *) c;
        Manager *m = c->manager;
        Staged *s = TAKE_PTR(op->staged);
        uint32_t timeout_sec = op->options.timeout_sec ?: m->config.stage_timeout_sec;
        int r;

        if (op->r < 0) {
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
        log_info("Staged secret %s for domain %s (%s, '%s', key slot %d) for %" PRIu32 " s.", s->secret_uuid,
                 s->domain_uuid, s->target, s->source, op->slot, timeout_sec);
        (void) sd_bus_reply_method_return(c->message, NULL);
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
                snprintf(s->secret_uuid, sizeof s->secret_uuid, "%s", op->options.secret_uuid);
                s->target = strdup(op->options.target);
                s->usage = strdup(op->usage);
                s->source = strdup(c->res.source.path);
        }
        if (!s || !s->target || !s->usage || !s->source) {
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
        snprintf(op->domain_uuid, sizeof op->domain_uuid, "%s", domain_uuid);
        op->options = options;
        options = (StageOptions){ .passphrase_fd = -1 };
        op->usage = TAKE_PTR(usage);
        op->passphrase = TAKE_PTR(passphrase);
        if (call_resolve_source(&op->call, source, stage_ask) < 0)
                stage_end(op);
        return 1;
}
