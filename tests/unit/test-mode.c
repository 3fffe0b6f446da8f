/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every row of the mode-selection table, plus the version codec. */
#include <glib.h>

#include "mode.h"

typedef struct Row {
        const char *name;
        unsigned long libvirt, qemu;
        bool is_qemu;
        unsigned luks;
        VolumeMode requested;
        bool dm_crypt;
        VolumeMode expect;
        const char *reason_contains; /* for refusals */
        bool discard;                /* option discard: only dm-crypt passes them on */
} Row;

#define V LV_VERSION
static const Row rows[] = {
        /* auto */
        { "auto/luks1/new/no-dm", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, false, VOLUME_MODE_NATIVE, NULL },
        { "auto/luks1/new/dm", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, true, VOLUME_MODE_NATIVE, NULL },
        { "auto/luks1/exact-minimums", V(4, 4, 0), V(2, 6, 0), true, 1, VOLUME_MODE_AUTO, false, VOLUME_MODE_NATIVE,
          NULL },
        { "auto/luks1/old-libvirt/dm", V(4, 3, 9), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP,
          NULL },
        { "auto/luks1/old-libvirt/no-dm", V(4, 3, 9), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, false,
          _VOLUME_MODE_INVALID, "libvirt 4.3.9 is older than 4.4.0" },
        /* libvirt before 3.3.0 mangled passphrases of 16n bytes; before 4.4.0
         * it cannot detach by alias: both below the floor. */
        { "auto/luks1/libvirt-3.2/no-dm", V(3, 2, 0), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, false,
          _VOLUME_MODE_INVALID, "libvirt 3.2.0 is older than 4.4.0" },
        { "auto/luks1/old-qemu/dm", V(9, 0, 0), V(2, 5, 99), true, 1, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP,
          NULL },
        { "auto/luks1/old-qemu/no-dm", V(9, 0, 0), V(2, 5, 0), true, 1, VOLUME_MODE_AUTO, false, _VOLUME_MODE_INVALID,
          "QEMU 2.5.0 is older than 2.6.0" },
        { "auto/luks1/not-qemu/dm", V(9, 0, 0), V(7, 2, 0), false, 1, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP,
          NULL },
        { "auto/luks1/not-qemu/no-dm", V(9, 0, 0), V(7, 2, 0), false, 1, VOLUME_MODE_AUTO, false, _VOLUME_MODE_INVALID,
          "not QEMU" },
        { "auto/luks2/new/dm", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP, NULL },
        { "auto/luks2/new/no-dm", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_AUTO, false, _VOLUME_MODE_INVALID,
          "LUKS2 volumes need dm-crypt" },
        { "auto/luks2/old/no-dm", V(2, 0, 0), V(2, 0, 0), true, 2, VOLUME_MODE_AUTO, false, _VOLUME_MODE_INVALID,
          "dm-crypt is not available" },
        /* native */
        { "native/luks1/new", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_NATIVE, false, VOLUME_MODE_NATIVE, NULL },
        { "native/luks1/old-libvirt", V(4, 3, 0), V(7, 2, 0), true, 1, VOLUME_MODE_NATIVE, true, _VOLUME_MODE_INVALID,
          "libvirt 4.3.0 is older" },
        { "native/luks1/old-qemu", V(9, 0, 0), V(2, 5, 0), true, 1, VOLUME_MODE_NATIVE, true, _VOLUME_MODE_INVALID,
          "QEMU 2.5.0 is older" },
        { "native/luks2", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_NATIVE, true, _VOLUME_MODE_INVALID,
          "QEMU decrypts LUKS1 only" },
        { "native/luks1/not-qemu", V(9, 0, 0), V(7, 2, 0), false, 1, VOLUME_MODE_NATIVE, true, _VOLUME_MODE_INVALID,
          "not QEMU" },
        /* cryptsetup */
        { "cryptsetup/luks1/dm", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_CRYPTSETUP, true, VOLUME_MODE_CRYPTSETUP,
          NULL },
        { "cryptsetup/luks2/dm", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_CRYPTSETUP, true, VOLUME_MODE_CRYPTSETUP,
          NULL },
        { "cryptsetup/luks1/no-dm", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_CRYPTSETUP, false,
          _VOLUME_MODE_INVALID, "needs dm-crypt" },
        { "cryptsetup/luks2/no-dm", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_CRYPTSETUP, false,
          _VOLUME_MODE_INVALID, "needs dm-crypt" },
        /* discard: QEMU's LUKS driver drops them, dm-crypt passes them on */
        { "auto/luks1/new/dm/discard", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP,
          NULL, true },
        { "auto/luks1/new/no-dm/discard", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_AUTO, false,
          _VOLUME_MODE_INVALID, "passes no discard requests", true },
        { "auto/luks2/new/dm/discard", V(9, 0, 0), V(7, 2, 0), true, 2, VOLUME_MODE_AUTO, true, VOLUME_MODE_CRYPTSETUP,
          NULL, true },
        { "native/luks1/new/discard", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_NATIVE, true, _VOLUME_MODE_INVALID,
          "passes no discard requests", true },
        { "native/luks1/old-qemu/discard", V(9, 0, 0), V(2, 5, 0), true, 1, VOLUME_MODE_NATIVE, true,
          _VOLUME_MODE_INVALID, "QEMU 2.5.0 is older", true },
        { "cryptsetup/luks1/dm/discard", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_CRYPTSETUP, true,
          VOLUME_MODE_CRYPTSETUP, NULL, true },
        { "cryptsetup/luks1/no-dm/discard", V(9, 0, 0), V(7, 2, 0), true, 1, VOLUME_MODE_CRYPTSETUP, false,
          _VOLUME_MODE_INVALID, "needs dm-crypt", true },
        /* nonsense */
        { "auto/luks3", V(9, 0, 0), V(7, 2, 0), true, 3, VOLUME_MODE_AUTO, true, _VOLUME_MODE_INVALID,
          "unknown LUKS version 3" },
        { "auto/luks0", V(9, 0, 0), V(7, 2, 0), true, 0, VOLUME_MODE_AUTO, true, _VOLUME_MODE_INVALID,
          "unknown LUKS version 0" },
};

static void test_row(gconstpointer data) {
        const Row *row = data;
        char reason[256];
        ModeInput in = {
                .libvirt_version = row->libvirt,
                .hypervisor_version = row->qemu,
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = row->is_qemu,
                .luks_version = row->luks,
                .requested = row->requested,
                .dm_crypt_available = row->dm_crypt,
                .discard = row->discard,
        };

        VolumeMode got = mode_select(&in, reason, sizeof reason);
        g_assert_cmpint(got, ==, row->expect);
        if (row->expect < 0) {
                g_assert_cmpstr(reason, !=, "");
                g_assert_nonnull(strstr(reason, row->reason_contains));
        } else
                g_assert_cmpstr(reason, ==, "");
}

static void test_raised_minimums(void) {
        /* The daemon setting that raises the gate above the host's
         * versions turns a native-capable host into a cryptsetup one. */
        char reason[256];
        ModeInput in = {
                .libvirt_version = V(9, 0, 0),
                .hypervisor_version = V(7, 2, 0),
                .min_libvirt_version = V(99, 0, 0),
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = true,
                .luks_version = 1,
                .requested = VOLUME_MODE_AUTO,
                .dm_crypt_available = true,
        };
        g_assert_false(mode_native_gate(&in));
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_CRYPTSETUP);
        in.min_libvirt_version = LV_MIN_LIBVIRT_VERSION;
        g_assert_true(mode_native_gate(&in));
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
}

/* A passphrase QEMU cannot take (NUL bytes, not UTF-8): auto falls back to
 * cryptsetup mode, native is refused with the reason. */
static void test_binary_passphrase(void) {
        char reason[256];
        ModeInput in = {
                .libvirt_version = V(9, 0, 0),
                .hypervisor_version = V(7, 2, 0),
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = true,
                .luks_version = 1,
                .requested = VOLUME_MODE_AUTO,
                .dm_crypt_available = true,
                .passphrase_not_text = true,
        };
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_CRYPTSETUP);
        in.dm_crypt_available = false;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "UTF-8 text without NUL bytes"));
        in.requested = VOLUME_MODE_NATIVE;
        in.dm_crypt_available = true;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "UTF-8 text without NUL bytes"));
        in.passphrase_not_text = false;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        g_assert_null(mode_native_obstacle(&in, reason, sizeof reason));
}

/* The header shim (issue 17): with device-mapper, LUKS2 with 512-byte
 * sectors goes native through a shim, LUKS1 too (unless the caller asks
 * for the volume's own header); 4096-byte sectors, integrity, requirement
 * flags and non-aes ciphers keep LUKS2 in cryptsetup mode with the reason
 * in the native obstacle.  Without device-mapper nothing changes. */
static void test_shim(void) {
        char reason[512], buf[512];
        ModeInput base = {
                .libvirt_version = V(9, 0, 0),
                .hypervisor_version = V(7, 2, 0),
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = true,
                .luks_version = 2,
                .requested = VOLUME_MODE_AUTO,
                .dm_crypt_available = true,
                .dm_linear_available = true,
                .cipher = "aes",
                .cipher_mode = "xts-plain64",
                .hash = "sha256",
                .sector_size = 512,
        };
        ModeInput in = base;

        /* LUKS2, 512-byte sectors: native, shim. */
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(mode_native_header(&in), ==, NATIVE_HEADER_SHIM);
        g_assert_null(mode_native_obstacle(&in, buf, sizeof buf));
        /* A binary passphrase never reaches QEMU through a shim. */
        in.passphrase_not_text = true;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        /* Nor do argon2 slots (no PBKDF2 hash). */
        in.hash = "";
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);

        /* 4096-byte sectors: cryptsetup, and the obstacle names the size. */
        in = base;
        in.sector_size = 4096;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_CRYPTSETUP);
        g_assert_nonnull(strstr(mode_native_obstacle(&in, buf, sizeof buf), "4096-byte sectors"));
        in.requested = VOLUME_MODE_NATIVE;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "4096-byte sectors"));

        /* Integrity, requirements, serpent: no shim. */
        in = base;
        in.integrity = true;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_CRYPTSETUP);
        g_assert_nonnull(strstr(mode_native_obstacle(&in, buf, sizeof buf), "integrity"));
        in = base;
        in.requirements = true;
        g_assert_nonnull(strstr(mode_native_obstacle(&in, buf, sizeof buf), "requirement"));
        in = base;
        in.cipher = "serpent";
        g_assert_nonnull(strstr(mode_native_obstacle(&in, buf, sizeof buf), "serpent"));
        /* Discards still need dm-crypt. */
        in = base;
        in.discard = true;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_CRYPTSETUP);

        /* No device-mapper: LUKS2 as before. */
        in = base;
        in.dm_linear_available = false;
        in.dm_crypt_available = false;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "LUKS2 volumes need dm-crypt"));

        /* LUKS1: the shim by default, the volume's own header on request. */
        in = base;
        in.luks_version = 1;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(mode_native_header(&in), ==, NATIVE_HEADER_SHIM);
        in.native_header = NATIVE_HEADER_VOLUME;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(mode_native_header(&in), ==, NATIVE_HEADER_VOLUME);
        /* LUKS2 with the volume's own header: impossible. */
        in.luks_version = 2;
        in.requested = VOLUME_MODE_NATIVE;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "QEMU decrypts LUKS1 only"));
        /* A shim asked for without device-mapper: refused with the reason. */
        in = base;
        in.luks_version = 1;
        in.native_header = NATIVE_HEADER_SHIM;
        in.dm_linear_available = false;
        in.requested = VOLUME_MODE_NATIVE;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(reason, "device-mapper"));
        /* Without device-mapper LUKS1 keeps the direct path. */
        in.native_header = NATIVE_HEADER_AUTO;
        g_assert_cmpint(mode_select(&in, reason, sizeof reason), ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(mode_native_header(&in), ==, NATIVE_HEADER_VOLUME);

        g_assert_cmpstr(native_header_to_string(NATIVE_HEADER_SHIM), ==, "shim");
        g_assert_cmpint(native_header_from_string("volume"), ==, NATIVE_HEADER_VOLUME);
        g_assert_cmpint(native_header_from_string("nope"), ==, _NATIVE_HEADER_INVALID);
}

/* What QEMU's LUKS driver can open: cipher, chain mode, IV generator and
 * hash; anything else makes auto go cryptsetup and native refuse. */
static void test_qemu_ciphers(void) {
        char buf[256];
        static const char *const ok[][3] = {
                { "aes", "xts-plain64", "sha256" },
                { "aes", "cbc-essiv:sha256", "sha1" },
                { "serpent", "xts-plain64", "sha512" },
                { "twofish", "cbc-plain", "ripemd160" },
                { "cast5", "cbc-plain64", "sha1" },
                { "aes", "ecb", "sha256" },
                { NULL, NULL, NULL },
                { "aes", "xts-plain64", "" },
        };
        static const char *const bad[][4] = {
                { "camellia", "xts-plain64", "sha256", "no cipher 'camellia'" },
                { "aes", "lrw-plain64", "sha256", "no cipher mode 'lrw'" },
                { "aes", "cbc-benbi", "sha256", "no IV generator 'benbi'" },
                { "aes", "cbc-essiv:whirlpool", "sha256", "no hash 'whirlpool'" },
                { "aes", "xts-plain64", "whirlpool", "no PBKDF2 hash 'whirlpool'" },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
                g_assert_null(mode_qemu_cipher_obstacle(ok[i][0], ok[i][1], ok[i][2], buf, sizeof buf));
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                const char *o = mode_qemu_cipher_obstacle(bad[i][0], bad[i][1], bad[i][2], buf, sizeof buf);
                g_assert_nonnull(o);
                g_assert_nonnull(strstr(o, bad[i][3]));
        }

        ModeInput in = {
                .libvirt_version = V(9, 0, 0),
                .hypervisor_version = V(7, 2, 0),
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = true,
                .luks_version = 1,
                .requested = VOLUME_MODE_AUTO,
                .dm_crypt_available = true,
                .cipher = "camellia",
                .cipher_mode = "xts-plain64",
                .hash = "sha256",
        };
        g_assert_cmpint(mode_select(&in, buf, sizeof buf), ==, VOLUME_MODE_CRYPTSETUP);
        in.requested = VOLUME_MODE_NATIVE;
        g_assert_cmpint(mode_select(&in, buf, sizeof buf), ==, _VOLUME_MODE_INVALID);
        g_assert_nonnull(strstr(buf, "camellia"));
}

/* A header obstacle (header-policy.h) refuses every request, native,
 * cryptsetup and auto, whatever the host could do, with its reason; and
 * it is native mode's first obstacle (what Probe reports). */
static void test_header_obstacle(void) {
        char buf[256];
        ModeInput in = {
                .libvirt_version = V(9, 0, 0),
                .hypervisor_version = V(7, 2, 0),
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_hypervisor_version = LV_MIN_QEMU_VERSION,
                .hypervisor_is_qemu = true,
                .luks_version = 1,
                .dm_crypt_available = true,
                .cipher = "cipher_null",
                .cipher_mode = "ecb",
                .hash = "sha256",
                .header_obstacle = "the volume's cipher 'cipher_null' is not one this service accepts",
        };
        const VolumeMode requests[] = { VOLUME_MODE_AUTO, VOLUME_MODE_NATIVE, VOLUME_MODE_CRYPTSETUP };

        for (size_t i = 0; i < G_N_ELEMENTS(requests); i++)
                for (int dm = 0; dm < 2; dm++) {
                        in.requested = requests[i];
                        in.dm_crypt_available = dm;
                        g_assert_cmpint(mode_select(&in, buf, sizeof buf), ==, _VOLUME_MODE_INVALID);
                        g_assert_nonnull(strstr(buf, "header is refused"));
                        g_assert_nonnull(strstr(buf, "cipher_null"));
                }
        g_assert_cmpstr(mode_native_obstacle(&in, buf, sizeof buf), ==, in.header_obstacle);

        /* Without it, the same host and a good cipher: native. */
        in.header_obstacle = NULL;
        in.cipher = "aes";
        in.cipher_mode = "xts-plain64";
        in.requested = VOLUME_MODE_AUTO;
        g_assert_cmpint(mode_select(&in, buf, sizeof buf), ==, VOLUME_MODE_NATIVE);
}

static void test_mode_strings(void) {
        g_assert_cmpint(volume_mode_from_string("auto"), ==, VOLUME_MODE_AUTO);
        g_assert_cmpint(volume_mode_from_string("native"), ==, VOLUME_MODE_NATIVE);
        g_assert_cmpint(volume_mode_from_string("cryptsetup"), ==, VOLUME_MODE_CRYPTSETUP);
        g_assert_cmpint(volume_mode_from_string("Native"), ==, _VOLUME_MODE_INVALID);
        g_assert_cmpint(volume_mode_from_string(""), ==, _VOLUME_MODE_INVALID);
        g_assert_cmpint(volume_mode_from_string(NULL), ==, _VOLUME_MODE_INVALID);
        g_assert_cmpstr(volume_mode_to_string(VOLUME_MODE_CRYPTSETUP), ==, "cryptsetup");
        g_assert_null(volume_mode_to_string(_VOLUME_MODE_INVALID));
}

static void test_versions(void) {
        unsigned long v;
        char buf[32];

        g_assert_cmpint(version_parse("2.2.0", &v), ==, 0);
        g_assert_cmpuint(v, ==, 2002000);
        g_assert_cmpint(version_parse("2.6", &v), ==, 0);
        g_assert_cmpuint(v, ==, 2006000);
        g_assert_cmpint(version_parse("10.1.999", &v), ==, 0);
        g_assert_cmpuint(v, ==, 10001999);
        version_format(9000000, buf, sizeof buf);
        g_assert_cmpstr(buf, ==, "9.0.0");
        version_format(7002011, buf, sizeof buf);
        g_assert_cmpstr(buf, ==, "7.2.11");

        const char *bad[] = { "", "2", "2.", ".2", "2..1", "a.b", "2.2.0.1", "1000.0", "-1.2", "2.2 ", " 2.2", "2.2x" };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
                g_assert_cmpint(version_parse(bad[i], &v), ==, -EINVAL);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                g_autofree char *name = g_strdup_printf("/mode/select/%s", rows[i].name);
                g_test_add_data_func(name, &rows[i], test_row);
        }
        g_test_add_func("/mode/raised-minimums", test_raised_minimums);
        g_test_add_func("/mode/binary-passphrase", test_binary_passphrase);
        g_test_add_func("/mode/qemu-ciphers", test_qemu_ciphers);
        g_test_add_func("/mode/shim", test_shim);
        g_test_add_func("/mode/header-obstacle", test_header_obstacle);
        g_test_add_func("/mode/strings", test_mode_strings);
        g_test_add_func("/mode/versions", test_versions);
        return g_test_run();
}
