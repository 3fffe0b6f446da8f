/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by the benchmark's parts (bench.c, scale.c): the bus, where the
 * CSV files go, how long a run is, and the little statistics they need. */

#include <gio/gio.h>
#include <stdbool.h>

#define PASS        "benchmark passphrase"
/* Before each set of timed cycles the host comes to rest: right after
 * guests start (TCG firmware boots), or after N attaches in a row,
 * libvirtd and QEMU answer 1.3-1.6x slower for a while (libvirt's own
 * attach beside the daemon's showed it, 2026-12-07), and that is neither
 * what an attach costs nor what attaching N volumes does to it.  Every
 * set (and its interleaved baseline) gets the same pause. */
#define SETTLE_USEC (5 * G_USEC_PER_SEC)

extern GDBusConnection *bus;
extern const char *outdir;
/* --short: fewer repetitions, the long parts left out (CI). */
extern bool short_run;

double percentile(GArray *a, double p);
double now_ms(void);
/* A new GArray of double. */
GArray *samples_new(void);
void sample_add(GArray *a, double v);
/* The host's 1-minute load average, as /proc/loadavg says ("?" if
 * unreadable); g_free. */
char *load_average(void);

/* scale.c: N volumes over M domains — attach each, kill -9, the daemon's
 * recovery, detach each; rows for the table and, if csv is not NULL, one
 * line "N,M,attach_1,attach_N,detach_1,detach_N,objects_ms,complete_ms"
 * appended to it. */
void scale_scenario(guint n, guint m, GString *csv);
/* Cold activation (first call on an unactivated service to its reply,
 * against the same call on the running daemon) and the idle daemon's
 * memory: rows for the table. */
void cold_activation_and_memory(void);
/* stall.c: guest stalls during Attach (needs a host kernel to boot). */
void guest_stalls(void);
/* shim.c: the header shim against the volume's own header (needs
 * device-mapper: run inside the VM, `bench/run.sh --shim`). */
void shim_scenario(void);
/* rbd.c: a LUKS1 RBD image attached through the daemon against the same
 * attach through libvirt and through virsh (needs Ceph: `bench/run.sh
 * --rbd` starts tests/ceph/cluster.sh, named by cluster_sh). */
void rbd_figures(const char *cluster_sh);
