/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The Manager interface: Attach, Detach, Probe.  Each handler reads top to
 * bottom: parse → validate (InvalidArgs, nothing touched) → authorize
 * (polkit, asynchronously) → act (on a worker thread) → register/emit →
 * reply.  Nothing slow runs on the event loop. */

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "disk-xml.h"
#include "errors.h"
#include "event-log.h"
#include "fault.h"
#include "luks.h"
#include "manager.h"
#include "options.h"
#include "passphrase.h"
#include "source.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

#define ACTION_ATTACH "org.example.luksvolume1.attach"
#define ACTION_DETACH "org.example.luksvolume1.detach"
#define ACTION_PROBE "org.example.luksvolume1.probe"

/* Domain names in libvirt are free-form; this bounds what we pass around
 * and echo back. */
#define DOMAIN_NAME_MAX 256

/* How long a passphrase-fd may take to deliver its data. */
#define PASSPHRASE_FD_TIMEOUT_MS 10000

static int validate_domain(const char *domain, sd_bus_error *error) {
        if (isempty(domain))
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The domain name is empty.");
        if (strlen(domain) > DOMAIN_NAME_MAX)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "The domain name is too long.");
        for (const unsigned char *c = (const unsigned char *) domain; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                                "The domain name contains control characters.");
        return 0;
}

/* Host facts every mode decision needs. */
static int host_mode_input(Manager *m, ModeInput *ret, HostInfo *ret_host, sd_bus_error *error) {
        HostInfo h;
        int r;

        r = virt_host_info(m->virt, &h, error);
        if (r < 0)
                return r;

        *ret = (ModeInput) {
                .libvirt_version = h.libvirt_version,
                .hypervisor_version = h.hypervisor_version,
                .min_libvirt_version = m->config.min_libvirt_version,
                .min_hypervisor_version = m->config.min_qemu_version,
                .hypervisor_is_qemu = streq(h.hypervisor, "QEMU"),
                .dm_crypt_available = luks_dm_crypt_available(),
                .requested = VOLUME_MODE_AUTO,
        };
        if (ret_host)
                *ret_host = h;
        return 0;
}

/* ---------------------------------------------------------------- Attach */

struct AttachOp {
        Manager *manager;
        AttachOp *next;             /* in Manager.attach_ops */
        sd_bus_message *message;
        char *domain;
        SourceInfo source;
        AttachOptions options;
        Passphrase *passphrase;
        bool claimed;
        uint64_t event_seq;         /* Manager.event_seq when authorized */

        /* worker results */
        int r;
        sd_bus_error error;
        Volume *volume;
};

static void attach_op_free(AttachOp *op) {
        if (!op)
                return;
        for (AttachOp **pp = &op->manager->attach_ops; *pp; pp = &(*pp)->next)
                if (*pp == op) {
                        *pp = op->next;
                        break;
                }
        if (op->claimed)
                manager_release_source(op->manager, op->source.dev, op->source.ino);
        manager_call_end(op->manager);
        sd_bus_message_unref(op->message);
        free(op->domain);
        source_info_done(&op->source);
        attach_options_done(&op->options);
        passphrase_free(op->passphrase);
        sd_bus_error_free(&op->error);
        volume_free(op->volume);
        free(op);
}

/* Worker thread.  Order matters for "nothing half-done": everything that
 * can be checked without side effects is checked first; the secret is
 * created only right before the hot-plug and removed if the hot-plug
 * fails. */
static int attach_native(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target) {
        Manager *m = op->manager;
        _cleanup_free_ char *usage = NULL, *xml = NULL, *alias = NULL;
        char secret_uuid[VIR_UUID_STRING_BUFLEN];
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        int r;

        r = secret_usage_build(domain_uuid, target, &usage);
        if (r < 0)
                return sd_bus_error_set_errnof(&op->error, -r, "Cannot build the secret usage id: %s", strerror(-r));

        r = disk_alias_build(domain_uuid, target, &alias);
        if (r < 0)
                return sd_bus_error_set_errnof(&op->error, -r, "Cannot build the disk alias: %s", strerror(-r));

        r = virt_secret_create(m->virt, usage, &op->passphrase, secret_uuid, &op->error);
        if (r < 0)
                return r;

        fault_point("attach", 3);   /* secret complete, disk not plugged */

        /* Everything that can fail without side effects comes before the
         * hot-plug: after it, only success is left. */
        op->volume->secret_uuid = strdup(secret_uuid);
        if (!op->volume->secret_uuid) {
                r = -ENOMEM;
                goto undo;
        }

        DiskSpec spec = {
                .block = op->source.block,
                .source = op->source.path,
                .target = target,
                .bus = op->options.bus,
                .read_only = op->options.read_only,
                .secret_uuid = secret_uuid,
                .alias = alias,
        };
        r = disk_xml_build(&spec, &xml);
        if (r < 0)
                r = sd_bus_error_set_errnof(&op->error, -r, "Cannot build the disk XML: %s", strerror(-r));
        else
                r = virt_attach_disk(dom, xml, &op->error);
        if (r >= 0)
                return 0;

undo:
        if (virt_secret_undefine(m->virt, secret_uuid, &undo_error) < 0)
                log_error("Failed to remove secret %s after a failed attach: %s", secret_uuid, undo_error.message);
        sd_bus_error_free(&undo_error);
        op->volume->secret_uuid = mfree(op->volume->secret_uuid);
        return r;
}

/* Worker thread.  The mapping is opened only right before the hot-plug
 * and closed again if the hot-plug fails. */
static int attach_cryptsetup(AttachOp *op, virDomainPtr dom, const char *domain_uuid, const char *target) {
        _cleanup_free_ char *name = NULL, *mapper = NULL, *xml = NULL, *alias = NULL;
        sd_bus_error undo_error = SD_BUS_ERROR_NULL;
        int r;

        r = luks_mapping_name(domain_uuid, target, &name);
        if (r >= 0)
                r = disk_alias_build(domain_uuid, target, &alias);
        if (r < 0)
                return sd_bus_error_set_errnof(&op->error, -r, "Cannot name the mapping: %s", strerror(-r));

        r = luks_activate(op->source.path, name, op->options.read_only, &op->passphrase, &mapper, &op->error);
        if (r < 0)
                return r;

        DiskSpec spec = {
                .block = true,
                .source = mapper,
                .target = target,
                .bus = op->options.bus,
                .read_only = op->options.read_only,
                .alias = alias,
        };
        r = disk_xml_build(&spec, &xml);
        if (r < 0)
                r = sd_bus_error_set_errnof(&op->error, -r, "Cannot build the disk XML: %s", strerror(-r));
        else
                r = virt_attach_disk(dom, xml, &op->error);
        if (r < 0) {
                if (luks_deactivate(name, &undo_error) < 0)
                        log_error("Failed to close mapping %s after a failed attach: %s", name, undo_error.message);
                sd_bus_error_free(&undo_error);
                return r;
        }

        op->volume->mapper_device = TAKE_PTR(mapper);
        return 0;
}

static int attach_pick_target(AttachOp *op, virDomainPtr dom, char **ret) {
        _cleanup_free_ char *xml = NULL;
        DiskInfo *disks = NULL;
        char **used = NULL;
        size_t n = 0;
        int r;

        r = virt_domain_live_xml(dom, &xml, &op->error);
        if (r < 0)
                return r;
        r = domain_xml_list_disks(xml, &disks, &n);
        if (r < 0)
                return sd_bus_error_set_errnof(&op->error, -r, "Cannot parse the domain's live XML: %s", strerror(-r));

        used = calloc(n + 1, sizeof *used);
        if (!used) {
                disk_info_array_free(disks, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                used[i] = disks[i].target;

        if (op->options.target) {
                r = 0;
                for (size_t i = 0; i < n; i++)
                        if (streq_ptr(used[i], op->options.target))
                                r = sd_bus_error_setf(&op->error, LV_ERROR_TARGET_IN_USE,
                                                      "Target '%s' is already in use in the domain.", op->options.target);
                if (r >= 0) {
                        *ret = strdup(op->options.target);
                        r = *ret ? 0 : -ENOMEM;
                }
        } else {
                r = target_pick_free(op->options.bus, used, n, ret);
                if (r < 0)
                        r = sd_bus_error_set(&op->error, LV_ERROR_TARGET_IN_USE, "No free target name left on that bus.");
        }

        free(used);
        disk_info_array_free(disks, n);
        return r;
}

static void attach_job(void *userdata) {
        AttachOp *op = userdata;
        Manager *m = op->manager;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *target = NULL;
        char domain_uuid[VIR_UUID_STRING_BUFLEN], reason[256];
        ModeInput in;
        LuksInfo luks;
        VolumeMode mode;
        bool locked = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        if (!op->passphrase) {
                r = passphrase_read_fd(op->options.passphrase_fd, PASSPHRASE_FD_TIMEOUT_MS, &op->passphrase);
                close(op->options.passphrase_fd);
                op->options.passphrase_fd = -1;
                if (r == -ETIMEDOUT)
                        r = sd_bus_error_setf(&op->error, DBUS_ERROR_INVALID_ARGS,
                                              "No passphrase arrived on passphrase-fd within %d s.", PASSPHRASE_FD_TIMEOUT_MS / 1000);
                else if (r == -E2BIG)
                        r = sd_bus_error_setf(&op->error, DBUS_ERROR_INVALID_ARGS,
                                              "The passphrase is longer than %d bytes.", PASSPHRASE_MAX);
                else if (r == -EINVAL)
                        r = sd_bus_error_set(&op->error, DBUS_ERROR_INVALID_ARGS, "The passphrase from passphrase-fd is empty.");
                else if (r < 0)
                        r = sd_bus_error_set_errnof(&op->error, -r, "Cannot read passphrase-fd: %s", strerror(-r));
                if (r < 0)
                        goto finish;
        }

        r = luks_probe(op->source.path, &luks, &op->error);
        if (r < 0)
                goto finish;

        r = host_mode_input(m, &in, NULL, &op->error);
        if (r < 0)
                goto finish;
        in.luks_version = luks.version;
        in.requested = op->options.mode;
        mode = mode_select(&in, reason, sizeof reason);
        if (mode < 0) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_NOT_SUPPORTED, "%s.", reason);
                goto finish;
        }
        r = virt_domain_lookup_running(m->virt, op->domain, &dom, &op->error);
        if (r < 0)
                goto finish;
        if (virDomainGetUUIDString(dom, domain_uuid) < 0) {
                r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot read the domain's UUID: %s",
                                      strempty(virGetLastErrorMessage()));
                goto finish;
        }

        virt_domain_lock(m->virt, domain_uuid);
        locked = true;

        r = attach_pick_target(op, dom, &target);
        if (r < 0)
                goto finish;

        fault_point("attach", 1);   /* everything checked, nothing created */

        r = volume_new(virDomainGetName(dom), domain_uuid, target, &op->volume);
        if (r < 0)
                goto finish;
        op->volume->mode = mode;
        op->volume->bus = strdup(op->options.bus);
        op->volume->source = strdup(op->source.path);
        op->volume->luks_version = luks.version;
        op->volume->luks_uuid = strdup(luks.uuid);
        op->volume->read_only = op->options.read_only;
        op->volume->source_dev = op->source.dev;
        op->volume->source_ino = op->source.ino;
        op->volume->source_identity_known = true;
        if (!op->volume->bus || !op->volume->source || !op->volume->luks_uuid) {
                r = -ENOMEM;
                goto finish;
        }

        if (mode == VOLUME_MODE_NATIVE)
                r = attach_native(op, dom, domain_uuid, target);
        else
                r = attach_cryptsetup(op, dom, domain_uuid, target);
        if (r >= 0)
                fault_point("attach", 4);   /* plugged in, no object, no reply */

finish:
        if (locked)
                virt_domain_unlock(m->virt, domain_uuid);
        pthread_rwlock_unlock(&m->ops_lock);
        /* On every path: the passphrase is gone once the job is over. */
        op->passphrase = passphrase_free(op->passphrase);
        if (r < 0) {
                op->volume = volume_free(op->volume);
                if (!sd_bus_error_is_set(&op->error))
                        sd_bus_error_set_errnof(&op->error, -r, "Attach failed: %s", strerror(-r));
        }
        op->r = r;
}

static void attach_done(void *userdata) {
        AttachOp *op = userdata;
        Manager *m = op->manager;
        Volume *v;

        if (op->r < 0) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, op->domain, op->source.path,
                                 op->options.target, volume_mode_to_string(op->options.mode),
                                 "Attach of '%s' to '%s' refused: %s", op->source.path, op->domain, op->error.message);
                (void) sd_bus_reply_method_error(op->message, &op->error);
                attach_op_free(op);
                return;
        }

        v = TAKE_PTR(op->volume);
        (void) manager_add_volume(m, v);
        /* The guest stopped while we were plugging the disk in: the event
         * found no volume to clean up then; it does now. */
        (void) manager_volume_gone_since(m, v, op->event_seq);
        log_volume_event(VOLUME_EVENT_ATTACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                         volume_mode_to_string(v->mode), "Attached '%s' to '%s' as %s (%s mode), object %s.",
                         v->source, v->domain, v->target, volume_mode_to_string(v->mode), v->path);
        (void) sd_bus_reply_method_return(op->message, "o", v->path);
        attach_op_free(op);
}

static void attach_authorized(sd_bus_message *message, bool allowed, const sd_bus_error *error, void *userdata) {
        AttachOp *op = userdata;
        Manager *m = op->manager;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        if (!allowed) {
                (void) sd_bus_reply_method_error(message, error);
                goto fail;
        }

        /* Checked after authorization: the answer reveals state. */
        if (manager_find_volume_by_source(m, op->source.dev, op->source.ino) ||
            manager_source_claimed(m, op->source.dev, op->source.ino)) {
                sd_bus_error_setf(&e, LV_ERROR_ALREADY_ATTACHED, "'%s' is already attached by this service.", op->source.path);
                goto reply_fail;
        }
        if (m->n_volumes + m->n_claims >= m->config.max_volumes) {
                sd_bus_error_setf(&e, LV_ERROR_BUSY, "The limit of %u attached volumes is reached.", m->config.max_volumes);
                goto reply_fail;
        }

        op->event_seq = m->event_seq;
        r = manager_claim_source(m, op->source.dev, op->source.ino);
        if (r < 0) {
                sd_bus_error_set_errnof(&e, -r, "Cannot record the attach: %s", strerror(-r));
                goto reply_fail;
        }
        op->claimed = true;

        r = worker_submit(m->worker, attach_job, attach_done, op);
        if (r < 0) {
                sd_bus_error_set_errnof(&e, -r, "Cannot start the attach: %s", strerror(-r));
                goto reply_fail;
        }
        return;

reply_fail:
        (void) sd_bus_reply_method_error(message, &e);
        sd_bus_error_free(&e);
fail:
        attach_op_free(op);
}

static int start_polkit(Manager *m, sd_bus_message *message, const char *action, const char *const *details,
                        polkit_continuation_t cb, void *op, sd_bus_error *error) {
        int r = polkit_check_async(m->polkit, message, action, details, cb, op);
        if (r == -EBUSY)
                return sd_bus_error_set(error, LV_ERROR_BUSY, "Too many authorization checks pending; try again later.");
        if (r < 0)
                return sd_bus_error_set_errnof(error, -r, "Cannot start the authorization check: %s", strerror(-r));
        return 0;
}

static int method_attach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        AttachOp *op;
        const char *domain, *source;
        const void *pass;
        size_t pass_size;
        int r;

        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        op->manager = m;
        op->options.passphrase_fd = -1;
        op->next = m->attach_ops;
        m->attach_ops = op;
        manager_call_begin(m);

        r = sd_bus_message_read(message, "ss", &domain, &source);
        if (r < 0)
                goto fail;

        r = sd_bus_message_read_array(message, 'y', &pass, &pass_size);
        if (r < 0)
                goto fail;
        if (pass_size > 0) {
                r = passphrase_new_from_buffer(pass, pass_size, &op->passphrase);
                /* The message stays referenced until we reply, seconds from
                 * now; its copy must not outlive ours. read_array points
                 * into the message's own receive buffer, so wipe it there. */
                explicit_bzero((void *) pass, pass_size);
                if (r == -E2BIG) {
                        r = sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                              "The passphrase is longer than %d bytes.", PASSPHRASE_MAX);
                        goto fail;
                }
                if (r < 0)
                        goto fail;
        }

        r = attach_options_parse(message, &op->options, error);
        if (r < 0)
                goto fail;

        if (op->passphrase && op->options.passphrase_fd >= 0) {
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "The passphrase argument must be empty when passphrase-fd is given.");
                goto fail;
        }
        if (!op->passphrase && op->options.passphrase_fd < 0) {
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "No passphrase given (neither the argument nor passphrase-fd).");
                goto fail;
        }

        r = validate_domain(domain, error);
        if (r < 0)
                goto fail;
        op->domain = strdup(domain);
        if (!op->domain) {
                r = -ENOMEM;
                goto fail;
        }

        r = source_resolve(source, &op->source, error);
        if (r < 0)
                goto fail;

        op->message = sd_bus_message_ref(message);
        const char *details[] = {
                "domain", op->domain,
                "source", op->source.path,
                "target", strempty(op->options.target),
                "mode", volume_mode_to_string(op->options.mode),
                NULL,
        };
        r = start_polkit(m, message, ACTION_ATTACH, details, attach_authorized, op, error);
        if (r < 0)
                goto fail;
        return 1;

fail:
        attach_op_free(op);
        return r;
}

/* ---------------------------------------------------------------- Detach */

typedef struct DetachOp {
        Manager *manager;
        sd_bus_message *message;
        char *path;
        DetachOptions options;

        /* copies for the worker: it must not read the Volume */
        char *domain_uuid, *target, *source, *secret_uuid, *mapper_device;

        int r;
        sd_bus_error error;
} DetachOp;

static void detach_op_free(DetachOp *op) {
        if (!op)
                return;
        manager_call_end(op->manager);
        sd_bus_message_unref(op->message);
        free(op->path);
        free(op->domain_uuid);
        free(op->target);
        free(op->source);
        free(op->secret_uuid);
        free(op->mapper_device);
        sd_bus_error_free(&op->error);
        free(op);
}

/* Ours: it carries the alias we give every disk we plug in, for exactly
 * this domain and target (the same test the start-up scan applies). */
static bool disk_is_ours(const DiskInfo *d, const char *domain_uuid, const char *target) {
        _cleanup_free_ char *alias = NULL;

        return disk_alias_build(domain_uuid, target, &alias) >= 0 && streq_ptr(d->alias, alias);
}

typedef struct RemovalWaiter {
        VirtEvents *events;
        RemovalWatch *watch;
        bool seen;
} RemovalWaiter;

static int removal_wait(void *userdata, unsigned ms) {
        RemovalWaiter *w = userdata;
        int r;

        /* After the event, only the periodic look remains (the live XML
         * may lag the event by a moment in theory). */
        if (w->seen || !w->watch) {
                usleep(MIN(ms, 50U) * 1000U);
                return 0;
        }
        r = virt_events_wait_removal(w->events, w->watch, ms);
        w->seen = r > 0;
        return r;
}

/* Worker thread.  The live XML decides: <encryption> → native (undefine
 * the secret it names), none → cryptsetup (close the mapping); the
 * device is removed from the guest first, its backing after. */
static void detach_job(void *userdata) {
        DetachOp *op = userdata;
        Manager *m = op->manager;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        bool locked = false, have_disk = false;
        int r;

        pthread_rwlock_rdlock(&m->ops_lock);

        r = virt_domain_lookup_running(m->virt, op->domain_uuid, &dom, &op->error);
        if (r < 0) {
                if (!sd_bus_error_has_names(&op->error, LV_ERROR_NO_SUCH_DOMAIN, LV_ERROR_DOMAIN_NOT_RUNNING))
                        goto finish;
                /* The guest is gone and the disk with it: only our
                 * backing remains to be cleaned up. */
                sd_bus_error_free(&op->error);
                r = 0;
        } else {
                virt_domain_lock(m->virt, op->domain_uuid);
                locked = true;

                r = virt_domain_live_xml(dom, &xml, &op->error);
                if (r < 0)
                        goto finish;
                r = domain_xml_find_disk(xml, op->target, &d);
                if (r == -ENOENT)
                        r = 0;
                else if (r < 0) {
                        r = sd_bus_error_set_errnof(&op->error, -r, "Cannot parse the domain's live XML: %s", strerror(-r));
                        goto finish;
                } else if (!disk_is_ours(&d, op->domain_uuid, op->target)) {
                        /* Someone else's disk now sits on that target; ours
                         * is gone. Never touch theirs. */
                        log_notice("Target %s now holds a disk not plugged in by this service; treating the volume as detached.",
                                   op->target);
                        disk_info_free(&d);
                        d = (DiskInfo) {};
                } else
                        have_disk = true;
        }

        if (have_disk) {
                /* The wait can be long (a guest that does not let go); other
                 * operations on this domain need not wait for it: the disk
                 * stays in the live XML, so its target cannot be taken. */
                if (locked) {
                        virt_domain_unlock(m->virt, op->domain_uuid);
                        locked = false;
                }

                RemovalWaiter waiter = {
                        .events = m->events,
                        .watch = d.alias ? virt_events_watch_removal(m->events, op->domain_uuid, d.alias) : NULL,
                };
                r = virt_detach_disk(dom, op->target, d.alias, op->options.timeout_sec * 1000U,
                                     removal_wait, &waiter, &op->error);
                virt_events_unwatch_removal(waiter.events, waiter.watch);
                if (r < 0)
                        goto finish;
                /* The XML decides the mode: <encryption> names the secret in
                 * use; without it the source is our mapping. */
                if (d.encrypted) {
                        free(op->secret_uuid);
                        op->secret_uuid = d.secret_uuid ? strdup(d.secret_uuid) : NULL;
                        op->mapper_device = mfree(op->mapper_device);
                } else {
                        op->secret_uuid = mfree(op->secret_uuid);
                        if (d.source) {
                                free(op->mapper_device);
                                op->mapper_device = strdup(d.source);
                        }
                }
        }

        fault_point("detach", 2);   /* device gone, backing still there */

        /* The device is gone from the guest: now its backing can go. */
        if (op->secret_uuid)
                r = virt_secret_undefine(m->virt, op->secret_uuid, &op->error);
        if (r >= 0 && op->mapper_device) {
                const char *name = op->mapper_device + strlen("/dev/mapper/");
                /* Never close a mapping that is not ours, whatever a record says. */
                if (startswith(op->mapper_device, "/dev/mapper/" LUKS_MAPPING_PREFIX))
                        r = luks_deactivate(name, &op->error);
        }

        if (r >= 0)
                fault_point("detach", 3);   /* all gone but the object */

finish:
        if (locked)
                virt_domain_unlock(m->virt, op->domain_uuid);
        pthread_rwlock_unlock(&m->ops_lock);
        disk_info_free(&d);
        if (r < 0 && !sd_bus_error_is_set(&op->error))
                sd_bus_error_set_errnof(&op->error, -r, "Detach failed: %s", strerror(-r));
        op->r = r;
}

static void detach_done(void *userdata) {
        DetachOp *op = userdata;
        Manager *m = op->manager;
        Volume *v = manager_find_volume_by_path(m, op->path);

        if (v)
                v->operation_pending = false;

        if (op->r < 0 && v && (v->removal_seen || v->domain_gone_seen)) {
                /* The guest let go (or went away) after our last look: the
                 * event that said so was held back while we worked. */
                v->removal_seen = v->domain_gone_seen = false;
                manager_volume_cleanup(m, v, "the guest released it");
        }

        if (op->r < 0) {
                log_volume_event(VOLUME_EVENT_REFUSED, LOG_LEVEL_NOTICE, v ? v->domain : NULL, op->source, op->target,
                                 v ? volume_mode_to_string(v->mode) : NULL,
                                 "Detach of %s failed: %s", op->path, op->error.message);
                /* Busy keeps State=detaching: the request stands with the
                 * guest.  Anything else: the volume is still attached. */
                if (v && !sd_bus_error_has_name(&op->error, LV_ERROR_BUSY)) {
                        v->state = VOLUME_STATE_ATTACHED;
                        (void) volume_bus_emit_state(v);
                }
                (void) sd_bus_reply_method_error(op->message, &op->error);
                detach_op_free(op);
                return;
        }

        if (v) {
                log_volume_event(VOLUME_EVENT_DETACHED, LOG_LEVEL_INFO, v->domain, v->source, v->target,
                                 volume_mode_to_string(v->mode), "Detached %s (%s from %s).",
                                 v->path, v->source, v->domain);
                manager_remove_volume(m, v);
        }
        (void) sd_bus_reply_method_return(op->message, NULL);
        detach_op_free(op);
}

static void detach_authorized(sd_bus_message *message, bool allowed, const sd_bus_error *error, void *userdata) {
        DetachOp *op = userdata;
        Manager *m = op->manager;
        Volume *v;
        int r;

        if (!allowed) {
                (void) sd_bus_reply_method_error(message, error);
                detach_op_free(op);
                return;
        }

        /* It may have gone while polkit was deciding. */
        v = manager_find_volume_by_path(m, op->path);
        if (!v) {
                (void) sd_bus_reply_method_errorf(message, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", op->path);
                detach_op_free(op);
                return;
        }
        if (v->operation_pending) {
                (void) sd_bus_reply_method_errorf(message, LV_ERROR_BUSY, "A detach of %s is already in progress.", op->path);
                detach_op_free(op);
                return;
        }

        op->domain_uuid = strdup(v->domain_uuid);
        op->target = strdup(v->target);
        op->source = strdup(strempty(v->source));
        op->secret_uuid = v->secret_uuid ? strdup(v->secret_uuid) : NULL;
        op->mapper_device = v->mapper_device ? strdup(v->mapper_device) : NULL;
        if (!op->domain_uuid || !op->target || !op->source || (v->secret_uuid && !op->secret_uuid) ||
            (v->mapper_device && !op->mapper_device)) {
                (void) sd_bus_reply_method_errnof(message, ENOMEM, "Out of memory.");
                detach_op_free(op);
                return;
        }

        r = worker_submit(m->worker, detach_job, detach_done, op);
        if (r < 0) {
                (void) sd_bus_reply_method_errnof(message, -r, "Cannot start the detach: %s", strerror(-r));
                detach_op_free(op);
                return;
        }

        v->operation_pending = true;
        if (v->state != VOLUME_STATE_DETACHING) {
                v->state = VOLUME_STATE_DETACHING;
                (void) volume_bus_emit_state(v);
        }
}

static int method_detach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *u = NULL, *t = NULL;
        DetachOp *op;
        const char *path;
        Volume *v;
        int r;

        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        op->manager = m;
        manager_call_begin(m);

        r = sd_bus_message_read(message, "o", &path);
        if (r < 0)
                goto fail;
        r = detach_options_parse(message, &op->options, error);
        if (r < 0)
                goto fail;
        if (!op->options.timeout_set)
                op->options.timeout_sec = m->config.detach_timeout_sec;

        if (volume_path_parse(path, &u, &t) < 0) {
                r = sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "'%s' is not a volume object path.", path);
                goto fail;
        }
        op->path = strdup(path);
        if (!op->path) {
                r = -ENOMEM;
                goto fail;
        }

        /* NoSuchVolume before authorization reveals only what the object
         * tree already shows to anyone. */
        v = manager_find_volume_by_path(m, path);
        if (!v) {
                r = sd_bus_error_setf(error, LV_ERROR_NO_SUCH_VOLUME, "No volume %s.", path);
                goto fail;
        }

        op->message = sd_bus_message_ref(message);
        const char *details[] = {
                "domain", v->domain,
                "source", strempty(v->source),
                "target", v->target,
                NULL,
        };
        r = start_polkit(m, message, ACTION_DETACH, details, detach_authorized, op, error);
        if (r < 0)
                goto fail;
        return 1;

fail:
        detach_op_free(op);
        return r;
}

/* ----------------------------------------------------------------- Probe */

typedef struct ProbeOp {
        Manager *manager;
        sd_bus_message *message;
        SourceInfo source;      /* path NULL: host facts */

        int r;
        sd_bus_error error;
        HostInfo host;
        bool host_known;
        ModeInput in;
        LuksInfo luks;
} ProbeOp;

static void probe_op_free(ProbeOp *op) {
        if (!op)
                return;
        manager_call_end(op->manager);
        sd_bus_message_unref(op->message);
        source_info_done(&op->source);
        sd_bus_error_free(&op->error);
        free(op);
}

static void probe_job(void *userdata) {
        ProbeOp *op = userdata;
        int r;

        if (op->source.path) {
                r = luks_probe(op->source.path, &op->luks, &op->error);
                if (r < 0) {
                        op->r = r;
                        return;
                }
                /* native-capable needs the host's versions; without libvirt
                 * the header facts are still worth reporting. */
                r = host_mode_input(op->manager, &op->in, &op->host, &op->error);
                op->host_known = r >= 0;
                sd_bus_error_free(&op->error);
                op->r = 0;
                return;
        }

        r = host_mode_input(op->manager, &op->in, &op->host, &op->error);
        op->host_known = r >= 0;
        op->r = r;
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

static int probe_build_reply(ProbeOp *op, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char buf[32];
        int b, r;

        r = sd_bus_message_new_method_return(op->message, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;

        if (!op->source.path) {
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
        } else {
                Volume *v = manager_find_volume_by_source(op->manager, op->source.dev, op->source.ino);
                uint32_t u;

                u = op->luks.version;
                r = append_entry(reply, "luks-version", 'u', &u);
                if (r < 0)
                        return r;
                r = append_entry(reply, "uuid", 's', op->luks.uuid);
                if (r < 0)
                        return r;
                r = append_entry(reply, "cipher", 's', op->luks.cipher);
                if (r < 0)
                        return r;
                u = op->luks.key_size_bits;
                r = append_entry(reply, "key-size", 'u', &u);
                if (r < 0)
                        return r;
                u = op->luks.active_keyslots;
                r = append_entry(reply, "active-keyslots", 'u', &u);
                if (r < 0)
                        return r;
                b = false;
                if (op->host_known) {
                        char reason[256];
                        op->in.luks_version = op->luks.version;
                        op->in.requested = VOLUME_MODE_AUTO;
                        b = mode_select(&op->in, reason, sizeof reason) == VOLUME_MODE_NATIVE;
                }
                r = append_entry(reply, "native-capable", 'b', &b);
                if (r < 0)
                        return r;
                r = append_entry(reply, "attached", 'o', v ? v->path : "/");
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(reply);
        return 0;
}

static void probe_done(void *userdata) {
        ProbeOp *op = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (op->r < 0) {
                (void) sd_bus_reply_method_error(op->message, &op->error);
                probe_op_free(op);
                return;
        }

        r = probe_build_reply(op, &reply);
        if (r < 0)
                (void) sd_bus_reply_method_errnof(op->message, -r, "Cannot build the reply: %s", strerror(-r));
        else
                (void) sd_bus_send(NULL, reply, NULL);
        probe_op_free(op);
}

static void probe_authorized(sd_bus_message *message, bool allowed, const sd_bus_error *error, void *userdata) {
        ProbeOp *op = userdata;
        int r;

        if (!allowed) {
                (void) sd_bus_reply_method_error(message, error);
                probe_op_free(op);
                return;
        }

        r = worker_submit(op->manager->worker, probe_job, probe_done, op);
        if (r < 0) {
                (void) sd_bus_reply_method_errnof(message, -r, "Cannot start the probe: %s", strerror(-r));
                probe_op_free(op);
        }
}

static int method_probe(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        ProbeOp *op;
        const char *source;
        int r;

        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        op->manager = m;
        manager_call_begin(m);

        r = sd_bus_message_read(message, "s", &source);
        if (r < 0)
                goto fail;
        r = probe_options_parse(message, error);
        if (r < 0)
                goto fail;

        if (!isempty(source)) {
                r = source_resolve(source, &op->source, error);
                if (r < 0)
                        goto fail;
        }

        op->message = sd_bus_message_ref(message);
        const char *details[] = {
                "source", op->source.path ? op->source.path : "",
                NULL,
        };
        r = start_polkit(m, message, ACTION_PROBE, details, probe_authorized, op, error);
        if (r < 0)
                goto fail;
        return 1;

fail:
        probe_op_free(op);
        return r;
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Attach",
                                SD_BUS_ARGS("s", domain, "s", source, "ay", passphrase, "a{sv}", options),
                                SD_BUS_RESULT("o", volume),
                                method_attach,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("Detach",
                                SD_BUS_ARGS("o", volume, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_detach,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Probe",
                                SD_BUS_ARGS("s", source, "a{sv}", options),
                                SD_BUS_RESULT("a{sv}", info),
                                method_probe,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

void manager_bus_drop_pending(Manager *m) {
        while (m->attach_ops)
                attach_op_free(m->attach_ops);
}

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, LV_OBJECT_PATH, LV_MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the manager vtable: %m");
        return 0;
}
