/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for integration tests that run inside tests/sandbox/sandbox.sh.
 *
 * The sandbox exports DBUS_SYSTEM_BUS_ADDRESS, LV_SANDBOX_DIR, LV_DAEMON_LOG,
 * LV_POLKIT_RULES_DIR and LV_LIBVIRT_URI; these helpers read them.
 *
 * Error policy: a helper that cannot do its job (the harness is broken, a
 * tool failed, libvirt refused) aborts the test program with a message saying
 * what failed and why (g_error).  Predicates (lv_guest_reads_pattern, …)
 * return FALSE only for a genuine "no", and log the reason with
 * g_test_message().  Returned strings are g_free()d by the caller. */

#include <glib.h>
#include <gio/gio.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

/* Test identities created by the sandbox (see sandbox.sh). */
#define LV_TEST_GID_GROUP  4200   /* group "lvgroup" */
#define LV_TEST_UID_USER   4201   /* "lvuser": plain user */
#define LV_TEST_UID_ADMIN  4202   /* "lvadmin": member of lvgroup */

#define LV_BUS_NAME "org.example.LuksVolume1"

/* ---- environment ---------------------------------------------------------- */

/* Aborts unless running inside the sandbox (checks the exported variables). */
void lv_require_sandbox(void);
const char *lv_sandbox_dir(void);
/* $LV_SANDBOX_DIR/NAME, newly allocated. */
char *lv_sandbox_path(const char *name);

/* ---- D-Bus ---------------------------------------------------------------- */

/* The private system bus, as root.  Cached: the same connection every call
 * (do not unref; it lives for the test program). */
GDBusConnection *lv_bus(void);

/* A new, private connection to the system bus authenticated as uid (with the
 * user's primary group and supplementary groups from NSS).  Caller unrefs.
 *
 * How: the caller must be root.  Credentials on Linux are per thread at the
 * kernel level; the helper switches only the calling thread's credentials
 * with raw setgroups/setresgid/setresuid syscalls (keeping saved uid/gid 0 so
 * it can switch back), connects — dbus-daemon takes the peer's credentials
 * from SO_PEERCRED, captured at connect(), and GDBus's EXTERNAL mechanism
 * claims getuid(), both of which are the switched ids — then switches back.
 * GDBus connects and authenticates synchronously in the calling thread, so
 * no other thread ever runs with the test user's ids. */
GDBusConnection *lv_bus_as_uid(uid_t uid);

/* Run argv as uid (fork, setgroups/setresgid/setresuid, exec) with the
 * sandbox environment; waits at most timeout_s.  Returns the exit status
 * (-1 if killed by a signal/timeout); stdout/stderr captured into the optional
 * out-parameters. */
int lv_run_as(uid_t uid, const char *const *argv, guint timeout_s,
              char **ret_stdout, char **ret_stderr);

/* Owner (unique name) of a bus name or NULL. */
char *lv_bus_name_owner(GDBusConnection *bus, const char *name);
/* Bus-reported uid of a unique/well-known name; aborts on error. */
guint32 lv_bus_unix_user(GDBusConnection *bus, const char *name);

/* ---- polkit ---------------------------------------------------------------- */

/* Write (or replace) $LV_POLKIT_RULES_DIR/NAME (e.g. "50-test.rules") with
 * javascript contents, and wait (bounded) until polkitd has reloaded its
 * rules (it emits Authority.Changed after a reload).  contents NULL removes
 * the file (and waits likewise). */
void lv_polkit_set_rules(const char *name, const char *contents);

/* Ask polkitd (as root, which may check for others) whether the connection
 * subject_bus_name (a unique name) is authorized for action_id, without
 * interaction.  ret_challenge: set to polkit's is_challenge.  Aborts on
 * errors (e.g. an unregistered action). */
gboolean lv_polkit_check(const char *action_id, const char *subject_bus_name, gboolean *ret_challenge);

/* Action ids polkitd knows (only those of --polkit-policy in the sandbox).
 * NULL-terminated; g_strfreev(). */
char **lv_polkit_action_ids(void);

/* ---- daemon log ------------------------------------------------------------ */

/* Whole contents of $LV_DAEMON_LOG (bus + activated services' output). */
char *lv_daemon_log(void);
/* Current size of the daemon log, for lv_daemon_log_since(). */
goffset lv_daemon_log_mark(void);
/* Log contents written after the mark. */
char *lv_daemon_log_since(goffset mark);

/* ---- images and block devices --------------------------------------------- */

/* LUKS1 image $LV_SANDBOX_DIR/NAME (mode 0644) with exactly size_mib MiB of
 * payload, whose plaintext's first 64 KiB are filled with pattern (written
 * through qemu-io) and the rest reads as zeros.  Made by cryptsetup with
 * 1000 PBKDF2 iterations: ~0.1 s to make, ~nothing to open.  The passphrase
 * reaches the tools through stdin or a 0600 file, never argv.  Returns the
 * path. */
char *lv_make_luks1_image(const char *name, const char *passphrase, guint8 pattern, guint size_mib);
/* Same, but iter_time_ms != 0 makes the key slot cost about that much time
 * per open (what an attach costs inside QEMU): made by qemu-img with
 * iter-time=…, which itself takes ~1-2 s (its PBKDF2 benchmark).
 * iter_time_ms 0 is lv_make_luks1_image(). */
char *lv_make_luks1_image_full(const char *name, const char *passphrase, guint8 pattern,
                               guint size_mib, guint iter_time_ms);
/* Write pattern over [offset, offset+len) of a LUKS1 image's plaintext. */
void lv_luks1_write_pattern(const char *path, const char *passphrase, guint8 pattern,
                            guint64 offset, guint64 len);

/* LUKS2 image (cryptsetup luksFormat, PBKDF2 1000 iterations), size_mib must
 * be at least 17 (LUKS2's default 16 MiB header).  The payload is not
 * written (QEMU cannot open LUKS2; no device-mapper here). */
char *lv_make_luks2_image(const char *name, const char *passphrase, guint size_mib);

/* LUKS1 image whose passphrase is the key_len bytes at key (any bytes,
 * NUL included), size_mib MiB of payload, nothing written to it. */
char *lv_make_luks1_image_bytes(const char *name, const void *key, gsize key_len, guint size_mib);

/* Sparse file of size_mib MiB filled with nothing (e.g. "not LUKS"). */
char *lv_make_plain_file(const char *name, guint size_mib);

/* Attach path to a free loop device; returns "/dev/loopN".  The sandbox
 * detaches leftovers on exit, but tests should call lv_losetup_detach(). */
char *lv_losetup(const char *path);
void lv_losetup_detach(const char *dev);

/* ---- libvirt -------------------------------------------------------------- */

/* Cached connection to $LV_LIBVIRT_URI (qemu:///system); reopened if dead. */
virConnectPtr lv_virt(void);
/* SIGTERM libvirtd, start it again as sandbox.sh does, wait until it answers.
 * Running guests survive (libvirtd reconnects to them); ephemeral secrets do not. */
void lv_restart_libvirtd(void);
/* Is the sandbox's libvirtd still running? */
gboolean lv_libvirtd_alive(void);

/* Start a transient, OS-less TCG guest (64 MiB, ACPI, pc, pty console,
 * virtio-scsi controller).  Caller releases with lv_destroy_guest(). */
virDomainPtr lv_start_guest(const char *name);
/* Destroy (if still running) and free.  NULL is fine. */
void lv_destroy_guest(virDomainPtr dom);

/* Live domain XML (VIR_DOMAIN_XML_SECURE not used). */
char *lv_domain_xml(virDomainPtr dom);
/* The <disk> element whose <target dev=…> is target, serialized, or NULL. */
char *lv_domain_disk_xml(virDomainPtr dom, const char *target);
gboolean lv_domain_has_disk(virDomainPtr dom, const char *target);
/* Poll the live XML until the disk is gone (TRUE) or timeout_ms passed. */
gboolean lv_domain_wait_disk_gone(virDomainPtr dom, const char *target, guint timeout_ms);

/* Number of secrets libvirtd currently holds. */
guint lv_count_secrets(void);

/* ---- what the guest sees --------------------------------------------------- */

/* Run a QMP command (JSON text) through libvirt and return its "return"
 * member as a GVariant (objects a{sv}, arrays av, strings s, integers x,
 * other numbers d, booleans b, null as an empty maybe).  Aborts on error. */
GVariant *lv_guest_qmp(virDomainPtr dom, const char *command_json);

/* One node from QMP query-named-block-nodes (flat). */
typedef struct {
  char *node_name;
  char *drv;       /* "luks", "raw", "file", "host_device", … */
  char *file;      /* the node's filename as QEMU reports it */
} LvBlockNode;
void lv_block_node_free(LvBlockNode *n);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LvBlockNode, lv_block_node_free)

/* All named block nodes of the running guest (GPtrArray of LvBlockNode*). */
GPtrArray *lv_guest_block_nodes(virDomainPtr dom);

/* Does QEMU read `pattern` over the first len bytes of node_name?  The check
 * runs qemu-io inside QEMU (HMP), whose verdict lands in the domain's log
 * /var/log/libvirt/qemu/NAME.log; that file is polled (bounded).
 * node_name NULL: every node with drv "luks" is tried, TRUE if any reads the
 * pattern (FALSE, with a message, if there is none). */
gboolean lv_guest_reads_pattern_on(virDomainPtr dom, const char *node_name,
                                   guint8 pattern, gsize len);
gboolean lv_guest_reads_pattern(virDomainPtr dom, guint8 pattern, gsize len);
/* Name of the "luks" node whose file is image_path, or NULL. */
char *lv_guest_luks_node_for(virDomainPtr dom, const char *image_path);

G_END_DECLS
