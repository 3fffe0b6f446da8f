/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The passphrase: read from --passphrase-file (a file, or stdin with "-")
 * or typed at the no-echo prompt, then handed to the daemon as the read
 * end of a pipe ("passphrase-fd"). It never travels in argv, the
 * environment or a D-Bus message body, so it never sits in the bus
 * daemon's queues or shows up in a bus monitor. */

/* Same cap as the daemon applies; LUKS itself allows more, but nobody types
 * 8 KiB, and a bounded size guarantees the whole secret fits into the pipe
 * buffer so writing it can never block on a daemon that is not reading. */
#define PASSPHRASE_MAX 8192u

/* Step: get the passphrase from --passphrase-file or the prompt
 * ("PROMPT for SOURCE: ", e.g. "Passphrase for /img: ") and return a
 * pipe's read end holding it, ready for "passphrase-fd". The secret itself
 * is wiped before this returns. Returns an exit status. */
int acquire_passphrase_fd(const char *prompt, const char *source, int *ret_fd);
/* Step: the same for a new passphrase, from --new-passphrase-file, or typed
 * twice at the prompt ("New passphrase for SOURCE: ", then "Repeat new
 * passphrase …"), which must match; for "new-passphrase-fd". */
int acquire_new_passphrase_fd(const char *source, int *ret_fd);
