/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The host's lifecycle around the guest (issue 11), on the real stack:
 * saved guests keep their volumes (virsh save/restore, managedsave/start,
 * across a daemon restart), a saved guest whose secret libvirtd lost is
 * re-armed, and a Detach waiting for a guest holds no worker thread. */

#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "host lifecycle passphrase"
#define PATTERN 0x4e

static GDBusConnection *bus;

static GVariant *scsi(void) {
        return lv_opts("bus", g_variant_new_string("scsi"), NULL);
}

static guint count_objects(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        return g_strv_length(objs);
}

static void assert_clean(void) {
        gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline && (count_objects() > 0 || lv_count_secrets() > 0))
                g_usleep(20 * 1000);
        g_assert_cmpuint(count_objects(), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
}

/* virsh save / restore: the secret outlives the stop, the volume is "saved"
 * meanwhile and "attached" again after the restore, and QEMU reads the
 * plaintext again. */
static void test_save_restore(void) {
        virDomainPtr g = lv_start_guest("hl-save");
        g_autofree char *img = lv_make_luks1_image("hl-save.img", PASS, PATTERN, 16);
        g_autofree char *state = lv_sandbox_path("hl-save.state");
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "hl-save", img, PASS, scsi(), &error);
        g_assert_no_error(error);

        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        /* Nothing to detach while saved. */
        g_assert_false(lv_detach(bus, path, NULL, &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);

        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "hl-save");
        g_assert_nonnull(g);
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        g_assert_true(lv_guest_reads_pattern(g, PATTERN, 65536));

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);
        g_unlink(state);
        assert_clean();
}

/* managedsave, then the daemon dies: the next instance finds the saved
 * volume in the managed save image, keeps its secret (no orphan), and
 * "virsh start" restores the guest with the volume working. */
static void test_managedsave_across_restart(void) {
        virDomainPtr g = lv_start_persistent_guest("hl-msave");
        g_autofree char *img = lv_make_luks1_image("hl-msave.img", PASS, PATTERN, 16);
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "hl-msave", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainManagedSave(g, 0), ==, 0);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));

        lv_daemon_kill(bus, SIGKILL);
        /* Re-activated by the call below; it rebuilds from libvirt. */
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 10000));
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        g_autofree char *secret = lv_volume_prop_string(bus, path, "SecretUUID");
        g_assert_cmpstr(secret, !=, "");

        g_assert_cmpint(virDomainCreate(g), ==, 0); /* restores from the managed save image */
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        g_assert_true(lv_guest_reads_pattern(g, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_remove_guest(g);
        assert_clean();
}

/* libvirtd restarts while the guest is saved: its ephemeral secret is
 * gone, and the restore fails — until the volume is re-armed. */
static void test_rearm(void) {
        virDomainPtr g = lv_start_guest("hl-rearm");
        g_autofree char *img = lv_make_luks1_image("hl-rearm.img", PASS, PATTERN, 16);
        g_autofree char *state = lv_sandbox_path("hl-rearm.state");
        GError *error = NULL;

        g_autofree char *path = lv_attach(bus, "hl-rearm", img, PASS, scsi(), &error);
        g_assert_no_error(error);

        /* Only a saved volume is re-armed. */
        lv_volume_rearm(bus, path, PASS, &error);
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_clear_error(&error);

        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));

        lv_restart_libvirtd();
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        /* The daemon rescans after the reconnect; the saved volume stays. */
        g_usleep(2 * G_USEC_PER_SEC);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));

        /* Without its secret the restore fails. */
        g_assert_cmpint(virDomainRestore(lv_virt(), state), <, 0);
        g_test_message("restore without the secret: %s", virGetLastErrorMessage());

        lv_volume_rearm(bus, path, "not the passphrase", &error);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);

        lv_volume_rearm(bus, path, PASS, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        /* Again: nothing missing, nothing to do. */
        lv_volume_rearm(bus, path, PASS, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, 1);

        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "hl-rearm");
        g_assert_nonnull(g);
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        g_assert_true(lv_guest_reads_pattern(g, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(g);
        g_unlink(state);
        assert_clean();
}

/* ----------------------------------------------- detaches that never end */

typedef struct Pending {
        GVariant *reply;
        GError *error;
        gboolean done;
} Pending;

static void on_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        p->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);
        p->done = TRUE;
}

/* Twenty Detach calls waiting for guests that never let go (virtio disks
 * on guests without an OS) hold no worker thread: an Attach and Detach
 * elsewhere complete while all twenty still wait.  (With one thread per
 * waiting Detach and 16 threads in all, they could not.)  When the guests
 * go, every waiting Detach finishes. */
static void test_waiting_detaches_hold_no_worker(void) {
        enum {
                GUESTS = 2,
                PER_GUEST = 10
        };
        virDomainPtr g[GUESTS];
        char *paths[GUESTS * PER_GUEST];
        Pending p[GUESTS * PER_GUEST] = {};
        GError *error = NULL;

        for (int k = 0; k < GUESTS; k++) {
                g_autofree char *name = g_strdup_printf("hl-stuck%d", k);
                g[k] = lv_start_guest(name);
                for (int i = 0; i < PER_GUEST; i++) {
                        g_autofree char *iname = g_strdup_printf("hl-stuck%d-%d.img", k, i);
                        g_autofree char *img = lv_make_luks1_image(iname, PASS, PATTERN, 4);
                        paths[k * PER_GUEST + i] = lv_attach(bus, name, img, PASS, NULL, &error); /* virtio */
                        g_assert_no_error(error);
                }
        }

        for (int i = 0; i < GUESTS * PER_GUEST; i++)
                g_dbus_connection_call(
                        bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Detach",
                        g_variant_new("(o@a{sv})", paths[i], lv_opts("timeout", g_variant_new_uint32(120), NULL)), NULL,
                        G_DBUS_CALL_FLAGS_NONE, 180000, NULL, on_reply, &p[i]);
        /* Let them all reach the daemon and ask their guests. */
        gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline)
                g_main_context_iteration(NULL, FALSE), g_usleep(10 * 1000);

        virDomainPtr other = lv_start_guest("hl-free");
        g_autofree char *img = lv_make_luks1_image("hl-free.img", PASS, PATTERN, 4);
        gint64 t0 = g_get_monotonic_time();
        g_autofree char *path = lv_attach(bus, "hl-free", img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_test_message("attach + detach elsewhere took %.0f ms with %d detaches waiting",
                       (g_get_monotonic_time() - t0) / 1000.0, GUESTS * PER_GUEST);
        g_main_context_iteration(NULL, FALSE);
        for (int i = 0; i < GUESTS * PER_GUEST; i++)
                g_assert_false(p[i].done);
        lv_destroy_guest(other);

        /* The guests go: every waiting Detach completes the cleanup. */
        for (int k = 0; k < GUESTS; k++)
                lv_destroy_guest(g[k]);
        for (int i = 0; i < GUESTS * PER_GUEST; i++) {
                while (!p[i].done)
                        g_main_context_iteration(NULL, TRUE);
                g_assert_no_error(p[i].error);
                g_variant_unref(p[i].reply);
                g_free(paths[i]);
        }
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        bus = lv_bus();

        g_test_add_func("/host/save-restore", test_save_restore);
        g_test_add_func("/host/managedsave-across-restart", test_managedsave_across_restart);
        g_test_add_func("/host/rearm", test_rearm);
        g_test_add_func("/host/waiting-detaches-hold-no-worker", test_waiting_detaches_hold_no_worker);
        return g_test_run();
}
