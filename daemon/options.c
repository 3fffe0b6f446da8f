/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>

#include "errors.h"
#include "options.h"
#include "passphrase.h"
#include "util.h"
#include "volume-id.h"

void attach_options_done(AttachOptions *o) {
        free(o->target);
        free(o->bus);
        free(o->serial);
        free(o->request_id);
        if (o->passphrase_fd >= 0)
                close(o->passphrase_fd);
        *o = (AttachOptions){ .passphrase_fd = -1 };
}

/* Reads one variant of the expected type; wrong type → InvalidArgs.  On
 * success *ret is always written (a variant with nothing in it, which
 * read_basic answers with 0 and no value, is a malformed message). */
static int read_variant(sd_bus_message *m, const char *key, char type, void *ret, sd_bus_error *error) {
        const char *contents;
        char t[2] = { type, 0 };
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, t)) {
                sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "Option '%s' must be of type '%s', got '%s'.", key, t,
                                  contents);
                return -EINVAL;
        }

        r = sd_bus_message_enter_container(m, 'v', t);
        if (r < 0)
                return r;
        r = sd_bus_message_read_basic(m, type, ret);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;
        return sd_bus_message_exit_container(m);
}

static int refuse_unknown(const char *key, sd_bus_error *error) {
        /* The key is echoed back to its own sender only; cap it so a
         * megabyte key does not become a megabyte error. */
        size_t n = utf8_truncate_len(key, 64);
        /* Cut on a character boundary: an error text ending in half a
         * UTF-8 sequence cannot be sent at all, and the caller would wait
         * for a reply that never comes. */
        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "Unknown option '%.*s%s'.", (int) n, key,
                                 n < strlen(key) ? "…" : "");
}

/* Drives the dictionary loop; handler returns <0 on error, >0 if it
 * consumed the value, 0 if the key is unknown. */
typedef int (*option_handler_t)(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error);

static int parse_dict(sd_bus_message *m, option_handler_t handler, void *userdata, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        for (;;) {
                const char *key;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;

                r = handler(m, key, userdata, error);
                if (r < 0)
                        return r;
                if (r == 0)
                        return refuse_unknown(key, error);

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(m);
}

typedef struct AttachParse {
        AttachOptions o;
        bool seen_target, seen_bus, seen_mode, seen_ro, seen_fd, seen_serial, seen_discard, seen_header;
} AttachParse;

bool serial_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        return n > 0 && n <= SERIAL_MAX &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int duplicate(const char *key, sd_bus_error *error) {
        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "Option '%s' given more than once.", key);
}

/* A passphrase-carrying fd option (h); the message owns the fd it carries,
 * *ret gets our own duplicate.  What it is (a pipe or memfd) is looked at
 * only once polkit has answered, on a worker (passphrase_fd_kind()):
 * parsing runs on the event loop, before authorization. */
static int read_fd_option(sd_bus_message *m, const char *key, int *ret, sd_bus_error *error) {
        int fd = -EBADF, r;

        r = read_variant(m, key, 'h', &fd, error);
        if (r < 0)
                return r;
        *ret = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        return *ret < 0 ? negative_errno() : 1;
}

static int attach_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        AttachParse *p = userdata;
        const char *s = NULL;
        int b = 0, r;

        if (streq(key, "target")) {
                if (p->seen_target)
                        return duplicate(key, error);
                p->seen_target = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                if (!bus_from_target(s))
                        return sd_bus_error_setf(
                                error, DBUS_ERROR_INVALID_ARGS,
                                "Option 'target' must be 'vd' or 'sd' followed by 1 to 3 lowercase letters.");
                p->o.target = strdup(s);
                return p->o.target ? 1 : -ENOMEM;
        }
        if (streq(key, "bus")) {
                if (p->seen_bus)
                        return duplicate(key, error);
                p->seen_bus = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                if (!bus_valid(s))
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'bus' must be one of virtio, scsi, sata, usb.");
                p->o.bus = strdup(s);
                return p->o.bus ? 1 : -ENOMEM;
        }
        if (streq(key, "mode")) {
                if (p->seen_mode)
                        return duplicate(key, error);
                p->seen_mode = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                p->o.mode = volume_mode_from_string(s);
                if (p->o.mode < 0)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'mode' must be one of auto, native, cryptsetup.");
                return 1;
        }
        if (streq(key, "native-header")) {
                if (p->seen_header)
                        return duplicate(key, error);
                p->seen_header = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                p->o.native_header = native_header_from_string(s);
                if (p->o.native_header < 0)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'native-header' must be one of auto, volume, shim.");
                return 1;
        }
        if (streq(key, "read-only")) {
                if (p->seen_ro)
                        return duplicate(key, error);
                p->seen_ro = true;
                r = read_variant(m, key, 'b', &b, error);
                if (r < 0)
                        return r;
                p->o.read_only = b;
                return 1;
        }
        if (streq(key, "serial")) {
                if (p->seen_serial)
                        return duplicate(key, error);
                p->seen_serial = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                if (!serial_valid(s))
                        return sd_bus_error_setf(
                                error, DBUS_ERROR_INVALID_ARGS,
                                "Option 'serial' must be 1 to %u characters from A-Z, a-z, 0-9, '.', '_' and '-'.",
                                SERIAL_MAX);
                p->o.serial = strdup(s);
                return p->o.serial ? 1 : -ENOMEM;
        }
        if (streq(key, "discard")) {
                if (p->seen_discard)
                        return duplicate(key, error);
                p->seen_discard = true;
                r = read_variant(m, key, 'b', &b, error);
                if (r < 0)
                        return r;
                p->o.discard = b;
                return 1;
        }
        if (streq(key, "passphrase-fd")) {
                if (p->seen_fd)
                        return duplicate(key, error);
                p->seen_fd = true;
                return read_fd_option(m, key, &p->o.passphrase_fd, error);
        }
        if (streq(key, "request-id")) {
                /* Checked further where it is registered (attach-request.c). */
                if (p->o.request_id)
                        return duplicate(key, error);
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                p->o.request_id = strdup(s);
                return p->o.request_id ? 1 : -ENOMEM;
        }
        return 0;
}

int attach_options_parse(sd_bus_message *m, AttachOptions *ret, sd_bus_error *error) {
        AttachParse p = { .o = { .mode = VOLUME_MODE_AUTO, .passphrase_fd = -1 } };
        int r;

        r = parse_dict(m, attach_option, &p, error);
        if (r < 0)
                goto fail;

        if (!p.o.bus) {
                /* A target alone implies its bus ("sdc" → scsi). */
                p.o.bus = strdup(p.o.target ? bus_from_target(p.o.target) : "virtio");
                if (!p.o.bus) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (p.o.target && !target_valid_for_bus(p.o.target, p.o.bus)) {
                r = sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                      "Target '%s' does not fit bus '%s' (virtio uses vdX, the others sdX).",
                                      p.o.target, p.o.bus);
                goto fail;
        }
        /* A guest cannot discard what it cannot write. */
        if (p.o.discard && p.o.read_only) {
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Options 'discard' and 'read-only' exclude each other.");
                goto fail;
        }

        *ret = p.o;
        return 0;

fail:
        attach_options_done(&p.o);
        return r;
}

static int detach_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        DetachOptions *o = userdata;
        uint32_t u = 0;
        int r;

        if (streq(key, "timeout")) {
                if (o->timeout_set)
                        return duplicate(key, error);
                r = read_variant(m, key, 'u', &u, error);
                if (r < 0)
                        return r;
                if (u > DETACH_TIMEOUT_MAX_SEC)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'timeout' must be at most %u seconds.",
                                                 DETACH_TIMEOUT_MAX_SEC);
                o->timeout_sec = u;
                o->timeout_set = true;
                return 1;
        }
        return 0;
}

int detach_options_parse(sd_bus_message *m, DetachOptions *ret, sd_bus_error *error) {
        DetachOptions o = { .timeout_sec = DETACH_TIMEOUT_DEFAULT_SEC };
        int r;

        r = parse_dict(m, detach_option, &o, error);
        if (r < 0)
                return r;
        *ret = o;
        return 0;
}

typedef struct ResizeParse {
        ResizeOptions o;
        bool seen_allow_shrink;
} ResizeParse;

static int resize_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        ResizeParse *p = userdata;
        int b = 0, r;

        if (streq(key, "allow-shrink")) {
                if (p->seen_allow_shrink)
                        return duplicate(key, error);
                p->seen_allow_shrink = true;
                r = read_variant(m, key, 'b', &b, error);
                if (r < 0)
                        return r;
                p->o.allow_shrink = b;
                return 1;
        }
        return 0;
}

int resize_options_parse(sd_bus_message *m, ResizeOptions *ret, sd_bus_error *error) {
        ResizeParse p = {};
        int r;

        r = parse_dict(m, resize_option, &p, error);
        if (r < 0)
                return r;
        *ret = p.o;
        return 0;
}

static int rearm_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        int *ret = userdata;

        if (!streq(key, "passphrase-fd"))
                return 0;
        if (*ret >= 0)
                return duplicate(key, error);
        return read_fd_option(m, key, ret, error);
}

int rearm_options_parse(sd_bus_message *m, int *ret_passphrase_fd, sd_bus_error *error) {
        int fd = -EBADF, r;

        r = parse_dict(m, rearm_option, &fd, error);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        *ret_passphrase_fd = fd;
        return 0;
}

static int no_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        return 0;
}

int probe_options_parse(sd_bus_message *m, sd_bus_error *error) {
        return parse_dict(m, no_option, NULL, error);
}

void keys_options_done(KeysOptions *o) {
        if (o->passphrase_fd >= 0)
                close(o->passphrase_fd);
        if (o->new_passphrase_fd >= 0)
                close(o->new_passphrase_fd);
        *o = (KeysOptions){ .passphrase_fd = -1, .new_passphrase_fd = -1 };
}

typedef struct KeysParse {
        KeysOptions o;
        unsigned allowed;
        bool seen_iterations, seen_force;
} KeysParse;

static int keys_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        KeysParse *p = userdata;
        uint32_t u = 0;
        int b = 0, r;

        if (streq(key, "passphrase-fd")) {
                if (p->o.passphrase_fd >= 0)
                        return duplicate(key, error);
                return read_fd_option(m, key, &p->o.passphrase_fd, error);
        }
        if (streq(key, "new-passphrase-fd") && (p->allowed & KEYS_OPTIONS_NEW)) {
                if (p->o.new_passphrase_fd >= 0)
                        return duplicate(key, error);
                return read_fd_option(m, key, &p->o.new_passphrase_fd, error);
        }
        if (streq(key, "pbkdf-iterations") && (p->allowed & KEYS_OPTIONS_NEW)) {
                if (p->seen_iterations)
                        return duplicate(key, error);
                p->seen_iterations = true;
                r = read_variant(m, key, 'u', &u, error);
                if (r < 0)
                        return r;
                if (u == 0 || u > KEYS_PBKDF_ITERATIONS_MAX)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'pbkdf-iterations' must be from 1 to %u.",
                                                 KEYS_PBKDF_ITERATIONS_MAX);
                p->o.pbkdf_iterations = u;
                return 1;
        }
        if (streq(key, "force") && (p->allowed & KEYS_OPTIONS_FORCE)) {
                if (p->seen_force)
                        return duplicate(key, error);
                p->seen_force = true;
                r = read_variant(m, key, 'b', &b, error);
                if (r < 0)
                        return r;
                p->o.force = b;
                return 1;
        }
        return 0;
}

int keys_options_parse(sd_bus_message *m, unsigned allowed, KeysOptions *ret, sd_bus_error *error) {
        KeysParse p = { .o = { .passphrase_fd = -1, .new_passphrase_fd = -1 }, .allowed = allowed };
        int r;

        r = parse_dict(m, keys_option, &p, error);
        if (r < 0) {
                keys_options_done(&p.o);
                return r;
        }
        *ret = p.o;
        return 0;
}

void stage_options_done(StageOptions *o) {
        free(o->secret_uuid);
        free(o->target);
        free(o->usage);
        free(o->ceph_secret);
        if (o->passphrase_fd >= 0)
                close(o->passphrase_fd);
        *o = (StageOptions){ .passphrase_fd = -1 };
}

static int read_string_once(sd_bus_message *m, const char *key, char **slot, sd_bus_error *error) {
        const char *s = NULL;
        int r;

        if (*slot)
                return duplicate(key, error);
        r = read_variant(m, key, 's', &s, error);
        if (r < 0)
                return r;
        *slot = strdup(s);
        return *slot ? 1 : -ENOMEM;
}

static int stage_option(sd_bus_message *m, const char *key, void *userdata, sd_bus_error *error) {
        StageOptions *o = userdata;
        const char *s = NULL;
        uint32_t u = 0;
        int r;

        if (streq(key, "secret-uuid"))
                return read_string_once(m, key, &o->secret_uuid, error);
        if (streq(key, "target"))
                return read_string_once(m, key, &o->target, error);
        if (streq(key, "usage"))
                return read_string_once(m, key, &o->usage, error);
        if (streq(key, "ceph-secret"))
                return read_string_once(m, key, &o->ceph_secret, error);
        if (streq(key, "timeout")) {
                if (o->timeout_sec != 0)
                        return duplicate(key, error);
                r = read_variant(m, key, 'u', &u, error);
                if (r < 0)
                        return r;
                if (u == 0 || u > STAGE_TIMEOUT_MAX_SEC)
                        return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                                 "Option 'timeout' must be from 1 to %u seconds.",
                                                 STAGE_TIMEOUT_MAX_SEC);
                o->timeout_sec = u;
                return 1;
        }
        if (streq(key, "passphrase-fd")) {
                if (o->passphrase_fd >= 0)
                        return duplicate(key, error);
                return read_fd_option(m, key, &o->passphrase_fd, error);
        }
        if (streq(key, "mode")) {
                if (o->seen_mode)
                        return duplicate(key, error);
                o->seen_mode = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                o->mode = volume_mode_from_string(s);
                if (o->mode != VOLUME_MODE_NATIVE && o->mode != VOLUME_MODE_CRYPTSETUP)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                                "Option 'mode' must be native or cryptsetup (the volume's Mode on "
                                                "the source host).");
                return 1;
        }
        if (streq(key, "native-header")) {
                if (o->seen_header)
                        return duplicate(key, error);
                o->seen_header = true;
                r = read_variant(m, key, 's', &s, error);
                if (r < 0)
                        return r;
                o->native_header = native_header_from_string(s);
                if (o->native_header != NATIVE_HEADER_VOLUME && o->native_header != NATIVE_HEADER_SHIM)
                        return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                                "Option 'native-header' must be volume or shim (the volume's "
                                                "NativeHeader on the source host).");
                return 1;
        }
        if (streq(key, "read-only") || streq(key, "discard")) {
                bool *seen = streq(key, "read-only") ? &o->seen_ro : &o->seen_discard;
                int b = 0;

                if (*seen)
                        return duplicate(key, error);
                *seen = true;
                r = read_variant(m, key, 'b', &b, error);
                if (r < 0)
                        return r;
                *(streq(key, "read-only") ? &o->read_only : &o->discard) = b;
                return 1;
        }
        return 0;
}

int stage_options_parse(sd_bus_message *m, StageOptions *ret, sd_bus_error *error) {
        StageOptions o = { .passphrase_fd = -1, .mode = VOLUME_MODE_NATIVE, .native_header = NATIVE_HEADER_VOLUME };
        int r;

        r = parse_dict(m, stage_option, &o, error);
        if (r < 0) {
                stage_options_done(&o);
                return r;
        }
        if (o.mode == VOLUME_MODE_CRYPTSETUP && (o.secret_uuid || o.seen_header || o.usage))
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "A cryptsetup-mode volume has no secret: options 'secret-uuid', 'usage' and "
                                     "'native-header' are for native mode.");
        else if (o.mode == VOLUME_MODE_NATIVE && o.discard)
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Option 'discard' is for cryptsetup mode (QEMU's LUKS driver passes none on).");
        else if (o.read_only && o.discard)
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Options 'discard' and 'read-only' exclude each other.");
        else if (o.mode == VOLUME_MODE_NATIVE && (!o.secret_uuid || !uuid_valid(o.secret_uuid)))
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Option 'secret-uuid' (the source host's secret UUID, lower case) is required.");
        else if (!o.target || !bus_from_target(o.target) || !target_valid_for_bus(o.target, bus_from_target(o.target)))
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Option 'target' (the disk's target on the source host) is required and must be "
                                     "a disk target name.");
        else if (o.ceph_secret && !uuid_valid(o.ceph_secret))
                r = sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                     "Option 'ceph-secret' must be the UUID (lower case) of the libvirt 'ceph' "
                                     "secret the disk names.");
        if (r < 0) {
                stage_options_done(&o);
                return r;
        }
        *ret = o;
        return 0;
}
