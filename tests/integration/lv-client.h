/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* GDBus-side helpers for calling luksvolumed in integration tests: an
 * independent D-Bus implementation from the daemon's sd-bus. */

#include <gio/gio.h>

#define LV_PATH         "/org/example/LuksVolume1"
#define LV_IFACE        "org.example.LuksVolume1"
#define LV_VOLUME_IFACE "org.example.LuksVolume1.Volume"
#define LV_ERR(x)       "org.example.LuksVolume1.Error." x

/* Build an a{sv} from key, GVariant*, key, GVariant*, …, NULL (floating). */
GVariant *lv_opts(const char *first_key, ...);

/* Attach with the passphrase as `ay`.  Returns the object path or NULL with
 * *error set.  options may be NULL (empty). */
char *lv_attach(GDBusConnection *bus, const char *domain, const char *source, const char *passphrase, GVariant *options,
                GError **error);
/* Attach with the passphrase through a pipe as passphrase-fd. */
char *lv_attach_fd(GDBusConnection *bus, const char *domain, const char *source, const char *passphrase,
                   GVariant *options, GError **error);
gboolean lv_detach(GDBusConnection *bus, const char *path, GVariant *options, GError **error);
/* Volume.Detach and Volume.Resize on the volume object at path. */
gboolean lv_volume_detach(GDBusConnection *bus, const char *path, GVariant *options, GError **error);
gboolean lv_resize(GDBusConnection *bus, const char *path, guint64 size, GVariant *options, GError **error);
/* Returns the a{sv} (caller unrefs) or NULL. */
GVariant *lv_probe(GDBusConnection *bus, const char *source, GError **error);

/* Key management: method is ChangePassphrase, AddPassphrase,
 * RemovePassphrase or VerifyPassphrase; new_passphrase is used by the first
 * two only.  via_fd: the passphrases travel in pipes (passphrase-fd,
 * new-passphrase-fd) and the ay arguments are empty.  options (NULL:
 * none) are added.  Returns the reply's slot (AddPassphrase,
 * VerifyPassphrase), 0 (the others), or -1 with *error set. */
gint lv_keys_call(GDBusConnection *bus, const char *method, const char *source, const char *passphrase,
                  const char *new_passphrase, gboolean via_fd, GVariant *options, GError **error);
/* VerifyPassphrase: the slot, or -1 with *error set. */
gint lv_verify_passphrase(GDBusConnection *bus, const char *source, const char *passphrase, GError **error);

/* All properties of a volume object as a{sv}, or NULL if it does not exist. */
GVariant *lv_volume_props(GDBusConnection *bus, const char *path);
char *lv_volume_prop_string(GDBusConnection *bus, const char *path, const char *name);
/* Polls the volume's State until it is state, at most timeout_ms; says what
 * it was instead (test message) when it never became it. */
gboolean lv_volume_wait_state(GDBusConnection *bus, const char *path, const char *state, guint timeout_ms);
/* Volume.Rearm(passphrase, {}) (up to 120 s: a derivation in the TCG VM). */
gboolean lv_volume_rearm(GDBusConnection *bus, const char *path, const char *passphrase, GError **error);
/* A property of type t; aborts if there is none. */
guint64 lv_volume_prop_u64(GDBusConnection *bus, const char *path, const char *name);
/* A volume's properties as a restarted daemon rebuilds them from libvirt
 * (after) equal those of the daemon that attached it (before), except
 * what only that daemon knew: AttachedByUID is 4294967295 and
 * AttachTimestamp 0 now. */
void lv_assert_props_rebuilt(GVariant *before, GVariant *after);
/* Object paths of all managed volume objects (GetManagedObjects). */
GStrv lv_managed_objects(GDBusConnection *bus);

/* The remote error name of error (static string owned by the caller's free). */
char *lv_error_name(const GError *error);

/* Assert: error is set and its D-Bus name is expected. */
#define lv_assert_error(error, expected)                                                      \
        G_STMT_START {                                                                        \
                g_assert_nonnull(error);                                                      \
                g_autofree char *_n = lv_error_name(error);                                   \
                if (g_strcmp0(_n, (expected)) != 0)                                           \
                        g_error("expected %s, got %s: %s", (expected), _n, (error)->message); \
        }                                                                                     \
        G_STMT_END

/* PID of the daemon currently owning the name, or 0. */
guint32 lv_daemon_pid(GDBusConnection *bus);
/* Kill the daemon with sig and wait until the name has no owner. */
void lv_daemon_kill(GDBusConnection *bus, int sig);

/* ---- lower-level calls, for hostile-input and secret tests ----------------- */

#include <gio/gunixfdlist.h>

/* Call method on the manager object with any parameters (a tuple GVariant,
 * floating or not; NULL for none) and an optional fd list, so a test can
 * send what no well-behaved client would: wrong signatures, handles that
 * point nowhere, duplicate keys.  Returns the reply tuple or NULL with *error
 * set.  No reply type is checked. */
GVariant *lv_call_manager(GDBusConnection *bus, const char *method, GVariant *params, GUnixFDList *fds, GError **error);

/* Attach with a binary passphrase of exactly len bytes as `ay` (NUL bytes and
 * lengths past any limit included), options as given (NULL: empty) and an
 * optional fd list for handles the options refer to. */
char *lv_attach_bytes(GDBusConnection *bus, const char *domain, const char *source, const void *passphrase, gsize len,
                      GVariant *options, GUnixFDList *fds, GError **error);

/* Probe with an options dictionary (NULL: empty). */
GVariant *lv_probe_opts(GDBusConnection *bus, const char *source, GVariant *options, GError **error);

/* A random passphrase of len printable ASCII characters (letters and
 * digits), from GLib's random source: distinctive enough that finding it
 * anywhere means a copy.  g_free(). */
char *lv_random_passphrase(gsize len);
