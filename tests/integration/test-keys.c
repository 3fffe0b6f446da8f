/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Key management on the real stack: ChangePassphrase, AddPassphrase,
 * RemovePassphrase and VerifyPassphrase on LUKS1 and LUKS2 sources,
 * attached (natively, QEMU reading on) or not.
 *
 * The daemon runs with --source-timeout=2 and --fault-file=/run/lvtest/fault
 * (kill -9 at a numbered step of a header write).  hang-fuse.py (argv[1])
 * provides a source whose look-up hangs and one whose writes hang. */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <fcntl.h>
#include <signal.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS                 "first passphrase"
#define PASS2                "second passphrase"
#define PASS3                "third passphrase"
#define PATTERN              0x4e
#define ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"
#define INTERACTIVE_REQUIRED "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
#define INVALID_ARGS         "org.freedesktop.DBus.Error.InvalidArgs"
#define FAULT_FILE           "/run/lvtest/fault"

static GDBusConnection *bus;
static virDomainPtr guest;
static const char *fuse_script;

/* ------------------------------------------------------------- helpers */

static gint change(const char *source, const char *old, const char *new_pass, GError **error) {
        return lv_keys_call(bus, "ChangePassphrase", source, old, new_pass, FALSE, NULL, error);
}

static gint add(const char *source, const char *existing, const char *new_pass, GError **error) {
        return lv_keys_call(bus, "AddPassphrase", source, existing, new_pass, FALSE, NULL, error);
}

static gint remove_pass(const char *source, const char *pass, gboolean force, GError **error) {
        return lv_keys_call(bus, "RemovePassphrase", source, pass, NULL, FALSE,
                            force ? lv_opts("force", g_variant_new_boolean(TRUE), NULL) : NULL, error);
}

/* Which slot pass opens, -1 if none (BadPassphrase, nothing else). */
static gint opens(const char *source, const char *pass) {
        g_autoptr(GError) error = NULL;
        gint slot = lv_verify_passphrase(bus, source, pass, &error);
        if (slot < 0)
                lv_assert_error(error, LV_ERR("BadPassphrase"));
        return slot;
}

static void assert_error_clear(GError **error, const char *name) {
        lv_assert_error(*error, name);
        g_clear_error(error);
}

/* Busy, because someone holds a lock on the source. */
static void assert_locked_clear(GError **error) {
        lv_assert_error(*error, LV_ERR("Busy"));
        g_assert_nonnull(strstr((*error)->message, "locked by another process"));
        g_clear_error(error);
}

/* The header area of a file (first len bytes), to show it unchanged. */
static GBytes *head_of(const char *path, gsize len) {
        g_autofree char *all = NULL;
        gsize n = 0;
        g_assert_true(g_file_get_contents(path, &all, &n, NULL));
        g_assert_cmpuint(n, >=, len);
        return g_bytes_new(all, len);
}

#define LUKS1_HEADER (2U << 20)
#define LUKS2_HEADER (16U << 20)

/* Probe's keyslots entry for slot, or NULL. */
static GVariant *probe_slot(const char *source, guint slot) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, source, &error);
        g_assert_no_error(error);
        g_autoptr(GVariant) slots = g_variant_lookup_value(info, "keyslots", G_VARIANT_TYPE("aa{sv}"));
        g_assert_nonnull(slots);
        for (gsize i = 0; i < g_variant_n_children(slots); i++) {
                GVariant *ks = g_variant_get_child_value(slots, i);
                guint32 n;
                g_assert_true(g_variant_lookup(ks, "slot", "u", &n));
                if (n == slot)
                        return ks;
                g_variant_unref(ks);
        }
        return NULL;
}

static guint32 active_slots(const char *source) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) info = lv_probe(bus, source, &error);
        guint32 n;
        g_assert_no_error(error);
        g_assert_true(g_variant_lookup(info, "active-keyslots", "u", &n));
        return n;
}

static char *slot_string(GVariant *ks, const char *key) {
        const char *s = NULL;
        return g_variant_lookup(ks, key, "&s", &s) ? g_strdup(s) : NULL;
}

static guint32 slot_u(GVariant *ks, const char *key) {
        guint32 u = 0;
        g_assert_true(g_variant_lookup(ks, key, "u", &u));
        return u;
}

/* Slot b was made like slot a: same PBKDF and its parameters. */
static void assert_same_pbkdf(const char *source, guint a, guint b) {
        g_autoptr(GVariant) ka = probe_slot(source, a);
        g_autoptr(GVariant) kb = probe_slot(source, b);
        g_assert_nonnull(ka);
        g_assert_nonnull(kb);
        g_autofree char *pa = slot_string(ka, "pbkdf"), *pb = slot_string(kb, "pbkdf");
        g_autofree char *ha = slot_string(ka, "hash"), *hb = slot_string(kb, "hash");
        g_autofree char *ca = slot_string(ka, "cipher"), *cb = slot_string(kb, "cipher");
        g_assert_cmpstr(pa, ==, pb);
        g_assert_cmpstr(ha, ==, hb);
        g_assert_cmpstr(ca, ==, cb);
        if (g_str_equal(pa, "pbkdf2"))
                g_assert_cmpuint(slot_u(ka, "iterations"), ==, slot_u(kb, "iterations"));
        else {
                g_assert_cmpuint(slot_u(ka, "time-cost"), ==, slot_u(kb, "time-cost"));
                g_assert_cmpuint(slot_u(ka, "memory-kib"), ==, slot_u(kb, "memory-kib"));
                g_assert_cmpuint(slot_u(ka, "parallel"), ==, slot_u(kb, "parallel"));
        }
}

/* ------------------------------------------------------------ the tests */

/* The passphrase of a natively attached LUKS1 volume is rotated while
 * QEMU reads the plaintext; the old one then fails, the new one attaches. */
static void test_native_rotate(void) {
        g_autofree char *img = lv_make_luks1_image("k-native.img", PASS, PATTERN, 16);
        g_autoptr(GError) error = NULL;

        g_autoptr(GVariant) before = probe_slot(img, 0);
        g_assert_nonnull(before);
        g_autofree char *hash = slot_string(before, "hash");
        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_autofree char *mode = lv_volume_prop_string(bus, path, "Mode");
        g_assert_cmpstr(mode, ==, "native");
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));

        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, 0);
        g_assert_no_error(error);

        /* QEMU keeps decrypting with the key it holds. */
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_false(lv_guest_reads_pattern(guest, PATTERN ^ 0xff, 65536));
        g_assert_cmpint(opens(img, PASS), ==, -1);
        gint slot = opens(img, PASS2);
        g_assert_cmpint(slot, >=, 0);
        g_assert_cmpuint(active_slots(img), ==, 1);
        /* Still PBKDF2 with the volume's hash: QEMU can open it. */
        g_autoptr(GVariant) after = probe_slot(img, (guint) slot);
        g_autofree char *pbkdf = slot_string(after, "pbkdf"), *hash2 = slot_string(after, "hash");
        g_assert_cmpstr(pbkdf, ==, "pbkdf2");
        g_assert_cmpstr(hash2, ==, hash);
        g_assert_cmpuint(slot_u(after, "iterations"), ==, slot_u(before, "iterations"));

        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);

        /* (An OS-less guest releases virtio-scsi disks, not virtio-blk.) */
        g_assert_null(
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error));
        assert_error_clear(&error, LV_ERR("BadPassphrase"));
        g_autofree char *path2 =
                lv_attach(bus, "lvtest-guest", img, PASS2, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_guest_reads_pattern(guest, PATTERN, 65536));
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);
}

/* Add, verify and remove on a LUKS1 file, passphrases through fds; the
 * last slot only with force. */
static void test_luks1_add_remove(void) {
        g_autofree char *img = lv_make_luks1_image("k-luks1.img", PASS, PATTERN, 4);
        g_autoptr(GError) error = NULL;

        gint s2 = lv_keys_call(bus, "AddPassphrase", img, PASS, PASS2, TRUE, NULL, &error);
        g_assert_no_error(error);
        g_assert_cmpint(s2, ==, 1);
        g_assert_cmpuint(active_slots(img), ==, 2);
        assert_same_pbkdf(img, 0, 1);
        g_assert_cmpint(opens(img, PASS), ==, 0);
        g_assert_cmpint(opens(img, PASS2), ==, 1);

        /* pbkdf-iterations overrides the count, nothing else. */
        gint s3 = lv_keys_call(bus, "AddPassphrase", img, PASS2, PASS3, FALSE,
                               lv_opts("pbkdf-iterations", g_variant_new_uint32(2345), NULL), &error);
        g_assert_no_error(error);
        g_assert_cmpint(s3, ==, 2);
        g_autoptr(GVariant) k3 = probe_slot(img, 2);
        g_assert_cmpuint(slot_u(k3, "iterations"), ==, 2345);
        /* Below PBKDF2's minimum: refused, after the passphrase was checked. */
        g_assert_cmpint(lv_keys_call(bus, "AddPassphrase", img, PASS3, "x", FALSE,
                                     lv_opts("pbkdf-iterations", g_variant_new_uint32(999), NULL), &error),
                        ==, -1);
        assert_error_clear(&error, INVALID_ARGS);

        /* Removing the slot a passphrase opens, through passphrase-fd. */
        g_assert_cmpint(lv_keys_call(bus, "RemovePassphrase", img, PASS2, NULL, TRUE, NULL, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens(img, PASS2), ==, -1);
        g_assert_cmpint(remove_pass(img, PASS3, FALSE, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(active_slots(img), ==, 1);

        /* The last one: refused without force, header untouched. */
        g_autoptr(GBytes) head = head_of(img, LUKS1_HEADER);
        g_assert_cmpint(remove_pass(img, PASS, FALSE, &error), ==, -1);
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "last"));
        g_clear_error(&error);
        g_autoptr(GBytes) head2 = head_of(img, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head2));
        g_assert_cmpint(opens(img, PASS), ==, 0);

        /* A wrong passphrase changes nothing either. */
        g_assert_cmpint(remove_pass(img, "wrong", TRUE, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("BadPassphrase"));
        g_assert_cmpint(add(img, "wrong", PASS2, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("BadPassphrase"));
        g_assert_cmpint(change(img, "wrong", PASS2, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("BadPassphrase"));
        g_autoptr(GBytes) head3 = head_of(img, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head3));

        /* With force: no key slot is left. */
        g_assert_cmpint(remove_pass(img, PASS, TRUE, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpuint(active_slots(img), ==, 0);
        g_assert_cmpint(opens(img, PASS), ==, -1);
}

/* LUKS2 (header changes need no device-mapper): change, add, remove; the
 * payload is never written. */
static void test_luks2(void) {
        g_autofree char *img = lv_make_luks2_image("k-luks2.img", PASS, 20);
        g_autoptr(GError) error = NULL;
        g_autofree char *tail_before = NULL, *tail_after = NULL;
        gsize n1 = 0, n2 = 0;

        /* Something in the payload (ciphertext, as far as anyone can
         * tell), so that a write over it would show. */
        g_assert_true(g_file_get_contents(img, &tail_before, &n1, NULL));
        for (gsize i = LUKS2_HEADER; i < n1; i++)
                tail_before[i] = (char) (i * 7 + 1);
        g_assert_true(g_file_set_contents(img, tail_before, (gssize) n1, NULL));
        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens(img, PASS), ==, -1);
        gint s = opens(img, PASS2);
        g_assert_cmpint(s, >=, 0);
        g_assert_cmpuint(active_slots(img), ==, 1);

        gint s3 = add(img, PASS2, PASS3, &error);
        g_assert_no_error(error);
        g_assert_cmpint(s3, >=, 0);
        assert_same_pbkdf(img, (guint) s, (guint) s3);
        g_assert_cmpint(remove_pass(img, PASS2, FALSE, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens(img, PASS3), ==, s3);
        g_assert_cmpint(remove_pass(img, PASS3, FALSE, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("NotSupported"));

        /* Only the header area changed: the payload is as it was. */
        g_assert_true(g_file_get_contents(img, &tail_after, &n2, NULL));
        g_assert_cmpuint(n1, ==, n2);
        g_assert_cmpint(memcmp(tail_before + LUKS2_HEADER, tail_after + LUKS2_HEADER, n1 - LUKS2_HEADER), ==, 0);
        g_assert_cmpint(memcmp(tail_before, tail_after, LUKS2_HEADER), !=, 0);

        /* cryptsetup agrees. */
        g_autofree char *keyfile = lv_sandbox_path("k-luks2.key");
        g_assert_true(g_file_set_contents(keyfile, PASS3, strlen(PASS3), NULL));
        const char *argv[] = { "cryptsetup", "open", "--test-passphrase", "--key-file", keyfile, img, NULL };
        g_assert_cmpint(lv_run_as(0, argv, 60, NULL, NULL), ==, 0);
        g_unlink(keyfile);
}

/* An argon2id slot begets an argon2id slot with the same costs. */
static void test_luks2_argon2(void) {
        g_autofree char *img = lv_make_luks2_image_pbkdf("k-argon.img", PASS, 20, "argon2id");
        g_autoptr(GError) error = NULL;

        gint s = add(img, PASS, PASS2, &error);
        g_assert_no_error(error);
        assert_same_pbkdf(img, 0, (guint) s);
        g_autoptr(GVariant) ks = probe_slot(img, (guint) s);
        g_autofree char *pbkdf = slot_string(ks, "pbkdf");
        g_assert_cmpstr(pbkdf, ==, "argon2id");
        g_assert_cmpuint(slot_u(ks, "memory-kib"), ==, 32768);
        g_assert_cmpuint(slot_u(ks, "time-cost"), ==, 4);
        g_assert_cmpuint(slot_u(ks, "parallel"), ==, 1);
}

/* No free slot: add and change are refused (change needs a free slot for
 * its new key before the old one goes). */
static void test_no_free_slot(void) {
        g_autofree char *img = lv_make_luks1_image("k-full.img", PASS, PATTERN, 4);
        g_autoptr(GError) error = NULL;

        for (int i = 1; i < 8; i++) {
                g_autofree char *p = g_strdup_printf("extra %d", i);
                g_assert_cmpint(add(img, PASS, p, &error), ==, i);
                g_assert_no_error(error);
        }
        g_autoptr(GBytes) head = head_of(img, LUKS1_HEADER);
        g_assert_cmpint(add(img, PASS, PASS2, &error), ==, -1);
        lv_assert_error(error, LV_ERR("NotSupported"));
        g_assert_nonnull(strstr(error->message, "in use"));
        g_clear_error(&error);
        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("NotSupported"));
        g_autoptr(GBytes) head2 = head_of(img, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head2));
}

/* A block device: libcryptsetup's lock file is taken (and held by
 * another process → Busy). */
static void test_block_device(void) {
        g_autofree char *img = lv_make_luks2_image("k-block.img", PASS, 20);
        g_autofree char *dev = lv_losetup(img);
        g_autoptr(GError) error = NULL;
        struct stat st;

        g_assert_cmpint(change(dev, PASS, PASS2, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens(dev, PASS2), >=, 0);
        g_assert_cmpint(opens(img, PASS), ==, -1);

        g_assert_cmpint(stat(dev, &st), ==, 0);
        g_autofree char *lockfile = g_strdup_printf("/run/cryptsetup/L_%u:%u", major(st.st_rdev), minor(st.st_rdev));
        /* Released the way libcryptsetup releases it. */
        g_assert_false(g_file_test(lockfile, G_FILE_TEST_EXISTS));
        g_assert_cmpint(g_mkdir_with_parents("/run/cryptsetup", 0700), ==, 0);
        GSubprocess *holder = lv_hold_flock(lockfile);
        g_assert_cmpint(change(dev, PASS2, PASS, &error), ==, -1);
        assert_locked_clear(&error);
        lv_kill_wait(holder);
        g_assert_cmpint(opens(dev, PASS2), >=, 0);
        lv_losetup_detach(dev);
}

/* Another process holds a flock on the file: Busy at once, nothing
 * written; a shared look (VerifyPassphrase) is refused the same way. */
static void test_flock_busy(void) {
        g_autofree char *img = lv_make_luks1_image("k-locked.img", PASS, PATTERN, 4);
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) head = head_of(img, LUKS1_HEADER);

        GSubprocess *holder = lv_hold_flock(img);
        gint64 t0 = g_get_monotonic_time();
        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, -1);
        assert_locked_clear(&error);
        g_assert_cmpint(lv_verify_passphrase(bus, img, PASS, &error), ==, -1);
        assert_locked_clear(&error);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
        lv_kill_wait(holder);

        g_autoptr(GBytes) head2 = head_of(img, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head2));
        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, 0);
        g_assert_no_error(error);
}

/* A source that stops answering: its look-up (Busy after the 2 s
 * deadline), or its header write half-way (Busy; the daemon keeps the
 * source locked until the write ends, and answers everyone else). */
static void test_hanging(void) {
        g_autofree char *backing = lv_make_luks1_image("k-backing.img", PASS, PATTERN, 4);
        g_autofree char *dir = NULL;
        g_autoptr(GError) error = NULL;
        GSubprocess *fs = lv_mount_hang_fuse(fuse_script, "k-fuse", backing, &dir);
        g_autofree char *hang = g_build_filename(dir, "hang.img", NULL);
        g_autofree char *hang_write = g_build_filename(dir, "hang-write.img", NULL);
        g_autoptr(GBytes) head = head_of(backing, LUKS1_HEADER);

        gint64 t0 = g_get_monotonic_time();
        g_assert_cmpint(change(hang, PASS, PASS2, &error), ==, -1);
        lv_assert_error(error, LV_ERR("Busy"));
        g_assert_nonnull(strstr(error->message, "did not respond within 2 s"));
        g_clear_error(&error);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 6 * G_USEC_PER_SEC);

        /* It reads fine (the passphrase is right)... */
        g_assert_cmpint(opens(hang_write, PASS), ==, 0);
        /* ...and does not finish writing. */
        t0 = g_get_monotonic_time();
        g_assert_cmpint(change(hang_write, PASS, PASS2, &error), ==, -1);
        lv_assert_error(error, LV_ERR("Busy"));
        g_assert_nonnull(strstr(error->message, "did not finish writing"));
        g_clear_error(&error);
        g_assert_cmpint(g_get_monotonic_time() - t0, <, 8 * G_USEC_PER_SEC);
        /* The abandoned write still holds the lock. */
        g_assert_cmpint(change(hang_write, PASS, PASS3, &error), ==, -1);
        assert_locked_clear(&error);

        /* Everyone else is answered meanwhile. */
        g_autofree char *other = lv_make_luks1_image("k-other.img", PASS, PATTERN, 4);
        g_assert_cmpint(opens(other, PASS), ==, 0);

        lv_unmount_hang_fuse(fs, dir);
        g_autoptr(GBytes) head2 = head_of(backing, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head2));
}

/* A kill -9 between any two write steps leaves a header that opens with
 * the old passphrase or the new — which one, the step decides. */
typedef struct CrashCase {
        const char *name;
        guint luks_version;
        const char *fault;
        gboolean old_opens, new_opens;
        gboolean tear_primary; /* then damage LUKS2's primary copy, as a torn write would */
} CrashCase;

static const CrashCase crash_cases[] = {
        { "luks1-new-area-only", 1, "keys:2", TRUE, FALSE, FALSE },
        { "luks1-old-area-not-wiped", 1, "keys:3", FALSE, TRUE, FALSE },
        { "luks2-new-area-only", 2, "keys:2", TRUE, FALSE, FALSE },
        { "luks2-primary-only", 2, "keys:1", TRUE, TRUE, FALSE },
        { "luks2-primary-torn", 2, "keys:1", TRUE, FALSE, TRUE },
        { "luks2-old-area-not-wiped", 2, "keys:3", FALSE, TRUE, FALSE },
};

static void test_crash(gconstpointer data) {
        const CrashCase *cc = data;
        g_autofree char *name = g_strdup_printf("k-crash-%s.img", cc->name);
        g_autofree char *img = cc->luks_version == 1 ? lv_make_luks1_image(name, PASS, PATTERN, 4)
                                                     : lv_make_luks2_image(name, PASS, 20);
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(FAULT_FILE, cc->fault, -1, NULL));
        g_assert_cmpint(change(img, PASS, PASS2, &error), ==, -1);
        g_assert_nonnull(error); /* the daemon died: no reply */
        g_clear_error(&error);
        g_assert_false(g_file_test(FAULT_FILE, G_FILE_TEST_EXISTS));

        if (cc->tear_primary) {
                /* The primary's JSON area (after its 4 KiB binary header):
                 * garbage in the middle of it fails its checksum. */
                FILE *f = fopen(img, "r+");
                g_assert_nonnull(f);
                g_assert_cmpint(fseek(f, 4096 + 512, SEEK_SET), ==, 0);
                for (int i = 0; i < 512; i++)
                        fputc(0x5a, f);
                g_assert_cmpint(fclose(f), ==, 0);
        }

        /* The next call activates a fresh daemon. */
        g_assert_cmpint(opens(img, PASS) >= 0, ==, cc->old_opens);
        g_assert_cmpint(opens(img, PASS2) >= 0, ==, cc->new_opens);
        /* Either way the volume is usable: the change can be completed. */
        const char *works = cc->new_opens ? PASS2 : PASS;
        g_assert_cmpint(change(img, works, PASS3, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(opens(img, PASS3), >=, 0);
}

/* Malformed calls, answered at once. */
static void test_bad_arguments(void) {
        g_autofree char *img = lv_make_luks1_image("k-args.img", PASS, PATTERN, 4);
        g_autofree char *plain = lv_make_plain_file("k-plain.img", 4);
        g_autoptr(GError) error = NULL;

        /* Both the argument and the fd, or neither. */
        g_assert_cmpint(lv_keys_call(bus, "VerifyPassphrase", img, "", NULL, FALSE, NULL, &error), ==, -1);
        assert_error_clear(&error, INVALID_ARGS);
        g_assert_cmpint(lv_keys_call(bus, "ChangePassphrase", img, PASS, "", FALSE, NULL, &error), ==, -1);
        assert_error_clear(&error, INVALID_ARGS);
        g_autoptr(GUnixFDList) fds = g_unix_fd_list_new();
        gint idx = g_unix_fd_list_append(fds, 0, NULL);
        GVariant *params = g_variant_new("(s@ay@a{sv})", img,
                                         g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                         lv_opts("passphrase-fd", g_variant_new_handle(idx), NULL));
        g_assert_null(lv_call_manager(bus, "VerifyPassphrase", params, fds, &error));
        assert_error_clear(&error, INVALID_ARGS);
        /* Options of other methods. */
        g_assert_cmpint(lv_keys_call(bus, "VerifyPassphrase", img, PASS, NULL, FALSE,
                                     lv_opts("force", g_variant_new_boolean(TRUE), NULL), &error),
                        ==, -1);
        assert_error_clear(&error, INVALID_ARGS);
        g_assert_cmpint(lv_keys_call(bus, "RemovePassphrase", img, PASS, NULL, FALSE,
                                     lv_opts("pbkdf-iterations", g_variant_new_uint32(5000), NULL), &error),
                        ==, -1);
        assert_error_clear(&error, INVALID_ARGS);
        /* Paths. */
        g_assert_cmpint(lv_verify_passphrase(bus, "relative.img", PASS, &error), ==, -1);
        assert_error_clear(&error, INVALID_ARGS);
        g_assert_cmpint(lv_verify_passphrase(bus, plain, PASS, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("NotLuks"));
        g_assert_cmpint(change(plain, PASS, PASS2, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("NotLuks"));
        g_assert_cmpint(opens(img, PASS), ==, 0);
}

/* A plain user: polkit says no to every method (the action is
 * auth_admin_keep); nothing changes. */
static void test_plain_user_refused(void) {
        g_autofree char *img = lv_make_luks1_image("k-user.img", PASS, PATTERN, 4);
        g_autoptr(GDBusConnection) user = lv_bus_as_uid(LV_TEST_UID_USER);
        g_autoptr(GBytes) head = head_of(img, LUKS1_HEADER);
        const char *methods[] = { "ChangePassphrase", "AddPassphrase", "RemovePassphrase", "VerifyPassphrase" };

        for (gsize i = 0; i < G_N_ELEMENTS(methods); i++) {
                g_autoptr(GError) error = NULL;
                g_assert_cmpint(lv_keys_call(user, methods[i], img, PASS, PASS2, i % 2 == 0, NULL, &error), ==, -1);
                g_autofree char *name = lv_error_name(error);
                if (!g_str_equal(name, ACCESS_DENIED) && !g_str_equal(name, INTERACTIVE_REQUIRED))
                        g_error("%s: expected a polkit refusal, got %s: %s", methods[i], name, error->message);
                g_assert_nonnull(strstr(error->message, "manage-keys"));
        }
        g_autoptr(GBytes) head2 = head_of(img, LUKS1_HEADER);
        g_assert_true(g_bytes_equal(head, head2));
}

/* The sixth wrong passphrase within a minute from one (non-root) user is
 * refused with Busy and the wait — the right one too, then; root is not
 * limited.  The polkit rule sees the operation. */
static void test_rate_limit(void) {
        g_autofree char *img = lv_make_luks1_image("k-limit.img", PASS, PATTERN, 4);
        g_autoptr(GDBusConnection) admin = lv_bus_as_uid(LV_TEST_UID_ADMIN);
        g_autoptr(GError) error = NULL;

        lv_polkit_set_rules("50-keys.rules",
                            "polkit.addRule(function(action, subject) {\n"
                            "  if (subject.user != 'lvadmin' || action.id != 'org.example.luksvolume1.manage-keys')\n"
                            "    return polkit.Result.NOT_HANDLED;\n"
                            "  return action.lookup('operation') == 'verify-passphrase' ? polkit.Result.YES : "
                            "polkit.Result.NO;\n"
                            "});\n");

        g_assert_cmpint(lv_keys_call(admin, "AddPassphrase", img, PASS, PASS2, FALSE, NULL, &error), ==, -1);
        assert_error_clear(&error, ACCESS_DENIED);

        g_assert_cmpint(lv_verify_passphrase(admin, img, PASS, &error), ==, 0);
        g_assert_no_error(error);
        for (int i = 0; i < 5; i++) {
                g_assert_cmpint(lv_verify_passphrase(admin, img, "wrong", &error), ==, -1);
                assert_error_clear(&error, LV_ERR("BadPassphrase"));
        }
        g_assert_cmpint(lv_verify_passphrase(admin, img, "wrong", &error), ==, -1);
        lv_assert_error(error, LV_ERR("Busy"));
        g_test_message("%s", error->message);
        g_assert_nonnull(strstr(error->message, "try again in "));
        guint wait = 0;
        g_assert_cmpint(sscanf(strstr(error->message, "try again in ") + strlen("try again in "), "%u", &wait), ==, 1);
        g_assert_cmpuint(wait, >, 40);
        g_assert_cmpuint(wait, <=, 60);
        g_clear_error(&error);
        g_assert_cmpint(lv_verify_passphrase(admin, img, PASS, &error), ==, -1);
        assert_error_clear(&error, LV_ERR("Busy"));

        /* Root: no limit. */
        for (int i = 0; i < 7; i++)
                g_assert_cmpint(opens(img, "wrong"), ==, -1);
        g_assert_cmpint(opens(img, PASS), ==, 0);

        lv_polkit_set_rules("50-keys.rules", NULL);
}

static char *make_luks1_with(const char *name, const char *const *extra) {
        return lv_make_luks1_cryptsetup(name, PASS, 1000, extra);
}

static char *probe_string(GVariant *info, const char *key) {
        const char *v = NULL;
        g_assert_true(g_variant_lookup(info, key, "&s", &v));
        return g_strdup(v);
}

/* Probe's native-obstacle says why auto would not pick native mode, and
 * native mode is refused for exactly those volumes, before anything is
 * made; the rest of the richer Probe (payload-offset, sector-size, size,
 * keyslots) agrees with the header as cryptsetup wrote it. */
static void test_probe_native_obstacle(void) {
        g_autoptr(GError) error = NULL;
        g_autofree char *good = make_luks1_with("obstacle-none.img", (const char *const[]){ NULL });
        g_autofree char *sha3 =
                make_luks1_with("obstacle-hash.img", (const char *const[]){ "--hash", "sha3-256", NULL });
        g_autofree char *benbi = make_luks1_with(
                "obstacle-ivgen.img", (const char *const[]){ "--cipher", "aes-cbc-benbi", "--key-size", "256", NULL });
        g_autofree char *luks2 = lv_make_luks2_image("obstacle-luks2.img", PASS, 20);
        const struct {
                const char *path;
                const char *expect; /* in native-obstacle; NULL: empty */
        } cases[] = {
                { good, NULL },
                { sha3, "no PBKDF2 hash 'sha3-256'" },
                { benbi, "mode 'cbc-benbi'" }, /* off the allow-list (header-policy.h) */
                { luks2, "LUKS1 only" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GVariant) info = lv_probe(bus, cases[i].path, &error);
                g_assert_no_error(error);
                g_autofree char *obstacle = probe_string(info, "native-obstacle");
                gboolean capable = FALSE;
                g_assert_true(g_variant_lookup(info, "native-capable", "b", &capable));
                g_test_message("%s: native-obstacle '%s'", cases[i].path, obstacle);
                if (!cases[i].expect) {
                        g_assert_cmpstr(obstacle, ==, "");
                        g_assert_true(capable);
                        continue;
                }
                g_assert_nonnull(strstr(obstacle, cases[i].expect));
                g_assert_false(capable);

                /* mode=native: NotSupported with the same reason, nothing made. */
                guint secrets = lv_count_secrets();
                g_autofree char *path =
                        lv_attach(bus, "lvtest-guest", cases[i].path, PASS,
                                  lv_opts("mode", g_variant_new_string("native"), "bus", g_variant_new_string("scsi"),
                                          "target", g_variant_new_string("sdo"), NULL),
                                  &error);
                g_assert_null(path);
                lv_assert_error(error, LV_ERR("NotSupported"));
                g_assert_nonnull(strstr(error->message, cases[i].expect));
                g_clear_error(&error);
                g_assert_cmpuint(lv_count_secrets(), ==, secrets);
                g_assert_false(lv_domain_has_disk(guest, "sdo"));
        }

        /* The header facts, against the header cryptsetup wrote: LUKS1's
         * payload starts at sector 4096 (2 MiB) of the 8 MiB file. */
        g_autoptr(GVariant) info = lv_probe(bus, good, &error);
        g_assert_no_error(error);
        guint64 offset = 0, size = 0;
        guint32 sector = 0;
        g_assert_true(g_variant_lookup(info, "payload-offset", "t", &offset));
        g_assert_true(g_variant_lookup(info, "sector-size", "u", &sector));
        g_assert_true(g_variant_lookup(info, "size", "t", &size));
        g_assert_cmpuint(offset, ==, 4096 * 512);
        g_assert_cmpuint(sector, ==, 512);
        g_assert_cmpuint(size, ==, (8 << 20) - offset);
        g_autoptr(GVariant) ks = probe_slot(good, 0);
        g_assert_nonnull(ks);
        g_autofree char *pbkdf = slot_string(ks, "pbkdf");
        g_assert_cmpstr(pbkdf, ==, "pbkdf2");
        g_assert_cmpuint(slot_u(ks, "iterations"), ==, 1000);
        g_autoptr(GVariant) ks1 = probe_slot(good, 1);
        if (ks1) {
                g_autofree char *state = slot_string(ks1, "state");
                g_assert_cmpstr(state, !=, "active");
        }
}

/* The scheduling policy of each of the daemon's threads, from /proc. */
static GArray *thread_policies(guint32 pid) {
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
                        continue; /* the thread ended meanwhile */
                /* After "(comm)": state is field 3, policy field 41. */
                const char *p = strrchr(stat, ')');
                g_assert_nonnull(p);
                g_auto(GStrv) f = g_strsplit(p + 2, " ", 0);
                g_assert_cmpuint(g_strv_length(f), >, 38);
                long policy = strtol(f[38], NULL, 10);
                g_array_append_val(nices, policy);
        }
        return nices;
}

static void on_verify_reply(GObject *source, GAsyncResult *res, gpointer user_data) {
        GVariant **reply = user_data;
        g_autoptr(GError) error = NULL;
        *reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), res, &error);
        g_assert_no_error(error);
}

/* The key slots are tried on a thread of its own under SCHED_BATCH (the
 * event loop stays a normal thread: luks-derive.c says why not nice 10 any
 * more): seen in /proc while a costly verification runs, and gone with it.
 * Policies, not nice values: those the test runner's own nice decides. */
static void test_verify_batch(void) {
        g_autofree char *img = lv_make_luks1_cryptsetup("niced.img", PASS, 3000000, (const char *const[]){ NULL });
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) host = lv_probe(bus, "", &error); /* activates the daemon */
        g_assert_no_error(error);
        guint32 pid = lv_daemon_pid(bus);
        g_autoptr(GVariant) reply = NULL;
        gboolean seen_niced = FALSE;

        g_assert_cmpuint(pid, !=, 0);
        g_autoptr(GArray) before = thread_policies(pid);
        g_assert_cmpuint(before->len, >, 0);

        g_dbus_connection_call(bus, LV_BUS_NAME, LV_PATH, LV_IFACE, "VerifyPassphrase",
                               g_variant_new("(s@ay@a{sv})", img,
                                             g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, PASS, strlen(PASS), 1),
                                             lv_opts(NULL)),
                               G_VARIANT_TYPE("(u)"), G_DBUS_CALL_FLAGS_NONE, 120000, NULL, on_verify_reply, &reply);
        while (!reply) {
                g_main_context_iteration(NULL, FALSE);
                g_autoptr(GArray) policies = thread_policies(pid);
                for (guint k = 0; k < policies->len; k++) {
                        long n = g_array_index(policies, long, k);
                        g_assert_true(n == SCHED_OTHER || n == SCHED_BATCH);
                        seen_niced |= n == SCHED_BATCH;
                }
                g_usleep(20000);
        }
        g_assert_true(seen_niced);
        guint32 slot = 99;
        g_variant_get(reply, "(u)", &slot);
        g_assert_cmpuint(slot, ==, 0);

        /* Nothing stays batch: the thread ended with the work. */
        g_autoptr(GArray) after = thread_policies(pid);
        for (guint k = 0; k < after->len; k++)
                g_assert_cmpint(g_array_index(after, long, k), ==, SCHED_OTHER);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();
        if (argc < 2)
                g_error("usage: test-keys [GTEST-OPTIONS] PATH-TO-hang-fuse.py");
        fuse_script = argv[1];

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/keys/native-rotate", test_native_rotate);
        g_test_add_func("/keys/luks1-add-remove", test_luks1_add_remove);
        g_test_add_func("/keys/luks2", test_luks2);
        g_test_add_func("/keys/luks2-argon2", test_luks2_argon2);
        g_test_add_func("/keys/no-free-slot", test_no_free_slot);
        g_test_add_func("/keys/block-device", test_block_device);
        g_test_add_func("/keys/flock-busy", test_flock_busy);
        g_test_add_func("/keys/hanging", test_hanging);
        for (gsize i = 0; i < G_N_ELEMENTS(crash_cases); i++) {
                g_autofree char *name = g_strdup_printf("/keys/crash/%s", crash_cases[i].name);
                g_test_add_data_func(name, &crash_cases[i], test_crash);
        }
        g_test_add_func("/keys/bad-arguments", test_bad_arguments);
        g_test_add_func("/keys/plain-user-refused", test_plain_user_refused);
        g_test_add_func("/keys/rate-limit", test_rate_limit);
        g_test_add_func("/keys/probe-native-obstacle", test_probe_native_obstacle);
        g_test_add_func("/keys/verify-sched-batch", test_verify_batch);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
