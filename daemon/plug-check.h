/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* After a native hot-plug: did the guest's QEMU open the file that was
 * checked?  (qemu-fds.h says why the question arises.)  Worker threads
 * only; errors are typed sd_bus_errors. */

#include <systemd/sd-bus.h>

#include "qemu-fds.h"
#include "source.h"

/* What the running domain's QEMU has open before the plug.  Failed if its
 * process cannot be found or read. */
int qemu_plug_before(const char *domain_name, const char *domain_uuid, QemuFiles *ret, sd_bus_error *error);

/* After the plug of src: 0 if QEMU has src's file (or device) open and
 * opened nothing else meanwhile; else Error.Busy ("changed during the
 * attach"), or Failed if QEMU's files cannot be read. */
int qemu_plug_check(const char *domain_name, const QemuFiles *before, const SourceInfo *src, sd_bus_error *error);
