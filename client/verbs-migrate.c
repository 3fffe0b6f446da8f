/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* migrate DOMAIN DEST_URI: the orchestration issue 19 describes, for one
 * guest whose volumes live on storage both hosts share.
 *
 *   1. the source service (the local bus, or --host's) lists DOMAIN's
 *      volumes: native mode (QEMU decrypts, with the volume's header or a
 *      header shim's) or cryptsetup mode (a dm-crypt mapping); the source
 *      libvirt (--source-uri) gives the guest's XML, which must show each
 *      volume's disk;
 *   2. the destination service (--dest-bus) stages each one
 *      (StageIncoming), with the passphrase in a pipe as for attach, and
 *      prepares what QEMU will open there: the secret, and for cryptsetup
 *      mode and shims its own device-mapper device, whose name it replies;
 *   3. the source libvirt migrates the guest live, peer to peer, to
 *      DEST_URI; where a destination device's name differs from the
 *      source's, the guest's XML on the destination names it
 *      (VIR_MIGRATE_PARAM_DEST_XML; why in migrate-xml.c);
 *   4. the destination's volume objects are awaited and printed.
 * If the migration fails, the guest keeps running where it was with its
 * volumes; what was staged expires on the destination (--timeout). */

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "bus.h"
#include "luksvolumectl.h"
#include "migrate-xml.h"
#include "passphrase.h"
#include "verbs-migrate.h"
#include "volume-lookup.h"

const char *arg_dest_bus = NULL;
const char *arg_source_uri = NULL;
const char *arg_migrate_uri = NULL;
bool arg_unsafe = false;

/* How long step 4 waits for the destination to show the volumes. */
#define ARRIVAL_TIMEOUT_USEC (30 * USEC_PER_SEC)

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);
DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);

static int connect_dest(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (streq(arg_dest_bus, "system"))
                r = sd_bus_open_system(&bus);
        else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, arg_dest_bus);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_negotiate_fds(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to connect to the destination's bus %s: %m", arg_dest_bus);
        if (arg_ask_password && isatty(STDIN_FILENO))
                (void) sd_bus_set_allow_interactive_authorization(bus, true);
        if (sd_bus_can_send(bus, SD_BUS_TYPE_UNIX_FD) <= 0)
                return fail(EXIT_NOT_SUPPORTED,
                            "The destination's bus %s cannot pass file descriptors, which migrate needs to hand "
                            "over the passphrase; run luksvolumectl on the destination host (--dest-bus=system, "
                            "--host=SOURCE).",
                            arg_dest_bus);
        *ret = TAKE_PTR(bus);
        return EXIT_OK;
}

/* The reply of StageIncoming: the device the destination prepared for the
 * disk (malloc()ed), or NULL when QEMU opens the volume itself there.  An
 * older destination replies nothing. */
static int read_stage_reply(sd_bus_message *reply, char **ret_device) {
        /* Points into reply, copied once at the end. */
        const char *device = NULL;
        int r;

        *ret_device = NULL;
        if (!streq_ptr(sd_bus_message_get_signature(reply, true), "a{sv}"))
                return 0;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *contents, *s;
                char type;

                r = sd_bus_message_read_basic(reply, 's', &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(reply, &type, &contents);
                if (r < 0)
                        return r;
                if (streq(key, "device")) {
                        if (!streq_ptr(contents, "s"))
                                return -EBADMSG;
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r < 0)
                                return r;
                        device = s;
                } else {
                        r = sd_bus_message_skip(reply, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        if (device) {
                *ret_device = strdup(device);
                if (!*ret_device)
                        return -ENOMEM;
        }
        return 0;
}

/* Step 2 for one volume. discard: its disk in the guest's XML passes
 * discards on, which for cryptsetup mode the destination's dm-crypt mapping
 * must allow as the source's does. *ret_device: as read_stage_reply(). */
static int stage_one(sd_bus *dest, const Volume *v, bool discard, char **ret_device) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_close_ int pass_fd = -EBADF;
        const char *uuid = volume_get(v, "DomainUUID"), *source = volume_get(v, "Source"),
                   *target = volume_get(v, "Target"), *secret = volume_get(v, "SecretUUID"),
                   *read_only = volume_get(v, "ReadOnly");
        bool cryptsetup = streq_ptr(volume_get(v, "Mode"), "cryptsetup");
        int r, status;

        status = acquire_passphrase_fd("Passphrase", source, &pass_fd);
        if (status != EXIT_OK)
                return status;

        r = sd_bus_message_new_method_call(dest, &m, SERVICE_NAME, MANAGER_PATH, MANAGER_IFACE, "StageIncoming");
        if (r >= 0)
                r = sd_bus_message_sensitive(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", uuid, source);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', NULL, 0);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}", "target", "s", target, "passphrase-fd", "h", pass_fd);
        /* Only what differs from the defaults (native mode, the volume's
         * own header, read-write, no discard): a destination older than
         * these options refuses any it does not know, and can still take
         * the plain native volumes it always could. */
        if (r >= 0 && cryptsetup)
                r = sd_bus_message_append(m, "{sv}", "mode", "s", "cryptsetup");
        if (r >= 0 && !cryptsetup && streq_ptr(volume_get(v, "NativeHeader"), "shim"))
                r = sd_bus_message_append(m, "{sv}", "native-header", "s", "shim");
        if (r >= 0 && streq_ptr(read_only, "yes"))
                r = sd_bus_message_append(m, "{sv}", "read-only", "b", true);
        if (r >= 0 && cryptsetup && discard)
                r = sd_bus_message_append(m, "{sv}", "discard", "b", true);
        /* A cryptsetup-mode volume has none (and may not be given one). */
        if (r >= 0 && !isempty(secret))
                r = sd_bus_message_append(m, "{sv}", "secret-uuid", "s", secret);
        if (r >= 0 && arg_timeout_set)
                r = sd_bus_message_append(m, "{sv}", "timeout", "u", arg_timeout);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build StageIncoming request: %m");

        r = sd_bus_call(dest, m, SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return fail_bus("Failed to stage the volume on the destination", &error, r);
        r = read_stage_reply(reply, ret_device);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse the destination's StageIncoming reply for %s: %m",
                                  source);
        log_info(PROGRAM ": Staged %s (%s) on the destination%s%s.", source, target, *ret_device ? " as " : "",
                 strempty(*ret_device));
        return EXIT_OK;
}

/* Step 2 for all volumes, each staged under the disk the guest's XML has for
 * it. Where the destination prepared a device under another name than the
 * disk's source here, domain is changed to name it; *ret_renamed says
 * whether any was. */
static int stage_all(sd_bus *dest, const VolumeList *vols, xmlDoc *domain, bool *ret_renamed) {
        bool renamed = false;

        for (size_t i = 0; i < vols->n; i++) {
                _cleanup_free_ char *source_dev = NULL, *device = NULL;
                const char *target = volume_get(&vols->items[i], "Target");
                bool discard = false;
                int r, status;

                r = migrate_xml_disk(domain, target, &source_dev, &discard);
                if (r < 0)
                        status = fail_errno(EXIT_FAIL, r, "Failed to read disk %s in the guest's XML: %m", target);
                else
                        status = stage_one(dest, &vols->items[i], discard, &device);
                if (status != EXIT_OK) {
                        if (i > 0)
                                log_error(PROGRAM ": What was staged already expires on the destination by itself.");
                        return status;
                }
                if (!device || streq_ptr(device, source_dev))
                        continue;

                r = migrate_xml_set_source_dev(domain, target, device);
                if (r == -EINVAL)
                        status = fail(EXIT_FAIL, "The destination staged disk %s as \"%s\", not a device path.", target,
                                      device);
                else if (r == -EMEDIUMTYPE)
                        status = fail(EXIT_FAIL,
                                      "The destination staged disk %s as device %s, but the guest's XML has no block "
                                      "device source for it.",
                                      target, device);
                else if (r < 0)
                        status = fail_errno(EXIT_FAIL, r, "Failed to name %s in the guest's XML: %m", device);
                if (r < 0) {
                        log_error(PROGRAM ": What was staged already expires on the destination by itself.");
                        return status;
                }
                renamed = true;
        }
        *ret_renamed = renamed;
        return EXIT_OK;
}

/* Step 1's libvirt half: the guest at the libvirt beside the source
 * service, the one that migrates it in step 3. */
static int open_source_domain(const char *uuid, virConnectPtr *ret_conn, virDomainPtr *ret_dom) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        char ssh_uri[512];
        const char *source_uri = "qemu:///system";
        int r;

        /* --host's over ssh, unless --source-uri says otherwise. */
        if (arg_source_uri)
                source_uri = arg_source_uri;
        else if (arg_host) {
                r = snprintf(ssh_uri, sizeof ssh_uri, "qemu+ssh://%s/system", arg_host);
                if (r < 0 || (size_t) r >= sizeof ssh_uri)
                        return fail(EXIT_USAGE, "--host is too long for a libvirt URI.");
                source_uri = ssh_uri;
        }

        conn = virConnectOpen(source_uri);
        if (!conn)
                return fail(EXIT_FAIL, "Cannot connect to the source's libvirt %s: %s", source_uri,
                            virGetLastErrorMessage());
        dom = virDomainLookupByUUIDString(conn, uuid);
        if (!dom)
                return fail(EXIT_NOT_FOUND, "Domain %s not found at %s: %s", uuid, source_uri,
                            virGetLastErrorMessage());
        *ret_conn = TAKE_PTR(conn);
        *ret_dom = TAKE_PTR(dom);
        return EXIT_OK;
}

/* Step 1: the guest's XML, parsed, with a disk for each volume. As libvirt
 * would send it (MIGRATABLE), and SECURE because, given as the destination's
 * XML, it replaces what libvirt sends: without them, graphics passwords
 * would be lost on the way. */
static int get_domain_xml(virDomainPtr dom, const VolumeList *vols, xmlDoc **ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        _cleanup_erase_free_ char *xml = NULL;
        int r;

        xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_SECURE);
        if (!xml)
                return fail(EXIT_FAIL, "Cannot get the guest's XML from the source's libvirt: %s",
                            virGetLastErrorMessage());
        r = migrate_xml_parse(xml, &doc);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to parse the guest's XML: %m");
        for (size_t i = 0; i < vols->n; i++) {
                const char *target = volume_get(&vols->items[i], "Target");

                r = migrate_xml_disk(doc, target, NULL, NULL);
                if (r == -ENOENT)
                        return fail(EXIT_FAIL, "The guest's XML has no disk %s, which %s is attached as.", target,
                                    vols->items[i].path);
                if (r < 0)
                        return fail_errno(EXIT_FAIL, r, "Failed to read disk %s in the guest's XML: %m", target);
        }
        *ret = TAKE_PTR(doc);
        return EXIT_OK;
}

/* Step 3. dest_xml: the guest's XML for the destination, or NULL for the
 * one libvirt sends by itself. */
static int migrate_domain(virDomainPtr dom, const char *dest_uri, const char *dest_xml) {
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0, r = 0;
        unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER;

        if (arg_migrate_uri)
                r = virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, arg_migrate_uri);
        if (r >= 0 && dest_xml)
                r = virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML, dest_xml);
        if (r < 0) {
                virTypedParamsFree(params, n);
                return fail(EXIT_FAIL, "Out of memory.");
        }
        if (arg_unsafe)
                flags |= VIR_MIGRATE_UNSAFE;

        r = virDomainMigrateToURI3(dom, dest_uri, params, n, flags);
        virTypedParamsFree(params, n);
        if (r < 0)
                return fail(EXIT_FAIL, "Migration to %s failed: %s", dest_uri, virGetLastErrorMessage());
        return EXIT_OK;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Step 4: each volume's object on the destination (same path: it is made
 * of the domain's UUID and the target). */
static int await_arrival(sd_bus *dest, const VolumeList *vols) {
        uint64_t deadline = now_usec() + ARRIVAL_TIMEOUT_USEC;
        size_t missing;

        for (;;) {
                _cleanup_(volume_list_done) VolumeList there = {};
                int status = get_volumes(dest, &there);

                if (status != EXIT_OK)
                        return status;
                missing = 0;
                for (size_t i = 0; i < vols->n; i++) {
                        bool found = false;
                        for (size_t k = 0; k < there.n; k++)
                                found = found || streq(there.items[k].path, vols->items[i].path);
                        if (!found)
                                missing++;
                }
                if (missing == 0 || now_usec() >= deadline)
                        break;
                (void) usleep(200 * 1000);
        }
        for (size_t i = 0; i < vols->n; i++)
                printf("%s\n", vols->items[i].path);
        if (missing > 0)
                return fail(EXIT_FAIL,
                            "The guest migrated, but %zu of its volume(s) did not appear on the destination's "
                            "service within %u s; see its journal.",
                            missing, (unsigned) (ARRIVAL_TIMEOUT_USEC / USEC_PER_SEC));
        return EXIT_OK;
}

int verb_migrate(int argc, char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *source = NULL, *dest = NULL;
        _cleanup_(volume_list_done) VolumeList vols = {};
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_(xmlFreeDocp) xmlDoc *domain = NULL;
        _cleanup_erase_free_ char *dest_xml = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN] = "";
        bool renamed = false;
        int status, r;

        if (argc != 3)
                return fail(EXIT_USAGE, "migrate expects DOMAIN and DEST_URI.");
        if (isempty(argv[1]) || isempty(argv[2]))
                return fail(EXIT_USAGE, "DOMAIN and DEST_URI must not be empty.");
        if (!arg_dest_bus)
                return fail(EXIT_USAGE, "migrate needs --dest-bus: the destination service's bus (system, or a "
                                        "D-Bus address).");

        status = open_volumes(argv[1], &source, &vols);
        if (status != EXIT_OK)
                return status;

        /* All checked before anything is staged. */
        for (size_t i = 0; i < vols.n; i++) {
                const Volume *v = &vols.items[i];
                const char *mode = volume_get(v, "Mode");

                /* A mode newer than this client: its staging is unknown here. */
                if (!streq_ptr(mode, "native") && !streq_ptr(mode, "cryptsetup"))
                        return fail(EXIT_NOT_SUPPORTED, "%s is in %s mode, which migrate does not know.", v->path,
                                    mode ?: "an unknown");
                if (isempty(volume_get(v, "DomainUUID")) || isempty(volume_get(v, "Source")) ||
                    isempty(volume_get(v, "Target")))
                        return fail(EXIT_FAIL, "%s lacks its domain, source or target.", v->path);
                /* Native mode's secret is staged under the same UUID, which
                 * the guest's XML names. */
                if (streq(mode, "native") && isempty(volume_get(v, "SecretUUID")))
                        return fail(EXIT_FAIL, "%s lacks its secret.", v->path);
                /* All of one domain (open_volumes() filtered them). */
                snprintf(uuid, sizeof uuid, "%s", volume_get(v, "DomainUUID"));
        }
        if (uuid[0] == '\0')
                return fail(EXIT_NOT_FOUND, "%s has no volume attached by this service; migrate it with virsh migrate.",
                            argv[1]);

        status = open_source_domain(uuid, &conn, &dom);
        if (status != EXIT_OK)
                return status;
        status = get_domain_xml(dom, &vols, &domain);
        if (status != EXIT_OK)
                return status;

        status = connect_dest(&dest);
        if (status != EXIT_OK)
                return status;
        status = stage_all(dest, &vols, domain, &renamed);
        if (status != EXIT_OK)
                return status;
        if (renamed) {
                r = migrate_xml_format(domain, &dest_xml);
                if (r < 0) {
                        log_error_errno(r, PROGRAM ": Failed to write the guest's XML for the destination: %m");
                        log_error(PROGRAM ": What was staged expires on the destination by itself.");
                        return EXIT_FAIL;
                }
        }

        status = migrate_domain(dom, argv[2], dest_xml);
        if (status != EXIT_OK) {
                log_error(PROGRAM ": The guest keeps running on the source with its volumes; what was staged "
                                  "expires on the destination by itself.");
                return status;
        }
        return await_arrival(dest, &vols);
}
