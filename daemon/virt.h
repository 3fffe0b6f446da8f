/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The libvirt side: one shared connection (libvirt's client is
 * thread-safe), host versions, domains' live XML, secrets, hot-plug.
 * Every function here blocks on RPCs: call them from worker threads only.
 * Errors are reported as typed sd_bus_errors carrying libvirt's text. */

#include <stdbool.h>
#include <stdint.h>

#include <libvirt/libvirt.h>
#include <systemd/sd-bus.h>

#include "passphrase.h"

typedef struct Virt Virt;

typedef struct HostInfo {
        unsigned long libvirt_version;
        unsigned long hypervisor_version;
        char hypervisor[32]; /* "QEMU" */
} HostInfo;

int virt_new(const char *uri, Virt **ret);
Virt *virt_free(Virt *v);

/* Closes the calling thread's connection; for worker_set_thread_exit(). */
void virt_thread_done(void *v);

/* Returns a new reference to a live connection, (re)connecting if needed. */
int virt_connect(Virt *v, virConnectPtr *ret, sd_bus_error *error);

/* Cached; see virt_invalidate_host_info(). */
int virt_host_info(Virt *v, HostInfo *ret, sd_bus_error *error);
/* libvirtd went away or came back: the versions may have changed. */
void virt_invalidate_host_info(Virt *v);
/* libvirtd went or came back (the events thread saw it): every worker's
 * connection is reopened before its next use. */
void virt_connection_changed(Virt *v);

/* By name or UUID (a string that is a UUID is tried as one first).
 * Error.NoSuchDomain. */
int virt_domain_lookup(Virt *v, const char *name_or_uuid, virDomainPtr *ret, sd_bus_error *error);
/* Its name (malloc()ed) and UUID. */
int virt_domain_identity(virDomainPtr dom, char ret_uuid[VIR_UUID_STRING_BUFLEN], char **ret_name, sd_bus_error *error);
/* Error.DomainNotRunning (naming it as what) unless it is running. */
int virt_domain_check_running(virDomainPtr dom, const char *what, sd_bus_error *error);
/* The two above together. */
int virt_domain_lookup_running(Virt *v, const char *name_or_uuid, virDomainPtr *ret, sd_bus_error *error);

int virt_domain_live_xml(virDomainPtr dom, char **ret, sd_bus_error *error);

/* Defines an ephemeral, private secret with that usage id and sets its
 * value; on any failure nothing is left defined.  The passphrase is wiped
 * here (and the thread's stack scrubbed) whatever the outcome. */
int virt_secret_create(Virt *v, const char *usage_id, Passphrase **passphrase, char ret_uuid[VIR_UUID_STRING_BUFLEN],
                       sd_bus_error *error);
/* The same, with that UUID (want_uuid NULL: libvirt picks one). */
int virt_secret_create_with_uuid(Virt *v, const char *want_uuid, const char *usage_id, Passphrase **passphrase,
                                 char ret_uuid[VIR_UUID_STRING_BUFLEN], sd_bus_error *error);
/* Whether a secret with that UUID is defined. */
int virt_secret_exists(Virt *v, const char *uuid, bool *ret, sd_bus_error *error);
/* Since 0.3: the libvirt 'ceph' secret (a UUID or its usage name) QEMU's
 * librbd authenticates with; NotSupported if there is none such. */
int virt_ceph_secret(Virt *v, const char *spec, char ret_uuid[VIR_UUID_STRING_BUFLEN], sd_bus_error *error);
/* Missing secret counts as success. */
int virt_secret_undefine(Virt *v, const char *uuid, sd_bus_error *error);
/* Undefines the secret only if its usage id is usage_id (one this service
 * made for that disk): 1 if undefined, 0 if missing or not ours (logged). */
int virt_secret_undefine_ours(Virt *v, const char *uuid, const char *usage_id, sd_bus_error *error);

/* Hot-plugs the disk.  Error.BadPassphrase for QEMU's "Invalid password",
 * Error.InUse for QEMU's image-lock refusal, Error.DomainNotRunning. */
int virt_attach_disk(virDomainPtr dom, const char *disk_xml, sd_bus_error *error);

/* Whether the live XML still has a disk on target (a domain that is not
 * running has none). */
int virt_disk_present(virDomainPtr dom, const char *target, bool *ret, sd_bus_error *error);

/* libvirt's capacity of the disk on target: the bytes its guest sees (for
 * a disk QEMU decrypts, the plaintext). */
int virt_disk_capacity(virDomainPtr dom, const char *target, uint64_t *ret, sd_bus_error *error);

/* virDomainBlockResize() of the disk on target to size bytes.  QEMU grows
 * (or shrinks) the node at the top: for a disk it decrypts, the plaintext,
 * its file growing by the LUKS payload offset on top; for a block device,
 * whatever the device holds now, at most. */
int virt_block_resize(virDomainPtr dom, const char *target, uint64_t size, sd_bus_error *error);

/* Asks the guest to release the disk with that alias (a missing device is
 * fine); returns at once.  Removal is complete once QEMU reports the device
 * deleted (device-removed event) and the live XML no longer has it. */
int virt_detach_request(virDomainPtr dom, const char *target, const char *alias, sd_bus_error *error);

/* Request, then poll the live XML until the disk is gone or timeout_ms
 * passes (Error.Busy): holds its thread, so only for short waits (undoing
 * a failed attach).  Detach itself waits on the event loop (detach.c). */
int virt_detach_disk(virDomainPtr dom, const char *target, const char *alias, unsigned timeout_ms, sd_bus_error *error);

/* Per-domain serialisation of target choice + hot-plug + unplug: two
 * callers must never pick the same free target at once. */
void virt_domain_lock(Virt *v, const char *domain_uuid);
void virt_domain_unlock(Virt *v, const char *domain_uuid);
