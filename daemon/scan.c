/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The rescan (scan.h): libvirt's picture of the disks this service
 * attached — every running and saved domain's XML, read several at a
 * time — and the cleanup of secrets and devices of ours nothing names.
 * What each found volume's source is comes from scan-facts.c. */

#include <dirent.h>
#include <libvirt/virterror.h>

#include "disk-xml.h"
#include "luks-shim.h"
#include "luks.h"
#include "parallel.h"
#include "scan.h"
#include "util.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);

/* A native disk on our header shim for (domain, target): the volume's
 * facts come from the shim device's table and UUID, not the disk's
 * source, which names the shim. */
static bool disk_on_shim(Volume *v, const DiskInfo *d) {
        _cleanup_free_ char *expected = NULL, *source = NULL;
        LuksInfo info;

        if (!luks_shim_path_ours(d->source) || luks_shim_name(v->domain_uuid, v->target, &expected) < 0 ||
            !streq(d->source + strlen("/dev/mapper/"), expected))
                return false;
        v->native_header = NATIVE_HEADER_SHIM;
        v->shim_device = strdup(d->source);
        if (luks_shim_info(expected, &source, &info) >= 0) {
                v->source = TAKE_PTR(source);
                v->luks_version = info.version;
                free(v->luks_uuid);
                v->luks_uuid = strdup(info.uuid);
                v->payload_offset = info.payload_offset;
        }
        return true;
}

/* saved: dom is not running but has a managed save image, whose XML is
 * read instead of the live one; its volumes are in state "saved". */
static int scan_domain(virConnectPtr conn, virDomainPtr dom, bool saved, Volume **list) {
        _cleanup_free_ char *xml = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];
        DiskInfo *disks = NULL;
        size_t n = 0;
        const char *name;
        int r;

        name = virDomainGetName(dom);
        if (!name || virDomainGetUUIDString(dom, uuid) < 0)
                return -EIO;
        xml = saved ? virDomainManagedSaveGetXMLDesc(dom, 0) : virDomainGetXMLDesc(dom, 0);
        if (!xml) {
                virErrorPtr e = virGetLastError();
                /* It stopped since the listing: nothing of ours is in it. */
                if (e && (e->code == VIR_ERR_NO_DOMAIN || e->code == VIR_ERR_OPERATION_INVALID))
                        return -ENODEV;
                /* Anything else: we do not know what it holds. */
                return -EIO;
        }

        r = domain_xml_list_disks(xml, &disks, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                DiskInfo *d = &disks[i];
                uint64_t mapping_size = 0;
                Volume *v;

                if (!d->target || !bus_from_target(d->target))
                        continue;

                if (!disk_info_is_ours(d, uuid, d->target))
                        continue;

                if (d->encrypted) {
                        r = volume_new(name, uuid, d->target, &v);
                        if (r < 0)
                                break;
                        v->mode = VOLUME_MODE_NATIVE;
                        v->native_header = NATIVE_HEADER_VOLUME;
                        /* The secret may be gone (libvirtd restarts drop
                         * ephemeral secrets); QEMU already has the key. */
                        v->secret_uuid = d->secret_uuid ? strdup(d->secret_uuid) : NULL;
                        if (!disk_on_shim(v, d))
                                v->source = d->source ? strdup(d->source) : NULL;
                } else {
                        _cleanup_free_ char *expected = NULL, *source = NULL;
                        LuksInfo info;

                        if (!d->source || luks_mapping_name(uuid, d->target, &expected) < 0 ||
                            !startswith(d->source, "/dev/mapper/") ||
                            !streq(d->source + strlen("/dev/mapper/"), expected)) {
                                /* Our disk, neither encrypted by QEMU nor on
                                 * our mapping: ciphertext as a plain disk, left
                                 * by an attach whose undo could not unplug it
                                 * (attach.c).  The guest must not keep it: a
                                 * volume "detaching" that the reconciliation
                                 * unplugs. */
                                if (saved)
                                        continue;
                                r = volume_new(name, uuid, d->target, &v);
                                if (r < 0)
                                        break;
                                v->mode = VOLUME_MODE_NATIVE;
                                v->source = d->source ? strdup(d->source) : NULL;
                                v->unplug_retry = true;
                                log_warning(
                                        "Disk %s of '%s' is ours but not encrypted: asking the guest to release it.",
                                        d->target, name);
                        } else {
                                r = volume_new(name, uuid, d->target, &v);
                                if (r < 0)
                                        break;
                                v->mode = VOLUME_MODE_CRYPTSETUP;
                                v->mapper_device = strdup(d->source);
                                if (luks_mapping_info(expected, &source, &info) >= 0) {
                                        v->source = TAKE_PTR(source);
                                        v->luks_version = info.version;
                                        free(v->luks_uuid);
                                        v->luks_uuid = strdup(info.uuid);
                                }
                                /* The mapping's own table knows where the
                                 * payload starts and how much of it the guest
                                 * gets. */
                                if (luks_mapping_geometry(expected, &v->payload_offset, &mapping_size) < 0)
                                        mapping_size = 0;
                        }
                }
                /* What the guest sees: a mapping's own table says; a native
                 * volume's header and source size do (the facts below, as
                 * at its attach) — QEMU's LUKS driver presents exactly that,
                 * and asking QEMU for every domain's block statistics cost
                 * the rescan most of its time (issue 20). */
                if (v->mode == VOLUME_MODE_CRYPTSETUP)
                        v->size = mapping_size;
                /* What only the attaching daemon knew (AttachedByUID,
                 * AttachTimestamp) stays unknown: volume_new()'s sentinels. */
                v->serial = d->serial ? strdup(d->serial) : NULL;
                v->discard = d->discard;
                v->bus = d->bus ? strdup(d->bus) : strdup(bus_from_target(d->target));
                v->read_only = d->read_only;
                if (saved)
                        v->state = VOLUME_STATE_SAVED;
                else if (v->unplug_retry)
                        v->state = VOLUME_STATE_DETACHING;
                v->next = *list;
                *list = v;
                log_info("Found attached volume %s (%s on %s).", v->path, strempty(v->source), name);
        }

        disk_info_array_free(disks, n);
        return r < 0 ? r : 0;
}

/* One domain's part of a scan. */
typedef struct DomainScan {
        virConnectPtr conn;
        virDomainPtr dom;
        bool saved;
        Volume *found;
        int r;
} DomainScan;

static void scan_one(size_t i, void *userdata) {
        DomainScan *d = (DomainScan *) userdata + i;

        d->r = scan_domain(d->conn, d->dom, d->saved, &d->found);
}

/* Scans the listed domains several at a time (each costs round trips to
 * libvirtd and QEMU, not CPU) and prepends what each found to *list, in
 * the listing's order.  False if some domain could not be read. */
static bool scan_domains(virConnectPtr conn, virDomainPtr *doms, int n, bool saved, Volume **list) {
        _cleanup_free_ DomainScan *scans = NULL;
        bool complete = true;

        if (n <= 0)
                return true;
        scans = calloc((size_t) n, sizeof *scans);
        if (!scans) {
                log_oom();
                return false;
        }
        for (int i = 0; i < n; i++)
                scans[i] = (DomainScan){ .conn = conn, .dom = doms[i], .saved = saved };
        parallel_for((size_t) n, SCAN_DOMAIN_THREADS, scan_one, scans);

        for (int i = 0; i < n; i++) {
                Volume *last = scans[i].found;

                if (scans[i].r < 0 && scans[i].r != -ENODEV) {
                        log_warning_errno(scans[i].r, "Failed to scan %sdomain '%s': %m", saved ? "saved " : "",
                                          strempty(virDomainGetName(doms[i])));
                        complete = false;
                }
                if (!last)
                        continue;
                while (last->next)
                        last = last->next;
                last->next = *list;
                *list = scans[i].found;
        }
        return complete;
}

static void domains_free(virDomainPtr *doms, int n) {
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
}

int scan_volumes(Virt *v, Volume **ret, bool *ret_complete, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        virDomainPtr *doms = NULL;
        Volume *list = NULL;
        bool complete = true;
        int n, r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0)
                return sd_bus_error_setf(error, "org.example.LuksVolume1.Error.Failed", "Cannot list domains: %s",
                                         strempty(virGetLastErrorMessage()));
        if (!scan_domains(conn, doms, n, false, &list))
                complete = false;
        domains_free(doms, n);

        /* Guests saved with managedsave (libvirt-guests at host shutdown
         * does that) come back with their disks: their volumes are ours
         * still, in state "saved", and their secrets and mappings are no
         * orphans. */
        doms = NULL;
        n = virConnectListAllDomains(conn, &doms,
                                     VIR_CONNECT_LIST_DOMAINS_INACTIVE | VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE);
        if (n < 0) {
                log_warning("Cannot list saved domains: %s", strempty(virGetLastErrorMessage()));
                complete = false;
                n = 0;
        }
        if (!scan_domains(conn, doms, n, true, &list))
                complete = false;
        domains_free(doms, n);

        *ret = list;
        *ret_complete = complete;
        return 0;
}

static bool secret_kept(const Volume *keep, const char *uuid) {
        for (const Volume *v = keep; v; v = v->next)
                if (streq_ptr(v->secret_uuid, uuid))
                        return true;
        return false;
}

static bool device_named(const char *device, const char *name) {
        return device && startswith(device, "/dev/mapper/") && streq(device + strlen("/dev/mapper/"), name);
}

static bool mapping_kept(const Volume *keep, const char *name) {
        for (const Volume *v = keep; v; v = v->next)
                if (device_named(v->mapper_device, name) || device_named(v->shim_device, name))
                        return true;
        return false;
}

static void cleanup_orphan_secrets(Virt *v, const Volume *keep) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        virSecretPtr *secrets = NULL;
        int n;

        if (virt_connect(v, &conn, &error) < 0) {
                sd_bus_error_free(&error);
                return;
        }
        n = virConnectListAllSecrets(conn, &secrets, VIR_CONNECT_LIST_SECRETS_EPHEMERAL);
        if (n < 0)
                return;
        for (int i = 0; i < n; i++) {
                const char *usage = virSecretGetUsageID(secrets[i]);
                char uuid[VIR_UUID_STRING_BUFLEN];

                if (usage && startswith(usage, LV_SECRET_USAGE_PREFIX) &&
                    virSecretGetUUIDString(secrets[i], uuid) >= 0 && !secret_kept(keep, uuid)) {
                        if (virSecretUndefine(secrets[i]) >= 0)
                                log_notice("Cleaned up orphaned secret %s (%s).", uuid, usage);
                        else
                                log_warning("Cannot undefine orphaned secret %s: %s", uuid,
                                            strempty(virGetLastErrorMessage()));
                }
                virSecretFree(secrets[i]);
        }
        free(secrets);
}

static void cleanup_orphan_mappings(const Volume *keep) {
        DIR *d = opendir("/dev/mapper");
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                sd_bus_error error = SD_BUS_ERROR_NULL;

                bool shim = false;

                /* Ours by name: another service's (DeviceTag=) are not. */
                if (!luks_device_name_ours(de->d_name, &shim) || mapping_kept(keep, de->d_name))
                        continue;
                /* A header shim: ciphertext only, but nothing of ours
                 * uses it any more. */
                if (shim) {
                        if (luks_shim_remove(de->d_name, &error) >= 0)
                                log_notice("Removed orphaned header shim %s.", de->d_name);
                        else
                                log_warning("Cannot remove orphaned header shim %s: %s", de->d_name, error.message);
                } else if (luks_deactivate(de->d_name, &error) >= 0)
                        log_notice("Closed orphaned mapping %s.", de->d_name);
                else
                        log_warning("Cannot close orphaned mapping %s: %s", de->d_name, error.message);
                sd_bus_error_free(&error);
        }
        closedir(d);
}

void scan_cleanup_orphans(Virt *v, const Volume *keep) {
        cleanup_orphan_secrets(v, keep);
        cleanup_orphan_mappings(keep);
}
