/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <systemd/sd-bus.h>

#include "bus.h"
#include "luksvolumectl.h"
#include "passphrase.h"
#include "verbs-attach.h"
#include "volume-lookup.h"

/* Extra time granted beyond a user-supplied detach --timeout, so the
 * daemon's own timeout fires (with a proper error) before ours does. */
#define DETACH_TIMEOUT_SLACK_USEC (60 * USEC_PER_SEC)

static int append_string_option(sd_bus_message *m, const char *key, const char *value) {
        if (!value)
                return 0;
        return sd_bus_message_append(m, "{sv}", key, "s", value);
}

static int build_attach(sd_bus *bus, const char *domain, const char *source, int pass_fd,
                        sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "Attach");
        if (r < 0)
                return r;

        /* The body carries no secret (only an fd), but if a future change
         * ever puts one there it should not be logged or left in memory. */
        r = sd_bus_message_sensitive(m);
        if (r < 0)
                return r;

        r = sd_bus_message_append(m, "ss", domain, source);
        if (r < 0)
                return r;
        r = sd_bus_message_append_array(m, 'y', NULL, 0);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if ((r = append_string_option(m, "target", arg_target)) < 0 ||
            (r = append_string_option(m, "bus", arg_bus)) < 0 ||
            (r = append_string_option(m, "mode", arg_mode)) < 0)
                return r;
        if (arg_read_only) {
                r = sd_bus_message_append(m, "{sv}", "read-only", "b", 1);
                if (r < 0)
                        return r;
        }
        /* sd-bus duplicates the fd into the message. */
        r = sd_bus_message_append(m, "{sv}", "passphrase-fd", "h", pass_fd);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

/* Step: the Attach request, with the passphrase in a pipe whose read end
 * the message carries. Returns an exit status. */
static int make_attach_request(sd_bus *bus, const char *domain, const char *source, sd_bus_message **ret) {
        _cleanup_close_ int pass_fd = -EBADF;
        int r, status;

        status = acquire_passphrase_fd("Passphrase", source, &pass_fd);
        if (status != EXIT_OK)
                return status;

        /* The message gets its own duplicate of the fd; ours is closed on
         * return. */
        r = build_attach(bus, domain, source, pass_fd, ret);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Attach request: %m");
        return EXIT_OK;
}

int verb_attach(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *source = NULL;
        const char *path;
        int r, status;

        if (argc != 3)
                return fail(EXIT_USAGE, "attach expects DOMAIN and SOURCE.");
        if (isempty(argv[1]) || isempty(argv[2]))
                return fail(EXIT_USAGE, "DOMAIN and SOURCE must not be empty.");

        status = source_from_arg(argv[2], &source);
        if (status != EXIT_OK)
                return status;

        /* Connect first: no point prompting for a passphrase when the bus
         * is not even there. */
        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        /* The passphrase goes as an fd or not at all (see passphrase.h). */
        status = require_fd_passing(bus, "attach");
        if (status != EXIT_OK)
                return status;

        status = make_attach_request(bus, argv[1], source, &m);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call(bus, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to attach volume", &error, r);

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse Attach reply: %m");

        printf("%s\n", path);
        return EXIT_OK;
}

int verb_detach(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        uint64_t timeout = SLOW_CALL_TIMEOUT_USEC;
        int r, status;

        status = open_volume(argc, argv, "detach", &bus, &path);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_message_new_method_call(bus, &m, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "Detach");
        if (r >= 0)
                r = sd_bus_message_append(m, "o", path);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && arg_timeout_set)
                r = sd_bus_message_append(m, "{sv}", "timeout", "u", arg_timeout);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Detach request: %m");

        if (arg_timeout_set &&
            (uint64_t) arg_timeout * USEC_PER_SEC + DETACH_TIMEOUT_SLACK_USEC > timeout)
                timeout = (uint64_t) arg_timeout * USEC_PER_SEC + DETACH_TIMEOUT_SLACK_USEC;

        r = sd_bus_call(bus, m, timeout, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to detach volume", &error, r);
        return EXIT_OK;
}

int verb_rearm(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int pass_fd = -EBADF;
        int r, status;

        status = open_volume(argc, argv, "rearm", &bus, &path);
        if (status != EXIT_OK)
                return status;

        status = require_fd_passing(bus, "rearm");
        if (status != EXIT_OK)
                return status;

        status = acquire_passphrase_fd("Passphrase", argv[1], &pass_fd);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_message_new_method_call(bus, &m, SERVICE_NAME, path, VOLUME_IFACE, "Rearm");
        if (r >= 0)
                r = sd_bus_message_sensitive(m);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', NULL, 0);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "h", pass_fd);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Rearm request: %m");

        r = sd_bus_call(bus, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to re-arm volume", &error, r);
        return EXIT_OK;
}
