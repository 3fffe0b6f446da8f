/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* ListDomains: the running guests a caller may attach to, so that clients
 * (the Cockpit page, scripts) need no libvirt access of their own — which a
 * delegated admin, not root and not in libvirt's group, does not have.
 *
 * Authorized as Probe of the host facts (the probe action, source ""),
 * with the detail operation=list-domains so that a rule can tell the two
 * apart: whoever may read the host's facts may see its guests' names, and
 * nobody else.  parse → authorize → list (worker: libvirt RPCs) → reply. */

#include <stdlib.h>
#include <string.h>

#include <libvirt/virterror.h>

#include "errors.h"
#include "manager.h"
#include "operations.h"
#include "options.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose);

typedef struct DomainEntry {
        char *name;
        char uuid[VIR_UUID_STRING_BUFLEN];
        const char *state; /* static */
} DomainEntry;

typedef struct DomainsOp {
        Call call;

        DomainEntry *entries;
        size_t n_entries;

        int r;
        sd_bus_error error;
} DomainsOp;

static void domains_op_free(Call *c) {
        DomainsOp *op = (DomainsOp *) c;

        for (size_t i = 0; i < op->n_entries; i++)
                free(op->entries[i].name);
        free(op->entries);
        sd_bus_error_free(&op->error);
        call_done(c);
        free(op);
}

static void domains_end(DomainsOp *op) {
        if (sd_bus_error_is_set(&op->error))
                call_reply_error(&op->call, &op->error);
        call_unref(&op->call);
}

/* libvirt's states as words; an active domain is one of the first few. */
static const char *state_name(int state) {
        switch (state) {
        case VIR_DOMAIN_RUNNING:
                return "running";
        case VIR_DOMAIN_BLOCKED:
                return "blocked";
        case VIR_DOMAIN_PAUSED:
                return "paused";
        case VIR_DOMAIN_SHUTDOWN:
                return "shutting-down";
        case VIR_DOMAIN_SHUTOFF:
                return "shut-off";
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        case VIR_DOMAIN_PMSUSPENDED:
                return "suspended";
        default:
                return "unknown";
        }
}

static int entry_compare(const void *a, const void *b) {
        const DomainEntry *x = a, *y = b;
        int d = strcmp(x->name, y->name);
        return d != 0 ? d : strcmp(x->uuid, y->uuid);
}

/* Worker. */
static void domains_job(Call *c) {
        DomainsOp *op = (DomainsOp *) c;
        _cleanup_(virConnectClosep) virConnectPtr conn = NULL;
        virDomainPtr *doms = NULL;
        int n;

        op->r = virt_connect(c->manager->virt, &conn, &op->error);
        if (op->r < 0)
                return;

        /* Active domains only: Attach takes no other (DomainNotRunning). */
        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                op->r = sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot list the domains: %s",
                                          strempty(virGetLastErrorMessage()));
                return;
        }

        op->entries = n > 0 ? calloc((size_t) n, sizeof *op->entries) : NULL;
        if (n > 0 && !op->entries)
                op->r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");

        for (int i = 0; i < n; i++) {
                DomainEntry *e;
                const char *name;
                int state = -1, reason;

                if (op->r < 0)
                        goto next;
                /* A transient domain may stop between the listing and these
                 * calls: then it is simply not listed. */
                name = virDomainGetName(doms[i]);
                if (!name || virDomainGetUUIDString(doms[i], op->entries[op->n_entries].uuid) < 0)
                        goto next;
                if (virDomainGetState(doms[i], &state, &reason, 0) < 0)
                        goto next;
                e = &op->entries[op->n_entries];
                e->name = strdup(name);
                if (!e->name) {
                        op->r = sd_bus_error_set(&op->error, LV_ERROR_FAILED, "Out of memory.");
                        goto next;
                }
                e->state = state_name(state);
                op->n_entries++;
        next:
                virDomainFree(doms[i]);
        }
        free(doms);
        if (op->r < 0)
                return;

        if (op->entries && op->n_entries > 1)
                qsort(op->entries, op->n_entries, sizeof *op->entries, entry_compare);
        op->r = 0;
}

static void domains_done(Call *c) {
        DomainsOp *op = (DomainsOp *) c;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (op->r < 0) {
                domains_end(op);
                return;
        }

        r = sd_bus_message_new_method_return(c->message, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sss)");
        for (size_t i = 0; r >= 0 && i < op->n_entries; i++)
                r = sd_bus_message_append(reply, "(sss)", op->entries[i].name, op->entries[i].uuid,
                                          op->entries[i].state);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                sd_bus_error_setf(&op->error, LV_ERROR_FAILED, "Cannot build the reply: %s", strerror(-r));
        else
                call_reply_message(c, reply);
        domains_end(op);
}

static void domains_authorized(Call *c, bool allowed) {
        DomainsOp *op = (DomainsOp *) c;

        if (!allowed) {
                domains_end(op);
                return;
        }
        if (call_submit(c, domains_job, domains_done) < 0)
                domains_end(op);
}

int method_list_domains(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        DomainsOp *op;
        int r;

        /* No options yet; unknown ones are refused, so that adding one later
         * cannot change what an old call meant. */
        r = probe_options_parse(message, error);
        if (r < 0)
                return lv_error_bad_message(error, r);

        op = calloc(1, sizeof *op);
        if (!op)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        call_init(&op->call, m, message, domains_op_free);

        if (call_authorize(
                    &op->call, ACTION_PROBE,
                    call_details(&op->call, (const char *const[]){ "source", "", "operation", "list-domains", NULL }),
                    domains_authorized) < 0)
                domains_end(op);
        return 1;
}
