/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Key management on the Manager: ChangePassphrase, AddPassphrase,
 * RemovePassphrase and VerifyPassphrase, for a source attached or not.
 *
 * parse → resolve (worker, window) → authorize (manage-keys) → the
 * caller's guess allowance → job (worker: passphrases from their fds; the
 * header read whole under an exclusive lock, changed by libcryptsetup in
 * the snapshot and written back step by step — luks-keys.c; VerifyPassphrase
 * only reads, under a shared lock) → reply.
 *
 * Only the LUKS header is ever written, never the payload: a guest using
 * the volume meanwhile (QEMU decrypting it with the key it already holds,
 * or a dm-crypt mapping) keeps reading and writing its data.
 *
 * Every one of these methods tells whether a passphrase opens the volume,
 * so each is a guessing oracle: wrong passphrases count against the
 * caller's uid (Manager.key_guesses), KEY_GUESSES_BURST per
 * KEY_GUESSES_WINDOW_SEC, then Busy.  Root is exempt: it can read the
 * header itself and try passphrases offline at full speed, so a limit
 * would protect nothing and only break its scripts; the limit is for the
 * users a polkit rule lets in, who cannot. */

#include <inttypes.h>

#include "errors.h"
#include "luks.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "passphrase.h"
#include "util.h"

typedef enum KeyOperation {
        KEY_CHANGE,
        KEY_ADD,
        KEY_REMOVE,
        KEY_VERIFY,
} KeyOperation;

static const struct {
        const char *name;       /* polkit's "operation" detail */
        const char *passphrase; /* what the first passphrase is called in errors */
        unsigned options;       /* KEYS_OPTIONS_* beyond passphrase-fd */
        bool new_passphrase;    /* takes a second, new passphrase */
        bool reply_slot;        /* replies (u slot) */
} key_ops[] = {
        [KEY_CHANGE] = { "change-passphrase", "old passphrase", KEYS_OPTIONS_NEW, true, false },
        [KEY_ADD] = { "add-passphrase", "existing passphrase", KEYS_OPTIONS_NEW, true, true },
        [KEY_REMOVE] = { "remove-passphrase", "passphrase", KEYS_OPTIONS_FORCE, false, false },
        [KEY_VERIFY] = { "verify-passphrase", "passphrase", 0, false, true },
};

typedef struct KeysOp {
        Call call;

        KeyOperation kind;
        KeysOptions options;
        Passphrase *passphrase, *new_passphrase;
        bool counted; /* an attempt is reserved in Manager.key_guesses */
        uid_t counted_uid;

        int slot;
        int r;
        sd_bus_error error;
} KeysOp;

/* Details beyond source. */
#define KEYS_EXTRA(op) ((const char *const[]){ "operation", key_ops[(op)->kind].name, NULL })

/* Settles the caller's reserved attempt: a failure only for a wrong
 * passphrase. */
static void keys_settle(KeysOp *op, bool failed) {
        manager_guess_end(op->call.manager, op->counted_uid, &op->counted, failed);
}

static void keys_op_free(Call *c) {
        KeysOp *op = (KeysOp *) c;

        keys_settle(op, false);
        keys_options_done(&op->options);
        passphrase_free(op->passphrase);
        passphrase_free(op->new_passphrase);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void keys_end(KeysOp *op) {
        bool wrong = sd_bus_error_has_name(&op->error, LV_ERROR_BAD_PASSPHRASE);

        keys_settle(op, wrong);
        if (wrong)
                log_notice("%s of '%s' by uid %d: wrong passphrase.", key_ops[op->kind].name,
                           op->call.res.source.path ?: op->call.res.source_given, (int) op->call.caller_uid);
        if (sd_bus_error_is_set(&op->error))
                call_reply_error(&op->call, &op->error);
        op->passphrase = passphrase_free(op->passphrase);
        op->new_passphrase = passphrase_free(op->new_passphrase);
        call_unref(&op->call);
}

/* Worker. */
static void keys_job(Call *c) {
        KeysOp *op = (KeysOp *) c;
        Manager *m = c->manager;
        _cleanup_(luks_source_freep) LuksSource *source = NULL;
        unsigned timeout_ms = m->config.source_timeout_sec * 1000U;
        bool derive_counted = false;
        uint64_t cost;
        int r = 0;

        /* What the caller hands over, before the source is locked. */
        if (!op->passphrase)
                r = read_passphrase_option(c, &op->options.passphrase_fd, "passphrase-fd", &op->passphrase, &op->error);
        if (r >= 0 && key_ops[op->kind].new_passphrase && !op->new_passphrase)
                r = read_passphrase_option(c, &op->options.new_passphrase_fd, "new-passphrase-fd", &op->new_passphrase,
                                           &op->error);
        if (r < 0)
                goto finish;

        /* Every one of them derives; nothing is locked yet. */
        r = manager_derive_begin(m, c->caller_uid, &op->error);
        if (r < 0)
                goto finish;
        derive_counted = true;

        if (op->kind == KEY_VERIFY) {
                r = luks_source_open_keys(&c->res.source, false, timeout_ms, &source, &op->error);
                if (r >= 0)
                        r = luks_source_verify(source, op->passphrase, timeout_ms, &op->slot, &cost, &op->error);
                goto finish;
        }

        r = luks_source_open_exclusive(&c->res.source, timeout_ms, &source, &op->error);
        if (r < 0)
                goto finish;
        switch (op->kind) {
        case KEY_CHANGE:
                r = luks_key_change(source, op->passphrase, op->new_passphrase, op->options.pbkdf_iterations,
                                    timeout_ms, &op->slot, &op->error);
                break;
        case KEY_ADD:
                r = luks_key_add(source, op->passphrase, op->new_passphrase, op->options.pbkdf_iterations, timeout_ms,
                                 &op->slot, &op->error);
                break;
        case KEY_REMOVE:
                r = luks_key_remove(source, op->passphrase, op->options.force, timeout_ms, &op->slot, &op->error);
                break;
        case KEY_VERIFY:
                break;
        }

finish:
        /* The source goes first: its exclusive lock is part of the work. */
        source = luks_source_free(source);
        if (derive_counted)
                manager_derive_end(m, c->caller_uid);
        op->passphrase = passphrase_free(op->passphrase);
        op->new_passphrase = passphrase_free(op->new_passphrase);
        op->r = r;
}

static void keys_done(Call *c) {
        KeysOp *op = (KeysOp *) c;
        const char *path = c->res.source.path;
        int uid = (int) c->caller_uid;
        int r;

        if (op->r < 0) {
                keys_end(op);
                return;
        }

        switch (op->kind) {
        case KEY_CHANGE:
                log_info("Passphrase of '%s' changed by uid %d: it is in key slot %d now.", path, uid, op->slot);
                break;
        case KEY_ADD:
                log_info("Key slot %d of '%s' added by uid %d.", op->slot, path, uid);
                break;
        case KEY_REMOVE:
                log_info("Key slot %d of '%s' removed by uid %d%s.", op->slot, path, uid,
                         op->options.force ? " (forced)" : "");
                break;
        case KEY_VERIFY:
                log_debug("Passphrase verified for key slot %d of '%s' by uid %d.", op->slot, path, uid);
                break;
        }

        if (key_ops[op->kind].reply_slot)
                r = sd_bus_reply_method_return(c->message, "u", (uint32_t) op->slot);
        else
                r = sd_bus_reply_method_return(c->message, NULL);
        if (r < 0)
                log_debug_errno(r, "Cannot send the reply: %m");
        c->replied = true;
        keys_end(op);
}

static void keys_authorized(Call *c, bool allowed);

/* Asks polkit about the call's details as they are now. */
static void keys_ask(Call *c) {
        KeysOp *op = (KeysOp *) c;

        if (call_authorize(c, ACTION_MANAGE_KEYS, call_details(c, KEYS_EXTRA(op)), keys_authorized) < 0)
                keys_end(op);
}

static void keys_resolved(Call *c) {
        KeysOp *op = (KeysOp *) c;
        Manager *m = c->manager;
        int r;

        if (sd_bus_error_is_set(&c->res.source_error)) {
                sd_bus_error_copy(&op->error, &c->res.source_error);
                keys_end(op);
                return;
        }
        if (call_details_changed(c, KEYS_EXTRA(op))) {
                keys_ask(c);
                return;
        }

        r = manager_guess_begin(m, c->caller_uid, &op->counted, &op->error);
        if (r < 0) {
                keys_end(op);
                return;
        }
        op->counted_uid = c->caller_uid;

        if (call_submit(c, keys_job, keys_done) < 0)
                keys_end(op);
}

static void keys_authorized(Call *c, bool allowed) {
        KeysOp *op = (KeysOp *) c;

        if (!allowed) {
                keys_end(op);
                return;
        }
        call_after_resolution(c, keys_resolved);
}

/* Exactly one of the argument and its fd option. */
static int check_one_source(const Passphrase *arg, int fd, const char *what, const char *option, sd_bus_error *error) {
        if ((arg != NULL) == (fd >= 0))
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                         "Give the %s either as the argument or as %s (and the argument empty).", what,
                                         option);
        return 0;
}

static int keys_method(sd_bus_message *message, Manager *m, KeyOperation kind, sd_bus_error *error) {
        _cleanup_passphrase_ Passphrase *passphrase = NULL, *new_passphrase = NULL;
        _cleanup_(keys_options_done) KeysOptions options = { .passphrase_fd = -1, .new_passphrase_fd = -1 };
        const char *source;
        KeysOp *op;
        int r;

        r = sd_bus_message_read(message, "s", &source);
        if (r < 0)
                return lv_error_bad_message(error, r);
        r = read_passphrase_arg(message, key_ops[kind].passphrase, &passphrase, error);
        if (r < 0)
                return r;
        if (key_ops[kind].new_passphrase) {
                r = read_passphrase_arg(message, "new passphrase", &new_passphrase, error);
                if (r < 0)
                        return r;
        }
        r = keys_options_parse(message, key_ops[kind].options, &options, error);
        if (r < 0)
                return lv_error_bad_message(error, r);

        r = check_one_source(passphrase, options.passphrase_fd, key_ops[kind].passphrase, "passphrase-fd", error);
        if (r < 0)
                return r;
        if (key_ops[kind].new_passphrase) {
                r = check_one_source(new_passphrase, options.new_passphrase_fd, "new passphrase", "new-passphrase-fd",
                                     error);
                if (r < 0)
                        return r;
        }
        r = source_validate(source, error);
        if (r < 0)
                return r;

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, keys_op_free);
        op->kind = kind;
        op->options = options;
        options = (KeysOptions){ .passphrase_fd = -1, .new_passphrase_fd = -1 };
        op->passphrase = TAKE_PTR(passphrase);
        op->new_passphrase = TAKE_PTR(new_passphrase);
        if (call_resolve_source(&op->call, source, keys_ask) < 0)
                keys_end(op);
        return 1;
}

int method_change_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        return keys_method(message, userdata, KEY_CHANGE, error);
}

int method_add_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        return keys_method(message, userdata, KEY_ADD, error);
}

int method_remove_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        return keys_method(message, userdata, KEY_REMOVE, error);
}

int method_verify_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        return keys_method(message, userdata, KEY_VERIFY, error);
}
