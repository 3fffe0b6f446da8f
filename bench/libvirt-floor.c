/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The floors of any libvirt client's start on this machine, for the
 * benchmark's cold-activation row (issue 20):
 *
 *   luksvolume-libvirt-floor        links libvirt and nothing else of the
 *                                   daemon's, and returns at once: exec,
 *                                   libvirt's some 55 libraries mapped,
 *                                   relocated and initialised;
 *   luksvolume-libvirt-floor URI    the same, then what Probe('') needs of
 *                                   libvirt at the least: a connection,
 *                                   libvirt's and the hypervisor's versions.
 *
 * A daemon that answers Probe('') with libvirt's facts cannot start faster
 * than the second, whatever it does itself. */

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

int main(int argc, char *argv[]) {
        unsigned long lib = 0, hv = 0;
        virConnectPtr conn;
        int r;

        if (argc < 2)
                return 0;
        conn = virConnectOpen(argv[1]);
        if (!conn)
                return 1;
        r = virConnectGetLibVersion(conn, &lib) < 0 || virConnectGetVersion(conn, &hv) < 0;
        virConnectClose(conn);
        return r;
}
