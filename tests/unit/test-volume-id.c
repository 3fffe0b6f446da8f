/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Target names, volume ids/object paths and secret usage ids. */
#include <glib.h>

#include "util.h"
#include "volume-id.h"

#define UUID "4b1f5c2a-9d3e-4f10-8a7b-0c1d2e3f4a5b"

static void test_targets(void) {
        g_assert_true(target_valid_for_bus("vdb", "virtio"));
        g_assert_true(target_valid_for_bus("vdzz", "virtio"));
        g_assert_true(target_valid_for_bus("sdc", "scsi"));
        g_assert_true(target_valid_for_bus("sdc", "sata"));
        g_assert_true(target_valid_for_bus("sdc", "usb"));
        g_assert_false(target_valid_for_bus("sdc", "virtio"));
        g_assert_false(target_valid_for_bus("vdb", "scsi"));
        g_assert_false(target_valid_for_bus("vd", "virtio"));
        g_assert_false(target_valid_for_bus("vdabcd", "virtio"));
        g_assert_false(target_valid_for_bus("vdB", "virtio"));
        g_assert_false(target_valid_for_bus("vd1", "virtio"));
        g_assert_false(target_valid_for_bus("vd'", "virtio"));
        g_assert_false(target_valid_for_bus("hda", "ide"));
        g_assert_false(target_valid_for_bus(NULL, "virtio"));
        g_assert_false(bus_valid("ide"));
        g_assert_false(bus_valid(""));
        g_assert_cmpstr(bus_from_target("sdq"), ==, "scsi");
        g_assert_cmpstr(bus_from_target("vda"), ==, "virtio");
        g_assert_null(bus_from_target("xvda"));
}

static void test_pick_free(void) {
        char *used[] = { (char *) "vda", (char *) "vdb", (char *) "sda", (char *) "vdd" };
        g_autofree char *t = NULL, *s = NULL;

        g_assert_cmpint(target_pick_free("virtio", used, G_N_ELEMENTS(used), &t), ==, 0);
        g_assert_cmpstr(t, ==, "vdc");
        g_assert_cmpint(target_pick_free("scsi", used, G_N_ELEMENTS(used), &s), ==, 0);
        g_assert_cmpstr(s, ==, "sdb");

        /* After z comes aa, as libvirt names them. */
        char *all[26];
        for (int i = 0; i < 26; i++)
                all[i] = g_strdup_printf("vd%c", 'a' + i);
        g_autofree char *u = NULL;
        g_assert_cmpint(target_pick_free("virtio", all, 26, &u), ==, 0);
        g_assert_cmpstr(u, ==, "vdaa");
        for (int i = 0; i < 26; i++)
                g_free(all[i]);

        char *dummy;
        g_assert_cmpint(target_pick_free("ide", NULL, 0, &dummy), ==, -EINVAL);
}

static void test_volume_path_roundtrip(void) {
        g_autofree char *path = NULL, *u = NULL, *t = NULL;

        g_assert_cmpint(volume_path_build(UUID, "sdb", &path), ==, 0);
        g_assert_cmpstr(path, ==, "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb");
        g_assert_cmpint(volume_path_parse(path, &u, &t), ==, 0);
        g_assert_cmpstr(u, ==, UUID);
        g_assert_cmpstr(t, ==, "sdb");
        /* Stable: the same inputs always give the same path. */
        g_autofree char *again = NULL;
        g_assert_cmpint(volume_path_build(UUID, "sdb", &again), ==, 0);
        g_assert_cmpstr(again, ==, path);
}

static void test_volume_path_invalid(void) {
        const char *bad[] = {
                "",
                "/",
                "/org/example/LuksVolume1",
                "/org/example/LuksVolume1/volume",
                "/org/example/LuksVolume1/volume/",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_xyz",
                "/org/example/LuksVolume1/volume/4B1F5C2A9D3E4F108A7B0C1D2E3F4A5B_sdb",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5_sdb",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5bb_sdb",
                "/org/example/LuksVolume1/volume/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb/x",
                "/org/example/LuksVolume1/volume/g b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb",
                "/org/example/LuksVolume1/other/4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                char *u = NULL, *t = NULL;
                g_assert_cmpint(volume_path_parse(bad[i], &u, &t), ==, -EINVAL);
                g_assert_null(u);
                g_assert_null(t);
        }
        char *p = NULL;
        g_assert_cmpint(volume_path_build("not-a-uuid", "sdb", &p), ==, -EINVAL);
        g_assert_cmpint(volume_path_build(UUID, "sd'", &p), ==, -EINVAL);
        g_assert_cmpint(volume_path_build("4B1F5C2A-9D3E-4F10-8A7B-0C1D2E3F4A5B", "sdb", &p), ==, -EINVAL);
        g_assert_null(p);
}

static void test_secret_usage(void) {
        g_autofree char *usage = NULL, *u = NULL, *t = NULL;

        g_assert_cmpint(secret_usage_build(UUID, "vdc", &usage), ==, 0);
        g_assert_cmpstr(usage, ==, "luksvolumed:" UUID ":vdc");
        g_assert_cmpint(secret_usage_parse(usage, &u, &t), ==, 0);
        g_assert_cmpstr(u, ==, UUID);
        g_assert_cmpstr(t, ==, "vdc");

        const char *bad[] = { "",
                              "luksvolumed:",
                              "nova:" UUID ":vdc",
                              "luksvolumed:" UUID,
                              "luksvolumed:" UUID ":",
                              "luksvolumed:" UUID ":vd!",
                              "luksvolumed:" UUID "-vdc",
                              "luksvolumed:xx:vdc" };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                char *a = NULL, *b = NULL;
                g_assert_cmpint(secret_usage_parse(bad[i], &a, &b), ==, -EINVAL);
        }
}

static void test_disk_alias(void) {
        g_autofree char *a = NULL;
        char *bad = NULL;

        g_assert_cmpint(disk_alias_build(UUID, "sdb", &a), ==, 0);
        g_assert_cmpstr(a, ==, "ua-luksvol-4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b_sdb");
        g_assert_cmpint(disk_alias_build(UUID, "hda", &bad), ==, -EINVAL);
        g_assert_null(bad);
}

static void test_uuid(void) {
        g_assert_true(uuid_valid(UUID));
        g_assert_false(uuid_valid("4b1f5c2a9d3e4f108a7b0c1d2e3f4a5b"));
        g_assert_false(uuid_valid("4b1f5c2a-9d3e-4f10-8a7b-0c1d2e3f4a5"));
        g_assert_false(uuid_valid("4b1f5c2a-9d3e-4f10-8a7b_0c1d2e3f4a5b"));
        g_assert_false(uuid_valid(NULL));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/volume-id/targets", test_targets);
        g_test_add_func("/volume-id/pick-free", test_pick_free);
        g_test_add_func("/volume-id/path-roundtrip", test_volume_path_roundtrip);
        g_test_add_func("/volume-id/path-invalid", test_volume_path_invalid);
        g_test_add_func("/volume-id/secret-usage", test_secret_usage);
        g_test_add_func("/volume-id/uuid", test_uuid);
        g_test_add_func("/volume-id/disk-alias", test_disk_alias);
        return g_test_run();
}
