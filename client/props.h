/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Property lists: an a{sv} read off the bus, each value kept twice, as
 * display text and as typed JSON, so text and --json output show the same
 * data. */

#include <stddef.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

typedef struct Prop {
        char *name;
        char *value;              /* already formatted for display */
        struct json_object *json; /* the same value, typed, for --json; NULL is JSON null */
} Prop;

typedef struct PropList {
        Prop *items;
        size_t n;
} PropList;

void prop_list_done(PropList *l);
const char *prop_list_get(const PropList *l, const char *name);

/* Documented keys in contract order, then anything newer alphabetically:
 * stable output for scripts regardless of the daemon's hash order. order
 * is NULL-terminated. */
void prop_list_sort(PropList *l, const char *const *order);

/* Reads an a{sv} (the message positioned at it) into l. Basic values and
 * arrays of them are converted; anything fancier (which the v1 contract
 * does not use) is shown by its signature and given as JSON null. */
int read_prop_list(sd_bus_message *m, PropList *l);
