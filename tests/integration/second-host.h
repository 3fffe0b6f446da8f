/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A second libvirt host on this machine for migration tests:
 * tests/sandbox/second-host.sh (its own mount namespace, bus, polkitd,
 * libvirtd and luksvolumed), reached from the sandbox (host A) through a
 * directory in the sandbox's scratch directory. */

#include <gio/gio.h>
#include <libvirt/libvirt.h>

typedef struct LvSecondHost {
        char *shared_dir;  /* SHARED: B's bus, libvirt sockets, logs */
        char *libvirt_uri; /* B's libvirtd, for clients on A */
        GDBusConnection *bus;
        virConnectPtr virt;
        GSubprocess *proc;
        guint next_port; /* for QEMU's migration streams on the loopback */
} LvSecondHost;

/* Starts B (script: second-host.sh) with its daemon run as
 * DAEMON [daemon_arg]; fails the test if B does not come up. */
LvSecondHost *lv_second_host_start(const char *script, const char *daemon, const char *daemon_arg);
void lv_second_host_stop(LvSecondHost *h);

/* The output of B's bus and daemon (SHARED/bus.log). */
char *lv_second_host_daemon_log(LvSecondHost *h);

/* A fresh loopback port for a migration stream. */
guint lv_second_host_port(LvSecondHost *h);

/* Live migration A → B, driven as virsh migrate --live does, with flags
 * (VIR_MIGRATE_LIVE and whatever else).  Returns the domain on B or NULL,
 * libvirt's error in *ret_error. */
virDomainPtr lv_migrate_to(LvSecondHost *h, virDomainPtr dom, unsigned flags, char **ret_error);

/* Does B's QEMU read pattern from the luks node over image (any luks node
 * if image is NULL)?  qemu-io inside that QEMU; its verdict is read from
 * B's QEMU log. */
gboolean lv_second_host_reads_pattern(LvSecondHost *h, virDomainPtr dom_b, const char *image, guint8 pattern,
                                      gsize len);
