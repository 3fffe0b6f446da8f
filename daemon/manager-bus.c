/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The Manager interface's vtable and what its methods share.  The methods
 * themselves live one per file: attach.c, detach.c, probe.c, keys.c,
 * domains.c. */

#include "attach-request.h"
#include "errors.h"
#include "manager.h"
#include "operations.h"
#include "stage.h"
#include "passphrase.h"
#include "uid-cap.h"
#include "util.h"
#include "volume-id.h"

/* Domain names in libvirt are free-form; this bounds what we pass around
 * and echo back. */
#define DOMAIN_NAME_MAX 256

int validate_domain(const char *domain, sd_bus_error *error) {
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

int lv_error_bad_message(sd_bus_error *error, int r) {
        if (sd_bus_error_is_set(error))
                return r < 0 ? r : -EINVAL;
        if (r == -ENOMEM)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "Malformed arguments: %s",
                                 strerror(r < 0 ? -r : EINVAL));
}

int read_passphrase_arg(sd_bus_message *message, const char *what, Passphrase **ret, sd_bus_error *error) {
        const void *p;
        size_t n;
        int r;

        r = sd_bus_message_read_array(message, 'y', &p, &n);
        if (r < 0)
                return lv_error_bad_message(error, r);
        if (n == 0) {
                *ret = NULL;
                return 0;
        }
        r = passphrase_new_from_buffer(p, n, ret);
        /* The message stays referenced until we reply, seconds from now;
         * its copy must not outlive ours.  read_array points into the
         * message's own receive buffer, so wipe it there. */
        explicit_bzero((void *) p, n);
        if (r == -E2BIG)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The %s is longer than %d bytes.", what,
                                         PASSPHRASE_MAX);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot store the %s: %s", what, strerror(-r));
        return 0;
}

int read_passphrase_option(Call *c, int *fd, const char *option, Passphrase **ret, sd_bus_error *error) {
        int r;

        /* A pipe whose writer never delivers holds this worker until the
         * deadline: few at a time per user, so that nobody can take the
         * pool (and with it every other caller's answers). */
        r = uid_cap_take(c->manager->fd_reads, c->caller_uid);
        if (r >= 0) {
                r = passphrase_read_fd(*fd, PASSPHRASE_FD_TIMEOUT_MS, ret);
                uid_cap_put(c->manager->fd_reads, c->caller_uid);
        } else
                r = r == -EUSERS ? -EUSERS : -EDQUOT;
        close(*fd);
        *fd = -1;
        if (r == -EUSERS)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "Too many passphrase descriptors of yours are being read; try again later.");
        if (r == -EDQUOT)
                return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                         "Too many passphrase descriptors are being read; try again later.");
        if (r == -EBADFD)
                return sd_bus_error_setf(
                        error, DBUS_ERROR_INVALID_ARGS,
                        "Option '%s' must be the read end of a pipe or a memfd (not a file, FIFO, socket or device).",
                        option);
        if (r == -ETIMEDOUT)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "No passphrase arrived on %s within %d s.",
                                         option, PASSPHRASE_FD_TIMEOUT_MS / 1000);
        if (r == -E2BIG)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                         "The passphrase from %s is longer than %d bytes.", option, PASSPHRASE_MAX);
        if (r == -EINVAL)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "The passphrase from %s is empty.", option);
        if (r < 0)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot read %s: %s", option, strerror(-r));
        return 0;
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Attach", SD_BUS_ARGS("s", domain, "s", source, "ay", passphrase, "a{sv}", options),
                                SD_BUS_RESULT("o", volume), method_attach,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("Detach", SD_BUS_ARGS("o", volume, "a{sv}", options), SD_BUS_NO_RESULT, method_detach,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Probe", SD_BUS_ARGS("s", source, "a{sv}", options), SD_BUS_RESULT("a{sv}", info),
                                method_probe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListDomains", SD_BUS_ARGS("a{sv}", options), SD_BUS_RESULT("a(sss)", domains),
                                method_list_domains, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ChangePassphrase",
                                SD_BUS_ARGS("s", source, "ay", old_passphrase, "ay", new_passphrase, "a{sv}", options),
                                SD_BUS_NO_RESULT, method_change_passphrase,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS(
                "AddPassphrase",
                SD_BUS_ARGS("s", source, "ay", existing_passphrase, "ay", new_passphrase, "a{sv}", options),
                SD_BUS_RESULT("u", slot), method_add_passphrase, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("RemovePassphrase", SD_BUS_ARGS("s", source, "ay", passphrase, "a{sv}", options),
                                SD_BUS_NO_RESULT, method_remove_passphrase,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("VerifyPassphrase", SD_BUS_ARGS("s", source, "ay", passphrase, "a{sv}", options),
                                SD_BUS_RESULT("u", slot), method_verify_passphrase,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("StageIncoming",
                                SD_BUS_ARGS("s", domain_uuid, "s", source, "ay", passphrase, "a{sv}", options),
                                SD_BUS_RESULT("a{sv}", staged), method_stage_incoming,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("CancelAttach", SD_BUS_ARGS("s", request_id), SD_BUS_RESULT("b", cancelled),
                                method_cancel_attach, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("AttachProgress", SD_BUS_ARGS("s", request_id, "s", step), 0),
        SD_BUS_SIGNAL_WITH_ARGS("VolumeMigrated", SD_BUS_ARGS("o", volume, "s", domain, "s", target, "s", direction),
                                0),
        SD_BUS_VTABLE_END
};

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, LV_OBJECT_PATH, LV_MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register the manager vtable: %m");
        return 0;
}
