/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* libFuzzer target for the naming codecs: daemon/volume-id.c (object paths
 * and volume ids from callers, secret usage ids from libvirt, targets and
 * buses) and version_parse() from daemon/mode.c (version strings from the
 * command line and libvirt).
 *
 * The input split at NUL bytes gives fields; field 0 goes to every parser.
 * Each parser must accept exactly what an independent model of the
 * documented format accepts, and whatever it accepts must be rebuilt by
 * the matching builder into exactly the input (a byte-for-byte round
 * trip).  Fields 1 and 2.. drive target_valid_for_bus() (target, bus) and
 * target_pick_free() (bus, names in use). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mode.h"
#include "util.h"
#include "volume-id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

/* ---- the model: the formats as volume-id.h and mode.h document them ---- */

static bool m_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool m_uuid(const char *s, size_t n) {
        if (n != 36)
                return false;
        for (size_t k = 0; k < 36; k++)
                if ((k == 8 || k == 13 || k == 18 || k == 23) ? s[k] != '-' : !m_hex(s[k]))
                        return false;
        return true;
}

static bool m_letters(const char *s, size_t min, size_t max) {
        size_t n = strlen(s);

        if (n < min || n > max)
                return false;
        for (size_t k = 0; k < n; k++)
                if (s[k] < 'a' || s[k] > 'z')
                        return false;
        return true;
}

/* "vd" or "sd" + 1..3 lowercase letters, whatever the bus. */
static bool m_target(const char *t) {
        return (startswith(t, "vd") || startswith(t, "sd")) && m_letters(t + 2, 1, 3);
}

static const char *m_prefix(const char *bus) {
        if (streq(bus, "virtio"))
                return "vd";
        if (streq(bus, "scsi") || streq(bus, "sata") || streq(bus, "usb"))
                return "sd";
        return NULL;
}

/* 32 lowercase hex digits, '_', a target. */
static bool m_id(const char *s) {
        if (strlen(s) < 33 || s[32] != '_')
                return false;
        for (size_t k = 0; k < 32; k++)
                if (!m_hex(s[k]))
                        return false;
        return m_target(s + 33);
}

/* MAJOR.MINOR[.MICRO], each a decimal number 0..999 (leading zeros
 * allowed); returns the canonical "M.m.u" spelling in canon. */
static bool m_version(const char *s, unsigned long *ret, char *canon, size_t canon_size) {
        unsigned long part[3] = {};
        unsigned n = 0;
        const char *p = s;

        for (;;) {
                unsigned long v = 0;
                const char *start = p;

                if (n == 3)
                        return false;
                while (*p >= '0' && *p <= '9') {
                        v = v * 10 + (unsigned long) (*p - '0');
                        if (v > 999)
                                return false;
                        p++;
                }
                if (p == start)
                        return false;
                part[n++] = v;
                if (*p == '\0')
                        break;
                if (*p != '.')
                        return false;
                p++;
        }
        if (n < 2)
                return false;
        *ret = LV_VERSION(part[0], part[1], part[2]);
        snprintf(canon, canon_size, "%lu.%lu.%lu", part[0], part[1], part[2]);
        return true;
}

/* ---- per-codec checks ---- */

static void check_ids(const char *s) {
        char *uuid = NULL, *target = NULL, *rebuilt = NULL;
        int r;

        CHECK(uuid_valid(s) == m_uuid(s, strlen(s)));

        /* Volume ids. */
        r = volume_id_parse(s, &uuid, &target);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r != -ENOMEM)
                CHECK((r == 0) == m_id(s));
        if (r == 0) {
                CHECK(uuid_valid(uuid));
                CHECK(m_target(target));
                CHECK(volume_id_build(uuid, target, &rebuilt) == 0);
                CHECK(streq(rebuilt, s));
                free(rebuilt);

                /* The disk alias carries the same id. */
                CHECK(disk_alias_build(uuid, target, &rebuilt) == 0);
                CHECK(startswith(rebuilt, LV_DISK_ALIAS_PREFIX));
                CHECK(streq(rebuilt + strlen(LV_DISK_ALIAS_PREFIX), s));
                free(rebuilt);
                free(uuid);
                free(target);
        }

        /* Object paths. */
        uuid = target = NULL;
        r = volume_path_parse(s, &uuid, &target);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r != -ENOMEM)
                CHECK((r == 0) ==
                      (startswith(s, LV_VOLUME_PATH_PREFIX "/") && m_id(s + strlen(LV_VOLUME_PATH_PREFIX "/"))));
        if (r == 0) {
                CHECK(volume_path_build(uuid, target, &rebuilt) == 0);
                CHECK(streq(rebuilt, s));
                free(rebuilt);
                free(uuid);
                free(target);
        }

        /* Secret usage ids. */
        uuid = target = NULL;
        r = secret_usage_parse(s, &uuid, &target);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r != -ENOMEM) {
                const char *p = startswith(s, LV_SECRET_USAGE_PREFIX) ? s + strlen(LV_SECRET_USAGE_PREFIX) : NULL;
                bool want = p && strlen(p) > 37 && m_uuid(p, 36) && p[36] == ':' && m_target(p + 37);
                CHECK((r == 0) == want);
        }
        if (r == 0) {
                CHECK(secret_usage_build(uuid, target, &rebuilt) == 0);
                CHECK(streq(rebuilt, s));
                free(rebuilt);
                free(uuid);
                free(target);
        }
}

static void check_version(const char *s) {
        unsigned long v = 0, w = 0, want = 0;
        char canon[64], formatted[64];
        bool ok = m_version(s, &want, canon, sizeof canon);
        int r;

        r = version_parse(s, &v);
        CHECK(r == 0 || r == -EINVAL);
        CHECK((r == 0) == ok);
        if (r < 0)
                return;
        CHECK(v == want);
        /* "02.6" → 2006000 → "2.6.0": the round trip is through the
         * canonical spelling, which must parse back to the same value. */
        version_format(v, formatted, sizeof formatted);
        CHECK(streq(formatted, canon));
        CHECK(version_parse(formatted, &w) == 0 && w == v);
}

static void check_target_bus(const char *target, const char *bus) {
        const char *prefix = m_prefix(bus);
        bool want = prefix && startswith(target, prefix) && m_letters(target + 2, 1, 3);
        const char *implied;

        CHECK(bus_valid(bus) == !!prefix);
        CHECK(streq_ptr(bus_target_prefix(bus), prefix));
        CHECK(target_valid_for_bus(target, bus) == want);

        implied = bus_from_target(target);
        CHECK(!!implied == m_target(target));
        if (implied) {
                /* The implied bus takes the target, and a bus with the same
                 * prefix takes it too. */
                CHECK(target_valid_for_bus(target, implied));
                char two[3] = { target[0], target[1], 0 };
                CHECK(streq(bus_target_prefix(implied), two));
        }
        if (want)
                CHECK(implied && streq(bus_target_prefix(implied), prefix));
}

static void check_pick(const char *bus, char *const *used, size_t n_used) {
        const char *prefix = m_prefix(bus);
        char *name = NULL;
        int r;

        r = target_pick_free(bus, used, n_used, &name);
        if (!prefix) {
                CHECK(r == -EINVAL);
                return;
        }
        CHECK(r == 0 || r == -ENOSPC || r == -ENOMEM);
        if (r != 0)
                return;
        CHECK(target_valid_for_bus(name, bus));
        /* The first name in libvirt's order (a..z, then aa..zz) that is not
         * in use: every name before it is taken, it is not. */
        for (unsigned i = 0; i < 26 + 26 * 26; i++) {
                char cand[8];
                bool taken = false;

                if (i < 26)
                        snprintf(cand, sizeof cand, "%s%c", prefix, 'a' + i);
                else
                        snprintf(cand, sizeof cand, "%s%c%c", prefix, 'a' + (i - 26) / 26, 'a' + (i - 26) % 26);
                for (size_t k = 0; k < n_used; k++)
                        if (streq(used[k], cand))
                                taken = true;
                if (streq(cand, name)) {
                        CHECK(!taken);
                        break;
                }
                CHECK(taken);
        }
        free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *fields[8];
        size_t n_fields = 0;
        char *copy;

        if (size > 4096)
                return 0;

        copy = malloc(size + 1);
        CHECK(copy);
        memcpy(copy, data, size);
        copy[size] = '\0';

        for (char *p = copy, *end = copy + size; p <= end && n_fields < ELEMENTSOF(fields); p += strlen(p) + 1)
                fields[n_fields++] = p;

        check_ids(fields[0]);
        check_version(fields[0]);
        check_target_bus(fields[0], n_fields > 1 ? fields[1] : "");
        if (n_fields > 1)
                check_pick(fields[1], fields + 2, n_fields - 2);

        free(copy);
        return 0;
}
