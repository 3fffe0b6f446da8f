/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>

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

static int build_attach(sd_bus *bus, const char *domain, const char *source, int pass_fd, sd_bus_message **ret) {
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
            (r = append_string_option(m, "bus", arg_bus)) < 0 || (r = append_string_option(m, "mode", arg_mode)) < 0)
                return r;
        if (arg_read_only) {
                r = sd_bus_message_append(m, "{sv}", "read-only", "b", 1);
                if (r < 0)
                        return r;
        }
        if ((r = append_string_option(m, "serial", arg_serial)) < 0 ||
            (r = append_string_option(m, "native-header", arg_native_header)) < 0)
                return r;
        if (arg_discard) {
                r = sd_bus_message_append(m, "{sv}", "discard", "b", 1);
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

/* A Detach call for the volume at path, with --timeout: the manager's,
 * which every version of the service has (Volume.Detach is the same). */
static int build_detach(sd_bus *bus, const char *path, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

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
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

/* How long to wait for a Detach: the daemon's wait for the guest, and then
 * some, so that its own timeout answers first. */
static uint64_t detach_call_timeout(void) {
        uint64_t timeout = SLOW_CALL_TIMEOUT_USEC;

        if (arg_timeout_set && (uint64_t) arg_timeout * USEC_PER_SEC + DETACH_TIMEOUT_SLACK_USEC > timeout)
                timeout = (uint64_t) arg_timeout * USEC_PER_SEC + DETACH_TIMEOUT_SLACK_USEC;
        return timeout;
}

typedef struct PendingDetach {
        const char *path;
        sd_bus_slot *slot;
        bool done;
        int status;
} PendingDetach;

static int on_detached(sd_bus_message *reply, void *userdata, _unused_ sd_bus_error *ret_error) {
        PendingDetach *p = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        p->done = true;
        p->status = EXIT_OK;
        if (e) {
                _cleanup_free_ char *what = NULL;

                if (asprintf(&what, "Failed to detach %s", p->path) < 0)
                        what = NULL;
                p->status = fail_bus(what ?: "Failed to detach volume", e, sd_bus_message_get_errno(reply));
        }
        return 0;
}

/* detach --all [DOMAIN]: every volume (of DOMAIN), the calls all out at
 * once — each may wait for its guest — then every answer.  The status is
 * the first failure's, in list order; nothing to detach is success. */
static int detach_all(int argc, char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(volume_list_done) VolumeList volumes = {};
        PendingDetach *pending;
        int r, status;

        if (argc > 2)
                return fail(EXIT_USAGE, "detach --all expects at most one DOMAIN.");
        if (argc == 2 && isempty(argv[1]))
                return fail(EXIT_USAGE, "DOMAIN must not be empty.");

        status = open_volumes(argc == 2 ? argv[1] : NULL, &bus, &volumes);
        if (status != EXIT_OK)
                return status;
        if (volumes.n == 0)
                return EXIT_OK;

        pending = calloc(volumes.n, sizeof *pending);
        if (!pending)
                return fail_errno(EXIT_FAIL, ENOMEM, "Out of memory.");

        for (size_t i = 0; i < volumes.n; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

                pending[i].path = volumes.items[i].path;
                r = build_detach(bus, pending[i].path, &m);
                if (r >= 0)
                        r = sd_bus_call_async(bus, &pending[i].slot, m, on_detached, &pending[i],
                                              detach_call_timeout());
                if (r < 0) {
                        /* Not sent: answered here and now. */
                        pending[i].done = true;
                        pending[i].status = fail_errno(EXIT_FAIL, r, "Failed to detach %s: %m", pending[i].path);
                }
        }

        for (;;) {
                size_t left = 0;

                for (size_t i = 0; i < volumes.n; i++)
                        if (!pending[i].done)
                                left++;
                if (left == 0)
                        break;
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        status = fail_errno(EXIT_FAIL, r, "Failed to process the bus: %m");
                        break;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0) {
                        status = fail_errno(EXIT_FAIL, r, "Failed to wait on the bus: %m");
                        break;
                }
        }

        for (size_t i = 0; i < volumes.n; i++) {
                sd_bus_slot_unref(pending[i].slot);
                if (status == EXIT_OK && pending[i].done && pending[i].status != EXIT_OK)
                        status = pending[i].status;
        }
        free(pending);
        return status;
}

int verb_detach(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        int r, status;

        if (arg_all)
                return detach_all(argc, argv);

        status = open_volume(argc, argv, "detach", &bus, &path);
        if (status != EXIT_OK)
                return status;

        r = build_detach(bus, path, &m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Detach request: %m");

        r = sd_bus_call(bus, m, detach_call_timeout(), &error, &reply);
        if (r < 0)
                return fail_bus("Failed to detach volume", &error, r);
        return EXIT_OK;
}

/* SIZE: bytes, or K, M, G, T (binary: 1024, 1024², …; either case). */
static int parse_size(const char *s, uint64_t *ret) {
        static const char suffixes[] = "KMGT";
        uint64_t v, factor = 1;
        const char *p;
        char *end;

        if (isempty(s) || !(s[0] >= '0' && s[0] <= '9'))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return errno == ERANGE ? -ERANGE : -EINVAL;
        if (*end != '\0') {
                if (end[1] != '\0' || !(p = strchr(suffixes, toupper((unsigned char) *end))))
                        return -EINVAL;
                for (size_t k = 0; k <= (size_t) (p - suffixes); k++)
                        factor *= 1024;
        }
        if (v > UINT64_MAX / factor)
                return -ERANGE;
        *ret = v * factor;
        return 0;
}

int verb_resize(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        uint64_t size = 0;
        int r, status;

        if (argc != 3)
                return fail(EXIT_USAGE, "resize expects VOLUME-PATH or DOMAIN:TARGET, and SIZE.");
        r = parse_size(argv[2], &size);
        if (r < 0)
                return fail(EXIT_USAGE,
                            "Invalid SIZE \"%s\": expected bytes, or a number with K, M, G or T "
                            "(powers of 1024).",
                            argv[2]);

        status = open_volume(2, argv, "resize", &bus, &path);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_message_new_method_call(bus, &m, SERVICE_NAME, path, VOLUME_IFACE, "Resize");
        if (r >= 0)
                r = sd_bus_message_append(m, "t", size);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && arg_allow_shrink)
                r = sd_bus_message_append(m, "{sv}", "allow-shrink", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Resize request: %m");

        r = sd_bus_call(bus, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to resize volume", &error, r);
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
