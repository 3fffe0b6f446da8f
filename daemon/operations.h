/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The methods, one operation a file (attach.c, detach.c, probe.c,
 * rearm.c, resize.c; keys.c the four key management methods), and what
 * they share; manager-bus.c and volume-bus.c put them into the vtables. */

#include <systemd/sd-bus.h>

#include "call.h"
#include "mode.h"
#include "passphrase.h"
#include "virt.h"

#define ACTION_ATTACH           "org.example.luksvolume1.attach"
#define ACTION_ATTACH_CLEARTEXT "org.example.luksvolume1.attach-cleartext"
#define ACTION_DETACH           "org.example.luksvolume1.detach"
#define ACTION_PROBE            "org.example.luksvolume1.probe"
#define ACTION_PROBE_UNREADABLE "org.example.luksvolume1.probe-unreadable"
#define ACTION_RESIZE           "org.example.luksvolume1.resize"
#define ACTION_MANAGE_KEYS      "org.example.luksvolume1.manage-keys"

/* How long a passphrase-fd may take to deliver its data. */
#define PASSPHRASE_FD_TIMEOUT_MS 10000

int method_attach(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_detach(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_probe(sd_bus_message *message, void *userdata, sd_bus_error *error);
/* domains.c: the running guests, for clients without libvirt access. */
int method_list_domains(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_change_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_add_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_remove_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_verify_passphrase(sd_bus_message *message, void *userdata, sd_bus_error *error);
/* On volume objects (userdata: the Volume). */
int method_rearm(sd_bus_message *message, void *userdata, sd_bus_error *error);
/* Volume.Detach: Manager.Detach for this object (one core, detach.c). */
int method_volume_detach(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_resize(sd_bus_message *message, void *userdata, sd_bus_error *error);

/* Pure checks of a domain argument (InvalidArgs). */
int validate_domain(const char *domain, sd_bus_error *error);

/* For a failed sd_bus_message_read*() or option parse: keeps an error that
 * is set already, else InvalidArgs — never an errno-named D-Bus error. */
int lv_error_bad_message(sd_bus_error *error, int r);

/* Reads a passphrase argument (ay) into locked memory and wipes the
 * message's copy; *ret NULL if it is empty.  what names it in errors ("the
 * passphrase").  InvalidArgs over PASSPHRASE_MAX. */
int read_passphrase_arg(sd_bus_message *message, const char *what, Passphrase **ret, sd_bus_error *error);
/* Worker threads only, once c is authorized: reads the passphrase from *fd
 * (closed, set to -1) within PASSPHRASE_FD_TIMEOUT_MS; option names it in
 * errors.  InvalidArgs for anything but a pipe or memfd and for a late,
 * empty or over-long passphrase, Busy when the caller has too many reads in
 * flight (FD_READS_MAX_*), Failed for a read error. */
int read_passphrase_option(Call *c, int *fd, const char *option, Passphrase **ret, sd_bus_error *error);
