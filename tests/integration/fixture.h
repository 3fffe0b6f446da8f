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
#define LV_TEST_GID_GROUP 4200 /* group "lvgroup" */
#define LV_TEST_UID_USER  4201 /* "lvuser": plain user */
#define LV_TEST_UID_ADMIN 4202 /* "lvadmin": member of lvgroup */

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
int lv_run_as(uid_t uid, const char *const *argv, guint timeout_s, char **ret_stdout, char **ret_stderr);

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
char *lv_make_luks1_image_full(const char *name, const char *passphrase, guint8 pattern, guint size_mib,
                               guint iter_time_ms);
/* Write pattern over [offset, offset+len) of a LUKS1 image's plaintext. */
void lv_luks1_write_pattern(const char *path, const char *passphrase, guint8 pattern, guint64 offset, guint64 len);

/* LUKS2 image (cryptsetup luksFormat, PBKDF2 1000 iterations), size_mib must
 * be at least 17 (LUKS2's default 16 MiB header).  The payload is not
 * written (QEMU cannot open LUKS2; no device-mapper here). */
char *lv_make_luks2_image(const char *name, const char *passphrase, guint size_mib);
/* The same with the PBKDF pbkdf: "pbkdf2" as above, or "argon2i"/"argon2id"
 * with time cost 4, 32 MiB, one thread. */
char *lv_make_luks2_image_pbkdf(const char *name, const char *passphrase, guint size_mib, const char *pbkdf);

/* An 8 MiB LUKS1 file made by cryptsetup luksFormat with key slot
 * iterations forced (no benchmark, so a busy CPU cannot make it fail) and
 * the extra arguments (NULL-terminated; e.g. a cipher or hash QEMU's LUKS
 * driver lacks); the passphrase goes through stdin.  Nothing written to
 * the payload. */
char *lv_make_luks1_cryptsetup(const char *name, const char *passphrase, guint iterations, const char *const *extra);

/* Overwrites a LUKS1 header's cipher name and mode (32 bytes each, at 8 and
 * 40) in place: neither is covered by the volume key's digest, so
 * libcryptsetup loads the header as it is — a "header you did not write". */
void lv_luks1_patch_cipher(const char *path, const char *name, const char *mode);

/* An attacker who can write dir: a thread exchanges the names a and b in it
 * (renameat2(RENAME_EXCHANGE)) again and again, each state lasting 20-300
 * µs, until lv_swap_stop(), which leaves a as it began (not a symlink) and
 * returns how many exchanges were made. */
typedef struct LvSwapper LvSwapper;
LvSwapper *lv_swap_start(const char *dir, const char *a, const char *b);
guint64 lv_swap_stop(LvSwapper *s);

/* LUKS1 image whose passphrase is the key_len bytes at key (any bytes,
 * NUL included), size_mib MiB of payload, nothing written to it. */
char *lv_make_luks1_image_bytes(const char *name, const void *key, gsize key_len, guint size_mib);

/* LUKS1 image $LV_SANDBOX_DIR/NAME (mode 0644, size_mib MiB of payload, not
 * written: reads as garbage) with n_slots (1-8) active key slots, slot i
 * opened by passphrases[i], each costing QEMU about slot_ms of PBKDF2 per
 * try, so that QEMU trying k slots stalls for about k × slot_ms (the volume
 * key's own digest is pinned at the 1000-iteration minimum and adds
 * nothing).  All slots have the same iteration count, from
 * lv_pbkdf2_iterations().  Made by cryptsetup (not qemu-img, whose create-
 * time benchmark gives up on a busy machine); passphrases and the volume
 * key reach it through stdin or 0600 files, never argv.  Takes about
 * n_slots × 3 × slot_ms: libcryptsetup's PBKDF2 is about that much slower. */
char *lv_make_luks1_slots_image(const char *name, const char *const *passphrases, guint n_slots, guint slot_ms,
                                guint size_mib);
/* PBKDF2 iterations that make one LUKS1 key slot (sha256, 512-bit volume
 * key, as cryptsetup makes them) cost QEMU about slot_ms of CPU on this
 * machine.  Calibrated once per process by timing (CPU time) qemu-io
 * opening a scratch image at two iteration counts: ~1 s.  Not cryptsetup's
 * --iter-time: its benchmark matches neither QEMU nor libcryptsetup here and
 * varies by ±20% under load. */
guint lv_pbkdf2_iterations(guint slot_ms);

/* Sparse file of size_mib MiB filled with nothing (e.g. "not LUKS"). */
char *lv_make_plain_file(const char *name, guint size_mib);

/* Attach path to a free loop device; returns "/dev/loopN".  The sandbox
 * detaches leftovers on exit, but tests should call lv_losetup_detach(). */
char *lv_losetup(const char *path);
void lv_losetup_detach(const char *dev);

/* ---- misbehaving neighbours ------------------------------------------------- */

/* Runs argv in the background; returns once it printed its first line (how
 * the helpers say "ready").  Aborts if it does not. */
GSubprocess *lv_spawn_ready(const char *const *argv);
/* One process (no child to outlive it) holding an exclusive flock on path
 * (created if missing), until lv_kill_wait(). */
GSubprocess *lv_hold_flock(const char *path);
/* SIGKILL, wait, unref.  NULL is fine. */
void lv_kill_wait(GSubprocess *p);

/* tests/integration/hang-fuse.py (script) mounted at $LV_SANDBOX_DIR/NAME
 * (*ret_dir): hang.img, whose look-up never returns; eacces.img, which
 * cannot be opened; and, if backing is not NULL, hang-write.img, which
 * reads as backing does and whose writes never return.  Returns once the
 * files are there. */
GSubprocess *lv_mount_hang_fuse(const char *script, const char *name, const char *backing, char **ret_dir);
/* Kills it (what hangs in it then fails) and detaches the mount.  NULL is
 * fine. */
void lv_unmount_hang_fuse(GSubprocess *fs, const char *dir);

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
/* The same guest, defined (persistent: managedsave works) and started.
 * Release with lv_remove_guest(). */
virDomainPtr lv_start_persistent_guest(const char *name);
/* Destroy if running, undefine if persistent (with its managed save
 * image), and free.  NULL is fine. */
void lv_remove_guest(virDomainPtr dom);

/* Destroy (if still running) and free.  NULL is fine. */
void lv_destroy_guest(virDomainPtr dom);

/* ---- the heartbeat guest: does an operation stall the guest? ------------------
 *
 * A transient TCG domain (256 MiB, 1 vCPU, pc, ACPI, a virtio-scsi
 * controller) booting the host's Debian kernel directly with a tiny
 * initramfs whose /init (tests/integration/heartbeat-init.c, linked
 * statically at build time) prints "HB <seq> <guest CLOCK_MONOTONIC s.us>"
 * every 20 ms to the serial console, a <serial type='file'> in the sandbox.
 * No modules, no busybox: the guest never needs to see the disks attached to
 * it; it only has to keep running.  While QEMU's main loop holds its lock
 * (key derivation inside blockdev-add) the vCPU cannot print, and the next
 * line's timestamp jumps: the largest gap between consecutive heartbeats over
 * an operation is how long the guest was frozen by it.
 *
 * Host and guest clocks differ, so windows are expressed in the guest's own
 * timestamps: take lv_heartbeat_latest() before the operation and
 * lv_heartbeat_next() after it, then lv_heartbeat_gaps() between the two.
 *
 * The kernel is the newest readable /boot/vmlinuz-6.1.*-amd64 (package
 * linux-image-amd64, which tests/install-deps.sh installs), or
 * $LV_VM_KERNEL.  Its absence is the only reason to skip: callers check
 * lv_heartbeat_kernel() first.  Kernel and initramfs are copied into the
 * sandbox (libvirt chowns a domain's kernel/initrd to the QEMU user while it
 * runs, which must never happen to host files). */

/* Path of the kernel the heartbeat guest boots, or NULL if this machine has
 * none (then skip). */
const char *lv_heartbeat_kernel(void);

/* Start the heartbeat guest and wait (bounded) until its first heartbeat is
 * on the console; aborts with the console's tail if it does not come.  The
 * console file's path is returned in *ret_console_path (g_free).  Release
 * with lv_destroy_guest(). */
virDomainPtr lv_start_heartbeat_guest(const char *name, char **ret_console_path);

/* The same guest with virtio disk drivers (virtio_pci, virtio_blk and
 * their dependencies from the kernel's module tree, loaded by its init
 * with finit_module), so that it sees hot-plugged virtio disks; its init
 * then also prints, every 500 ms, one line per virtio disk:
 * "BLK <name> <size in 512-byte sectors> <serial or ->" from the guest
 * kernel's /sys/block.  Possible only if lv_heartbeat_disks_possible(). */
virDomainPtr lv_start_heartbeat_guest_disks(const char *name, char **ret_console_path);
/* A kernel and plain .ko files of those modules exist here. */
gboolean lv_heartbeat_disks_possible(void);
/* The guest's newest report of disk ("vda"): its size in sectors and its
 * serial ("-" for none; g_free).  FALSE if it never reported the disk. */
gboolean lv_heartbeat_disk(const char *console_path, const char *disk, guint64 *ret_sectors, char **ret_serial);
/* Waits (at most timeout_ms) until the guest reports disk with exactly
 * sectors sectors; TRUE then (with its serial if ret_serial), FALSE (and a
 * message saying what it saw) if not. */
gboolean lv_heartbeat_wait_disk(const char *console_path, const char *disk, guint64 sectors, guint timeout_ms,
                                char **ret_serial);

typedef struct {
        guint64 seq;     /* counts lines from 0 at the guest's boot */
        gint64 guest_us; /* the guest's CLOCK_MONOTONIC when it printed the line */
} LvHeartbeat;

/* Every well-formed heartbeat on the console so far, oldest first (GArray of
 * LvHeartbeat; a line garbled by interleaved kernel output is skipped). */
GArray *lv_heartbeat_read(const char *console_path);
/* The newest heartbeat on the console now: one the guest printed before
 * this call.  Aborts if there is none. */
LvHeartbeat lv_heartbeat_latest(const char *console_path);
/* A heartbeat the guest printed after this call began: waits (bounded) for
 * the second one newer than the newest on the console now.  The second, not
 * the first: the first may have been printed just before the call and still
 * be on its way to the file (QEMU → virtlogd → file). */
LvHeartbeat lv_heartbeat_next(const char *console_path);

typedef struct {
        gint64 max_gap_us; /* largest time between consecutive heartbeats */
        gint64 median_gap_us;
        gint64 excess_us; /* sum over the gaps of their length beyond the median:
                           the total time the guest stood still */
        guint n_beats;    /* heartbeats in the window */
        guint n_lost;     /* sequence numbers missing in it (garbled lines) */
        guint n_long;     /* gaps over twice the median */
} LvHeartbeatGaps;

/* Gaps between consecutive heartbeats whose guest time lies in
 * [since_guest_us, until_guest_us].  FALSE (with a message) if fewer than
 * two heartbeats lie there.  A garbled line merges two gaps into one (at
 * most 40 ms at idle); n_lost says so.  With LV_HEARTBEAT_DEBUG set in the
 * environment every gap over 30 ms is logged (g_test_message). */
gboolean lv_heartbeat_gaps(const char *console_path, gint64 since_guest_us, gint64 until_guest_us,
                           LvHeartbeatGaps *ret);
/* Just the largest gap, in milliseconds (fractional). */
gboolean lv_heartbeat_max_gap(const char *console_path, gint64 since_guest_us, gint64 until_guest_us,
                              double *ret_max_gap_ms);

/* Live domain XML (VIR_DOMAIN_XML_SECURE not used). */
char *lv_domain_xml(virDomainPtr dom);
/* The <disk> element whose <target dev=…> is target, serialized, or NULL. */
char *lv_domain_disk_xml(virDomainPtr dom, const char *target);
gboolean lv_domain_has_disk(virDomainPtr dom, const char *target);
/* The <alias name> of the disk on target (QEMU's device id), or NULL. */
char *lv_domain_disk_alias(virDomainPtr dom, const char *target);
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
        char *drv;  /* "luks", "raw", "file", "host_device", … */
        char *file; /* the node's filename as QEMU reports it */
} LvBlockNode;
void lv_block_node_free(LvBlockNode *n);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LvBlockNode, lv_block_node_free)

/* The size QEMU gives the guest's device whose id is alias (QMP
 * query-block, virtual-size of what is inserted), or -1 if there is none. */
gint64 lv_guest_disk_size(virDomainPtr dom, const char *alias);
/* A string property of the guest's device whose id is alias (QMP qom-get
 * on /machine/peripheral/ALIAS), e.g. "serial".  Aborts if unreadable. */
char *lv_guest_device_property(virDomainPtr dom, const char *alias, const char *property);

/* All named block nodes of the running guest (GPtrArray of LvBlockNode*). */
GPtrArray *lv_guest_block_nodes(virDomainPtr dom);

/* Does QEMU read `pattern` over the first len bytes of node_name?  The check
 * runs qemu-io inside QEMU (HMP), whose verdict lands in the domain's log
 * /var/log/libvirt/qemu/NAME.log; that file is polled (bounded).
 * node_name NULL: every node with drv "luks" is tried, TRUE if any reads the
 * pattern (FALSE, with a message, if there is none). */
gboolean lv_guest_reads_pattern_on(virDomainPtr dom, const char *node_name, guint8 pattern, gsize len);
/* The same on the guest's raw (not luks) node over the block device file
 * (a dm-crypt mapping: the kernel decrypted), QEMU's log in log_dir. */
gboolean lv_guest_reads_pattern_on_device(virDomainPtr dom, const char *log_dir, const char *file, guint8 pattern,
                                          gsize len);
/* The same for a guest whose QEMU logs to log_dir (another host's
 * /var/log/libvirt/qemu, e.g. second-host.h's). */
gboolean lv_guest_reads_pattern_logged(virDomainPtr dom, const char *log_dir, const char *node_name, guint8 pattern,
                                       gsize len);
gboolean lv_guest_reads_pattern(virDomainPtr dom, guint8 pattern, gsize len);
/* Name of the "luks" node whose file is image_path, or NULL. */
char *lv_guest_luks_node_for(virDomainPtr dom, const char *image_path);

/* ---- Ceph (issue 18) --------------------------------------------------------- */

/* Where test-ceph and bench/rbd.c start the sandbox's single-node cluster
 * (tests/ceph/cluster.sh start LV_CEPH_DIR), and the libvirt 'ceph'
 * secret tests/integration/ceph-daemon.conf names (CephSecret=). */
#define LV_CEPH_DIR         "/run/lvtest/ceph"
#define LV_CEPH_SECRET_UUID "5ad6e0c3-1e1f-4c6e-9c1d-0000000ce9b0"

/* Runs argv (a Ceph tool, or anything) with CEPH_CONF naming that cluster;
 * its standard output.  Aborts if it fails. */
char *lv_ceph_tool(const char *const *argv);
/* Defines LV_CEPH_SECRET_UUID (persistent, private, usage "client.admin
 * secret") holding client.admin's key, as a host running guests from Ceph
 * has one. */
void lv_ceph_define_secret(void);
/* The same on another host's libvirt (the same UUID on every host). */
void lv_ceph_define_secret_on(virConnectPtr conn);

G_END_DECLS
