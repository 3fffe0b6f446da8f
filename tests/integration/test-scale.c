/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Many volumes over many domains (issue 20): what the daemon does side by
 * side (the in-use check's XML fetches, a rescan's header reads and size
 * look-ups) gives the same answers as one by one did.
 *
 *  - N volumes over M running domains come back after kill -9 with every
 *    property as it was (LUKS facts, and the sizes libvirt reports for all
 *    disks of a domain at once);
 *  - with M domains, one of them persistent with a disk only in its
 *    configuration and one defined and stopped, Attach still finds each
 *    use, and the usual volumes are InUse by the domain that has them.
 *
 * N and M are 24 and 4 unless LV_SCALE_VOLUMES / LV_SCALE_DOMAINS say
 * otherwise (the daemon's default --max-volumes is 64).  Timings are
 * printed as TAP comments, for a reader; nothing here depends on them. */

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS "scale-passphrase"

static GDBusConnection *bus;
static guint n_volumes = 24, n_domains = 4;
static virDomainPtr *domains;

static double now_ms(void) {
        return (double) g_get_monotonic_time() / 1000.0;
}

static guint env_uint(const char *name, guint fallback) {
        const char *s = g_getenv(name);
        return s && *s ? (guint) g_ascii_strtoull(s, NULL, 10) : fallback;
}

static char *domain_name(guint i) {
        return g_strdup_printf("lvscale-%u", i);
}

static char *make_image(guint i) {
        g_autofree char *name = g_strdup_printf("scale-%u.img", i);
        const char *const extra[] = { NULL };
        return lv_make_luks1_cryptsetup(name, PASS, 1000, extra);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double median(double *v, guint n) {
        qsort(v, n, sizeof *v, cmp_double);
        return n ? v[n / 2] : 0;
}

/* Every volume object with its properties, from GetManagedObjects. */
static GHashTable *managed_props(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
                bus, LV_BUS_NAME, LV_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                G_VARIANT_TYPE("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, 60000, NULL, &error);
        g_assert_no_error(error);
        GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_unref);
        g_autoptr(GVariant) objects = g_variant_get_child_value(reply, 0);
        GVariantIter it;
        const char *path;
        GVariant *ifaces;

        g_variant_iter_init(&it, objects);
        while (g_variant_iter_next(&it, "{&o@a{sa{sv}}}", &path, &ifaces)) {
                GVariant *props = g_variant_lookup_value(ifaces, LV_VOLUME_IFACE, G_VARIANT_TYPE("a{sv}"));
                if (props)
                        g_hash_table_insert(t, g_strdup(path), props);
                g_variant_unref(ifaces);
        }
        return t;
}

static void test_recover(void) {
        g_autofree double *attach_ms = g_new0(double, n_volumes);
        double detach_first_ms = 0, detach_last_ms = 0;
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) before = g_ptr_array_new_with_free_func((GDestroyNotify) g_variant_unref);
        g_autoptr(GError) error = NULL;

        for (guint i = 0; i < n_volumes; i++) {
                g_autofree char *img = make_image(i);
                g_autofree char *dom = domain_name(i % n_domains);
                double t0 = now_ms();
                char *path = lv_attach(bus, dom, img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
                attach_ms[i] = now_ms() - t0;
                g_assert_no_error(error);
                g_ptr_array_add(paths, path);
                g_ptr_array_add(before, lv_volume_props(bus, path));
        }
        g_test_message("scale: attach #1 %.1f ms, #%u %.1f ms, median of the last tenth %.1f ms", attach_ms[0],
                       n_volumes, attach_ms[n_volumes - 1],
                       median(attach_ms + n_volumes - MAX(n_volumes / 10, 1), MAX(n_volumes / 10, 1)));

        lv_daemon_kill(bus, SIGKILL);
        double t0 = now_ms();
        g_autoptr(GHashTable) after = managed_props();
        double back_ms = now_ms() - t0;
        g_test_message("scale: kill -9 with %u volumes on %u domains: activation + rescan + GetManagedObjects %.1f ms",
                       n_volumes, n_domains, back_ms);

        g_assert_cmpuint(g_hash_table_size(after), ==, n_volumes);
        for (guint i = 0; i < n_volumes; i++) {
                GVariant *props = g_hash_table_lookup(after, paths->pdata[i]);
                if (!props)
                        g_error("%s is missing after the restart", (const char *) paths->pdata[i]);
                lv_assert_props_rebuilt(before->pdata[i], props);
        }

        for (guint i = 0; i < n_volumes; i++) {
                double t1 = now_ms();
                g_assert_true(lv_detach(bus, paths->pdata[i], NULL, &error));
                detach_last_ms = now_ms() - t1;
                if (i == 0)
                        detach_first_ms = detach_last_ms;
                g_assert_no_error(error);
        }
        g_test_message("scale: detach #1 %.1f ms (of %u attached), last %.1f ms (of 1)", detach_first_ms, n_volumes,
                       detach_last_ms);
        g_auto(GStrv) left = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(left), ==, 0);
}

static virDomainPtr define_with_disk(const char *name, const char *image) {
        g_autofree char *xml =
                g_strdup_printf("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
                                "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
                                "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                "<source file='%s'/><target dev='vdb' bus='virtio'/></disk></devices></domain>",
                                name, image);
        virDomainPtr d = virDomainDefineXML(lv_virt(), xml);
        if (!d)
                g_error("cannot define %s: %s", name, virGetLastErrorMessage());
        return d;
}

static void expect_in_use(const char *image, const char *by, const char *how) {
        g_autoptr(GError) error = NULL;
        g_autofree char *dom = domain_name(0);
        g_autofree char *path =
                lv_attach(bus, dom, image, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);

        if (path) {
                g_test_fail_printf("attached %s although %s has it", image, by);
                g_assert_true(lv_detach(bus, path, NULL, NULL));
                return;
        }
        g_test_message("%s", error->message);
        lv_assert_error(error, LV_ERR("InUse"));
        g_assert_nonnull(strstr(error->message, by));
        if (how)
                g_assert_nonnull(strstr(error->message, how));
}

/* Each kind of use, in a crowd of domains: the fetches side by side must
 * not lose one, nor mistake which definition says so. */
static void test_in_use(void) {
        g_autofree char *in_config = lv_make_luks1_image("scale-config.img", PASS, 0x5a, 1);
        g_autofree char *in_defined = lv_make_luks1_image("scale-defined.img", PASS, 0x5a, 1);
        g_autofree char *ours = lv_make_luks1_image("scale-ours.img", PASS, 0x5a, 1);
        g_autoptr(GError) error = NULL;

        /* Persistent and running, with a disk in its configuration only. */
        virDomainPtr persistent = lv_start_persistent_guest("lvscale-persistent");
        g_autofree char *disk = g_strdup_printf("<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                                "<source file='%s'/><target dev='vdc' bus='virtio'/></disk>",
                                                in_config);
        g_assert_cmpint(virDomainAttachDeviceFlags(persistent, disk, VIR_DOMAIN_AFFECT_CONFIG), ==, 0);
        virDomainPtr defined = define_with_disk("lvscale-defined", in_defined);

        /* Attached by us to the last of the crowd: InUse through its live XML. */
        g_autofree char *last = domain_name(n_domains - 1);
        g_autofree char *path =
                lv_attach(bus, last, ours, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);

        expect_in_use(in_config, "lvscale-persistent", "(its configuration)");
        expect_in_use(in_defined, "lvscale-defined", "(defined, not running)");
        {
                /* Ours is found by the registry first (AlreadyAttached), or
                 * by the guest's disk: never attached twice. */
                g_autofree char *dom = domain_name(0);
                g_autofree char *again =
                        lv_attach(bus, dom, ours, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
                g_assert_null(again);
                g_assert_nonnull(error);
                g_clear_error(&error);
        }

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        lv_remove_guest(persistent);
        g_assert_cmpint(virDomainUndefine(defined), ==, 0);
        virDomainFree(defined);

        /* Nobody has them any more. */
        g_autofree char *dom0 = domain_name(0);
        g_autofree char *ok =
                lv_attach(bus, dom0, in_config, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, ok, NULL, &error));
        g_assert_no_error(error);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        n_volumes = MAX(env_uint("LV_SCALE_VOLUMES", n_volumes), 1);
        n_domains = MAX(env_uint("LV_SCALE_DOMAINS", n_domains), 1);
        bus = lv_bus();
        domains = g_new0(virDomainPtr, n_domains);
        for (guint i = 0; i < n_domains; i++) {
                g_autofree char *name = domain_name(i);
                domains[i] = lv_start_guest(name);
        }

        g_test_add_func("/scale/recover", test_recover);
        g_test_add_func("/scale/in-use", test_in_use);

        int r = g_test_run();
        for (guint i = 0; i < n_domains; i++)
                lv_destroy_guest(domains[i]);
        g_free(domains);
        return r;
}
