/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/* migrate's own options. */
extern const char *arg_dest_bus;    /* --dest-bus: "system" or a D-Bus address */
extern const char *arg_source_uri;  /* --source-uri: the source's libvirt */
extern const char *arg_migrate_uri; /* --migrate-uri: libvirt's VIR_MIGRATE_PARAM_URI */
extern bool arg_unsafe;             /* --unsafe: VIR_MIGRATE_UNSAFE */

/* migrate DOMAIN DEST_URI --dest-bus=BUS [--source-uri --migrate-uri
 *                         --unsafe --passphrase-file --timeout] */
int verb_migrate(int argc, char **argv);
