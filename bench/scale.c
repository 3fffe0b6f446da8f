/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The benchmark's scale figures (issue 20):
 *
 *  - N volumes over M domains: does an Attach (and a Detach) cost more when
 *    N volumes are attached than when none is?  The same probe volume is
 *    attached and detached on the first domain with nothing else attached,
 *    then again with all N attached;
 *  - kill -9 of the daemon with those N attached: from the first call that
 *    activates it again until GetManagedObjects lists every volume, and
 *    until every volume has all its properties back — each equal to what
 *    the killed daemon had published, except AttachedByUID and
 *    AttachTimestamp, which only that daemon knew (test-lifecycle's rule,
 *    lv_assert_props_rebuilt).  Whatever a recovery publishes first and
 *    fills in later (header facts: LuksVersion, LuksUUID, PayloadOffset,
 *    Size) counts as complete only once it is there.  Baseline: the libvirt
 *    work any recovery needs, done directly (a new connection, list the
 *    domains, read each one's live XML);
 *  - cold activation: a call on a service that is not running, to its
 *    reply, against the same call on the running daemon and against a
 *    cold `virsh list` (the cost of any libvirt client starting);
 *  - idle memory: RSS and PSS of the daemon (smaps_rollup) with nothing
 *    attached, and with N volumes attached (for information). */

#include <libvirt/virterror.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "fixture.h"
#include "lv-client.h"

/* Attach+Detach of the probe volume, at 0 and at N attached. */
#define PROBE_REPS          (short_run ? 5u : 11u)
#define RECOVERY_TIMEOUT_MS 60000.0
#define COLD_REPS           (short_run ? 5 : 9)
#define WARM_REPS           20
#define OBJECTS_TARGET_MS   150.0
#define COMPLETE_TARGET_MS  1000.0
#define TARGET_AT           200u

static const char *mark(bool ok) {
        return ok ? "✓" : "✗";
}

static char *attach_one(const char *domain, const char *img, double *ret_ms) {
        g_autoptr(GError) error = NULL;
        double t0 = now_ms();
        char *path = lv_attach(bus, domain, img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        *ret_ms = now_ms() - t0;
        g_assert_no_error(error);
        return path;
}

static double detach_one(const char *path) {
        g_autoptr(GError) error = NULL;
        double t0 = now_ms();
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        return now_ms() - t0;
}

static void warm_up(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
        g_assert_no_error(error);
}

/* The same attach done through libvirt's API alone (an ephemeral private
 * secret, then the disk with <encryption>), and its detach: what libvirt
 * and QEMU themselves take on this domain now, so that a growth of the
 * daemon's attach with N can be told from a growth of theirs.  target: the
 * one the daemon's attach just chose and gave back. */
static void floor_attach(virDomainPtr dom, const char *img, const char *target, double *ret_attach,
                         double *ret_detach) {
        const char *sxml =
                "<secret ephemeral='yes' private='yes'><usage type='volume'><volume>bench-scale-floor</volume></usage></secret>";
        char uuid[VIR_UUID_STRING_BUFLEN];
        double t0 = now_ms();

        virSecretPtr s = virSecretDefineXML(lv_virt(), sxml, 0);
        g_assert_nonnull(s);
        g_assert_cmpint(virSecretSetValue(s, (const unsigned char *) PASS, strlen(PASS), 0), ==, 0);
        g_assert_cmpint(virSecretGetUUIDString(s, uuid), ==, 0);
        /* Test input, our own path and UUID: no caller's string in it. */
        g_autofree char *dxml = g_strdup_printf(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                "<source file='%s'><encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption></source>"
                "<target dev='%s' bus='scsi'/></disk>",
                img, uuid, target);
        g_assert_cmpint(virDomainAttachDeviceFlags(dom, dxml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        double t1 = now_ms();
        g_assert_cmpint(virDomainDetachDeviceFlags(dom, dxml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        g_assert_true(lv_domain_wait_disk_gone(dom, target, 10000));
        g_assert_cmpint(virSecretUndefine(s), ==, 0);
        virSecretFree(s);
        *ret_attach = t1 - t0;
        *ret_detach = now_ms() - t1;
}

typedef struct ProbeFigures {
        double attach, detach;             /* through the daemon, medians */
        double floor_attach, floor_detach; /* libvirt's API alone, medians */
} ProbeFigures;

/* Medians of reps Attach+Detach cycles of img on domain, with whatever
 * else is attached now, interleaved with the same through libvirt's API. */
static void probe_cycles(const char *domain, virDomainPtr dom, const char *img, ProbeFigures *ret) {
        GArray *a = samples_new(), *d = samples_new(), *fa = samples_new(), *fd = samples_new();

        warm_up();
        for (guint i = 0; i < PROBE_REPS; i++) {
                double ms, fa_ms, fd_ms;
                g_autofree char *path = attach_one(domain, img, &ms);
                g_autofree char *target = lv_volume_prop_string(bus, path, "Target");
                sample_add(a, ms);
                sample_add(d, detach_one(path));
                floor_attach(dom, img, target, &fa_ms, &fd_ms);
                sample_add(fa, fa_ms);
                sample_add(fd, fd_ms);
        }
        *ret = (ProbeFigures){
                .attach = percentile(a, 50),
                .detach = percentile(d, 50),
                .floor_attach = percentile(fa, 50),
                .floor_detach = percentile(fd, 50),
        };
        g_array_unref(a);
        g_array_unref(d);
        g_array_unref(fa);
        g_array_unref(fd);
}

/* GetManagedObjects as path → the volume interface's properties (a{sv}). */
static GHashTable *managed_volumes(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
                bus, LV_BUS_NAME, LV_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", NULL,
                G_VARIANT_TYPE("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE, 30000, NULL, &error);
        if (!reply)
                g_error("GetManagedObjects: %s", error->message);

        GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_unref);
        GVariantIter *it;
        const char *path;
        GVariant *ifaces;
        g_variant_get(reply, "(a{oa{sa{sv}}})", &it);
        while (g_variant_iter_next(it, "{&o@a{sa{sv}}}", &path, &ifaces)) {
                GVariant *props = g_variant_lookup_value(ifaces, LV_VOLUME_IFACE, G_VARIANT_TYPE("a{sv}"));
                if (props)
                        g_hash_table_insert(h, g_strdup(path), props);
                g_variant_unref(ifaces);
        }
        g_variant_iter_free(it);
        return h;
}

/* The first property of before that now lacks or has another value, or
 * NULL if none (complete).  Points into before. */
static const char *differing_property(GVariant *before, GVariant *now) {
        GVariantIter it;
        const char *name;
        GVariant *value;

        g_variant_iter_init(&it, before);
        while (g_variant_iter_next(&it, "{&sv}", &name, &value)) {
                g_autoptr(GVariant) was = value;
                if (g_str_equal(name, "AttachedByUID") || g_str_equal(name, "AttachTimestamp"))
                        continue;
                g_autoptr(GVariant) is = g_variant_lookup_value(now, name, NULL);
                if (!is || !g_variant_equal(was, is))
                        return name;
        }
        return NULL;
}

typedef enum {
        OBJECT_MISSING,
        INCOMPLETE,
        COMPLETE
} Recovered;

/* How far now (GetManagedObjects) is back to before; *ret_what: the first
 * thing missing, a property name or "(object)" (points into before or is
 * static). */
static Recovered recovered(GHashTable *before, GHashTable *now, const char **ret_what) {
        GHashTableIter it;
        const char *path;
        GVariant *was;
        Recovered r = COMPLETE;

        *ret_what = NULL;
        g_hash_table_iter_init(&it, before);
        while (g_hash_table_iter_next(&it, (gpointer *) &path, (gpointer *) &was)) {
                GVariant *is = g_hash_table_lookup(now, path);
                if (!is) {
                        *ret_what = "(object)";
                        return OBJECT_MISSING;
                }
                const char *differs = differing_property(was, is);
                if (differs && r == COMPLETE) {
                        *ret_what = differs;
                        r = INCOMPLETE;
                }
        }
        return r;
}

/* Polls GetManagedObjects from the call that activates the killed daemon
 * on: *ret_objects_ms when every path of before is listed, *ret_complete_ms
 * when every property is back too (-1: not within the timeout).
 * *ret_late: a property still missing when all objects were first listed
 * (NULL if none was). */
static void time_recovery(GHashTable *before, double *ret_objects_ms, double *ret_complete_ms, const char **ret_late) {
        double t0 = now_ms();
        *ret_objects_ms = *ret_complete_ms = -1;
        *ret_late = NULL;

        while (now_ms() - t0 < RECOVERY_TIMEOUT_MS) {
                g_autoptr(GHashTable) now = managed_volumes();
                double t = now_ms() - t0;
                const char *what;
                Recovered r = recovered(before, now, &what);

                if (r != OBJECT_MISSING && *ret_objects_ms < 0) {
                        *ret_objects_ms = t;
                        *ret_late = what;
                }
                if (r == COMPLETE) {
                        *ret_complete_ms = t;
                        return;
                }
                /* Often enough to see each step; seldom enough not to
                 * compete with the recovery for the CPU. */
                g_usleep(2000);
        }
}

/* What any recovery has to ask libvirt, done directly: a new connection,
 * every domain, each one's live XML. */
static double libvirt_scan_floor_ms(void) {
        double t0 = now_ms();
        virConnectPtr c = virConnectOpen(g_getenv("LV_LIBVIRT_URI"));
        g_assert_nonnull(c);
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        g_assert_cmpint(n, >=, 0);
        for (int i = 0; i < n; i++) {
                char *xml = virDomainGetXMLDesc(doms[i], 0);
                g_assert_nonnull(xml);
                free(xml);
                virDomainFree(doms[i]);
        }
        free(doms);
        virConnectClose(c);
        return now_ms() - t0;
}

/* RSS and PSS of the daemon now, in MiB. */
static void daemon_memory(double *ret_rss, double *ret_pss) {
        guint32 pid = lv_daemon_pid(bus);
        g_assert_cmpuint(pid, !=, 0);
        g_autofree char *file = g_strdup_printf("/proc/%u/smaps_rollup", pid);
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(file, &text, NULL, NULL));
        const char *rss = strstr(text, "\nRss:"), *pss = strstr(text, "\nPss:");
        g_assert_nonnull(rss);
        g_assert_nonnull(pss);
        *ret_rss = g_ascii_strtod(rss + strlen("\nRss:"), NULL) / 1024.0;
        *ret_pss = g_ascii_strtod(pss + strlen("\nPss:"), NULL) / 1024.0;
}

static double median_of_first(GArray *a, guint k) {
        g_autoptr(GArray) part = samples_new();
        for (guint i = 0; i < MIN(k, a->len); i++)
                sample_add(part, g_array_index(a, double, i));
        return percentile(part, 50);
}

static double median_of_last(GArray *a, guint k) {
        g_autoptr(GArray) part = samples_new();
        for (guint i = a->len - MIN(k, a->len); i < a->len; i++)
                sample_add(part, g_array_index(a, double, i));
        return percentile(part, 50);
}

void scale_scenario(guint n, guint m, GString *csv) {
        m = MAX(1u, MIN(m, n));
        char **names = g_new0(char *, m + 1);
        virDomainPtr *doms = g_new0(virDomainPtr, m);
        char **imgs = g_new0(char *, n + 1);
        char **paths = g_new0(char *, n + 1);

        for (guint i = 0; i < m; i++) {
                names[i] = g_strdup_printf("scale-%02u", i);
                doms[i] = lv_start_guest(names[i]);
        }
        /* Minimum-cost LUKS1 (1000 PBKDF2 iterations, 1 MiB): what grows
         * with N is the daemon's work, not QEMU's key derivation.  Kept
         * between scenarios of a series. */
        for (guint i = 0; i < n; i++) {
                g_autofree char *name = g_strdup_printf("scale-%03u.img", i);
                g_autofree char *path = lv_sandbox_path(name);
                imgs[i] = g_file_test(path, G_FILE_TEST_EXISTS) ? g_steal_pointer(&path)
                                                                : lv_make_luks1_image(name, PASS, 0x5a, 1);
        }
        g_autofree char *probe_img = lv_sandbox_path("scale-probe.img");
        if (!g_file_test(probe_img, G_FILE_TEST_EXISTS)) {
                g_free(probe_img);
                probe_img = lv_make_luks1_image("scale-probe.img", PASS, 0x5a, 1);
        }

        ProbeFigures none, all;
        g_usleep(SETTLE_USEC);
        probe_cycles(names[0], doms[0], probe_img, &none);
        double attach_1 = none.attach, detach_1 = none.detach;

        /* Round robin over the domains, as volumes arrive on a busy host. */
        GArray *attach_each = samples_new(), *detach_each = samples_new();
        for (guint i = 0; i < n; i++) {
                double ms;
                paths[i] = attach_one(names[i % m], imgs[i], &ms);
                sample_add(attach_each, ms);
        }
        g_autofree char *each_csv_path = g_strdup_printf("%s/scale-%u-attach.csv", outdir, n);
        g_autoptr(GString) each_csv = g_string_new("attached_before,attach_ms\n");
        for (guint i = 0; i < n; i++)
                g_string_append_printf(each_csv, "%u,%.1f\n", i, g_array_index(attach_each, double, i));
        g_assert_true(g_file_set_contents(each_csv_path, each_csv->str, -1, NULL));

        g_usleep(SETTLE_USEC);
        probe_cycles(names[0], doms[0], probe_img, &all);
        double attach_n = all.attach, detach_n = all.detach;
        double rss_n, pss_n;
        daemon_memory(&rss_n, &pss_n);

        /* Recovery.  The baseline first, on the same state. */
        GArray *floor_samples = samples_new();
        for (int i = 0; i < 5; i++)
                sample_add(floor_samples, libvirt_scan_floor_ms());
        double floor_ms = percentile(floor_samples, 50);
        g_autoptr(GHashTable) before = managed_volumes();
        g_assert_cmpuint(g_hash_table_size(before), ==, n);
        lv_daemon_kill(bus, SIGKILL);
        double objects_ms, complete_ms;
        const char *late;
        time_recovery(before, &objects_ms, &complete_ms, &late);
        g_autofree char *late_note = late ? g_strdup_printf(" (%s filled in later)", late) : g_strdup("");

        /* Detach each, in the order attached. */
        for (guint i = 0; i < n; i++)
                sample_add(detach_each, detach_one(paths[i]));

        guint k = MAX(3u, MIN(10u, n / 10));
        double scale = MAX(1.0, (double) n / TARGET_AT);
        double obj_target = OBJECTS_TARGET_MS * scale, complete_target = COMPLETE_TARGET_MS * scale;
        printf("| Attach with %u volumes over %u domains attached, median of %u (ms) | %.1f | with none attached %.1f | %.2f | ≤ 1.20 %s |\n",
               n, m, PROBE_REPS, attach_n, attach_1, attach_n / attach_1, mark(attach_n / attach_1 <= 1.20));
        printf("| Detach with %u volumes over %u domains attached, median of %u (ms) | %.1f | with none attached %.1f | %.2f | ≤ 1.20 %s |\n",
               n, m, PROBE_REPS, detach_n, detach_1, detach_n / detach_1, mark(detach_n / detach_1 <= 1.20));
        printf("| the same attach through libvirt's API alone (secret, then the disk), on the same domain, with %u attached / with none (ms) | %.1f | %.1f | %.2f | — |\n",
               n, all.floor_attach, none.floor_attach, all.floor_attach / none.floor_attach);
        printf("| the daemon's attach beyond libvirt's, with %u attached / with none (ms) | %.1f | %.1f | %.2f | — |\n",
               n, all.attach - all.floor_attach, none.attach - none.floor_attach,
               (all.attach - all.floor_attach) / (none.attach - none.floor_attach));
        printf("| the daemon's attach over libvirt's (daemon / libvirt API, each set's medians), with %u attached / with none | %.2f | %.2f | %.2f | — |\n",
               n, all.attach / all.floor_attach, none.attach / none.floor_attach,
               (all.attach / all.floor_attach) / (none.attach / none.floor_attach));
        printf("| the same detach through libvirt's API alone, with %u attached / with none (ms) | %.1f | %.1f | %.2f | — |\n",
               n, all.floor_detach, none.floor_detach, all.floor_detach / none.floor_detach);
        printf("| of the %u attaches, the last %u / the first %u, medians (ms) | %.1f | %.1f | %.2f | — |\n", n, k, k,
               median_of_last(attach_each, k), median_of_first(attach_each, k),
               median_of_last(attach_each, k) / median_of_first(attach_each, k));
        printf("| of the %u detaches after the recovery, the first %u (%u attached) / the last %u, medians (ms) | %.1f | %.1f | %.2f | — |\n",
               n, k, n, k, median_of_first(detach_each, k), median_of_last(detach_each, k),
               median_of_first(detach_each, k) / median_of_last(detach_each, k));
        if (objects_ms >= 0)
                printf("| kill -9 with %u volumes on %u domains → all %u objects in GetManagedObjects (ms) | %.0f | libvirt API: connect, list, every live XML %.1f | %.1f | ≤ %.0f %s |\n",
                       n, m, n, objects_ms, floor_ms, objects_ms / floor_ms, obj_target,
                       mark(objects_ms <= obj_target));
        else
                printf("| kill -9 with %u volumes on %u domains → all %u objects in GetManagedObjects (ms) | not within %.0f s | libvirt API %.1f | — | ≤ %.0f ✗ |\n",
                       n, m, n, RECOVERY_TIMEOUT_MS / 1000, floor_ms, obj_target);
        if (complete_ms >= 0)
                printf("| … and every property as before the kill%s (ms) | %.0f | libvirt API %.1f | %.1f | ≤ %.0f %s |\n",
                       late_note, complete_ms, floor_ms, complete_ms / floor_ms, complete_target,
                       mark(complete_ms <= complete_target));
        else
                printf("| … and every property as before the kill%s (ms) | not within %.0f s | libvirt API %.1f | — | ≤ %.0f ✗ |\n",
                       late_note, RECOVERY_TIMEOUT_MS / 1000, floor_ms, complete_target);
        printf("| daemon RSS / PSS with %u volumes attached (MiB) | %.1f / %.1f | — | — | — |\n", n, rss_n, pss_n);
        if (csv)
                g_string_append_printf(csv, "%u,%u,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f\n", n, m, attach_1, attach_n,
                                       detach_1, detach_n, objects_ms, complete_ms, floor_ms);

        for (guint i = 0; i < m; i++)
                lv_destroy_guest(doms[i]);
        g_array_unref(attach_each);
        g_array_unref(detach_each);
        g_array_unref(floor_samples);
        g_strfreev(names);
        g_strfreev(imgs);
        g_strfreev(paths);
        g_free(doms);
}

/* A call on the service when nothing owns its name: the bus starts it. */
static double cold_call_ms(void) {
        g_autofree char *owner = lv_bus_name_owner(bus, LV_BUS_NAME);
        if (owner)
                lv_daemon_kill(bus, SIGKILL);
        double t0 = now_ms();
        warm_up();
        return now_ms() - t0;
}

/* The bus's activation file for the service, and the same with Exec=
 * naming another binary (no arguments).  The bus reads it again on
 * ReloadConfig, which answers once it has. */
static char *activation_file(void) {
        return g_build_filename(g_getenv("LV_BUS_SERVICES_DIR"), LV_BUS_NAME ".service", NULL);
}

static bool activation_set(const char *contents) {
        g_autoptr(GError) error = NULL;
        g_autofree char *file = activation_file();

        if (!g_file_set_contents(file, contents, -1, &error)) {
                g_printerr("bench: cannot write %s: %s\n", file, error->message);
                return false;
        }
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                            "org.freedesktop.DBus", "ReloadConfig", NULL, NULL,
                                                            G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
        if (!r) {
                g_printerr("bench: the bus did not reload its configuration: %s\n", error->message);
                return false;
        }
        return true;
}

/* The same cold call against v0.1.0's daemon (LV_BASELINE_DAEMON, built by
 * bench/run.sh from the clone's own history): the "27 ms" was
 * v0.1.0's, measured on another day; this is v0.1.0 on this machine, in
 * this run, started by the same bus in the same way.  A baseline that
 * fails costs its row (a negative return), never the benchmark; the
 * activation file is ours again either way. */
static double baseline_cold_call_ms(const char *ours, const char *baseline) {
        g_autofree char *contents =
                g_strdup_printf("[D-BUS Service]\nName=%s\nExec='%s'\nUser=root\n", LV_BUS_NAME, baseline);
        g_autoptr(GError) error = NULL;
        double ms = -1;

        if (activation_set(contents)) {
                g_autofree char *owner = lv_bus_name_owner(bus, LV_BUS_NAME);
                if (owner)
                        lv_daemon_kill(bus, SIGKILL); /* ours */
                double t0 = now_ms();
                g_autoptr(GVariant) info = lv_probe(bus, "", &error);
                if (info)
                        ms = now_ms() - t0;
                else
                        g_printerr("bench: v0.1.0's daemon did not answer Probe(''): %s; no v0.1.0 row\n",
                                   error->message);
                /* Nothing after this may talk to v0.1.0's daemon. */
                g_autofree char *owner_now = lv_bus_name_owner(bus, LV_BUS_NAME);
                if (owner_now)
                        lv_daemon_kill(bus, SIGKILL);
        }
        g_assert_true(activation_set(ours));
        return ms;
}

/* One run of argv to its exit, in ms; it must succeed. */
static double timed_run_ms(const char *const *argv, GSpawnFlags flags) {
        gint status;

        g_assert_nonnull(argv[0]);
        double t0 = now_ms();
        g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL,
                                   flags | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL,
                                   NULL, &status, NULL));
        double ms = now_ms() - t0;
        g_assert_true(g_spawn_check_wait_status(status, NULL));
        return ms;
}

static double virsh_list_ms(void) {
        const char *argv[] = { "virsh", "-c", g_getenv("LV_LIBVIRT_URI"), "list", NULL };
        return timed_run_ms(argv, G_SPAWN_SEARCH_PATH);
}

/* The floor of any cold activation on this machine: the daemon's binary
 * exec()ed and its libraries loaded and relocated (libvirt's alone pull in
 * some 55 more), doing nothing (--version). */
static double exec_floor_ms(void) {
        const char *argv[] = { g_getenv("LV_DAEMON_BINARY"), "--version", NULL };
        return timed_run_ms(argv, 0);
}

/* Below that: a program that only links libvirt and returns, or (connect)
 * also reads libvirt's and the hypervisor's versions over a connection of
 * its own — the least a Probe('') asks of libvirt (bench/libvirt-floor.c,
 * built beside this benchmark). */
static double libvirt_floor_ms(bool connect) {
        g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
        g_assert_nonnull(self);
        g_autofree char *dir = g_path_get_dirname(self);
        g_autofree char *prog = g_build_filename(dir, "luksvolume-libvirt-floor", NULL);
        const char *argv[] = { prog, connect ? g_getenv("LV_LIBVIRT_URI") : NULL, NULL };
        return timed_run_ms(argv, 0);
}

void cold_activation_and_memory(void) {
        GArray *cold = samples_new(), *warm = samples_new(), *virsh = samples_new(), *floor = samples_new();
        GArray *lv_floor = samples_new(), *lv_connect = samples_new(), *v010 = samples_new();
        const char *baseline = g_getenv("LV_BASELINE_DAEMON");
        g_autofree char *ours = NULL;

        if (baseline && *baseline) {
                g_autoptr(GError) error = NULL;
                g_autofree char *file = activation_file();
                g_assert_true(g_file_get_contents(file, &ours, NULL, &error));
        }
        for (int i = 0; i < COLD_REPS; i++) {
                sample_add(cold, cold_call_ms());
                if (ours) {
                        double ms = baseline_cold_call_ms(ours, baseline);
                        if (ms < 0)
                                g_clear_pointer(&ours, g_free); /* no more tries */
                        else
                                sample_add(v010, ms);
                }
                sample_add(virsh, virsh_list_ms());
                sample_add(floor, exec_floor_ms());
                sample_add(lv_floor, libvirt_floor_ms(false));
                sample_add(lv_connect, libvirt_floor_ms(true));
        }
        for (int i = 0; i < WARM_REPS; i++) {
                double t0 = now_ms();
                warm_up();
                sample_add(warm, now_ms() - t0);
        }
        /* Idle: let whatever start-up work is left finish. */
        g_usleep(1000 * 1000);
        double rss, pss;
        daemon_memory(&rss, &pss);

        double c = percentile(cold, 50), w = percentile(warm, 50), v = percentile(virsh, 50);
        double f = percentile(floor, 50), l = percentile(lv_floor, 50), lc = percentile(lv_connect, 50);
        /* A target under the floor of any libvirt client that does what the
         * call needs cannot be met on this machine: the row says so. */
        printf("| cold activation: Probe('') on a service not running, to its reply, median of %d (ms) | %.1f | a cold `virsh list` %.1f; the daemon's binary run with --version (exec and libraries, nothing done) %.1f; a program that only links libvirt: returning at once %.1f, connecting and reading libvirt's and QEMU's versions %.1f; Probe('') on the running daemon %.1f | %.2f× virsh; %.2f× the libvirt connect floor; %.1f ms beyond the exec floor | ≤ 30 %s%s |\n",
               COLD_REPS, c, v, f, l, lc, w, c / v, c / lc, c - f, mark(c <= 30),
               c > 30 && lc > 30 ? " (the libvirt connect floor alone is over 30 here)" : "");
        printf("| idle daemon, nothing attached: RSS / PSS (MiB) | %.1f / %.1f | — | — | PSS ≤ 10 %s |\n", rss, pss,
               mark(pss <= 10));
        g_array_unref(cold);
        g_array_unref(warm);
        g_array_unref(virsh);
        g_array_unref(floor);
        g_array_unref(lv_floor);
        if (ours && v010->len > 0) {
                double b = percentile(v010, 50);
                printf("| cold activation of this tree / of v0.1.0's daemon (f56ba28, built from this clone), the same call, interleaved, medians of %d (ms) | %.1f | v0.1.0 %.1f | %.2f | — |\n",
                       COLD_REPS, c, b, c / b);
        }
        g_array_unref(lv_connect);
        g_array_unref(v010);
}
