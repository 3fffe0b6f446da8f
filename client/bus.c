/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <systemd/sd-bus.h>

#include "bus.h"
#include "errors.h"
#include "luksvolumectl.h"

/* ───────────────────────── errors → exit status ───────────────────────── */

static const struct {
        const char *name;
        int status;
} error_map[] = {
        { DBUS_ERROR_INVALID_ARGS, EXIT_USAGE },
        { DBUS_ERROR_ACCESS_DENIED, EXIT_AUTH },
        { DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED, EXIT_AUTH },
        { LV_ERROR_BAD_PASSPHRASE, EXIT_BAD_PASSPHRASE },
        { LV_ERROR_NO_SUCH_DOMAIN, EXIT_NOT_FOUND },
        /* Not running is reported like "not found": there is no running
         * guest to act on, and the remedy (start it) is the same one a
         * script needs for a domain it cannot find. */
        { LV_ERROR_DOMAIN_NOT_RUNNING, EXIT_NOT_FOUND },
        { LV_ERROR_NO_SUCH_VOLUME, EXIT_NOT_FOUND },
        /* A volume path the daemon does not export (e.g. detached meanwhile). */
        { SD_BUS_ERROR_UNKNOWN_OBJECT, EXIT_NOT_FOUND },
        { SD_BUS_ERROR_UNKNOWN_INTERFACE, EXIT_NOT_FOUND },
        { LV_ERROR_NOT_LUKS, EXIT_NOT_SUPPORTED },
        { LV_ERROR_NOT_SUPPORTED, EXIT_NOT_SUPPORTED },
        /* An older daemon without the method we called. */
        { SD_BUS_ERROR_UNKNOWN_METHOD, EXIT_NOT_SUPPORTED },
        { LV_ERROR_BUSY, EXIT_BUSY },
        { LV_ERROR_ALREADY_ATTACHED, EXIT_BUSY },
        { LV_ERROR_TARGET_IN_USE, EXIT_BUSY },
        /* The source is someone else's right now (mounted, another guest's
         * disk, a loop device's file …): like Busy, it may pass. */
        { LV_ERROR_IN_USE, EXIT_BUSY },
        /* The guest said no to an unplug: like Busy, it may change. */
        { LV_ERROR_GUEST_REFUSED, EXIT_BUSY },
};

static int exit_status_from_bus_error(const sd_bus_error *error) {
        if (!error || !error->name)
                return EXIT_FAIL;
        for (size_t i = 0; i < ELEMENTSOF(error_map); i++)
                if (streq(error->name, error_map[i].name))
                        return error_map[i].status;
        return EXIT_FAIL;
}

int fail_bus(const char *what, const sd_bus_error *error, int r) {
        int status = exit_status_from_bus_error(error);

        if (error && !isempty(error->message))
                log_error(PROGRAM ": %s: %s", what, error->message);
        else if (error && error->name)
                log_error(PROGRAM ": %s: %s", what, error->name);
        else
                log_error_errno(r, PROGRAM ": %s: %m", what);

        if (error && streq_ptr(error->name, DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                log_error(PROGRAM ": Hint: authentication is required; run this from a terminal "
                                  "with a polkit authentication agent (and without --no-ask-password), or as root.");
        else if (status == EXIT_AUTH)
                log_error(PROGRAM ": Hint: run as root, or with a polkit authentication agent "
                                  "running, or ask an administrator to grant access.");
        return status;
}

/* ──────────────────────────── connecting ─────────────────────────────── */

/* Whether an executable named name is in $PATH (what execvp() would run). */
static bool in_path(const char *name) {
        const char *path = getenv("PATH");

        /* execvp()'s default search path when PATH is unset. */
        if (!path)
                path = "/bin:/usr/bin";

        /* Walk the list in place, skipping empty elements. */
        for (const char *dir = path; *dir != '\0';) {
                size_t n = strcspn(dir, ":");

                if (n > 0) {
                        _cleanup_free_ char *p = NULL;

                        if (asprintf(&p, "%.*s/%s", (int) n, dir, name) < 0)
                                return true; /* let the exec tell */
                        if (access(p, X_OK) == 0)
                                return true;
                }
                dir += n;
                if (*dir == ':')
                        dir++;
        }
        return false;
}

/* Step: the system bus of --host over ssh, as systemctl -H does. */
static int connect_remote(sd_bus **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        /* sd-bus runs "ssh -xT -- HOST systemd-stdio-bridge" in a child; when
         * the exec fails, all we would ever see is ENOTCONN, so look first. */
        if (!in_path("ssh"))
                return fail(EXIT_FAIL, "--host needs ssh(1), which was not found in $PATH; "
                                       "install an ssh client (e.g. openssh-client).");

        r = sd_bus_open_system_remote(&bus, arg_host);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to connect to the system bus of %s: %m", arg_host);

        /* Opening only starts ssh. Make one round trip now, so that an
         * unreachable host, a refused login or a missing systemd-stdio-bridge
         * shows up as a connection failure and not as the first call's. */
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId",
                               &error, NULL, NULL);
        if (r < 0) {
                log_error_errno(r, PROGRAM ": Failed to connect to the system bus of %s over ssh: %m", arg_host);
                log_error(PROGRAM ": Hint: ssh's own message, if any, is above; %s must be reachable "
                                  "with ssh and have systemd-stdio-bridge installed.",
                          arg_host);
                return EXIT_FAIL;
        }

        *ret = TAKE_PTR(bus);
        return EXIT_OK;
}

int connect_bus(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r, status;

        if (arg_host) {
                status = connect_remote(&bus);
                if (status != EXIT_OK)
                        return status;
        } else {
                /* sd_bus_open_system() honours $DBUS_SYSTEM_BUS_ADDRESS. */
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to connect to the system bus: %m");
        }

        /* Like systemd's tools: let polkit ask the user only when there is
         * someone at a terminal to answer. */
        if (arg_ask_password && isatty(STDIN_FILENO)) {
                r = sd_bus_set_allow_interactive_authorization(bus, true);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to enable interactive authorization: %m");
        }

        *ret = TAKE_PTR(bus);
        return EXIT_OK;
}

int require_fd_passing(sd_bus *bus, const char *verb) {
        int r = sd_bus_can_send(bus, SD_BUS_TYPE_UNIX_FD);

        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to connect to the system bus: %m");
        if (r > 0)
                return EXIT_OK;
        if (arg_host)
                return fail(EXIT_NOT_SUPPORTED,
                            "Cannot %s over --host: ssh cannot pass the file descriptor that carries the "
                            "passphrase; run luksvolumectl %s on %s itself.",
                            verb, verb, arg_host);
        return fail(EXIT_NOT_SUPPORTED,
                    "The bus connection cannot pass file descriptors, which %s needs to hand over the "
                    "passphrase.",
                    verb);
}
