/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "disk-xml.h"
#include "errors.h"
#include "fault.h"
#include "util.h"
#include "virt.h"
#include "volume-id.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);
DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree);
DEFINE_TRIVIAL_CLEANUP_FUNC(virSecretPtr, virSecretFree);

typedef struct DomainLock {
        char uuid[VIR_UUID_STRING_BUFLEN];
        struct DomainLock *next;
} DomainLock;

struct Virt {
        char *uri;
        /* One connection per worker thread.  libvirt's client serialises
         * calls on one connection (measured: a Probe waited for an attach
         * spending 1.6 s in QEMU's key derivation on a shared one), while
         * separate connections proceed in parallel.  Worker threads are
         * reused, so a connection is too, and it closes with its thread. */
        pthread_key_t conn_key;
        /* Bumped whenever the events thread sees libvirtd go or come back.
         * A worker's connection made in an older epoch is dropped before
         * use: it can still look alive until the first call on it fails
         * ("Cannot write data", seen in CI after a libvirtd restart). */
        atomic_uint epoch;
        pthread_mutex_t lock; /* protects the domain lock list and the host info cache */
        pthread_cond_t cond;
        DomainLock *held;

        /* Versions only change when libvirtd (or QEMU under it) does; every
         * Attach and Probe needs them, so they are cached per connection
         * epoch, and for at most HOST_INFO_TTL_MS in case QEMU is upgraded
         * under a running libvirtd. */
        HostInfo host_info;
        uint64_t host_info_time;
        bool host_info_valid;
};

#define HOST_INFO_TTL_MS (60U * 1000U)

static void conn_close_destructor(void *p) {
        virConnectClose(p);
}

/* QEMU's text for a LUKS passphrase that opens no key slot, wrapped by
 * libvirt into an internal error; the one way to tell it apart. */
#define QEMU_BAD_PASSPHRASE_TEXT   "Invalid password"
/* QEMU's image locking ("Failed to get \"write\" lock", "Failed to get
 * shared \"write\" lock"): another QEMU has the image open. */
#define QEMU_IMAGE_LOCK_TEXT_SHORT "\" lock"

static const char *last_error_message(void) {
        const char *m = virGetLastErrorMessage();
        return m ? m : "unknown libvirt error";
}

static int fail(sd_bus_error *error, const char *what) {
        virErrorPtr e = virGetLastError();
        int code = e ? e->code : VIR_ERR_INTERNAL_ERROR;

        if (code == VIR_ERR_NO_CONNECT || code == VIR_ERR_RPC || code == VIR_ERR_SYSTEM_ERROR)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "%s: libvirt is not reachable: %s", what,
                                         last_error_message());
        return sd_bus_error_setf(error, LV_ERROR_FAILED, "%s: %s", what, last_error_message());
}

/* libvirt reports every error through this hook as well as through the
 * thread-local last error; the default prints to stderr. We report each
 * error once, where it is handled. */
static void silent_error_func(void *userdata, virErrorPtr error) {
}

int virt_new(const char *uri, Virt **ret) {
        Virt *v;

        v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        v->uri = strdup(uri);
        if (!v->uri) {
                free(v);
                return -ENOMEM;
        }
        if (pthread_key_create(&v->conn_key, conn_close_destructor) != 0) {
                free(v->uri);
                free(v);
                return -ENOMEM;
        }
        pthread_mutex_init(&v->lock, NULL);
        pthread_cond_init(&v->cond, NULL);
        virSetErrorFunc(NULL, silent_error_func);
        *ret = v;
        return 0;
}

Virt *virt_free(Virt *v) {
        if (!v)
                return NULL;
        /* Worker threads have exited by now, closing their connections. */
        pthread_key_delete(v->conn_key);
        for (DomainLock *l = v->held, *n; l; l = n) {
                n = l->next;
                free(l);
        }
        pthread_cond_destroy(&v->cond);
        pthread_mutex_destroy(&v->lock);
        free(v->uri);
        free(v);
        return NULL;
}

void virt_thread_done(void *userdata) {
        Virt *v = userdata;
        virConnectPtr c = pthread_getspecific(v->conn_key);

        if (c) {
                (void) pthread_setspecific(v->conn_key, NULL);
                virConnectClose(c);
        }
}

/* The epoch the calling thread's connection was opened in; one Virt per
 * process, so a thread-local is enough. */
static _Thread_local unsigned conn_epoch;

/* After a libvirtd restart a thread's connection can still look alive
 * until its first RPC fails with an RPC-layer error ("client socket is
 * closed"). Then the connection is dropped so that one retry reconnects. */

static bool drop_if_connection_failed(Virt *v) {
        virErrorPtr e = virGetLastError();

        if (!e || e->domain != VIR_FROM_RPC)
                return false;
        virt_thread_done(v);
        return true;
}

int virt_connect(Virt *v, virConnectPtr *ret, sd_bus_error *error) {
        virConnectPtr c = pthread_getspecific(v->conn_key);
        unsigned epoch = atomic_load(&v->epoch);

        if (c && (conn_epoch != epoch || virConnectIsAlive(c) != 1)) {
                /* libvirtd went away (restart, crash): start afresh. */
                log_warning("Connection to libvirt at %s was lost, reconnecting.", v->uri);
                virt_invalidate_host_info(v);
                virConnectClose(c);
                c = NULL;
                (void) pthread_setspecific(v->conn_key, NULL);
        }
        if (!c) {
                c = virConnectOpen(v->uri);
                if (!c)
                        return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot connect to libvirt at %s: %s", v->uri,
                                                 last_error_message());
                /* A libvirtd that hangs (rather than exits) must not hold a
                 * worker forever: keepalive (run by the events thread's loop)
                 * closes the connection and the call fails. */
                (void) virConnectSetKeepAlive(c, 5, 3);
                if (pthread_setspecific(v->conn_key, c) != 0) {
                        virConnectClose(c);
                        return -ENOMEM;
                }
                conn_epoch = epoch;
        }

        virConnectRef(c);
        *ret = c;
        return 0;
}

static uint64_t now_ms(void);

/* A call failed on the thread's connection: if libvirt's RPC layer says the
 * connection is gone, reconnect so that the caller can try once more.
 * Returns 1 if it may retry, 0 if the failure is not the connection's (its
 * libvirt error kept for the caller), or a negative errno with error set. */
static int reconnect_after_failure(Virt *v, virConnectPtr *conn, sd_bus_error *error) {
        int r;

        if (!drop_if_connection_failed(v))
                return 0;
        virConnectClose(TAKE_PTR(*conn));
        r = virt_connect(v, conn, error);
        return r < 0 ? r : 1;
}

void virt_connection_changed(Virt *v) {
        atomic_fetch_add(&v->epoch, 1);
        virt_invalidate_host_info(v);
}

void virt_invalidate_host_info(Virt *v) {
        pthread_mutex_lock(&v->lock);
        v->host_info_valid = false;
        pthread_mutex_unlock(&v->lock);
}

int virt_host_info(Virt *v, HostInfo *ret, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        HostInfo h = {};
        const char *type;
        int r;

        pthread_mutex_lock(&v->lock);
        if (v->host_info_valid && now_ms() - v->host_info_time < HOST_INFO_TTL_MS) {
                *ret = v->host_info;
                pthread_mutex_unlock(&v->lock);
                return 0;
        }
        pthread_mutex_unlock(&v->lock);

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        if (virConnectGetLibVersion(conn, &h.libvirt_version) < 0 && drop_if_connection_failed(v)) {
                virConnectClose(TAKE_PTR(conn));
                r = virt_connect(v, &conn, error);
                if (r < 0)
                        return r;
                if (virConnectGetLibVersion(conn, &h.libvirt_version) < 0)
                        return fail(error, "Cannot read libvirt's version");
        } else if (h.libvirt_version == 0)
                return fail(error, "Cannot read libvirt's version");
        if (virConnectGetVersion(conn, &h.hypervisor_version) < 0)
                return fail(error, "Cannot read the hypervisor's version");
        type = virConnectGetType(conn);
        if (!type)
                return fail(error, "Cannot read the hypervisor type");
        snprintf(h.hypervisor, sizeof h.hypervisor, "%s", type);

        pthread_mutex_lock(&v->lock);
        v->host_info = h;
        v->host_info_time = now_ms();
        v->host_info_valid = true;
        pthread_mutex_unlock(&v->lock);

        *ret = h;
        return 0;
}

int virt_domain_lookup(Virt *v, const char *name_or_uuid, virDomainPtr *ret, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        int r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        /* A string that parses as a UUID is looked up as one first: names
         * may look like anything, but a UUID match is exact. */
        for (unsigned attempt = 0; attempt < 2 && !dom; attempt++) {
                if (attempt > 0) {
                        if (!drop_if_connection_failed(v))
                                break;
                        virConnectClose(TAKE_PTR(conn));
                        r = virt_connect(v, &conn, error);
                        if (r < 0)
                                return r;
                }
                if (uuid_valid(name_or_uuid))
                        dom = virDomainLookupByUUIDString(conn, name_or_uuid);
                if (!dom)
                        dom = virDomainLookupByName(conn, name_or_uuid);
        }
        if (!dom) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN)
                        return sd_bus_error_setf(error, LV_ERROR_NO_SUCH_DOMAIN, "No domain '%s'.", name_or_uuid);
                return fail(error, "Cannot look up the domain");
        }

        *ret = TAKE_PTR(dom);
        return 0;
}

int virt_domain_identity(virDomainPtr dom, char ret_uuid[VIR_UUID_STRING_BUFLEN], char **ret_name,
                         sd_bus_error *error) {
        const char *name = virDomainGetName(dom);
        char *copy;

        if (!name || virDomainGetUUIDString(dom, ret_uuid) < 0)
                return fail(error, "Cannot read the domain's name and UUID");
        copy = strdup(name);
        if (!copy)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        *ret_name = copy;
        return 0;
}

int virt_domain_check_running(virDomainPtr dom, const char *what, sd_bus_error *error) {
        int r = virDomainIsActive(dom);
        if (r < 0) {
                /* A transient domain that stopped since the look-up is gone
                 * altogether. */
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN)
                        return sd_bus_error_setf(error, LV_ERROR_NO_SUCH_DOMAIN, "No domain '%s'.", what);
                return fail(error, "Cannot query the domain's state");
        }
        if (r == 0)
                return sd_bus_error_setf(error, LV_ERROR_DOMAIN_NOT_RUNNING, "Domain '%s' is not running.", what);
        return 0;
}

int virt_domain_lookup_running(Virt *v, const char *name_or_uuid, virDomainPtr *ret, sd_bus_error *error) {
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        int r;

        r = virt_domain_lookup(v, name_or_uuid, &dom, error);
        if (r < 0)
                return r;
        r = virt_domain_check_running(dom, name_or_uuid, error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(dom);
        return 0;
}

int virt_domain_live_xml(virDomainPtr dom, char **ret, sd_bus_error *error) {
        char *xml = virDomainGetXMLDesc(dom, 0);
        if (!xml) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_DOMAIN)
                        return sd_bus_error_setf(error, LV_ERROR_DOMAIN_NOT_RUNNING, "The domain has gone away.");
                return fail(error, "Cannot read the domain's live XML");
        }
        *ret = xml;
        return 0;
}

int virt_secret_create(Virt *v, const char *usage_id, Passphrase **passphrase, char ret_uuid[VIR_UUID_STRING_BUFLEN],
                       sd_bus_error *error) {
        return virt_secret_create_with_uuid(v, NULL, usage_id, passphrase, ret_uuid, error);
}

int virt_secret_create_with_uuid(Virt *v, const char *want_uuid, const char *usage_id, Passphrase **passphrase,
                                 char ret_uuid[VIR_UUID_STRING_BUFLEN], sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virSecretFreep) virSecretPtr secret = NULL;
        _cleanup_free_ char *xml = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN];
        int r, k;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                goto finish;

        r = secret_xml_build_with_uuid(want_uuid, usage_id, "luksvolumed: passphrase of an attached LUKS volume", &xml);
        if (r < 0) {
                r = sd_bus_error_set_errnof(error, -r, "Cannot build the secret XML: %s", strerror(-r));
                goto finish;
        }

        secret = virSecretDefineXML(conn, xml, 0);
        if (!secret && (r = reconnect_after_failure(v, &conn, error)) != 0) {
                if (r < 0)
                        goto finish;
                secret = virSecretDefineXML(conn, xml, 0);
        }
        if (!secret) {
                virErrorPtr saved = virSaveLastError();
                /* Our usage ids encode domain and target, and the caller
                 * holds that domain's lock with the target free in the live
                 * XML: a secret already defined under this id is an orphan
                 * of a crashed run.  Only that conflict is worth a second
                 * try; other failures keep their own error. */
                if (saved && saved->message && strstr(saved->message, "already defined")) {
                        virSecretPtr old = virSecretLookupByUsage(conn, VIR_SECRET_USAGE_TYPE_VOLUME, usage_id);
                        if (old) {
                                log_notice("Removing orphaned secret for usage '%s'.", usage_id);
                                (void) virSecretUndefine(old);
                                virSecretFree(old);
                                secret = virSecretDefineXML(conn, xml, 0);
                        }
                }
                if (!secret) {
                        /* The define's own error, not the look-up's. */
                        r = sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot define the libvirt secret: %s",
                                              saved && saved->message ? saved->message : last_error_message());
                        virFreeError(saved);
                        goto finish;
                }
                virFreeError(saved);
        }
        if (virSecretGetUUIDString(secret, uuid) < 0) {
                r = fail(error, "Cannot read the secret's UUID");
                (void) virSecretUndefine(secret);
                goto finish;
        }

        fault_point("attach", 2); /* secret defined, no value */

        k = virSecretSetValue(secret, (*passphrase)->data, (*passphrase)->size, 0);
        /* The daemon's copy is no longer needed, whatever the outcome. */
        *passphrase = passphrase_free(*passphrase);
        stack_scrub();
        if (k < 0) {
                r = fail(error, "Cannot set the libvirt secret's value");
                /* A defined secret without value is useless and misleading. */
                (void) virSecretUndefine(secret);
                goto finish;
        }

        memcpy(ret_uuid, uuid, VIR_UUID_STRING_BUFLEN);
        r = 0;

finish:
        *passphrase = passphrase_free(*passphrase);
        return r;
}

int virt_secret_undefine(Virt *v, const char *uuid, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virSecretFreep) virSecretPtr secret = NULL;
        int r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        secret = virSecretLookupByUUIDString(conn, uuid);
        if (!secret && (r = reconnect_after_failure(v, &conn, error)) != 0) {
                if (r < 0)
                        return r;
                secret = virSecretLookupByUUIDString(conn, uuid);
        }
        if (!secret) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_SECRET)
                        return 0;
                return fail(error, "Cannot look up the libvirt secret");
        }
        if (virSecretUndefine(secret) < 0) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_SECRET)
                        return 0;
                return fail(error, "Cannot undefine the libvirt secret");
        }
        return 0;
}

int virt_ceph_secret(Virt *v, const char *spec, char ret_uuid[VIR_UUID_STRING_BUFLEN], sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virSecretFreep) virSecretPtr secret = NULL;
        int r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;
        /* A UUID, else the usage name an admin gave it ("client.libvirt
         * secret" and the like); either way it must be a ceph secret. */
        secret = virSecretLookupByUUIDString(conn, spec);
        if (!secret && (r = reconnect_after_failure(v, &conn, error)) != 0) {
                if (r < 0)
                        return r;
                secret = virSecretLookupByUUIDString(conn, spec);
        }
        if (!secret)
                secret = virSecretLookupByUsage(conn, VIR_SECRET_USAGE_TYPE_CEPH, spec);
        if (!secret || virSecretGetUsageType(secret) != VIR_SECRET_USAGE_TYPE_CEPH)
                return sd_bus_error_setf(error, LV_ERROR_NOT_SUPPORTED,
                                         "CephSecret=%s names no libvirt 'ceph' secret: define one holding the key of "
                                         "the Ceph client, or set CephSecret= in luksvolumed.conf.",
                                         spec);
        if (virSecretGetUUIDString(secret, ret_uuid) < 0)
                return fail(error, "Cannot read the Ceph secret's UUID");
        return 0;
}

int virt_secret_exists(Virt *v, const char *uuid, bool *ret, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        virSecretPtr secret;
        int r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;
        secret = virSecretLookupByUUIDString(conn, uuid);
        if (!secret && (r = reconnect_after_failure(v, &conn, error)) != 0) {
                if (r < 0)
                        return r;
                secret = virSecretLookupByUUIDString(conn, uuid);
        }
        if (!secret) {
                virErrorPtr e = virGetLastError();
                if (!(e && e->code == VIR_ERR_NO_SECRET))
                        return fail(error, "Cannot look up the libvirt secret");
                *ret = false;
                return 0;
        }
        virSecretFree(secret);
        *ret = true;
        return 0;
}

int virt_secret_undefine_ours(Virt *v, const char *uuid, const char *usage_id, sd_bus_error *error) {
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        _cleanup_(virSecretFreep) virSecretPtr secret = NULL;
        const char *usage;
        int r;

        r = virt_connect(v, &conn, error);
        if (r < 0)
                return r;

        secret = virSecretLookupByUUIDString(conn, uuid);
        if (!secret && (r = reconnect_after_failure(v, &conn, error)) != 0) {
                if (r < 0)
                        return r;
                secret = virSecretLookupByUUIDString(conn, uuid);
        }
        if (!secret) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_SECRET)
                        return 0;
                return fail(error, "Cannot look up the libvirt secret");
        }
        /* The disk's <encryption> names this secret, but only a secret this
         * service made for exactly this disk is ours to remove. */
        usage = virSecretGetUsageID(secret);
        if (virSecretGetUsageType(secret) != VIR_SECRET_USAGE_TYPE_VOLUME || !streq_ptr(usage, usage_id)) {
                log_warning("Not removing secret %s: its usage '%s' is not this service's '%s'.", uuid, strempty(usage),
                            usage_id);
                return 0;
        }
        if (virSecretUndefine(secret) < 0) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_NO_SECRET)
                        return 0;
                return fail(error, "Cannot undefine the libvirt secret");
        }
        return 1;
}

int virt_attach_disk(virDomainPtr dom, const char *disk_xml, sd_bus_error *error) {
        if (virDomainAttachDeviceFlags(dom, disk_xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                const char *m = last_error_message();
                if (strstr(m, QEMU_BAD_PASSPHRASE_TEXT))
                        return sd_bus_error_set(error, LV_ERROR_BAD_PASSPHRASE,
                                                "The passphrase does not open any key slot of the volume.");
                if (strstr(m, "Failed to get") && strstr(m, QEMU_IMAGE_LOCK_TEXT_SHORT))
                        return sd_bus_error_setf(error, LV_ERROR_IN_USE,
                                                 "The source is in use: QEMU could not lock it (%s).", m);
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_OPERATION_INVALID && strstr(m, "not running"))
                        return sd_bus_error_setf(error, LV_ERROR_DOMAIN_NOT_RUNNING, "%s", m);
                return fail(error, "Cannot attach the disk");
        }
        return 0;
}

int virt_disk_present(virDomainPtr dom, const char *target, bool *ret, sd_bus_error *error) {
        _cleanup_free_ char *xml = NULL;
        DiskInfo d = {};
        int r;

        /* On failure too: not knowing is never "gone". */
        *ret = true;

        r = virt_domain_live_xml(dom, &xml, error);
        if (r < 0) {
                /* A guest that went away took the disk with it. */
                if (!sd_bus_error_has_name(error, LV_ERROR_DOMAIN_NOT_RUNNING))
                        return r;
                sd_bus_error_free(error);
                *ret = false;
                return 0;
        }
        r = domain_xml_find_disk(xml, target, &d);
        disk_info_free(&d);
        if (r < 0 && r != -ENOENT) {
                /* Unparseable is not "gone". */
                sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot parse the domain's live XML: %s", strerror(-r));
                return r;
        }
        *ret = r >= 0;
        return 0;
}

int virt_disk_capacity(virDomainPtr dom, const char *target, uint64_t *ret, sd_bus_error *error) {
        virDomainBlockInfo info = {};

        if (virDomainGetBlockInfo(dom, target, &info, 0) < 0)
                return fail(error, "Cannot read the disk's size");
        *ret = (uint64_t) info.capacity;
        return 0;
}

int virt_block_resize(virDomainPtr dom, const char *target, uint64_t size, sd_bus_error *error) {
        if (virDomainBlockResize(dom, target, (unsigned long long) size, VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0) {
                virErrorPtr e = virGetLastError();
                if (e && e->code == VIR_ERR_OPERATION_INVALID && strstr(last_error_message(), "not running"))
                        return sd_bus_error_setf(error, LV_ERROR_DOMAIN_NOT_RUNNING, "%s", last_error_message());
                return fail(error, "Cannot resize the disk");
        }
        return 0;
}

int virt_detach_request(virDomainPtr dom, const char *target, const char *alias, sd_bus_error *error) {
        if (!alias)
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Disk '%s' has no device alias in the live XML.",
                                         target);

        /* The request only asks the guest; removal is complete when QEMU
         * reports the device deleted and libvirt drops it from the live XML. */
        if (virDomainDetachDeviceAlias(dom, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                virErrorPtr e = virGetLastError();
                if (!(e && e->code == VIR_ERR_DEVICE_MISSING))
                        return fail(error, "Cannot detach the disk");
        }
        fault_point("detach", 1); /* unplug requested, not yet confirmed */
        return 0;
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

int virt_detach_disk(virDomainPtr dom, const char *target, const char *alias, unsigned timeout_ms,
                     sd_bus_error *error) {
        uint64_t deadline = now_ms() + timeout_ms;
        int r;

        r = virt_detach_request(dom, target, alias, error);
        if (r < 0)
                return r;

        for (;;) {
                bool present;

                r = virt_disk_present(dom, target, &present, error);
                if (r < 0)
                        return r;
                if (!present)
                        return 0;
                if (now_ms() >= deadline)
                        return sd_bus_error_setf(error, LV_ERROR_BUSY,
                                                 "The guest has not released disk '%s' within %u s.", target,
                                                 timeout_ms / 1000);
                usleep(50 * 1000);
        }
}

static DomainLock *find_lock(Virt *v, const char *uuid) {
        for (DomainLock *l = v->held; l; l = l->next)
                if (streq(l->uuid, uuid))
                        return l;
        return NULL;
}

void virt_domain_lock(Virt *v, const char *domain_uuid) {
        DomainLock *l;

        pthread_mutex_lock(&v->lock);
        while (find_lock(v, domain_uuid))
                pthread_cond_wait(&v->cond, &v->lock);
        l = calloc(1, sizeof *l);
        if (!l)
                abort(); /* cannot serialise safely without it */
        snprintf(l->uuid, sizeof l->uuid, "%s", domain_uuid);
        l->next = v->held;
        v->held = l;
        pthread_mutex_unlock(&v->lock);
}

void virt_domain_unlock(Virt *v, const char *domain_uuid) {
        pthread_mutex_lock(&v->lock);
        for (DomainLock **pp = &v->held; *pp; pp = &(*pp)->next)
                if (streq((*pp)->uuid, domain_uuid)) {
                        DomainLock *l = *pp;
                        *pp = l->next;
                        free(l);
                        break;
                }
        pthread_cond_broadcast(&v->cond);
        pthread_mutex_unlock(&v->lock);
}
