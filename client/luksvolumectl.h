/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every part of luksvolumectl shares: the service's names, the exit
 * statuses, how a failure is reported, and the global options.
 *
 * Conventions in client/:
 *   - small pure helpers return 0 / negative errno and do not log;
 *   - "step" functions (connect, acquire passphrase, resolve, verbs) log
 *     their own failure as one line and return an exit status (0 = OK),
 *     so main() can just return what the verb returned. */

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define PROGRAM "luksvolumectl"

#define SERVICE_NAME         "org.example.LuksVolume1"
#define MANAGER_PATH         "/org/example/LuksVolume1"
#define MANAGER_IFACE        "org.example.LuksVolume1"
#define VOLUME_IFACE         "org.example.LuksVolume1.Volume"
#define OBJECT_MANAGER_IFACE "org.freedesktop.DBus.ObjectManager"
#define PROPERTIES_IFACE     "org.freedesktop.DBus.Properties"
/* Where volume objects live: MANAGER_PATH/volume/<id> */
#define VOLUME_PATH_PREFIX   MANAGER_PATH "/volume/"

#define USEC_PER_SEC           UINT64_C(1000000)
/* Attach runs the LUKS key derivation (seconds with argon2 on slow hosts)
 * and possibly an interactive polkit dialog; the sd-bus default of 25 s is
 * far too short for either. */
#define SLOW_CALL_TIMEOUT_USEC (300 * USEC_PER_SEC)

enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,
        EXIT_USAGE = 2,
        EXIT_AUTH = 3,
        EXIT_BAD_PASSPHRASE = 4,
        EXIT_NOT_FOUND = 5,
        EXIT_NOT_SUPPORTED = 6,
        EXIT_BUSY = 7,
};

/* Log one "luksvolumectl: …" line (with %m meaning the given error) and
 * evaluate to the exit status. */
#define fail_errno(status, error, fmt, ...)                                \
        ({                                                                 \
                log_error_errno((error), PROGRAM ": " fmt, ##__VA_ARGS__); \
                (status);                                                  \
        })
#define fail(status, fmt, ...) fail_errno((status), 0, fmt, ##__VA_ARGS__)

typedef enum JsonMode {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
} JsonMode;

/* The command line, as parse_argv() in luksvolumectl.c leaves it. Options
 * are accepted anywhere on the line; check_options_for() has already
 * refused those the running verb does not take. */
extern bool arg_ask_password;
extern const char *arg_target;
extern const char *arg_bus;
extern const char *arg_mode;
extern const char *arg_native_header;
extern bool arg_read_only;
extern const char *arg_serial;
extern bool arg_discard;
extern bool arg_allow_shrink;
extern bool arg_all;
extern const char *arg_domain;
extern const char *arg_passphrase_file;
extern const char *arg_new_passphrase_file;
extern uint32_t arg_pbkdf_iterations;
extern bool arg_force;
extern bool arg_timeout_set;
extern uint32_t arg_timeout;
extern const char *arg_host;
extern JsonMode arg_json;
