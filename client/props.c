/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>

#include "luksvolumectl.h"
#include "props.h"

/* ────────────────────────── property lists ───────────────────────────── */

void prop_list_done(PropList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].name);
                free(l->items[i].value);
                json_object_put(l->items[i].json);
        }
        free(l->items);
        *l = (PropList){};
}

const char *prop_list_get(const PropList *l, const char *name) {
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
        l->items[l->n++] = (Prop){ .name = nm, .value = value, .json = json };
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

void prop_list_sort(PropList *l, const char *const *order) {
        sort_order = order;
        if (l->n > 1)
                qsort(l->items, l->n, sizeof(Prop), prop_cmp);
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
        case 'y':
                fprintf(out, "%" PRIu8, v.u8);
                j = json_object_new_int64(v.u8);
                break;
        case 'b':
                fputs(v.b ? "yes" : "no", out);
                j = json_object_new_boolean(v.b);
                break;
        case 'n':
                fprintf(out, "%" PRIi16, v.i16);
                j = json_object_new_int64(v.i16);
                break;
        case 'q':
                fprintf(out, "%" PRIu16, v.u16);
                j = json_object_new_int64(v.u16);
                break;
        case 'i':
                fprintf(out, "%" PRIi32, v.i32);
                j = json_object_new_int64(v.i32);
                break;
        case 'u':
                fprintf(out, "%" PRIu32, v.u32);
                j = json_object_new_int64(v.u32);
                break;
        case 'x':
                fprintf(out, "%" PRIi64, v.i64);
                j = json_object_new_int64(v.i64);
                break;
        case 't':
                fprintf(out, "%" PRIu64, v.u64);
                j = json_object_new_uint64(v.u64);
                break;
        case 'd':
                fprintf(out, "%g", v.d);
                j = json_object_new_double(v.d);
                break;
        case 's':
        case 'o':
        case 'g':
                fputs(v.s, out);
                j = json_object_new_string(v.s);
                break;
        case 'h':
                fprintf(out, "fd %d", v.fd);
                null = true;
                break;
        default:
                return -EOPNOTSUPP;
        }
        if (!j && !null)
                return -ENOMEM;

        *ret_json = j;
        return 0;
}

static bool is_basic_type(char t) {
        return t && strchr("ybnqiuxtdsogh", t);
}

/* One a{sv} of basic values (a key slot of Probe's "keyslots"): shown as
 * "key=value key=value", given as a JSON object. */
static int format_dict(sd_bus_message *m, FILE *out, struct json_object **ret_json) {
        _cleanup_(json_object_putp) struct json_object *obj = json_object_new_object();
        int r;

        if (!obj)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (bool first = true;; first = false) {
                struct json_object *value = NULL;
                const char *key, *contents;
                char type;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (r == 0 || type != 'v')
                        return -EBADMSG;
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                fprintf(out, "%s%s=", first ? "" : " ", key);
                if (is_basic_type(contents[0]) && contents[1] == '\0')
                        r = format_basic(m, contents[0], out, &value);
                else {
                        fprintf(out, "(%s)", contents);
                        r = sd_bus_message_skip(m, contents);
                }
                if (r < 0) {
                        json_object_put(value);
                        return r;
                }
                /* json-c copies the key; a NULL value is JSON null. */
                if (json_object_object_add(obj, key, value) < 0) {
                        json_object_put(value);
                        return -ENOMEM;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret_json = TAKE_PTR(obj);
        return 0;
}

/* Reads the variant the message is positioned at into a display string
 * and a typed JSON value. Basic values, arrays of them and arrays of a{sv}
 * of them (Probe's "keyslots") are converted; anything fancier (which the
 * API does not use) is skipped, shown by its signature and given as JSON
 * null. */
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
        } else if (streq(contents, "aa{sv}")) {
                /* Probe's "keyslots" (since 0.2): "; " between the slots. */
                json = json_object_new_array();
                if (!json)
                        return -ENOMEM;
                r = sd_bus_message_enter_container(m, 'a', "a{sv}");
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
                                fputs("; ", out);
                        r = format_dict(m, out, &element);
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

int read_prop_list(sd_bus_message *m, PropList *l) {
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
