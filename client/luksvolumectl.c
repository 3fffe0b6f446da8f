/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* luksvolumectl: command line client for luksvolumed (org.example.LuksVolume1
 * on the system bus).
 *
 * Conventions in this file:
 *   - small pure helpers return 0 / negative errno and do not log;
 *   - "step" functions (connect, acquire passphrase, resolve, verbs) log
 *     their own failure as one line and return an exit status (0 = OK),
 *     so main() can just return what the verb returned.
 *
 * The passphrase never travels in argv, the environment or the D-Bus
 * message body: it is written into a pipe and the read end is passed as
 * the "passphrase-fd" option, so it never sits in the bus daemon's queues
 * or shows up in a bus monitor. */

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <termios.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "errors.h"
#include "util.h"

#define PROGRAM "luksvolumectl"

#define SERVICE_NAME     "org.example.LuksVolume1"
#define MANAGER_PATH     "/org/example/LuksVolume1"
#define MANAGER_IFACE    "org.example.LuksVolume1"
#define VOLUME_IFACE     "org.example.LuksVolume1.Volume"
#define OBJECT_MANAGER_IFACE "org.freedesktop.DBus.ObjectManager"
#define PROPERTIES_IFACE "org.freedesktop.DBus.Properties"
/* Where volume objects live: MANAGER_PATH/volume/<id> */
#define VOLUME_PATH_PREFIX MANAGER_PATH "/volume/"

/* Same cap as the daemon applies; LUKS itself allows more, but nobody types
 * 8 KiB, and a bounded size guarantees the whole secret fits into the pipe
 * buffer so writing it can never block on a daemon that is not reading. */
#define PASSPHRASE_MAX 8192u

#define USEC_PER_SEC UINT64_C(1000000)
/* Attach runs the LUKS key derivation (seconds with argon2 on slow hosts)
 * and possibly an interactive polkit dialog; the sd-bus default of 25 s is
 * far too short for either. */
#define SLOW_CALL_TIMEOUT_USEC (300 * USEC_PER_SEC)
/* Extra time granted beyond a user-supplied detach --timeout, so the
 * daemon's own timeout fires (with a proper error) before ours does. */
#define DETACH_TIMEOUT_SLACK_USEC (60 * USEC_PER_SEC)

enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
        EXIT_AUTH = 3,
        EXIT_BAD_PASSPHRASE = 4,
        EXIT_NOT_FOUND = 5,
        EXIT_NOT_SUPPORTED = 6,
        EXIT_BUSY = 7,
};

/* Log one "luksvolumectl: …" line (with %m meaning the given error) and
 * evaluate to the exit status. */
#define fail_errno(status, error, fmt, ...)                                     \
        ({                                                                      \
                log_error_errno((error), PROGRAM ": " fmt, ##__VA_ARGS__);      \
                (status);                                                       \
        })
#define fail(status, fmt, ...) fail_errno((status), 0, fmt, ##__VA_ARGS__)

static bool arg_ask_password = true;
static const char *arg_target = NULL;
static const char *arg_bus = NULL;
static const char *arg_mode = NULL;
static bool arg_read_only = false;
static const char *arg_passphrase_file = NULL;
static bool arg_timeout_set = false;
static uint32_t arg_timeout = 0;
static const char *arg_host = NULL;

typedef enum JsonMode {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
} JsonMode;
static JsonMode arg_json = JSON_OFF;

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

/* ───────────────────────── errors → exit status ───────────────────────── */

static const struct {
        const char *name;
        int status;
} error_map[] = {
        { DBUS_ERROR_INVALID_ARGS,                      EXIT_USAGE          },
        { DBUS_ERROR_ACCESS_DENIED,                     EXIT_AUTH           },
        { DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED, EXIT_AUTH          },
        { LV_ERROR_BAD_PASSPHRASE,                      EXIT_BAD_PASSPHRASE },
        { LV_ERROR_NO_SUCH_DOMAIN,                      EXIT_NOT_FOUND      },
        /* Not running is reported like "not found": there is no running
         * guest to act on, and the remedy (start it) is the same one a
         * script needs for a domain it cannot find. */
        { LV_ERROR_DOMAIN_NOT_RUNNING,                  EXIT_NOT_FOUND      },
        { LV_ERROR_NO_SUCH_VOLUME,                      EXIT_NOT_FOUND      },
        /* A volume path the daemon does not export (e.g. detached meanwhile). */
        { SD_BUS_ERROR_UNKNOWN_OBJECT,                  EXIT_NOT_FOUND      },
        { SD_BUS_ERROR_UNKNOWN_INTERFACE,               EXIT_NOT_FOUND      },
        { LV_ERROR_NOT_LUKS,                            EXIT_NOT_SUPPORTED  },
        { LV_ERROR_NOT_SUPPORTED,                       EXIT_NOT_SUPPORTED  },
        /* An older daemon without the method we called. */
        { SD_BUS_ERROR_UNKNOWN_METHOD,                  EXIT_NOT_SUPPORTED  },
        { LV_ERROR_BUSY,                                EXIT_BUSY           },
        { LV_ERROR_ALREADY_ATTACHED,                    EXIT_BUSY           },
        { LV_ERROR_TARGET_IN_USE,                       EXIT_BUSY           },
};

static int exit_status_from_bus_error(const sd_bus_error *error) {
        if (!error || !error->name)
                return EXIT_FAIL;
        for (size_t i = 0; i < ELEMENTSOF(error_map); i++)
                if (streq(error->name, error_map[i].name))
                        return error_map[i].status;
        return EXIT_FAIL;
}

/* Logs "luksvolumectl: WHAT: MESSAGE" (plus a hint for authorization
 * failures) and returns the exit status for the error. */
static int fail_bus(const char *what, const sd_bus_error *error, int r) {
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

/* ─────────────────────────────── strings ─────────────────────────────── */

static int make_absolute(const char *path, char **ret) {
        _cleanup_free_ char *cwd = NULL;
        char *p;

        /* Our working directory means nothing on another host. */
        if (arg_host && path[0] != '/')
                return -EREMOTE;

        /* The daemon runs with "/" as working directory, so a relative
         * SOURCE would silently refer to the wrong file there. Symlinks are
         * left alone: resolving them is the daemon's business. */
        if (path[0] == '/')
                p = strdup(path);
        else {
                cwd = get_current_dir_name();
                if (!cwd)
                        return -errno;
                if (asprintf(&p, "%s/%s", streq(cwd, "/") ? "" : cwd, path) < 0)
                        p = NULL;
        }
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static bool one_of(const char *s, const char *const *list) {
        for (; *list; list++)
                if (streq(s, *list))
                        return true;
        return false;
}

static int parse_u32(const char *s, uint32_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || s[0] == '-' || s[0] == '+' || s[0] == ' ')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0)
                return -errno;
        if (*end != '\0')
                return -EINVAL;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

/* ────────────────────────── property lists ───────────────────────────── */

typedef struct Prop {
        char *name;
        char *value;              /* already formatted for display */
        struct json_object *json; /* the same value, typed, for --json; NULL is JSON null */
} Prop;

typedef struct PropList {
        Prop *items;
        size_t n;
} PropList;

static void prop_list_done(PropList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].name);
                free(l->items[i].value);
                json_object_put(l->items[i].json);
        }
        free(l->items);
        *l = (PropList) {};
}

static const char *prop_list_get(const PropList *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].name, name))
                        return l->items[i].value;
        return NULL;
}

/* Takes ownership of value and json on success only. */
static int prop_list_add(PropList *l, const char *name, char *value, struct json_object *json) {
        Prop *n;
        char *nm;

        nm = strdup(name);
        if (!nm)
                return -ENOMEM;
        n = reallocarray(l->items, l->n + 1, sizeof(Prop));
        if (!n) {
                free(nm);
                return -ENOMEM;
        }
        l->items = n;
        l->items[l->n++] = (Prop) { .name = nm, .value = value, .json = json };
        return 0;
}

/* Position of name in the documented order; unknown names go last. */
static size_t order_rank(const char *name, const char *const *order) {
        size_t i = 0;

        for (; order[i]; i++)
                if (streq(order[i], name))
                        return i;
        return i;
}

static const char *const *sort_order; /* qsort() has no userdata */

static int prop_cmp(const void *a, const void *b) {
        const Prop *x = a, *y = b;
        size_t rx = order_rank(x->name, sort_order), ry = order_rank(y->name, sort_order);

        if (rx != ry)
                return rx < ry ? -1 : 1;
        return strcmp(x->name, y->name);
}

/* Documented keys in contract order, then anything newer alphabetically:
 * stable output for scripts regardless of the daemon's hash order. */
static void prop_list_sort(PropList *l, const char *const *order) {
        sort_order = order;
        if (l->n > 1)
                qsort(l->items, l->n, sizeof(Prop), prop_cmp);
}

/* ──────────────────────────────── JSON ───────────────────────────────── */

/* json_object_object_add() that always consumes val, and says -ENOMEM
 * instead of -1. val may be NULL (JSON null). */
static int json_add(struct json_object *obj, const char *key, struct json_object *val) {
        if (json_object_object_add(obj, key, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

/* json_add() of a new string; NULL s is JSON null. */
static int json_add_string(struct json_object *obj, const char *key, const char *s) {
        struct json_object *v = NULL;

        if (s) {
                v = json_object_new_string(s);
                if (!v)
                        return -ENOMEM;
        }
        return json_add(obj, key, v);
}

/* Adds every property of l to obj, in l's order (json-c keeps insertion
 * order, so the contract order survives into the output). */
static int json_add_props(struct json_object *obj, const PropList *l) {
        for (size_t i = 0; i < l->n; i++) {
                int r = json_add(obj, l->items[i].name, json_object_get(l->items[i].json));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int json_new_props(const PropList *l, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *obj = NULL;
        int r;

        obj = json_object_new_object();
        if (!obj)
                return -ENOMEM;
        r = json_add_props(obj, l);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(obj);
        return 0;
}

/* Prints j as one line (--json, --json=short) or indented (--json=pretty). */
static int print_json(struct json_object *j) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE; /* "/org/…", not "\/org\/…" */
        const char *s;

        flags |= arg_json == JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                                         : JSON_C_TO_STRING_PLAIN;
        s = json_object_to_json_string_ext(j, flags);
        if (!s)
                return -ENOMEM;
        if (puts(s) < 0)
                return errno ? -errno : -EIO;
        return 0;
}

/* ────────────────────────────── variants ─────────────────────────────── */

/* Reads one basic value the message is positioned at; writes its display
 * form to out and returns its typed JSON form in *ret_json (NULL for null:
 * file descriptors have no meaningful JSON value). */
static int format_basic(sd_bus_message *m, char type, FILE *out, struct json_object **ret_json) {
        union {
                uint8_t u8;
                int b;
                int16_t i16;
                uint16_t u16;
                int32_t i32;
                uint32_t u32;
                int64_t i64;
                uint64_t u64;
                double d;
                const char *s;
                int fd;
        } v;
        struct json_object *j = NULL;
        bool null = false;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;

        switch (type) {
        case 'y': fprintf(out, "%" PRIu8, v.u8); j = json_object_new_int64(v.u8); break;
        case 'b': fputs(v.b ? "yes" : "no", out); j = json_object_new_boolean(v.b); break;
        case 'n': fprintf(out, "%" PRIi16, v.i16); j = json_object_new_int64(v.i16); break;
        case 'q': fprintf(out, "%" PRIu16, v.u16); j = json_object_new_int64(v.u16); break;
        case 'i': fprintf(out, "%" PRIi32, v.i32); j = json_object_new_int64(v.i32); break;
        case 'u': fprintf(out, "%" PRIu32, v.u32); j = json_object_new_int64(v.u32); break;
        case 'x': fprintf(out, "%" PRIi64, v.i64); j = json_object_new_int64(v.i64); break;
        case 't': fprintf(out, "%" PRIu64, v.u64); j = json_object_new_uint64(v.u64); break;
        case 'd': fprintf(out, "%g", v.d); j = json_object_new_double(v.d); break;
        case 's': case 'o': case 'g': fputs(v.s, out); j = json_object_new_string(v.s); break;
        case 'h': fprintf(out, "fd %d", v.fd); null = true; break;
        default: return -EOPNOTSUPP;
        }
        if (!j && !null)
                return -ENOMEM;

        *ret_json = j;
        return 0;
}

static bool is_basic_type(char t) {
        return t && strchr("ybnqiuxtdsogh", t);
}

/* Reads the variant the message is positioned at into a display string
 * and a typed JSON value. Basic values and arrays of them are converted;
 * anything fancier (which the v1 contract does not use) is skipped, shown
 * by its signature and given as JSON null. */
static int format_variant(sd_bus_message *m, char **ret, struct json_object **ret_json) {
        _cleanup_(json_object_putp) struct json_object *json = NULL;
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *out = NULL;
        const char *contents;
        size_t size;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        if (type != 'v')
                return -EBADMSG;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;

        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;

        if (is_basic_type(contents[0]) && contents[1] == '\0')
                r = format_basic(m, contents[0], out, &json);
        else if (contents[0] == 'a' && is_basic_type(contents[1]) && contents[2] == '\0') {
                json = json_object_new_array();
                if (!json)
                        return -ENOMEM;
                r = sd_bus_message_enter_container(m, 'a', contents + 1);
                if (r < 0)
                        return r;
                for (bool first = true;; first = false) {
                        struct json_object *element = NULL;

                        r = sd_bus_message_at_end(m, false);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                        if (!first)
                                fputc(' ', out);
                        r = format_basic(m, contents[1], out, &element);
                        if (r < 0)
                                return r;
                        if (json_object_array_add(json, element) < 0) {
                                json_object_put(element);
                                return -ENOMEM;
                        }
                }
                r = sd_bus_message_exit_container(m);
        } else {
                fprintf(out, "(%s)", contents);
                r = sd_bus_message_skip(m, contents);
        }
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        if (fflush(out) != 0 || ferror(out))
                return -ENOMEM;
        fclose(TAKE_PTR(out));
        *ret = TAKE_PTR(buf);
        *ret_json = TAKE_PTR(json);
        return 0;
}

/* Reads an a{sv} (the message positioned at it) into l. */
static int read_prop_list(sd_bus_message *m, PropList *l) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                _cleanup_(json_object_putp) struct json_object *json = NULL;
                _cleanup_free_ char *value = NULL;
                const char *name;

                r = sd_bus_message_read_basic(m, 's', &name);
                if (r < 0)
                        return r;
                r = format_variant(m, &value, &json);
                if (r < 0)
                        return r;
                r = prop_list_add(l, name, value, json);
                if (r < 0)
                        return r;
                TAKE_PTR(value);
                TAKE_PTR(json);

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        return sd_bus_message_exit_container(m);
}

/* ─────────────────────────── volume objects ──────────────────────────── */

typedef struct Volume {
        char *path;
        PropList props;
} Volume;

typedef struct VolumeList {
        Volume *items;
        size_t n;
} VolumeList;

static void volume_list_done(VolumeList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                prop_list_done(&l->items[i].props);
        }
        free(l->items);
        *l = (VolumeList) {};
}

static const char *volume_get(const Volume *v, const char *name) {
        return prop_list_get(&v->props, name);
}

/* Reads "o a{sa{sv}}" (a GetManagedObjects entry body, or InterfacesAdded):
 * the object path and, if the object carries the volume interface, its
 * properties.  *ret_is_volume says whether it did. */
static int read_object_with_interfaces(sd_bus_message *m, const char **ret_path, PropList *props,
                                       bool *ret_is_volume) {
        bool is_volume = false;
        const char *path;
        int r;

        r = sd_bus_message_read_basic(m, 'o', &path);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *iface;

                r = sd_bus_message_read_basic(m, 's', &iface);
                if (r < 0)
                        return r;

                if (streq(iface, VOLUME_IFACE)) {
                        is_volume = true;
                        r = read_prop_list(m, props);
                } else
                        r = sd_bus_message_skip(m, "a{sv}");
                if (r < 0)
                        return r;

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        *ret_path = path;
        *ret_is_volume = is_volume;
        return 0;
}

/* Parses one "oa{sa{sv}}" dict entry body; appends a Volume if the object
 * carries the volume interface. */
static int read_managed_object(sd_bus_message *m, VolumeList *l) {
        _cleanup_(prop_list_done) PropList props = {};
        bool is_volume;
        const char *path;
        int r;

        r = read_object_with_interfaces(m, &path, &props, &is_volume);
        if (r < 0)
                return r;
        if (!is_volume)
                return 0;

        Volume *n = reallocarray(l->items, l->n + 1, sizeof(Volume));
        if (!n)
                return -ENOMEM;
        l->items = n;

        char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        l->items[l->n++] = (Volume) { .path = p, .props = props };
        props = (PropList) {};
        return 0;
}

static int read_managed_objects(sd_bus_message *m, VolumeList *l) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return r;

        while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                r = read_managed_object(m, l);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;

        return sd_bus_message_exit_container(m);
}

/* Step: fetch all volumes. Returns an exit status. */
static int get_volumes(sd_bus *bus, VolumeList *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE,
                               "GetManagedObjects", &error, &reply, NULL);
        if (r < 0)
                return fail_bus("Failed to list volumes", &error, r);

        r = read_managed_objects(reply, ret);
        if (r < 0) {
                volume_list_done(ret);
                return fail_errno(EXIT_FAIL, r, "Failed to parse volume list: %m");
        }
        return EXIT_OK;
}

static bool volume_matches(const Volume *v, const char *domain, const char *target) {
        const char *uuid = volume_get(v, "DomainUUID");

        if (!streq_ptr(volume_get(v, "Target"), target))
                return false;
        /* UUIDs are hex: accept them in whatever case the user pasted. */
        return streq_ptr(volume_get(v, "Domain"), domain) ||
               (uuid && !isempty(uuid) && strcasecmp(uuid, domain) == 0);
}

/* Step, before connecting: checks the syntax of VOLUME-PATH|DOMAIN:TARGET,
 * so usage errors show up even without a bus. */
static int check_volume_spec(const char *spec) {
        const char *colon;

        if (spec[0] == '/') {
                if (!sd_bus_object_path_is_valid(spec))
                        return fail(EXIT_USAGE, "Invalid volume object path: %s", spec);
                return EXIT_OK;
        }

        /* Split at the last colon (see resolve_volume()). */
        colon = strrchr(spec, ':');
        if (!colon || colon == spec || colon[1] == '\0')
                return fail(EXIT_USAGE, "Expected a volume object path or DOMAIN:TARGET, got \"%s\".", spec);
        return EXIT_OK;
}

/* Step: turn a checked VOLUME-PATH or DOMAIN:TARGET into an object path. */
static int resolve_volume(sd_bus *bus, const char *spec, char **ret_path) {
        _cleanup_(volume_list_done) VolumeList volumes = {};
        _cleanup_free_ char *domain = NULL;
        const char *colon, *target, *found = NULL;
        int status;

        if (spec[0] == '/') {
                *ret_path = strdup(spec);
                return *ret_path ? EXIT_OK : fail_errno(EXIT_FAIL, ENOMEM, "Out of memory.");
        }

        /* Split at the last colon: targets ("vdb") never contain one,
         * libvirt domain names may. */
        colon = strrchr(spec, ':');
        domain = strndup(spec, colon - spec);
        if (!domain)
                return fail_errno(EXIT_FAIL, ENOMEM, "Out of memory.");
        target = colon + 1;

        status = get_volumes(bus, &volumes);
        if (status != EXIT_OK)
                return status;

        for (size_t i = 0; i < volumes.n; i++) {
                if (!volume_matches(&volumes.items[i], domain, target))
                        continue;
                if (found)
                        return fail(EXIT_FAIL, "\"%s\" is ambiguous: matches %s and %s.",
                                    spec, found, volumes.items[i].path);
                found = volumes.items[i].path;
        }
        if (!found)
                return fail(EXIT_NOT_FOUND, "No volume is attached as %s to domain %s.", target, domain);

        *ret_path = strdup(found);
        return *ret_path ? EXIT_OK : fail_errno(EXIT_FAIL, ENOMEM, "Out of memory.");
}

/* ───────────────────────────── passphrase ────────────────────────────── */

/* Reads fd to EOF into a PASSPHRASE_MAX+1 sized buffer, verbatim.
 * -E2BIG if there is more than PASSPHRASE_MAX bytes. */
static int read_secret_fd(int fd, char **ret, size_t *ret_len) {
        size_t cap = PASSPHRASE_MAX + 1, n = 0;
        char *buf;

        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;

        while (n < cap) {
                ssize_t k = read(fd, buf + n, cap - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = -errno;
                        erase_and_free(buf, cap);
                        return e;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n > PASSPHRASE_MAX) {
                erase_and_free(buf, cap);
                return -E2BIG;
        }

        *ret = buf;
        *ret_len = n;
        return 0;
}

/* The terminal state to restore; touched by the signal handler, so only
 * async-signal-safe calls (tcsetattr, write, sigaction, raise) use it. */
static volatile sig_atomic_t prompt_tty_fd = -1;
static struct termios prompt_saved_termios, prompt_noecho_termios;

static const int prompt_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU };
static struct sigaction prompt_old_actions[ELEMENTSOF(prompt_signals)];

static void prompt_signal_handler(int sig);

static void prompt_install_handlers(void) {
        struct sigaction sa = { .sa_handler = prompt_signal_handler };

        /* No SA_RESTART: read() returns EINTR after a stop/continue, and we
         * simply retry it with echo disabled again. */
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < ELEMENTSOF(prompt_signals); i++)
                (void) sigaction(prompt_signals[i], &sa, &prompt_old_actions[i]);
}

static void prompt_restore_handlers(void) {
        for (size_t i = 0; i < ELEMENTSOF(prompt_signals); i++)
                (void) sigaction(prompt_signals[i], &prompt_old_actions[i], NULL);
}

static void prompt_signal_handler(int sig) {
        struct sigaction dfl = { .sa_handler = SIG_DFL }, self = { .sa_handler = prompt_signal_handler };
        int saved_errno = errno, fd = prompt_tty_fd;
        bool stop = sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        sigset_t ss, pending;

        /* Never leave the user's terminal with echo off: put it back, then
         * die (or stop) the way the signal would have made us. */
        if (fd >= 0) {
                (void) tcsetattr(fd, TCSAFLUSH, &prompt_saved_termios);
                if (!stop)
                        (void) !write(fd, "\n", 1);
        }

        sigemptyset(&dfl.sa_mask);
        (void) sigaction(sig, &dfl, NULL);
        sigemptyset(&ss);
        sigaddset(&ss, sig);
        /* The tcsetattr() above raises SIGTTOU itself when we run in the
         * background; if the signal is pending again, unblocking delivers
         * it, and raising another would stop us twice. */
        (void) sigpending(&pending);
        (void) sigprocmask(SIG_UNBLOCK, &ss, NULL);
        if (!sigismember(&pending, sig))
                (void) raise(sig);

        /* Only stop signals get here, once we are continued: resume the
         * prompt with echo disabled again. */
        sigemptyset(&self.sa_mask);
        (void) sigaction(sig, &self, NULL);
        if (fd >= 0)
                (void) tcsetattr(fd, TCSAFLUSH, &prompt_noecho_termios);
        errno = saved_errno;
}

/* tcsetattr() that survives being stopped and continued half-way: when
 * we were started in the background it raises SIGTTOU, and after "fg" the
 * call itself fails with EINTR. */
static int tty_set(int fd, const struct termios *t) {
        while (tcsetattr(fd, TCSAFLUSH, t) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* Prompts on /dev/tty with echo off; reads one line and strips its newline
 * (the Enter key is not part of the passphrase). */
static int prompt_passphrase(const char *source, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        size_t cap = PASSPHRASE_MAX + 1, n = 0;
        bool got_newline = false, too_long = false;
        char *buf;
        int r = 0;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (tcgetattr(fd, &prompt_saved_termios) < 0)
                return -errno;

        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;

        prompt_noecho_termios = prompt_saved_termios;
        prompt_noecho_termios.c_lflag &= ~(tcflag_t) (ECHO | ECHOE | ECHOK | ECHONL);
        prompt_noecho_termios.c_lflag |= ICANON | ISIG;

        prompt_tty_fd = fd;
        prompt_install_handlers();

        r = tty_set(fd, &prompt_noecho_termios);
        if (r < 0)
                goto finish;

        (void) !write(fd, "Passphrase for ", strlen("Passphrase for "));
        (void) !write(fd, source, strlen(source));
        (void) !write(fd, ": ", 2);

        while (!got_newline) {
                char c;
                ssize_t k = read(fd, &c, 1);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto finish;
                }
                if (k == 0) {
                        /* ^D: the user gave up. */
                        r = -ECANCELED;
                        goto finish;
                }
                if (c == '\n')
                        got_newline = true;
                else if (n < PASSPHRASE_MAX)
                        buf[n++] = c;
                else
                        too_long = true; /* keep draining the line */
        }
        if (too_long)
                r = -E2BIG;

finish:
        (void) tty_set(fd, &prompt_saved_termios);
        prompt_restore_handlers();
        prompt_tty_fd = -1;
        /* Echo was off, so the user's Enter did not move the cursor. */
        (void) !write(fd, "\n", 1);

        if (r < 0) {
                erase_and_free(buf, cap);
                return r;
        }
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* Step: get the passphrase from wherever the options say. */
static int acquire_passphrase(const char *source, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        const char *what;
        int r;

        if (arg_passphrase_file && streq(arg_passphrase_file, "-")) {
                /* Reading to EOF from a terminal would echo the secret. */
                if (isatty(STDIN_FILENO))
                        return fail(EXIT_USAGE, "Refusing to read the passphrase from a terminal with echo on; "
                                    "omit --passphrase-file to be prompted.");
                what = "standard input";
                r = read_secret_fd(STDIN_FILENO, ret, ret_len);
        } else if (arg_passphrase_file) {
                what = arg_passphrase_file;
                fd = open(arg_passphrase_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return fail_errno(EXIT_FAIL, errno, "Failed to open passphrase file %s: %m",
                                          arg_passphrase_file);
                r = read_secret_fd(fd, ret, ret_len);
        } else {
                if (!arg_ask_password)
                        return fail(EXIT_USAGE, "No passphrase given: use --passphrase-file "
                                    "(--no-ask-password forbids prompting).");
                if (!isatty(STDIN_FILENO))
                        return fail(EXIT_USAGE, "No passphrase given and standard input is not a terminal: "
                                    "use --passphrase-file FILE or --passphrase-file -.");
                what = "terminal";
                r = prompt_passphrase(source, ret, ret_len);
        }

        if (r == -E2BIG)
                return fail(EXIT_USAGE, "Passphrase from %s is longer than the maximum of %u bytes.",
                            what, PASSPHRASE_MAX);
        if (r == -ECANCELED)
                return fail(EXIT_FAIL, "Passphrase prompt cancelled.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to read passphrase from %s: %m", what);

        if (*ret_len == 0) {
                erase_and_free(*ret, PASSPHRASE_MAX + 1);
                *ret = NULL;
                return fail(EXIT_USAGE, "Passphrase from %s is empty.", what);
        }
        return EXIT_OK;
}

/* Puts the secret into a fresh pipe and returns its read end. */
static int passphrase_pipe(const char *secret, size_t len, int *ret_fd) {
        _cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
        int fds[2], sz;
        ssize_t k;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        rfd = fds[0];
        wfd = fds[1];

        /* A user over pipe-user-pages-soft gets one-page pipes: make room,
         * and make the write end non-blocking so that if we still could
         * not, we fail instead of hanging on a reader that is us. Only the
         * write end is non-blocking: the daemon gets a plain fd. */
        sz = fcntl(wfd, F_GETPIPE_SZ);
        if (sz >= 0 && (size_t) sz < len)
                (void) fcntl(wfd, F_SETPIPE_SZ, (int) len);
        if (fcntl(wfd, F_SETFL, O_NONBLOCK) < 0)
                return -errno;

        k = write(wfd, secret, len);
        if (k < 0)
                return errno == EAGAIN ? -ENOBUFS : -errno;
        if ((size_t) k != len)
                return -ENOBUFS;

        /* Closing the write end gives the daemon EOF after the secret. */
        closep(&wfd);
        wfd = -EBADF;
        *ret_fd = TAKE_FD(rfd);
        return 0;
}

/* ─────────────────────────────── verbs ───────────────────────────────── */

/* Whether an executable named name is in $PATH (what execvp() would run). */
static bool in_path(const char *name) {
        _cleanup_free_ char *copy = NULL;
        const char *path = getenv("PATH");
        char *saveptr = NULL;

        /* execvp()'s default search path when PATH is unset. */
        copy = strdup(path ? path : "/bin:/usr/bin");
        if (!copy)
                return true; /* let the exec tell */
        for (char *dir = strtok_r(copy, ":", &saveptr); dir; dir = strtok_r(NULL, ":", &saveptr)) {
                _cleanup_free_ char *p = NULL;

                if (asprintf(&p, "%s/%s", isempty(dir) ? "." : dir, name) < 0)
                        return true;
                if (access(p, X_OK) == 0)
                        return true;
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
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetId", &error, NULL, NULL);
        if (r < 0) {
                log_error_errno(r, PROGRAM ": Failed to connect to the system bus of %s over ssh: %m", arg_host);
                log_error(PROGRAM ": Hint: ssh's own message, if any, is above; %s must be reachable "
                          "with ssh and have systemd-stdio-bridge installed.", arg_host);
                return EXIT_FAIL;
        }

        *ret = TAKE_PTR(bus);
        return EXIT_OK;
}

static int connect_bus(sd_bus **ret) {
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

static int verb_attach(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *source = NULL;
        _cleanup_close_ int pass_fd = -EBADF;
        char *secret = NULL;
        size_t secret_len = 0;
        const char *path;
        int r, status;

        if (argc != 3)
                return fail(EXIT_USAGE, "attach expects DOMAIN and SOURCE.");
        if (isempty(argv[1]) || isempty(argv[2]))
                return fail(EXIT_USAGE, "DOMAIN and SOURCE must not be empty.");

        r = make_absolute(argv[2], &source);
        if (r == -EREMOTE)
                return fail(EXIT_USAGE, "SOURCE must be an absolute path with --host.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to make %s absolute: %m", argv[2]);

        /* Connect first: no point prompting for a passphrase when the bus
         * is not even there. */
        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        /* The passphrase goes as an fd or not at all (see the top of this
         * file); ssh (--host) cannot carry file descriptors. */
        r = sd_bus_can_send(bus, SD_BUS_TYPE_UNIX_FD);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to connect to the system bus: %m");
        if (r == 0 && arg_host)
                return fail(EXIT_NOT_SUPPORTED, "Cannot attach over --host: ssh cannot pass the file descriptor "
                            "that carries the passphrase; run luksvolumectl attach on %s itself.", arg_host);
        if (r == 0)
                return fail(EXIT_NOT_SUPPORTED, "The bus connection cannot pass file descriptors, which attach "
                            "needs to hand over the passphrase.");

        status = acquire_passphrase(source, &secret, &secret_len);
        if (status != EXIT_OK)
                return status;

        r = passphrase_pipe(secret, secret_len, &pass_fd);
        erase_and_free(secret, PASSPHRASE_MAX + 1);
        if (r == -ENOBUFS)
                return fail(EXIT_FAIL, "Failed to pass the passphrase: pipe buffer too small.");
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to create passphrase pipe: %m");

        r = build_attach(bus, argv[1], source, pass_fd, &m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build Attach request: %m");
        /* Our copy is no longer needed; the message holds its own. */
        closep(&pass_fd);
        pass_fd = -EBADF;

        r = sd_bus_call(bus, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to attach volume", &error, r);

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse Attach reply: %m");

        printf("%s\n", path);
        return EXIT_OK;
}

/* The common start of the verbs taking VOLUME-PATH|DOMAIN:TARGET: check
 * the argument, connect, resolve it to an object path. */
static int open_volume(int argc, char **argv, const char *verb, sd_bus **ret_bus, char **ret_path) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int status;

        if (argc != 2)
                return fail(EXIT_USAGE, "%s expects VOLUME-PATH or DOMAIN:TARGET.", verb);
        status = check_volume_spec(argv[1]);
        if (status != EXIT_OK)
                return status;
        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;
        status = resolve_volume(bus, argv[1], ret_path);
        if (status != EXIT_OK)
                return status;
        *ret_bus = TAKE_PTR(bus);
        return EXIT_OK;
}

static int verb_detach(int argc, char **argv) {
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

static const char *const probe_order[] = {
        /* host facts */
        "version", "libvirt-version", "hypervisor", "hypervisor-version", "native-luks", "dm-crypt",
        /* source facts */
        "luks-version", "uuid", "cipher", "key-size", "active-keyslots", "native-capable", "attached",
        NULL,
};

static int verb_probe(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(prop_list_done) PropList info = {};
        _cleanup_free_ char *source = NULL;
        int r, status;

        if (argc > 2)
                return fail(EXIT_USAGE, "probe expects at most one SOURCE.");
        if (argc == 2) {
                if (isempty(argv[1]))
                        return fail(EXIT_USAGE, "SOURCE must not be empty.");
                r = make_absolute(argv[1], &source);
                if (r == -EREMOTE)
                        return fail(EXIT_USAGE, "SOURCE must be an absolute path with --host.");
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to make %s absolute: %m", argv[1]);
        }

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call_method(bus, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "Probe",
                               &error, &reply, "sa{sv}", strempty(source), 0);
        if (r < 0)
                return fail_bus(source ? "Failed to probe source" : "Failed to probe host", &error, r);

        r = read_prop_list(reply, &info);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse Probe reply: %m");

        prop_list_sort(&info, probe_order);

        if (arg_json != JSON_OFF) {
                _cleanup_(json_object_putp) struct json_object *j = NULL;

                r = json_new_props(&info, &j);
                if (r >= 0)
                        r = print_json(j);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
                return EXIT_OK;
        }

        for (size_t i = 0; i < info.n; i++)
                printf("%s: %s\n", info.items[i].name, info.items[i].value);
        return EXIT_OK;
}

static int volume_cmp(const void *a, const void *b) {
        const Volume *x = a, *y = b;
        int c;

        c = strcmp(strempty(volume_get(x, "Domain")), strempty(volume_get(y, "Domain")));
        if (c == 0)
                c = strcmp(strempty(volume_get(x, "Target")), strempty(volume_get(y, "Target")));
        if (c == 0)
                c = strcmp(x->path, y->path);
        return c;
}

static const char *cell(const Volume *v, size_t column) {
        static const char *const props[] = { NULL, "Domain", "Target", "Mode", "Source", "State" };
        const char *s = column == 0 ? v->path : volume_get(v, props[column]);

        return isempty(s) ? "-" : s;
}

static const char *const volume_order[] = {
        "Domain", "DomainUUID", "Source", "Target", "Bus", "Mode", "SecretUUID",
        "MapperDevice", "LuksVersion", "LuksUUID", "ReadOnly", "State",
        NULL,
};

/* One volume as a JSON object: "Volume" (its object path), then every
 * property, typed, in contract order. The same shape for list and status. */
static int json_new_volume(const char *path, const PropList *props, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *obj = NULL;
        int r;

        obj = json_object_new_object();
        if (!obj)
                return -ENOMEM;
        r = json_add_string(obj, "Volume", path);
        if (r < 0)
                return r;
        r = json_add_props(obj, props);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(obj);
        return 0;
}

static int print_volumes_json(VolumeList *volumes) {
        _cleanup_(json_object_putp) struct json_object *array = NULL;
        int r;

        array = json_object_new_array();
        if (!array)
                return -ENOMEM;
        for (size_t i = 0; i < volumes->n; i++) {
                struct json_object *v = NULL;

                prop_list_sort(&volumes->items[i].props, volume_order);
                r = json_new_volume(volumes->items[i].path, &volumes->items[i].props, &v);
                if (r < 0)
                        return r;
                if (json_object_array_add(array, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        return print_json(array);
}

static void print_row(const char *const *cells, const size_t *width, size_t n) {
        /* The last column is not padded: no trailing blanks. */
        for (size_t c = 0; c + 1 < n; c++)
                printf("%-*s  ", (int) width[c], cells[c]);
        printf("%s\n", cells[n - 1]);
}

static int verb_list(int argc, _unused_ char **argv) {
        static const char *const header[] = { "VOLUME", "DOMAIN", "TARGET", "MODE", "SOURCE", "STATE" };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(volume_list_done) VolumeList volumes = {};
        size_t width[ELEMENTSOF(header)];
        int r, status;

        if (argc != 1)
                return fail(EXIT_USAGE, "list takes no arguments.");

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;
        status = get_volumes(bus, &volumes);
        if (status != EXIT_OK)
                return status;

        /* qsort() must not see the NULL items of an empty list. */
        if (volumes.n > 1)
                qsort(volumes.items, volumes.n, sizeof(Volume), volume_cmp);

        if (arg_json != JSON_OFF) {
                r = print_volumes_json(&volumes);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
                return EXIT_OK;
        }

        if (volumes.n == 0) {
                puts("No volumes attached.");
                return EXIT_OK;
        }

        for (size_t c = 0; c < ELEMENTSOF(header); c++) {
                width[c] = strlen(header[c]);
                for (size_t i = 0; i < volumes.n; i++)
                        if (strlen(cell(&volumes.items[i], c)) > width[c])
                                width[c] = strlen(cell(&volumes.items[i], c));
        }

        print_row(header, width, ELEMENTSOF(header));
        for (size_t i = 0; i < volumes.n; i++) {
                const char *row[ELEMENTSOF(header)];

                for (size_t c = 0; c < ELEMENTSOF(header); c++)
                        row[c] = cell(&volumes.items[i], c);
                print_row(row, width, ELEMENTSOF(header));
        }
        return EXIT_OK;
}

static int verb_status(int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(prop_list_done) PropList props = {};
        _cleanup_free_ char *path = NULL;
        int r, status;

        status = open_volume(argc, argv, "status", &bus, &path);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_call_method(bus, SERVICE_NAME, path, PROPERTIES_IFACE, "GetAll",
                               &error, &reply, "s", VOLUME_IFACE);
        if (r < 0)
                return fail_bus("Failed to get volume properties", &error, r);

        r = read_prop_list(reply, &props);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse volume properties: %m");

        prop_list_sort(&props, volume_order);

        if (arg_json != JSON_OFF) {
                _cleanup_(json_object_putp) struct json_object *j = NULL;

                r = json_new_volume(path, &props, &j);
                if (r >= 0)
                        r = print_json(j);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to format JSON: %m");
                return EXIT_OK;
        }

        printf("Volume: %s\n", path);
        for (size_t i = 0; i < props.n; i++)
                printf("%s: %s\n", props.items[i].name, props.items[i].value);
        return EXIT_OK;
}

/* ─────────────────────────────── monitor ─────────────────────────────── */

/* Ends the event loop with a failure (output gone, out of memory), from a
 * match callback. */
static int monitor_abort(sd_bus_message *m, int r, const char *what) {
        log_error_errno(r, PROGRAM ": %s: %m", what);
        return sd_event_exit(sd_bus_get_event(sd_bus_message_get_bus(m)), EXIT_FAIL);
}

/* Prints one event: a text line, or a JSON object of the form
 * {"event": EVENT, "volume": PATH[, "properties": {…}][, "invalidated": […]]}.
 * Flushes, so that a pipe reader sees each event as it happens. */
static int monitor_print(sd_bus_message *m, const char *event, const char *path,
                         const PropList *props, char **invalidated, const char *text) {
        int r;

        if (arg_json != JSON_OFF) {
                _cleanup_(json_object_putp) struct json_object *obj = NULL;

                obj = json_object_new_object();
                if (!obj)
                        return monitor_abort(m, -ENOMEM, "Failed to format JSON");
                r = json_add_string(obj, "event", event);
                if (r >= 0)
                        r = json_add_string(obj, "volume", path);
                if (r >= 0 && props) {
                        struct json_object *p = NULL;

                        r = json_new_props(props, &p);
                        if (r >= 0)
                                r = json_add(obj, "properties", p);
                }
                if (r >= 0 && invalidated && invalidated[0]) {
                        struct json_object *a = json_object_new_array();

                        r = a ? json_add(obj, "invalidated", a) : -ENOMEM;
                        for (char **i = invalidated; r >= 0 && *i; i++) {
                                struct json_object *s = json_object_new_string(*i);

                                if (!s || json_object_array_add(a, s) < 0) {
                                        json_object_put(s);
                                        r = -ENOMEM;
                                }
                        }
                }
                if (r >= 0)
                        r = print_json(obj);
                if (r < 0)
                        return monitor_abort(m, r, "Failed to format JSON");
        } else
                printf("%s %s%s%s\n", event, path, isempty(text) ? "" : " ", strempty(text));

        if (fflush(stdout) != 0 || ferror(stdout))
                return monitor_abort(m, errno ? errno : EIO, "Failed to write output");
        return 0;
}

/* "Name=value" pairs, space separated, into a new string: every property
 * of props in its order, or with keys only those, in that order and with
 * lowercased names (the summary line of "added"). */
static int format_pairs(const PropList *props, const char *const *keys, char **invalidated, char **ret) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_fclose_ FILE *out = NULL;
        size_t size;
        bool first = true;

        out = open_memstream(&buf, &size);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; keys ? keys[i] != NULL : i < props->n; i++) {
                const char *name = keys ? keys[i] : props->items[i].name;
                const char *value = keys ? prop_list_get(props, name) : props->items[i].value;

                if (!value)
                        continue;
                if (!first)
                        fputc(' ', out);
                first = false;
                if (keys)
                        for (const char *c = name; *c; c++)
                                fputc(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c, out);
                else
                        fputs(name, out);
                fputc('=', out);
                if (isempty(value))
                        fputc('-', out);
                /* One line per event, whatever the value holds. */
                for (const char *c = value; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                fprintf(out, "\\x%02x", (unsigned) (unsigned char) *c);
                        else
                                fputc(*c, out);
        }
        /* Changed without a value: "Name=?" (the v1 daemon always sends values). */
        for (char **i = invalidated; i && *i; i++) {
                fprintf(out, "%s%s=?", first ? "" : " ", *i);
                first = false;
        }

        if (fflush(out) != 0 || ferror(out))
                return -ENOMEM;
        fclose(TAKE_PTR(out));
        *ret = TAKE_PTR(buf);
        return 0;
}

/* InterfacesAdded(o object, a{sa{sv}} interfaces) */
static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        static const char *const summary[] = { "Domain", "Target", "Mode", "Source", NULL };
        _cleanup_(prop_list_done) PropList props = {};
        _cleanup_free_ char *text = NULL;
        bool is_volume;
        const char *path;
        int r;

        r = read_object_with_interfaces(m, &path, &props, &is_volume);
        if (r < 0)
                goto bad;
        if (!is_volume)
                return 0;

        prop_list_sort(&props, volume_order);
        r = format_pairs(&props, summary, NULL, &text);
        if (r < 0)
                return monitor_abort(m, r, "Failed to format event");
        return monitor_print(m, "added", path, &props, NULL, text);

bad:
        /* One garbled signal is no reason to stop watching. */
        log_error_errno(r, PROGRAM ": Failed to parse InterfacesAdded signal: %m");
        return 0;
}

/* InterfacesRemoved(o object, as interfaces) */
static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_strv_free_ char **ifaces = NULL;
        const char *path;
        bool is_volume = false;
        int r;

        r = sd_bus_message_read_basic(m, 'o', &path);
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &ifaces);
        if (r < 0) {
                log_error_errno(r, PROGRAM ": Failed to parse InterfacesRemoved signal: %m");
                return 0;
        }
        /* luksvolumed 0.1.0 emits this after it has already forgotten the
         * object, so the list lacks VOLUME_IFACE and names only the standard
         * interfaces: also go by the documented volume path namespace. The
         * whole object is gone either way. */
        is_volume = startswith(path, VOLUME_PATH_PREFIX);
        for (char **i = ifaces; !is_volume && i && *i; i++)
                if (streq(*i, VOLUME_IFACE))
                        is_volume = true;
        if (!is_volume)
                return 0;

        return monitor_print(m, "removed", path, NULL, NULL, NULL);
}

/* PropertiesChanged(s interface, a{sv} changed, as invalidated) */
static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        _cleanup_(prop_list_done) PropList props = {};
        _cleanup_strv_free_ char **invalidated = NULL;
        _cleanup_free_ char *text = NULL;
        const char *iface, *path = sd_bus_message_get_path(m);
        int r;

        r = sd_bus_message_read_basic(m, 's', &iface);
        if (r >= 0 && !streq(iface, VOLUME_IFACE))
                return 0;
        if (r >= 0)
                r = read_prop_list(m, &props);
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &invalidated);
        if (r < 0 || !path) {
                log_error_errno(r < 0 ? r : EBADMSG, PROGRAM ": Failed to parse PropertiesChanged signal: %m");
                return 0;
        }

        prop_list_sort(&props, volume_order);
        r = format_pairs(&props, NULL, invalidated, &text);
        if (r < 0)
                return monitor_abort(m, r, "Failed to format event");
        return monitor_print(m, "changed", path, &props, invalidated, text);
}

static int verb_monitor(int argc, _unused_ char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r, status;

        if (argc != 1)
                return fail(EXIT_USAGE, "monitor takes no arguments.");

        status = connect_bus(&bus);
        if (status != EXIT_OK)
                return status;

        r = sd_event_default(&event);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to allocate event loop: %m");

        /* SIGINT/SIGTERM end the loop (a NULL handler exits it with 0); they
         * must be blocked for signalfd to see them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return fail_errno(EXIT_FAIL, errno, "Failed to block signals: %m");
        r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to watch signals: %m");

        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to attach bus to event loop: %m");
        /* A lost connection ends the loop with EXIT_FAILURE, see below. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to set up bus: %m");

        /* Synchronous AddMatch calls: once they return, no event is missed.
         * The sender is the well-known name, so the matches survive the
         * daemon exiting when idle and being activated again. */
        r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE,
                                "InterfacesAdded", on_interfaces_added, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, SERVICE_NAME, MANAGER_PATH, OBJECT_MANAGER_IFACE,
                                        "InterfacesRemoved", on_interfaces_removed, NULL);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL,
                                     "type='signal',"
                                     "sender='" SERVICE_NAME "',"
                                     "interface='" PROPERTIES_IFACE "',"
                                     "member='PropertiesChanged',"
                                     "path_namespace='" MANAGER_PATH "',"
                                     "arg0='" VOLUME_IFACE "'",
                                     on_properties_changed, NULL);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to subscribe to volume signals: %m");

        r = sd_event_loop(event);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Event loop failed: %m");
        if (r != EXIT_OK) {
                /* Either a callback already said why, or the bus went away. */
                if (sd_bus_is_open(bus) <= 0)
                        return fail(EXIT_FAIL, "Lost the connection to the system bus.");
                return EXIT_FAIL;
        }
        return EXIT_OK;
}

/* ───────────────────────────── command line ──────────────────────────── */

static void help(void) {
        printf("Usage: %1$s [OPTIONS...] COMMAND ...\n"
               "\n"
               "Attach LUKS-encrypted volumes to running libvirt guests via luksvolumed.\n"
               "\n"
               "Commands:\n"
               "  attach DOMAIN SOURCE          Attach SOURCE to DOMAIN, print the volume path\n"
               "  detach VOLUME|DOMAIN:TARGET   Detach a volume\n"
               "  probe [SOURCE]                Show host facts, or the LUKS header of SOURCE\n"
               "  list                          List attached volumes\n"
               "  status VOLUME|DOMAIN:TARGET   Show all properties of a volume\n"
               "  monitor                       Print volumes being added, changed and removed,\n"
               "                                one line each, until SIGINT or SIGTERM\n"
               "\n"
               "VOLUME is an object path as printed by attach and list; DOMAIN:TARGET names\n"
               "a volume by its domain's name or UUID and its guest target (e.g. web1:vdb).\n"
               "\n"
               "Options:\n"
               "  -h --help                     Show this help\n"
               "     --version                  Show package version\n"
               "     --no-ask-password          Never prompt (no passphrase prompt, no polkit\n"
               "                                interactive authorization)\n"
               "  -H --host=[USER@]HOST         Operate on the system bus of a remote host, over\n"
               "                                ssh (attach is not possible: ssh cannot pass the\n"
               "                                passphrase file descriptor)\n"
               "     --json[=short|pretty]      list, status, probe, monitor: print JSON (one\n"
               "                                line per value with short, the default)\n"
               "\n"
               "attach options:\n"
               "     --target=DEV               Guest target device (e.g. vdb)\n"
               "     --bus=BUS                  virtio, scsi, sata or usb\n"
               "     --mode=MODE                auto, native or cryptsetup\n"
               "     --read-only                Attach read-only\n"
               "     --passphrase-file=FILE|-   Read the passphrase from FILE (or stdin when -),\n"
               "                                verbatim, trailing newline included; at most %2$u\n"
               "                                bytes. Without it, prompt on the terminal.\n"
               "\n"
               "detach options:\n"
               "     --timeout=SECONDS          How long the daemon waits for the guest\n"
               "\n"
               "Exit status:\n"
               "  0 success                     4 bad passphrase\n"
               "  1 failure                     5 not found (domain/volume, domain not running)\n"
               "  2 usage error, invalid args   6 not supported, not LUKS\n"
               "  3 not authorized              7 busy, already attached, target in use\n",
               PROGRAM, PASSPHRASE_MAX);
}

enum {
        ARG_VERSION = 0x100,
        ARG_NO_ASK_PASSWORD,
        ARG_TARGET,
        ARG_BUS,
        ARG_MODE,
        ARG_READ_ONLY,
        ARG_PASSPHRASE_FILE,
        ARG_TIMEOUT,
        ARG_JSON,
};

/* Returns -1 to go on, or an exit status. */
static int parse_argv(int argc, char **argv) {
        static const struct option options[] = {
                { "help",            no_argument,       NULL, 'h'                 },
                { "version",         no_argument,       NULL, ARG_VERSION         },
                { "no-ask-password", no_argument,       NULL, ARG_NO_ASK_PASSWORD },
                { "target",          required_argument, NULL, ARG_TARGET          },
                { "bus",             required_argument, NULL, ARG_BUS             },
                { "mode",            required_argument, NULL, ARG_MODE            },
                { "read-only",       no_argument,       NULL, ARG_READ_ONLY       },
                { "passphrase-file", required_argument, NULL, ARG_PASSPHRASE_FILE },
                { "timeout",         required_argument, NULL, ARG_TIMEOUT         },
                { "host",            required_argument, NULL, 'H'                 },
                { "json",            optional_argument, NULL, ARG_JSON            },
                {}
        };
        static const char *const buses[] = { "virtio", "scsi", "sata", "usb", NULL };
        static const char *const modes[] = { "auto", "native", "cryptsetup", NULL };
        int c, r;

        /* We print our own one-line messages. */
        opterr = 0;

        while ((c = getopt_long(argc, argv, "hH:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case ARG_VERSION:
                        printf("%s %s\n", PROGRAM, PACKAGE_VERSION);
                        return EXIT_OK;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case ARG_TARGET:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--target must not be empty.");
                        arg_target = optarg;
                        break;
                case ARG_BUS:
                        if (!one_of(optarg, buses))
                                return fail(EXIT_USAGE, "Invalid --bus \"%s\": expected virtio, scsi, sata or usb.", optarg);
                        arg_bus = optarg;
                        break;
                case ARG_MODE:
                        if (!one_of(optarg, modes))
                                return fail(EXIT_USAGE, "Invalid --mode \"%s\": expected auto, native or cryptsetup.", optarg);
                        arg_mode = optarg;
                        break;
                case ARG_READ_ONLY:
                        arg_read_only = true;
                        break;
                case ARG_PASSPHRASE_FILE:
                        if (isempty(optarg))
                                return fail(EXIT_USAGE, "--passphrase-file must not be empty.");
                        arg_passphrase_file = optarg;
                        break;
                case ARG_TIMEOUT:
                        r = parse_u32(optarg, &arg_timeout);
                        if (r < 0)
                                return fail(EXIT_USAGE, "Invalid --timeout \"%s\": expected seconds (0…%" PRIu32 ").",
                                            optarg, UINT32_MAX);
                        arg_timeout_set = true;
                        break;
                case 'H':
                        /* ssh gets "--" before it, but an option-like host is
                         * still never what was meant. */
                        if (isempty(optarg) || optarg[0] == '-')
                                return fail(EXIT_USAGE, "Invalid --host \"%s\": expected [USER@]HOST.", optarg);
                        arg_host = optarg;
                        break;
                case ARG_JSON:
                        if (!optarg || streq(optarg, "short"))
                                arg_json = JSON_SHORT;
                        else if (streq(optarg, "pretty"))
                                arg_json = JSON_PRETTY;
                        else
                                return fail(EXIT_USAGE, "Invalid --json=\"%s\": expected short or pretty.", optarg);
                        break;
                case '?':
                        /* For long options optopt holds our enum value, not
                         * a character: name the word from the command line. */
                        if (startswith(argv[optind - 1], "--"))
                                return fail(EXIT_USAGE, "Option %s is unknown or lacks its argument; see --help.",
                                            argv[optind - 1]);
                        return fail(EXIT_USAGE, "Option -%c is unknown or lacks its argument; see --help.", optopt);
                default:
                        return fail(EXIT_FAIL, "Unexpected option %d.", c);
                }

        return -1;
}

static int check_options_for(const char *verb) {
        bool attach = streq(verb, "attach"), detach = streq(verb, "detach");

        /* Options are accepted anywhere on the line, so catch ones given to
         * a command that would silently ignore them. */
        if (!attach && (arg_target || arg_bus || arg_mode || arg_read_only || arg_passphrase_file))
                return fail(EXIT_USAGE, "--target, --bus, --mode, --read-only and --passphrase-file "
                            "only apply to attach.");
        if (!detach && arg_timeout_set)
                return fail(EXIT_USAGE, "--timeout only applies to detach.");
        if (arg_json != JSON_OFF && (attach || detach))
                return fail(EXIT_USAGE, "--json only applies to list, status, probe and monitor.");
        return EXIT_OK;
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } verbs[] = {
                { "attach",  verb_attach  },
                { "detach",  verb_detach  },
                { "probe",   verb_probe   },
                { "list",    verb_list    },
                { "status",  verb_status  },
                { "monitor", verb_monitor },
        };
        int status;

        log_set_prefix(false);

        status = parse_argv(argc, argv);
        if (status >= 0)
                goto finish;

        if (optind >= argc) {
                status = fail(EXIT_USAGE, "Missing command; see --help.");
                goto finish;
        }

        status = -1;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name)) {
                        status = check_options_for(verbs[i].name);
                        if (status == EXIT_OK)
                                status = verbs[i].run(argc - optind, argv + optind);
                        break;
                }
        if (status < 0)
                status = fail(EXIT_USAGE, "Unknown command \"%s\"; see --help.", argv[optind]);

finish:
        /* A full disk or closed pipe on stdout must not look like success. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                if (status == EXIT_OK)
                        status = fail_errno(EXIT_FAIL, errno ? errno : EIO, "Failed to write output: %m");
        }
        return status;
}
