/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Safe on a shared host (issue 10), on the real stack: no caller can stall
 * the service, nothing is revealed before authorization, no second writer,
 * no generic failures.
 *
 * The daemon runs with --source-timeout=2 (file system calls on a source
 * give up after 2 s) and --fault-file=/run/lvtest/fault.  A FUSE file
 * system of misbehaving files (hang-fuse.py) is mounted at
 * $LV_SANDBOX_DIR/fuse: hang.img, whose look-up never returns, and
 * eacces.img, which exists but cannot be opened, not even by root. */

#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS                 "shared host passphrase"
#define PATTERN              0x6b
#define ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

static GDBusConnection *bus;
static virDomainPtr guest, other;
static GSubprocess *fuse_fs;
static char *fuse_dir, *hang_path, *eacces_path;

static guint count_objects(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        return g_strv_length(objs);
}

static void assert_clean(void) {
        g_assert_cmpuint(count_objects(), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "ua-luksvol-"));
}

static GVariant *scsi(void) {
        return lv_opts("bus", g_variant_new_string("scsi"), NULL);
}

/* ------------------------------------------------------------- async calls */

typedef struct Pending {
        GVariant *reply;
        GError *error;
        gboolean done;
        gint64 started, finished;
} Pending;

static void on_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        Pending *p = userdata;
        p->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);
        p->finished = g_get_monotonic_time();
        p->done = TRUE;
}

static void call_async(GDBusConnection *c, const char *method, GVariant *params, Pending *p) {
        p->started = g_get_monotonic_time();
        g_dbus_connection_call(c, LV_BUS_NAME, LV_PATH, LV_IFACE, method, params, NULL, G_DBUS_CALL_FLAGS_NONE, 120000,
                               NULL, on_reply, p);
}

static void probe_async(GDBusConnection *c, const char *source, Pending *p) {
        call_async(c, "Probe", g_variant_new("(s@a{sv})", source, lv_opts(NULL)), p);
}

static void attach_async(GDBusConnection *c, const char *domain, const char *source, Pending *p) {
        call_async(c, "Attach",
                   g_variant_new("(ss@ay@a{sv})", domain, source,
                                 g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1), scsi()),
                   p);
}

static void wait_for(Pending *p) {
        while (!p->done)
                g_main_context_iteration(NULL, TRUE);
}

static void pending_clear(Pending *p) {
        g_clear_pointer(&p->reply, g_variant_unref);
        g_clear_error(&p->error);
}

/* ----------------------------------------------------------- a locked file */

/* Another process holds an exclusive flock on a LUKS2 file: libcryptsetup
 * would wait for it (a blocking shared lock), and used to do so holding
 * the daemon's process-wide lock, stalling every other call.  Now: Busy at
 * once, and everything else keeps working meanwhile. */
static void test_flock_busy(void) {
        g_autofree char *locked = lv_make_luks2_image("locked2.img", PASS, 20);
        g_autofree char *locked1 = lv_make_luks1_image("locked1.img", PASS, PATTERN, 4);
        g_autofree char *free1 = lv_make_luks1_image("free1.img", PASS, PATTERN, 4);
        g_autofree char *free2 = lv_make_luks1_image("free2.img", PASS, PATTERN, 4);
        Pending probe_locked = {}, probe_free = {}, attach_free = {};
        GError *error = NULL;

        GSubprocess *holder = lv_hold_flock(locked);

        probe_async(bus, locked, &probe_locked);
        probe_async(bus, free1, &probe_free);
        attach_async(bus, "lvtest-guest", free2, &attach_free);
        wait_for(&probe_free);
        wait_for(&attach_free);
        wait_for(&probe_locked);

        g_assert_no_error(probe_free.error);
        g_assert_no_error(attach_free.error);
        lv_assert_error(probe_locked.error, LV_ERR("Busy"));
        g_assert_nonnull(strstr(probe_locked.error->message, "locked by another process"));
        g_test_message("Probe of the locked LUKS2 file: Busy after %.1f ms",
                       (probe_locked.finished - probe_locked.started) / 1000.0);
        /* Not waiting for the lock: the holder would keep it for 600 s. */
        g_assert_cmpint(probe_locked.finished - probe_locked.started, <, 5 * G_USEC_PER_SEC);

        /* An Attach of the locked file is refused the same way, leaving
         * nothing behind. */
        g_assert_null(lv_attach(bus, "lvtest-guest", locked, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        lv_kill_wait(holder);

        /* A LUKS1 file too: whoever holds it exclusively is changing it. */
        holder = lv_hold_flock(locked1);
        g_assert_null(lv_probe(bus, locked1, &error));
        lv_assert_error(error, LV_ERR("Busy"));
        /* ... naming the holder. */
        g_autofree char *pid = g_strdup_printf("(pid %s)", g_subprocess_get_identifier(holder));
        g_assert_nonnull(strstr(error->message, pid));
        g_clear_error(&error);
        lv_kill_wait(holder);
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, locked1, &error);
        g_assert_no_error(error);

        const char *path;
        g_variant_get(attach_free.reply, "(&o)", &path);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        pending_clear(&probe_locked);
        pending_clear(&probe_free);
        pending_clear(&attach_free);
        assert_clean();
}

/* A block device's LUKS2 metadata lock is libcryptsetup's lock file in
 * /run/cryptsetup; a process holding it exclusively makes it Busy too. */
static void test_lockfile_busy(void) {
        g_autofree char *img = lv_make_luks1_image("lockdev.img", PASS, PATTERN, 4);
        g_autofree char *dev = lv_losetup(img);
        GError *error = NULL;
        struct stat st;

        g_assert_cmpint(stat(dev, &st), ==, 0);
        g_assert_cmpint(g_mkdir_with_parents("/run/cryptsetup", 0700), ==, 0);
        g_autofree char *lockfile = g_strdup_printf("/run/cryptsetup/L_%u:%u", major(st.st_rdev), minor(st.st_rdev));
        GSubprocess *holder = lv_hold_flock(lockfile);

        g_assert_null(lv_probe(bus, dev, &error));
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);

        lv_kill_wait(holder);
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, dev, &error);
        g_assert_no_error(error);
        g_unlink(lockfile);
        lv_losetup_detach(dev);
}

/* ---------------------------------------------------------- a hung mount */

/* A path whose look-up never returns: the caller gets a typed error after
 * the deadline, while other calls keep being answered meanwhile. */
static void test_hanging_path(void) {
        g_autofree char *good = lv_make_luks1_image("hang-good.img", PASS, PATTERN, 4);
        g_autofree char *good2 = lv_make_luks1_image("hang-good2.img", PASS, PATTERN, 4);
        Pending hang_probe = {}, hang_attach = {};
        GError *error = NULL;

        probe_async(bus, hang_path, &hang_probe);
        attach_async(bus, "lvtest-guest", hang_path, &hang_attach);

        /* Meanwhile, everything else: answered before the hanging ones. */
        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) info = lv_probe(bus, good, &error);
        g_assert_no_error(error);
        g_autofree char *path = lv_attach(bus, "lvtest-guest", good2, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_false(hang_probe.done);

        wait_for(&hang_probe);
        wait_for(&hang_attach);
        lv_assert_error(hang_probe.error, LV_ERR("Busy"));
        g_assert_nonnull(strstr(hang_probe.error->message, "did not respond within 2 s"));
        lv_assert_error(hang_attach.error, LV_ERR("Busy"));
        g_test_message("hanging path: Probe answered Busy after %.1f s, Attach after %.1f s",
                       (hang_probe.finished - hang_probe.started) / 1e6,
                       (hang_attach.finished - hang_attach.started) / 1e6);
        pending_clear(&hang_probe);
        pending_clear(&hang_attach);

        /* The daemon is still all there. */
        g_autoptr(GVariant) again = lv_probe(bus, good, &error);
        g_assert_no_error(error);
        assert_clean();
}

/* A header that cannot be read for lack of permission (EACCES, root
 * included) is a failure of the operation, never the D-Bus AccessDenied
 * that clients read as "polkit said no". */
static void test_eacces_not_access_denied(void) {
        GError *error = NULL;

        g_assert_null(lv_probe(bus, eacces_path, &error));
        lv_assert_error(error, LV_ERR("Failed"));
        g_assert_nonnull(strstr(error->message, "Permission denied"));
        g_clear_error(&error);

        g_assert_null(lv_attach(bus, "lvtest-guest", eacces_path, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("Failed"));
        g_clear_error(&error);
        assert_clean();
}

/* ------------------------------------------------- nothing revealed early */

typedef struct Outcome {
        char *name, *message;
        gint64 usec;
} Outcome;

static Outcome call_as_user(GDBusConnection *user, const char *method, const char *source) {
        GError *error = NULL;
        gint64 t0 = g_get_monotonic_time();
        Outcome o = {};

        if (g_str_equal(method, "Probe"))
                g_assert_null(lv_probe(user, source, &error));
        else
                g_assert_null(lv_attach(user, "lvtest-guest", source, PASS, scsi(), &error));
        o.usec = g_get_monotonic_time() - t0;
        g_assert_nonnull(error);
        o.name = lv_error_name(error);
        o.message = g_strdup(error->message);
        g_clear_error(&error);
        return o;
}

/* An unprivileged caller polkit refuses gets the same answer, at about the
 * same time, for a path that exists, one that does not, one that cannot be
 * opened and one whose look-up hangs: nothing it could learn from. */
static void test_unprivileged_identical(void) {
        g_autofree char *existing = lv_make_luks1_image("exists.img", PASS, PATTERN, 4);
        g_autofree char *missing = lv_sandbox_path("does-not-exist.img");
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        const char *paths[] = { existing, missing, eacces_path, hang_path };
        const char *methods[] = { "Attach", "Probe" };

        for (size_t m = 0; m < G_N_ELEMENTS(methods); m++) {
                Outcome o[G_N_ELEMENTS(paths)];
                gint64 lo = G_MAXINT64, hi = 0;

                for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
                        o[i] = call_as_user(user, methods[m], paths[i]);
                        g_test_message("%s(%s) as uid %d: %s after %.1f ms", methods[m], paths[i], LV_TEST_UID_USER,
                                       o[i].name, o[i].usec / 1000.0);
                        lo = MIN(lo, o[i].usec);
                        hi = MAX(hi, o[i].usec);
                }
                for (size_t i = 1; i < G_N_ELEMENTS(paths); i++) {
                        g_assert_cmpstr(o[i].name, ==, o[0].name);
                        g_assert_cmpstr(o[i].message, ==, o[0].message);
                }
                g_assert_cmpstr(o[0].name, ==, INTERACTIVE_REQUIRED);
                /* The same timing class: none answered before the
                 * resolution window (250 ms), none long after it. */
                g_assert_cmpint(lo, >=, 200 * 1000);
                g_assert_cmpint(hi - lo, <, 1000 * 1000);
                for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
                        g_free(o[i].name);
                        g_free(o[i].message);
                }
        }
        assert_clean();
}

/* ---------------------------------------------------------------- polkit */

static char *domain_uuid(virDomainPtr d) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(d, uuid), ==, 0);
        return g_strdup(uuid);
}

/* `domain` is always the name: a rule denying a domain by name cannot be
 * side-stepped by naming it by UUID; `domain-uuid` carries the UUID. */
static void test_polkit_domain_by_uuid(void) {
        g_autofree char *img = lv_make_luks1_image("byuuid.img", PASS, PATTERN, 4);
        g_autofree char *guest_uuid = domain_uuid(guest);
        g_autofree char *other_uuid = domain_uuid(other);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        /* A rule on the name alone: naming the domain by UUID does not get
         * around it. */
        lv_polkit_set_rules("50-by-uuid.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (subject.user != 'lvadmin' || action.id.indexOf('org.example.luksvolume1.') != 0)\n"
                            "    return polkit.Result.NOT_HANDLED;\n"
                            "  if (action.lookup('domain') == 'lvtest-guest') return polkit.Result.NO;\n"
                            "  return polkit.Result.YES;\n"
                            "});\n");
        g_assert_null(lv_attach(admin, "lvtest-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);
        g_assert_null(lv_attach(admin, guest_uuid, img, PASS, scsi(), &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);
        assert_clean();

        /* A rule on domain-uuid: only the other guest. */
        g_autofree char *rule = g_strdup_printf(
                "polkit.addRule(function(action, subject) {\n"
                "  if (subject.user != 'lvadmin' || action.id.indexOf('org.example.luksvolume1.') != 0)\n"
                "    return polkit.Result.NOT_HANDLED;\n"
                "  if (action.id == 'org.example.luksvolume1.attach' && action.lookup('domain-uuid') != '%s')\n"
                "    return polkit.Result.NO;\n"
                "  return polkit.Result.YES;\n"
                "});\n",
                other_uuid);
        lv_polkit_set_rules("50-by-uuid.rules", rule);
        g_assert_null(lv_attach(admin, guest_uuid, img, PASS, scsi(), &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);

        /* The other guest, by UUID: the rule sees its name and its UUID. */
        g_autofree char *path = lv_attach(admin, other_uuid, img, PASS, scsi(), &error);
        g_assert_no_error(error);
        g_autofree char *dom = lv_volume_prop_string(bus, path, "Domain");
        g_assert_cmpstr(dom, ==, "lvtest-other");
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        /* A domain that does not resolve is asked about as given; an
         * authorized caller then learns it does not exist. */
        g_assert_null(lv_attach(admin, "no-such-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, ACCESS_DENIED);
        g_clear_error(&error);
        g_assert_null(lv_attach(bus, "no-such-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("NoSuchDomain"));
        g_clear_error(&error);

        lv_polkit_set_rules("50-by-uuid.rules", NULL);
        assert_clean();
}

/* A flood of pending checks from one user does not lock root out, and the
 * cap counts per user, not per connection. */
static void test_polkit_flood(void) {
        enum {
                CONNECTIONS = 5,
                PER_CONNECTION = 30
        };
        GDBusConnection *users[CONNECTIONS];
        Pending *p = g_new0(Pending, CONNECTIONS * PER_CONNECTION);
        GError *error = NULL;
        unsigned busy = 0, refused = 0;

        /* The first check of the flood holds polkitd in a rule for a while,
         * so that the others pile up behind it. */
        lv_polkit_set_rules("50-slow.rules",
                            "var lvSlowOnce = true;\n"
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (subject.user != 'lvuser' || action.id != 'org.example.luksvolume1.probe')\n"
                            "    return polkit.Result.NOT_HANDLED;\n"
                            "  if (lvSlowOnce) { lvSlowOnce = false; polkit.spawn(['/bin/sleep', '4']); }\n"
                            "  return polkit.Result.NO;\n"
                            "});\n");

        for (unsigned c = 0; c < CONNECTIONS; c++)
                users[c] = lv_bus_as_uid(LV_TEST_UID_USER);
        for (unsigned i = 0; i < CONNECTIONS * PER_CONNECTION; i++)
                probe_async(users[i % CONNECTIONS], "", &p[i]);
        /* Let the flood reach the daemon. */
        for (int k = 0; k < 50; k++) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(10 * 1000);
        }

        /* Root is answered, and not with Busy. */
        gint64 t0 = g_get_monotonic_time();
        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);
        g_test_message("root's Probe('') answered in %.1f ms during the flood", (g_get_monotonic_time() - t0) / 1000.0);

        for (unsigned i = 0; i < CONNECTIONS * PER_CONNECTION; i++) {
                wait_for(&p[i]);
                g_assert_nonnull(p[i].error);
                g_autofree char *name = lv_error_name(p[i].error);
                if (g_str_equal(name, LV_ERR("Busy")))
                        busy++;
                else
                        refused++;
                pending_clear(&p[i]);
        }
        g_test_message("flood of %u checks from one user over %u connections: %u Busy, %u refused by polkit",
                       CONNECTIONS * PER_CONNECTION, CONNECTIONS, busy, refused);
        /* At most 32 of one user's checks wait for polkitd at once, across
         * all its connections (a per-connection cap would have let 150). */
        g_assert_cmpuint(refused, <=, 32 + 8);
        g_assert_cmpuint(busy, >=, CONNECTIONS * PER_CONNECTION - 40);

        for (unsigned c = 0; c < CONNECTIONS; c++)
                g_object_unref(users[c]);
        g_free(p);
        lv_polkit_set_rules("50-slow.rules", NULL);
}

/* ---------------------------------------------------------- second writer */

static const char *raw_disk_xml(const char *path, const char *target, char **ret) {
        *ret = g_strdup_printf("<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                               "<source file='%s'/><target dev='%s' bus='scsi'/></disk>",
                               path, target);
        return *ret;
}

/* A file another guest already has as a disk — by any path to it. */
static void test_in_use_other_guest(void) {
        g_autofree char *img = lv_make_luks1_image("shared.img", PASS, PATTERN, 4);
        g_autofree char *slink = lv_sandbox_path("shared-link.img");
        g_autofree char *hard = lv_sandbox_path("shared-hard.img");
        g_autofree char *xml = NULL;
        GError *error = NULL;

        g_assert_cmpint(symlink(img, slink), ==, 0);
        g_assert_cmpint(link(img, hard), ==, 0);
        g_assert_cmpint(virDomainAttachDeviceFlags(other, raw_disk_xml(img, "sdd", &xml), VIR_DOMAIN_AFFECT_LIVE), ==,
                        0);

        const char *paths[] = { img, slink, hard };
        for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
                g_assert_null(lv_attach(bus, "lvtest-guest", paths[i], PASS, scsi(), &error));
                lv_assert_error(error, LV_ERR("InUse"));
                g_assert_nonnull(strstr(error->message, "lvtest-other"));
                g_test_message("%s: %s", paths[i], error->message);
                g_clear_error(&error);
                assert_clean();
        }

        g_autofree char *xml2 = NULL;
        g_assert_cmpint(virDomainDetachDeviceFlags(other, raw_disk_xml(img, "sdd", &xml2), VIR_DOMAIN_AFFECT_LIVE), ==,
                        0);
        g_assert_true(lv_domain_wait_disk_gone(other, "sdd", 10000));
        g_unlink(slink);
        g_unlink(hard);
}

/* The daemon keeps what other guests' disks use between attaches
 * (daemon/disk-index.h): a disk plugged into another guest after an
 * attach has read that guest's XML is in use all the same, at once — and
 * free again once it is unplugged. */
static void test_in_use_after_change(void) {
        g_autofree char *img = lv_make_luks1_image("later.img", PASS, PATTERN, 4);
        g_autofree char *first = lv_make_luks1_image("first.img", PASS, PATTERN, 4);
        g_autofree char *xml = NULL, *xml2 = NULL;
        GError *error = NULL;

        /* An attach: every guest's disks are known now. */
        g_autofree char *path1 = lv_attach(bus, "lvtest-guest", first, PASS, scsi(), &error);
        g_assert_no_error(error);

        for (int round = 0; round < 3; round++) {
                /* No pause: libvirt's device-added event must have reached the
                 * daemon before its check does. */
                g_assert_cmpint(
                        virDomainAttachDeviceFlags(other, raw_disk_xml(img, "sde", &xml), VIR_DOMAIN_AFFECT_LIVE), ==,
                        0);
                g_clear_pointer(&xml, g_free);
                g_assert_null(lv_attach(bus, "lvtest-guest", img, PASS, scsi(), &error));
                lv_assert_error(error, LV_ERR("InUse"));
                g_assert_nonnull(strstr(error->message, "lvtest-other"));
                g_clear_error(&error);

                g_assert_cmpint(
                        virDomainDetachDeviceFlags(other, raw_disk_xml(img, "sde", &xml2), VIR_DOMAIN_AFFECT_LIVE), ==,
                        0);
                g_clear_pointer(&xml2, g_free);
                g_assert_true(lv_domain_wait_disk_gone(other, "sde", 10000));
                g_autofree char *path2 = lv_attach(bus, "lvtest-guest", img, PASS, scsi(), &error);
                g_assert_no_error(error);
                g_assert_true(lv_detach(bus, path2, NULL, &error));
                g_assert_no_error(error);
        }
        g_assert_true(lv_detach(bus, path1, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

/* A file that backs a loop device: the kernel writes it through that
 * device, and nothing (QEMU's image locks included) would notice. */
static void test_in_use_loop_backing(void) {
        g_autofree char *img = lv_make_luks1_image("looped.img", PASS, PATTERN, 4);
        g_autofree char *dev = lv_losetup(img);
        GError *error = NULL;

        g_assert_null(lv_attach(bus, "lvtest-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("InUse"));
        g_assert_nonnull(strstr(error->message, dev));
        g_clear_error(&error);
        assert_clean();
        lv_losetup_detach(dev);
}

/* A block device that is mounted, or open exclusively by another process. */
static void test_in_use_block(void) {
        g_autofree char *fs = lv_make_plain_file("fs.img", 32);
        g_autofree char *mnt = lv_sandbox_path("mnt");
        GError *error = NULL;

        const char *mkfs[] = { "mkfs.ext4", "-q", "-F", fs, NULL };
        g_assert_cmpint(lv_run_as(0, mkfs, 60, NULL, NULL), ==, 0);
        g_autofree char *dev = lv_losetup(fs);
        g_assert_cmpint(g_mkdir_with_parents(mnt, 0755), ==, 0);
        g_assert_cmpint(mount(dev, mnt, "ext4", 0, NULL), ==, 0);

        g_assert_null(lv_attach(bus, "lvtest-guest", dev, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("InUse"));
        g_assert_nonnull(strstr(error->message, "mounted at"));
        g_assert_nonnull(strstr(error->message, mnt));
        g_clear_error(&error);
        assert_clean();
        g_assert_cmpint(umount(mnt), ==, 0);
        lv_losetup_detach(dev);

        /* Exclusively open (as mount, swapon, dm, md would hold it). */
        g_autofree char *img = lv_make_luks1_image("excl.img", PASS, PATTERN, 4);
        g_autofree char *dev2 = lv_losetup(img);
        g_autofree char *script = g_strdup_printf("import os, sys, time\n"
                                                  "fd = os.open('%s', os.O_RDONLY | os.O_EXCL)\n"
                                                  "print('held', flush=True)\n"
                                                  "time.sleep(600)\n",
                                                  dev2);
        const char *hold_argv[] = { "/usr/bin/python3", "-c", script, NULL };
        GSubprocess *holder = lv_spawn_ready(hold_argv);
        g_assert_null(lv_attach(bus, "lvtest-guest", dev2, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("InUse"));
        g_assert_nonnull(strstr(error->message, "exclusively"));
        g_clear_error(&error);
        lv_kill_wait(holder);
        assert_clean();

        /* And while a native block volume is attached, the daemon holds it
         * exclusively: the host cannot mount it (or open it O_EXCL). */
        g_autofree char *path = lv_attach(bus, "lvtest-guest", dev2, PASS, scsi(), &error);
        g_assert_no_error(error);
        int fd = open(dev2, O_RDONLY | O_EXCL | O_CLOEXEC);
        g_assert_cmpint(fd, <, 0);
        g_assert_cmpint(errno, ==, EBUSY);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        fd = open(dev2, O_RDONLY | O_EXCL | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        lv_losetup_detach(dev2);
        assert_clean();
}

/* ----------------------------------------------------- passphrase bytes */

/* QEMU reads a secret as UTF-8 text without NUL: such passphrases cannot
 * go native.  Without dm-crypt (this host) auto has nowhere to go either. */
static void test_binary_passphrase(void) {
        static const guint8 key[] = { 'b', 0x00, 'i', 0x80, 'n', 0xff, 'a', 'r', 'y' };
        g_autofree char *img = lv_make_luks1_image_bytes("binary.img", key, sizeof key, 4);
        GError *error = NULL;

        g_assert_null(lv_attach_bytes(bus, "lvtest-guest", img, key, sizeof key, scsi(), NULL, &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "UTF-8"));
        g_clear_error(&error);

        g_assert_null(lv_attach_bytes(
                bus, "lvtest-guest", img, key, sizeof key,
                lv_opts("bus", g_variant_new_string("scsi"), "mode", g_variant_new_string("native"), NULL), NULL,
                &error));
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "UTF-8"));
        g_clear_error(&error);
        assert_clean();
}

/* ------------------------------------------------------ libvirt's answer */

/* If libvirt ever attached our disk without its <encryption>, the guest
 * would see ciphertext as a plain disk: the daemon unplugs it, removes
 * the secret and fails.  (Made to happen with the fault file.) */
static void test_unencrypted_plug_undone(void) {
        g_autofree char *img = lv_make_luks1_image("unenc.img", PASS, PATTERN, 4);
        GError *error = NULL;

        g_assert_true(g_file_set_contents("/run/lvtest/fault", "attach:unencrypted", -1, NULL));
        g_assert_null(lv_attach(bus, "lvtest-guest", img, PASS, scsi(), &error));
        lv_assert_error(error, LV_ERR("Failed"));
        g_assert_nonnull(strstr(error->message, "encryption"));
        g_clear_error(&error);
        g_assert_false(g_file_test("/run/lvtest/fault", G_FILE_TEST_EXISTS));
        g_assert_true(lv_domain_wait_disk_gone(guest, "sda", 10000));
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        /* argv[1]: hang-fuse.py (meson passes its path). */
        if (argc < 2)
                g_error("usage: test-shared-host [GTEST-OPTIONS] PATH-TO-hang-fuse.py");

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");
        other = lv_start_guest("lvtest-other");

        fuse_fs = lv_mount_hang_fuse(argv[1], "fuse", NULL, &fuse_dir);
        eacces_path = g_build_filename(fuse_dir, "eacces.img", NULL);
        hang_path = g_build_filename(fuse_dir, "hang.img", NULL);

        g_test_add_func("/shared-host/flock-busy", test_flock_busy);
        g_test_add_func("/shared-host/lockfile-busy", test_lockfile_busy);
        g_test_add_func("/shared-host/hanging-path", test_hanging_path);
        g_test_add_func("/shared-host/eacces-not-access-denied", test_eacces_not_access_denied);
        g_test_add_func("/shared-host/unprivileged-identical", test_unprivileged_identical);
        g_test_add_func("/shared-host/polkit-domain-by-uuid", test_polkit_domain_by_uuid);
        g_test_add_func("/shared-host/polkit-flood", test_polkit_flood);
        g_test_add_func("/shared-host/in-use-other-guest", test_in_use_other_guest);
        g_test_add_func("/shared-host/in-use-after-change", test_in_use_after_change);
        g_test_add_func("/shared-host/in-use-loop-backing", test_in_use_loop_backing);
        g_test_add_func("/shared-host/in-use-block", test_in_use_block);
        g_test_add_func("/shared-host/binary-passphrase", test_binary_passphrase);
        g_test_add_func("/shared-host/unencrypted-plug-undone", test_unencrypted_plug_undone);

        int r = g_test_run();

        /* The hanging look-ups end (with an error) once their file system
         * goes away. */
        lv_unmount_hang_fuse(g_steal_pointer(&fuse_fs), fuse_dir);
        lv_destroy_guest(other);
        lv_destroy_guest(guest);
        return r;
}
