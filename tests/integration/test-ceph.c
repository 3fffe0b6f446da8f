/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RBD sources against a real single-node Ceph (issue 18):
 * tests/ceph/cluster.sh starts a monitor and a memstore OSD with cephx
 * inside the sandbox, the images are made and LUKS-formatted by Ceph's own
 * `rbd encryption format`, and the daemon (CephConfig= from
 * ceph-daemon.conf) reads their headers through librbd.
 *
 * Probe of "rbd:POOL/IMAGE" reports the header facts — the same UUID,
 * version, sector size and data offset as libcryptsetup reads from the
 * header exported by `rbd export` — plus the image's features and
 * watchers; typed errors for a missing pool or image, an image that is not
 * LUKS, malformed names; the elevated polkit action for callers other than
 * root.  Attach of a LUKS1 image is native (QEMU's LUKS driver over its
 * rbd node, the ceph secret from CephSecret=): QEMU reads the plaintext
 * written beforehand, no kernel RBD device and no device-mapper device
 * exists, and detach, a wrong passphrase and kill -9 + recovery + detach
 * leave no secret of ours; Resize grows the image through librbd; key
 * rotation writes the image's header back under its exclusive lock;
 * save + libvirtd restart + Rearm + restore, and a guest that stops, work
 * as for files.  LUKS2 (libvirt 9.0 cannot hot-plug librbd's encryption),
 * cryptsetup mode, an image another client has open, namespaced images
 * on attach answer typed refusals, and the pool rule of polkit/examples
 * grants what it says.
 *
 * Live migration (issue 19 for RBD): a second libvirt host
 * (tests/sandbox/second-host.sh, the same cluster, the same ceph secret
 * UUID) stages the volume with StageIncoming, the guest migrates without
 * --unsafe (libvirt knows RBD is shared storage), B's QEMU reads the
 * plaintext and B's service holds the volume; a ceph secret UUID other
 * than B's is refused when staging. */

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "fixture.h"
#include "lv-client.h"
#include "second-host.h"

#define CEPH_DIR             LV_CEPH_DIR
#define PASS                 "rbd-passphrase"
#define NOT_LUKS             "org.example.LuksVolume1.Error.NotLuks"
#define NOT_SUPPORTED        "org.example.LuksVolume1.Error.NotSupported"
#define INVALID_ARGS         "org.freedesktop.DBus.Error.InvalidArgs"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
#define PATTERN              0x3c

static GDBusConnection *bus;
static virDomainPtr guest;
static const char *cluster_sh, *ctl, *pool_rule, *second_host_sh, *daemon_path, *daemon_config;

static char *ceph_tool(const char *const *argv) {
        return lv_ceph_tool(argv);
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

        /* LUKS1: native with its own header (no shim for an image the
         * host never maps); LUKS2: libvirt's limit, by name. */
        gboolean capable = FALSE;
        g_assert_true(g_variant_lookup(info, "native-capable", "b", &capable));
        g_autofree char *obstacle = probe_string(info, "native-obstacle"),
                        *header = probe_string(info, "native-header");
        if (version == 1) {
                g_assert_true(capable);
                g_assert_cmpstr(header, ==, "volume");
                g_assert_cmpstr(obstacle, ==, "");
        } else {
                g_assert_false(capable);
                g_assert_cmpstr(header, ==, "");
                g_assert_nonnull(strstr(obstacle, "libvirt before 11.3"));
        }
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

/* `rbd watch` on image: a Ceph client with the image open, as a guest on
 * another host would be.  It stops cleanly (unwatching) when its input
 * ends: a killed client's watch would linger for the OSD's timeout. */
static GSubprocess *watch_start(const char *image) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GSubprocessLauncher) l =
                g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE);
        g_subprocess_launcher_setenv(l, "CEPH_CONF", CEPH_DIR "/ceph.conf", TRUE);
        GSubprocess *p = g_subprocess_launcher_spawn(l, &error, "rbd", "watch", image, NULL);
        g_assert_no_error(error);
        g_autoptr(GDataInputStream) out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
        g_autofree char *line = g_data_input_stream_read_line(out, NULL, NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(line);
        return p;
}

static void watch_stop(GSubprocess *p) {
        g_autoptr(GError) error = NULL;
        g_assert_true(g_output_stream_close(g_subprocess_get_stdin_pipe(p), NULL, &error));
        g_assert_true(g_subprocess_wait(p, NULL, &error));
        g_assert_no_error(error);
        g_object_unref(p);
}

/* A client watching the image (here `rbd watch`; a QEMU that has it open
 * or a kernel mapping are the same to Ceph) is counted. */
static void test_probe_watchers(void) {
        GSubprocess *w = watch_start("rbd/luks1");
        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/luks1", &error);

        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "rbd-watchers"), ==, 1);
        watch_stop(w);
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

/* The plaintext QEMU's own LUKS driver writes over librbd, as root,
 * before any attach: what the guest must then read. */
static void write_pattern(const char *image, guint8 pattern) {
        g_autofree char *secret = g_strdup_printf("secret,id=s0,data=%s", PASS);
        g_autofree char *opts = g_strdup_printf("driver=luks,key-secret=s0,file.driver=rbd,file.pool=rbd,file.image=%s,"
                                                "file.conf=" CEPH_DIR "/ceph.conf,file.user=admin",
                                                image);
        g_autofree char *cmd = g_strdup_printf("write -P 0x%02x 0 64k", pattern);
        const char *argv[] = { "qemu-io", "--object", secret, "--image-opts", opts, "-c", cmd, NULL };
        g_free(ceph_tool(argv));
}

/* Neither a kernel RBD device nor a device-mapper device on the host. */
static void assert_nothing_mapped(void) {
        g_assert_false(g_file_test("/dev/rbd0", G_FILE_TEST_EXISTS));
        g_autoptr(GDir) d = g_dir_open("/sys/block", 0, NULL);
        g_assert_nonnull(d);
        for (const char *n; (n = g_dir_read_name(d));) {
                g_assert_false(g_str_has_prefix(n, "rbd"));
                g_assert_false(g_str_has_prefix(n, "dm-"));
        }
}

static char *attach_scsi(const char *source, const char *pass, GVariant *extra, GError **error) {
        return lv_attach(bus, "lvtest-guest", source, pass,
                         extra ? extra : lv_opts("bus", g_variant_new_string("scsi"), NULL), error);
}

/* A crafted LUKS1 header on an RBD image: the daemon decides from the
 * header which key-slot areas to read through librbd, so the header's
 * numbers are the attacker's.  Seven extra slots marked active, each
 * claiming 2^32-1 stripes of the 64-byte key (256 GiB of key material)
 * and material at sector 2^32-1 (2 TiB, past the image's end) or at
 * sector 1 (inside the header).  The daemon copies only in-bounds areas up
 * to its cap, libcryptsetup refuses the header (NotLuks) for Probe and
 * Attach alike, no secret is defined, and the daemon stays up.  (The sum
 * wrap 493d107 fixed needs an image of about 2^61 bytes, which this test
 * does not make: it guards the bounds, not that fix.) */
static void test_crafted_header(void) {
        g_autofree char *file = lv_make_luks1_image("crafted.img", PASS, PATTERN, 4);
        g_autofree char *buf = NULL;
        gsize len = 0;
        g_assert_true(g_file_get_contents(file, &buf, &len, NULL));
        g_assert_cmpuint(len, >, 4096);
        for (guint i = 1; i < 8; i++) {
                guint8 *slot = (guint8 *) buf + 208 + 48 * i;
                const guint32 active = GUINT32_TO_BE(0x00AC71F3), iterations = GUINT32_TO_BE(1000);
                const guint32 offset = GUINT32_TO_BE(i % 2 ? 0xFFFFFFFFU : 1U), stripes = GUINT32_TO_BE(0xFFFFFFFFU);
                memcpy(slot, &active, 4);
                memcpy(slot + 4, &iterations, 4);
                memcpy(slot + 40, &offset, 4);
                memcpy(slot + 44, &stripes, 4);
        }
        g_assert_true(g_file_set_contents(file, buf, (gssize) len, NULL));
        const char *import[] = { "rbd", "import", file, "rbd/crafted", NULL };
        g_free(ceph_tool(import));
        guint secrets = lv_count_secrets();

        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/crafted", &error);
        g_assert_null(info);
        g_autofree char *probe_error = lv_error_name(error);
        g_test_message("Probe of the crafted header: %s: %s", probe_error, error->message);
        g_assert_cmpstr(probe_error, ==, NOT_LUKS);
        g_clear_error(&error);

        g_autofree char *path = attach_scsi("rbd:rbd/crafted", PASS, NULL, &error);
        g_assert_null(path);
        g_autofree char *attach_error = lv_error_name(error);
        g_test_message("Attach of the crafted header: %s: %s", attach_error, error->message);
        g_assert_cmpstr(attach_error, ==, NOT_LUKS);
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);

        /* Still the same daemon, answering. */
        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);
        g_assert_nonnull(host);
}

static void test_attach_luks1(void) {
        GError *error = NULL;
        guint secrets = lv_count_secrets();

        write_pattern("luks1", PATTERN);
        g_autofree char *path = attach_scsi("rbd:rbd/luks1", PASS, NULL, &error);
        g_assert_no_error(error);

        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_autofree char *src = lv_volume_prop_string(bus, path, "Source");
        g_autofree char *header = lv_volume_prop_string(bus, path, "NativeHeader");
        g_assert_cmpstr(mode, ==, "native");
        g_assert_cmpstr(src, ==, "rbd:rbd/luks1");
        g_assert_cmpstr(header, ==, "volume");
        g_assert_cmpuint(lv_count_secrets(), ==, secrets + 1);
        /* The guest's QEMU decrypts what librbd reads from the cluster. */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_false(lv_guest_reads_pattern(guest, PATTERN ^ 0xff, 65536));
        assert_nothing_mapped();

        /* Probe says it is attached, and Ceph sees QEMU as its client. */
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/luks1", &error);
        g_assert_no_error(error);
        const char *attached = NULL;
        g_assert_true(g_variant_lookup(info, "attached", "&o", &attached));
        g_assert_cmpstr(attached, ==, path);
        g_assert_cmpuint(probe_u(info, "rbd-watchers"), ==, 1);

        /* A second attach of the same image: this service's own. */
        g_autofree char *again = attach_scsi("rbd:rbd/luks1", PASS, NULL, &error);
        g_assert_null(again);
        lv_assert_error(error, LV_ERR("AlreadyAttached"));
        g_clear_error(&error);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
        g_autoptr(GVariant) after = lv_probe(bus, "rbd:rbd/luks1", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(after, "rbd-watchers"), ==, 0);
}

static void test_attach_wrong_passphrase(void) {
        GError *error = NULL;
        guint secrets = lv_count_secrets();
        g_autofree char *path = attach_scsi("rbd:rbd/luks1", "not the passphrase", NULL, &error);

        g_assert_null(path);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
}

/* Resize: QEMU's LUKS driver grows the image through librbd; the guest,
 * the volume object and Ceph all see the new size. */
static void test_resize(void) {
        GError *error = NULL;
        g_autofree char *path = attach_scsi("rbd:rbd/luks1", PASS, NULL, &error);
        g_assert_no_error(error);
        guint64 size = lv_volume_prop_u64(bus, path, "Size");
        g_autoptr(GVariant) before = lv_probe(bus, "rbd:rbd/luks1", &error);
        g_assert_no_error(error);
        guint64 payload = probe_u(before, "payload-offset");
        g_assert_cmpuint(size + payload, ==, 64ULL << 20);

        g_assert_true(lv_resize(bus, path, size + (1 << 20), NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_volume_prop_u64(bus, path, "Size"), ==, size + (1 << 20));
        g_autofree char *target = lv_volume_prop_string(bus, path, "Target");
        g_autofree char *alias = lv_domain_disk_alias(guest, target);
        g_assert_cmpint(lv_guest_disk_size(guest, alias), ==, (gint64) (size + (1 << 20)));
        const char *info[] = { "rbd", "info", "--format", "json", "rbd/luks1", NULL };
        g_autofree char *json = ceph_tool(info);
        g_autofree char *want = g_strdup_printf("\"size\":%" G_GUINT64_FORMAT ",", size + payload + (1 << 20));
        if (!strstr(json, want))
                g_error("rbd info: %s (wanted %s)", json, want);
        /* The guest's data is still there. */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
}

/* The daemon dies with an RBD volume attached: it comes back from the live
 * XML (protocol='rbd'), with its header facts, and detaches as before. */
static void test_kill_recovery(void) {
        GError *error = NULL;
        guint secrets = lv_count_secrets();
        g_autofree char *path = attach_scsi("rbd:rbd/luks1", PASS, NULL, &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) before = lv_volume_props(bus, path);

        lv_daemon_kill(bus, SIGKILL);

        g_autoptr(GVariant) after = lv_volume_props(bus, path);
        lv_assert_props_rebuilt(before, after);
        g_autofree char *src = lv_volume_prop_string(bus, path, "Source");
        g_assert_cmpstr(src, ==, "rbd:rbd/luks1");
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
}

/* A guest saved with an RBD volume, libvirtd restarted (the ephemeral
 * passphrase secret with it; the ceph secret is persistent): Rearm
 * defines it again from a passphrase checked against the header read
 * through librbd, and the restored guest reads its data. */
static void test_save_rearm(void) {
        virDomainPtr g = lv_start_guest("ceph-save");
        g_autofree char *state = lv_sandbox_path("ceph-save.state");
        GError *error = NULL;
        guint secrets = lv_count_secrets();

        g_autofree char *path = lv_attach(bus, "ceph-save", "rbd:rbd/luks1", PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(lv_volume_wait_state(bus, path, "saved", 5000));
        lv_restart_libvirtd();
        virDomainFree(guest);
        guest = virDomainLookupByName(lv_virt(), "lvtest-guest");
        g_assert_nonnull(guest);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);

        /* A wrong passphrase re-arms nothing. */
        g_assert_false(lv_volume_rearm(bus, path, "not the passphrase", &error));
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_true(lv_volume_rearm(bus, path, PASS, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets + 1);

        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "ceph-save");
        g_assert_nonnull(g);
        g_assert_true(lv_volume_wait_state(bus, path, "attached", 5000));
        g_assert_true(lv_guest_reads_pattern(g, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
        lv_destroy_guest(g);
        g_unlink(state);
}

static guint count_objects(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        return g_strv_length(objs);
}

/* The guest stops with an RBD volume attached: the object and the secret
 * go, and Ceph sees no client of the image any more. */
static void test_domain_stop(void) {
        virDomainPtr g = lv_start_guest("ceph-stop");
        GError *error = NULL;
        guint secrets = lv_count_secrets();
        g_autofree char *path = lv_attach(bus, "ceph-stop", "rbd:rbd/luks1", PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);

        lv_destroy_guest(g);
        gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
        while (g_get_monotonic_time() < deadline && (lv_count_secrets() > secrets || count_objects() > 0))
                g_usleep(20 * 1000);
        g_assert_cmpuint(count_objects(), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/luks1", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "rbd-watchers"), ==, 0);
}

static void assert_attach_refused(const char *source, GVariant *opts, const char *name, const char *text) {
        GError *error = NULL;
        guint secrets = lv_count_secrets();
        g_autofree char *path = attach_scsi(source, PASS, opts, &error);

        g_assert_null(path);
        g_assert_nonnull(error);
        g_autofree char *got = lv_error_name(error);
        if (g_strcmp0(got, name) != 0 || (text && !strstr(error->message, text)))
                g_error("Attach('%s'): %s: %s (wanted %s with %s)", source, got, error->message, name, text);
        g_clear_error(&error);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
}

/* What is refused, by name, before anything is made. */
static void test_attach_refusals(void) {
        /* LUKS2 on RBD only opens through librbd, which libvirt 9.0 cannot
         * hot-plug: never downgraded to anything else. */
        assert_attach_refused("rbd:rbd/luks2", NULL, NOT_SUPPORTED, "libvirt");
        assert_attach_refused(
                "rbd:rbd/luks1",
                lv_opts("bus", g_variant_new_string("scsi"), "mode", g_variant_new_string("cryptsetup"), NULL),
                NOT_SUPPORTED, "cleartext");
        assert_attach_refused("rbd:rbd/plain", NULL, NOT_LUKS, NULL);
        assert_attach_refused("rbd:rbd/missing", NULL, INVALID_ARGS, "does not exist");

        /* Another client has it open (a guest elsewhere, a kernel map). */
        GSubprocess *w = watch_start("rbd/luks1");
        assert_attach_refused("rbd:rbd/luks1", NULL, LV_ERR("InUse"), "other Ceph client");
        /* Named by where it is (the watcher's address, on loopback here). */
        assert_attach_refused("rbd:rbd/luks1", NULL, LV_ERR("InUse"), "the first at 127.0.0.1:");
        watch_stop(w);
}

/* polkit/examples/60-luksvolume-rbd-pool.rules, with this sandbox's group
 * and pool: its members attach and detach images of that pool without
 * authenticating, and nothing else. */
static void test_pool_rule(void) {
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(pool_rule, &text, NULL, NULL));
        g_auto(GStrv) a = g_strsplit(text, "\"rbdops\"", -1);
        g_autofree char *t1 = g_strjoinv("\"lvgroup\"", a);
        g_auto(GStrv) b = g_strsplit(t1, "\"rbd:vms/\"", -1);
        g_autofree char *rule = g_strjoinv("\"rbd:rbd/\"", b);
        g_assert_nonnull(strstr(rule, "rbd:rbd/"));
        lv_polkit_set_rules("60-luksvolume-rbd-pool.rules", rule);

        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        GError *error = NULL;
        g_autofree char *path = lv_attach(admin, "lvtest-guest", "rbd:rbd/luks1", PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(admin, path, NULL, &error));
        g_assert_no_error(error);

        /* lvuser is not in the group: admin authentication, which nobody
         * here can give. */
        g_autofree char *refused = lv_attach(user, "lvtest-guest", "rbd:rbd/luks1", PASS,
                                             lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_null(refused);
        lv_assert_error(error, INTERACTIVE_REQUIRED);
        g_clear_error(&error);
        lv_polkit_set_rules("60-luksvolume-rbd-pool.rules", NULL);
}

/* luksvolumectl passes an rbd: source as given (a path it would make
 * absolute against its working directory). */
static void test_cli(void) {
        const char *argv[] = { ctl, "probe", "rbd:rbd/luks1", NULL };
        g_autofree char *out = NULL, *err = NULL;

        g_assert_cmpint(lv_run_as(0, argv, 60, &out, &err), ==, 0);
        g_assert_nonnull(strstr(out, "rbd-watchers"));
        g_assert_nonnull(strstr(out, "luks-version"));
}

/* Which slot pass opens on source, -1 if none (BadPassphrase only). */
static gint opens(const char *source, const char *pass) {
        g_autoptr(GError) error = NULL;
        gint slot = lv_verify_passphrase(bus, source, pass, &error);
        if (slot < 0)
                lv_assert_error(error, LV_ERR("BadPassphrase"));
        return slot;
}

/* Key rotation on the RBD image's own header, written back through librbd
 * under the image's exclusive lock: the new passphrase attaches (and QEMU
 * reads the data), the old one opens nothing; while a guest has the image
 * open, no change (InUse). */
static void test_key_rotation(void) {
        GVariant *cheap = lv_opts("pbkdf-iterations", g_variant_new_uint32(1000), NULL);
        GError *error = NULL;

        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", "rbd:rbd/luks1", PASS, "rotated", FALSE, cheap, &error),
                        ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens("rbd:rbd/luks1", PASS), <, 0);
        g_assert_cmpint(opens("rbd:rbd/luks1", "rotated"), >=, 0);
        /* libcryptsetup's word on the header written back. */
        g_autofree char *file = g_build_filename(CEPH_DIR, "rotated.img", NULL);
        g_autofree char *cmd = g_strdup_printf("rbd export rbd/luks1 - 2>/dev/null | head -c 4194304 > %s", file);
        const char *sh[] = { "sh", "-c", cmd, NULL };
        g_free(ceph_tool(sh));
        const char *check[] = { "sh", "-c", "printf rotated | cryptsetup open --test-passphrase --key-file=- \"$0\"",
                                file, NULL };
        g_free(ceph_tool(check));

        g_autofree char *path = attach_scsi("rbd:rbd/luks1", "rotated", NULL, &error);
        g_assert_no_error(error);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        /* Attached: QEMU has it open, so its header is left alone. */
        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", "rbd:rbd/luks1", "rotated", PASS, FALSE, NULL, &error), <,
                        0);
        lv_assert_error(error, LV_ERR("InUse"));
        g_clear_error(&error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        /* Back to the passphrase the other tests use. */
        cheap = lv_opts("pbkdf-iterations", g_variant_new_uint32(1000), NULL);
        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", "rbd:rbd/luks1", "rotated", PASS, FALSE, cheap, &error),
                        ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens("rbd:rbd/luks1", PASS), >=, 0);
}

/* A namespaced image: its header is read (Probe), but it is not attached
 * yet, and Probe says so rather than calling it native-capable. */
static void test_namespace(void) {
        GError *error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "rbd:rbd/ns1/nsimg", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(probe_u(info, "luks-version"), ==, 1);
        gboolean capable = TRUE;
        g_assert_true(g_variant_lookup(info, "native-capable", "b", &capable));
        g_assert_false(capable);
        g_autofree char *obstacle = probe_string(info, "native-obstacle");
        g_assert_nonnull(strstr(obstacle, "namespace"));

        g_autofree char *path = attach_scsi("rbd:rbd/ns1/nsimg", PASS, NULL, &error);
        g_assert_null(path);
        lv_assert_error(error, NOT_SUPPORTED);
        g_clear_error(&error);
}

static gboolean stage_on(LvSecondHost *h, const char *domain_uuid, const char *source, GVariant *options,
                         GError **error) {
        GVariant *pass = g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1);
        g_autoptr(GVariant) reply =
                lv_call_manager(h->bus, "StageIncoming",
                                g_variant_new("(ss@ay@a{sv})", domain_uuid, source, pass, options), NULL, error);
        return reply != NULL;
}

static gboolean secret_on(virConnectPtr conn, const char *uuid) {
        virSecretPtr s = virSecretLookupByUUIDString(conn, uuid);
        if (s)
                virSecretFree(s);
        return s != NULL;
}

/* Polls until the volume object at path is (present) or is not on bus. */
static gboolean wait_object(GDBusConnection *on, const char *path, gboolean present) {
        for (guint i = 0; i < 400; i++) {
                g_autoptr(GVariant) p = lv_volume_props(on, path);
                if ((p != NULL) == present)
                        return TRUE;
                g_usleep(50 * 1000);
        }
        return FALSE;
}

static gboolean wait_secret_gone(virConnectPtr conn, const char *uuid) {
        for (guint i = 0; i < 400 && secret_on(conn, uuid); i++)
                g_usleep(50 * 1000);
        return !secret_on(conn, uuid);
}

/* A guest with a native RBD volume moves to another host of the same
 * cluster: staged there, migrated live, read there, released here. */
static void test_migrate(void) {
        LvSecondHost *hb = lv_second_host_start(second_host_sh, daemon_path, daemon_config);
        lv_ceph_define_secret_on(hb->virt);
        make_image("rbd/mig", 16, "luks1");
        write_pattern("mig", PATTERN + 1);

        virDomainPtr g = lv_start_guest("ceph-mig");
        char uuid[VIR_UUID_STRING_BUFLEN];
        GError *error = NULL;
        g_assert_cmpint(virDomainGetUUIDString(g, uuid), ==, 0);
        g_autofree char *path = lv_attach(bus, "ceph-mig", "rbd:rbd/mig", PASS,
                                          lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *secret = lv_volume_prop_string(bus, path, "SecretUUID");
        g_autofree char *target = lv_volume_prop_string(bus, path, "Target");

        /* The disk names the ceph secret by UUID: B must have the same. */
        g_assert_false(
                stage_on(hb, uuid, "rbd:rbd/mig",
                         lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target),
                                 "ceph-secret", g_variant_new_string("00000000-1111-2222-3333-444444444444"), NULL),
                         &error));
        lv_assert_error(error, NOT_SUPPORTED);
        g_assert_nonnull(strstr(error->message, "same UUID"));
        g_clear_error(&error);
        g_assert_false(secret_on(hb->virt, secret));

        /* Staged on B while A's QEMU has the image open, as it must. */
        g_assert_true(
                stage_on(hb, uuid, "rbd:rbd/mig",
                         lv_opts("secret-uuid", g_variant_new_string(secret), "target", g_variant_new_string(target),
                                 "ceph-secret", g_variant_new_string(LV_CEPH_SECRET_UUID), NULL),
                         &error));
        g_assert_no_error(error);
        g_assert_true(secret_on(hb->virt, secret));

        /* No VIR_MIGRATE_UNSAFE: libvirt itself takes RBD as shared. */
        g_autofree char *err = NULL;
        virDomainPtr gb = lv_migrate_to(hb, g, VIR_MIGRATE_LIVE, &err);
        g_assert_nonnull(gb);
        virDomainFree(g);
        g_autofree char *xml_b = virDomainGetXMLDesc(gb, 0);
        if (!strstr(xml_b, "protocol='rbd'")) {
                g_autofree char *blog = lv_second_host_daemon_log(hb);
                g_test_message("B's XML: %s\nB's log: %s", xml_b, blog);
        }
        g_assert_nonnull(strstr(xml_b, "protocol='rbd'"));
        g_assert_nonnull(strstr(xml_b, "<encryption format='luks'"));

        g_assert_true(wait_object(hb->bus, path, TRUE));
        g_autofree char *mode_b = lv_volume_prop_string(hb->bus, path, "Mode");
        g_autofree char *source_b = lv_volume_prop_string(hb->bus, path, "Source");
        g_assert_cmpstr(mode_b, ==, "native");
        g_assert_cmpstr(source_b, ==, "rbd:rbd/mig");
        g_assert_true(lv_second_host_reads_pattern(hb, gb, NULL, PATTERN + 1, 65536));
        assert_nothing_mapped();

        /* A let go of it. */
        g_assert_true(wait_object(bus, path, FALSE));
        g_assert_true(wait_secret_gone(lv_virt(), secret));

        /* Detached on B through B's service: no secret of ours left there. */
        g_assert_true(lv_detach(hb->bus, path, NULL, &error));
        g_assert_no_error(error);
        g_assert_true(wait_secret_gone(hb->virt, secret));
        g_assert_cmpint(virDomainDestroy(gb), ==, 0);
        virDomainFree(gb);
        lv_second_host_stop(hb);
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        if (argc < 7)
                g_error("usage: %s [--tap] CLUSTER_SH LUKSVOLUMECTL POOL_RULE SECOND_HOST_SH DAEMON DAEMON_ARG",
                        argv[0]);
        cluster_sh = argv[1];
        ctl = argv[2];
        pool_rule = argv[3];
        second_host_sh = argv[4];
        daemon_path = argv[5];
        daemon_config = argv[6];

        /* The cluster first: the daemon reads CephConfig= when the first
         * call activates it. */
        const char *start[] = { "bash", cluster_sh, "start", CEPH_DIR, NULL };
        g_autofree char *started = ceph_tool(start);
        g_test_message("%s", g_strstrip(started));
        make_image("rbd/luks1", 64, "luks1");
        make_image("rbd/luks2", 64, "luks2");
        make_image("rbd/plain", 8, NULL);
        const char *ns[] = { "rbd", "namespace", "create", "rbd/ns1", NULL };
        g_free(ceph_tool(ns));
        make_image("rbd/ns1/nsimg", 16, "luks1");

        lv_ceph_define_secret();
        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/ceph/probe-luks1", test_probe_luks1);
        g_test_add_func("/ceph/probe-luks2", test_probe_luks2);
        g_test_add_func("/ceph/probe-errors", test_probe_errors);
        g_test_add_func("/ceph/crafted-header", test_crafted_header);
        g_test_add_func("/ceph/probe-watchers", test_probe_watchers);
        g_test_add_func("/ceph/probe-unprivileged", test_probe_unprivileged);
        g_test_add_func("/ceph/attach-luks1", test_attach_luks1);
        g_test_add_func("/ceph/attach-wrong-passphrase", test_attach_wrong_passphrase);
        g_test_add_func("/ceph/resize", test_resize);
        g_test_add_func("/ceph/key-rotation", test_key_rotation);
        g_test_add_func("/ceph/kill-recovery", test_kill_recovery);
        g_test_add_func("/ceph/attach-refusals", test_attach_refusals);
        g_test_add_func("/ceph/pool-rule", test_pool_rule);
        g_test_add_func("/ceph/save-rearm", test_save_rearm);
        g_test_add_func("/ceph/domain-stop", test_domain_stop);
        g_test_add_func("/ceph/cli", test_cli);
        g_test_add_func("/ceph/namespace", test_namespace);
        g_test_add_func("/ceph/migrate", test_migrate);

        int r = g_test_run();
        lv_destroy_guest(guest);
        const char *stop[] = { "bash", cluster_sh, "stop", CEPH_DIR, NULL };
        g_free(ceph_tool(stop));
        return r;
}
