/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Volumes as the command line names them: SOURCE, a file or device path,
 * made absolute for the daemon; VOLUME-PATH|DOMAIN:TARGET, resolved to the
 * volume object the daemon exports. And volume objects as the bus carries
 * them: read with their properties from GetManagedObjects or
 * InterfacesAdded. */

#include <stdbool.h>
#include <stddef.h>

#include <systemd/sd-bus.h>

#include "props.h"

typedef struct Volume {
        char *path;
        PropList props;
} Volume;

typedef struct VolumeList {
        Volume *items;
        size_t n;
} VolumeList;

void volume_list_done(VolumeList *l);
const char *volume_get(const Volume *v, const char *name);

/* Reads "o a{sa{sv}}" (a GetManagedObjects entry body, or InterfacesAdded):
 * the object path and, if the object carries the volume interface, its
 * properties.  *ret_is_volume says whether it did. */
int read_object_with_interfaces(sd_bus_message *m, const char **ret_path, PropList *props, bool *ret_is_volume);

/* Whether v is attached to domain, by its name (exactly) or its UUID (in
 * any case), as DOMAIN:TARGET matches it. */
bool volume_in_domain(const Volume *v, const char *domain);
/* Drops the volumes not attached to domain. */
void volume_list_filter_domain(VolumeList *l, const char *domain);

/* Step: fetch all volumes. Returns an exit status. */
int get_volumes(sd_bus *bus, VolumeList *ret);

/* Step, the common start of the verbs acting on all volumes (or a
 * domain's, if domain is not NULL): connect, fetch, filter.  Returns an
 * exit status. */
int open_volumes(const char *domain, sd_bus **ret_bus, VolumeList *ret);

/* Step, the common start of the verbs taking VOLUME-PATH|DOMAIN:TARGET
 * (argv[1]; verb names the command in messages): check the argument,
 * connect, resolve it to an object path. Returns an exit status. */
int open_volume(int argc, char **argv, const char *verb, sd_bus **ret_bus, char **ret_path);

/* Step: SOURCE from the command line, as the absolute path the daemon
 * needs. Returns an exit status. */
int source_from_arg(const char *arg, char **ret);
