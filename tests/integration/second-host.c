/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libvirt/virterror.h>
#include <string.h>

#include "fixture.h"
#include "second-host.h"

LvSecondHost *lv_second_host_start(const char *script, const char *daemon, const char *daemon_arg) {
        LvSecondHost *h = g_new0(LvSecondHost, 1);
        h->shared_dir = lv_sandbox_path("hostb");
        const char *argv[] = { "/bin/bash", script, h->shared_dir, daemon, daemon_arg, NULL };
        gint64 t0 = g_get_monotonic_time();
        h->proc = lv_spawn_ready(argv);
        g_test_message("host B up in %.1f s", (g_get_monotonic_time() - t0) / 1e6);

        g_autofree char *address = g_strdup_printf("unix:path=%s/bus", h->shared_dir);
        g_autoptr(GError) error = NULL;
        h->bus = g_dbus_connection_new_for_address_sync(
                address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                NULL, NULL, &error);
        g_assert_no_error(error);

        h->libvirt_uri = g_strdup_printf("qemu+unix:///system?socket=%s/libvirt/libvirt-sock", h->shared_dir);
        h->virt = virConnectOpen(h->libvirt_uri);
        if (!h->virt)
                g_error("cannot connect to host B's libvirt (%s): %s", h->libvirt_uri, virGetLastErrorMessage());

        /* Two hosts, as libvirt sees them. */
        g_autofree char *ca = virConnectGetCapabilities(lv_virt());
        g_autofree char *cb = virConnectGetCapabilities(h->virt);
        g_assert_nonnull(ca);
        g_assert_nonnull(cb);
        g_autofree char *ua = g_strndup(strstr(ca, "<uuid>"), 48);
        g_autofree char *ub = g_strndup(strstr(cb, "<uuid>"), 48);
        g_assert_cmpstr(ua, !=, ub);

        h->next_port = 49152 + (guint) g_random_int_range(0, 1000);
        return h;
}

void lv_second_host_stop(LvSecondHost *h) {
        if (!h)
                return;
        virConnectClose(h->virt);
        g_object_unref(h->bus);
        lv_kill_wait(h->proc);
        g_free(h->shared_dir);
        g_free(h->libvirt_uri);
        g_free(h);
}

char *lv_second_host_daemon_log(LvSecondHost *h) {
        g_autofree char *path = g_build_filename(h->shared_dir, "bus.log", NULL);
        char *s = NULL;
        g_assert_true(g_file_get_contents(path, &s, NULL, NULL));
        return s;
}

guint lv_second_host_port(LvSecondHost *h) {
        return h->next_port++;
}

virDomainPtr lv_migrate_to(LvSecondHost *h, virDomainPtr dom, unsigned flags, char **ret_error) {
        g_autofree char *uri = g_strdup_printf("tcp://127.0.0.1:%u", lv_second_host_port(h));
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;

        g_assert_cmpint(virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, uri), ==, 0);
        gint64 t0 = g_get_monotonic_time();
        virDomainPtr moved = virDomainMigrate3(dom, h->virt, params, n, flags);
        virTypedParamsFree(params, n);
        if (!moved) {
                *ret_error = g_strdup(virGetLastErrorMessage());
                g_test_message("migration of %s failed after %.1f s: %s", virDomainGetName(dom),
                               (g_get_monotonic_time() - t0) / 1e6, *ret_error);
                return NULL;
        }
        g_test_message("%s migrated to B in %.1f s", virDomainGetName(dom), (g_get_monotonic_time() - t0) / 1e6);
        return moved;
}

gboolean lv_second_host_reads_pattern(LvSecondHost *h, virDomainPtr dom_b, const char *image, guint8 pattern,
                                      gsize len) {
        g_autofree char *node = NULL;

        if (image) {
                node = lv_guest_luks_node_for(dom_b, image);
                if (!node) {
                        g_test_message("B's QEMU has no luks node over %s", image);
                        return FALSE;
                }
        }
        g_autofree char *log_dir = g_build_filename(h->shared_dir, "log", "qemu", NULL);
        return lv_guest_reads_pattern_logged(dom_b, log_dir, node, pattern, len);
}
