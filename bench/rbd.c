/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The RBD figures (issue 18), `bench/run.sh --rbd`: a LUKS1 RBD image on
 * the sandbox's single-node Ceph (tests/ceph/cluster.sh, started here),
 * attached natively through the daemon, against the same attach done
 * directly in the same run — interleaved, so drift hits all alike:
 *
 *  - the libvirt-API floor: define the ephemeral passphrase secret, set
 *    it, hot-plug the same <disk type='network'> (the daemon's work less
 *    its checks);
 *  - `virsh attach-device` of that disk XML, its secret defined
 *    beforehand (what an admin types; a process and a connection per
 *    call).
 *
 * The image is LUKS1 with a 1000-iteration key slot (cryptsetup, imported
 * with `rbd import`), so the figures are the plumbing, not PBKDF2.  Each
 * attach is followed by an untimed detach; the daemon's Detach is timed
 * too, against libvirt's synchronous detach. */

#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "fixture.h"
#include "lv-client.h"

#define CEPH_DIR    LV_CEPH_DIR
#define CEPH_SECRET LV_CEPH_SECRET_UUID
#define RBD_REPS    (short_run ? 5 : 15)

static char *disk_xml(const char *secret_uuid) {
        return g_strdup_printf("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                               "<source protocol='rbd' name='rbd/bench'><config file='" CEPH_DIR "/ceph.conf'/>"
                               "<auth username='admin'><secret type='ceph' uuid='" CEPH_SECRET "'/></auth>"
                               "<encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption></source>"
                               "<target dev='sdb' bus='scsi'/></disk>",
                               secret_uuid);
}

static virSecretPtr passphrase_secret(char uuid[VIR_UUID_STRING_BUFLEN]) {
        virSecretPtr s = virSecretDefineXML(
                lv_virt(),
                "<secret ephemeral='yes' private='yes'><usage type='volume'><volume>bench-rbd</volume></usage></secret>",
                0);
        g_assert_nonnull(s);
        g_assert_cmpint(virSecretSetValue(s, (const unsigned char *) PASS, strlen(PASS), 0), ==, 0);
        g_assert_cmpint(virSecretGetUUIDString(s, uuid), ==, 0);
        return s;
}

/* libvirt's synchronous detach, then the secret: untimed unless asked. */
static double floor_detach(virDomainPtr dom, const char *xml, virSecretPtr s) {
        double t0 = now_ms();
        g_assert_cmpint(virDomainDetachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        g_assert_true(lv_domain_wait_disk_gone(dom, "sdb", 10000));
        double t1 = now_ms();
        g_assert_cmpint(virSecretUndefine(s), ==, 0);
        virSecretFree(s);
        return t1 - t0;
}

void rbd_figures(const char *cluster_sh) {
        const char *start[] = { "bash", cluster_sh, "start", CEPH_DIR, NULL };
        g_autofree char *started = lv_ceph_tool(start);
        g_autofree char *img = lv_make_luks1_cryptsetup("bench-rbd.img", PASS, 1000, (const char *const[]){ NULL });
        const char *import[] = { "rbd", "import", img, "rbd/bench", NULL };
        g_free(lv_ceph_tool(import));
        lv_ceph_define_secret();

        virDomainPtr dom = lv_start_guest("bench-rbd");
        GArray *daemon_attach = samples_new(), *daemon_detach = samples_new(), *api_attach = samples_new(),
               *api_detach = samples_new(), *virsh_attach = samples_new();
        g_autofree char *xml_path = g_build_filename(lv_sandbox_dir(), "bench-rbd-disk.xml", NULL);

        for (int i = -1; i < RBD_REPS; i++) {
                g_autoptr(GError) error = NULL;
                char uuid[VIR_UUID_STRING_BUFLEN];

                /* The daemon. */
                double t0 = now_ms();
                g_autofree char *path = lv_attach(
                        bus, "bench-rbd", "rbd:rbd/bench", PASS,
                        lv_opts("bus", g_variant_new_string("scsi"), "target", g_variant_new_string("sdb"), NULL),
                        &error);
                g_assert_no_error(error);
                double t1 = now_ms();
                g_assert_true(lv_detach(bus, path, NULL, &error));
                g_assert_no_error(error);
                double t2 = now_ms();

                /* The libvirt API floor. */
                double t3 = now_ms();
                virSecretPtr s = passphrase_secret(uuid);
                g_autofree char *xml = disk_xml(uuid);
                g_assert_cmpint(virDomainAttachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE), ==, 0);
                double t4 = now_ms();
                double fd = floor_detach(dom, xml, s);

                /* virsh attach-device, its secret made beforehand. */
                s = passphrase_secret(uuid);
                g_autofree char *vxml = disk_xml(uuid);
                g_assert_true(g_file_set_contents(xml_path, vxml, -1, NULL));
                const char *virsh[] = { "virsh",         "-q",        "-c",     "qemu:///system",
                                        "attach-device", "bench-rbd", xml_path, NULL };
                double t5 = now_ms();
                g_free(lv_ceph_tool(virsh));
                double t6 = now_ms();
                (void) floor_detach(dom, vxml, s);

                if (i < 0)
                        continue; /* warm-up: activation, the first connection to the cluster */
                sample_add(daemon_attach, t1 - t0);
                sample_add(daemon_detach, t2 - t1);
                sample_add(api_attach, t4 - t3);
                sample_add(api_detach, fd);
                sample_add(virsh_attach, t6 - t5);
        }

        double da = percentile(daemon_attach, 50), dd = percentile(daemon_detach, 50), aa = percentile(api_attach, 50),
               ad = percentile(api_detach, 50), va = percentile(virsh_attach, 50);
        printf("| %s | | | | |\n", g_strstrip(started));
        printf("| Attach of a LUKS1 RBD image (native, 1000-iteration slot), median of %d (ms) | %.1f | libvirt API "
               "(secret define+set, attach) %.1f; `virsh attach-device` (secret made beforehand) %.1f | %.2f× API; "
               "%.2f× virsh | — |\n",
               RBD_REPS, da, aa, va, da / aa, da / va);
        printf("| Detach of it, median of %d (ms) | %.1f | libvirt's synchronous detach until gone %.1f | %.2f | — |\n",
               RBD_REPS, dd, ad, dd / ad);
        lv_destroy_guest(dom);
        g_array_unref(daemon_attach);
        g_array_unref(daemon_detach);
        g_array_unref(api_attach);
        g_array_unref(api_detach);
        g_array_unref(virsh_attach);
        const char *stop[] = { "bash", cluster_sh, "stop", CEPH_DIR, NULL };
        g_free(lv_ceph_tool(stop));
}
