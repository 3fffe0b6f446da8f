/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RBD sources against a real single-node Ceph (issue 18, first part):
 * tests/ceph/cluster.sh starts a monitor and a memstore OSD with cephx
 * inside the sandbox, the images are made and LUKS-formatted by Ceph's own
 * `rbd encryption format`, and the daemon (CephConfig= from
 * ceph-daemon.conf) reads their headers through librbd.
 *
 * What holds so far: Probe of "rbd:POOL/IMAGE" reports the header facts —
 * the same UUID, version, sector size and data offset as libcryptsetup
 * reads from the header exported by `rbd export` — plus the image's
 * features and watchers; typed errors for a missing pool or image, an
 * image that is not LUKS, malformed names; the elevated polkit action for
 * callers other than root; and a plain NotSupported from the methods that
 * do not take RBD sources yet (Attach, the key methods). */

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define CEPH_DIR             "/run/lvtest/ceph"
#define PASS                 "rbd-passphrase"
#define NOT_LUKS             "org.example.LuksVolume1.Error.NotLuks"
#define NOT_SUPPORTED        "org.example.LuksVolume1.Error.NotSupported"
#define INVALID_ARGS         "org.freedesktop.DBus.Error.InvalidArgs"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"

static GDBusConnection *bus;
static const char *cluster_sh;

/* Runs a Ceph tool against the sandbox's cluster; its standard output. */
static char *ceph_tool(const char *const *argv) {
        g_autoptr(GError) error = NULL;
        g_autofree char *out = NULL, *err = NULL;
        g_auto(GStrv) envp = g_environ_setenv(g_get_environ(), "CEPH_CONF", CEPH_DIR "/ceph.conf", TRUE);
        int status = 0;

        if (!g_spawn_sync(NULL, (char **) argv, envp, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &error))
                g_error("%s: %s", argv[0], error->message);
        if (!g_spawn_check_wait_status(status, &error))
                g_error("%s %s: %s\n%s", argv[0], argv[1], error->message, err);
        return g_steal_pointer(&out);
}

/* An RBD image of size_mib, LUKS-formatted by librbd ("luks1", "luks2") or
 * left raw (NULL). */
static void make_image(const char *name, guint size_mib, const char *format) {
        g_autofree char *size = g_strdup_printf("%uM", size_mib);
        const char *create[] = { "rbd", "create", name, "--size", size, NULL };
        g_free(ceph_tool(create));
        if (!format)
                return;
        g_autofree char *pass = g_build_filename(CEPH_DIR, "pass", NULL);
        g_assert_true(g_file_set_contents(pass, PASS, -1, NULL));
        const char *enc[] = { "rbd", "encryption", "format", name, format, pass, NULL };
        g_free(ceph_tool(enc));
}

/* libcryptsetup's word on the header, from the image's first 32 MiB
 * exported by Ceph's own tool: "UUID", "sector", "offset". */
static char *dump_field(const char *image, const char *field) {
        g_autofree char *file = g_build_filename(CEPH_DIR, "export.img", NULL);
        g_autofree char *cmd = g_strdup_printf("rbd export %s - 2>/dev/null | head -c 33554432 > %s", image, file);
        const char *sh[] = { "sh", "-c", cmd, NULL };
        g_free(ceph_tool(sh));
        const char *dump[] = { "cryptsetup", "luksDump", file, NULL };
        g_autofree char *out = ceph_tool(dump);
        g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_autofree char *t = g_strstrip(g_strdup(*l));
                if (g_str_has_prefix(t, field) && t[strlen(field)] == ':') {
                        g_autofree char *v = g_strstrip(g_strdup(t + strlen(field) + 1));
                        /* "16777216 [bytes]" → "16777216" */
                        char *sp = strchr(v, ' ');
                        if (sp)
                                *sp = '\0';
                        return g_steal_pointer(&v);
                }
        }
        g_error("no %s in the dump of %s", field, image);
}

static char *probe_string(GVariant *info, const char *key) {
        const char *s = NULL;
        g_assert_true(g_variant_lookup(info, key, "&s", &s));
        return g_strdup(s);
}

static guint64 probe_u(GVariant *info, const char *key) {
        g_autoptr(GVariant) v = g_variant_lookup_value(info, key, NULL);
        g_assert_nonnull(v);
        if (g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32))
                return g_variant_get_uint32(v);
        return g_variant_get_uint64(v);
}

static void check_header(const char *image, guint version) {
        g_autofree char *source = g_strdup_printf("rbd:%s", image);
        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, source, &error);

        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "luks-version"), ==, version);
        g_autofree char *uuid = probe_string(info, "uuid"), *want_uuid = dump_field(image, "UUID");
        g_assert_cmpstr(uuid, ==, want_uuid);
        g_autofree char *cipher = probe_string(info, "cipher");
        g_assert_cmpstr(cipher, ==, "aes-xts-plain64");
        g_assert_cmpuint(probe_u(info, "active-keyslots"), ==, 1);
        if (version == 1) {
                g_autofree char *offset = dump_field(image, "Payload offset");
                g_assert_cmpuint(probe_u(info, "payload-offset"), ==, g_ascii_strtoull(offset, NULL, 10) * 512);
        } else {
                g_autofree char *offset = dump_field(image, "offset"), *sector = dump_field(image, "sector");
                g_assert_cmpuint(probe_u(info, "payload-offset"), ==, g_ascii_strtoull(offset, NULL, 10));
                g_assert_cmpuint(probe_u(info, "sector-size"), ==, g_ascii_strtoull(sector, NULL, 10));
        }
        /* 64 MiB images: the plaintext size is what follows the header. */
        g_assert_cmpuint(probe_u(info, "size") + probe_u(info, "payload-offset"), ==, 64ULL << 20);

        g_autofree char **features = NULL;
        g_assert_true(g_variant_lookup(info, "rbd-features", "^a&s", &features));
        g_assert_true(g_strv_contains((const char *const *) features, "layering"));
        g_assert_cmpuint(probe_u(info, "rbd-watchers"), ==, 0);

        /* Attaching is not built yet, and Probe says so rather than guess. */
        gboolean capable = TRUE;
        g_assert_true(g_variant_lookup(info, "native-capable", "b", &capable));
        g_assert_false(capable);
        g_autofree char *obstacle = probe_string(info, "native-obstacle");
        g_assert_nonnull(strstr(obstacle, "RBD"));
}

static void test_probe_luks1(void) {
        check_header("rbd/luks1", 1);
}

static void test_probe_luks2(void) {
        check_header("rbd/luks2", 2);
}

static void assert_probe_error(GDBusConnection *c, const char *source, const char *name, const char *text) {
        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(c, source, &error);
        g_assert_null(info);
        g_assert_nonnull(error);
        g_autofree char *got = lv_error_name(error);
        if (g_strcmp0(got, name) != 0 || (text && !strstr(error->message, text)))
                g_error("Probe('%s'): %s: %s (wanted %s%s%s)", source, got, error->message, name, text ? " with " : "",
                        text ? text : "");
        g_error_free(error);
}

static void test_probe_errors(void) {
        assert_probe_error(bus, "rbd:rbd/plain", NOT_LUKS, "rbd:rbd/plain");
        assert_probe_error(bus, "rbd:rbd/missing", INVALID_ARGS, "does not exist");
        assert_probe_error(bus, "rbd:nopool/luks1", INVALID_ARGS, "pool");
        /* Spelling, refused before anything is looked up. */
        assert_probe_error(bus, "rbd:rbd", INVALID_ARGS, "rbd:POOL/IMAGE");
        assert_probe_error(bus, "rbd:rbd/luks1@snap", INVALID_ARGS, "snapshot");
        assert_probe_error(bus, "rbd:a/b/c/d", INVALID_ARGS, NULL);
        assert_probe_error(bus, "rbd:rbd/.hidden", INVALID_ARGS, NULL);
        assert_probe_error(bus, "rbd:rbd/a b", INVALID_ARGS, NULL);
}

/* A client watching the image (here `rbd watch`; a QEMU that has it open
 * or a kernel mapping are the same to Ceph) is counted. */
static void test_probe_watchers(void) {
        const char *argv[] = { "bash", "-c",
                               "export CEPH_CONF=" CEPH_DIR "/ceph.conf; exec rbd watch rbd/luks1 < <(sleep 600)",
                               NULL };
        GSubprocess *w = lv_spawn_ready(argv);
        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/luks1", &error);

        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "rbd-watchers"), ==, 1);
        lv_kill_wait(w);
}

/* The daemon reads the cluster with the host's key: a caller other than
 * root needs the admin action for what it cannot read itself, whatever
 * rule lets it Probe its own files; with it, it gets the facts. */
static void test_probe_unprivileged(void) {
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        GError *error = NULL;

        lv_polkit_set_rules(
                "50-ceph.rules",
                "polkit.addRule(function(action, subject) {\n"
                "  if (action.id == 'org.example.luksvolume1.probe' &&\n"
                "      (subject.user == 'lvuser' || subject.user == 'lvadmin'))\n"
                "    return polkit.Result.YES;\n"
                "  if (action.id == 'org.example.luksvolume1.probe-unreadable' && subject.user == 'lvadmin' &&\n"
                "      action.lookup('source') == 'rbd:rbd/luks1')\n"
                "    return polkit.Result.YES;\n"
                "  return polkit.Result.NOT_HANDLED;\n"
                "});\n");
        assert_probe_error(user, "rbd:rbd/luks1", INTERACTIVE_REQUIRED, "probe-unreadable");
        /* Whether the image exists is not told either. */
        assert_probe_error(user, "rbd:rbd/missing", INTERACTIVE_REQUIRED, "probe-unreadable");

        g_autoptr(GVariant) info = lv_probe(admin, "rbd:rbd/luks1", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "luks-version"), ==, 1);
        lv_polkit_set_rules("50-ceph.rules", NULL);
}

/* What is not built yet says so, before anything is derived or plugged. */
static void test_not_yet(void) {
        GError *error = NULL;
        g_autofree char *path = lv_attach(bus, "lvtest-guest", "rbd:rbd/luks1", PASS, NULL, &error);
        g_assert_null(path);
        g_autofree char *name = lv_error_name(error);
        g_assert_cmpstr(name, ==, NOT_SUPPORTED);
        g_assert_nonnull(strstr(error->message, "RBD"));
        g_clear_error(&error);

        g_assert_cmpint(lv_verify_passphrase(bus, "rbd:rbd/luks1", PASS, &error), <, 0);
        g_free(name);
        name = lv_error_name(error);
        g_assert_cmpstr(name, ==, NOT_SUPPORTED);
        g_clear_error(&error);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        if (argc < 2)
                g_error("usage: %s [--tap] CLUSTER_SH", argv[0]);
        cluster_sh = argv[1];

        /* The cluster first: the daemon reads CephConfig= when the first
         * call activates it. */
        const char *start[] = { "bash", cluster_sh, "start", CEPH_DIR, NULL };
        g_autofree char *started = ceph_tool(start);
        g_test_message("%s", g_strstrip(started));
        make_image("rbd/luks1", 64, "luks1");
        make_image("rbd/luks2", 64, "luks2");
        make_image("rbd/plain", 8, NULL);

        bus = lv_bus();
        virDomainPtr guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/ceph/probe-luks1", test_probe_luks1);
        g_test_add_func("/ceph/probe-luks2", test_probe_luks2);
        g_test_add_func("/ceph/probe-errors", test_probe_errors);
        g_test_add_func("/ceph/probe-watchers", test_probe_watchers);
        g_test_add_func("/ceph/probe-unprivileged", test_probe_unprivileged);
        g_test_add_func("/ceph/not-yet", test_not_yet);

        int r = g_test_run();
        lv_destroy_guest(guest);
        const char *stop[] = { "bash", cluster_sh, "stop", CEPH_DIR, NULL };
        g_free(ceph_tool(stop));
        return r;
}
