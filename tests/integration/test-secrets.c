/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Passphrases leave no trace in the running daemon.
 *
 * The test reads the daemon's whole address space from outside, the way an
 * attacker with a memory-disclosure bug (or a core file) would see it:
 * every readable mapping in /proc/PID/maps, read through /proc/PID/mem
 * (pages that cannot be read, such as [vvar], are skipped and counted).
 * Each case uses its own random 48-character passphrase and searches for
 * it whole, for its first and last 16 bytes (a partial or split copy), and
 * for its base64 form.
 *
 * Two positive controls show the scanner is not blind:
 *   - a random marker in the source path of an attached volume (which the
 *     daemon keeps, as the Source property) is found;
 *   - a passphrase the daemon is still holding (passphrase-fd whose writer
 *     has written but not closed, so the daemon waits for EOF with the bytes
 *     in its mlock()ed MADV_DONTDUMP buffer) is found, and is gone once the
 *     writer closes and the attach completes.
 * The daemon runs with --log-level=debug (see meson.build) and its log is
 * checked for every passphrase used, with a positive control that the log
 * does hold the daemon's own lines. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PATTERN    0x6b
#define GUEST      "lvtest-secrets"
#define SECRET_LEN 48

static GDBusConnection *bus;
static virDomainPtr guest;
static char *img; /* LUKS1 image, passphrase img_pass */
static char *img_pass;
static GPtrArray *used; /* every passphrase sent, for the log check */

/* ---- the scanner ---------------------------------------------------------- */

/* Mappings this large are address-space reservations (ASan's shadow memory
 * in the sanitizer build), never the daemon's data; reading terabytes of
 * zero pages would take hours.  Counted and reported. */
#define HUGE_MAPPING (64ULL << 30)
#define CHUNK        (4u << 20)
#define PAGE         4096u

typedef struct ScanStats {
        guint64 bytes; /* read and searched */
        guint mappings;
        guint unreadable_pages;
        guint huge_skipped;
        guint64 huge_bytes;
        char *first_hit; /* the maps line of the first match */
} ScanStats;

static void scan_stats_clear(ScanStats *s) {
        g_free(s->first_hit);
        *s = (ScanStats){ 0 };
}

/* Fill buf with [addr, addr+len) of the target; pages that cannot be read
 * become zeros (they cannot complete a random needle). */
static void read_range(int mem, guint64 addr, guint8 *buf, gsize len, ScanStats *st) {
        ssize_t n = pread(mem, buf, len, (off_t) addr);
        if (n == (ssize_t) len)
                return;
        for (gsize off = 0; off < len; off += PAGE) {
                gsize l = MIN(PAGE, len - off);
                if (pread(mem, buf + off, l, (off_t) (addr + off)) != (ssize_t) l) {
                        memset(buf + off, 0, l);
                        st->unreadable_pages++;
                }
        }
}

/* Occurrences of each needle (n_needles of them) in pid's readable memory,
 * added to counts[]. */
static void scan_process(guint32 pid, const GBytes *const *needles, gsize n_needles, guint *counts, ScanStats *st) {
        g_autofree char *maps_path = g_strdup_printf("/proc/%u/maps", pid);
        g_autofree char *mem_path = g_strdup_printf("/proc/%u/mem", pid);
        g_autofree char *maps = NULL;
        gsize longest = 1;

        for (gsize i = 0; i < n_needles; i++)
                longest = MAX(longest, g_bytes_get_size((GBytes *) needles[i]));
        if (!g_file_get_contents(maps_path, &maps, NULL, NULL))
                g_error("cannot read %s", maps_path);
        int mem = open(mem_path, O_RDONLY | O_CLOEXEC);
        if (mem < 0)
                g_error("cannot open %s: %s", mem_path, g_strerror(errno));

        g_autofree guint8 *buf = g_malloc(CHUNK + longest);
        g_auto(GStrv) lines = g_strsplit(maps, "\n", -1);
        for (char **l = lines; *l && **l; l++) {
                guint64 start, end;
                char perms[5] = "";
                if (sscanf(*l, "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %4s", &start, &end, perms) != 3)
                        g_error("cannot parse a line of %s: %s", maps_path, *l);
                if (perms[0] != 'r')
                        continue;
                if (end - start >= HUGE_MAPPING) {
                        st->huge_skipped++;
                        st->huge_bytes += end - start;
                        continue;
                }
                st->mappings++;
                /* Chunks overlap by longest-1 bytes so a match across a
                 * chunk boundary is seen; only matches starting inside the
                 * chunk proper are counted. */
                for (guint64 a = start; a < end; a += CHUNK) {
                        gsize proper = (gsize) MIN((guint64) CHUNK, end - a);
                        gsize len = (gsize) MIN((guint64) CHUNK + longest - 1, end - a);
                        read_range(mem, a, buf, len, st);
                        st->bytes += proper;
                        for (gsize i = 0; i < n_needles; i++) {
                                gsize nlen;
                                const guint8 *nd = g_bytes_get_data((GBytes *) needles[i], &nlen);
                                const guint8 *p = buf;
                                while ((p = memmem(p, len - (gsize) (p - buf), nd, nlen)) &&
                                       (gsize) (p - buf) < proper) {
                                        counts[i]++;
                                        if (!st->first_hit)
                                                st->first_hit =
                                                        g_strdup_printf("%s (at offset 0x%" G_GINT64_MODIFIER "x)", *l,
                                                                        a + (guint64) (p - buf) - start);
                                        p++;
                                }
                        }
                }
        }
        close(mem);
}

/* The forms of a secret searched for: whole, head, tail, base64. */
static GPtrArray *secret_forms(const char *secret) {
        GPtrArray *forms = g_ptr_array_new_with_free_func((GDestroyNotify) g_bytes_unref);
        gsize n = strlen(secret);

        g_assert_cmpuint(n, >=, 32);
        g_ptr_array_add(forms, g_bytes_new(secret, n));
        g_ptr_array_add(forms, g_bytes_new(secret, 16));
        g_ptr_array_add(forms, g_bytes_new(secret + n - 16, 16));
        g_autofree char *b64 = g_base64_encode((const guchar *) secret, n);
        g_ptr_array_add(forms, g_bytes_new(b64, strlen(b64)));
        return forms;
}

static const char *const form_names[] = { "whole", "first 16 bytes", "last 16 bytes", "base64" };

/* How many times any form of secret occurs in the daemon's memory. */
static guint daemon_copies(const char *secret, const char *when) {
        guint32 pid = lv_daemon_pid(bus);
        g_autoptr(GPtrArray) forms = secret_forms(secret);
        guint counts[4] = { 0 };
        ScanStats st = { 0 };
        gint64 t0 = g_get_monotonic_time();

        g_assert_cmpuint(pid, !=, 0);
        scan_process(pid, (const GBytes *const *) forms->pdata, forms->len, counts, &st);
        g_test_message("%s: scanned %u mappings, %.1f MiB of pid %u in %.0f ms (%u unreadable pages, %u huge "
                       "reservations skipped, %.1f GiB); found whole %u, head %u, tail %u, base64 %u%s%s",
                       when, st.mappings, st.bytes / 1048576.0, pid, (g_get_monotonic_time() - t0) / 1000.0,
                       st.unreadable_pages, st.huge_skipped, st.huge_bytes / 1073741824.0, counts[0], counts[1],
                       counts[2], counts[3], st.first_hit ? "; first at " : "", st.first_hit ? st.first_hit : "");
        /* The scan must have covered something substantial: a daemon with
         * libvirt, libxml2, libcryptsetup and sd-bus maps tens of MiB. */
        g_assert_cmpuint(st.mappings, >, 20);
        g_assert_cmpuint(st.bytes, >, 8u << 20);
        guint total = 0;
        for (guint i = 0; i < G_N_ELEMENTS(counts); i++) {
                if (counts[i])
                        g_test_message("%s: %s of the secret found %u time(s)", when, form_names[i], counts[i]);
                total += counts[i];
        }
        scan_stats_clear(&st);
        return total;
}

static void assert_no_copy(const char *secret, const char *when) {
        guint n = daemon_copies(secret, when);
        if (n != 0)
                g_error("%s: the passphrase is in the daemon's memory (%u matches)", when, n);
}

static char *new_secret(void) {
        char *s = lv_random_passphrase(SECRET_LEN);
        g_ptr_array_add(used, g_strdup(s));
        return s;
}

static GVariant *scsi_target(const char *target) {
        return lv_opts("target", g_variant_new_string(target), NULL);
}

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_assert_false(lv_domain_has_disk(guest, "sdb"));
}

/* A fresh image whose passphrase is a fresh secret. */
static char *image_with_new_secret(const char *name, char **ret_secret) {
        *ret_secret = new_secret();
        return lv_make_luks1_image(name, *ret_secret, PATTERN, 4);
}

/* ---- positive controls ------------------------------------------------------ */

static void test_scanner_finds_kept_strings(void) {
        g_autofree char *marker = lv_random_passphrase(SECRET_LEN);
        g_autofree char *never = lv_random_passphrase(SECRET_LEN);
        g_autofree char *name = g_strdup_printf("marker-%s.img", marker);
        g_autofree char *pass = NULL;
        g_autofree char *src = image_with_new_secret(name, &pass);
        g_autoptr(GError) error = NULL;

        g_autofree char *path = lv_attach(bus, GUEST, src, pass, scsi_target("sdb"), &error);
        g_assert_no_error(error);
        /* The daemon keeps the source path: the scanner must see it. */
        guint found = daemon_copies(marker, "marker in the kept source path");
        g_assert_cmpuint(found, >=, 1);
        /* …and does not invent what was never sent. */
        g_assert_cmpuint(daemon_copies(never, "string never sent"), ==, 0);
        assert_no_copy(pass, "after attaching the marker volume");

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

typedef struct AsyncReply {
        GVariant *reply;
        GError *error;
        gboolean done;
} AsyncReply;

static void on_reply(GObject *source, GAsyncResult *res, gpointer userdata) {
        AsyncReply *a = userdata;
        a->reply = g_dbus_connection_call_with_unix_fd_list_finish(G_DBUS_CONNECTION(source), NULL, res, &a->error);
        a->done = TRUE;
}

static void test_scanner_sees_held_passphrase(void) {
        g_autofree char *pass = NULL;
        g_autofree char *src = image_with_new_secret("held.img", &pass);
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        g_autoptr(GError) error = NULL;
        AsyncReply a = { 0 };
        int p[2];

        g_assert_no_errno(pipe2(p, O_CLOEXEC));
        gint idx = g_unix_fd_list_append(fds, p[0], NULL);
        close(p[0]);
        GVariant *params = g_variant_new(
                "(ss@ay@a{sv})", GUEST, src, g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, "", 0, 1),
                lv_opts("passphrase-fd", g_variant_new_handle(idx), "target", g_variant_new_string("sdb"), NULL));
        g_dbus_connection_call_with_unix_fd_list(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "Attach", params,
                                                 G_VARIANT_TYPE("(o)"), G_DBUS_CALL_FLAGS_NONE, 120000, fds, NULL,
                                                 on_reply, &a);
        /* The bytes, but no EOF: the daemon reads them and waits for more
         * (up to 10 s per read), holding them in its passphrase buffer. */
        g_assert_cmpint(write(p[1], pass, strlen(pass)), ==, (gssize) strlen(pass));
        guint found = 0;
        gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
        while (!found && g_get_monotonic_time() < deadline) {
                g_usleep(50 * 1000);
                found = daemon_copies(pass, "while the daemon waits for EOF");
        }
        g_assert_cmpuint(found, >=, 1);
        /* The attach is indeed still waiting: no volume yet. */
        g_auto(GStrv) during = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(during), ==, 0);

        close(p[1]);
        while (!a.done)
                g_main_context_iteration(NULL, TRUE);
        g_assert_no_error(a.error);
        const char *path;
        g_variant_get(a.reply, "(&o)", &path);
        assert_no_copy(pass, "after the writer closed and the attach completed");
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_variant_unref(a.reply);
        assert_clean();
}

/* ---- the passphrase is gone ------------------------------------------------- */

static void test_native_attach_ay(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(bus, GUEST, img, img_pass, scsi_target("sdb"), &error);
        g_assert_no_error(error);
        /* It did reach QEMU: the guest decrypts with it. */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        assert_no_copy(img_pass, "after a native attach (ay)");
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_no_copy(img_pass, "after its detach");
        assert_clean();
}

static void test_wrong_passphrase(void) {
        g_autofree char *wrong = new_secret();
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(bus, GUEST, img, wrong, scsi_target("sdb"), &error);
        g_assert_null(path);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_assert_null(strstr(error->message, wrong));
        assert_no_copy(wrong, "after an attach refused for a wrong passphrase");
        assert_clean();
}

static void test_passphrase_fd(void) {
        g_autofree char *pass = NULL;
        g_autofree char *src = image_with_new_secret("viafd.img", &pass);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach_fd(bus, GUEST, src, pass, scsi_target("sdb"), &error);
        g_assert_no_error(error);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        assert_no_copy(pass, "after an attach through passphrase-fd");
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_no_copy(pass, "after its detach");
        assert_clean();
}

static void test_after_detach(void) {
        g_autofree char *pass = NULL;
        g_autofree char *src = image_with_new_secret("detach.img", &pass);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = lv_attach(bus, GUEST, src, pass, scsi_target("sdb"), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
        assert_no_copy(pass, "after attach + detach");
}

/* Calls refused at every stage still carried a passphrase into the daemon. */
static void test_refusals(void) {
        g_autofree char *plain = lv_make_plain_file("plain.img", 4);
        g_autoptr(GError) error = NULL;

        { /* InvalidArgs from the option parser, after the ay was copied. */
                g_autofree char *s = new_secret();
                g_autofree char *p G_GNUC_UNUSED =
                        lv_attach(bus, GUEST, img, s, lv_opts("colour", g_variant_new_string("red"), NULL), &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
                assert_no_copy(s, "after InvalidArgs (unknown option)");
        }
        { /* NotLuks, from the worker. */
                g_autofree char *s = new_secret();
                g_autofree char *p G_GNUC_UNUSED = lv_attach(bus, GUEST, plain, s, scsi_target("sdb"), &error);
                lv_assert_error(error, LV_ERR("NotLuks"));
                g_clear_error(&error);
                assert_no_copy(s, "after NotLuks");
        }
        { /* NoSuchDomain, from the worker. */
                g_autofree char *s = new_secret();
                g_autofree char *p G_GNUC_UNUSED = lv_attach(bus, "no-such-guest", img, s, scsi_target("sdb"), &error);
                lv_assert_error(error, LV_ERR("NoSuchDomain"));
                g_clear_error(&error);
                assert_no_copy(s, "after NoSuchDomain");
        }
        { /* polkit says no: a plain user (auth_admin), no interaction allowed. */
                g_autofree char *s = new_secret();
                g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
                g_autofree char *p G_GNUC_UNUSED = lv_attach(user, GUEST, img, s, scsi_target("sdb"), &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired");
                g_clear_error(&error);
                assert_no_copy(s, "after polkit refused");
        }
        { /* The wrong signature: sd-bus refuses before any handler runs. */
                g_autofree char *s = new_secret();
                g_autoptr(GVariant) r G_GNUC_UNUSED =
                        lv_call_manager(bus, "Attach",
                                        g_variant_new("(ss@ay)", GUEST, img,
                                                      g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, s, strlen(s), 1)),
                                        NULL, &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
                assert_no_copy(s, "after a wrong-signature Attach");
        }
        { /* Over the cap: never copied, and the message's own copy is wiped. */
                g_autofree char *s = new_secret();
                char big[8193];
                memset(big, 'x', sizeof(big));
                memcpy(big + 4000, s, strlen(s));
                g_autofree char *p G_GNUC_UNUSED =
                        lv_attach_bytes(bus, GUEST, img, big, sizeof(big), scsi_target("sdb"), NULL, &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
                assert_no_copy(s, "after an 8193-byte passphrase");
        }
        { /* Both forms at once. */
                g_autofree char *s = new_secret();
                g_autofree char *s2 = new_secret();
                g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
                int p[2];
                g_assert_no_errno(pipe2(p, O_CLOEXEC));
                g_assert_cmpint(write(p[1], s2, strlen(s2)), ==, (gssize) strlen(s2));
                close(p[1]);
                gint idx = g_unix_fd_list_append(fds, p[0], NULL);
                close(p[0]);
                g_autofree char *path G_GNUC_UNUSED =
                        lv_attach_bytes(bus, GUEST, img, s, strlen(s),
                                        lv_opts("passphrase-fd", g_variant_new_handle(idx), NULL), fds, &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
                assert_no_copy(s, "after ay + passphrase-fd (the ay)");
                /* The fd was never read: its bytes cannot be in the daemon. */
                assert_no_copy(s2, "after ay + passphrase-fd (the fd)");
        }
        { /* Over the cap through the fd: read, then refused. */
                g_autofree char *s = new_secret();
                char big[8193];
                memset(big, 'y', sizeof(big));
                memcpy(big + sizeof(big) - strlen(s), s, strlen(s));
                g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
                int p[2];
                g_assert_no_errno(pipe2(p, O_CLOEXEC));
                g_assert_cmpint(write(p[1], big, sizeof(big)), ==, (gssize) sizeof(big));
                close(p[1]);
                gint idx = g_unix_fd_list_append(fds, p[0], NULL);
                close(p[0]);
                g_autofree char *path G_GNUC_UNUSED = lv_attach_bytes(
                        bus, GUEST, img, "", 0, lv_opts("passphrase-fd", g_variant_new_handle(idx), NULL), fds, &error);
                lv_assert_error(error, "org.freedesktop.DBus.Error.InvalidArgs");
                g_clear_error(&error);
                assert_no_copy(s, "after an 8193-byte passphrase-fd");
        }
        assert_clean();
}

/* Key management: every passphrase that went in — existing, new, old,
 * verified, wrong, removed; as ay and through fds — is gone afterwards,
 * although libcryptsetup derived keys from each and wrote new key slots. */
static void test_key_management(void) {
        g_autofree char *a = NULL, *b = new_secret(), *c = new_secret(), *wrong = new_secret();
        g_autofree char *src = image_with_new_secret("keys.img", &a);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(lv_keys_call(bus, "AddPassphrase", src, a, b, FALSE, NULL, &error), ==, 1);
        g_assert_no_error(error);
        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", src, b, c, TRUE, NULL, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(lv_verify_passphrase(bus, src, c, &error), >=, 0);
        g_assert_no_error(error);
        g_assert_cmpint(lv_verify_passphrase(bus, src, wrong, &error), ==, -1);
        lv_assert_error(error, LV_ERR("BadPassphrase"));
        g_clear_error(&error);
        g_assert_cmpint(lv_keys_call(bus, "RemovePassphrase", src, a, NULL, TRUE, NULL, &error), ==, 0);
        g_assert_no_error(error);

        assert_no_copy(a, "after add (existing) and remove");
        assert_no_copy(b, "after add (new) and change (old, through an fd)");
        assert_no_copy(c, "after change (new, through an fd) and verify");
        assert_no_copy(wrong, "after a wrong verification");
}

static void test_log(void) {
        g_autofree char *log = lv_daemon_log();

        /* Positive control: the log holds the daemon's own lines, debug
         * level included ("<7>" is sd-daemon's prefix for LOG_DEBUG), and
         * the strings it legitimately logs (the marker's source path). */
        g_assert_nonnull(strstr(log, "Attached '"));
        g_assert_nonnull(strstr(log, "<7>"));
        g_assert_nonnull(strstr(log, "/marker-"));
        g_test_message("daemon log: %zu bytes, checked for %u passphrases", strlen(log), used->len);
        g_assert_cmpuint(used->len, >=, 10);
        for (guint i = 0; i < used->len; i++) {
                const char *s = used->pdata[i];
                g_autoptr(GPtrArray) forms = secret_forms(s);
                for (guint k = 0; k < forms->len; k++) {
                        gsize n;
                        const char *f = g_bytes_get_data(forms->pdata[k], &n);
                        if (memmem(log, strlen(log), f, n))
                                g_error("the daemon log holds the %s of passphrase %u", form_names[k], i);
                }
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        used = g_ptr_array_new_with_free_func(g_free);
        guest = lv_start_guest(GUEST);
        img = image_with_new_secret("secrets.img", &img_pass);

        g_test_add_func("/secrets/scanner-finds-kept-strings", test_scanner_finds_kept_strings);
        g_test_add_func("/secrets/scanner-sees-held-passphrase", test_scanner_sees_held_passphrase);
        g_test_add_func("/secrets/native-attach-ay", test_native_attach_ay);
        g_test_add_func("/secrets/wrong-passphrase", test_wrong_passphrase);
        g_test_add_func("/secrets/passphrase-fd", test_passphrase_fd);
        g_test_add_func("/secrets/after-detach", test_after_detach);
        g_test_add_func("/secrets/refusals", test_refusals);
        g_test_add_func("/secrets/key-management", test_key_management);
        g_test_add_func("/secrets/log", test_log);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
