/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The no-echo passphrase prompt on the controlling terminal. Whatever ends
 * it (Enter, ^D, an error, SIGINT/SIGTERM/SIGHUP/SIGQUIT, a stop and
 * continue), the terminal is left as it was found. */

#include <stddef.h>

/* Prompts "PROMPT for SOURCE: " on /dev/tty with echo off and reads
 * one line into buf, without its newline (the Enter key is not part of the
 * passphrase). -E2BIG if the line is longer than size bytes, -ECANCELED on
 * ^D. buf is the caller's to wipe, also on failure: it may hold part of
 * what was typed. */
int prompt_passphrase(const char *prompt, const char *source, char *buf, size_t size, size_t *ret_len);
