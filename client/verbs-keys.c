/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <systemd/sd-bus.h>

#include "bus.h"
#include "luksvolumectl.h"
#include "output.h"
#include "passphrase.h"
#include "verbs-keys.h"
#include "volume-lookup.h"

/* What each verb sends: the method, its passphrase prompts, and what it
 * takes besides the passphrase. */
typedef struct KeysVerb {
        const char *name;
        const char *method;
        const char *prompt;  /* for the passphrase that opens the volume */
        bool new_passphrase; /* sends a second, new passphrase */
        bool prints_slot;    /* the reply is (u slot) */
        const char *failure; /* "Failed to …" */
} KeysVerb;

static const KeysVerb change_verb = {
        "change-passphrase", "ChangePassphrase", "Old passphrase", true, false, "Failed to change the passphrase",
};
static const KeysVerb add_verb = {
        "add-passphrase", "AddPassphrase", "Existing passphrase", true, true, "Failed to add a passphrase",
};
static const KeysVerb remove_verb = {
        "remove-passphrase",
        "RemovePassphrase",
        "Passphrase to remove",
        false,
        false,
        "Failed to remove the passphrase",
};
static const KeysVerb verify_verb = {
        "verify", "VerifyPassphrase", "Passphrase", false, true, "Failed to verify the passphrase",
};

static int print_slot(uint32_t slot) {
        _cleanup_(json_object_putp) struct json_object *j = NULL;
        struct json_object *v;

        if (arg_json == JSON_OFF) {
                printf("slot: %" PRIu32 "\n", slot);
                return 0;
        }
        j = json_object_new_object();
        v = json_object_new_int64(slot);
        if (!j || !v) {
                json_object_put(v);
                return -ENOMEM;
        }
        if (json_add(j, "slot", v) < 0)
                return -ENOMEM;
        return print_json(j);
}

/* Step: the request, with each passphrase in a pipe whose read end the
 * message carries. Returns an exit status. */
static int build_request(sd_bus *bus, const KeysVerb *verb, const char *source, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_close_ int pass_fd = -EBADF, new_fd = -EBADF;
        int r, status;

        status = acquire_passphrase_fd(verb->prompt, source, &pass_fd);
        if (status != EXIT_OK)
                return status;
        if (verb->new_passphrase) {
                status = acquire_new_passphrase_fd(source, &new_fd);
                if (status != EXIT_OK)
                        return status;
        }

        r = sd_bus_message_new_method_call(bus, &m, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, verb->method);
        if (r >= 0)
                r = sd_bus_message_sensitive(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", source);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', NULL, 0);
        if (r >= 0 && verb->new_passphrase)
                r = sd_bus_message_append_array(m, 'y', NULL, 0);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        /* sd-bus duplicates the fds into the message. */
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}", "passphrase-fd", "h", pass_fd);
        if (r >= 0 && verb->new_passphrase)
                r = sd_bus_message_append(m, "{sv}", "new-passphrase-fd", "h", new_fd);
        if (r >= 0 && verb->new_passphrase && arg_pbkdf_iterations > 0)
                r = sd_bus_message_append(m, "{sv}", "pbkdf-iterations", "u", arg_pbkdf_iterations);
        if (r >= 0 && arg_force)
                r = sd_bus_message_append(m, "{sv}", "force", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build %s request: %m", verb->method);

        *ret = TAKE_PTR(m);
        return EXIT_OK;
}

static int run_keys_verb(const KeysVerb *verb, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *source = NULL;
        uint32_t slot;
        int r, status;

        if (argc != 2 || isempty(argv[1]))
                return fail(EXIT_USAGE, "%s expects SOURCE.", verb->name);

        status = source_from_arg(argv[1], &source);
        if (status != EXIT_OK)
                return status;
        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        /* The passphrases go as fds or not at all (see passphrase.h). */
        status = require_fd_passing(bus, verb->name);
        if (status != EXIT_OK)
                return status;

        status = build_request(bus, verb, source, &m);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call(bus, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus(verb->failure, &error, r);
        if (!verb->prints_slot)
                return EXIT_OK;

        r = sd_bus_message_read(reply, "u", &slot);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse %s reply: %m", verb->method);
        r = print_slot(slot);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
        return EXIT_OK;
}

int verb_change_passphrase(int argc, char **argv) {
        return run_keys_verb(&change_verb, argc, argv);
}

int verb_add_passphrase(int argc, char **argv) {
        return run_keys_verb(&add_verb, argc, argv);
}

int verb_remove_passphrase(int argc, char **argv) {
        return run_keys_verb(&remove_verb, argc, argv);
}

int verb_verify(int argc, char **argv) {
        return run_keys_verb(&verify_verb, argc, argv);
}
