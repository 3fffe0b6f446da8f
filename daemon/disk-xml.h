/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Every piece of XML the daemon writes or reads goes through libxml2 here:
 * caller-supplied strings only ever become attribute values or text nodes
 * built by the library, never pasted text. */

#include <stdbool.h>
#include <stddef.h>

/* Initializes libxml2 (xmlInitParser()).  Call once from main() before any
 * thread starts — libxml2's first initialization is not thread-safe, and
 * libvirt's client library uses libxml2 too.  The functions below call it
 * as well (idempotent), so tests and fuzzers need not.  Never call
 * xmlCleanupParser() while the daemon runs. */
void disk_xml_init(void);

typedef struct DiskSpec {
        bool block;         /* type='block' <source dev=…>, else type='file' <source file=…> */
        const char *source; /* absolute path */
        const char *target; /* e.g. "vdb", "sdc" */
        const char *bus;    /* "virtio", "scsi", "sata", "usb" */
        bool read_only;     /* adds <readonly/> */
        const char *
                secret_uuid; /* non-NULL: <encryption format='luks'><secret type='passphrase' uuid=…/></encryption> under <source> */
        const char *alias;  /* non-NULL: <alias name=…/> (a libvirt user alias, "ua-" prefix) */
        const char *serial; /* non-NULL: <serial>…</serial> (the guest's /dev/disk/by-id name) */
        bool discard;       /* discard='unmap' on <driver>: the guest's discards reach the image */
        /* Since 0.3, an RBD image instead of block/source: type='network',
         * <source protocol='rbd' name=rbd_name> with <config file=…/> and
         * <auth username=…><secret type='ceph' uuid=…/></auth> where given. */
        const char *rbd_name; /* "pool/image" */
        const char *ceph_config;
        const char *ceph_user;
        const char *ceph_secret_uuid;
} DiskSpec;

/* <disk type=… device='disk'><driver name='qemu' type='raw'[ discard='unmap']/>
 *  <source …>[<encryption…>]</source><target dev=… bus=…/>[<readonly/>]
 *  [<serial>…</serial>][<alias name=…/>]</disk>.  Returns 0 or negative errno
 * (-EINVAL for a NULL/empty required field). *ret_xml is malloc()ed. */
int disk_xml_build(const DiskSpec *spec, char **ret_xml);

/* <secret ephemeral='yes' private='yes'><description>…</description>
 *  <usage type='volume'><volume>USAGE_ID</volume></usage></secret> */
int secret_xml_build(const char *usage_id, const char *description, char **ret_xml);
/* The same with <uuid>uuid</uuid> (a UUID string, else -EINVAL). */
int secret_xml_build_with_uuid(const char *uuid, const char *usage_id, const char *description, char **ret_xml);

typedef struct DiskInfo {
        char *target;            /* <target dev> */
        char *bus;               /* <target bus>, may be NULL */
        char *device;            /* device attribute: "disk", "cdrom", … */
        char *source;            /* <source file> or <source dev>, "rbd:" + <source name> of an RBD disk; may be NULL */
        bool rbd;                /* since 0.3: type='network', protocol='rbd' */
        bool block;              /* disk type='block' */
        bool read_only;          /* <readonly/> present */
        bool encrypted;          /* an <encryption> element under <source> (or legacy under <disk>) */
        char *encryption_format; /* its format attribute, may be NULL */
        char *secret_uuid;       /* <encryption><secret uuid>, may be NULL */
        char *alias;             /* <alias name>, may be NULL */
        char *serial;            /* <serial> text, may be NULL */
        bool discard;            /* <driver discard='unmap'> */
        /* Other host paths the disk uses: its <backingStore> chain and a
         * <mirror> (block copy) target, each a file or block device path.
         * NULL-terminated, NULL when there are none. */
        char **other_sources;
} DiskInfo;

void disk_info_free(DiskInfo *d);

/* Ours: the disk carries the alias this service gives every disk it plugs
 * in, for exactly this domain and target (disk_alias_build()). */
bool disk_info_is_ours(const DiskInfo *d, const char *domain_uuid, const char *target);
void disk_info_array_free(DiskInfo *d, size_t n);

/* Parses a domain XML document (virDomainGetXMLDesc output) and returns all
 * <devices><disk> entries. Malformed XML → -EBADMSG. */
int domain_xml_list_disks(const char *domain_xml, DiskInfo **ret_disks, size_t *ret_n);

/* The disk whose <target dev> equals target; -ENOENT if none. */
int domain_xml_find_disk(const char *domain_xml, const char *target, DiskInfo *ret);

/* The target a new disk gets: wanted if no disk of the domain has it
 * (-EEXIST if one has), else the first free name on bus (-ENOSPC if none
 * is left); -EBADMSG and -ENOMEM as above. */
int domain_xml_pick_target(const char *domain_xml, const char *wanted, const char *bus, char **ret);

/* The same two for the live XML of a domain that must be running, in the
 * same parse: -ESRCH if it is not.  libvirt gives a running domain's root
 * element its id (the fact virDomainIsActive() asks libvirtd for), so a
 * caller that reads the XML anyway saves that call. */
int domain_xml_find_disk_running(const char *domain_xml, const char *target, DiskInfo *ret);
int domain_xml_pick_target_running(const char *domain_xml, const char *wanted, const char *bus, char **ret);
