/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* An Attach that its caller named (the attach option request-id): the
 * caller hears its steps (the AttachProgress signal, sent to it alone) and
 * may abandon it with CancelAttach until the point of no return — the
 * moment before the secret (native) or the mapping (cryptsetup) is made and
 * the disk plugged in.  Everything before that point has no effect outside
 * the service, so a cancelled attach answers Error.Cancelled with nothing
 * left behind, through the attach's own failure path.
 *
 * Every function accepts NULL (an attach without request-id): no signals,
 * never cancelled, always committed. */

#include <stdbool.h>

#include <systemd/sd-bus.h>

typedef struct Manager Manager;
typedef struct AttachRequest AttachRequest;

/* Steps, in order, as the signal names them. */
#define ATTACH_STEP_CHECKING "checking"     /* authorization, the source, the mode */
#define ATTACH_STEP_DERIVING "deriving-key" /* the passphrase checked against the key slots */
#define ATTACH_STEP_PLUGGING "plugging"     /* past the point of no return */

/* Registers the request of message's sender under id (NULL or "": none,
 * *ret NULL).  InvalidArgs for an id that is too long or that the same
 * sender already has in flight.  Emits "checking". */
int attach_request_new(Manager *m, sd_bus_message *message, const char *id, AttachRequest **ret, sd_bus_error *error);
AttachRequest *attach_request_free(AttachRequest *r);

/* Event loop, before the act job: Error.Cancelled (< 0) if CancelAttach
 * took it; else tells the caller "deriving-key". */
int attach_request_proceed(AttachRequest *r, sd_bus_error *error);

/* Worker: the point of no return.  Error.Cancelled (< 0) if it was
 * cancelled: the attach must stop.  Otherwise from now on CancelAttach
 * answers false, and the caller hears "plugging" (through the loop). */
int attach_request_commit(AttachRequest *r, sd_bus_error *error);

/* CancelAttach(s request_id) → (b cancelled). */
int method_cancel_attach(sd_bus_message *message, void *userdata, sd_bus_error *error);
