/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdio.h>

#include "luksvolumectl.h"
#include "output.h"

/* ──────────────────────────────── JSON ───────────────────────────────── */

int json_add(struct json_object *obj, const char *key, struct json_object *val) {
        if (json_object_object_add(obj, key, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

int json_add_string(struct json_object *obj, const char *key, const char *s) {
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

int json_new_props(const PropList *l, struct json_object **ret) {
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

int print_json(struct json_object *j) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE; /* "/org/…", not "\/org\/…" */
        const char *s;

        flags |= arg_json == JSON_PRETTY ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN;
        s = json_object_to_json_string_ext(j, flags);
        if (!s)
                return -ENOMEM;
        if (puts(s) < 0)
                return errno ? -errno : -EIO;
        return 0;
}

const char *const volume_order[] = {
        "Domain",
        "DomainUUID",
        "Source",
        "Target",
        "Bus",
        "Mode",
        "SecretUUID",
        "MapperDevice",
        "LuksVersion",
        "LuksUUID",
        "ReadOnly",
        "State",
        /* since 0.2 (API v1.1) */
        "Size",
        "PayloadOffset",
        "Serial",
        "AttachedByUID",
        "AttachTimestamp",
        /* since 0.3 */
        "NativeHeader",
        "ShimDevice",
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

/* ─────────────────────────── what verbs print ────────────────────────── */

/* The key: value lines of probe and status. */
static void print_pairs(const PropList *l) {
        for (size_t i = 0; i < l->n; i++)
                printf("%s: %s\n", l->items[i].name, l->items[i].value);
}

int print_props(const PropList *l) {
        _cleanup_(json_object_putp) struct json_object *j = NULL;
        int r;

        if (arg_json == JSON_OFF) {
                print_pairs(l);
                return 0;
        }

        r = json_new_props(l, &j);
        if (r < 0)
                return r;
        return print_json(j);
}

int print_volume(const char *path, const PropList *props) {
        _cleanup_(json_object_putp) struct json_object *j = NULL;
        int r;

        if (arg_json == JSON_OFF) {
                printf("Volume: %s\n", path);
                print_pairs(props);
                return 0;
        }

        r = json_new_volume(path, props, &j);
        if (r < 0)
                return r;
        return print_json(j);
}

static const char *cell(const Volume *v, size_t column) {
        static const char *const props[] = { NULL, "Domain", "Target", "Mode", "Source", "State" };
        const char *s = column == 0 ? v->path : volume_get(v, props[column]);

        return isempty(s) ? "-" : s;
}

static void print_row(const char *const *cells, const size_t *width, size_t n) {
        /* The last column is not padded: no trailing blanks. */
        for (size_t c = 0; c + 1 < n; c++)
                printf("%-*s  ", (int) width[c], cells[c]);
        printf("%s\n", cells[n - 1]);
}

/* The text form of list: an aligned table, one volume a row. */
static void print_volume_table(const VolumeList *volumes) {
        static const char *const header[] = { "VOLUME", "DOMAIN", "TARGET", "MODE", "SOURCE", "STATE" };
        size_t width[ELEMENTSOF(header)];

        if (volumes->n == 0) {
                puts("No volumes attached.");
                return;
        }

        for (size_t c = 0; c < ELEMENTSOF(header); c++) {
                width[c] = strlen(header[c]);
                for (size_t i = 0; i < volumes->n; i++)
                        if (strlen(cell(&volumes->items[i], c)) > width[c])
                                width[c] = strlen(cell(&volumes->items[i], c));
        }

        print_row(header, width, ELEMENTSOF(header));
        for (size_t i = 0; i < volumes->n; i++) {
                const char *row[ELEMENTSOF(header)];

                for (size_t c = 0; c < ELEMENTSOF(header); c++)
                        row[c] = cell(&volumes->items[i], c);
                print_row(row, width, ELEMENTSOF(header));
        }
}

int print_volume_list(VolumeList *volumes) {
        if (arg_json == JSON_OFF) {
                print_volume_table(volumes);
                return 0;
        }
        return print_volumes_json(volumes);
}
