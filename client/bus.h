/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The connection to luksvolumed's bus: opening it (locally, or on --host
 * over ssh) and reporting a call that failed on it. */

#include <systemd/sd-bus.h>

/* Step: the system bus (of --host, if given), with interactive polkit
 * authorization allowed when someone at a terminal can answer. Returns an
 * exit status. */
int connect_bus(sd_bus **ret);

/* Step: bus can carry the file descriptor that holds a passphrase, which
 * verb needs; ssh (--host) cannot. Returns an exit status. */
int require_fd_passing(sd_bus *bus, const char *verb);

/* Logs "luksvolumectl: WHAT: MESSAGE" (plus a hint for authorization
 * failures) and returns the exit status for the error. */
int fail_bus(const char *what, const sd_bus_error *error, int r);
