/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The verbs that change what a guest sees: attach and detach. */

/* attach DOMAIN SOURCE [--target --bus --mode --read-only --passphrase-file] */
int verb_attach(int argc, char **argv);
/* detach VOLUME-PATH|DOMAIN:TARGET [--timeout] */
int verb_detach(int argc, char **argv);
/* rearm VOLUME-PATH|DOMAIN:TARGET [--passphrase-file] */
int verb_rearm(int argc, char **argv);
