/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* migrate DOMAIN DEST_URI: the orchestration issue 19 describes, for one
 * guest whose volumes live on storage both hosts share.
 *
 *   1. the source service (the local bus, or --host's) lists DOMAIN's
 *      volumes; each must be in native mode (QEMU decrypts): a cryptsetup-
 *      mode volume's mapping cannot be prepared on the destination yet;
 *   2. the destination service (--dest-bus) stages each one
 *      (StageIncoming), with the passphrase in a pipe as for attach;
 *   3. the source libvirt (--source-uri) migrates the guest live, peer to
 *      peer, to DEST_URI;
 *   4. the destination's volume objects are awaited and printed.
 * If the migration fails, the guest keeps running where it was with its
 * volumes; what was staged expires on the destination (--timeout). */

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "bus.h"
#include "luksvolumectl.h"
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

static int stage_one(sd_bus *dest, const Volume *v) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_close_ int pass_fd = -EBADF;
        const char *uuid = volume_get(v, "DomainUUID"), *source = volume_get(v, "Source"),
                   *target = volume_get(v, "Target"), *secret = volume_get(v, "SecretUUID");
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
                r = sd_bus_message_append(m, "{sv}{sv}{sv}", "secret-uuid", "s", secret, "target", "s", target,
                                          "passphrase-fd", "h", pass_fd);
        if (r >= 0 && arg_timeout_set)
                r = sd_bus_message_append(m, "{sv}", "timeout", "u", arg_timeout);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return fail_errno(EXIT_FAIL, r, "Failed to build StageIncoming request: %m");

        r = sd_bus_call(dest, m, SLOW_CALL_TIMEOUT_USEC, &error, NULL);
        if (r < 0)
                return fail_bus("Failed to stage the volume on the destination", &error, r);
        log_info(PROGRAM ": Staged %s (%s) on the destination.", source, target);
        return EXIT_OK;
}

static int migrate_domain(const char *uuid, const char *dest_uri) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        char ssh_uri[512];
        const char *source_uri = "qemu:///system";
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0, r;
        unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER;

        /* The libvirt beside the source service: --host's over ssh. */
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
        if (arg_migrate_uri && virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_URI, arg_migrate_uri) < 0) {
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
        char uuid[VIR_UUID_STRING_BUFLEN] = "";
        int status;

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

                if (!streq_ptr(volume_get(v, "Mode"), "native"))
                        return fail(EXIT_NOT_SUPPORTED,
                                    "%s is in %s mode: only native-mode volumes can migrate (a dm-crypt mapping "
                                    "is not prepared on the destination).",
                                    v->path, volume_get(v, "Mode") ?: "an unknown");
                /* A header shim's device is not prepared on the destination
                 * either (issue 17's shim; a property older services lack). */
                if (streq_ptr(volume_get(v, "NativeHeader"), "shim"))
                        return fail(EXIT_NOT_SUPPORTED,
                                    "%s reaches QEMU through a header shim (%s), which is not prepared on the "
                                    "destination: attach it with --native-header=volume to migrate it.",
                                    v->path, volume_get(v, "ShimDevice") ?: "a device-mapper device");
                if (isempty(volume_get(v, "SecretUUID")) || isempty(volume_get(v, "DomainUUID")) ||
                    isempty(volume_get(v, "Source")) || isempty(volume_get(v, "Target")))
                        return fail(EXIT_FAIL, "%s lacks its secret, domain, source or target.", v->path);
                /* All of one domain (open_volumes() filtered them). */
                snprintf(uuid, sizeof uuid, "%s", volume_get(v, "DomainUUID"));
        }
        if (uuid[0] == '\0')
                return fail(EXIT_NOT_FOUND, "%s has no volume attached by this service; migrate it with virsh migrate.",
                            argv[1]);

        status = connect_dest(&dest);
        if (status != EXIT_OK)
                return status;
        for (size_t i = 0; i < vols.n; i++) {
                status = stage_one(dest, &vols.items[i]);
                if (status != EXIT_OK) {
                        if (i > 0)
                                log_error(PROGRAM ": What was staged already expires on the destination by itself.");
                        return status;
                }
        }

        status = migrate_domain(uuid, argv[2]);
        if (status != EXIT_OK) {
                log_error(PROGRAM ": The guest keeps running on the source with its volumes; what was staged "
                                  "expires on the destination by itself.");
                return status;
        }
        return await_arrival(dest, &vols);
}
