/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Attach requests: progress and cancellation (attach-request.h).
 *
 * The state is one atomic: RUNNING → CANCELLED (CancelAttach, on the loop)
 * or RUNNING → COMMITTED (the act job, on a worker), whichever comes
 * first; the other then fails.  The worker tells the loop that it
 * committed through an eventfd, because only the loop may send on the bus.
 *
 * The registry is a list in this file: one Manager per process, and a
 * caller has few attaches in flight (each costs a key derivation). */

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "attach-request.h"
#include "errors.h"
#include "manager.h"
#include "util.h"
#include "volume-id.h"

/* Bounds what a caller can make us keep and echo back. */
#define REQUEST_ID_MAX 128U

enum {
        REQUEST_RUNNING,
        REQUEST_CANCELLED,
        REQUEST_COMMITTED
};

struct AttachRequest {
        AttachRequest *next;
        Manager *manager;
        char *sender; /* unique bus name of the caller */
        char *id;
        _Atomic int state;
        int efd;             /* written by the worker when it commits */
        sd_event_source *io; /* the loop's side of efd */
};

static AttachRequest *requests;

static AttachRequest *find(const char *sender, const char *id) {
        for (AttachRequest *r = requests; r; r = r->next)
                if (streq(r->sender, sender) && streq(r->id, id))
                        return r;
        return NULL;
}

static void emit(AttachRequest *r, const char *step) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        /* To the caller alone: other clients have no business with its
         * request (the id may say what it is for). */
        k = sd_bus_message_new_signal(r->manager->bus, &s, LV_OBJECT_PATH, LV_MANAGER_INTERFACE, "AttachProgress");
        if (k >= 0)
                k = sd_bus_message_set_destination(s, r->sender);
        if (k >= 0)
                k = sd_bus_message_append(s, "ss", r->id, step);
        if (k >= 0)
                k = sd_bus_send(r->manager->bus, s, NULL);
        if (k < 0)
                log_warning_errno(k, "Cannot send AttachProgress to %s: %m", r->sender);
}

static int on_committed(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AttachRequest *r = userdata;
        uint64_t n;

        if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
                log_warning_errno(-errno, "Cannot read the attach request's eventfd: %m");
        emit(r, ATTACH_STEP_PLUGGING);
        return 0;
}

int attach_request_new(Manager *m, sd_bus_message *message, const char *id, AttachRequest **ret, sd_bus_error *error) {
        const char *sender = sd_bus_message_get_sender(message);
        AttachRequest *r;
        int k;

        *ret = NULL;
        if (isempty(id))
                return 0;
        if (strlen(id) > REQUEST_ID_MAX)
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS, "Option 'request-id' is longer than %u bytes.",
                                         REQUEST_ID_MAX);
        if (!sender)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS,
                                        "Option 'request-id' needs a caller with a bus name.");
        if (find(sender, id))
                return sd_bus_error_setf(error, DBUS_ERROR_INVALID_ARGS,
                                         "Option 'request-id': an attach of yours with that id is in progress.");

        r = calloc(1, sizeof *r);
        if (!r)
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        r->manager = m;
        r->efd = -1;
        atomic_init(&r->state, REQUEST_RUNNING);
        r->sender = strdup(sender);
        r->id = strdup(id);
        if (!r->sender || !r->id) {
                attach_request_free(r);
                return sd_bus_error_set(error, LV_ERROR_FAILED, "Out of memory.");
        }
        r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        k = r->efd < 0 ? -errno : sd_event_add_io(m->event, &r->io, r->efd, EPOLLIN, on_committed, r);
        if (k < 0) {
                attach_request_free(r);
                return sd_bus_error_setf(error, LV_ERROR_FAILED, "Cannot track the attach request: %s", strerror(-k));
        }
        r->next = requests;
        requests = r;
        emit(r, ATTACH_STEP_CHECKING);
        *ret = r;
        return 0;
}

AttachRequest *attach_request_free(AttachRequest *r) {
        if (!r)
                return NULL;
        for (AttachRequest **pp = &requests; *pp; pp = &(*pp)->next)
                if (*pp == r) {
                        *pp = r->next;
                        break;
                }
        sd_event_source_disable_unref(r->io);
        if (r->efd >= 0)
                close(r->efd);
        free(r->sender);
        free(r->id);
        free(r);
        return NULL;
}

static int cancelled_error(sd_bus_error *error) {
        sd_bus_error_set(error, LV_ERROR_CANCELLED, "The attach was cancelled; nothing was attached.");
        return -ECANCELED;
}

int attach_request_proceed(AttachRequest *r, sd_bus_error *error) {
        if (!r)
                return 0;
        if (atomic_load(&r->state) == REQUEST_CANCELLED)
                return cancelled_error(error);
        emit(r, ATTACH_STEP_DERIVING);
        return 0;
}

int attach_request_commit(AttachRequest *r, sd_bus_error *error) {
        int expected = REQUEST_RUNNING;
        uint64_t one = 1;

        if (!r)
                return 0;
        if (!atomic_compare_exchange_strong(&r->state, &expected, REQUEST_COMMITTED))
                return expected == REQUEST_COMMITTED ? 0 : cancelled_error(error);
        /* The loop says "plugging"; a lost wake-up only loses the signal. */
        if (write(r->efd, &one, sizeof one) < 0)
                log_warning_errno(-errno, "Cannot wake the event loop for AttachProgress: %m");
        return 0;
}

int method_cancel_attach(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        const char *id, *sender = sd_bus_message_get_sender(message);
        AttachRequest *r;
        int expected = REQUEST_RUNNING, k;

        k = sd_bus_message_read(message, "s", &id);
        if (k < 0)
                return sd_bus_error_set(error, DBUS_ERROR_INVALID_ARGS, "Malformed arguments.");

        /* Only the caller's own attaches: no authorization to ask, and
         * nobody learns about anyone else's (unknown and foreign ids
         * answer alike). */
        r = sender ? find(sender, id) : NULL;
        bool cancelled = r && atomic_compare_exchange_strong(&r->state, &expected, REQUEST_CANCELLED);
        if (cancelled)
                log_info("Attach request '%s' of %s cancelled by its caller.", id, sender);
        return sd_bus_reply_method_return(message, "b", cancelled);
}
