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

/* Step: get the passphrase from wherever the options say (for the prompt,
 * SOURCE names the volume it is for) and return a pipe's read end holding
 * it, ready for "passphrase-fd". The secret itself is wiped before this
 * returns. Returns an exit status. */
int acquire_passphrase_fd(const char *source, int *ret_fd);
