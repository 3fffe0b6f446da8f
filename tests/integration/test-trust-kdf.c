/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Headers the caller wrote (issue 16, item 2 and part of 5), attacked on
 * the real stack:
 *
 *  - a LUKS1 key slot patched to 2^32-1 PBKDF2 iterations (AES, and a
 *    serpent one, whose key slot libcryptsetup could only decrypt through
 *    device-mapper, under the daemon-wide lock) and a LUKS2 argon2 slot over
 *    the memory limit: NotSupported in < 1 s, nothing derived (the daemon's
 *    CPU time barely moves), and a Probe of another file meanwhile answers
 *    at once;
 *  - a null cipher, ECB and a 128-bit key: refused in every mode, before
 *    the mode is chosen; Probe names the reason;
 *  - derivations in flight are capped per user; wrong passphrases given to
 *    Attach count in the per-user guess limit; argon2's pbkdf-iterations
 *    stays within what the README says; every derivation of the key methods
 *    runs under SCHED_BATCH; a key change racing a verification never makes a
 *    right passphrase wrong.
 *
 * The daemon runs with --config=trust-kdf.conf (argv[1]): the argon2 memory
 * limit lowered to 64 MiB, so that a slot over it is cheap to make here. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS          "trust passphrase"
#define PASS2         "other passphrase"
#define ACCESS_DENIED "org.freedesktop.DBus.Error.AccessDenied"
#define INVALID_ARGS  "org.freedesktop.DBus.Error.InvalidArgs"
#define GUEST         "lvtest-guest"

/* LUKS1's binary header: cipher name at 8 and mode at 40 (32 bytes each);
 * key slot descriptors from 208, 48 bytes each: active (4), iterations (4,
 * big-endian), salt (32), key material offset (4), stripes (4).  Neither the
 * slots' iteration counts nor the cipher are covered by the volume key's
 * digest: libcryptsetup loads a header patched there as it is. */
#define LUKS1_SLOT0      208
#define LUKS1_SLOT_ITERS 4

static GDBusConnection *bus;

/* ------------------------------------------------------------- helpers */

static void patch_at(const char *path, off_t off, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pwrite(fd, data, len, off), ==, (ssize_t) len);
        g_assert_cmpint(fsync(fd), ==, 0);
        close(fd);
}

static void patch_slot0_iterations(const char *path, guint32 iterations) {
        guint32 be = GUINT32_TO_BE(iterations);
        patch_at(path, LUKS1_SLOT0 + LUKS1_SLOT_ITERS, &be, sizeof be);
}

/* The daemon's CPU time (user + system, all threads), in seconds. */
static double daemon_cpu_seconds(guint32 pid) {
        g_autofree char *path = g_strdup_printf("/proc/%u/stat", pid);
        g_autofree char *stat = NULL;
        g_assert_true(g_file_get_contents(path, &stat, NULL, NULL));
        const char *p = strrchr(stat, ')');
        g_assert_nonnull(p);
        g_auto(GStrv) f = g_strsplit(p + 2, " ", 0);
        g_assert_cmpuint(g_strv_length(f), >, 13);
        /* After "(comm)": utime is field 14, stime 15 (f[11], f[12]). */
        return (g_ascii_strtod(f[11], NULL) + g_ascii_strtod(f[12], NULL)) / (double) sysconf(_SC_CLK_TCK);
}

/* A connection of its own as root (lv_bus() is the shared one). */
static GDBusConnection *root_bus(void) {
        g_autoptr(GError) error = NULL;
        GDBusConnection *c = g_dbus_connection_new_for_address_sync(
                g_getenv("DBUS_SYSTEM_BUS_ADDRESS"),
                G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION, NULL,
                NULL, &error);
        g_assert_no_error(error);
        g_dbus_connection_set_exit_on_close(c, FALSE);
        return c;
}

static GVariant *passphrase_bytes(const char *pass) {
        return g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, pass, strlen(pass), 1);
}

/* A call that gives up after timeout_ms (the unfixed daemon never answers
 * some of these); *ret_ms: how long it took. */
static GVariant *call_timed(GDBusConnection *conn, const char *method, GVariant *params, const char *reply_type,
                            gint timeout_ms, gint64 *ret_ms, GError **error) {
        gint64 t0 = g_get_monotonic_time();
        GVariant *reply = g_dbus_connection_call_sync(conn, LV_BUS_NAME, LV_PATH, LV_IFACE, method, params,
                                                      reply_type ? G_VARIANT_TYPE(reply_type) : NULL,
                                                      G_DBUS_CALL_FLAGS_NONE, timeout_ms, NULL, error);
        *ret_ms = (g_get_monotonic_time() - t0) / 1000;
        return reply;
}

static GVariant *attach_params(const char *source, const char *pass, const char *mode) {
        return g_variant_new("(ss@ay@a{sv})", GUEST, source, passphrase_bytes(pass),
                             lv_opts("mode", g_variant_new_string(mode), "bus", g_variant_new_string("scsi"), NULL));
}

static GVariant *verify_params(const char *source, const char *pass) {
        return g_variant_new("(s@ay@a{sv})", source, passphrase_bytes(pass), lv_opts(NULL));
}

/* NotSupported in < 1 s naming every one of needles, and the daemon spent
 * next to no CPU on it. */
static void assert_refused_fast(GDBusConnection *conn, const char *method, GVariant *params,
                                const char *const *needles) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) host = lv_probe(bus, "", &error); /* the daemon runs */
        g_assert_no_error(error);
        guint32 pid = lv_daemon_pid(bus);
        double cpu0 = daemon_cpu_seconds(pid);
        gint64 ms = 0;
        g_autoptr(GVariant) reply = call_timed(conn, method, params, NULL, 8000, &ms, &error);
        double cpu = daemon_cpu_seconds(pid) - cpu0;

        g_test_message("%s: %" G_GINT64_FORMAT " ms, daemon CPU %.2f s: %s", method, ms, cpu,
                       error ? error->message : "(success)");
        g_assert_null(reply);
        lv_assert_error(error, LV_ERR("NotSupported"));
        for (const char *const *n = needles; *n; n++)
                if (!strstr(error->message, *n))
                        g_error("'%s' not in the error: %s", *n, error->message);
        g_assert_cmpint(ms, <, 1000);
        g_assert_cmpfloat(cpu, <, 0.5);
}

typedef struct Pending {
        GVariant *reply;
        GError *error;
        gboolean done;
        gint64 t0, ms;
} Pending;

static void on_reply(GObject *source, GAsyncResult *res, gpointer user_data) {
        Pending *p = user_data;
        p->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &p->error);
        p->ms = (g_get_monotonic_time() - p->t0) / 1000;
        p->done = TRUE;
}

static void call_async(GDBusConnection *conn, const char *method, GVariant *params, gint timeout_ms, Pending *p) {
        memset(p, 0, sizeof *p);
        p->t0 = g_get_monotonic_time();
        g_dbus_connection_call(conn, LV_BUS_NAME, LV_PATH, LV_IFACE, method, params, NULL, G_DBUS_CALL_FLAGS_NONE,
                               timeout_ms, NULL, on_reply, p);
}

static void pending_wait(Pending *p) {
        while (!p->done)
                g_main_context_iteration(NULL, TRUE);
}

static void pending_clear(Pending *p) {
        g_clear_pointer(&p->reply, g_variant_unref);
        g_clear_error(&p->error);
}

static char *probe_string(GVariant *info, const char *key) {
        const char *v = NULL;
        g_assert_true(g_variant_lookup(info, key, "&s", &v));
        return g_strdup(v);
}

/* ----------------------------------------------------- costly headers */

/* Slot 0 patched to 2^32-1 iterations, cipher aes or serpent: Attach (each
 * mode) and VerifyPassphrase are refused in < 1 s naming the slot and its
 * cost, and a Probe of another file, sent while an Attach of the hostile
 * one is in flight, answers in < 1 s. */
static void test_pbkdf2_huge(gconstpointer data) {
        const char *cipher = data;
        g_autofree char *name = g_strdup_printf("huge-%s.img", cipher);
        g_autofree char *img = lv_make_luks1_cryptsetup(name, PASS, 1000, (const char *const[]){ NULL });
        g_autofree char *other = lv_make_luks1_cryptsetup("other.img", PASS, 1000, (const char *const[]){ NULL });
        g_autoptr(GDBusConnection) second = root_bus();
        g_autoptr(GError) error = NULL;
        guint secrets = lv_count_secrets();
        Pending attach;
        gint64 ms = 0;

        patch_slot0_iterations(img, G_MAXUINT32);
        if (!g_str_equal(cipher, "aes"))
                lv_luks1_patch_cipher(img, cipher, "xts-plain64");

        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);

        /* Another caller's Probe while the Attach is in flight. */
        call_async(second, "Attach", attach_params(img, PASS, "auto"), 8000, &attach);
        g_usleep(300 * 1000);
        g_autoptr(GVariant) info = call_timed(bus, "Probe", g_variant_new("(s@a{sv})", other, lv_opts(NULL)), "(a{sv})",
                                              8000, &ms, &error);
        g_test_message("Probe of another file during the attach: %" G_GINT64_FORMAT " ms", ms);
        g_assert_no_error(error);
        g_assert_cmpint(ms, <, 1000);
        pending_wait(&attach);
        g_test_message("Attach: %" G_GINT64_FORMAT " ms: %s", attach.ms,
                       attach.error ? attach.error->message : "(success)");
        lv_assert_error(attach.error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(attach.error->message, "4294967295"));
        g_assert_cmpint(attach.ms, <, 1000);
        pending_clear(&attach);

        const char *const needles[] = { "key slot 0", "4294967295", NULL };
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "native"), needles);
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "cryptsetup"), needles);
        assert_refused_fast(bus, "VerifyPassphrase", verify_params(img, PASS), needles);
        assert_refused_fast(
                bus, "AddPassphrase",
                g_variant_new("(s@ay@ay@a{sv})", img, passphrase_bytes(PASS), passphrase_bytes(PASS2), lv_opts(NULL)),
                needles);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);

        /* Probe reports it. */
        g_autoptr(GVariant) hinfo = lv_probe(bus, img, &error);
        g_assert_no_error(error);
        g_autofree char *obstacle = probe_string(hinfo, "native-obstacle");
        g_test_message("native-obstacle: %s", obstacle);
        g_assert_nonnull(strstr(obstacle, "key slot 0"));
}

/* The volume key's digest: every slot try ends in a PBKDF2 of the key it
 * yields, at mkDigestIterations (offset 164 of a LUKS1 header), which the
 * header names too: patched to 2^32-1, refused like a costly slot. */
static void test_digest_huge(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("digest.img", PASS, 1000, (const char *const[]){ NULL });
        guint32 be = GUINT32_TO_BE(G_MAXUINT32);

        patch_at(img, 164, &be, sizeof be);
        const char *const needles[] = { "digest", "4294967295", NULL };
        assert_refused_fast(bus, "VerifyPassphrase", verify_params(img, PASS), needles);
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "auto"), needles);
}

/* A LUKS2 argon2id slot of 128 MiB, over the 64 MiB this daemon allows. */
static void test_argon2_memory(void) {
        g_autofree char *img = lv_make_plain_file("argon2-big.img", 20);
        const char *argv[] = { "cryptsetup",
                               "luksFormat",
                               "--type",
                               "luks2",
                               "--pbkdf",
                               "argon2id",
                               "--pbkdf-memory",
                               "131072",
                               "--pbkdf-force-iterations",
                               "4",
                               "--pbkdf-parallel",
                               "1",
                               "--batch-mode",
                               "--key-file",
                               "-",
                               img,
                               NULL };
        g_autoptr(GSubprocess) p = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDIN_PIPE, NULL);
        g_assert_nonnull(p);
        g_autoptr(GBytes) in = g_bytes_new_static(PASS, strlen(PASS));
        g_assert_true(g_subprocess_communicate(p, in, NULL, NULL, NULL, NULL));
        g_assert_true(g_subprocess_get_successful(p));

        const char *const needles[] = { "key slot 0", "131072", NULL };
        assert_refused_fast(bus, "VerifyPassphrase", verify_params(img, PASS), needles);
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "auto"), needles);

        /* A slot within the limit (the fixture's: 32 MiB) still opens. */
        g_autoptr(GError) error = NULL;
        g_autofree char *ok = lv_make_luks2_image_pbkdf("argon2-ok.img", PASS, 20, "argon2id");
        g_assert_cmpint(lv_verify_passphrase(bus, ok, PASS, &error), ==, 0);
        g_assert_no_error(error);
}

/* ---------------------------------------------- headers you did not write */

typedef struct CipherCase {
        const char *name;
        const char *const *format; /* extra luksFormat arguments */
        const char *patch_cipher, *patch_mode;
        const char *expect; /* in every refusal and in native-obstacle */
} CipherCase;

static const CipherCase cipher_cases[] = {
        { "null", (const char *const[]){ NULL }, "cipher_null", "ecb", "cipher_null" },
        { "ecb", (const char *const[]){ "--cipher", "aes-ecb", "--key-size", "256", NULL }, NULL, NULL, "ecb" },
        { "aes128-cbc", (const char *const[]){ "--cipher", "aes-cbc-essiv:sha256", "--key-size", "128", NULL }, NULL,
          NULL, "128-bit" },
        { "aes128-xts", (const char *const[]){ "--cipher", "aes-xts-plain64", "--key-size", "256", NULL }, NULL, NULL,
          "128-bit" },
        /* An allowed data cipher, but LUKS1 encrypts its key slots with it:
         * libcryptsetup could decrypt them only through device-mapper. */
        { "serpent-slots", (const char *const[]){ NULL }, "serpent", "xts-plain64", "'serpent-xts-plain64'" },
};

/* Refused in native, auto and cryptsetup mode and by VerifyPassphrase,
 * with the reason; nothing made; Probe says why. */
static void test_cipher_refused(gconstpointer data) {
        const CipherCase *cc = data;
        g_autofree char *name = g_strdup_printf("cipher-%s.img", cc->name);
        g_autofree char *img = lv_make_luks1_cryptsetup(name, PASS, 1000, cc->format);
        g_autoptr(GError) error = NULL;
        guint secrets = lv_count_secrets();

        if (cc->patch_cipher)
                lv_luks1_patch_cipher(img, cc->patch_cipher, cc->patch_mode);

        g_autoptr(GVariant) info = lv_probe(bus, img, &error);
        g_assert_no_error(error);
        g_autofree char *obstacle = probe_string(info, "native-obstacle");
        gboolean capable = TRUE;
        g_assert_true(g_variant_lookup(info, "native-capable", "b", &capable));
        g_test_message("native-obstacle: %s", obstacle);
        g_assert_false(capable);
        g_assert_nonnull(strstr(obstacle, cc->expect));

        const char *const needles[] = { cc->expect, NULL };
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "native"), needles);
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "auto"), needles);
        assert_refused_fast(bus, "Attach", attach_params(img, PASS, "cryptsetup"), needles);
        assert_refused_fast(bus, "VerifyPassphrase", verify_params(img, PASS), needles);
        g_assert_cmpuint(lv_count_secrets(), ==, secrets);
}

/* ------------------------------------------------------ caps and limits */

static const char *const admin_rules = "polkit.addRule(function(action, subject) {\n"
                                       "  if (subject.user == 'lvadmin') return polkit.Result.YES;\n"
                                       "  return polkit.Result.NOT_HANDLED;\n"
                                       "});\n";

/* Four costly verifications at once from one user: the per-user cap lets
 * two derive and answers Busy to the others at once; root is not capped. */
static void test_derivations_per_user(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("cap.img", PASS, 3000000, (const char *const[]){ NULL });
        GDBusConnection *conns[4];
        Pending p[4];
        guint busy = 0, ok = 0;

        lv_polkit_set_rules("50-trust-kdf.rules", admin_rules);
        for (guint i = 0; i < G_N_ELEMENTS(conns); i++)
                conns[i] = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        for (guint i = 0; i < G_N_ELEMENTS(conns); i++)
                call_async(conns[i], "VerifyPassphrase", verify_params(img, PASS), 60000, &p[i]);
        for (guint i = 0; i < G_N_ELEMENTS(conns); i++) {
                pending_wait(&p[i]);
                g_test_message("verify %u: %" G_GINT64_FORMAT " ms: %s", i, p[i].ms,
                               p[i].error ? p[i].error->message : "slot 0");
                if (p[i].error) {
                        lv_assert_error(p[i].error, LV_ERR("Busy"));
                        g_assert_nonnull(strstr(p[i].error->message, "derivation"));
                        busy++;
                } else
                        ok++;
                pending_clear(&p[i]);
                g_object_unref(conns[i]);
        }
        g_assert_cmpuint(ok, >=, 1);
        g_assert_cmpuint(busy, >=, 1);

        /* Root: four at once all answer (the global cap is above four). */
        for (guint i = 0; i < 4; i++) {
                conns[i] = root_bus();
                call_async(conns[i], "VerifyPassphrase", verify_params(img, PASS), 60000, &p[i]);
        }
        for (guint i = 0; i < 4; i++) {
                pending_wait(&p[i]);
                g_assert_no_error(p[i].error);
                pending_clear(&p[i]);
                g_object_unref(conns[i]);
        }
        lv_polkit_set_rules("50-trust-kdf.rules", NULL);
}

/* Wrong passphrases given to Attach count in the same per-user limit as
 * the key methods': five, then Busy. */
static void test_attach_guesses(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("guess.img", PASS, 1000, (const char *const[]){ NULL });
        g_autoptr(GDBusConnection) admin = NULL;
        g_autoptr(GError) error = NULL;

        lv_polkit_set_rules("50-trust-kdf.rules", admin_rules);
        admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        for (int i = 0; i < 5; i++) {
                g_autofree char *path = lv_attach(
                        admin, GUEST, img, "wrong",
                        lv_opts("mode", g_variant_new_string("native"), "bus", g_variant_new_string("scsi"), NULL),
                        &error);
                g_assert_null(path);
                lv_assert_error(error, LV_ERR("BadPassphrase"));
                g_clear_error(&error);
        }
        g_autofree char *path = lv_attach(
                admin, GUEST, img, "wrong",
                lv_opts("mode", g_variant_new_string("native"), "bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_null(path);
        g_test_message("sixth wrong attach: %s", error->message);
        lv_assert_error(error, LV_ERR("Busy"));
        g_assert_nonnull(strstr(error->message, "wrong passphrases"));
        g_clear_error(&error);
        /* The key methods share the limit. */
        g_assert_cmpint(lv_verify_passphrase(admin, img, PASS, &error), ==, -1);
        lv_assert_error(error, LV_ERR("Busy"));
        lv_polkit_set_rules("50-trust-kdf.rules", NULL);
}

static gboolean wait_state(const char *path, const char *state, guint timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        for (;;) {
                g_autofree char *st = lv_volume_prop_string(bus, path, "State");
                if (g_strcmp0(st, state) == 0)
                        return TRUE;
                if (g_get_monotonic_time() >= deadline) {
                        g_test_message("%s: state '%s', not '%s'", path, st, state);
                        return FALSE;
                }
                g_usleep(20 * 1000);
        }
}

static void rearm(GDBusConnection *conn, const char *path, const char *pass, GError **error) {
        g_autoptr(GVariant) reply =
                g_dbus_connection_call_sync(conn, LV_BUS_NAME, path, LV_VOLUME_IFACE, "Rearm",
                                            g_variant_new("(@ay@a{sv})", passphrase_bytes(pass), lv_opts(NULL)), NULL,
                                            G_DBUS_CALL_FLAGS_NONE, 60000, NULL, error);
}

/* Rearm tells whether a passphrase is right too (a saved volume whose
 * secret libvirtd lost): its wrong passphrases count in the same limit. */
static void test_rearm_guesses(void) {
        virDomainPtr g = lv_start_guest("tk-rearm");
        g_autofree char *img = lv_make_luks1_image("tk-rearm.img", PASS, 0x5a, 16);
        g_autofree char *state = lv_sandbox_path("tk-rearm.state");
        g_autoptr(GDBusConnection) user = NULL;
        g_autoptr(GError) error = NULL;

        g_autofree char *path = lv_attach(
                bus, "tk-rearm", img, PASS,
                lv_opts("mode", g_variant_new_string("native"), "bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainSave(g, state), ==, 0);
        virDomainFree(g);
        g_assert_true(wait_state(path, "saved", 5000));
        lv_restart_libvirtd();
        g_usleep(2 * G_USEC_PER_SEC); /* the daemon rescans after the reconnect */
        g_assert_true(wait_state(path, "saved", 5000));

        lv_polkit_set_rules("50-trust-kdf.rules", "polkit.addRule(function(action, subject) {\n"
                                                  "  if (subject.user == 'lvuser') return polkit.Result.YES;\n"
                                                  "  return polkit.Result.NOT_HANDLED;\n"
                                                  "});\n");
        user = lv_bus_as_uid(LV_TEST_UID_USER);
        for (int i = 0; i < 5; i++) {
                rearm(user, path, "wrong", &error);
                lv_assert_error(error, LV_ERR("BadPassphrase"));
                g_clear_error(&error);
        }
        rearm(user, path, "wrong", &error);
        g_test_message("sixth wrong rearm: %s", error ? error->message : "(success)");
        lv_assert_error(error, LV_ERR("Busy"));
        g_clear_error(&error);
        lv_polkit_set_rules("50-trust-kdf.rules", NULL);

        /* Root is not limited: the right passphrase re-arms it. */
        rearm(bus, path, PASS, &error);
        g_assert_no_error(error);
        g_assert_cmpint(virDomainRestore(lv_virt(), state), ==, 0);
        g = virDomainLookupByName(lv_virt(), "tk-rearm");
        g_assert_nonnull(g);
        g_assert_true(wait_state(path, "attached", 5000));
        lv_destroy_guest(g);
        g_unlink(state);
}

/* argon2's time cost through pbkdf-iterations: 4–1000, as the README says. */
static void test_argon2_iterations_option(void) {
        g_autofree char *img = lv_make_luks2_image_pbkdf("argon2-iter.img", PASS, 20, "argon2id");
        g_autoptr(GError) error = NULL;
        gint64 ms = 0;

        g_autoptr(GVariant) r =
                call_timed(bus, "AddPassphrase",
                           g_variant_new("(s@ay@ay@a{sv})", img, passphrase_bytes(PASS), passphrase_bytes(PASS2),
                                         lv_opts("pbkdf-iterations", g_variant_new_uint32(1001), NULL)),
                           "(u)", 10000, &ms, &error);
        g_test_message("pbkdf-iterations 1001 on argon2: %" G_GINT64_FORMAT " ms: %s", ms,
                       error ? error->message : "accepted");
        g_assert_null(r);
        lv_assert_error(error, INVALID_ARGS);
        g_assert_nonnull(strstr(error->message, "1000"));
        g_clear_error(&error);
        g_assert_cmpint(lv_keys_call(bus, "AddPassphrase", img, PASS, PASS2, FALSE,
                                     lv_opts("pbkdf-iterations", g_variant_new_uint32(5), NULL), &error),
                        ==, 1);
        g_assert_no_error(error);
}

static GArray *thread_nices(guint32 pid) {
        g_autofree char *dir = g_strdup_printf("/proc/%u/task", pid);
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        GArray *nices = g_array_new(FALSE, FALSE, sizeof(long));
        const char *tid;

        if (!d)
                return nices;
        while ((tid = g_dir_read_name(d))) {
                g_autofree char *path = g_strdup_printf("%s/%s/stat", dir, tid);
                g_autofree char *stat = NULL;
                if (!g_file_get_contents(path, &stat, NULL, NULL))
                        continue;
                const char *p = strrchr(stat, ')');
                g_assert_nonnull(p);
                g_auto(GStrv) f = g_strsplit(p + 2, " ", 0);
                g_assert_cmpuint(g_strv_length(f), >, 16);
                /* policy is field 41; state field 3 ("R": running). */
                g_assert_cmpuint(g_strv_length(f), >, 38);
                long policy = strtol(f[38], NULL, 10);
                if (f[0][0] == 'R')
                        g_array_append_val(nices, policy);
        }
        return nices;
}

/* AddPassphrase derives twice (the existing slot, the new one): every
 * thread of the daemon seen running meanwhile is the event loop (briefly)
 * or a derivation under SCHED_BATCH (luks-derive.c: nice 10 starved
 * derivations on hosts with busy guests); most samples see a batch one. */
static void test_key_methods_niced(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("niced.img", PASS, 3000000, (const char *const[]){ NULL });
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) host = lv_probe(bus, "", &error);
        g_assert_no_error(error);
        guint32 pid = lv_daemon_pid(bus);
        guint samples = 0, niced = 0, plain = 0;
        Pending p;

        call_async(
                bus, "AddPassphrase",
                g_variant_new("(s@ay@ay@a{sv})", img, passphrase_bytes(PASS), passphrase_bytes(PASS2), lv_opts(NULL)),
                120000, &p);
        while (!p.done) {
                g_main_context_iteration(NULL, FALSE);
                g_autoptr(GArray) nices = thread_nices(pid);
                for (guint k = 0; k < nices->len; k++) {
                        if (g_array_index(nices, long, k) == SCHED_BATCH)
                                niced++;
                        else
                                plain++;
                }
                samples++;
                g_usleep(20000);
        }
        g_test_message("%u samples: running threads under SCHED_BATCH: %u, others: %u", samples, niced, plain);
        g_assert_no_error(p.error);
        pending_clear(&p);
        g_assert_cmpuint(samples, >, 20);
        g_assert_cmpuint(niced, >, 10 * plain);
}

/* A passphrase that stays right while another slot moves: B is changed to
 * B over and over (slot 1 → 2 → 1 …: the new slot is written, then the old
 * destroyed and wiped) while B is verified; every verification finds it. */
static void test_change_races_verify(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("race.img", PASS, 1000, (const char *const[]){ NULL });
        g_autoptr(GDBusConnection) changer = root_bus();
        g_autoptr(GError) error = NULL;
        guint verified = 0, changes = 0;
        Pending change;

        g_assert_cmpint(lv_keys_call(bus, "AddPassphrase", img, PASS, PASS2, FALSE, NULL, &error), ==, 1);
        g_assert_no_error(error);

        gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
        memset(&change, 0, sizeof change);
        change.done = TRUE;
        while (g_get_monotonic_time() < end) {
                if (change.done) {
                        if (change.error)
                                g_assert_true(g_error_matches(change.error, G_DBUS_ERROR, G_DBUS_ERROR_FAILED) ||
                                              strstr(change.error->message, "locked"));
                        pending_clear(&change);
                        changes++;
                        call_async(changer, "ChangePassphrase",
                                   g_variant_new("(s@ay@ay@a{sv})", img, passphrase_bytes(PASS2),
                                                 passphrase_bytes(PASS2), lv_opts(NULL)),
                                   20000, &change);
                }
                gint slot = lv_verify_passphrase(bus, img, PASS2, &error);
                if (slot < 0) {
                        g_autofree char *name = lv_error_name(error);
                        if (g_strcmp0(name, LV_ERR("Busy")) == 0 && strstr(error->message, "locked")) {
                                g_clear_error(&error); /* the change holds it: fine */
                                continue;
                        }
                        g_error("after %u verifications and %u changes: %s", verified, changes, error->message);
                }
                verified++;
                g_main_context_iteration(NULL, FALSE);
        }
        pending_wait(&change);
        pending_clear(&change);
        g_test_message("%u verifications during %u changes, all right", verified, changes);
        g_assert_cmpuint(verified, >, 20);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        virDomainPtr guest = lv_start_guest(GUEST);

        g_test_add_data_func("/trust-kdf/pbkdf2-huge/aes", "aes", test_pbkdf2_huge);
        g_test_add_data_func("/trust-kdf/pbkdf2-huge/serpent", "serpent", test_pbkdf2_huge);
        g_test_add_func("/trust-kdf/argon2-memory", test_argon2_memory);
        g_test_add_func("/trust-kdf/digest-huge", test_digest_huge);
        for (gsize i = 0; i < G_N_ELEMENTS(cipher_cases); i++) {
                g_autofree char *name = g_strdup_printf("/trust-kdf/cipher/%s", cipher_cases[i].name);
                g_test_add_data_func(name, &cipher_cases[i], test_cipher_refused);
        }
        g_test_add_func("/trust-kdf/derivations-per-user", test_derivations_per_user);
        g_test_add_func("/trust-kdf/attach-guesses", test_attach_guesses);
        g_test_add_func("/trust-kdf/rearm-guesses", test_rearm_guesses);
        g_test_add_func("/trust-kdf/argon2-iterations-option", test_argon2_iterations_option);
        g_test_add_func("/trust-kdf/key-methods-sched-batch", test_key_methods_niced);
        g_test_add_func("/trust-kdf/change-races-verify", test_change_races_verify);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
