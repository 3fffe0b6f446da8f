/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* daemon/polkit.c without polkitd:
 *
 *  - polkit_verdict(), the pure mapping of polkit's answer to allowed / a
 *    D-Bus error, row by row;
 *  - polkit_check_async() on a private bus (GTestDBus) against a stub
 *    authority that records what it was asked and answers as told: the
 *    wire format (subject, details, flags), the fail-closed paths (error
 *    reply, malformed reply, no polkitd), max_pending, that continuations
 *    never run synchronously, and that freeing the registry drops pending
 *    queries without calling them.
 *
 * What real polkitd answers is for the integration tests. */

#include <gio/gio.h>
#include <glib.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "errors.h"
#include "polkit.h"
#include "util.h"

#define ACTION "org.example.luksvolume1.attach"

/* ---------------------------------------------------------------------- */
/* polkit_verdict() */

static void assert_denied(bool allowed, const sd_bus_error *e, const char *name) {
        g_assert_false(allowed);
        g_assert_true(sd_bus_error_is_set(e));
        g_assert_cmpstr(e->name, ==, name);
        g_assert_nonnull(e->message);
        /* Every refusal names the action, so a log line or a CLI message
         * tells the admin which rule to write. */
        g_assert_nonnull(strstr(e->message, ACTION));
}

static void test_verdict_authorized(void) {
        /* Authorized wins over everything else polkit may have said. */
        for (unsigned i = 0; i < 8; i++) {
                sd_bus_error e = SD_BUS_ERROR_NULL;

                g_assert_true(polkit_verdict(true, i & 1, i & 2, i & 4, ACTION, &e));
                g_assert_false(sd_bus_error_is_set(&e));
        }
}

static void test_verdict_challenge_not_interactive(void) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

        assert_denied(polkit_verdict(false, true, false, false, ACTION, &e), &e,
                      DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED);
}

static void test_verdict_challenge_interactive(void) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

        /* The caller allowed interaction and still got a challenge back:
         * no agent could authenticate it.  Telling it to retry with
         * interaction would loop, so this is a plain denial. */
        assert_denied(polkit_verdict(false, true, false, true, ACTION, &e), &e, DBUS_ERROR_ACCESS_DENIED);
}

static void test_verdict_dismissed(void) {
        for (unsigned i = 0; i < 4; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

                assert_denied(polkit_verdict(false, i & 1, true, i & 2, ACTION, &e), &e, DBUS_ERROR_ACCESS_DENIED);
                g_assert_nonnull(strstr(e.message, "dismissed"));
        }
}

static void test_verdict_plain_no(void) {
        for (unsigned i = 0; i < 2; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

                assert_denied(polkit_verdict(false, false, false, i, ACTION, &e), &e, DBUS_ERROR_ACCESS_DENIED);
        }
}

static void test_verdict_null_error(void) {
        /* A caller that only wants the boolean may pass no error. */
        g_assert_true(polkit_verdict(true, false, false, false, ACTION, NULL));
        g_assert_false(polkit_verdict(false, false, false, false, ACTION, NULL));
        g_assert_false(polkit_verdict(false, true, false, false, NULL, NULL));
}

/* ---------------------------------------------------------------------- */
/* polkit_check_async() on a private bus against a stub authority */

typedef enum StubMode {
        STUB_ANSWER,    /* reply (authorized, challenge, {details}) */
        STUB_ERROR,     /* reply with an error */
        STUB_MALFORMED, /* reply with the wrong signature */
        STUB_HOLD,      /* keep the call, answer later (or never) */
} StubMode;

typedef struct Fixture {
        GTestDBus *dbus;
        sd_event *event;
        sd_bus *service, *authority, *client, *client2;
        PolkitRegistry *registry;

        /* stub authority */
        StubMode mode;
        bool answer_authorized, answer_challenge, answer_dismissed;
        unsigned n_asked;
        char *asked_subject_kind, *asked_subject_name, *asked_action, *asked_cancel_id;
        GHashTable *asked_details;
        uint32_t asked_flags;
        sd_bus_message *held[48];
        unsigned n_held;

        /* service */
        const char *const *details;
        bool in_handler;
        int check_result;
        unsigned n_continuations;
        bool cont_allowed;
        char *cont_error_name, *cont_error_message;
        bool free_registry_in_continuation;

        /* client */
        unsigned n_replies;
        char *reply_error_name;
} Fixture;

static int stub_authority(sd_bus_message *m, void *userdata, sd_bus_error *ret_error _unused_) {
        Fixture *f = userdata;
        const char *kind, *action, *cancel_id;
        int r;

        if (!sd_bus_message_is_method_call(m, "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization"))
                return 0;

        g_assert_true(sd_bus_message_has_signature(m, "(sa{sv})sa{ss}us"));
        f->n_asked++;

        g_assert_cmpint(sd_bus_message_enter_container(m, 'r', "sa{sv}"), >, 0);
        g_assert_cmpint(sd_bus_message_read(m, "s", &kind), >, 0);
        g_free(f->asked_subject_kind);
        f->asked_subject_kind = g_strdup(kind);
        g_assert_cmpint(sd_bus_message_enter_container(m, 'a', "{sv}"), >, 0);
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *value;

                g_assert_cmpint(sd_bus_message_read(m, "s", &key), >, 0);
                g_assert_cmpstr(key, ==, "name");
                g_assert_cmpint(sd_bus_message_read(m, "v", "s", &value), >, 0);
                g_free(f->asked_subject_name);
                f->asked_subject_name = g_strdup(value);
                g_assert_cmpint(sd_bus_message_exit_container(m), >=, 0);
        }
        g_assert_cmpint(r, ==, 0);
        g_assert_cmpint(sd_bus_message_exit_container(m), >=, 0);
        g_assert_cmpint(sd_bus_message_exit_container(m), >=, 0);

        g_assert_cmpint(sd_bus_message_read(m, "s", &action), >, 0);
        g_free(f->asked_action);
        f->asked_action = g_strdup(action);

        g_hash_table_remove_all(f->asked_details);
        g_assert_cmpint(sd_bus_message_enter_container(m, 'a', "{ss}"), >, 0);
        for (;;) {
                const char *key, *value;

                r = sd_bus_message_read(m, "{ss}", &key, &value);
                g_assert_cmpint(r, >=, 0);
                if (r == 0)
                        break;
                g_hash_table_insert(f->asked_details, g_strdup(key), g_strdup(value));
        }
        g_assert_cmpint(sd_bus_message_exit_container(m), >=, 0);

        g_assert_cmpint(sd_bus_message_read(m, "us", &f->asked_flags, &cancel_id), >, 0);
        g_free(f->asked_cancel_id);
        f->asked_cancel_id = g_strdup(cancel_id);

        switch (f->mode) {
        case STUB_ANSWER:
                if (f->answer_dismissed)
                        return sd_bus_reply_method_return(m, "(bba{ss})", f->answer_authorized, f->answer_challenge, 1,
                                                          "polkit.dismissed", "true");
                return sd_bus_reply_method_return(m, "(bba{ss})", f->answer_authorized, f->answer_challenge, 0);
        case STUB_ERROR:
                return sd_bus_reply_method_errorf(m, "org.freedesktop.PolicyKit1.Error.Failed",
                                                  "Action %s is not registered", action);
        case STUB_MALFORMED:
                return sd_bus_reply_method_return(m, "(bb)", true, false);
        case STUB_HOLD:
                g_assert_cmpuint(f->n_held, <, ELEMENTSOF(f->held));
                f->held[f->n_held++] = sd_bus_message_ref(m);
                return 1;
        }
        g_assert_not_reached();
}

static void continuation(sd_bus_message *m, bool allowed, const sd_bus_error *error, uid_t uid, void *userdata) {
        Fixture *f = userdata;

        /* Never from inside polkit_check_async(). */
        g_assert_false(f->in_handler);

        f->n_continuations++;
        f->cont_allowed = allowed;
        g_free(f->cont_error_name);
        g_free(f->cont_error_message);
        f->cont_error_name = allowed ? NULL : g_strdup(error->name);
        f->cont_error_message = allowed ? NULL : g_strdup(error->message);
        if (allowed)
                g_assert_null(error);
        else
                g_assert_true(sd_bus_error_is_set(error));

        if (f->free_registry_in_continuation)
                f->registry = polkit_registry_free(f->registry);

        if (allowed)
                g_assert_cmpint(sd_bus_reply_method_return(m, NULL), >=, 0);
        else
                g_assert_cmpint(sd_bus_reply_method_error(m, error), >=, 0);
}

static int service_check(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Fixture *f = userdata;

        f->in_handler = true;
        f->check_result = polkit_check_async(f->registry, m, ACTION, f->details, continuation, f);
        f->in_handler = false;

        if (f->check_result == -EBUSY)
                return sd_bus_error_set(ret_error, LV_ERROR_BUSY, "Too many pending authorization checks");
        if (f->check_result < 0)
                return f->check_result;
        return 1;
}

static const sd_bus_vtable service_vtable[] = {
        SD_BUS_VTABLE_START(0), SD_BUS_METHOD("Check", "", "", service_check, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static int client_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error _unused_) {
        Fixture *f = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        f->n_replies++;
        g_free(f->reply_error_name);
        f->reply_error_name = e ? g_strdup(e->name) : NULL;
        return 0;
}

static sd_bus *bus_connect(Fixture *f) {
        sd_bus *bus = NULL;

        g_assert_cmpint(sd_bus_new(&bus), >=, 0);
        g_assert_cmpint(sd_bus_set_address(bus, g_test_dbus_get_bus_address(f->dbus)), >=, 0);
        g_assert_cmpint(sd_bus_set_bus_client(bus, true), >=, 0);
        g_assert_cmpint(sd_bus_start(bus), >=, 0);
        g_assert_cmpint(sd_bus_attach_event(bus, f->event, 0), >=, 0);
        return bus;
}

static void fixture_setup(Fixture *f, gconstpointer with_authority) {
        f->dbus = g_test_dbus_new(G_TEST_DBUS_NONE);
        g_test_dbus_up(f->dbus);
        g_assert_cmpint(sd_event_new(&f->event), >=, 0);

        f->service = bus_connect(f);
        g_assert_cmpint(sd_bus_add_object_vtable(f->service, NULL, "/test", "org.example.Test", service_vtable, f), >=,
                        0);
        g_assert_cmpint(polkit_registry_new(f->service, 4, &f->registry), >=, 0);
        /* These tests are about the conversation with polkitd (a stub
         * here), which the root shortcut would skip when run as root; and
         * about the caps, which root (CI runs as root) is exempt from. */
        polkit_registry_set_root_shortcut(f->registry, false);
        polkit_registry_set_caps_exempt_root(f->registry, false);

        f->asked_details = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        if (GPOINTER_TO_INT(with_authority)) {
                f->authority = bus_connect(f);
                g_assert_cmpint(sd_bus_add_object(f->authority, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                                  stub_authority, f),
                                >=, 0);
                g_assert_cmpint(sd_bus_request_name(f->authority, "org.freedesktop.PolicyKit1", 0), >=, 0);
        }

        f->client = bus_connect(f);
        f->client2 = bus_connect(f);
}

static void fixture_teardown(Fixture *f, gconstpointer unused _unused_) {
        for (unsigned i = 0; i < f->n_held; i++)
                sd_bus_message_unref(f->held[i]);
        f->registry = polkit_registry_free(f->registry);
        sd_bus_flush_close_unref(f->client);
        sd_bus_flush_close_unref(f->client2);
        sd_bus_flush_close_unref(f->authority);
        sd_bus_flush_close_unref(f->service);
        sd_event_unref(f->event);
        g_test_dbus_down(f->dbus);
        g_object_unref(f->dbus);
        g_hash_table_unref(f->asked_details);
        g_free(f->asked_subject_kind);
        g_free(f->asked_subject_name);
        g_free(f->asked_action);
        g_free(f->asked_cancel_id);
        g_free(f->cont_error_name);
        g_free(f->cont_error_message);
        g_free(f->reply_error_name);
}

static void client_call_on(Fixture *f, sd_bus *client, bool interactive) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *service_name;

        g_assert_cmpint(sd_bus_get_unique_name(f->service, &service_name), >=, 0);
        g_assert_cmpint(sd_bus_message_new_method_call(client, &m, service_name, "/test", "org.example.Test", "Check"),
                        >=, 0);
        g_assert_cmpint(sd_bus_message_set_allow_interactive_authorization(m, interactive), >=, 0);
        /* floating slot: lives until the reply (or the connection) is gone */
        g_assert_cmpint(sd_bus_call_async(client, NULL, m, client_reply, f, 0), >=, 0);
}

static void client_call(Fixture *f, bool interactive) {
        client_call_on(f, f->client, interactive);
}

/* Runs the loop until n client replies arrived (or fails after 10 s). */
static void run_until_replies(Fixture *f, unsigned n) {
        gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

        while (f->n_replies < n) {
                g_assert_cmpint(g_get_monotonic_time(), <, deadline);
                g_assert_cmpint(sd_event_run(f->event, 100 * 1000), >=, 0);
        }
}

/* Runs the loop for a while, for "nothing must happen" checks. */
static void run_for(Fixture *f, unsigned msec) {
        gint64 deadline = g_get_monotonic_time() + (gint64) msec * 1000;

        while (g_get_monotonic_time() < deadline)
                g_assert_cmpint(sd_event_run(f->event, 10 * 1000), >=, 0);
}

static void test_wire_format(Fixture *f, gconstpointer unused _unused_) {
        static const char *const details[] = { "domain", "web1", "source", "/var/lib/libvirt/images/a.img",
                                               "target", "sdb",  "mode",   "native",
                                               NULL };
        const char *client_name;

        f->details = details;
        f->mode = STUB_ANSWER;
        f->answer_authorized = true;

        client_call(f, false);
        run_until_replies(f, 1);

        g_assert_cmpint(f->check_result, ==, 0);
        g_assert_cmpuint(f->n_asked, ==, 1);
        g_assert_cmpint(sd_bus_get_unique_name(f->client, &client_name), >=, 0);
        g_assert_cmpstr(f->asked_subject_kind, ==, "system-bus-name");
        g_assert_cmpstr(f->asked_subject_name, ==, client_name);
        g_assert_cmpstr(f->asked_action, ==, ACTION);
        g_assert_cmpuint(g_hash_table_size(f->asked_details), ==, 4);
        g_assert_cmpstr(g_hash_table_lookup(f->asked_details, "domain"), ==, "web1");
        g_assert_cmpstr(g_hash_table_lookup(f->asked_details, "source"), ==, "/var/lib/libvirt/images/a.img");
        g_assert_cmpstr(g_hash_table_lookup(f->asked_details, "target"), ==, "sdb");
        g_assert_cmpstr(g_hash_table_lookup(f->asked_details, "mode"), ==, "native");
        g_assert_cmpuint(f->asked_flags, ==, 0);
        g_assert_cmpstr(f->asked_cancel_id, ==, "");

        g_assert_cmpuint(f->n_continuations, ==, 1);
        g_assert_true(f->cont_allowed);
        g_assert_null(f->reply_error_name);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 0);

        /* The caller's interactive flag, and only that, turns on
         * AllowUserInteraction. */
        client_call(f, true);
        run_until_replies(f, 2);
        g_assert_cmpuint(f->asked_flags, ==, 1);
}

static void test_no_details(Fixture *f, gconstpointer unused _unused_) {
        f->details = NULL;
        f->mode = STUB_ANSWER;
        f->answer_authorized = true;

        client_call(f, false);
        run_until_replies(f, 1);
        g_assert_cmpuint(g_hash_table_size(f->asked_details), ==, 0);
        g_assert_true(f->cont_allowed);
}

static void test_challenge_reaches_caller(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_ANSWER;
        f->answer_challenge = true;

        client_call(f, false);
        run_until_replies(f, 1);
        g_assert_false(f->cont_allowed);
        g_assert_cmpstr(f->reply_error_name, ==, DBUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED);

        client_call(f, true);
        run_until_replies(f, 2);
        g_assert_cmpstr(f->reply_error_name, ==, DBUS_ERROR_ACCESS_DENIED);
}

static void test_dismissed_detail(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_ANSWER;
        f->answer_dismissed = true;

        client_call(f, true);
        run_until_replies(f, 1);
        g_assert_false(f->cont_allowed);
        g_assert_cmpstr(f->reply_error_name, ==, DBUS_ERROR_ACCESS_DENIED);
        g_assert_nonnull(strstr(f->cont_error_message, "dismissed"));
}

/* The caller is this very process: with euid 0 the fail-closed path lets
 * it through, otherwise it must be denied with the documented message.
 * (The other half is covered by the integration tests.) */
static void assert_failed_closed(Fixture *f) {
        g_assert_cmpuint(f->n_continuations, ==, 1);
        if (geteuid() == 0) {
                g_assert_true(f->cont_allowed);
                g_assert_null(f->reply_error_name);
        } else {
                g_assert_false(f->cont_allowed);
                g_assert_cmpstr(f->cont_error_name, ==, DBUS_ERROR_ACCESS_DENIED);
                g_assert_true(g_str_has_prefix(f->cont_error_message, "polkit is unavailable ("));
                g_assert_true(g_str_has_suffix(f->cont_error_message, "); only root may call this method"));
        }
}

static void test_error_reply_fails_closed(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_ERROR;

        client_call(f, false);
        run_until_replies(f, 1);
        assert_failed_closed(f);
}

static void test_malformed_reply_fails_closed(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_MALFORMED;

        client_call(f, false);
        run_until_replies(f, 1);
        assert_failed_closed(f);
}

static void test_no_polkitd_fails_closed(Fixture *f, gconstpointer unused _unused_) {
        /* nobody owns org.freedesktop.PolicyKit1 on this bus */
        client_call(f, false);
        run_until_replies(f, 1);
        assert_failed_closed(f);
}

static void test_max_pending(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_HOLD;

        for (unsigned i = 0; i < 5; i++)
                client_call(f, false);

        /* The fifth call is refused (Busy, through its continuation, once
         * the caller's uid is known); the four others wait for polkitd. */
        run_until_replies(f, 1);
        g_assert_cmpstr(f->reply_error_name, ==, LV_ERROR_BUSY);
        g_assert_cmpstr(f->cont_error_name, ==, LV_ERROR_BUSY);
        g_assert_cmpint(f->check_result, ==, 0);
        run_for(f, 100);
        g_assert_cmpuint(f->n_held, ==, 4);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 4);
        g_assert_cmpuint(f->n_continuations, ==, 1);

        /* Answering one frees its place. */
        g_assert_cmpint(sd_bus_reply_method_return(f->held[0], "(bba{ss})", true, false, 0), >=, 0);
        run_until_replies(f, 2);
        g_assert_cmpuint(f->n_continuations, ==, 2);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 3);

        client_call(f, false);
        run_for(f, 100);
        g_assert_cmpuint(f->n_held, ==, 5);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 4);
}

/* The per-user cap counts a uid's queries over all its connections: two
 * connections of one user together get 32, not 32 each. */
static void test_cap_per_uid(Fixture *f, gconstpointer unused _unused_) {
        f->registry = polkit_registry_free(f->registry);
        g_assert_cmpint(polkit_registry_new(f->service, 128, &f->registry), >=, 0);
        polkit_registry_set_root_shortcut(f->registry, false);
        polkit_registry_set_caps_exempt_root(f->registry, false);
        f->mode = STUB_HOLD;

        for (unsigned i = 0; i < 20; i++)
                client_call_on(f, f->client, false);
        for (unsigned i = 0; i < 20; i++)
                client_call_on(f, f->client2, false);

        run_until_replies(f, 8);
        run_for(f, 200);
        g_assert_cmpuint(f->n_replies, ==, 8);
        g_assert_cmpstr(f->reply_error_name, ==, LV_ERROR_BUSY);
        g_assert_cmpuint(f->n_held, ==, 32);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 32);
}

/* Root is exempt from the caps: with every slot of a flood taken, its
 * query still reaches polkitd. */
static void test_cap_exempts_root(Fixture *f, gconstpointer unused _unused_) {
        if (geteuid() != 0) {
                g_test_skip("needs to run as root (the exemption is for uid 0)");
                return;
        }
        f->mode = STUB_HOLD;

        for (unsigned i = 0; i < 4; i++)
                client_call(f, false);
        run_for(f, 100);
        g_assert_cmpuint(f->n_held, ==, 4);

        /* Capped as anyone else while the exemption is off ... */
        client_call(f, false);
        run_until_replies(f, 1);
        g_assert_cmpstr(f->reply_error_name, ==, LV_ERROR_BUSY);

        /* ... and not with it on (the default). */
        polkit_registry_set_caps_exempt_root(f->registry, true);
        client_call(f, false);
        run_for(f, 200);
        g_assert_cmpuint(f->n_replies, ==, 1);
        g_assert_cmpuint(f->n_held, ==, 5);
}

static void test_free_drops_pending(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_HOLD;

        client_call(f, false);
        client_call(f, true);
        run_for(f, 100);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 2);

        f->registry = polkit_registry_free(f->registry);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 0);

        /* Late answers from polkitd land nowhere: no continuation runs. */
        for (unsigned i = 0; i < f->n_held; i++)
                g_assert_cmpint(sd_bus_reply_method_return(f->held[i], "(bba{ss})", true, false, 0), >=, 0);
        run_for(f, 200);
        g_assert_cmpuint(f->n_continuations, ==, 0);
        g_assert_cmpuint(f->n_replies, ==, 0);
}

static void test_free_from_continuation(Fixture *f, gconstpointer unused _unused_) {
        f->mode = STUB_HOLD;
        f->free_registry_in_continuation = true;

        client_call(f, false);
        client_call(f, false);
        run_for(f, 100);
        g_assert_cmpuint(f->n_held, ==, 2);

        /* The first continuation frees the registry (and with it the
         * second query); the second answer must then be ignored. */
        g_assert_cmpint(sd_bus_reply_method_return(f->held[0], "(bba{ss})", true, false, 0), >=, 0);
        run_until_replies(f, 1);
        g_assert_null(f->registry);
        g_assert_cmpint(sd_bus_reply_method_return(f->held[1], "(bba{ss})", true, false, 0), >=, 0);
        run_for(f, 200);
        g_assert_cmpuint(f->n_continuations, ==, 1);
}

static void test_bad_arguments(Fixture *f, gconstpointer unused _unused_) {
        static const char *const odd[] = { "domain", NULL };
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

        f->mode = STUB_ANSWER;
        f->details = odd;
        client_call(f, false);
        run_until_replies(f, 1);
        g_assert_cmpint(f->check_result, ==, -EINVAL);
        g_assert_cmpuint(f->n_asked, ==, 0);
        g_assert_cmpuint(f->n_continuations, ==, 0);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 0);

        /* A message without a sender (never seen from a bus) has no
         * system-bus-name subject. */
        g_assert_cmpint(sd_bus_message_new_method_call(f->service, &m, "org.example.Test", "/test", "org.example.Test",
                                                       "Check"),
                        >=, 0);
        g_assert_cmpint(polkit_check_async(f->registry, m, ACTION, NULL, continuation, f), ==, -EINVAL);
        g_assert_cmpint(polkit_check_async(f->registry, m, "", NULL, continuation, f), ==, -EINVAL);
        g_assert_cmpint(polkit_check_async(f->registry, m, ACTION, NULL, NULL, f), ==, -EINVAL);
        g_assert_cmpint(polkit_check_async(NULL, m, ACTION, NULL, continuation, f), ==, -EINVAL);
        g_assert_cmpuint(polkit_registry_pending(f->registry), ==, 0);
}

static void test_registry_new(void) {
        PolkitRegistry *r = NULL;

        g_assert_cmpint(polkit_registry_new(NULL, 4, &r), ==, -EINVAL);
        g_assert_null(polkit_registry_free(NULL));
        g_assert_cmpuint(polkit_registry_pending(NULL), ==, 0);
}

#define ADD_BUS_TEST(path, func, with_authority) \
        g_test_add(path, Fixture, GINT_TO_POINTER(with_authority), fixture_setup, func, fixture_teardown)

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        log_set_max_level(LOG_LEVEL_ERR); /* fail-closed warnings are expected here */

        g_test_add_func("/polkit/verdict/authorized", test_verdict_authorized);
        g_test_add_func("/polkit/verdict/challenge-not-interactive", test_verdict_challenge_not_interactive);
        g_test_add_func("/polkit/verdict/challenge-interactive", test_verdict_challenge_interactive);
        g_test_add_func("/polkit/verdict/dismissed", test_verdict_dismissed);
        g_test_add_func("/polkit/verdict/plain-no", test_verdict_plain_no);
        g_test_add_func("/polkit/verdict/null-error", test_verdict_null_error);
        g_test_add_func("/polkit/registry/new", test_registry_new);

        ADD_BUS_TEST("/polkit/async/wire-format", test_wire_format, true);
        ADD_BUS_TEST("/polkit/async/no-details", test_no_details, true);
        ADD_BUS_TEST("/polkit/async/challenge", test_challenge_reaches_caller, true);
        ADD_BUS_TEST("/polkit/async/dismissed", test_dismissed_detail, true);
        ADD_BUS_TEST("/polkit/async/error-reply-fails-closed", test_error_reply_fails_closed, true);
        ADD_BUS_TEST("/polkit/async/malformed-reply-fails-closed", test_malformed_reply_fails_closed, true);
        ADD_BUS_TEST("/polkit/async/no-polkitd-fails-closed", test_no_polkitd_fails_closed, false);
        ADD_BUS_TEST("/polkit/async/max-pending", test_max_pending, true);
        ADD_BUS_TEST("/polkit/async/cap-per-uid", test_cap_per_uid, true);
        ADD_BUS_TEST("/polkit/async/cap-exempts-root", test_cap_exempts_root, true);
        ADD_BUS_TEST("/polkit/async/free-drops-pending", test_free_drops_pending, true);
        ADD_BUS_TEST("/polkit/async/free-from-continuation", test_free_from_continuation, true);
        ADD_BUS_TEST("/polkit/async/bad-arguments", test_bad_arguments, true);

        return g_test_run();
}
