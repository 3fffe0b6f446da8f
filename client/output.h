/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Output: what the verbs print, as text or, with --json, as JSON built
 * with json-c. Text goes out with stdio and is checked once, when main()
 * flushes stdout; the print_* functions below return a negative errno only
 * when the JSON could not be built or written. */

#include <json-c/json.h>

#include "props.h"
#include "volume-lookup.h"

/* The Volume interface's properties in contract order, for
 * prop_list_sort(). */
extern const char *const volume_order[];

/* json_object_object_add() that always consumes val, and says -ENOMEM
 * instead of -1. val may be NULL (JSON null). */
int json_add(struct json_object *obj, const char *key, struct json_object *val);
/* json_add() of a new string; NULL s is JSON null. */
int json_add_string(struct json_object *obj, const char *key, const char *s);
/* A new object with every property of l, in l's order. */
int json_new_props(const PropList *l, struct json_object **ret);
/* Prints j as one line (--json, --json=short) or indented (--json=pretty). */
int print_json(struct json_object *j);

/* probe: "key: value" lines, or one JSON object. */
int print_props(const PropList *l);
/* status: "Volume: PATH" and "key: value" lines, or the same JSON object
 * as an element of list's array. */
int print_volume(const char *path, const PropList *props);
/* list: an aligned table (VOLUME, DOMAIN, TARGET, MODE, SOURCE, STATE), or
 * a JSON array of volumes, each with its properties in contract order. */
int print_volume_list(VolumeList *volumes);
