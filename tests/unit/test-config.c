/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The configuration file and its drop-ins: values, precedence, and errors
 * naming file, line and key. */
#include <glib.h>
#include <glib/gstdio.h>

#include "config.h"
#include "mode.h"
#include "util.h"

static char *dir;

static ManagerConfig defaults(void) {
        return (ManagerConfig){
                .libvirt_uri = (char *) "qemu:///system",
                .min_libvirt_version = LV_MIN_LIBVIRT_VERSION,
                .min_qemu_version = LV_MIN_QEMU_VERSION,
                .max_volumes = 64,
                .idle_timeout_sec = 60,
                .detach_timeout_sec = 30,
                .stage_timeout_sec = 300,
                .kdf = kdf_limits_default(),
                .precheck_iterations = HEADER_PRECHECK_ITERATIONS_DEFAULT,
        };
}

static char *write_conf(const char *name, const char *text) {
        char *p = g_build_filename(dir, name, NULL);
        g_autofree char *parent = g_path_get_dirname(p);
        g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
        g_assert_true(g_file_set_contents(p, text, -1, NULL));
        return p;
}

static void test_missing_is_fine(void) {
        ManagerConfig c = defaults();
        g_autofree char *p = g_build_filename(dir, "nonexistent.conf", NULL);
        g_assert_cmpint(config_load(p, &c), ==, 0);
        g_assert_cmpuint(c.max_volumes, ==, 64);
}

static void test_values_and_dropins(void) {
        g_autofree char *main_conf = write_conf(
                "a/luksvolumed.conf", "# comment\n[Daemon]\nLibvirtURI=qemu+ssh://h/system\nMinLibvirtVersion=3.0\n"
                                      "MinQemuVersion=4.1.2\nIdleTimeoutSec=0\nMaxVolumes=5\nDetachTimeoutSec=7\n"
                                      "StageTimeoutSec=45\n");
        g_autofree char *d1 G_GNUC_UNUSED = write_conf("a/luksvolumed.conf.d/20-b.conf", "[Daemon]\nMaxVolumes=9\n");
        g_autofree char *d2 G_GNUC_UNUSED =
                write_conf("a/luksvolumed.conf.d/10-a.conf", "[Daemon]\nMaxVolumes=8\nDetachTimeoutSec=11\n");
        g_autofree char *ignored G_GNUC_UNUSED = write_conf("a/luksvolumed.conf.d/30-c.conf.disabled", "garbage\n");
        ManagerConfig c = defaults();

        g_assert_cmpint(config_load(main_conf, &c), ==, 0);
        g_assert_cmpstr(c.libvirt_uri, ==, "qemu+ssh://h/system");
        g_assert_cmpuint(c.min_libvirt_version, ==, LV_VERSION(3, 0, 0));
        g_assert_cmpuint(c.min_qemu_version, ==, LV_VERSION(4, 1, 2));
        g_assert_cmpuint(c.idle_timeout_sec, ==, 0);
        g_assert_cmpuint(c.max_volumes, ==, 9);         /* 20-b after 10-a */
        g_assert_cmpuint(c.detach_timeout_sec, ==, 11); /* drop-in over main */
        g_assert_cmpuint(c.stage_timeout_sec, ==, 45);
        config_strings_free();
}

/* The key derivation limits (header-policy.h): defaults stay unless set. */
static void test_kdf_limits(void) {
        g_autofree char *conf =
                write_conf("kdf/luksvolumed.conf", "[Daemon]\nMaxPbkdf2Iterations=1000000\n"
                                                   "MaxArgon2MemoryKiB=65536\nMaxArgon2Cost=5000000000\n"
                                                   "PassphrasePrecheckIterations=0\n");
        g_autofree char *none = write_conf("kdf2/luksvolumed.conf", "[Daemon]\nMaxVolumes=3\n");
        ManagerConfig c = defaults();

        g_assert_cmpint(config_load(conf, &c), ==, 0);
        g_assert_cmpuint(c.kdf.max_pbkdf2_iterations, ==, 1000000);
        g_assert_cmpuint(c.kdf.max_argon2_memory_kib, ==, 65536);
        g_assert_cmpuint(c.kdf.max_argon2_cost, ==, 5000000000ULL);
        g_assert_cmpuint(c.precheck_iterations, ==, 0);

        c = defaults();
        g_assert_cmpint(config_load(none, &c), ==, 0);
        g_assert_cmpuint(c.kdf.max_pbkdf2_iterations, ==, KDF_DEFAULT_MAX_PBKDF2_ITERATIONS);
        g_assert_cmpuint(c.precheck_iterations, ==, HEADER_PRECHECK_ITERATIONS_DEFAULT);
        g_assert_cmpuint(c.kdf.max_argon2_memory_kib, ==, KDF_DEFAULT_MAX_ARGON2_MEMORY_KIB);
        g_assert_cmpuint(c.kdf.max_argon2_cost, ==, KDF_DEFAULT_MAX_ARGON2_COST);
}

typedef struct Bad {
        const char *text;
        const char *expect; /* in stderr */
} Bad;

static const Bad bad[] = {
        { "[Daemon]\nMaxVolumes=0\n", ":2: bad value for MaxVolumes" },
        { "[Daemon]\n\nMaxVolumes=lots\n", ":3: bad value for MaxVolumes" },
        { "[Daemon]\nIdleTimeoutSec=-1\n", ":2: bad value for IdleTimeoutSec" },
        { "[Daemon]\nMinQemuVersion=two\n", ":2: bad value for MinQemuVersion" },
        { "[Daemon]\nLogLevel=loud\n", ":2: bad value for LogLevel" },
        { "[Daemon]\nLibvirtURI=\n", ":2: bad value for LibvirtURI" },
        { "[Daemon]\nColour=red\n", ":2: unknown key 'Colour'" },
        { "[Daemons]\nMaxVolumes=3\n", ":2: unknown section [Daemons]" },
        { "[Daemon]\nthis is not a key\n", ":2: syntax error" },
        { "[Daemon]\nMaxPbkdf2Iterations=999\n", ":2: bad value for MaxPbkdf2Iterations" },
        { "[Daemon]\nMaxPbkdf2Iterations=4294967296\n", ":2: bad value for MaxPbkdf2Iterations" },
        { "[Daemon]\nMaxArgon2MemoryKiB=lots\n", ":2: bad value for MaxArgon2MemoryKiB" },
        { "[Daemon]\nMaxArgon2Cost=-5\n", ":2: bad value for MaxArgon2Cost" },
        { "[Daemon]\nMaxArgon2Cost=\n", ":2: bad value for MaxArgon2Cost" },
        { "[Daemon]\nStageTimeoutSec=0\n", ":2: bad value for StageTimeoutSec" },
        { "[Daemon]\nStageTimeoutSec=86401\n", ":2: bad value for StageTimeoutSec" },
};

static void test_bad(gconstpointer data) {
        const Bad *b = data;

        if (g_test_subprocess()) {
                g_autofree char *p = write_conf("bad.conf", b->text);
                ManagerConfig c = defaults();
                int r = config_load(p, &c);
                /* _exit: the child's verdict is the load's, not LeakSanitizer's
                 * opinion of GLib's test-harness allocations at exit. */
                _exit(r == -EINVAL ? 0 : 1);
        }
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        g_test_trap_assert_stderr_unmatched("*(null)*");
        g_autofree char *pattern = g_strdup_printf("*bad.conf%s*", b->expect);
        g_test_trap_assert_stderr(pattern);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        dir = g_strdup(g_getenv("LV_CONFIG_TEST_DIR"));
        if (!dir) {
                dir = g_dir_make_tmp("lv-config-XXXXXX", NULL);
                g_setenv("LV_CONFIG_TEST_DIR", dir, TRUE); /* shared with subprocesses */
        }

        g_test_add_func("/config/missing-is-fine", test_missing_is_fine);
        g_test_add_func("/config/values-and-dropins", test_values_and_dropins);
        g_test_add_func("/config/kdf-limits", test_kdf_limits);
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *n = g_strdup_printf("/config/bad/%zu", i);
                g_test_add_data_func(n, &bad[i], test_bad);
        }
        int r = g_test_run();
        if (!g_test_subprocess()) {
                g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
                (void) !system(cmd);
        }
        return r;
}
