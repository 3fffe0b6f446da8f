/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A second writer never (issue 16), the part the ordinary sandbox can show
 * (native mode; cryptsetup mode's own locks are in test-cryptsetup.c, in
 * the dm-crypt VM):
 *
 *  - an image a running qemu-io holds open with QEMU's locks is InUse, and
 *    the answer names the holder — not a libvirt failure inside
 *    blockdev-add after the passphrase was checked;
 *  - an image that a defined but not running domain has as a disk is
 *    InUse, by identity (also through another path to the same file). */

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "lv-client.h"

#define PASS    "trust lock passphrase"
#define PATTERN 0x4e

static GDBusConnection *bus;
static virDomainPtr guest;

static void assert_clean(void) {
        g_auto(GStrv) objs = lv_managed_objects(bus);
        g_assert_cmpuint(g_strv_length(objs), ==, 0);
        g_assert_cmpuint(lv_count_secrets(), ==, 0);
        g_autofree char *xml = lv_domain_xml(guest);
        g_assert_null(strstr(xml, "ua-luksvol-"));
}

/* Does anyone hold an OFD lock on path's inode, at QEMU's bytes (100…)?
 * /proc/locks: "N: OFDLCK ADVISORY  READ -1 MAJ:MIN:INO START END". */
static gboolean qemu_locks_held(const char *path) {
        g_autofree char *locks = NULL;
        struct stat st;

        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_true(g_file_get_contents("/proc/locks", &locks, NULL, NULL));
        g_autofree char *needle = g_strdup_printf(":%lu 1", (unsigned long) st.st_ino);
        g_auto(GStrv) lines = g_strsplit(locks, "\n", -1);
        for (char **l = lines; *l; l++)
                if (strstr(*l, "OFDLCK") && strstr(*l, needle))
                        return TRUE;
        return FALSE;
}

/* A qemu-io that opened path read-write (QEMU's locks taken) and waits
 * for commands on its stdin; closing stdin ends it. */
static GSubprocess *hold_with_qemu_io(const char *path) {
        g_autoptr(GError) error = NULL;
        const char *argv[] = { "qemu-io", "-f", "raw", path, NULL };
        GSubprocess *p =
                g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_SILENCE, &error);
        g_assert_no_error(error);
        for (int i = 0; i < 500 && !qemu_locks_held(path); i++)
                g_usleep(20 * 1000);
        g_assert_true(qemu_locks_held(path));
        return p;
}

static void release_qemu_io(GSubprocess *p) {
        g_assert_true(g_output_stream_close(g_subprocess_get_stdin_pipe(p), NULL, NULL));
        g_assert_true(g_subprocess_wait(p, NULL, NULL));
        g_object_unref(p);
}

/* qemu-io holds the image: Attach answers InUse naming qemu-io, before
 * anything is created; once it is gone the same attach works. */
static void test_qemu_io_holder(void) {
        g_autofree char *img = lv_make_luks1_image("t-qemu-io.img", PASS, PATTERN, 16);
        GError *error = NULL;

        GSubprocess *holder = hold_with_qemu_io(img);
        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        if (path) {
                g_test_fail_printf("attached %s although qemu-io holds it", img);
                g_assert_true(lv_detach(bus, path, NULL, NULL));
        } else {
                g_test_message("%s: %s", g_quark_to_string(error->domain), error->message);
                lv_assert_error(error, LV_ERR("InUse"));
                g_assert_nonnull(strstr(error->message, "qemu-io"));
                g_clear_error(&error);
        }
        assert_clean();
        release_qemu_io(holder);

        g_autofree char *path2 =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path2, NULL, &error));
        g_assert_no_error(error);
        assert_clean();
}

static virDomainPtr define_with_disk(const char *name, const char *image) {
        g_autofree char *xml =
                g_strdup_printf("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
                                "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
                                "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                "<source file='%s'/><target dev='vdb' bus='virtio'/></disk></devices></domain>",
                                name, image);
        virDomainPtr d = virDomainDefineXML(lv_virt(), xml);
        if (!d)
                g_error("cannot define %s: %s", name, virGetLastErrorMessage());
        g_assert_cmpint(virDomainIsActive(d), ==, 0);
        return d;
}

/* A defined, stopped domain's disk is its own: the next start would make a
 * second writer of it. */
static void test_defined_domain_disk(void) {
        g_autofree char *img = lv_make_luks1_image("t-defined.img", PASS, PATTERN, 16);
        g_autofree char *other = lv_sandbox_path("t-defined-link.img");
        GError *error = NULL;

        virDomainPtr d = define_with_disk("lvtest-defined", img);
        /* Another path to the same file. */
        g_unlink(other);
        g_assert_cmpint(link(img, other), ==, 0);

        for (int i = 0; i < 2; i++) {
                const char *src = i == 0 ? img : other;
                g_autofree char *path = lv_attach(bus, "lvtest-guest", src, PASS,
                                                  lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
                if (path) {
                        g_test_fail_printf("attached %s although lvtest-defined has it as a disk", src);
                        g_assert_true(lv_detach(bus, path, NULL, NULL));
                } else {
                        g_test_message("%s", error->message);
                        lv_assert_error(error, LV_ERR("InUse"));
                        g_assert_nonnull(strstr(error->message, "lvtest-defined"));
                        g_clear_error(&error);
                }
                assert_clean();
        }

        g_assert_cmpint(virDomainUndefine(d), ==, 0);
        virDomainFree(d);
        g_autofree char *path =
                lv_attach(bus, "lvtest-guest", img, PASS, lv_opts("bus", g_variant_new_string("scsi"), NULL), &error);
        g_assert_no_error(error);
        g_assert_true(lv_detach(bus, path, NULL, &error));
        g_assert_no_error(error);
        g_unlink(other);
        assert_clean();
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        lv_require_sandbox();

        bus = lv_bus();
        guest = lv_start_guest("lvtest-guest");

        g_test_add_func("/trust-lock/qemu-io-holder", test_qemu_io_holder);
        g_test_add_func("/trust-lock/defined-domain-disk", test_defined_domain_disk);

        int r = g_test_run();
        lv_destroy_guest(guest);
        return r;
}
