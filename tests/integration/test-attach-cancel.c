/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Attach with the option request-id: the caller hears the steps
 * (AttachProgress, to it alone) and can CancelAttach until the point of no
 * return; a cancelled attach leaves nothing (no volume, no secret, no disk,
 * the source free again); too late, another caller's or an unknown id
 * answer false and change nothing.  The image's key slot costs ~1.5 s of
 * PBKDF2 (more in libcryptsetup), which is the window to cancel in. */

#include <gio/gio.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS         "cancel test passphrase"
#define PATTERN      0x3c
#define INVALID_ARGS "org.freedesktop.DBus.Error.InvalidArgs"
#define LV_CANCELLED LV_ERR("Cancelled")
#define STEP_TIMEOUT 60

static GDBusConnection *root_bus;
static virDomainPtr guest;
static char *slow_img;

/* One attach in flight on a connection: its steps as heard, its reply. */
typedef struct Pending {
        char *id;
        GPtrArray *steps; /* "checking", … */
        gboolean done;
        char *path;
        GError *error;
        guint sub;
} Pending;

static void on_progress(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *member,
                        GVariant *params, gpointer userdata) {
        Pending *p = userdata;
        const char *id, *step;

        g_variant_get(params, "(&s&s)", &id, &step);
        if (g_strcmp0(id, p->id) == 0)
                g_ptr_array_add(p->steps, g_strdup(step));
}

static void on_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        g_autoptr(GVariant) reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);

        if (reply)
                g_variant_get(reply, "(o)", &p->path);
        p->done = TRUE;
}

static Pending *attach_async_to(GDBusConnection *bus, const char *domain, const char *id, const char *source) {
        Pending *p = g_new0(Pending, 1);
        GVariantBuilder opts;

        p->id = g_strdup(id);
        p->steps = g_ptr_array_new_with_free_func(g_free);
        p->sub =
                g_dbus_connection_signal_subscribe(bus, NULL, LV_BUS_NAME, "AttachProgress", "/org/example/LuksVolume1",
                                                   NULL, G_DBUS_SIGNAL_FLAGS_NONE, on_progress, p, NULL);
        g_variant_builder_init(&opts, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&opts, "{sv}", "bus", g_variant_new_string("scsi"));
        if (id)
                g_variant_builder_add(&opts, "{sv}", "request-id", g_variant_new_string(id));
        g_dbus_connection_call(bus, LV_BUS_NAME, "/org/example/LuksVolume1", LV_BUS_NAME, "Attach",
                               g_variant_new("(ss@ay@a{sv})", domain, source,
                                             g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                             g_variant_builder_end(&opts)),
                               G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 120000, NULL, on_reply, p);
        return p;
}

static Pending *attach_async(GDBusConnection *bus, const char *id, const char *source) {
        return attach_async_to(bus, "lvtest-guest", id, source);
}

static void pending_free(GDBusConnection *bus, Pending *p) {
        g_dbus_connection_signal_unsubscribe(bus, p->sub);
        g_ptr_array_unref(p->steps);
        g_clear_error(&p->error);
        g_free(p->path);
        g_free(p->id);
        g_free(p);
}

static gboolean has_step(Pending *p, const char *step) {
        for (guint i = 0; i < p->steps->len; i++)
                if (strcmp(p->steps->pdata[i], step) == 0)
                        return TRUE;
        return FALSE;
}

/* Runs the default main context until step was heard (NULL: the reply). */
static void wait_for(Pending *p, const char *step) {
        gint64 end = g_get_monotonic_time() + STEP_TIMEOUT * G_USEC_PER_SEC;

        while (step ? !has_step(p, step) && !p->done : !p->done) {
                g_assert_cmpint(g_get_monotonic_time(), <, end);
                g_main_context_iteration(NULL, FALSE);
                g_usleep(2000);
        }
}

static gboolean cancel(GDBusConnection *bus, const char *id) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = lv_call_manager(bus, "CancelAttach", g_variant_new("(s)", id), NULL, &error);
        gboolean cancelled;

        g_assert_no_error(error);
        g_variant_get(reply, "(b)", &cancelled);
        return cancelled;
}

static char *steps_joined(Pending *p) {
        g_ptr_array_add(p->steps, NULL);
        char *s = g_strjoinv(",", (char **) p->steps->pdata);
        g_ptr_array_remove_index(p->steps, p->steps->len - 1);
        return s;
}

static void detach(const char *path) {
        g_autoptr(GError) error = NULL;
        g_assert_true(lv_detach(root_bus, path, NULL, &error));
        g_assert_no_error(error);
}

static void assert_nothing_left(void) {
        g_auto(GStrv) objs = lv_managed_objects(root_bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_false(lv_domain_has_disk(guest, "sda"));
}

/* Without cancelling: checking, deriving-key, plugging, in that order,
 * then the volume. */
static void test_progress(void) {
        Pending *p = attach_async(root_bus, "steps-1", slow_img);

        wait_for(p, NULL);
        g_assert_no_error(p->error);
        g_autofree char *steps = steps_joined(p);
        g_assert_cmpstr(steps, ==, "checking,deriving-key,plugging");
        g_assert_false(cancel(root_bus, "steps-1")); /* over: nothing to cancel */
        detach(p->path);
        pending_free(root_bus, p);
        assert_nothing_left();
}

/* Cancelled while the key is derived: Error.Cancelled, never "plugging",
 * nothing left, and the source can be attached again at once. */
static void test_cancel_while_deriving(void) {
        Pending *p = attach_async(root_bus, "cancel-me", slow_img);

        wait_for(p, "deriving-key");
        g_assert_false(p->done);
        g_assert_true(cancel(root_bus, "cancel-me"));
        g_assert_false(cancel(root_bus, "cancel-me")); /* once */
        wait_for(p, NULL);
        lv_assert_error(p->error, LV_CANCELLED);
        g_assert_false(has_step(p, "plugging"));
        pending_free(root_bus, p);
        assert_nothing_left();

        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(root_bus, "lvtest-guest", slow_img, PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        detach(path);
        assert_nothing_left();
}

/* Once plugging, too late: false, and the attach completes. */
static void test_too_late(void) {
        Pending *p = attach_async(root_bus, "late", slow_img);

        wait_for(p, "plugging");
        g_assert_false(cancel(root_bus, "late"));
        wait_for(p, NULL);
        g_assert_no_error(p->error);
        detach(p->path);
        pending_free(root_bus, p);
        assert_nothing_left();
}

/* Another connection (even root's) cannot cancel it, nor hear its steps;
 * an unknown id is false; the same id twice in flight is InvalidArgs. */
static void test_not_yours(void) {
        g_autoptr(GDBusConnection) other = lv_bus_as_uid(0);
        Pending *p = attach_async(root_bus, "mine", slow_img);
        Pending *spy = g_new0(Pending, 1);

        spy->id = g_strdup("mine");
        spy->steps = g_ptr_array_new_with_free_func(g_free);
        spy->sub = g_dbus_connection_signal_subscribe(other, NULL, LV_BUS_NAME, "AttachProgress", NULL, NULL,
                                                      G_DBUS_SIGNAL_FLAGS_NONE, on_progress, spy, NULL);

        wait_for(p, "deriving-key");
        g_assert_false(cancel(other, "mine"));
        g_assert_false(cancel(root_bus, "no-such-request"));

        Pending *twin = attach_async(root_bus, "mine", slow_img);
        wait_for(twin, NULL);
        lv_assert_error(twin->error, INVALID_ARGS);
        pending_free(root_bus, twin);

        wait_for(p, NULL);
        g_assert_no_error(p->error);
        g_assert_cmpuint(spy->steps->len, ==, 0);
        detach(p->path);
        pending_free(root_bus, p);
        pending_free(other, spy);
        assert_nothing_left();
}

/* The domain stops while the key is derived: the attach answers as it
 * would have at its start (the act job keeps the domain its resolution
 * found and reads "running" off the live XML; a stopped domain takes the
 * full look-up again), and leaves nothing behind.  Persistent: its XML is
 * now its configuration, without an id (DomainNotRunning); transient: it
 * is gone (NoSuchDomain). */
static void test_domain_stops_while_deriving(void) {
        static const struct {
                const char *name;
                gboolean persistent;
                const char *error;
        } cases[] = {
                { "lvtest-stops-p", TRUE, LV_ERR("DomainNotRunning") },
                { "lvtest-stops-t", FALSE, LV_ERR("NoSuchDomain") },
        };
        /* The request id only for the progress signals it brings. */

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                virDomainPtr dom =
                        cases[i].persistent ? lv_start_persistent_guest(cases[i].name) : lv_start_guest(cases[i].name);
                Pending *p = attach_async_to(root_bus, cases[i].name, cases[i].name, slow_img);

                wait_for(p, "deriving-key");
                g_assert_false(p->done);
                g_assert_cmpint(virDomainDestroy(dom), ==, 0);
                wait_for(p, NULL);
                lv_assert_error(p->error, cases[i].error);
                g_assert_null(p->path);
                pending_free(root_bus, p);
                assert_nothing_left();
                if (cases[i].persistent)
                        lv_remove_guest(dom);
                else
                        virDomainFree(dom);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        root_bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");
        slow_img = lv_make_luks1_image_full("slow.img", PASS, PATTERN, 16, 1500);

        g_test_add_func("/attach-cancel/progress", test_progress);
        g_test_add_func("/attach-cancel/cancel-while-deriving", test_cancel_while_deriving);
        g_test_add_func("/attach-cancel/too-late", test_too_late);
        g_test_add_func("/attach-cancel/not-yours", test_not_yours);
        g_test_add_func("/attach-cancel/domain-stops-while-deriving", test_domain_stops_while_deriving);

        int r = g_test_run();
        lv_destroy_guest(guest);
        g_free(slow_img);
        return r;
}
