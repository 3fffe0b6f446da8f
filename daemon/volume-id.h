/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Pure naming rules: disk targets per bus, the stable volume id derived
 * from (domain UUID, target), its object path, and the secret usage id
 * namespace.  Nothing here touches the outside world. */

#include <stdbool.h>
#include <stddef.h>

#define LV_OBJECT_PATH        "/org/example/LuksVolume1"
#define LV_VOLUME_PATH_PREFIX "/org/example/LuksVolume1/volume"

/* Every libvirt secret this service creates has a usage id beginning with
 * this: the start-up scan recognises ours by it. */
#define LV_SECRET_USAGE_PREFIX "luksvolumed:"

bool bus_valid(const char *bus);
/* "vd" for virtio, "sd" for scsi/sata/usb. */
const char *bus_target_prefix(const char *bus);
/* target is PREFIX + 1..3 lowercase letters and matches the bus's prefix. */
bool target_valid_for_bus(const char *target, const char *bus);
/* The bus a target name implies when the caller gave only a target. */
const char *bus_from_target(const char *target);

/* First name PREFIXa, PREFIXb, …, PREFIXz, PREFIXaa, … not in used[]. */
int target_pick_free(const char *bus, char *const *used, size_t n_used, char **ret);

/* Canonical lower-case 36-char UUID check. */
bool uuid_valid(const char *s);

/* id = 32 hex digits of the domain UUID, '_', target.  Path-safe by
 * construction, stable across daemon restarts. */
int volume_id_build(const char *domain_uuid, const char *target, char **ret);
int volume_id_parse(const char *id, char **ret_domain_uuid, char **ret_target);
/* prefix + id: the one shape behind object paths, disk aliases and
 * mapping names, so they can never disagree about a volume's id. */
int volume_id_build_prefixed(const char *prefix, const char *domain_uuid, const char *target, char **ret);
int volume_path_build(const char *domain_uuid, const char *target, char **ret);
/* -EINVAL unless path is LV_VOLUME_PATH_PREFIX "/" + a valid id. */
int volume_path_parse(const char *path, char **ret_domain_uuid, char **ret_target);

/* The libvirt user alias on every disk this service plugs in:
 * LV_DISK_ALIAS_PREFIX + volume id.  It lives in the domain's live status
 * XML, so it survives libvirtd restarts (which drop ephemeral secrets) and
 * daemon crashes: the start-up scan recognises our disks by it. */
#define LV_DISK_ALIAS_PREFIX "ua-luksvol-"
int disk_alias_build(const char *domain_uuid, const char *target, char **ret);

/* LV_SECRET_USAGE_PREFIX + domain uuid + ":" + target */
int secret_usage_build(const char *domain_uuid, const char *target, char **ret);
int secret_usage_parse(const char *usage, char **ret_domain_uuid, char **ret_target);
