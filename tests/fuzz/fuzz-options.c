/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* libFuzzer target for daemon/options.c: the a{sv} option dictionaries of
 * Attach, Detach, Probe, Resize, Rearm and the four key management
 * methods (three option sets), which come straight from any bus client.
 *
 * The input is not a wire-format message (sd-bus's own parser is systemd's
 * business) but a recipe for one: a sequence of entries, each appended
 * into a real sd_bus_message exactly as a client would send it.  The
 * message is sealed, and each of the parsers reads it in turn.
 *
 *   entry := KEY TYPE VALUE
 *   KEY   := byte; % 14 picks target, bus, mode, read-only, passphrase-fd,
 *            timeout, "", serial, discard, allow-shrink,
 *            pbkdf-iterations, force, new-passphrase-fd or (13) a
 *            literal: LEN (% 32) then LEN bytes
 *   TYPE  := byte; % 9 picks s b u h i x y as v
 *   VALUE := s:  LEN (% 64) then LEN bytes (a NUL ends the string early)
 *            b, y: 1 byte    u, i: 4 bytes    x: 8 bytes
 *            h:  1 byte % 8 picks the kind of fd (pipe read end, pipe
 *                write end, memfd, /dev/null, a directory, a socket, a
 *                read-only regular file, a write-only regular file)
 *            as: COUNT (% 4) strings as for s
 *            v:  a variant holding a variant of s, u or b (one byte % 3,
 *                then that value)
 *   At most 16 entries; a truncated last entry is dropped.
 *
 * Checks, against an independent model of the documented rules (README
 * "Attach … options", options.h):
 *   - each parser succeeds exactly when the model says so;
 *   - success: the fields are what the model computed (bus always set and
 *     valid, target consistent with the bus, mode valid, read-only,
 *     serial and discard as given, passphrase-fd our own dup of the very
 *     file that was sent; allow-shrink as given);
 *   - failure: InvalidArgs with -EINVAL (or a bare -ENOMEM), and the
 *     output parameter left untouched;
 *   - no fd leaks: as many fds are open after the input as before. */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "errors.h"
#include "options.h"
#include "passphrase.h"
#include "util.h"
#include "volume-id.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define MAX_ENTRIES 16
#define MAX_AS      4

static sd_bus *bus;
static uint64_t cookie = 1;
static int fd_scan_end;

int LLVMFuzzerInitialize(_unused_ int *argc, _unused_ char ***argv) {
        int sv[2];

        /* As tests/unit/test-options.c: a started bus object on one end of
         * a socketpair, enough for sd-bus to create and seal messages (with
         * fds) without a bus daemon.  It lives for the whole process. */
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        CHECK(sd_bus_new(&bus) == 0);
        CHECK(sd_bus_set_fd(bus, sv[0], sv[0]) == 0);
        CHECK(sd_bus_negotiate_fds(bus, true) >= 0);
        CHECK(sd_bus_start(bus) >= 0);

        /* fds are handed out lowest-free first, and one input holds at most
         * about twenty at a time (16 entries, each with at most our fd, the
         * message's dup and the parser's dup): counting up to the lowest
         * free number plus 64 sees every fd an input could leak, for a
         * fraction of the cost of scanning the whole table. */
        fd_scan_end = fcntl(0, F_DUPFD_CLOEXEC, 0);
        CHECK(fd_scan_end >= 0);
        close(fd_scan_end);
        fd_scan_end += 64;
        return 0;
}

/* ---- the input reader ---- */

typedef struct Reader {
        const uint8_t *p;
        size_t left;
} Reader;

static bool take(Reader *r, void *buf, size_t n) {
        if (r->left < n)
                return false;
        memcpy(buf, r->p, n);
        r->p += n;
        r->left -= n;
        return true;
}

static bool take_byte(Reader *r, uint8_t *ret) {
        return take(r, ret, 1);
}

/* LEN (% max) then LEN bytes, as a C string: a NUL ends it early, just as
 * a client's C string would end there. */
static bool take_string(Reader *r, unsigned max, char **ret) {
        uint8_t n;
        char *s;

        if (!take_byte(r, &n))
                return false;
        n %= max;
        if (r->left < n)
                return false;
        s = strndup((const char *) r->p, n);
        CHECK(s);
        r->p += n;
        r->left -= n;
        *ret = s;
        return true;
}

/* ---- entries ---- */

typedef enum FdKind {
        FD_PIPE_READ,
        FD_PIPE_WRITE,
        FD_MEMFD,
        FD_DEV_NULL,
        FD_DIRECTORY,
        FD_SOCKET,
        FD_FILE_READ,
        FD_FILE_WRITE,
        _FD_KIND_MAX,
} FdKind;

static const char type_chars[] = { 's', 'b', 'u', 'h', 'i', 'x', 'y', 'A', 'v' }; /* 'A' = "as" */
static const char *const known_keys[] = {
        "target", "bus",     "mode",         "read-only",        "passphrase-fd", "timeout",          "",
        "serial", "discard", "allow-shrink", "pbkdf-iterations", "force",         "new-passphrase-fd"
};

typedef struct Entry {
        char *key;
        char type;        /* one of type_chars */
        char *s;          /* 's' */
        int b;            /* 'b' */
        uint32_t u;       /* 'u' */
        int32_t i;        /* 'i' */
        int64_t x;        /* 'x' */
        uint8_t y;        /* 'y' */
        char *as[MAX_AS]; /* 'A' */
        unsigned n_as;
        char inner;     /* 'v': 's', 'u' or 'b', value in s / u / b */
        FdKind fd_kind; /* 'h' */
        int fd;         /* 'h': ours, closed once appended */
        dev_t fd_dev;
        ino_t fd_ino;
} Entry;

static void entry_done(Entry *e) {
        free(e->key);
        free(e->s);
        for (unsigned k = 0; k < e->n_as; k++)
                free(e->as[k]);
        if (e->fd >= 0)
                close(e->fd);
        *e = (Entry){ .fd = -1 };
}

static int make_fd(FdKind kind) {
        int p[2], fd = -1, mfd;
        char path[64];

        switch (kind) {
        case FD_PIPE_READ:
        case FD_PIPE_WRITE:
                CHECK(pipe2(p, O_CLOEXEC) == 0);
                fd = kind == FD_PIPE_READ ? p[0] : p[1];
                close(kind == FD_PIPE_READ ? p[1] : p[0]);
                break;
        case FD_MEMFD:
                fd = memfd_create("fuzz-passphrase", MFD_CLOEXEC);
                break;
        case FD_DEV_NULL:
                fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                break;
        case FD_DIRECTORY:
                fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                break;
        case FD_SOCKET:
                CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
                fd = p[0];
                close(p[1]);
                break;
        case FD_FILE_READ:
        case FD_FILE_WRITE:
                /* A regular file opened read-only or write-only: a memfd
                 * reopened through /proc with that access mode. */
                mfd = memfd_create("fuzz-file", MFD_CLOEXEC);
                CHECK(mfd >= 0);
                snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
                fd = open(path, (kind == FD_FILE_READ ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
                close(mfd);
                break;
        default:
                abort();
        }
        CHECK(fd >= 0);
        return fd;
}

/* The parser takes any descriptor: what it is may only be looked at after
 * polkit has answered, on a worker (passphrase_fd_kind()). */
static bool fd_kind_valid(FdKind kind) {
        return (unsigned) kind < (unsigned) _FD_KIND_MAX;
}

/* The model's view of passphrase_fd_kind(): the read end of a pipe and
 * memfds (also one reopened read-only through /proc). */
static bool fd_kind_readable(FdKind kind) {
        return kind == FD_PIPE_READ || kind == FD_MEMFD || kind == FD_FILE_READ;
}

static bool read_entry(Reader *r, Entry *e) {
        uint8_t k, t, b;

        *e = (Entry){ .fd = -1 };

        if (!take_byte(r, &k))
                return false;
        k %= ELEMENTSOF(known_keys) + 1;
        if (k < ELEMENTSOF(known_keys)) {
                e->key = strdup(known_keys[k]);
                CHECK(e->key);
        } else if (!take_string(r, 32, &e->key))
                return false;

        if (!take_byte(r, &t))
                return false;
        e->type = type_chars[t % ELEMENTSOF(type_chars)];

        switch (e->type) {
        case 's':
                return take_string(r, 64, &e->s);
        case 'b':
                if (!take_byte(r, &b))
                        return false;
                e->b = b & 1;
                return true;
        case 'u':
                return take(r, &e->u, sizeof e->u);
        case 'i':
                return take(r, &e->i, sizeof e->i);
        case 'x':
                return take(r, &e->x, sizeof e->x);
        case 'y':
                return take_byte(r, &e->y);
        case 'h':
                if (!take_byte(r, &b))
                        return false;
                e->fd_kind = (FdKind) (b % _FD_KIND_MAX);
                return true;
        case 'A':
                if (!take_byte(r, &b))
                        return false;
                for (unsigned n = b % MAX_AS; e->n_as < n; e->n_as++)
                        if (!take_string(r, 64, &e->as[e->n_as]))
                                return false;
                return true;
        case 'v':
                if (!take_byte(r, &b))
                        return false;
                e->inner = "sub"[b % 3];
                if (e->inner == 's')
                        return take_string(r, 64, &e->s);
                if (e->inner == 'u')
                        return take(r, &e->u, sizeof e->u);
                if (!take_byte(r, &b))
                        return false;
                e->b = b & 1;
                return true;
        }
        abort();
}

/* Appends one {sv}; false if sd-bus refuses (invalid UTF-8 in a string). */
static bool append_entry(sd_bus_message *m, Entry *e) {
        const char *sig = e->type == 'A' ? "as" : (const char[]){ e->type, 0 };
        struct stat st;

        if (sd_bus_message_open_container(m, 'e', "sv") < 0 || sd_bus_message_append_basic(m, 's', e->key) < 0 ||
            sd_bus_message_open_container(m, 'v', sig) < 0)
                return false;

        switch (e->type) {
        case 's':
                if (sd_bus_message_append_basic(m, 's', e->s) < 0)
                        return false;
                break;
        case 'b':
                if (sd_bus_message_append_basic(m, 'b', &e->b) < 0)
                        return false;
                break;
        case 'u':
                if (sd_bus_message_append_basic(m, 'u', &e->u) < 0)
                        return false;
                break;
        case 'i':
                if (sd_bus_message_append_basic(m, 'i', &e->i) < 0)
                        return false;
                break;
        case 'x':
                if (sd_bus_message_append_basic(m, 'x', &e->x) < 0)
                        return false;
                break;
        case 'y':
                if (sd_bus_message_append_basic(m, 'y', &e->y) < 0)
                        return false;
                break;
        case 'h':
                e->fd = make_fd(e->fd_kind);
                CHECK(fstat(e->fd, &st) == 0);
                e->fd_dev = st.st_dev;
                e->fd_ino = st.st_ino;
                /* The message takes its own dup; ours goes at once. */
                if (sd_bus_message_append_basic(m, 'h', &e->fd) < 0)
                        return false;
                close(e->fd);
                e->fd = -1;
                break;
        case 'A':
                if (sd_bus_message_open_container(m, 'a', "s") < 0)
                        return false;
                for (unsigned k = 0; k < e->n_as; k++)
                        if (sd_bus_message_append_basic(m, 's', e->as[k]) < 0)
                                return false;
                if (sd_bus_message_close_container(m) < 0)
                        return false;
                break;
        case 'v':
                if (sd_bus_message_open_container(m, 'v', (const char[]){ e->inner, 0 }) < 0)
                        return false;
                if (e->inner == 's' && sd_bus_message_append_basic(m, 's', e->s) < 0)
                        return false;
                if (e->inner == 'u' && sd_bus_message_append_basic(m, 'u', &e->u) < 0)
                        return false;
                if (e->inner == 'b' && sd_bus_message_append_basic(m, 'b', &e->b) < 0)
                        return false;
                if (sd_bus_message_close_container(m) < 0)
                        return false;
                break;
        default:
                abort();
        }

        return sd_bus_message_close_container(m) >= 0 && sd_bus_message_close_container(m) >= 0;
}

/* ---- the model, written from the documentation, not from options.c ---- */

static bool m_target_valid(const char *t) {
        size_t n = strlen(t);

        if (n < 3 || n > 5 || !(startswith(t, "vd") || startswith(t, "sd")))
                return false;
        for (size_t k = 2; k < n; k++)
                if (t[k] < 'a' || t[k] > 'z')
                        return false;
        return true;
}

static bool m_bus_valid(const char *b) {
        return streq(b, "virtio") || streq(b, "scsi") || streq(b, "sata") || streq(b, "usb");
}

static bool m_target_fits(const char *t, const char *b) {
        return startswith(t, streq(b, "virtio") ? "vd" : "sd");
}

/* 1 to 20 of A-Z a-z 0-9 . _ - */
static bool m_serial_valid(const char *s) {
        size_t n = strlen(s);

        if (n < 1 || n > 20)
                return false;
        for (size_t k = 0; k < n; k++) {
                char c = s[k];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

typedef struct AttachModel {
        bool ok;
        const char *target, *bus;
        VolumeMode mode;
        bool read_only, discard;
        const char *serial;
        const Entry *fd_entry;
} AttachModel;

static AttachModel attach_model(const Entry *entries, size_t n) {
        AttachModel a = { .mode = VOLUME_MODE_AUTO };
        bool seen_target = false, seen_bus = false, seen_mode = false, seen_ro = false, seen_fd = false,
             seen_serial = false, seen_discard = false;

        for (size_t k = 0; k < n; k++) {
                const Entry *e = &entries[k];

                if (streq(e->key, "target")) {
                        if (seen_target || e->type != 's' || !m_target_valid(e->s))
                                return a;
                        seen_target = true;
                        a.target = e->s;
                } else if (streq(e->key, "bus")) {
                        if (seen_bus || e->type != 's' || !m_bus_valid(e->s))
                                return a;
                        seen_bus = true;
                        a.bus = e->s;
                } else if (streq(e->key, "mode")) {
                        if (seen_mode || e->type != 's')
                                return a;
                        seen_mode = true;
                        if (streq(e->s, "auto"))
                                a.mode = VOLUME_MODE_AUTO;
                        else if (streq(e->s, "native"))
                                a.mode = VOLUME_MODE_NATIVE;
                        else if (streq(e->s, "cryptsetup"))
                                a.mode = VOLUME_MODE_CRYPTSETUP;
                        else
                                return a;
                } else if (streq(e->key, "read-only")) {
                        if (seen_ro || e->type != 'b')
                                return a;
                        seen_ro = true;
                        a.read_only = e->b;
                } else if (streq(e->key, "passphrase-fd")) {
                        if (seen_fd || e->type != 'h' || !fd_kind_valid(e->fd_kind))
                                return a;
                        seen_fd = true;
                        a.fd_entry = e;
                } else if (streq(e->key, "serial")) {
                        if (seen_serial || e->type != 's' || !m_serial_valid(e->s))
                                return a;
                        seen_serial = true;
                        a.serial = e->s;
                } else if (streq(e->key, "discard")) {
                        if (seen_discard || e->type != 'b')
                                return a;
                        seen_discard = true;
                        a.discard = e->b;
                } else
                        return a;
        }
        /* Discards on a read-only disk: refused. */
        if (a.discard && a.read_only)
                return a;

        /* A target alone implies its bus. */
        if (!a.bus)
                a.bus = !a.target ? "virtio" : startswith(a.target, "vd") ? "virtio" : "scsi";
        if (a.target && !m_target_fits(a.target, a.bus))
                return a;
        a.ok = true;
        return a;
}

static bool resize_model(const Entry *entries, size_t n, bool *ret_allow_shrink) {
        bool seen = false;

        *ret_allow_shrink = false;
        for (size_t k = 0; k < n; k++) {
                const Entry *e = &entries[k];

                if (!streq(e->key, "allow-shrink") || seen || e->type != 'b')
                        return false;
                seen = true;
                *ret_allow_shrink = e->b;
        }
        return true;
}

static bool detach_model(const Entry *entries, size_t n, unsigned *ret_timeout) {
        bool seen = false;

        *ret_timeout = DETACH_TIMEOUT_DEFAULT_SEC;
        for (size_t k = 0; k < n; k++) {
                const Entry *e = &entries[k];

                if (!streq(e->key, "timeout") || seen || e->type != 'u' || e->u > DETACH_TIMEOUT_MAX_SEC)
                        return false;
                seen = true;
                *ret_timeout = e->u;
        }
        return true;
}

/* Rearm: passphrase-fd only. */
static bool rearm_model(const Entry *entries, size_t n, const Entry **ret_fd) {
        *ret_fd = NULL;
        for (size_t k = 0; k < n; k++) {
                const Entry *e = &entries[k];

                if (!streq(e->key, "passphrase-fd") || *ret_fd || e->type != 'h' || !fd_kind_valid(e->fd_kind))
                        return false;
                *ret_fd = e;
        }
        return true;
}

/* The key management methods: passphrase-fd always; new-passphrase-fd and
 * pbkdf-iterations (1 to 10000000) for Change and Add; force (b) for
 * Remove.  Anything else, a repeat or a wrong type: refused. */
typedef struct KeysModel {
        bool ok;
        const Entry *fd, *new_fd;
        uint32_t iterations;
        bool force;
} KeysModel;

static KeysModel keys_model(const Entry *entries, size_t n, bool allow_new, bool allow_force) {
        KeysModel km = {};
        bool seen_iterations = false, seen_force = false;

        for (size_t k = 0; k < n; k++) {
                const Entry *e = &entries[k];

                if (streq(e->key, "passphrase-fd")) {
                        if (km.fd || e->type != 'h' || !fd_kind_valid(e->fd_kind))
                                return km;
                        km.fd = e;
                } else if (allow_new && streq(e->key, "new-passphrase-fd")) {
                        if (km.new_fd || e->type != 'h' || !fd_kind_valid(e->fd_kind))
                                return km;
                        km.new_fd = e;
                } else if (allow_new && streq(e->key, "pbkdf-iterations")) {
                        if (seen_iterations || e->type != 'u' || e->u == 0 || e->u > 10000000U)
                                return km;
                        seen_iterations = true;
                        km.iterations = e->u;
                } else if (allow_force && streq(e->key, "force")) {
                        if (seen_force || e->type != 'b')
                                return km;
                        seen_force = true;
                        km.force = e->b;
                } else
                        return km;
        }
        km.ok = true;
        return km;
}

/* ---- checks ---- */

static void check_fd(int fd, const Entry *e) {
        struct stat st;

        if (!e) {
                CHECK(fd == -1);
                return;
        }
        CHECK(fd >= 3);
        CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
        CHECK(fstat(fd, &st) == 0);
        CHECK(st.st_dev == e->fd_dev && st.st_ino == e->fd_ino);
        CHECK((passphrase_fd_kind(fd) >= 0) == fd_kind_readable(e->fd_kind));
}

static void check_failure(int r, const sd_bus_error *error) {
        CHECK(r < 0);
        if (sd_bus_error_is_set(error)) {
                CHECK(streq(error->name, DBUS_ERROR_INVALID_ARGS));
                CHECK(r == -EINVAL);
                CHECK(error->message);
        } else
                CHECK(r == -ENOMEM);
}

static unsigned count_fds(void) {
        unsigned n = 0;

        for (int fd = 0; fd < fd_scan_end; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

static void run(sd_bus_message *m, const Entry *entries, size_t n) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        AttachOptions o, untouched;
        DetachOptions d, d_untouched;
        ResizeOptions z, z_untouched;
        int r;

        /* Attach. */
        memset(&o, 0xa5, sizeof o);
        untouched = o;
        AttachModel want = attach_model(entries, n);
        CHECK(sd_bus_message_rewind(m, true) >= 0);
        r = attach_options_parse(m, &o, &error);
        if (want.ok) {
                struct stat st;

                CHECK(r == 0);
                CHECK(!sd_bus_error_is_set(&error));
                CHECK(streq_ptr(o.target, want.target));
                CHECK(o.bus && streq(o.bus, want.bus));
                CHECK(bus_valid(o.bus));
                CHECK(!o.target || target_valid_for_bus(o.target, o.bus));
                CHECK(o.mode == want.mode);
                CHECK(o.mode >= 0 && o.mode < _VOLUME_MODE_MAX);
                CHECK(o.read_only == want.read_only);
                CHECK(o.discard == want.discard);
                CHECK(streq_ptr(o.serial, want.serial));
                CHECK(!o.serial || serial_valid(o.serial));
                if (want.fd_entry) {
                        CHECK(o.passphrase_fd >= 3);
                        CHECK(fcntl(o.passphrase_fd, F_GETFD) == FD_CLOEXEC);
                        CHECK(fstat(o.passphrase_fd, &st) == 0);
                        CHECK(st.st_dev == want.fd_entry->fd_dev && st.st_ino == want.fd_entry->fd_ino);
                        CHECK((passphrase_fd_kind(o.passphrase_fd) >= 0) == fd_kind_readable(want.fd_entry->fd_kind));
                } else
                        CHECK(o.passphrase_fd == -1);
                attach_options_done(&o);
        } else {
                check_failure(r, &error);
                CHECK(memcmp(&o, &untouched, sizeof o) == 0);
        }
        sd_bus_error_free(&error);

        /* Detach. */
        unsigned want_timeout;
        bool detach_ok = detach_model(entries, n, &want_timeout);
        memset(&d, 0xa5, sizeof d);
        d_untouched = d;
        CHECK(sd_bus_message_rewind(m, true) >= 0);
        r = detach_options_parse(m, &d, &error);
        if (detach_ok) {
                CHECK(r == 0);
                CHECK(!sd_bus_error_is_set(&error));
                CHECK(d.timeout_sec == want_timeout);
                CHECK(d.timeout_set == (n > 0));
        } else {
                check_failure(r, &error);
                CHECK(memcmp(&d, &d_untouched, sizeof d) == 0);
        }
        sd_bus_error_free(&error);

        /* Resize. */
        bool want_shrink;
        bool resize_ok = resize_model(entries, n, &want_shrink);
        memset(&z, 0xa5, sizeof z);
        z_untouched = z;
        CHECK(sd_bus_message_rewind(m, true) >= 0);
        r = resize_options_parse(m, &z, &error);
        if (resize_ok) {
                CHECK(r == 0);
                CHECK(!sd_bus_error_is_set(&error));
                CHECK(z.allow_shrink == want_shrink);
        } else {
                check_failure(r, &error);
                CHECK(memcmp(&z, &z_untouched, sizeof z) == 0);
        }
        sd_bus_error_free(&error);

        /* Rearm. */
        const Entry *rearm_fd;
        bool rearm_ok = rearm_model(entries, n, &rearm_fd);
        int fd = -2;
        CHECK(sd_bus_message_rewind(m, true) >= 0);
        r = rearm_options_parse(m, &fd, &error);
        if (rearm_ok) {
                CHECK(r == 0);
                CHECK(!sd_bus_error_is_set(&error));
                if (rearm_fd)
                        check_fd(fd, rearm_fd);
                else
                        CHECK(fd < 0 && fd != -2); /* "none" is any negative value */
                if (fd >= 0)
                        close(fd);
        } else {
                check_failure(r, &error);
                CHECK(fd == -2);
        }
        sd_bus_error_free(&error);

        /* The key management methods' three option sets. */
        static const unsigned allowed_sets[] = { 0, KEYS_OPTIONS_NEW, KEYS_OPTIONS_FORCE };
        for (size_t a = 0; a < ELEMENTSOF(allowed_sets); a++) {
                unsigned allowed = allowed_sets[a];
                KeysModel km = keys_model(entries, n, allowed & KEYS_OPTIONS_NEW, allowed & KEYS_OPTIONS_FORCE);
                KeysOptions ko, ko_untouched;

                memset(&ko, 0xa5, sizeof ko);
                ko_untouched = ko;
                CHECK(sd_bus_message_rewind(m, true) >= 0);
                r = keys_options_parse(m, allowed, &ko, &error);
                if (km.ok) {
                        CHECK(r == 0);
                        CHECK(!sd_bus_error_is_set(&error));
                        check_fd(ko.passphrase_fd, km.fd);
                        check_fd(ko.new_passphrase_fd, km.new_fd);
                        CHECK(ko.pbkdf_iterations == km.iterations);
                        CHECK(ko.force == km.force);
                        keys_options_done(&ko);
                } else {
                        check_failure(r, &error);
                        CHECK(memcmp(&ko, &ko_untouched, sizeof ko) == 0);
                }
                sd_bus_error_free(&error);
        }

        /* Probe: no options at all. */
        CHECK(sd_bus_message_rewind(m, true) >= 0);
        r = probe_options_parse(m, &error);
        if (n == 0) {
                CHECK(r >= 0);
                CHECK(!sd_bus_error_is_set(&error));
        } else
                check_failure(r, &error);
        sd_bus_error_free(&error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Entry entries[MAX_ENTRIES];
        size_t n = 0;
        Reader rd = { data, size };
        sd_bus_message *m = NULL;
        unsigned fds_before = count_fds();
        bool ok = true;

        if (size > 4096)
                return 0;

        while (n < MAX_ENTRIES && read_entry(&rd, &entries[n]))
                n++;
        if (n < MAX_ENTRIES)
                entry_done(&entries[n]); /* the partial one, if any */

        CHECK(sd_bus_message_new_method_call(bus, &m, "org.example.LuksVolume1", "/org/example/LuksVolume1",
                                             "org.example.LuksVolume1", "Attach") >= 0);
        if (sd_bus_message_open_container(m, 'a', "{sv}") < 0)
                ok = false;
        for (size_t k = 0; ok && k < n; k++)
                ok = append_entry(m, &entries[k]);
        if (ok)
                ok = sd_bus_message_close_container(m) >= 0;

        /* Refused appends are invalid UTF-8 from the recipe, nothing the
         * daemon could ever receive; skip those inputs. */
        if (ok) {
                CHECK(sd_bus_message_seal(m, cookie++, 0) >= 0);
                run(m, entries, n);
        }

        sd_bus_message_unref(m);
        for (size_t k = 0; k < n; k++)
                entry_done(&entries[k]);

        CHECK(count_fds() == fds_before);
        return 0;
}
