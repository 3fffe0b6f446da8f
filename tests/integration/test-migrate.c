/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Live migration of a guest with a native volume between two real libvirt
 * hosts on one machine (issue 19).  Host A is the sandbox; host B is
 * tests/sandbox/second-host.sh inside it: its own mount namespace, system
 * bus, polkitd, libvirtd (its own host_uuid) and luksvolumed, sharing the
 * sandbox's scratch directory, i.e. the image files.  QEMU's migration
 * stream goes over the loopback.
 *
 *   /migrate/native      StageIncoming on B, migrate A → B: B's service
 *                        shows the volume, B's QEMU reads the plaintext, A's
 *                        service removed the object and undefined its secret.
 *   /migrate/unstaged    no staging: the migration fails, the guest keeps
 *                        running on A with its volume and secret.
 *   /migrate/stage-checks  StageIncoming refuses a wrong passphrase, a
 *                        volume QEMU cannot decrypt, missing options, and a
 *                        staged secret nobody claims is gone after its
 *                        timeout.
 *
 *   /migrate/stage-polkit  the stage-incoming action and its details.
 *   /migrate/aborted     an aborted migration after staging: nothing left on B,
 *                        the guest as before on A.
 *   /migrate/killed      kill -9 of either daemon leaves no secret behind.
 *   /migrate/cli         luksvolumectl migrate.
 *
 * With LV_MIGRATE_DM=1, inside the dm-crypt VM (tests/vm), the same two
 * hosts share one kernel with device-mapper; B's service has
 * DeviceTag=hostb, A's none:
 *
 *   /migrate/dm/cryptsetup  a cryptsetup-mode volume through luksvolumectl
 *                        migrate: B opens its own mapping, the guest's XML
 *                        on B names it, B's QEMU reads the plaintext there,
 *                        A closed its mapping.
 *   /migrate/dm/shim     a header-shim volume: StageIncoming answers B's
 *                        shim device, the migration names it in the
 *                        destination XML, B's QEMU decrypts through B's shim;
 *                        A's daemon, killed before, removes A's shim and
 *                        secret when it starts again.
 *   /migrate/dm/expired  a staged mapping nobody claims is gone after its
 *                        timeout.
 *   /migrate/dm/killed   kill -9 of A's daemon leaves B's staged devices
 *                        alone (another tag); kill -9 of B's daemon with a
 *                        mapping and a shim staged: its next start removes
 *                        them and the shim's secret.
 *
 * argv[1]: second-host.sh, argv[2]: the daemon, argv[3]: luksvolumectl
 * (before GTest's options). */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fixture.h"
#include "lv-client.h"
#include "second-host.h"

#define PASS    "migration passphrase"
#define PATTERN 0x6d

static const char *second_host_sh, *daemon_path, *ctl_path;
static gboolean dm_mode;
static LvSecondHost *hb;
static char *shared_dir, *b_libvirt_uri;
static GDBusConnection *bus_a, *bus_b;
static virConnectPtr virt_b;

static GVariant *scsi_native(void) {
        return lv_opts("bus", g_variant_new_string("scsi"), "mode", g_variant_new_string("native"), NULL);
}

static gboolean stage(const char *domain_uuid, const char *source, const char *passphrase, GVariant *options,
                      GError **error) {
        GVariant *pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, passphrase, strlen(passphrase), 1);
        g_autoptr(GVariant) reply =
                lv_call_manager(bus_b, "StageIncoming",
                                g_variant_new("(ss@ay@a{sv})", domain_uuid, source, pass, options), NULL, error);
        return reply != NULL;
}

static gboolean secret_defined(virConnectPtr conn, const char *uuid) {
        virSecretPtr s = virSecretLookupByUUIDString(conn, uuid);
        if (!s)
                return FALSE;
        virSecretFree(s);
        return TRUE;
}

static guint count_secrets(virConnectPtr conn) {
        int n = virConnectNumOfSecrets(conn);
        g_assert_cmpint(n, >=, 0);
        return (guint) n;
}

/* Polls cond(arg) for at most timeout_ms. */
static gboolean wait_until(gboolean (*cond)(const void *arg), const void *arg, guint timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        while (!cond(arg)) {
                if (g_get_monotonic_time() >= deadline)
                        return FALSE;
                g_usleep(50 * 1000);
        }
        return TRUE;
}

static gboolean object_on_b(const void *path) {
        g_autoptr(GVariant) p = lv_volume_props(bus_b, path);
        return p != NULL;
}

static gboolean object_gone_on_a(const void *path) {
        g_autoptr(GVariant) p = lv_volume_props(bus_a, path);
        return p == NULL;
}

static gboolean object_gone_on_b(const void *path) {
        g_autoptr(GVariant) p = lv_volume_props(bus_b, path);
        return p == NULL;
}

static gboolean secret_gone_on_a(const void *uuid) {
        return !secret_defined(lv_virt(), uuid);
}

static gboolean secret_gone_on_b(const void *uuid) {
        return !secret_defined(virt_b, uuid);
}

/* --unsafe: both hosts use one file system, which libvirt cannot tell is
 * shared storage. */
static virDomainPtr migrate(virDomainPtr dom, char **ret_error) {
        return lv_migrate_to(hb, dom, VIR_MIGRATE_LIVE | VIR_MIGRATE_UNSAFE, ret_error);
}

/* VolumeMigrated signals seen on one bus: "PATH DIRECTION" each. */
static void on_migrated(GDBusConnection *c, const char *sender, const char *path, const char *iface, const char *signal,
                        GVariant *params, gpointer data) {
        const char *volume, *domain, *target, *direction;

        g_variant_get(params, "(&o&s&s&s)", &volume, &domain, &target, &direction);
        g_ptr_array_add(data, g_strdup_printf("%s %s", volume, direction));
}

static gboolean seen_signal(GPtrArray *seen, const char *volume, const char *direction, guint timeout_ms) {
        g_autofree char *want = g_strdup_printf("%s %s", volume, direction);
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        for (;;) {
                while (g_main_context_iteration(NULL, FALSE))
                        ;
                for (guint i = 0; i < seen->len; i++)
                        if (g_str_equal(seen->pdata[i], want))
                                return TRUE;
                if (g_get_monotonic_time() >= deadline)
                        return FALSE;
                g_usleep(20 * 1000);
        }
}

static void test_native(void) {
        g_autofree char *image = lv_make_luks1_image("mig-native.img", PASS, PATTERN, 16);
        virDomainPtr dom = lv_start_guest("mig-native");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-native", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");
        g_autofree char *target = lv_volume_prop_string(bus_a, path, "Target");
        g_assert_true(secret_defined(lv_virt(), secret));
        g_assert_true(lv_guest_reads_pattern(dom, PATTERN, 65536));
        g_test_message("attached on A: %s, %s, secret %s", path, target, secret);

        /* Stage on B, with the usage A's secret has. */
        g_autofree char *usage = g_strdup_printf("luksvolumed:%s:%s", uuid, target);
        g_assert_true(stage(uuid, image, PASS,
                            lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target),
                                    "usage", g_variant_new_string(usage), NULL),
                            &error));
        g_assert_no_error(error);
        g_assert_true(secret_defined(virt_b, secret));
        virSecretPtr sb = virSecretLookupByUUIDString(virt_b, secret);
        g_assert_cmpstr(virSecretGetUsageID(sb), ==, usage);
        virSecretFree(sb);
        /* The same disk staged twice: refused. */
        g_assert_false(stage(
                uuid, image, PASS,
                lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target), NULL),
                &error));
        lv_assert_error(error, LV_ERR("AlreadyAttached"));
        g_clear_error(&error);

        g_autoptr(GPtrArray) seen_a = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) seen_b = g_ptr_array_new_with_free_func(g_free);
        guint sub_a = g_dbus_connection_signal_subscribe(bus_a, LV_BUS_NAME, LV_IFACE, "VolumeMigrated", LV_PATH, NULL,
                                                         G_DBUS_SIGNAL_FLAGS_NONE, on_migrated, seen_a, NULL);
        guint sub_b = g_dbus_connection_signal_subscribe(bus_b, LV_BUS_NAME, LV_IFACE, "VolumeMigrated", LV_PATH, NULL,
                                                         G_DBUS_SIGNAL_FLAGS_NONE, on_migrated, seen_b, NULL);

        g_autofree char *err = NULL;
        virDomainPtr dom_b = migrate(dom, &err);
        g_assert_nonnull(dom_b);
        g_assert_cmpint(virDomainIsActive(dom_b), ==, 1);

        /* B: the disk arrived encrypted, and B's service holds it. */
        g_autofree char *xml_b = virDomainGetXMLDesc(dom_b, 0);
        g_assert_nonnull(strstr(xml_b, "<encryption format='luks'"));
        g_assert_nonnull(strstr(xml_b, secret));
        g_assert_true(wait_until(object_on_b, path, 20000));
        g_autofree char *secret_b = lv_volume_prop_string(bus_b, path, "SecretUUID");
        g_autofree char *source_b = lv_volume_prop_string(bus_b, path, "Source");
        g_autofree char *mode_b = lv_volume_prop_string(bus_b, path, "Mode");
        g_assert_cmpstr(secret_b, ==, secret);
        g_assert_cmpstr(source_b, ==, image);
        g_assert_cmpstr(mode_b, ==, "native");
        g_assert_true(lv_second_host_reads_pattern(hb, dom_b, image, PATTERN, 65536));
        g_autofree char *blog = lv_second_host_daemon_log(hb);
        g_assert_nonnull(strstr(blog, "adopted by volume"));

        /* A: the object and the secret are gone. */
        g_assert_true(wait_until(object_gone_on_a, path, 20000));
        g_assert_true(wait_until(secret_gone_on_a, secret, 20000));
        g_assert_cmpint(virDomainIsActive(dom), !=, 1);
        virDomainFree(dom);

        /* Both services said so. */
        g_assert_true(seen_signal(seen_a, path, "out", 10000));
        g_assert_true(seen_signal(seen_b, path, "in", 10000));
        g_dbus_connection_signal_unsubscribe(bus_a, sub_a);
        g_dbus_connection_signal_unsubscribe(bus_b, sub_b);

        /* B's guest stops: B's service cleans up as for its own volumes. */
        g_assert_cmpint(virDomainDestroy(dom_b), ==, 0);
        virDomainFree(dom_b);
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_true(wait_until(secret_gone_on_b, secret, 20000));
}

static void test_unstaged(void) {
        g_autofree char *image = lv_make_luks1_image("mig-unstaged.img", PASS, PATTERN, 16);
        virDomainPtr dom = lv_start_guest("mig-unstaged");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-unstaged", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");
        guint b_secrets = count_secrets(virt_b);

        g_autofree char *err = NULL;
        virDomainPtr dom_b = migrate(dom, &err);
        g_assert_null(dom_b);
        g_assert_nonnull(err);

        /* Still on A, running, with its volume, secret and plaintext. */
        g_assert_cmpint(virDomainIsActive(dom), ==, 1);
        virDomainInfo info;
        g_assert_cmpint(virDomainGetInfo(dom, &info), ==, 0);
        g_assert_cmpint(info.state, ==, VIR_DOMAIN_RUNNING);
        g_usleep(1000 * 1000); /* events of the failed attempt, if any */
        g_autofree char *state = lv_volume_prop_string(bus_a, path, "State");
        g_assert_cmpstr(state, ==, "attached");
        g_assert_true(secret_defined(lv_virt(), secret));
        g_assert_true(lv_guest_reads_pattern(dom, PATTERN, 65536));

        /* Nothing of it on B. */
        virDomainPtr on_b = virDomainLookupByUUIDString(virt_b, uuid);
        if (on_b) {
                g_assert_cmpint(virDomainIsActive(on_b), !=, 1);
                virDomainFree(on_b);
        }
        g_assert_cmpuint(count_secrets(virt_b), ==, b_secrets);
        g_assert_false(object_on_b(path));

        g_assert_true(lv_detach(bus_a, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(secret_defined(lv_virt(), secret));
        lv_destroy_guest(dom);
}

static void test_stage_checks(void) {
        g_autofree char *image = lv_make_luks1_image("mig-stage.img", PASS, PATTERN, 16);
        g_autofree char *luks2 = lv_make_luks2_image("mig-stage2.img", PASS, 20);
        g_autofree char *domain_uuid = g_uuid_string_random();
        g_autofree char *secret = g_uuid_string_random();
        guint b_secrets = count_secrets(virt_b);
        GError *error = NULL;

        /* Refusals leave nothing defined. */
        g_assert_false(
                stage(domain_uuid, image, "wrong passphrase",
                      lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string("sda"), NULL),
                      &error));
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_false(
                stage(domain_uuid, luks2, PASS,
                      lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string("sda"), NULL),
                      &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_clear_error(&error);
        g_assert_false(stage(domain_uuid, image, PASS, lv_opts("target", g_variant_new_string("sda"), NULL), &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        g_assert_false(stage(domain_uuid, image, PASS,
                             lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string("sda"),
                                     "usage", g_variant_new_string("luksvolumed:someone-else"), NULL),
                             &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
        g_assert_false(secret_defined(virt_b, secret));
        g_assert_cmpuint(count_secrets(virt_b), ==, b_secrets);

        /* Staged, never claimed: gone after its timeout (2 s), not before. */
        gint64 t0 = g_get_monotonic_time();
        g_assert_true(stage(domain_uuid, image, PASS,
                            lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string("sda"),
                                    "timeout", g_variant_new_uint32(2), NULL),
                            &error));
        g_assert_no_error(error);
        g_assert_true(secret_defined(virt_b, secret));
        g_assert_true(wait_until(secret_gone_on_b, secret, 10000));
        gint64 gone_ms = (g_get_monotonic_time() - t0) / 1000;
        g_test_message("staged secret gone after %" G_GINT64_FORMAT " ms (timeout 2 s)", gone_ms);
        g_assert_cmpint(gone_ms, >=, 1900);
        g_assert_cmpuint(count_secrets(virt_b), ==, b_secrets);
        g_autofree char *blog = lv_second_host_daemon_log(hb);
        g_assert_nonnull(strstr(blog, "no domain arrived in time"));
}

/* A kill -9 leaves no secret that nothing owns: B's daemon killed while a
 * secret is staged (the next start's orphan cleanup takes it), and A's
 * daemon killed before its guest migrates away (the same on A). */
static void test_killed(void) {
        g_autofree char *image = lv_make_luks1_image("mig-killed.img", PASS, PATTERN, 16);
        g_autofree char *domain_uuid = g_uuid_string_random();
        g_autofree char *staged = g_uuid_string_random();
        GError *error = NULL;

        g_assert_true(
                stage(domain_uuid, image, PASS,
                      lv_opts("secret-uuid", g_variant_new_string(staged), "target", g_variant_new_string("sdb"), NULL),
                      &error));
        g_assert_no_error(error);
        g_assert_true(secret_defined(virt_b, staged));
        lv_daemon_kill(bus_b, SIGKILL);
        g_assert_true(secret_defined(virt_b, staged));
        /* Activation: the name is taken only after the start-up scan. */
        g_auto(GStrv) objs_b = lv_managed_objects(bus_b);
        g_assert_true(wait_until(secret_gone_on_b, staged, 10000));

        /* A's daemon dies with a volume attached; the guest migrates while
         * no daemon runs on A. */
        virDomainPtr dom = lv_start_guest("mig-killed");
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-killed", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");
        g_autofree char *target = lv_volume_prop_string(bus_a, path, "Target");
        g_assert_true(stage(
                uuid, image, PASS,
                lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target), NULL),
                &error));
        g_assert_no_error(error);
        lv_daemon_kill(bus_a, SIGKILL);
        g_autofree char *err = NULL;
        virDomainPtr dom_b = migrate(dom, &err);
        g_assert_nonnull(dom_b);
        virDomainFree(dom);
        g_assert_true(secret_defined(lv_virt(), secret)); /* nobody there to remove it */
        g_auto(GStrv) objs_a = lv_managed_objects(bus_a);
        g_assert_true(wait_until(secret_gone_on_a, secret, 10000));
        g_assert_true(wait_until(object_gone_on_a, path, 10000));
        g_assert_true(wait_until(object_on_b, path, 20000));
        g_assert_true(lv_second_host_reads_pattern(hb, dom_b, image, PATTERN, 65536));

        g_assert_cmpint(virDomainDestroy(dom_b), ==, 0);
        virDomainFree(dom_b);
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_true(wait_until(secret_gone_on_b, secret, 20000));
}

typedef struct {
        virDomainPtr dom;
        virDomainPtr moved;
        char *error;
} MigrateThread;

static gpointer migrate_thread(gpointer data) {
        MigrateThread *t = data;
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;
        g_autofree char *uri = g_strdup_printf("tcp://127.0.0.1:%u", lv_second_host_port(hb));

        g_assert_cmpint(virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, uri), ==, 0);
        /* Slow enough to be caught in the middle: 1 MiB/s. */
        g_assert_cmpint(virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH, 1), ==, 0);
        t->moved = virDomainMigrate3(t->dom, virt_b, params, n, VIR_MIGRATE_LIVE | VIR_MIGRATE_UNSAFE);
        if (!t->moved)
                t->error = g_strdup(virGetLastErrorMessage());
        virTypedParamsFree(params, n);
        return NULL;
}

static gboolean incoming_on_b(const void *uuid) {
        virDomainPtr d = virDomainLookupByUUIDString(virt_b, uuid);
        gboolean active = d && virDomainIsActive(d) == 1;
        if (d)
                virDomainFree(d);
        return active;
}

/* Staged, the guest on its way, and the migration aborted: B tears down
 * what it staged (and what it may have adopted meanwhile); the guest runs
 * on A with its volume and secret as before. */
static void test_aborted(void) {
        g_autofree char *image = lv_make_luks1_image("mig-abort.img", PASS, PATTERN, 16);
        virDomainPtr dom = lv_start_guest("mig-abort");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-abort", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");
        g_autofree char *target = lv_volume_prop_string(bus_a, path, "Target");
        g_assert_true(stage(
                uuid, image, PASS,
                lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target), NULL),
                &error));
        g_assert_no_error(error);

        MigrateThread t = { .dom = dom };
        GThread *th = g_thread_new("migrate", migrate_thread, &t);
        g_assert_true(wait_until(incoming_on_b, uuid, 20000));
        g_usleep(300 * 1000);
        g_assert_cmpint(virDomainAbortJob(dom), ==, 0);
        g_thread_join(th);
        g_assert_null(t.moved);
        g_test_message("aborted migration: %s", t.error);
        g_free(t.error);

        /* B: nothing left. */
        g_assert_true(wait_until(secret_gone_on_b, secret, 20000));
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_false(incoming_on_b(uuid));
        g_autofree char *blog = lv_second_host_daemon_log(hb);
        g_auto(GStrv) lines = g_strsplit(blog, "\n", -1);
        for (char **l = lines; *l; l++)
                if (strstr(*l, secret) || strstr(*l, uuid))
                        g_test_message("B: %s", *l);

        /* A: as before. */
        g_assert_cmpint(virDomainIsActive(dom), ==, 1);
        virDomainInfo info;
        g_assert_cmpint(virDomainGetInfo(dom, &info), ==, 0);
        g_assert_cmpint(info.state, ==, VIR_DOMAIN_RUNNING);
        g_autofree char *state = lv_volume_prop_string(bus_a, path, "State");
        g_assert_cmpstr(state, ==, "attached");
        g_assert_true(secret_defined(lv_virt(), secret));
        g_assert_true(lv_guest_reads_pattern(dom, PATTERN, 65536));

        g_assert_true(lv_detach(bus_a, path, NULL, &error));
        g_assert_no_error(error);
        lv_destroy_guest(dom);
}

/* luksvolumectl migrate, run on host A with B's bus given as --dest-bus. */
static int run_ctl(const char *domain, const char *passfile, char **ret_out, char **ret_err) {
        g_autofree char *dest_uri = g_strdup(b_libvirt_uri);
        g_autofree char *dest_bus = g_strdup_printf("--dest-bus=unix:path=%s/bus", shared_dir);
        g_autofree char *mig = g_strdup_printf("--migrate-uri=tcp://127.0.0.1:%u", lv_second_host_port(hb));
        g_autofree char *pf = g_strdup_printf("--passphrase-file=%s", passfile);
        const char *argv[] = { ctl_path, "--no-ask-password", "migrate", domain,         dest_uri, dest_bus,
                               mig,      "--unsafe",          pf,        "--timeout=60", NULL };
        g_autoptr(GError) error = NULL;
        int status = 0;

        g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, ret_out, ret_err, &status,
                                   &error));
        g_assert_no_error(error);
        g_test_message("luksvolumectl migrate %s: status %d, stdout '%s', stderr '%s'", domain, status, *ret_out,
                       *ret_err);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void) {
        g_autofree char *image = lv_make_luks1_image("mig-cli.img", PASS, PATTERN, 16);
        g_autofree char *passfile = lv_sandbox_path("mig-cli.pass");
        g_autofree char *wrongfile = lv_sandbox_path("mig-cli.wrong");
        virDomainPtr dom = lv_start_guest("mig-cli");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_true(g_file_set_contents_full(passfile, PASS, -1, G_FILE_SET_CONTENTS_NONE, 0600, NULL));
        g_assert_true(g_file_set_contents_full(wrongfile, "not it", -1, G_FILE_SET_CONTENTS_NONE, 0600, NULL));
        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-cli", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");

        /* A wrong passphrase: refused by B's staging (exit 4), no migration. */
        g_autofree char *out1 = NULL, *err1 = NULL;
        g_assert_cmpint(run_ctl("mig-cli", wrongfile, &out1, &err1), ==, 4);
        g_assert_cmpint(virDomainIsActive(dom), ==, 1);
        g_assert_false(secret_defined(virt_b, secret));
        g_assert_false(incoming_on_b(uuid));

        g_autofree char *out = NULL, *err = NULL;
        g_assert_cmpint(run_ctl("mig-cli", passfile, &out, &err), ==, 0);
        g_assert_cmpstr(g_strstrip(out), ==, path);
        g_assert_true(object_on_b(path));
        g_assert_true(incoming_on_b(uuid));
        virDomainPtr dom_b = virDomainLookupByUUIDString(virt_b, uuid);
        g_assert_nonnull(dom_b);
        g_assert_true(lv_second_host_reads_pattern(hb, dom_b, image, PATTERN, 65536));
        g_assert_true(wait_until(object_gone_on_a, path, 20000));
        g_assert_true(wait_until(secret_gone_on_a, secret, 20000));
        virDomainFree(dom);

        g_assert_cmpint(virDomainDestroy(dom_b), ==, 0);
        virDomainFree(dom_b);
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_true(wait_until(secret_gone_on_b, secret, 20000));
}

/* The polkit action and its details, on A's service (the same code). */
static void test_stage_polkit(void) {
        g_autofree char *image = lv_make_luks1_image("mig-polkit.img", PASS, PATTERN, 16);
        g_autofree char *domain_uuid = g_uuid_string_random();
        g_autofree char *secret = g_uuid_string_random();
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;

        GVariant *pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1);
        g_autoptr(GVariant) r1 = lv_call_manager(
                user, "StageIncoming",
                g_variant_new("(ss@ay@a{sv})", domain_uuid, image, pass,
                              lv_opts("secret-uuid", g_variant_new_string(secret), "target",
                                      g_variant_new_string("sdc"), "timeout", g_variant_new_uint32(2), NULL)),
                NULL, &error);
        g_assert_null(r1);
        /* auth_admin by default: an admin could authenticate. */
        lv_assert_error(error, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired");
        g_clear_error(&error);
        g_assert_false(secret_defined(lv_virt(), secret));

        /* A rule on the details attach has: allowed. */
        g_autofree char *rule = g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if (action.id == 'org.example.luksvolume1.stage-incoming' && subject.user == 'lvuser' &&\n"
                "      action.lookup('domain-uuid') == '%s' && action.lookup('domain') == '%s' &&\n"
                "      action.lookup('source') == '%s' && action.lookup('target') == 'sdc' &&\n"
                "      action.lookup('mode') == 'native')\n"
                "    return polkit.Result.YES;\n"
                "});\n",
                domain_uuid, domain_uuid, image);
        lv_polkit_set_rules("50-stage.rules", rule);
        pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1);
        g_autoptr(GVariant) r2 = lv_call_manager(
                user, "StageIncoming",
                g_variant_new("(ss@ay@a{sv})", domain_uuid, image, pass,
                              lv_opts("secret-uuid", g_variant_new_string(secret), "target",
                                      g_variant_new_string("sdc"), "timeout", g_variant_new_uint32(2), NULL)),
                NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(r2);
        g_assert_true(secret_defined(lv_virt(), secret));
        lv_polkit_set_rules("50-stage.rules", NULL);
        g_assert_true(wait_until(secret_gone_on_a, secret, 10000));

        /* Not a UUID: refused before polkit. */
        pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1);
        g_autoptr(GVariant) r3 = lv_call_manager(bus_a, "StageIncoming",
                                                 g_variant_new("(ss@ay@a{sv})", "mig-polkit", image, pass,
                                                               lv_opts("secret-uuid", g_variant_new_string(secret),
                                                                       "target", g_variant_new_string("sdc"), NULL)),
                                                 NULL, &error);
        g_assert_null(r3);
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);
}

/* ------------------------------------------------ device-mapper hosts */

static gboolean device_exists(const void *path) {
        return g_file_test(path, G_FILE_TEST_EXISTS);
}

static gboolean device_gone(const void *path) {
        return !g_file_test(path, G_FILE_TEST_EXISTS);
}

/* StageIncoming's answer: the device made on B, or NULL. */
static char *stage_device(const char *domain_uuid, const char *source, const char *passphrase, GVariant *options,
                          GError **error) {
        GVariant *pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, passphrase, strlen(passphrase), 1);
        g_autoptr(GVariant) reply =
                lv_call_manager(bus_b, "StageIncoming",
                                g_variant_new("(ss@ay@a{sv})", domain_uuid, source, pass, options), NULL, error);
        char *device = NULL;

        if (!reply)
                return NULL;
        g_assert_cmpstr(g_variant_get_type_string(reply), ==, "(a{sv})");
        g_autoptr(GVariant) dict = g_variant_get_child_value(reply, 0);
        g_assert_true(g_variant_lookup(dict, "device", "s", &device));
        return device;
}

/* B's QEMU reads pattern from the raw block node over device (no luks
 * node: the kernel's dm-crypt decrypts). */
static gboolean b_reads_pattern_raw(virDomainPtr dom_b, const char *device, guint8 pattern) {
        g_autofree char *log_dir = g_build_filename(shared_dir, "log", "qemu", NULL);
        return lv_guest_reads_pattern_on_device(dom_b, log_dir, device, pattern, 65536);
}

static void test_dm_cryptsetup(void) {
        g_autofree char *image = lv_make_luks1_image("mig-crypt.img", PASS, PATTERN, 16);
        g_autofree char *passfile = lv_sandbox_path("mig-crypt.pass");
        virDomainPtr dom = lv_start_guest("mig-crypt");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_true(g_file_set_contents_full(passfile, PASS, -1, G_FILE_SET_CONTENTS_NONE, 0600, NULL));
        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(
                bus_a, "mig-crypt", image, PASS,
                lv_opts("bus", g_variant_new_string("scsi"), "mode", g_variant_new_string("cryptsetup"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mapper_a = lv_volume_prop_string(bus_a, path, "MapperDevice");
        g_assert_true(g_str_has_prefix(mapper_a, "/dev/mapper/luksvol-"));
        g_assert_false(g_str_has_prefix(mapper_a, "/dev/mapper/luksvol-hostb-"));
        g_assert_true(device_exists(mapper_a));

        g_autofree char *out = NULL, *err = NULL;
        g_assert_cmpint(run_ctl("mig-crypt", passfile, &out, &err), ==, 0);
        g_assert_cmpstr(g_strstrip(out), ==, path);

        /* B: its own mapping, named in the guest's XML there, holding
         * the plaintext for B's QEMU. */
        virDomainPtr dom_b = virDomainLookupByUUIDString(virt_b, uuid);
        g_assert_nonnull(dom_b);
        g_assert_cmpint(virDomainIsActive(dom_b), ==, 1);
        g_assert_true(wait_until(object_on_b, path, 20000));
        g_autofree char *mode_b = lv_volume_prop_string(bus_b, path, "Mode");
        g_autofree char *mapper_b = lv_volume_prop_string(bus_b, path, "MapperDevice");
        g_autofree char *source_b = lv_volume_prop_string(bus_b, path, "Source");
        g_assert_cmpstr(mode_b, ==, "cryptsetup");
        g_assert_true(g_str_has_prefix(mapper_b, "/dev/mapper/luksvol-hostb-"));
        g_assert_cmpstr(source_b, ==, image);
        g_autofree char *xml_b = virDomainGetXMLDesc(dom_b, 0);
        g_assert_nonnull(strstr(xml_b, mapper_b));
        g_assert_null(strstr(xml_b, mapper_a));
        g_assert_null(strstr(xml_b, "<encryption"));
        g_assert_true(b_reads_pattern_raw(dom_b, mapper_b, PATTERN));
        g_assert_false(b_reads_pattern_raw(dom_b, mapper_b, PATTERN ^ 0xff));
        g_autofree char *blog = lv_second_host_daemon_log(hb);
        g_assert_nonnull(strstr(blog, "adopted by volume"));

        /* A: object and mapping gone. */
        g_assert_true(wait_until(object_gone_on_a, path, 20000));
        g_assert_true(wait_until(device_gone, mapper_a, 20000));
        virDomainFree(dom);

        g_assert_cmpint(virDomainDestroy(dom_b), ==, 0);
        virDomainFree(dom_b);
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_true(wait_until(device_gone, mapper_b, 20000));
}

/* The domain XML for B with one disk's source device renamed (a test's
 * stand-in for luksvolumectl's libxml2 rewrite). */
static char *dest_xml_renamed(virDomainPtr dom, const char *from, const char *to) {
        g_autofree char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_SECURE);
        g_autofree char *quoted = g_strdup_printf("'%s'", from);
        g_autofree char *replacement = g_strdup_printf("'%s'", to);

        g_assert_nonnull(xml);
        g_assert_nonnull(strstr(xml, quoted));
        g_auto(GStrv) parts = g_strsplit(xml, quoted, -1);
        g_assert_cmpuint(g_strv_length(parts), ==, 2);
        return g_strjoinv(replacement, parts);
}

static void test_dm_shim(void) {
        g_autofree char *image = lv_make_luks1_image("mig-shim.img", PASS, PATTERN, 16);
        virDomainPtr dom = lv_start_guest("mig-shim");
        GError *error = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];

        g_assert_cmpint(virDomainGetUUIDString(dom, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus_a, "mig-shim", image, PASS, scsi_native(), &error);
        g_assert_no_error(error);
        g_autofree char *header = lv_volume_prop_string(bus_a, path, "NativeHeader");
        g_autofree char *shim_a = lv_volume_prop_string(bus_a, path, "ShimDevice");
        g_autofree char *secret = lv_volume_prop_string(bus_a, path, "SecretUUID");
        g_autofree char *target = lv_volume_prop_string(bus_a, path, "Target");
        g_assert_cmpstr(header, ==, "shim");
        g_assert_true(g_str_has_prefix(shim_a, "/dev/mapper/luksvol-shim-"));

        /* A wrong passphrase: nothing made on B. */
        g_assert_null(
                stage_device(uuid, image, "wrong passphrase",
                             lv_opts("secret-uuid", g_variant_new_string(secret), "target",
                                     g_variant_new_string(target), "native-header", g_variant_new_string("shim"), NULL),
                             &error));
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_false(secret_defined(virt_b, secret));

        g_autofree char *shim_b =
                stage_device(uuid, image, PASS,
                             lv_opts("secret-uuid", g_variant_new_string(secret), "target",
                                     g_variant_new_string(target), "native-header", g_variant_new_string("shim"), NULL),
                             &error);
        g_assert_no_error(error);
        g_test_message("B's shim: %s (A's %s)", shim_b, shim_a);
        g_assert_true(g_str_has_prefix(shim_b, "/dev/mapper/luksvol-hostb-shim-"));
        g_assert_true(device_exists(shim_b));
        g_assert_true(secret_defined(virt_b, secret));

        /* A's daemon dies before the guest leaves: its shim and secret
         * are left to its next start. */
        g_autofree char *dest_xml = dest_xml_renamed(dom, shim_a, shim_b);
        lv_daemon_kill(bus_a, SIGKILL);
        g_autofree char *uri = g_strdup_printf("tcp://127.0.0.1:%u", lv_second_host_port(hb));
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;
        g_assert_cmpint(virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, uri), ==, 0);
        g_assert_cmpint(virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML, dest_xml), ==, 0);
        virDomainPtr dom_b = virDomainMigrate3(dom, virt_b, params, n, VIR_MIGRATE_LIVE | VIR_MIGRATE_UNSAFE);
        virTypedParamsFree(params, n);
        if (!dom_b)
                g_error("migration failed: %s", virGetLastErrorMessage());

        /* B: QEMU decrypts through B's shim, with B's one-time passphrase
         * under A's secret UUID. */
        g_assert_true(wait_until(object_on_b, path, 20000));
        g_autofree char *header_b = lv_volume_prop_string(bus_b, path, "NativeHeader");
        g_autofree char *shim_prop_b = lv_volume_prop_string(bus_b, path, "ShimDevice");
        g_autofree char *secret_b = lv_volume_prop_string(bus_b, path, "SecretUUID");
        g_assert_cmpstr(header_b, ==, "shim");
        g_assert_cmpstr(shim_prop_b, ==, shim_b);
        g_assert_cmpstr(secret_b, ==, secret);
        g_assert_true(lv_second_host_reads_pattern(hb, dom_b, shim_b, PATTERN, 65536));

        /* A: secret and shim gone once a daemon runs there again. */
        g_assert_true(device_exists(shim_a));
        g_assert_true(secret_defined(lv_virt(), secret));
        g_auto(GStrv) objs_a = lv_managed_objects(bus_a);
        g_assert_true(wait_until(object_gone_on_a, path, 20000));
        g_assert_true(wait_until(secret_gone_on_a, secret, 20000));
        g_assert_true(wait_until(device_gone, shim_a, 20000));
        virDomainFree(dom);

        g_assert_cmpint(virDomainDestroy(dom_b), ==, 0);
        virDomainFree(dom_b);
        g_assert_true(wait_until(object_gone_on_b, path, 20000));
        g_assert_true(wait_until(secret_gone_on_b, secret, 20000));
        g_assert_true(wait_until(device_gone, shim_b, 20000));
}

static void test_dm_expired(void) {
        g_autofree char *image = lv_make_luks1_image("mig-dm-exp.img", PASS, PATTERN, 16);
        g_autofree char *domain_uuid = g_uuid_string_random();
        GError *error = NULL;

        /* cryptsetup mode takes no secret. */
        g_assert_null(
                stage_device(domain_uuid, image, PASS,
                             lv_opts("target", g_variant_new_string("sdd"), "mode", g_variant_new_string("cryptsetup"),
                                     "secret-uuid", g_variant_new_string(domain_uuid), NULL),
                             &error));
        lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
        g_clear_error(&error);

        gint64 t0 = g_get_monotonic_time();
        g_autofree char *mapper =
                stage_device(domain_uuid, image, PASS,
                             lv_opts("target", g_variant_new_string("sdd"), "mode", g_variant_new_string("cryptsetup"),
                                     "timeout", g_variant_new_uint32(3), NULL),
                             &error);
        g_assert_no_error(error);
        g_assert_true(g_str_has_prefix(mapper, "/dev/mapper/luksvol-hostb-"));
        g_assert_true(device_exists(mapper));
        g_assert_true(wait_until(device_gone, mapper, 15000));
        gint64 gone_ms = (g_get_monotonic_time() - t0) / 1000;
        g_test_message("staged mapping gone after %" G_GINT64_FORMAT " ms (timeout 3 s)", gone_ms);
        g_assert_cmpint(gone_ms, >=, 2900);
        g_autofree char *blog = lv_second_host_daemon_log(hb);
        g_assert_nonnull(strstr(blog, "no domain arrived in time"));
}

static void test_dm_killed(void) {
        g_autofree char *image = lv_make_luks1_image("mig-dm-kill.img", PASS, PATTERN, 16);
        g_autofree char *image2 = lv_make_luks1_image("mig-dm-kill2.img", PASS, PATTERN, 16);
        g_autofree char *domain_uuid = g_uuid_string_random();
        g_autofree char *secret = g_uuid_string_random();
        GError *error = NULL;

        g_autofree char *mapper = stage_device(
                domain_uuid, image, PASS,
                lv_opts("target", g_variant_new_string("sde"), "mode", g_variant_new_string("cryptsetup"), NULL),
                &error);
        g_assert_no_error(error);
        g_autofree char *shim =
                stage_device(domain_uuid, image2, PASS,
                             lv_opts("target", g_variant_new_string("sdf"), "secret-uuid", g_variant_new_string(secret),
                                     "native-header", g_variant_new_string("shim"), NULL),
                             &error);
        g_assert_no_error(error);
        g_assert_true(device_exists(mapper));
        g_assert_true(device_exists(shim));

        /* A's daemon starts over: its orphan cleanup must not take B's
         * devices (another tag) for its own. */
        g_auto(GStrv) objs_a0 = lv_managed_objects(bus_a); /* activated, if it was not */
        lv_daemon_kill(bus_a, SIGKILL);
        g_auto(GStrv) objs_a = lv_managed_objects(bus_a);
        g_usleep(500 * 1000);
        g_assert_true(device_exists(mapper));
        g_assert_true(device_exists(shim));

        /* B's daemon killed: the devices and the secret stay until its
         * next start, whose cleanup finds nothing owns them. */
        lv_daemon_kill(bus_b, SIGKILL);
        g_assert_true(device_exists(mapper));
        g_assert_true(secret_defined(virt_b, secret));
        g_auto(GStrv) objs_b = lv_managed_objects(bus_b);
        g_assert_true(wait_until(device_gone, mapper, 15000));
        g_assert_true(wait_until(device_gone, shim, 15000));
        g_assert_true(wait_until(secret_gone_on_b, secret, 15000));
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        if (argc < 4)
                g_error("usage: %s SECOND-HOST-SH DAEMON LUKSVOLUMECTL [GTest options]", argv[0]);
        second_host_sh = argv[1];
        daemon_path = argv[2];
        ctl_path = argv[3];
        lv_require_sandbox();

        dm_mode = g_strcmp0(g_getenv("LV_MIGRATE_DM"), "1") == 0;

        bus_a = lv_bus();
        g_autofree char *b_config = NULL;
        g_autofree char *b_config_arg = NULL;
        if (dm_mode) {
                /* Two services on one kernel: B's device names carry its tag. */
                b_config = lv_sandbox_path("hostb.conf");
                g_assert_true(g_file_set_contents(b_config, "[Daemon]\nDeviceTag=hostb\n", -1, NULL));
                b_config_arg = g_strdup_printf("--config=%s", b_config);
        }
        hb = lv_second_host_start(second_host_sh, daemon_path, b_config_arg);
        shared_dir = hb->shared_dir;
        b_libvirt_uri = hb->libvirt_uri;
        bus_b = hb->bus;
        virt_b = hb->virt;

        if (dm_mode) {
                g_test_add_func("/migrate/dm/killed", test_dm_killed);
                g_test_add_func("/migrate/dm/expired", test_dm_expired);
                g_test_add_func("/migrate/dm/cryptsetup", test_dm_cryptsetup);
                g_test_add_func("/migrate/dm/shim", test_dm_shim);
        } else {
                g_test_add_func("/migrate/stage-checks", test_stage_checks);
                g_test_add_func("/migrate/stage-polkit", test_stage_polkit);
                g_test_add_func("/migrate/native", test_native);
                g_test_add_func("/migrate/unstaged", test_unstaged);
                g_test_add_func("/migrate/aborted", test_aborted);
                g_test_add_func("/migrate/killed", test_killed);
                g_test_add_func("/migrate/cli", test_cli);
        }
        int r = g_test_run();

        lv_second_host_stop(hb);
        return r;
}
