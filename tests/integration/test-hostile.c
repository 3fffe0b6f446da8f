/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hostile input is refused cleanly.
 *
 * Every case below sends the daemon one thing a well-behaved client would
 * not, and then the harness (run_case) checks three things, each of which
 * fails if the daemon gets it wrong:
 *   (a) the reply is exactly the expected D-Bus error name (and, where
 *       several checks could produce the same name, the message fragment
 *       that says WHICH check fired);
 *   (b) nothing is left behind: no volume object (GetManagedObjects empty),
 *       no libvirt secret, no extra <disk> and no ua-luksvol alias in the
 *       guest's live XML, no /dev/mapper/luksvol-* node, and no descriptor
 *       we passed still open in the daemon;
 *   (c) the daemon survived: the same PID still answers Probe(""), and its
 *       log since the case began holds no sanitizer report and never the
 *       passphrase.
 *
 * To make (a) meaningful, everything in a call except the one hostile
 * element is valid: the running guest, a LUKS1 image and its correct
 * passphrase, a free scsi target.  /hostile/control-valid-attach proves
 * that exact call succeeds, so an error in the other cases is caused by
 * the hostile element.  Where a path must be refused although it leads to
 * a real volume (relative, "." and "..", control characters) it does lead
 * to the good image: skipping the check would attach it.
 *
 * What each case proves:
 *   source-relative        "run/lvtest/good.img" resolves from the daemon's
 *                          cwd (/) to a real volume, yet is refused.
 *   source-dotdot/-dot     ".." and "." components are refused, not
 *                          normalised (polkit rules match the path).
 *   source-empty           an empty path is refused.
 *   source-dangling-symlink, source-symlink-loop, source-nonexistent
 *                          resolution failures are InvalidArgs, not Failed.
 *   source-directory, source-fifo, source-chardev
 *                          only regular files and block devices; the FIFO
 *                          (no writer) would hang a daemon that opened it.
 *   source-etc-shadow      a root-only non-LUKS file: NotLuks, and not one
 *                          byte of its content in the reply or the log.
 *   source-empty-file, source-truncated-luks1 (first 512 bytes)
 *                          short files are NotLuks too.
 *   header-bad-magic, header-bad-version, header-unknown-hash,
 *   header-bad-keyslot, header-zeroed
 *                          corrupted copies of a valid image (correct
 *                          passphrase) are NotLuks before anything is made.
 *   header-empty-cipher, header-payload-overlaps
 *                          headers libcryptsetup loads but QEMU refuses:
 *                          the secret made for the attempt is removed.
 *   source-xml-chars, source-utf8
 *                          ' " < > & and non-ASCII in a real image's name
 *                          reach QEMU intact (it opens that file and judges
 *                          the wrong passphrase: BadPassphrase).
 *   source-newline, source-escape
 *                          control characters are refused even though the
 *                          name is a symlink to the good image.
 *   source-resolves-to-invalid-utf8, probe-resolves-to-invalid-utf8
 *                          a valid name whose canonical path is not UTF-8
 *                          (which D-Bus cannot carry, as polkit detail,
 *                          error text or Source) is refused.
 *   source-64k, source-long-component
 *                          over-long paths are InvalidArgs.
 *   domain-xml-chars, domain-utf8, domain-unknown-uuid
 *                          odd names are looked up, not interpreted.
 *   domain-newline, domain-10k, domain-empty
 *                          refused before libvirt is asked.
 *   target-xml-chars, target-newline, target-utf8, target-too-long,
 *   target-wrong-bus       target names are validated, and must fit the bus.
 *   option-key-64k         unknown 64 KiB key: refused, and the echo is capped.
 *   option-key-utf8-cut    the cap falls inside a multi-byte character: the
 *                          refusal must still be a valid D-Bus reply.
 *   option-unknown, option-wrong-type, option-duplicate, option-bad-bus,
 *   option-bad-mode, option-variant-in-variant
 *                          the a{sv} contract.
 *   passphrase-8193        one byte over the cap is refused although it is
 *                          the image's real passphrase.
 *   passphrase-8192-wrong  exactly the cap is accepted (QEMU judges it).
 *   passphrase-empty       no passphrase at all.
 *   passphrase-ay-and-fd   both forms at once (both correct) are refused.
 *   passphrase-fd-socket, passphrase-fd-devnull, passphrase-fd-write-end
 *                          only the read end of a pipe, or a memfd.
 *   passphrase-fd-empty, passphrase-fd-8193
 *                          the fd form's own limits.
 *   passphrase-fd-silent-writer
 *                          a writer that never writes nor closes: InvalidArgs
 *                          after the daemon's 10 s, while Probe("") keeps
 *                          being answered promptly.
 *   passphrase-fd-bad-handle, passphrase-fd-no-fds
 *                          a handle index that points past the fd list (or
 *                          into none): a malformed message, answered with
 *                          InvalidArgs (the documented error, not sd-bus's
 *                          errno-derived InconsistentMessage), and the fd we
 *                          did send is not kept.
 *   attach-wrong-signature a body that does not match 'ssaya{sv}'.
 *   detach-wrong-prefix, detach-bad-id, detach-uppercase-id,
 *   detach-bad-target-id, detach-manager-path
 *                          malformed volume paths are InvalidArgs.
 *   detach-nonexistent     a well-formed path of nothing is NoSuchVolume.
 *   detach-option-unknown, detach-timeout-too-long, detach-timeout-wrong-type
 *                          sent against an attached volume, which must stay
 *                          attached (State, disk and secret untouched).
 *   detach-twice           the second detach of one volume is NoSuchVolume.
 *   probe-option, probe-relative, probe-fifo, probe-etc-shadow
 *                          Probe applies the same rules.
 * Plus two checks that are not errors: the 8192-byte passphrase that is the
 * image's real one attaches, and a path full of XML metacharacters round-
 * trips into the Source property and the guest's XML.
 *
 * /hostile-cap/ runs in a separate sandbox whose daemon has
 * --max-volumes=2 (see meson.build): the third attach is Busy and leaves
 * nothing, a volume still in flight counts against the cap, and a detach
 * frees a slot. */

#include <fcntl.h>
#include <glob.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS         "hostile input, correct passphrase"
#define WRONG        "hostile input, WRONG passphrase"
#define PATTERN      0x3c
#define GUEST        "lvtest-hostile"
#define INVALID_ARGS "org.freedesktop.DBus.Error.InvalidArgs"

static GDBusConnection *bus;
static virDomainPtr guest;
static char *guest_uuid;
static guint baseline_disks;

static char *good_img;  /* LUKS1, PASS, 16 MiB */
static char *small_img; /* LUKS1, PASS, 1 MiB: source of corrupted copies */
static char *img_8192, *pass_8192;
static char *img_8193, *pass_8193;

/* Inodes of descriptors a case passed to the daemon: none may stay open there. */
static GArray *sent_inodes;

/* ---- helpers ----------------------------------------------------------- */

/* $LV_SANDBOX_DIR/name for any name: the fixture's lv_sandbox_path()
 * refuses the odd ones these tests need. */
static char *scratch(const char *name) {
        return g_build_filename(lv_sandbox_dir(), name, NULL);
}

static guint count_substr(const char *hay, const char *needle) {
        guint n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static guint count_disks(void) {
        g_autofree char *xml = lv_domain_xml(guest);
        return count_substr(xml, "<disk ");
}

static guint mapper_leftovers(void) {
        glob_t g = { 0 };
        guint n = 0;

        if (glob("/dev/mapper/luksvol-*", 0, NULL, &g) == 0)
                n = g.gl_pathc;
        globfree(&g);
        return n;
}

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_cmpuint(count_substr(xml, "<disk "), ==, baseline_disks);
        g_assert_null(strstr(xml, "ua-luksvol"));
        g_assert_null(strstr(xml, "<encryption"));
        g_assert_cmpuint(mapper_leftovers(), ==, 0);
}

/* Probe("") answers and returns the PID of the daemon that answered. */
static guint32 live_daemon(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, "", &error);

        g_assert_no_error(error);
        g_assert_nonnull(info);
        guint32 pid = lv_daemon_pid(bus);
        g_assert_cmpuint(pid, !=, 0);
        return pid;
}

static ino_t fd_inode(int fd) {
        struct stat st;
        g_assert_no_errno(fstat(fd, &st));
        return st.st_ino;
}

static void remember_fd(int fd) {
        ino_t ino = fd_inode(fd);
        g_array_append_val(sent_inodes, ino);
}

/* Does the daemon hold an fd to a pipe or socket with this inode?  The
 * kernel names them "pipe:[INO]" / "socket:[INO]" in /proc/PID/fd. */
static gboolean daemon_holds_inode(guint32 pid, ino_t ino) {
        g_autofree char *dir = g_strdup_printf("/proc/%u/fd", pid);
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        g_autofree char *pipe_name = g_strdup_printf("pipe:[%lu]", (unsigned long) ino);
        g_autofree char *sock_name = g_strdup_printf("socket:[%lu]", (unsigned long) ino);
        const char *e;

        g_assert_nonnull(d);
        while ((e = g_dir_read_name(d))) {
                g_autofree char *link = g_build_filename(dir, e, NULL);
                g_autofree char *target = g_file_read_link(link, NULL);
                if (target && (g_str_equal(target, pipe_name) || g_str_equal(target, sock_name)))
                        return TRUE;
        }
        return FALSE;
}

/* The message (and with it the daemon's dup) is released right after the
 * reply is sent; allow that a moment. */
static void assert_fds_released(guint32 pid) {
        for (guint i = 0; i < sent_inodes->len; i++) {
                ino_t ino = g_array_index(sent_inodes, ino_t, i);
                gboolean held = TRUE;
                for (int k = 0; k < 100 && (held = daemon_holds_inode(pid, ino)); k++)
                        g_usleep(10 * 1000);
                if (held)
                        g_error("the daemon still holds our descriptor (inode %lu)", (unsigned long) ino);
        }
        g_array_set_size(sent_inodes, 0);
}

static char *expected_path(const char *target) {
        GString *s = g_string_new(LV_PATH "/volume/");
        for (const char *p = guest_uuid; *p; p++)
                if (*p != '-')
                        g_string_append_c(s, *p);
        g_string_append_printf(s, "_%s", target);
        return g_string_free(s, FALSE);
}

/* The options every hostile attach would otherwise succeed with. */
static GVariant *scsi_opts(const char *target) {
        return lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string(target), NULL);
}

static GError *attach_err(const char *domain, const char *source, const char *pass, GVariant *opts) {
        GError *error = NULL;
        g_autofree char *path = lv_attach(bus, domain, source, pass, opts ? opts : scsi_opts("sdb"), &error);
        if (path)
                g_test_message("unexpectedly attached as %s", path);
        return error;
}

static GError *probe_err(const char *source, GVariant *opts) {
        GError *error = NULL;
        g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe_opts(bus, source, opts, &error);
        return error;
}

static GError *detach_err(const char *path, GVariant *opts) {
        GError *error = NULL;
        lv_detach(bus, path, opts, &error);
        return error;
}

/* A pipe already holding data (and closed for writing unless keep_writer):
 * returns the read end; *writer gets the write end or -1. */
static int pipe_with(const void *data, gsize len, gboolean keep_writer, int *writer) {
        int p[2];

        g_assert_no_errno(pipe2(p, O_CLOEXEC));
        if (len > 0)
                g_assert_cmpint(write(p[1], data, len), ==, (gssize) len);
        if (keep_writer)
                *writer = p[1];
        else {
                close(p[1]);
                if (writer)
                        *writer = -1;
        }
        return p[0];
}

/* Attach with passphrase-fd = fd (and optionally an `ay` passphrase too);
 * the fd is passed, remembered for the leak check, and closed here. */
static GError *attach_fd_err(int fd, const char *also_ay, GVariant *extra_opts) {
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        GError *error = NULL;
        GVariantBuilder b;

        remember_fd(fd);
        gint idx = g_unix_fd_list_append(fds, fd, NULL);
        close(fd);
        g_assert_cmpint(idx, >=, 0);
        g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&b, "{sv}", "passphrase-fd", g_variant_new_handle(idx));
        g_variant_builder_add(&b, "{sv}", "target", g_variant_new_string("sdb"));
        if (extra_opts) {
                GVariantIter it;
                const char *k;
                GVariant *v;
                g_variant_ref_sink(extra_opts);
                g_variant_iter_init(&it, extra_opts);
                while (g_variant_iter_next(&it, "{&sv}", &k, &v)) {
                        g_variant_builder_add(&b, "{sv}", k, v);
                        g_variant_unref(v);
                }
                g_variant_unref(extra_opts);
        }
        const char *ay = also_ay ? also_ay : "";
        g_autofree char *path =
                lv_attach_bytes(bus, GUEST, good_img, ay, strlen(ay), g_variant_builder_end(&b), fds, &error);
        if (path)
                g_test_message("unexpectedly attached as %s", path);
        return error;
}

/* A copy of small_img with len bytes at offset replaced. */
static char *corrupt_copy(const char *name, goffset offset, const void *bytes, gsize len) {
        g_autofree char *data = NULL;
        gsize size = 0;
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_get_contents(small_img, &data, &size, &error));
        g_assert_cmpuint(offset + len, <=, size);
        memcpy(data + offset, bytes, len);
        char *path = scratch(name);
        g_assert_true(g_file_set_contents_full(path, data, size, G_FILE_SET_CONTENTS_NONE, 0644, &error));
        return path;
}

static char *sandbox_symlink(const char *name, const char *target) {
        char *path = scratch(name);
        unlink(path);
        g_assert_no_errno(symlink(target, path));
        return path;
}

static guint32 be32(guint32 v) {
        return GUINT32_TO_BE(v);
}

/* ---- the cases --------------------------------------------------------- */

static GError *c_source_relative(void) {
        /* The daemon runs in "/": this names the good image. */
        g_assert_true(good_img[0] == '/');
        return attach_err(GUEST, good_img + 1, PASS, NULL);
}

static GError *c_source_dotdot(void) {
        g_autofree char *sub = scratch("sub");
        g_mkdir_with_parents(sub, 0755);
        g_autofree char *base = g_path_get_basename(good_img);
        g_autofree char *p = g_strdup_printf("%s/../%s", sub, base);
        g_assert_true(g_file_test(p, G_FILE_TEST_IS_REGULAR));
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_dot(void) {
        g_autofree char *dir = g_path_get_dirname(good_img);
        g_autofree char *base = g_path_get_basename(good_img);
        g_autofree char *p = g_strdup_printf("%s/./%s", dir, base);
        g_assert_true(g_file_test(p, G_FILE_TEST_IS_REGULAR));
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_empty(void) {
        return attach_err(GUEST, "", PASS, NULL);
}

static GError *c_source_dangling_symlink(void) {
        g_autofree char *p = sandbox_symlink("dangling.img", "/run/lvtest/does-not-exist.img");
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_symlink_loop(void) {
        g_autofree char *a = scratch("loop-a.img");
        g_autofree char *b = sandbox_symlink("loop-b.img", a);
        g_autofree char *a2 = sandbox_symlink("loop-a.img", b);
        return attach_err(GUEST, a2, PASS, NULL);
}

static GError *c_source_directory(void) {
        return attach_err(GUEST, lv_sandbox_dir(), PASS, NULL);
}

static GError *c_source_fifo(void) {
        g_autofree char *p = scratch("fifo.img");
        unlink(p);
        g_assert_no_errno(mkfifo(p, 0644));
        /* Nobody ever writes: a daemon that opened it would hang here. */
        gint64 t0 = g_get_monotonic_time();
        GError *e = attach_err(GUEST, p, PASS, NULL);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 5 * G_USEC_PER_SEC);
        return e;
}

static GError *c_source_chardev(void) {
        return attach_err(GUEST, "/dev/zero", PASS, NULL);
}

static GError *c_source_nonexistent(void) {
        return attach_err(GUEST, "/run/lvtest/no-such-volume.img", PASS, NULL);
}

/* Every line of /etc/shadow longer than a few bytes: none may appear. */
static void assert_no_shadow_content(const char *text) {
        g_autofree char *shadow = NULL;
        g_assert_true(g_file_get_contents("/etc/shadow", &shadow, NULL, NULL));
        g_auto(GStrv) lines = g_strsplit(shadow, "\n", -1);
        guint checked = 0;
        for (char **l = lines; *l; l++) {
                if (strlen(*l) < 8)
                        continue;
                g_assert_null(strstr(text, *l));
                /* The password field of each entry, where there is one. */
                g_auto(GStrv) f = g_strsplit(*l, ":", 3);
                if (f[0] && f[1] && strlen(f[1]) >= 4)
                        g_assert_null(strstr(text, f[1]));
                checked++;
        }
        g_assert_cmpuint(checked, >, 0);
}

static GError *c_source_etc_shadow(void) {
        goffset mark = lv_daemon_log_mark();
        GError *e = attach_err(GUEST, "/etc/shadow", PASS, NULL);
        g_assert_nonnull(e);
        assert_no_shadow_content(e->message);
        g_autofree char *log = lv_daemon_log_since(mark);
        assert_no_shadow_content(log);
        return e;
}

static GError *c_source_empty_file(void) {
        g_autofree char *p = scratch("empty.img");
        g_assert_true(g_file_set_contents_full(p, "", 0, G_FILE_SET_CONTENTS_NONE, 0644, NULL));
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_truncated_luks1(void) {
        g_autofree char *data = NULL;
        g_assert_true(g_file_get_contents(small_img, &data, NULL, NULL));
        g_assert_true(memcmp(data, "LUKS\xba\xbe", 6) == 0);
        g_autofree char *p = scratch("truncated.img");
        g_assert_true(g_file_set_contents_full(p, data, 512, G_FILE_SET_CONTENTS_NONE, 0644, NULL));
        return attach_err(GUEST, p, PASS, NULL);
}

/* LUKS1 header (big-endian): magic[6] @0, version @6, cipher-name[32] @8,
 * cipher-mode[32] @40, hash-spec[32] @72, payload-offset @104,
 * key-bytes @108, …, key slot 0 @208: active, iterations, salt[32],
 * key-material-offset @248, stripes @252. */
static GError *c_header_bad_magic(void) {
        g_autofree char *p = corrupt_copy("bad-magic.img", 0, "LUKX", 4);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_bad_version(void) {
        g_autofree char *p = corrupt_copy("bad-version.img", 6, "\x00\x09", 2);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_unknown_hash(void) {
        g_autofree char *p = corrupt_copy("bad-hash.img", 72, "nohash\0", 7);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_bad_keyslot(void) {
        guint32 off = be32(0xfffffff0);
        g_autofree char *p = corrupt_copy("bad-keyslot.img", 248, &off, 4);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_zeroed(void) {
        static const char zeros[592];
        g_autofree char *p = corrupt_copy("zeroed.img", 0, zeros, sizeof zeros);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_empty_cipher(void) {
        static const char zeros[32];
        g_autofree char *p = corrupt_copy("no-cipher.img", 8, zeros, sizeof zeros);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_header_payload_overlaps(void) {
        guint32 zero = 0;
        g_autofree char *p = corrupt_copy("payload0.img", 104, &zero, 4);
        return attach_err(GUEST, p, PASS, NULL);
}

static char *xml_chars_img, *utf8_img;

/* The fixture refuses odd scratch names (its tools take them on command
 * lines); make the image under a plain name and give it the odd one after. */
static char *image_renamed(const char *plain, const char *odd) {
        g_autofree char *tmp = lv_make_luks1_image(plain, PASS, PATTERN, 4);
        char *path = scratch(odd);
        g_assert_no_errno(rename(tmp, path));
        return path;
}

static GError *c_source_xml_chars(void) {
        return attach_err(GUEST, xml_chars_img, WRONG, NULL);
}

static GError *c_source_utf8(void) {
        return attach_err(GUEST, utf8_img, WRONG, NULL);
}

static GError *c_source_newline(void) {
        g_autofree char *p = sandbox_symlink("new\nline.img", good_img);
        g_assert_true(g_file_test(p, G_FILE_TEST_IS_REGULAR));
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_escape(void) {
        g_autofree char *p = sandbox_symlink("esc\x1b[31mape.img", good_img);
        g_assert_true(g_file_test(p, G_FILE_TEST_IS_REGULAR));
        return attach_err(GUEST, p, PASS, NULL);
}

/* A name that is valid UTF-8 (D-Bus accepts it) but resolves to one that is
 * not: the canonical path is what the daemon shows to polkit, puts in its
 * error texts and would publish as Source, and D-Bus strings must be UTF-8. */
static char *latin1_img, *latin1_link;

static GError *call_within(const char *method, GVariant *params, guint timeout_ms) {
        GError *error = NULL;
        g_autoptr(GVariant) reply G_GNUC_UNUSED =
                g_dbus_connection_call_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, method, params, NULL,
                                            G_DBUS_CALL_FLAGS_NONE, (int) timeout_ms, NULL, &error);
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
                g_clear_error(&error);
                return g_dbus_error_new_for_dbus_error("org.freedesktop.DBus.Error.NoReply", "no reply in time");
        }
        return error;
}

static GError *c_source_resolves_to_invalid_utf8(void) {
        g_assert_true(g_file_test(latin1_link, G_FILE_TEST_IS_REGULAR));
        return call_within("Attach",
                           g_variant_new("(ss@ay@a{sv})", GUEST, latin1_link,
                                         g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                         scsi_opts("sdb")),
                           30000);
}

static GError *c_probe_resolves_to_invalid_utf8(void) {
        return call_within("Probe", g_variant_new("(s@a{sv})", latin1_link, lv_opts(NULL)), 30000);
}

static GError *c_source_64k(void) {
        char p[64 * 1024 + 1];
        p[0] = '/';
        memset(p + 1, 'a', sizeof(p) - 2);
        p[sizeof(p) - 1] = '\0';
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_source_long_component(void) {
        /* Shorter than PATH_MAX, but one component past NAME_MAX. */
        g_autofree char *comp = g_strnfill(300, 'c');
        g_autofree char *p = g_strdup_printf("%s/%s.img", lv_sandbox_dir(), comp);
        return attach_err(GUEST, p, PASS, NULL);
}

static GError *c_domain_xml_chars(void) {
        return attach_err("lv'\"<>&guest", good_img, PASS, NULL);
}

static GError *c_domain_utf8(void) {
        return attach_err("lvtest-hostïle-☃-гость", good_img, PASS, NULL);
}

static GError *c_domain_unknown_uuid(void) {
        return attach_err("00000000-1111-2222-3333-444444444444", good_img, PASS, NULL);
}

static GError *c_domain_newline(void) {
        return attach_err(GUEST "\n", good_img, PASS, NULL);
}

static GError *c_domain_10k(void) {
        g_autofree char *d = g_strnfill(10 * 1024, 'd');
        return attach_err(d, good_img, PASS, NULL);
}

static GError *c_domain_empty(void) {
        return attach_err("", good_img, PASS, NULL);
}

static GError *c_target_xml_chars(void) {
        return attach_err(GUEST, good_img, PASS, scsi_opts("sd'\"<>&"));
}

static GError *c_target_newline(void) {
        return attach_err(GUEST, good_img, PASS, scsi_opts("sdb\n"));
}

static GError *c_target_utf8(void) {
        return attach_err(GUEST, good_img, PASS, scsi_opts("sdé"));
}

static GError *c_target_too_long(void) {
        return attach_err(GUEST, good_img, PASS, scsi_opts("sdbbbb"));
}

static GError *c_target_wrong_bus(void) {
        return attach_err(GUEST, good_img, PASS, scsi_opts("vdb"));
}

static GError *c_option_key_64k(void) {
        g_autofree char *key = g_strnfill(64 * 1024, 'k');
        GError *e = attach_err(GUEST, good_img, PASS,
                               lv_opts("target", g_variant_new_string("sdb"), key, g_variant_new_string("x"), NULL));
        /* The key is echoed, but capped: no 64 KiB error message. */
        g_assert_nonnull(e);
        g_assert_cmpuint(strlen(e->message), <, 512);
        return e;
}

/* The echo is capped at 64 bytes: here byte 64 is the first half of "é",
 * so a cap that cuts bytes, not characters, makes the error text invalid
 * UTF-8, which D-Bus cannot carry. */
static GError *c_option_key_utf8_cut(void) {
        g_autofree char *k63 = g_strnfill(63, 'k');
        g_autofree char *key = g_strconcat(k63, "é-tail", NULL);
        GError *error = NULL;

        g_assert_true(g_utf8_validate(key, -1, NULL));
        /* A refusal takes milliseconds; 10 s without a reply is no reply. */
        GVariant *params = g_variant_new(
                "(ss@ay@a{sv})", GUEST, good_img, g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                lv_opts("target", g_variant_new_string("sdb"), key, g_variant_new_string("x"), NULL));
        g_autoptr(GVariant) reply G_GNUC_UNUSED =
                g_dbus_connection_call_sync(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params, NULL,
                                            G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
                g_clear_error(&error);
                return g_dbus_error_new_for_dbus_error("org.freedesktop.DBus.Error.NoReply", "no reply within 10 s");
        }
        return error;
}

static GError *c_option_unknown(void) {
        return attach_err(GUEST, good_img, PASS,
                          lv_opts("target", g_variant_new_string("sdb"), "colour", g_variant_new_string("red"), NULL));
}

static GError *c_option_wrong_type(void) {
        return attach_err(
                GUEST, good_img, PASS,
                lv_opts("target", g_variant_new_string("sdb"), "read-only", g_variant_new_string("yes"), NULL));
}

static GError *c_option_duplicate(void) {
        /* GVariant's builder keeps both entries: the wire carries two. */
        return attach_err(GUEST, good_img, PASS,
                          lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdb"), "bus",
                                  g_variant_new_string("scsi"), NULL));
}

static GError *c_option_bad_bus(void) {
        return attach_err(GUEST, good_img, PASS, lv_opts("bus", g_variant_new_string("ide"), NULL));
}

static GError *c_option_bad_mode(void) {
        return attach_err(GUEST, good_img, PASS,
                          lv_opts("target", g_variant_new_string("sdb"), "mode", g_variant_new_string("fast"), NULL));
}

static GError *c_option_variant_in_variant(void) {
        return attach_err(GUEST, good_img, PASS,
                          lv_opts("target", g_variant_new_variant(g_variant_new_string("sdb")), NULL));
}

static GError *c_passphrase_8193(void) {
        /* It is the image's real passphrase: only the cap stands in the way. */
        GError *error = NULL;
        g_autofree char *path G_GNUC_UNUSED =
                lv_attach_bytes(bus, GUEST, img_8193, pass_8193, 8193, scsi_opts("sdb"), NULL, &error);
        return error;
}

static GError *c_passphrase_8192_wrong(void) {
        g_autofree char *wrong = g_strdup(pass_8192);
        wrong[8191] ^= 0x01;
        GError *error = NULL;
        g_autofree char *path G_GNUC_UNUSED =
                lv_attach_bytes(bus, GUEST, img_8192, wrong, 8192, scsi_opts("sdb"), NULL, &error);
        return error;
}

static GError *c_passphrase_empty(void) {
        return attach_err(GUEST, good_img, "", NULL);
}

static GError *c_passphrase_ay_and_fd(void) {
        int fd = pipe_with(PASS, strlen(PASS), FALSE, NULL);
        return attach_fd_err(fd, PASS, NULL);
}

static GError *c_passphrase_fd_socket(void) {
        int sv[2];
        g_assert_no_errno(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        g_assert_cmpint(write(sv[1], PASS, strlen(PASS)), ==, (gssize) strlen(PASS));
        close(sv[1]);
        return attach_fd_err(sv[0], NULL, NULL);
}

static GError *c_passphrase_fd_devnull(void) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        return attach_fd_err(fd, NULL, NULL);
}

static GError *c_passphrase_fd_write_end(void) {
        int p[2];
        g_assert_no_errno(pipe2(p, O_CLOEXEC));
        close(p[0]);
        return attach_fd_err(p[1], NULL, NULL);
}

static GError *c_passphrase_fd_empty(void) {
        return attach_fd_err(pipe_with(NULL, 0, FALSE, NULL), NULL, NULL);
}

static GError *c_passphrase_fd_8193(void) {
        /* The real passphrase of img_8193 again, through the fd this time. */
        int fd = pipe_with(pass_8193, 8193, FALSE, NULL);
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        GError *error = NULL;

        remember_fd(fd);
        gint idx = g_unix_fd_list_append(fds, fd, NULL);
        close(fd);
        g_autofree char *path G_GNUC_UNUSED = lv_attach_bytes(
                bus, GUEST, img_8193, "", 0,
                lv_opts("passphrase-fd", g_variant_new_handle(idx), "target", g_variant_new_string("sdb"), NULL), fds,
                &error);
        return error;
}

typedef struct AsyncReply {
        GVariant *reply;
        GError *error;
        gboolean done;
} AsyncReply;

static void on_async_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        AsyncReply *a = userdata;
        a->reply = g_dbus_connection_call_with_unix_fd_list_finish(G_DBUS_CONNECTION(source), NULL, res, &a->error);
        a->done = TRUE;
}

static GError *c_passphrase_fd_silent_writer(void) {
        int writer = -1;
        int fd = pipe_with(NULL, 0, TRUE, &writer);
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        AsyncReply a = { 0 };

        remember_fd(fd);
        gint idx = g_unix_fd_list_append(fds, fd, NULL);
        close(fd);
        GVariant *params = g_variant_new(
                "(ss@ay@a{sv})", GUEST, good_img, g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, "", 0, 1),
                lv_opts("passphrase-fd", g_variant_new_handle(idx), "target", g_variant_new_string("sdb"), NULL));
        gint64 t0 = g_get_monotonic_time();
        g_dbus_connection_call_with_unix_fd_list(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params,
                                                 G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 60000, fds, NULL,
                                                 on_async_reply, &a);

        /* While the daemon waits for the writer, it keeps answering. */
        guint probes = 0;
        gint64 worst = 0;
        while (!a.done) {
                gint64 p0 = g_get_monotonic_time();
                g_autoptr(GError) error = NULL;
                g_autoptr(GVariant) info G_GNUC_UNUSED = lv_probe(bus, "", &error);
                g_assert_no_error(error);
                gint64 took = g_get_monotonic_time() - p0;
                worst = MAX(worst, took);
                probes++;
                for (int i = 0; i < 25 && !a.done; i++) {
                        g_main_context_iteration(NULL, FALSE);
                        g_usleep(20 * 1000);
                }
        }
        gint64 elapsed = g_get_monotonic_time() - t0;
        g_test_message("passphrase-fd with a silent writer: refused after %.1f s; %u Probe('') calls meanwhile, "
                       "slowest %.1f ms",
                       elapsed / 1e6, probes, worst / 1000.0);
        /* The daemon's limit is 10 s: not much sooner, not much later. */
        g_assert_cmpint(elapsed, >=, 9 * G_USEC_PER_SEC);
        g_assert_cmpint(elapsed, <, 30 * G_USEC_PER_SEC);
        g_assert_cmpuint(probes, >=, 10);
        g_assert_cmpint(worst, <, 2 * G_USEC_PER_SEC);
        g_assert_null(a.reply);
        close(writer);
        return a.error;
}

/* Handle index 1 while the fd list holds one descriptor (index 0). */
static GError *c_passphrase_fd_bad_handle(void) {
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        int fd = pipe_with(PASS, strlen(PASS), FALSE, NULL);
        GError *error = NULL;

        remember_fd(fd);
        g_assert_cmpint(g_unix_fd_list_append(fds, fd, NULL), ==, 0);
        close(fd);
        g_autofree char *path G_GNUC_UNUSED = lv_attach_bytes(
                bus, GUEST, good_img, "", 0,
                lv_opts("passphrase-fd", g_variant_new_handle(1), "target", g_variant_new_string("sdb"), NULL), fds,
                &error);
        return error;
}

static GError *c_passphrase_fd_no_fds(void) {
        GError *error = NULL;
        g_autofree char *path G_GNUC_UNUSED = lv_attach_bytes(
                bus, GUEST, good_img, "", 0,
                lv_opts("passphrase-fd", g_variant_new_handle(0), "target", g_variant_new_string("sdb"), NULL), NULL,
                &error);
        return error;
}

static GError *c_attach_wrong_signature(void) {
        GError *error = NULL;
        g_autoptr(GVariant) r G_GNUC_UNUSED =
                lv_call_manager(bus, "Attach",
                                g_variant_new("(ss@ay)", GUEST, good_img,
                                              g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1)),
                                NULL, &error);
        return error;
}

static char *well_formed_id(void) {
        g_autofree char *p = expected_path("sdb");
        return g_strdup(strrchr(p, '/') + 1);
}

static GError *c_detach_wrong_prefix(void) {
        g_autofree char *id = well_formed_id();
        g_autofree char *p = g_strdup_printf("/org/example/Other/volume/%s", id);
        return detach_err(p, NULL);
}

static GError *c_detach_bad_id(void) {
        return detach_err(LV_PATH "/volume/nonsense", NULL);
}

static GError *c_detach_uppercase_id(void) {
        g_autofree char *id = well_formed_id();
        g_autofree char *up = g_ascii_strup(id, -1);
        /* Keep the target lowercase: only the hex digits differ. */
        memcpy(up + 33, id + 33, strlen(id + 33));
        g_assert_cmpstr(up, !=, id);
        g_autofree char *p = g_strdup_printf(LV_PATH "/volume/%s", up);
        return detach_err(p, NULL);
}

static GError *c_detach_bad_target_id(void) {
        g_autofree char *id = well_formed_id();
        id[33] = 'x';
        g_autofree char *p = g_strdup_printf(LV_PATH "/volume/%s", id);
        return detach_err(p, NULL);
}

static GError *c_detach_manager_path(void) {
        return detach_err(LV_PATH, NULL);
}

static GError *c_detach_nonexistent(void) {
        g_autofree char *p = expected_path("sdz");
        return detach_err(p, NULL);
}

/* Attach the good image on sdb; the caller detaches. */
static char *attach_good(void) {
        g_autoptr(GError) error = NULL;
        char *path = lv_attach(bus, GUEST, good_img, PASS, scsi_opts("sdb"), &error);
        g_assert_no_error(error);
        return path;
}

/* A refused detach changed nothing: attached, disk and secret in place. */
static void assert_still_attached(const char *path) {
        g_autofree char *state = lv_volume_prop_string(bus, path, "State");
        g_assert_cmpstr(state, ==, "attached");
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        g_assert_true(lv_domain_has_disk(guest, "sdb"));
}

static GError *detach_hostile_options(GVariant *opts) {
        g_autofree char *path = attach_good();
        GError *e = detach_err(path, opts);
        assert_still_attached(path);
        g_autoptr(GError) error = NULL;
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        return e;
}

static GError *c_detach_option_unknown(void) {
        return detach_hostile_options(lv_opts("force", g_variant_new_boolean(TRUE), NULL));
}

static GError *c_detach_timeout_too_long(void) {
        return detach_hostile_options(lv_opts("timeout", g_variant_new_uint32(3601), NULL));
}

static GError *c_detach_timeout_wrong_type(void) {
        return detach_hostile_options(lv_opts("timeout", g_variant_new_int32(5), NULL));
}

static GError *c_detach_twice(void) {
        g_autofree char *path = attach_good();
        g_autoptr(GError) error = NULL;
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        return detach_err(path, NULL);
}

static GError *c_probe_option(void) {
        return probe_err("", lv_opts("verbose", g_variant_new_boolean(TRUE), NULL));
}

static GError *c_probe_relative(void) {
        return probe_err(good_img + 1, NULL);
}

static GError *c_probe_fifo(void) {
        g_autofree char *p = scratch("probe-fifo.img");
        unlink(p);
        g_assert_no_errno(mkfifo(p, 0644));
        return probe_err(p, NULL);
}

static GError *c_probe_etc_shadow(void) {
        goffset mark = lv_daemon_log_mark();
        GError *e = probe_err("/etc/shadow", NULL);
        g_assert_nonnull(e);
        assert_no_shadow_content(e->message);
        g_autofree char *log = lv_daemon_log_since(mark);
        assert_no_shadow_content(log);
        return e;
}

/* ---- the table and its harness ------------------------------------------ */

typedef struct HostileCase {
        const char *name;
        GError *(*run)(void);
        const char *expect; /* D-Bus error name */
        const char *says;   /* a fragment the message must hold (which check fired), or NULL */
        /* A known daemon bug: if the reply is exactly this error name, the
         * case is reported as incomplete (TODO) with bug_text, after the
         * cleanliness and liveness checks still passed. */
        const char *bug_name, *bug_text;
} HostileCase;

static const HostileCase cases[] = {
        { "source-relative", c_source_relative, INVALID_ARGS, "absolute" },
        { "source-dotdot", c_source_dotdot, INVALID_ARGS, "'..'" },
        { "source-dot", c_source_dot, INVALID_ARGS, "'..'" },
        { "source-empty", c_source_empty, INVALID_ARGS, "empty" },
        { "source-dangling-symlink", c_source_dangling_symlink, INVALID_ARGS, "does not exist" },
        { "source-symlink-loop", c_source_symlink_loop, INVALID_ARGS, "loop" },
        { "source-directory", c_source_directory, INVALID_ARGS, "neither a regular file nor a block device" },
        { "source-fifo", c_source_fifo, INVALID_ARGS, "neither a regular file nor a block device" },
        { "source-chardev", c_source_chardev, INVALID_ARGS, "neither a regular file nor a block device" },
        { "source-nonexistent", c_source_nonexistent, INVALID_ARGS, "does not exist" },
        { "source-etc-shadow", c_source_etc_shadow, LV_ERR("NotLuks") },
        { "source-empty-file", c_source_empty_file, LV_ERR("NotLuks") },
        { "source-truncated-luks1", c_source_truncated_luks1, LV_ERR("NotLuks") },
        { "header-bad-magic", c_header_bad_magic, LV_ERR("NotLuks") },
        { "header-bad-version", c_header_bad_version, LV_ERR("NotLuks") },
        { "header-unknown-hash", c_header_unknown_hash, LV_ERR("NotLuks") },
        { "header-bad-keyslot", c_header_bad_keyslot, LV_ERR("NotLuks") },
        { "header-zeroed", c_header_zeroed, LV_ERR("NotLuks") },
        { "header-empty-cipher", c_header_empty_cipher, LV_ERR("NotSupported"), "cipher ''" },
        { "header-payload-overlaps", c_header_payload_overlaps, LV_ERR("Failed") },
        { "source-xml-chars", c_source_xml_chars, LV_ERR("BadPassphrase") },
        { "source-utf8", c_source_utf8, LV_ERR("BadPassphrase") },
        { "source-newline", c_source_newline, INVALID_ARGS, "control characters" },
        { "source-escape", c_source_escape, INVALID_ARGS, "control characters" },
        { "source-resolves-to-invalid-utf8", c_source_resolves_to_invalid_utf8, INVALID_ARGS, "not valid UTF-8" },
        { "source-64k", c_source_64k, INVALID_ARGS, "too long" },
        { "source-long-component", c_source_long_component, INVALID_ARGS, "too long" },
        { "domain-xml-chars", c_domain_xml_chars, LV_ERR("NoSuchDomain") },
        { "domain-utf8", c_domain_utf8, LV_ERR("NoSuchDomain") },
        { "domain-unknown-uuid", c_domain_unknown_uuid, LV_ERR("NoSuchDomain") },
        { "domain-newline", c_domain_newline, INVALID_ARGS, "control characters" },
        { "domain-10k", c_domain_10k, INVALID_ARGS, "too long" },
        { "domain-empty", c_domain_empty, INVALID_ARGS, "empty" },
        { "target-xml-chars", c_target_xml_chars, INVALID_ARGS, "'target'" },
        { "target-newline", c_target_newline, INVALID_ARGS, "'target'" },
        { "target-utf8", c_target_utf8, INVALID_ARGS, "'target'" },
        { "target-too-long", c_target_too_long, INVALID_ARGS, "'target'" },
        { "target-wrong-bus", c_target_wrong_bus, INVALID_ARGS, "does not fit bus" },
        { "option-key-64k", c_option_key_64k, INVALID_ARGS, "Unknown option" },
        { "option-key-utf8-cut", c_option_key_utf8_cut, INVALID_ARGS, "Unknown option" },
        { "option-unknown", c_option_unknown, INVALID_ARGS, "Unknown option 'colour'" },
        { "option-wrong-type", c_option_wrong_type, INVALID_ARGS, "type" },
        { "option-duplicate", c_option_duplicate, INVALID_ARGS, "more than once" },
        { "option-bad-bus", c_option_bad_bus, INVALID_ARGS, "'bus'" },
        { "option-bad-mode", c_option_bad_mode, INVALID_ARGS, "'mode'" },
        { "option-variant-in-variant", c_option_variant_in_variant, INVALID_ARGS, "type" },
        { "passphrase-8193", c_passphrase_8193, INVALID_ARGS, "longer than 8192" },
        { "passphrase-8192-wrong", c_passphrase_8192_wrong, LV_ERR("BadPassphrase") },
        { "passphrase-empty", c_passphrase_empty, INVALID_ARGS, "No passphrase" },
        { "passphrase-ay-and-fd", c_passphrase_ay_and_fd, INVALID_ARGS, "must be empty" },
        { "passphrase-fd-socket", c_passphrase_fd_socket, INVALID_ARGS, "pipe or a memfd" },
        { "passphrase-fd-devnull", c_passphrase_fd_devnull, INVALID_ARGS, "pipe or a memfd" },
        { "passphrase-fd-write-end", c_passphrase_fd_write_end, INVALID_ARGS, "pipe or a memfd" },
        { "passphrase-fd-empty", c_passphrase_fd_empty, INVALID_ARGS, "empty" },
        { "passphrase-fd-8193", c_passphrase_fd_8193, INVALID_ARGS, "longer than 8192" },
        { "passphrase-fd-silent-writer", c_passphrase_fd_silent_writer, INVALID_ARGS, "within 10 s" },
        /* A handle past the message's fd list is a malformed message: sd-bus
         * itself refuses to read it (-EBADMSG), and the daemon answers with
         * its documented InvalidArgs, not an errno-named error. */
        { "passphrase-fd-bad-handle", c_passphrase_fd_bad_handle, INVALID_ARGS, "Malformed" },
        { "passphrase-fd-no-fds", c_passphrase_fd_no_fds, INVALID_ARGS, "Malformed" },
        { "attach-wrong-signature", c_attach_wrong_signature, INVALID_ARGS },
        { "detach-wrong-prefix", c_detach_wrong_prefix, INVALID_ARGS, "not a volume object path" },
        { "detach-bad-id", c_detach_bad_id, INVALID_ARGS, "not a volume object path" },
        { "detach-uppercase-id", c_detach_uppercase_id, INVALID_ARGS, "not a volume object path" },
        { "detach-bad-target-id", c_detach_bad_target_id, INVALID_ARGS, "not a volume object path" },
        { "detach-manager-path", c_detach_manager_path, INVALID_ARGS, "not a volume object path" },
        { "detach-nonexistent", c_detach_nonexistent, LV_ERR("NoSuchVolume") },
        { "detach-option-unknown", c_detach_option_unknown, INVALID_ARGS, "Unknown option 'force'" },
        { "detach-timeout-too-long", c_detach_timeout_too_long, INVALID_ARGS, "at most" },
        { "detach-timeout-wrong-type", c_detach_timeout_wrong_type, INVALID_ARGS, "type" },
        { "detach-twice", c_detach_twice, LV_ERR("NoSuchVolume") },
        { "probe-option", c_probe_option, INVALID_ARGS, "Unknown option 'verbose'" },
        { "probe-relative", c_probe_relative, INVALID_ARGS, "absolute" },
        { "probe-resolves-to-invalid-utf8", c_probe_resolves_to_invalid_utf8, INVALID_ARGS, "not valid UTF-8" },
        { "probe-fifo", c_probe_fifo, INVALID_ARGS, "neither a regular file nor a block device" },
        { "probe-etc-shadow", c_probe_etc_shadow, LV_ERR("NotLuks") },
};

/* What the daemon wrote while a case ran: no sanitizer report, no passphrase. */
static void assert_log_sane(goffset mark) {
        g_autofree char *log = lv_daemon_log_since(mark);
        g_assert_null(strstr(log, "runtime error:"));
        g_assert_null(strstr(log, "AddressSanitizer"));
        g_assert_null(strstr(log, "LeakSanitizer"));
        g_assert_null(strstr(log, PASS));
        g_assert_null(strstr(log, WRONG));
        g_autofree char *head_8192 = g_strndup(pass_8192, 32);
        g_autofree char *head_8193 = g_strndup(pass_8193, 32);
        g_assert_null(strstr(log, head_8192));
        g_assert_null(strstr(log, head_8193));
}

static void assert_same_daemon(guint32 pid) {
        g_assert_cmpint(kill((pid_t) pid, 0), ==, 0);
        g_assert_cmpuint(live_daemon(), ==, pid);
}

static void run_case(gconstpointer data) {
        const HostileCase *c = data;
        guint32 pid = live_daemon();
        goffset mark = lv_daemon_log_mark();

        assert_clean();
        g_array_set_size(sent_inodes, 0);

        g_autoptr(GError) error = c->run();
        g_autofree char *name = lv_error_name(error);
        g_test_message("%s -> %s: %s", c->name, name ? name : "(success)", error ? error->message : "");

        /* (b) and (c) first: they hold whatever the verdict. */
        assert_clean();
        assert_fds_released(pid);
        assert_same_daemon(pid);
        assert_log_sane(mark);

        /* (a) */
        g_assert_nonnull(error);
        g_assert_null(strstr(error->message, PASS));
        if (c->bug_name && g_strcmp0(name, c->bug_name) == 0) {
                g_test_incomplete(c->bug_text);
                return;
        }
        lv_assert_error(error, c->expect);
        if (c->says && !strstr(error->message, c->says))
                g_error("%s: the message '%s' does not say '%s' (a different check fired?)", c->name, error->message,
                        c->says);
}

/* ---- the non-error checks ----------------------------------------------- */

/* The exact call the hostile cases vary succeeds. */
static void test_control_valid_attach(void) {
        guint32 pid = live_daemon();
        g_autoptr(GError) error = NULL;

        assert_clean();
        g_autofree char *path = lv_attach(bus, GUEST, good_img, PASS, scsi_opts("sdb"), &error);
        g_assert_no_error(error);
        g_autofree char *want = expected_path("sdb");
        g_assert_cmpstr(path, ==, want);
        g_assert_true(lv_domain_has_disk(guest, "sdb"));
        g_assert_cmpuint(lv_count_secrets(), ==, 1);
        /* The harness's own check sees the volume (it is not blind). */
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 1);
        g_assert_cmpuint(count_disks(), ==, baseline_disks + 1);

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        assert_same_daemon(pid);
}

/* The cap is inclusive: 8192 bytes of real passphrase attach. */
static void test_passphrase_8192_accepted(void) {
        guint32 pid = live_daemon();
        g_autoptr(GError) error = NULL;

        g_autofree char *path = lv_attach_bytes(bus, GUEST, img_8192, pass_8192, 8192, scsi_opts("sdb"), NULL, &error);
        g_assert_no_error(error);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        assert_same_daemon(pid);
}

/* <source file=…> of the guest's disk on target, unescaped by libxml2. */
static char *disk_source_file(const char *target) {
        g_autofree char *dxml = lv_domain_disk_xml(guest, target);
        g_assert_nonnull(dxml);
        xmlDocPtr doc = xmlReadMemory(dxml, (int) strlen(dxml), "disk.xml", NULL, XML_PARSE_NONET);
        g_assert_nonnull(doc);
        char *file = NULL;
        for (xmlNodePtr n = xmlDocGetRootElement(doc)->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "source")) {
                        xmlChar *f = xmlGetProp(n, BAD_CAST "file");
                        file = g_strdup((const char *) f);
                        xmlFree(f);
                }
        xmlFreeDoc(doc);
        return file;
}

/* XML metacharacters in a path survive the trip through libxml2 and libvirt
 * unchanged: the same string comes back as Source and as the disk's file. */
static void test_xml_chars_roundtrip(void) {
        guint32 pid = live_daemon();
        g_autoptr(GError) error = NULL;

        g_autofree char *path = lv_attach(bus, GUEST, xml_chars_img, PASS, scsi_opts("sdb"), &error);
        g_assert_no_error(error);
        g_autofree char *source = lv_volume_prop_string(bus, path, "Source");
        g_assert_cmpstr(source, ==, xml_chars_img);
        g_autofree char *file = disk_source_file("sdb");
        g_assert_cmpstr(file, ==, xml_chars_img);
        /* QEMU opened that very file and decrypts it (the only LUKS node). */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        assert_same_daemon(pid);
}

/* ---- the volume cap (daemon started with --max-volumes=2) --------------- */

static gboolean daemon_has_arg(guint32 pid, const char *arg) {
        g_autofree char *file = g_strdup_printf("/proc/%u/cmdline", pid);
        g_autofree char *cmd = NULL;
        gsize len = 0;

        g_assert_true(g_file_get_contents(file, &cmd, &len, NULL));
        for (gsize i = 0; i < len; i += strlen(cmd + i) + 1)
                if (g_str_equal(cmd + i, arg))
                        return TRUE;
        return FALSE;
}

static void assert_exactly_attached(GStrv want) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, g_strv_length(want));
        for (char **w = want; *w; w++)
                g_assert_true(g_strv_contains((const char *const *) objs, *w));
        g_assert_cmpuint(lv_count_secrets(), ==, g_strv_length(want));
        g_assert_cmpuint(count_disks(), ==, baseline_disks + g_strv_length(want));
        g_assert_cmpuint(mapper_leftovers(), ==, 0);
}

static void test_cap_third_attach_busy(void) {
        guint32 pid = live_daemon();
        g_autoptr(GError) error = NULL;
        g_autofree char *img1 = lv_make_luks1_image("cap1.img", PASS, PATTERN, 4);
        g_autofree char *img2 = lv_make_luks1_image("cap2.img", PASS, PATTERN, 4);
        g_autofree char *img3 = lv_make_luks1_image("cap3.img", PASS, PATTERN, 4);

        if (!daemon_has_arg(pid, "--max-volumes=2"))
                g_error("this test needs the daemon started with --max-volumes=2 (see meson.build)");
        assert_clean();

        g_autofree char *p1 = lv_attach(bus, GUEST, img1, PASS, scsi_opts("sda"), &error);
        g_assert_no_error(error);
        g_autofree char *p2 = lv_attach(bus, GUEST, img2, PASS, scsi_opts("sdb"), &error);
        g_assert_no_error(error);

        goffset mark = lv_daemon_log_mark();
        g_autofree char *p3 = lv_attach(bus, GUEST, img3, PASS, scsi_opts("sdc"), &error);
        g_assert_null(p3);
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        /* The same through passphrase-fd: refused before the fd is read. */
        p3 = lv_attach_fd(bus, GUEST, img3, PASS, scsi_opts("sdc"), &error);
        g_assert_null(p3);
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);

        /* Nothing of the third: exactly the two volumes, no sdc. */
        char *want[] = { p1, p2, NULL };
        assert_exactly_attached(want);
        g_assert_false(lv_domain_has_disk(guest, "sdc"));
        assert_same_daemon(pid);
        assert_log_sane(mark);

        /* A detach frees a slot. */
        g_assert_true(lv_detach(bus, p1, NULL, &error));
        g_assert_no_error(error);
        p3 = lv_attach(bus, GUEST, img3, PASS, scsi_opts("sdc"), &error);
        g_assert_no_error(error);
        char *want2[] = { p2, p3, NULL };
        assert_exactly_attached(want2);

        g_assert_true(lv_detach(bus, p2, NULL, &error));
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, p3, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        assert_same_daemon(pid);
}

/* An attach still in flight holds its slot: with one volume attached and a
 * slow one inside QEMU's key derivation, a third attach is Busy. */
static void test_cap_in_flight_counts(void) {
        guint32 pid = live_daemon();
        g_autoptr(GError) error = NULL;
        g_autofree char *img1 = lv_make_luks1_image("flight1.img", PASS, PATTERN, 4);
        g_autofree char *slow =
                lv_make_luks1_cryptsetup("flight-slow.img", PASS, 2000000, (const char *const[]){ NULL });
        g_autofree char *img3 = lv_make_luks1_image("flight3.img", PASS, PATTERN, 4);
        AsyncReply a = { 0 };

        assert_clean();
        g_autofree char *p1 = lv_attach(bus, GUEST, img1, PASS, scsi_opts("sda"), &error);
        g_assert_no_error(error);

        GVariant *params =
                g_variant_new("(ss@ay@a{sv})", GUEST, slow,
                              g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1), scsi_opts("sdb"));
        g_dbus_connection_call_with_unix_fd_list(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params,
                                                 G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 120000, NULL, NULL,
                                                 on_async_reply, &a);
        /* Inside QEMU's key derivation: the second secret exists.  The
         * daemon first verifies the passphrase itself (one more full PBKDF2
         * run), which on a loaded CI machine under the sanitizers took more
         * than the 5 s this loop once allowed; wait on the secret or the
         * reply, whichever comes first, for up to a minute. */
        gint64 until = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
        while (lv_count_secrets() < 2 && !a.done && g_get_monotonic_time() < until) {
                g_main_context_iteration(NULL, FALSE);
                g_usleep(5000);
        }
        g_assert_false(a.done);
        g_assert_cmpuint(lv_count_secrets(), ==, 2);

        g_autofree char *p3 = lv_attach(bus, GUEST, img3, PASS, scsi_opts("sdc"), &error);
        g_assert_null(p3);
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        g_assert_false(lv_domain_has_disk(guest, "sdc"));
        /* Still only the first volume's object after the refusal: the slow
         * attach was in flight, not finished, when the cap said Busy. */
        g_auto(GStrv) during = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(during), ==, 1);
        g_assert_cmpstr(during[0], ==, p1);

        while (!a.done)
                g_main_context_iteration(NULL, TRUE);
        g_assert_no_error(a.error);
        const char *p2;
        g_variant_get(a.reply, "(&o)", &p2);
        char *want[] = { p1, (char *) p2, NULL };
        assert_exactly_attached(want);

        g_assert_true(lv_detach(bus, p1, NULL, &error));
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, p2, NULL, &error));
        g_assert_no_error(error);
        g_variant_unref(a.reply);
        assert_clean();
        assert_same_daemon(pid);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest(GUEST);
        char uuid[VIR_UUID_STRING_BUFLEN];
        g_assert_cmpint(virDomainGetUUIDString(guest, uuid), ==, 0);
        guest_uuid = g_strdup(uuid);
        baseline_disks = count_disks();
        sent_inodes = g_array_new(FALSE, FALSE, sizeof(ino_t));

        good_img = lv_make_luks1_image("good.img", PASS, PATTERN, 16);
        small_img = lv_make_luks1_image("small.img", PASS, PATTERN, 1);
        xml_chars_img = image_renamed("xmlchars.img", "x'y\"<z>&amp; w.img");
        utf8_img = image_renamed("utf8.img", "ünïcødé-☃-образ.img");
        latin1_img = image_renamed("latin1.img", "\xff\xfe-latin1-caf\xe9.img");
        latin1_link = scratch("latin1-link.img");
        g_assert_no_errno(symlink(latin1_img, latin1_link));
        pass_8192 = lv_random_passphrase(8192);
        img_8192 = lv_make_luks1_image("pass8192.img", pass_8192, PATTERN, 4);
        pass_8193 = lv_random_passphrase(8193);
        img_8193 = lv_make_luks1_image("pass8193.img", pass_8193, PATTERN, 4);

        g_test_add_func("/hostile/control-valid-attach", test_control_valid_attach);
        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *p = g_strdup_printf("/hostile/%s", cases[i].name);
                g_test_add_data_func(p, &cases[i], run_case);
        }
        g_test_add_func("/hostile/passphrase-8192-accepted", test_passphrase_8192_accepted);
        g_test_add_func("/hostile/xml-chars-path-roundtrip", test_xml_chars_roundtrip);

        g_test_add_func("/hostile-cap/third-attach-busy", test_cap_third_attach_busy);
        g_test_add_func("/hostile-cap/in-flight-counts", test_cap_in_flight_counts);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
