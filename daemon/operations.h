/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The methods, one operation a file (attach.c, detach.c, probe.c, rearm.c,
 * resize.c), and what they share; manager-bus.c and volume-bus.c put them
 * into the vtables. */

#include <systemd/sd-bus.h>

#include "call.h"
#include "mode.h"
#include "virt.h"

#define ACTION_ATTACH "org.example.luksvolume1.attach"
#define ACTION_ATTACH_CLEARTEXT "org.example.luksvolume1.attach-cleartext"
#define ACTION_DETACH "org.example.luksvolume1.detach"
#define ACTION_PROBE "org.example.luksvolume1.probe"
#define ACTION_RESIZE "org.example.luksvolume1.resize"

int method_attach(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_detach(sd_bus_message *message, void *userdata, sd_bus_error *error);
int method_probe(sd_bus_message *message, void *userdata, sd_bus_error *error);
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
