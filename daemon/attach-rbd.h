/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The checks an RBD image ("rbd:POOL/IMAGE") passes before QEMU is given
 * it natively, shared by Attach (attach-rbd.c) and StageIncoming
 * (stage.c), which differ only in whether other Ceph clients may have the
 * image open: for a migration the source host's QEMU must. */

#include <systemd/sd-bus.h>

#include "luks.h"
#include "manager.h"

/* Before the header is read: no namespace, a CephSecret= configured. */
int rbd_native_preflight(Manager *m, const char *path, sd_bus_error *error);

/* After: LUKS1 (LUKS2 needs librbd's encryption, which libvirt < 11.3
 * cannot hot-plug). */
int rbd_native_header_check(const char *path, const LuksInfo *luks, sd_bus_error *error);
