/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The option dictionaries, fed real sd-bus messages: built, sealed and
 * read back exactly as the daemon reads a received call. */
#include <fcntl.h>
#include <glib.h>
#include <sys/socket.h>

#include <systemd/sd-bus.h>

#include "errors.h"
#include "options.h"
#include "passphrase.h"
#include "util.h"

static sd_bus *bus;

static sd_bus_message *new_message(void) {
        sd_bus_message *m = NULL;
        g_assert_cmpint(sd_bus_message_new_method_call(bus, &m, "org.example.LuksVolume1", "/org/example/LuksVolume1",
                                                       "org.example.LuksVolume1", "Attach"),
                        ==, 0);
        return m;
}

static void seal(sd_bus_message *m) {
        static uint64_t cookie = 1;
        g_assert_cmpint(sd_bus_message_seal(m, cookie++, 0), ==, 0);
        g_assert_cmpint(sd_bus_message_rewind(m, true), >=, 0);
}

/* Parses and returns the error name (NULL on success). */
static char *parse_attach(sd_bus_message *m, AttachOptions *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        seal(m);
        int r = attach_options_parse(m, ret, &error);
        /* Every error text must be sendable: D-Bus strings are UTF-8. */
        if (error.message)
                g_assert_true(g_utf8_validate(error.message, -1, NULL));
        char *name = r < 0 ? g_strdup(error.name ? error.name : "errno") : NULL;
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return name;
}

static void test_defaults(void) {
        sd_bus_message *m = new_message();
        AttachOptions o;

        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 0), >=, 0);
        g_assert_null(parse_attach(m, &o));
        g_assert_null(o.target);
        g_assert_cmpstr(o.bus, ==, "virtio");
        g_assert_cmpint(o.mode, ==, VOLUME_MODE_AUTO);
        g_assert_false(o.read_only);
        g_assert_cmpint(o.passphrase_fd, ==, -1);
        g_assert_null(o.serial);
        g_assert_false(o.discard);
        attach_options_done(&o);
}

static void test_all_options(void) {
        sd_bus_message *m = new_message();
        AttachOptions o;
        int p[2];

        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 6, "target", "s", "sdc", "bus", "s", "scsi", "mode", "s",
                                              "native", "read-only", "b", 1, "passphrase-fd", "h", p[0], "serial", "s",
                                              "Ab-9_z.1234567890123"),
                        >=, 0);
        g_assert_null(parse_attach(m, &o));
        g_assert_cmpstr(o.target, ==, "sdc");
        g_assert_cmpstr(o.bus, ==, "scsi");
        g_assert_cmpint(o.mode, ==, VOLUME_MODE_NATIVE);
        g_assert_true(o.read_only);
        g_assert_cmpint(o.passphrase_fd, >=, 0);
        g_assert_cmpint(o.passphrase_fd, !=, p[0]); /* our own dup */
        g_assert_cmpstr(o.serial, ==, "Ab-9_z.1234567890123");
        attach_options_done(&o);
        close(p[0]);
        close(p[1]);
}

static void test_discard(void) {
        sd_bus_message *m = new_message();
        AttachOptions o;

        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 2, "discard", "b", 1, "mode", "s", "cryptsetup"), >=, 0);
        g_assert_null(parse_attach(m, &o));
        g_assert_true(o.discard);
        g_assert_cmpint(o.mode, ==, VOLUME_MODE_CRYPTSETUP);
        attach_options_done(&o);
}

static void test_serial_valid(void) {
        const char *good[] = { "a", "LVKERNEL01", "A-b_c.9", "12345678901234567890" };
        const char *bad[] = { NULL,  "",   "123456789012345678901", "a b", "a/b", "a:b", "ä", "a\n", "a'b", "a\"b",
                              "a<b", "a%b" };
        for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
                g_assert_true(serial_valid(good[i]));
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
                g_assert_false(serial_valid(bad[i]));
}

static void test_target_implies_bus(void) {
        sd_bus_message *m = new_message();
        AttachOptions o;

        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 1, "target", "s", "sdb"), >=, 0);
        g_assert_null(parse_attach(m, &o));
        g_assert_cmpstr(o.bus, ==, "scsi");
        attach_options_done(&o);
}

typedef struct Bad {
        const char *name;
        void (*build)(sd_bus_message *m);
} Bad;

static void b_unknown(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "colour", "s", "red");
}
static void b_target_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "target", "u", 3);
}
static void b_target_value(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "target", "s", "vd'b");
}
static void b_target_long(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "target", "s", "vdabcd");
}
static void b_target_bus_mismatch(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 2, "target", "s", "sdb", "bus", "s", "virtio");
}
static void b_bus_value(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "bus", "s", "ide");
}
static void b_bus_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "bus", "b", 1);
}
static void b_mode_value(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "mode", "s", "fast");
}
static void b_ro_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "read-only", "s", "yes");
}
static void b_fd_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "i", 0);
}
static void b_fd_socket(sd_bus_message *m) {
        int s[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), ==, 0);
        sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "h", s[0]);
        close(s[0]);
        close(s[1]);
}
static void b_fd_dev(sd_bus_message *m) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "h", fd);
        close(fd);
}
static void b_fd_dir(sd_bus_message *m) {
        int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "h", fd);
        close(fd);
}
static void b_fd_writeonly(sd_bus_message *m) {
        int p[2];
        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
        sd_bus_message_append(m, "a{sv}", 1, "passphrase-fd", "h", p[1]);
        close(p[0]);
        close(p[1]);
}
static void b_serial_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "serial", "u", 7);
}
static void b_serial_long(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "serial", "s", "123456789012345678901");
}
static void b_serial_chars(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "serial", "s", "disk 1");
}
static void b_serial_empty(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "serial", "s", "");
}
static void b_serial_twice(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 2, "serial", "s", "a", "serial", "s", "b");
}
static void b_discard_type(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "discard", "s", "unmap");
}
static void b_discard_read_only(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 2, "discard", "b", 1, "read-only", "b", 1);
}
static void b_discard_twice(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 2, "discard", "b", 1, "discard", "b", 0);
}
static void b_duplicate(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 2, "mode", "s", "auto", "mode", "s", "native");
}
static void b_empty_key(sd_bus_message *m) {
        sd_bus_message_append(m, "a{sv}", 1, "", "s", "x");
}
/* The echoed key is capped at 64 bytes; here byte 64 is inside "é". */
static void b_key_utf8_cut(sd_bus_message *m) {
        g_autofree char *k63 = g_strnfill(63, 'k');
        g_autofree char *key = g_strconcat(k63, "é-tail", NULL);
        sd_bus_message_append(m, "a{sv}", 1, key, "s", "x");
}

static const Bad bad[] = {
        { "unknown", b_unknown },
        { "target-type", b_target_type },
        { "target-value", b_target_value },
        { "target-long", b_target_long },
        { "target-bus-mismatch", b_target_bus_mismatch },
        { "bus-value", b_bus_value },
        { "bus-type", b_bus_type },
        { "mode-value", b_mode_value },
        { "read-only-type", b_ro_type },
        { "fd-type", b_fd_type },
        { "serial-type", b_serial_type },
        { "serial-long", b_serial_long },
        { "serial-chars", b_serial_chars },
        { "serial-empty", b_serial_empty },
        { "serial-twice", b_serial_twice },
        { "discard-type", b_discard_type },
        { "discard-read-only", b_discard_read_only },
        { "discard-twice", b_discard_twice },
        { "duplicate", b_duplicate },
        { "empty-key", b_empty_key },
        { "key-utf8-cut", b_key_utf8_cut },
};

static void test_bad(gconstpointer data) {
        const Bad *b = data;
        sd_bus_message *m = new_message();
        AttachOptions o = { .passphrase_fd = -1 };

        b->build(m);
        g_autofree char *err = parse_attach(m, &o);
        g_assert_cmpstr(err, ==, DBUS_ERROR_INVALID_ARGS);
}

/* What a passphrase descriptor is must not be looked at while parsing (on
 * the event loop, before polkit): the parser takes any descriptor, and the
 * worker's passphrase_fd_kind() refuses all of these once authorized. */
static const Bad not_passphrase_fds[] = {
        { "socket", b_fd_socket },
        { "chardev", b_fd_dev },
        { "directory", b_fd_dir },
        { "write-only", b_fd_writeonly },
};

static void test_fd_kind_later(gconstpointer data) {
        const Bad *b = data;
        sd_bus_message *m = new_message();
        AttachOptions o = { .passphrase_fd = -1 };

        b->build(m);
        g_autofree char *err = parse_attach(m, &o);
        g_assert_null(err);
        g_assert_cmpint(o.passphrase_fd, >=, 0);
        g_assert_cmpint(passphrase_fd_kind(o.passphrase_fd), ==, -EBADFD);
        attach_options_done(&o);
}

static void test_detach(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m;
        DetachOptions o;

        m = new_message();
        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 0), >=, 0);
        seal(m);
        g_assert_cmpint(detach_options_parse(m, &o, &error), ==, 0);
        g_assert_cmpuint(o.timeout_sec, ==, DETACH_TIMEOUT_DEFAULT_SEC);
        sd_bus_message_unref(m);

        m = new_message();
        g_assert_cmpint(sd_bus_message_append(m, "a{sv}", 1, "timeout", "u", 5), >=, 0);
        seal(m);
        g_assert_cmpint(detach_options_parse(m, &o, &error), ==, 0);
        g_assert_cmpuint(o.timeout_sec, ==, 5);
        sd_bus_message_unref(m);

        const struct { const char *sig; } cases[] = { { "s" }, { "x" } };
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                m = new_message();
                if (streq(cases[i].sig, "s"))
                        sd_bus_message_append(m, "a{sv}", 1, "timeout", "s", "5");
                else
                        sd_bus_message_append(m, "a{sv}", 1, "timeout", "x", (int64_t) 5);
                seal(m);
                g_assert_cmpint(detach_options_parse(m, &o, &error), <, 0);
                g_assert_cmpstr(error.name, ==, DBUS_ERROR_INVALID_ARGS);
                sd_bus_error_free(&error);
                sd_bus_message_unref(m);
        }

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "timeout", "u", DETACH_TIMEOUT_MAX_SEC + 1);
        seal(m);
        g_assert_cmpint(detach_options_parse(m, &o, &error), <, 0);
        g_assert_cmpstr(error.name, ==, DBUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "force", "b", 1);
        seal(m);
        g_assert_cmpint(detach_options_parse(m, &o, &error), <, 0);
        g_assert_cmpstr(error.name, ==, DBUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
}

static void test_resize(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        ResizeOptions o;
        sd_bus_message *m;

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 0);
        seal(m);
        g_assert_cmpint(resize_options_parse(m, &o, &error), ==, 0);
        g_assert_false(o.allow_shrink);
        sd_bus_message_unref(m);

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "allow-shrink", "b", 1);
        seal(m);
        g_assert_cmpint(resize_options_parse(m, &o, &error), ==, 0);
        g_assert_true(o.allow_shrink);
        sd_bus_message_unref(m);

        const char *sigs[] = { "s", "u", "twice", "unknown" };
        for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++) {
                m = new_message();
                if (streq(sigs[i], "s"))
                        sd_bus_message_append(m, "a{sv}", 1, "allow-shrink", "s", "yes");
                else if (streq(sigs[i], "u"))
                        sd_bus_message_append(m, "a{sv}", 1, "allow-shrink", "u", 1);
                else if (streq(sigs[i], "twice"))
                        sd_bus_message_append(m, "a{sv}", 2, "allow-shrink", "b", 1, "allow-shrink", "b", 1);
                else
                        sd_bus_message_append(m, "a{sv}", 1, "timeout", "u", 5);
                seal(m);
                g_assert_cmpint(resize_options_parse(m, &o, &error), <, 0);
                g_assert_cmpstr(error.name, ==, DBUS_ERROR_INVALID_ARGS);
                sd_bus_error_free(&error);
                sd_bus_message_unref(m);
        }
}

static void test_probe(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = new_message();

        sd_bus_message_append(m, "a{sv}", 0);
        seal(m);
        g_assert_cmpint(probe_options_parse(m, &error), >=, 0);
        sd_bus_message_unref(m);

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "verbose", "b", 1);
        seal(m);
        g_assert_cmpint(probe_options_parse(m, &error), <, 0);
        g_assert_cmpstr(error.name, ==, DBUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
}

/* Parses a keys dictionary; returns the error name (NULL on success). */
static char *parse_keys(sd_bus_message *m, unsigned allowed, KeysOptions *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        seal(m);
        int r = keys_options_parse(m, allowed, ret, &error);
        char *name = r < 0 ? g_strdup(error.name ? error.name : "errno") : NULL;
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return name;
}

static void test_keys(void) {
        KeysOptions o;
        int p[2], q[2];
        char *e;

        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
        g_assert_cmpint(pipe2(q, O_CLOEXEC), ==, 0);

        sd_bus_message *m = new_message();
        sd_bus_message_append(m, "a{sv}", 0);
        g_assert_null(parse_keys(m, 0, &o));
        g_assert_cmpint(o.passphrase_fd, ==, -1);
        g_assert_cmpint(o.new_passphrase_fd, ==, -1);
        g_assert_cmpuint(o.pbkdf_iterations, ==, 0);
        g_assert_false(o.force);
        keys_options_done(&o);

        /* Change/Add: both fds and the iterations. */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 3, "passphrase-fd", "h", p[0], "new-passphrase-fd", "h", q[0],
                              "pbkdf-iterations", "u", 5000);
        g_assert_null(parse_keys(m, KEYS_OPTIONS_NEW, &o));
        g_assert_cmpint(o.passphrase_fd, >=, 0);
        g_assert_cmpint(o.passphrase_fd, !=, p[0]);
        g_assert_cmpint(o.new_passphrase_fd, >=, 0);
        g_assert_cmpuint(o.pbkdf_iterations, ==, 5000);
        keys_options_done(&o);
        g_assert_cmpint(o.passphrase_fd, ==, -1);

        /* Remove: force. */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "force", "b", 1);
        g_assert_null(parse_keys(m, KEYS_OPTIONS_FORCE, &o));
        g_assert_true(o.force);
        keys_options_done(&o);

        /* Each method refuses what is not its own. */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "force", "b", 1);
        e = parse_keys(m, KEYS_OPTIONS_NEW, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "new-passphrase-fd", "h", q[0]);
        e = parse_keys(m, KEYS_OPTIONS_FORCE, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "pbkdf-iterations", "u", 5000);
        e = parse_keys(m, 0, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);

        /* Bad values, types and duplicates. */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "pbkdf-iterations", "u", 0);
        e = parse_keys(m, KEYS_OPTIONS_NEW, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "pbkdf-iterations", "u", KEYS_PBKDF_ITERATIONS_MAX + 1);
        e = parse_keys(m, KEYS_OPTIONS_NEW, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "force", "s", "yes");
        e = parse_keys(m, KEYS_OPTIONS_FORCE, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 2, "passphrase-fd", "h", p[0], "passphrase-fd", "h", q[0]);
        e = parse_keys(m, 0, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);
        /* A write end is no passphrase source: taken while parsing, refused
         * by the worker once authorized (passphrase_fd_kind()). */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 1, "new-passphrase-fd", "h", q[1]);
        e = parse_keys(m, KEYS_OPTIONS_NEW, &o);
        g_assert_null(e);
        g_assert_cmpint(passphrase_fd_kind(o.new_passphrase_fd), ==, -EBADFD);
        keys_options_done(&o);

        close(p[0]);
        close(p[1]);
        close(q[0]);
        close(q[1]);
}

/* StageIncoming's options (stage.c). */
static char *parse_stage(sd_bus_message *m, StageOptions *ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        seal(m);
        int r = stage_options_parse(m, ret, &error);
        char *name = r < 0 ? g_strdup(error.name ? error.name : "errno") : NULL;
        sd_bus_error_free(&error);
        sd_bus_message_unref(m);
        return name;
}

static void test_stage(void) {
        const char *uuid = "0b6f9d3c-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
        StageOptions o;
        int p[2];
        char *e;

        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);

        sd_bus_message *m = new_message();
        sd_bus_message_append(m, "a{sv}", 5, "secret-uuid", "s", uuid, "target", "s", "sdb", "usage", "s", "u",
                              "timeout", "u", 30, "passphrase-fd", "h", p[0]);
        g_assert_null(parse_stage(m, &o));
        g_assert_cmpstr(o.secret_uuid, ==, uuid);
        g_assert_cmpstr(o.target, ==, "sdb");
        g_assert_cmpstr(o.usage, ==, "u");
        g_assert_cmpuint(o.timeout_sec, ==, 30);
        g_assert_cmpint(o.passphrase_fd, >=, 0);
        g_assert_cmpint(o.passphrase_fd, !=, p[0]);
        stage_options_done(&o);
        g_assert_cmpint(o.passphrase_fd, ==, -1);
        g_assert_null(o.secret_uuid);

        m = new_message();
        sd_bus_message_append(m, "a{sv}", 2, "secret-uuid", "s", uuid, "target", "s", "vdc");
        g_assert_null(parse_stage(m, &o));
        g_assert_cmpuint(o.timeout_sec, ==, 0);
        g_assert_null(o.usage);
        g_assert_cmpint(o.passphrase_fd, ==, -1);
        stage_options_done(&o);

        /* Refused: each required one missing, bad values, wrong types,
         * duplicates, unknown keys, the timeout's range. */
        struct {
                const char *what;
                int n;
                const char *k1, *t1;
                const void *v1;
                const char *k2, *t2;
                const void *v2;
                const char *k3, *t3;
                const void *v3;
        } refused[] = {
                { "no secret-uuid", 1, "target", "s", "sdb" },
                { "no target", 1, "secret-uuid", "s", uuid },
                { "upper-case uuid", 2, "secret-uuid", "s", "0B6F9D3C-1A2B-4C3D-8E4F-5A6B7C8D9E0F", "target", "s",
                  "sdb" },
                { "not a uuid", 2, "secret-uuid", "s", "nope", "target", "s", "sdb" },
                { "bad target", 2, "secret-uuid", "s", uuid, "target", "s", "hda" },
                { "target twice", 3, "secret-uuid", "s", uuid, "target", "s", "sdb", "target", "s", "sdc" },
                { "unknown", 3, "secret-uuid", "s", uuid, "target", "s", "sdb", "bus", "s", "scsi" },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(refused); i++) {
                m = new_message();
                if (refused[i].n == 1)
                        sd_bus_message_append(m, "a{sv}", 1, refused[i].k1, refused[i].t1, refused[i].v1);
                else if (refused[i].n == 2)
                        sd_bus_message_append(m, "a{sv}", 2, refused[i].k1, refused[i].t1, refused[i].v1, refused[i].k2,
                                              refused[i].t2, refused[i].v2);
                else
                        sd_bus_message_append(m, "a{sv}", 3, refused[i].k1, refused[i].t1, refused[i].v1, refused[i].k2,
                                              refused[i].t2, refused[i].v2, refused[i].k3, refused[i].t3,
                                              refused[i].v3);
                e = parse_stage(m, &o);
                if (g_strcmp0(e, DBUS_ERROR_INVALID_ARGS) != 0)
                        g_error("%s: expected InvalidArgs, got %s", refused[i].what, e ? e : "success");
                g_free(e);
        }
        /* Since 0.3: the source's mode and header.  Native, the volume's
         * own header, read-write by default; cryptsetup mode without a
         * secret. */
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 2, "secret-uuid", "s", uuid, "target", "s", "sdb");
        g_assert_null(parse_stage(m, &o));
        g_assert_cmpint(o.mode, ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(o.native_header, ==, NATIVE_HEADER_VOLUME);
        g_assert_false(o.read_only);
        g_assert_false(o.discard);
        stage_options_done(&o);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 4, "secret-uuid", "s", uuid, "target", "s", "sdb", "native-header", "s",
                              "shim", "read-only", "b", 1);
        g_assert_null(parse_stage(m, &o));
        g_assert_cmpint(o.native_header, ==, NATIVE_HEADER_SHIM);
        g_assert_true(o.read_only);
        stage_options_done(&o);
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 3, "target", "s", "vdb", "mode", "s", "cryptsetup", "discard", "b", 1);
        g_assert_null(parse_stage(m, &o));
        g_assert_cmpint(o.mode, ==, VOLUME_MODE_CRYPTSETUP);
        g_assert_null(o.secret_uuid);
        g_assert_true(o.discard);
        stage_options_done(&o);
        struct {
                const char *what;
                sd_bus_message *m;
        } refused_modes[] = {
                { "cryptsetup with a secret", new_message() },
                { "cryptsetup with a header", new_message() },
                { "mode auto", new_message() },
                { "header auto", new_message() },
                { "native discard", new_message() },
                { "cryptsetup read-only discard", new_message() },
                { "mode twice", new_message() },
        };
        sd_bus_message_append(refused_modes[0].m, "a{sv}", 3, "target", "s", "sdb", "mode", "s", "cryptsetup",
                              "secret-uuid", "s", uuid);
        sd_bus_message_append(refused_modes[1].m, "a{sv}", 3, "target", "s", "sdb", "mode", "s", "cryptsetup",
                              "native-header", "s", "volume");
        sd_bus_message_append(refused_modes[2].m, "a{sv}", 3, "target", "s", "sdb", "secret-uuid", "s", uuid, "mode",
                              "s", "auto");
        sd_bus_message_append(refused_modes[3].m, "a{sv}", 3, "target", "s", "sdb", "secret-uuid", "s", uuid,
                              "native-header", "s", "auto");
        sd_bus_message_append(refused_modes[4].m, "a{sv}", 3, "target", "s", "sdb", "secret-uuid", "s", uuid, "discard",
                              "b", 1);
        sd_bus_message_append(refused_modes[5].m, "a{sv}", 4, "target", "s", "sdb", "mode", "s", "cryptsetup",
                              "read-only", "b", 1, "discard", "b", 1);
        sd_bus_message_append(refused_modes[6].m, "a{sv}", 3, "target", "s", "sdb", "mode", "s", "cryptsetup", "mode",
                              "s", "cryptsetup");
        for (size_t i = 0; i < G_N_ELEMENTS(refused_modes); i++) {
                e = parse_stage(refused_modes[i].m, &o);
                if (g_strcmp0(e, DBUS_ERROR_INVALID_ARGS) != 0)
                        g_error("%s: expected InvalidArgs, got %s", refused_modes[i].what, e ? e : "success");
                g_free(e);
        }

        const uint32_t timeouts[] = { 0, 86401 };
        for (size_t i = 0; i < G_N_ELEMENTS(timeouts); i++) {
                m = new_message();
                sd_bus_message_append(m, "a{sv}", 3, "secret-uuid", "s", uuid, "target", "s", "sdb", "timeout", "u",
                                      timeouts[i]);
                e = parse_stage(m, &o);
                g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
                g_free(e);
        }
        m = new_message();
        sd_bus_message_append(m, "a{sv}", 3, "secret-uuid", "s", uuid, "target", "s", "sdb", "timeout", "s", "30");
        e = parse_stage(m, &o);
        g_assert_cmpstr(e, ==, DBUS_ERROR_INVALID_ARGS);
        g_free(e);

        close(p[0]);
        close(p[1]);
}

int main(int argc, char *argv[]) {
        int sv[2];

        g_test_init(&argc, &argv, NULL);

        /* A started (not connected to anything real) bus object: enough
         * for sd-bus to create and seal messages. */
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        g_assert_cmpint(sd_bus_new(&bus), ==, 0);
        g_assert_cmpint(sd_bus_set_fd(bus, sv[0], sv[0]), ==, 0);
        g_assert_cmpint(sd_bus_negotiate_fds(bus, true), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);

        g_test_add_func("/options/defaults", test_defaults);
        g_test_add_func("/options/all", test_all_options);
        g_test_add_func("/options/target-implies-bus", test_target_implies_bus);
        g_test_add_func("/options/discard", test_discard);
        g_test_add_func("/options/serial-valid", test_serial_valid);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *name = g_strdup_printf("/options/bad/%s", bad[i].name);
                g_test_add_data_func(name, &bad[i], test_bad);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(not_passphrase_fds); i++) {
                g_autofree char *name = g_strdup_printf("/options/fd-kind-after-polkit/%s", not_passphrase_fds[i].name);
                g_test_add_data_func(name, &not_passphrase_fds[i], test_fd_kind_later);
        }
        g_test_add_func("/options/detach", test_detach);
        g_test_add_func("/options/resize", test_resize);
        g_test_add_func("/options/probe", test_probe);
        g_test_add_func("/options/keys", test_keys);
        g_test_add_func("/options/stage", test_stage);

        int r = g_test_run();
        sd_bus_close_unref(bus);
        close(sv[1]);
        return r;
}
