/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The verbs that change what a guest sees: attach, detach, rearm, resize. */

/* attach DOMAIN SOURCE [--target --bus --mode --read-only --serial
 *                      --discard --passphrase-file] */
int verb_attach(int argc, char **argv);
/* detach VOLUME-PATH|DOMAIN:TARGET [--timeout]
 * detach --all [DOMAIN] [--timeout] */
int verb_detach(int argc, char **argv);
/* resize VOLUME-PATH|DOMAIN:TARGET SIZE [--allow-shrink] */
int verb_resize(int argc, char **argv);
/* rearm VOLUME-PATH|DOMAIN:TARGET [--passphrase-file] */
int verb_rearm(int argc, char **argv);
