/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for integration tests run inside tests/sandbox/sandbox.sh.
 * See fixture.h for the contract of each helper. */

#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

/* Every external tool gets this long before it is killed. */
#define LV_TOOL_TIMEOUT_S           60
/* How long QEMU may take to print a qemu-io verdict into its log. */
#define LV_QEMU_IO_TIMEOUT_MS       10000
/* How long polkitd may take to reload its rules. */
#define LV_POLKIT_RELOAD_TIMEOUT_MS 10000

/* ---- environment ---------------------------------------------------------- */

static const char *require_env(const char *name) {
        const char *v = g_getenv(name);
        if (v == NULL || *v == '\0')
                g_error("%s is not set: run this test through tests/sandbox/sandbox.sh", name);
        return v;
}

void lv_require_sandbox(void) {
        require_env("DBUS_SYSTEM_BUS_ADDRESS");
        require_env("LV_SANDBOX_DIR");
        require_env("LV_DAEMON_LOG");
        require_env("LV_POLKIT_RULES_DIR");
        require_env("LV_LIBVIRT_URI");
}

const char *lv_sandbox_dir(void) {
        return require_env("LV_SANDBOX_DIR");
}

/* Names end up in qemu --image-opts (',' is special) and in paths. */
static void check_name(const char *name) {
        if (name == NULL || *name == '\0' || strpbrk(name, "/,'\"\\ ") != NULL)
                g_error("invalid scratch file name '%s' (no '/', ',', quotes, spaces)", name ? name : "(null)");
}

char *lv_sandbox_path(const char *name) {
        check_name(name);
        return g_build_filename(lv_sandbox_dir(), name, NULL);
}

/* ---- credentials ------------------------------------------------------------ */

typedef struct {
        uid_t uid;
        gid_t gid;
        int ngroups;
        gid_t groups[64];
} Creds;

/* Look the user up through NSS (the sandbox's passwd/group copies). */
static void creds_for_uid(uid_t uid, Creds *c) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        int r = getpwuid_r(uid, &pw, buf, sizeof buf, &res);
        if (r != 0 || res == NULL)
                g_error("uid %u has no passwd entry (%s): is this the sandbox?", (unsigned) uid,
                        r ? g_strerror(r) : "not found");
        c->uid = uid;
        c->gid = pw.pw_gid;
        c->ngroups = G_N_ELEMENTS(c->groups);
        if (getgrouplist(pw.pw_name, pw.pw_gid, c->groups, &c->ngroups) < 0)
                g_error("user %s is in more than %zu groups", pw.pw_name, G_N_ELEMENTS(c->groups));
}

/* Raw syscalls on purpose: glibc's wrappers change every thread of the
 * process; the kernel keeps credentials per thread, and only this thread
 * should ever act as the test user.  Saved ids stay 0 so we can come back. */
static int thread_become(const Creds *c) {
        if (syscall(SYS_setgroups, (size_t) c->ngroups, c->groups) < 0)
                return -errno;
        if (syscall(SYS_setresgid, c->gid, c->gid, (gid_t) 0) < 0)
                return -errno;
        if (syscall(SYS_setresuid, c->uid, c->uid, (uid_t) 0) < 0)
                return -errno;
        return 0;
}

static void thread_become_root(const gid_t *groups, int ngroups) {
        /* The order matters: uid first, to regain the capabilities needed for the
   * rest.  Failing here would leave the test running as someone else. */
        if (syscall(SYS_setresuid, (uid_t) 0, (uid_t) 0, (uid_t) 0) < 0 ||
            syscall(SYS_setresgid, (gid_t) 0, (gid_t) 0, (gid_t) 0) < 0 ||
            syscall(SYS_setgroups, (size_t) ngroups, groups) < 0)
                g_error("cannot switch the thread back to root: %s", g_strerror(errno));
}

static void require_root(const char *what) {
        if (geteuid() != 0)
                g_error("%s needs root", what);
}

/* Information for whoever runs this: a TAP comment in a test program, a
 * line on stderr elsewhere (the benchmark's stdout is its result table). */
G_GNUC_PRINTF(1, 2) static void note(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        if (g_test_initialized())
                g_test_message("%s", msg);
        else
                g_printerr("%s\n", msg);
}

/* ---- subprocesses ------------------------------------------------------------ */

typedef struct {
        gboolean done;
        gboolean timed_out;
        GBytes *out, *err;
        GError *error;
        GSubprocess *p;
} CommState;

static void comm_done(GObject *source, GAsyncResult *res, gpointer user_data) {
        CommState *st = user_data;
        g_subprocess_communicate_finish(G_SUBPROCESS(source), res, &st->out, &st->err, &st->error);
        st->done = TRUE;
}

static gboolean comm_timeout(gpointer user_data) {
        CommState *st = user_data;
        st->timed_out = TRUE;
        g_subprocess_force_exit(st->p);
        return G_SOURCE_REMOVE;
}

static void child_become(gpointer user_data) {
        /* In the forked child, single-threaded: plain calls change the process. */
        const Creds *c = user_data;
        if (setgroups((size_t) c->ngroups, c->groups) < 0 || setresgid(c->gid, c->gid, c->gid) < 0 ||
            setresuid(c->uid, c->uid, c->uid) < 0)
                _exit(126);
}

static char *bytes_to_str(GBytes *b) {
        if (b == NULL)
                return g_strdup("");
        gsize n;
        const char *d = g_bytes_get_data(b, &n);
        return g_strndup(d ? d : "", n);
}

/* Run argv with optional stdin bytes, as uid (or as ourselves when creds is
 * NULL).  Returns the exit status, -1 when killed (timeout or signal).
 * Aborts if it cannot even be started. */
static int run_argv(const char *const *argv, const char *stdin_data, gsize stdin_len, const Creds *creds,
                    guint timeout_s, char **ret_out, char **ret_err) {
        g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(
                G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
        if (creds)
                g_subprocess_launcher_set_child_setup(l, child_become, (gpointer) creds, NULL);

        g_autoptr(GError) error = NULL;
        g_autoptr(GSubprocess) p = g_subprocess_launcher_spawnv(l, argv, &error);
        if (p == NULL)
                g_error("cannot run %s: %s", argv[0], error->message);

        /* A private context: the wait must not dispatch anything of the test's. */
        g_autoptr(GMainContext) ctx = g_main_context_new();
        g_main_context_push_thread_default(ctx);
        CommState st = { .p = p };
        /* With a stdin pipe, communicate wants bytes; empty means EOF at once. */
        g_autoptr(GBytes) in = g_bytes_new(stdin_data ? stdin_data : "", stdin_data ? stdin_len : 0);
        g_subprocess_communicate_async(p, in, NULL, comm_done, &st);
        GSource *t = g_timeout_source_new_seconds(timeout_s);
        g_source_set_callback(t, comm_timeout, &st, NULL);
        g_source_attach(t, ctx);
        while (!st.done)
                g_main_context_iteration(ctx, TRUE);
        g_source_destroy(t);
        g_source_unref(t);
        /* communicate finishes when the pipes close; reap the child too. */
        g_subprocess_wait(p, NULL, NULL);
        g_main_context_pop_thread_default(ctx);

        if (st.error)
                g_error("talking to %s failed: %s", argv[0], st.error->message);

        int status = -1;
        if (g_subprocess_get_if_exited(p))
                status = g_subprocess_get_exit_status(p);
        else if (st.timed_out)
                g_test_message("%s: timed out after %u s (killed)", argv[0], timeout_s);
        else if (g_subprocess_get_if_signaled(p))
                /* Which signal, not just "killed": a loaded VM once had a
                 * cryptsetup killed by a signal (issue 17). */
                g_test_message("%s: killed by signal %d (%s)", argv[0], g_subprocess_get_term_sig(p),
                               g_strsignal(g_subprocess_get_term_sig(p)));
        if (ret_out)
                *ret_out = bytes_to_str(st.out);
        if (ret_err)
                *ret_err = bytes_to_str(st.err);
        g_clear_pointer(&st.out, g_bytes_unref);
        g_clear_pointer(&st.err, g_bytes_unref);
        return status;
}

/* Run a tool that must succeed; abort with its output otherwise. */
static char *run_tool(const char *const *argv, const char *stdin_data, gsize stdin_len) {
        g_autofree char *err = NULL;
        char *out = NULL;
        int status = run_argv(argv, stdin_data, stdin_len, NULL, LV_TOOL_TIMEOUT_S, &out, &err);
        if (status != 0) {
                g_autofree char *cmdline = g_strjoinv(" ", (char **) argv);
                g_error("'%s' failed (%s %d; a signal or timeout is named in the message before)\nstdout: "
                        "%s\nstderr: %s",
                        cmdline, status < 0 ? "killed/timeout" : "exit status", status, out, err);
        }
        return out;
}

int lv_run_as(uid_t uid, const char *const *argv, guint timeout_s, char **ret_stdout, char **ret_stderr) {
        require_root("lv_run_as");
        Creds c;
        creds_for_uid(uid, &c);
        return run_argv(argv, NULL, 0, &c, timeout_s, ret_stdout, ret_stderr);
}

/* ---- D-Bus ---------------------------------------------------------------- */

GDBusConnection *lv_bus(void) {
        static GDBusConnection *bus;
        if (bus == NULL) {
                require_env("DBUS_SYSTEM_BUS_ADDRESS");
                g_autoptr(GError) error = NULL;
                bus = g_bus_get_sync(G_BUS_TYPE_SYSTEM, NULL, &error);
                if (bus == NULL)
                        g_error("cannot connect to the sandbox system bus: %s", error->message);
                /* A test failing must not take the process down through GDBus. */
                g_dbus_connection_set_exit_on_close(bus, FALSE);
        }
        return bus;
}

GDBusConnection *lv_bus_as_uid(uid_t uid) {
        require_root("lv_bus_as_uid");
        const char *address = require_env("DBUS_SYSTEM_BUS_ADDRESS");
        Creds c;
        creds_for_uid(uid, &c);

        gid_t saved_groups[64];
        int nsaved = getgroups(G_N_ELEMENTS(saved_groups), saved_groups);
        if (nsaved < 0)
                g_error("getgroups: %s", g_strerror(errno));

        int r = thread_become(&c);
        if (r < 0) {
                thread_become_root(saved_groups, nsaved);
                g_error("cannot switch thread credentials to uid %u: %s", (unsigned) uid, g_strerror(-r));
        }
        g_autoptr(GError) error = NULL;
        GDBusConnection *conn = g_dbus_connection_new_for_address_sync(
                address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                NULL, NULL, &error);
        thread_become_root(saved_groups, nsaved);
        if (conn == NULL)
                g_error("cannot connect to the bus as uid %u: %s", (unsigned) uid, error->message);
        g_dbus_connection_set_exit_on_close(conn, FALSE);
        return conn;
}

static GVariant *bus_call(GDBusConnection *bus, const char *method, GVariant *args, const char *reply_type) {
        g_autoptr(GError) error = NULL;
        GVariant *r = g_dbus_connection_call_sync(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                  "org.freedesktop.DBus", method, args, G_VARIANT_TYPE(reply_type),
                                                  G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (r == NULL)
                g_error("org.freedesktop.DBus.%s failed: %s", method, error->message);
        return r;
}

char *lv_bus_name_owner(GDBusConnection *bus, const char *name) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner",
                g_variant_new("(s)", name), G_VARIANT_TYPE("(s)"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (r == NULL) {
                if (g_dbus_error_is_remote_error(error)) {
                        g_autofree char *ename = g_dbus_error_get_remote_error(error);
                        if (g_strcmp0(ename, "org.freedesktop.DBus.Error.NameHasNoOwner") == 0)
                                return NULL;
                }
                g_error("GetNameOwner(%s) failed: %s", name, error->message);
        }
        char *owner;
        g_variant_get(r, "(s)", &owner);
        return owner;
}

guint32 lv_bus_unix_user(GDBusConnection *bus, const char *name) {
        g_autoptr(GVariant) r = bus_call(bus, "GetConnectionUnixUser", g_variant_new("(s)", name), "(u)");
        guint32 uid;
        g_variant_get(r, "(u)", &uid);
        return uid;
}

/* ---- polkit ---------------------------------------------------------------- */

static void on_authority_changed(GDBusConnection *c, const char *sender, const char *path, const char *iface,
                                 const char *signal, GVariant *params, gpointer user_data) {
        (*(guint *) user_data)++;
}

void lv_polkit_set_rules(const char *name, const char *contents) {
        check_name(name);
        if (!g_str_has_suffix(name, ".rules"))
                g_error("polkit only reads files named *.rules, not '%s'", name);
        g_autofree char *path = g_build_filename(require_env("LV_POLKIT_RULES_DIR"), name, NULL);
        GDBusConnection *bus = lv_bus();

        g_autoptr(GMainContext) ctx = g_main_context_new();
        g_main_context_push_thread_default(ctx);
        guint changes = 0;
        guint sub = g_dbus_connection_signal_subscribe(bus, "org.freedesktop.PolicyKit1",
                                                       "org.freedesktop.PolicyKit1.Authority", "Changed",
                                                       "/org/freedesktop/PolicyKit1/Authority", NULL,
                                                       G_DBUS_SIGNAL_FLAGS_NONE, on_authority_changed, &changes, NULL);
        /* Make sure the match rule is installed before the file changes. */
        g_autoptr(GVariant) ping G_GNUC_UNUSED = bus_call(bus, "GetId", NULL, "(s)");

        if (contents != NULL) {
                /* Write beside the directory and rename in, so polkitd never reads a
     * half-written file (both are on the sandbox's tmpfs). */
                g_autofree char *tmp = g_strdup_printf("%s/.%s.tmp", lv_sandbox_dir(), name);
                g_autoptr(GError) error = NULL;
                if (!g_file_set_contents_full(tmp, contents, -1, G_FILE_SET_CONTENTS_NONE, 0644, &error))
                        g_error("cannot write %s: %s", tmp, error->message);
                if (rename(tmp, path) < 0)
                        g_error("cannot rename %s to %s: %s", tmp, path, g_strerror(errno));
        } else if (unlink(path) < 0 && errno != ENOENT) {
                g_error("cannot remove %s: %s", path, g_strerror(errno));
        }

        /* polkitd reloads (and emits Changed) once per directory event; a rename
   * produces two, ~5 ms apart (measured).  Wait for the first, then for
   * 150 ms of quiet, so a late signal cannot satisfy the next call. */
        gint64 deadline = g_get_monotonic_time() + LV_POLKIT_RELOAD_TIMEOUT_MS * 1000;
        guint seen = 0;
        gint64 quiet_until = 0;
        for (;;) {
                gint64 now = g_get_monotonic_time();
                if (changes != seen) {
                        seen = changes;
                        quiet_until = now + 150 * 1000;
                }
                if (seen > 0 && now >= quiet_until)
                        break;
                if (now >= deadline)
                        break;
                /* Poll: the deadlines are checked here, not by sources. */
                while (g_main_context_iteration(ctx, FALSE))
                        ;
                g_usleep(10 * 1000);
        }
        g_dbus_connection_signal_unsubscribe(bus, sub);
        g_main_context_pop_thread_default(ctx);
        if (seen == 0)
                g_error("polkitd did not reload its rules within %d ms after %s %s", LV_POLKIT_RELOAD_TIMEOUT_MS,
                        contents ? "writing" : "removing", path);
}

gboolean lv_polkit_check(const char *action_id, const char *subject_bus_name, gboolean *ret_challenge) {
        GVariantBuilder subject_details;
        g_variant_builder_init(&subject_details, G_VARIANT_TYPE("a{sv}"));
        g_variant_builder_add(&subject_details, "{sv}", "name", g_variant_new_string(subject_bus_name));
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                lv_bus(), "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization",
                g_variant_new("((sa{sv})sa{ss}us)", "system-bus-name", &subject_details, action_id, NULL, (guint32) 0,
                              ""),
                G_VARIANT_TYPE("((bba{ss}))"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (r == NULL)
                g_error("CheckAuthorization(%s, %s) failed: %s", action_id, subject_bus_name, error->message);
        gboolean authorized, challenge;
        g_variant_get(r, "((bb@a{ss}))", &authorized, &challenge, NULL);
        if (ret_challenge)
                *ret_challenge = challenge;
        return authorized;
}

char **lv_polkit_action_ids(void) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) r = g_dbus_connection_call_sync(
                lv_bus(), "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                "org.freedesktop.PolicyKit1.Authority", "EnumerateActions", g_variant_new("(s)", ""),
                G_VARIANT_TYPE("(a(ssssssuuua{ss}))"), G_DBUS_CALL_FLAGS_NONE, 10000, NULL, &error);
        if (r == NULL)
                g_error("EnumerateActions failed: %s", error->message);
        g_autoptr(GVariant) arr = g_variant_get_child_value(r, 0);
        GPtrArray *ids = g_ptr_array_new();
        GVariantIter it;
        const char *id;
        g_variant_iter_init(&it, arr);
        /* (id, description, message, vendor, vendor_url, icon, 3 × implicit, annotations) */
        while (g_variant_iter_next(&it, "(&ssssssuuu@a{ss})", &id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL))
                g_ptr_array_add(ids, g_strdup(id));
        g_ptr_array_add(ids, NULL);
        return (char **) g_ptr_array_free(ids, FALSE);
}

/* ---- daemon log ------------------------------------------------------------ */

char *lv_daemon_log(void) {
        return lv_daemon_log_since(0);
}

goffset lv_daemon_log_mark(void) {
        struct stat st;
        const char *path = require_env("LV_DAEMON_LOG");
        if (stat(path, &st) < 0)
                g_error("cannot stat %s: %s", path, g_strerror(errno));
        return st.st_size;
}

static char *read_file_from(const char *path, goffset from) {
        g_autofree char *all = NULL;
        gsize len = 0;
        g_autoptr(GError) error = NULL;
        if (!g_file_get_contents(path, &all, &len, &error))
                g_error("cannot read %s: %s", path, error->message);
        if (from < 0 || (gsize) from > len)
                from = len;
        return g_strndup(all + from, len - from);
}

char *lv_daemon_log_since(goffset mark) {
        return read_file_from(require_env("LV_DAEMON_LOG"), mark);
}

/* ---- images and block devices --------------------------------------------- */

/* A passphrase file for qemu's --object secret,file=…: readable by root only,
 * removed by the caller. */
static char *write_secret_file(const char *passphrase) {
        g_autofree char *tmpl = g_build_filename(lv_sandbox_dir(), ".secret-XXXXXX", NULL);
        int fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                g_error("cannot create a secret file in %s: %s", lv_sandbox_dir(), g_strerror(errno));
        size_t n = strlen(passphrase);
        if (write(fd, passphrase, n) != (ssize_t) n)
                g_error("cannot write the secret file: %s", g_strerror(errno));
        close(fd);
        return g_steal_pointer(&tmpl);
}

static void make_readable(const char *path) {
        if (chmod(path, 0644) < 0)
                g_error("chmod %s: %s", path, g_strerror(errno));
}

void lv_luks1_write_pattern(const char *path, const char *passphrase, guint8 pattern, guint64 offset, guint64 len) {
        g_autofree char *secret = write_secret_file(passphrase);
        g_autofree char *obj = g_strdup_printf("secret,id=s0,format=raw,file=%s", secret);
        g_autofree char *opts = g_strdup_printf("driver=luks,key-secret=s0,file.filename=%s", path);
        g_autofree char *io =
                g_strdup_printf("write -P 0x%02x %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT, pattern, offset, len);
        const char *argv[] = { "qemu-io", "--object", obj, "--image-opts", opts, "-c", io, NULL };
        g_autofree char *out = run_tool(argv, NULL, 0);
        unlink(secret);
        g_autofree char *want = g_strdup_printf("wrote %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " bytes", len, len);
        if (strstr(out, want) == NULL)
                g_error("qemu-io did not confirm '%s' on %s:\n%s", want, path, out);
}

static char *create_sized_file(const char *name, guint size_mib) {
        g_autofree char *path = lv_sandbox_path(name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                g_error("cannot create %s: %s", path, g_strerror(errno));
        if (ftruncate(fd, (off_t) size_mib * 1024 * 1024) < 0)
                g_error("cannot size %s: %s", path, g_strerror(errno));
        close(fd);
        make_readable(path);
        return g_steal_pointer(&path);
}

char *lv_make_luks1_image_full(const char *name, const char *passphrase, guint8 pattern, guint size_mib,
                               guint iter_time_ms) {
        g_autofree char *path = NULL;
        if (iter_time_ms == 0) {
                /* cryptsetup with forced iterations (which also pins the master-key
     * digest at its minimum, 1000) skips PBKDF benchmarking: ~0.1 s. LUKS1's
     * header takes 2 MiB, so the payload is exactly size_mib. */
                path = create_sized_file(name, size_mib + 2);
                const char *argv[] = {
                        "cryptsetup", "luksFormat",   "--type",       "luks1", "--pbkdf-force-iterations",
                        "1000",       "--batch-mode", "--key-file=-", path,    NULL
                };
                g_autofree char *out G_GNUC_UNUSED = run_tool(argv, passphrase, strlen(passphrase));
        } else {
                /* qemu-img sizes PBKDF2 by time.  Its benchmark runs ~0.5 s of CPU per
     * PBKDF2 whatever iter-time is, so this costs ~1-2 s to create; every
     * open then costs about iter_time_ms. */
                path = lv_sandbox_path(name);
                g_autofree char *secret = write_secret_file(passphrase);
                g_autofree char *obj = g_strdup_printf("secret,id=s0,format=raw,file=%s", secret);
                g_autofree char *opts = g_strdup_printf("key-secret=s0,iter-time=%u", iter_time_ms);
                g_autofree char *size = g_strdup_printf("%uM", size_mib);
                const char *argv[] = { "qemu-img", "create", "-q", "--object", obj,  "-f",
                                       "luks",     "-o",     opts, path,       size, NULL };
                /* Its PBKDF2 benchmark gives up ("Unable to get accurate CPU usage")
     * when the machine is busy, e.g. with parallel test sandboxes: retry. */
                for (int attempt = 1;; attempt++) {
                        g_autofree char *out = NULL, *err = NULL;
                        g_autoptr(GError) error = NULL;
                        gint status = 0;
                        if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                                          &status, &error))
                                g_error("cannot run qemu-img: %s", error->message);
                        if (g_spawn_check_wait_status(status, NULL))
                                break;
                        if (attempt >= 10 || strstr(err, "accurate CPU usage") == NULL)
                                g_error("qemu-img create failed: %s", err);
                        g_usleep(200 * 1000);
                }
                unlink(secret);
                make_readable(path);
        }
        lv_luks1_write_pattern(path, passphrase, pattern, 0, 64 * 1024);
        return g_steal_pointer(&path);
}

char *lv_make_luks1_image(const char *name, const char *passphrase, guint8 pattern, guint size_mib) {
        return lv_make_luks1_image_full(name, passphrase, pattern, size_mib, 0);
}

char *lv_make_luks2_image(const char *name, const char *passphrase, guint size_mib) {
        return lv_make_luks2_image_pbkdf(name, passphrase, size_mib, "pbkdf2");
}

char *lv_make_luks2_image_pbkdf(const char *name, const char *passphrase, guint size_mib, const char *pbkdf) {
        if (size_mib < 17)
                g_error("a LUKS2 image needs at least 17 MiB (16 MiB header), not %u", size_mib);
        gboolean argon2 = !g_str_equal(pbkdf, "pbkdf2");
        g_autofree char *path = create_sized_file(name, size_mib);
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        const char *const common[] = { "cryptsetup", "luksFormat", "--type",       "luks2",
                                       "--pbkdf",    pbkdf,        "--batch-mode", "--key-file=-" };
        /* --key-file=-: stdin is the key, byte for byte (no newline handling). */
        for (guint i = 0; i < G_N_ELEMENTS(common); i++)
                g_ptr_array_add(argv, (gpointer) common[i]);
        if (argon2) {
                g_ptr_array_add(argv, "--pbkdf-force-iterations=4");
                g_ptr_array_add(argv, "--pbkdf-memory=32768");
                g_ptr_array_add(argv, "--pbkdf-parallel=1");
        } else
                g_ptr_array_add(argv, "--pbkdf-force-iterations=1000");
        g_ptr_array_add(argv, path);
        g_ptr_array_add(argv, NULL);
        g_autofree char *out G_GNUC_UNUSED =
                run_tool((const char *const *) argv->pdata, passphrase, strlen(passphrase));
        return g_steal_pointer(&path);
}

/* "Key Slot N: ENABLED" followed by "\tIterations: M" in luksDump's
 * output (LUKS1).  Returns the number of enabled slots; ret_iters (8
 * entries) gets each slot's iterations, 0 for a disabled slot. */
static guint luks1_dump_slots(const char *path, guint ret_iters[8]) {
        const char *argv[] = { "cryptsetup", "luksDump", path, NULL };
        g_autofree char *out = run_tool(argv, NULL, 0);
        g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
        guint enabled = 0;
        int slot = -1;
        for (guint i = 0; i < 8; i++)
                ret_iters[i] = 0;
        for (char **l = lines; *l; l++) {
                int n;
                char state[16];
                if (sscanf(*l, "Key Slot %d: %15s", &n, state) == 2 && n >= 0 && n < 8) {
                        slot = g_str_equal(state, "ENABLED") ? n : -1;
                        enabled += slot >= 0;
                        continue;
                }
                const char *it = strstr(*l, "Iterations:");
                if (it != NULL && slot >= 0) {
                        ret_iters[slot] = (guint) g_ascii_strtoull(it + strlen("Iterations:"), NULL, 10);
                        slot = -1;
                }
        }
        return enabled;
}

/* CPU seconds (user + system) that argv, which must succeed, spends: the
 * process's RUSAGE_CHILDREN grows by exactly that once run_tool() has reaped
 * it (this program runs no other children meanwhile). */
static double tool_cpu_seconds(const char *const *argv) {
        struct rusage before, after;
        getrusage(RUSAGE_CHILDREN, &before);
        g_autofree char *out G_GNUC_UNUSED = run_tool(argv, NULL, 0);
        getrusage(RUSAGE_CHILDREN, &after);
        double b = before.ru_utime.tv_sec + before.ru_stime.tv_sec +
                   (before.ru_utime.tv_usec + before.ru_stime.tv_usec) / 1e6;
        double a =
                after.ru_utime.tv_sec + after.ru_stime.tv_sec + (after.ru_utime.tv_usec + after.ru_stime.tv_usec) / 1e6;
        return a - b;
}

/* The least CPU time of a few qemu-io runs opening image with passphrase:
 * start-up plus one key slot's PBKDF2 in QEMU's own crypto code. */
static double qemu_open_cpu_seconds(const char *image, const char *secret_file) {
        g_autofree char *obj = g_strdup_printf("secret,id=s0,format=raw,file=%s", secret_file);
        g_autofree char *opts = g_strdup_printf("driver=luks,key-secret=s0,file.filename=%s", image);
        const char *argv[] = { "qemu-io", "-r", "--object", obj, "--image-opts", opts, "-c", "read 0 512", NULL };
        double best = G_MAXDOUBLE;
        for (int i = 0; i < 3; i++)
                best = MIN(best, tool_cpu_seconds(argv));
        return best;
}

guint lv_pbkdf2_iterations(guint slot_ms) {
        static double iters_per_s;
        if (slot_ms == 0)
                g_error("lv_pbkdf2_iterations: slot_ms must be positive");
        if (iters_per_s > 0)
                return (guint) MAX(1000.0, iters_per_s * slot_ms / 1000.0);

        /* What a key slot costs is what it costs QEMU, which derives the keys
   * (and stalls the guest meanwhile): QEMU's PBKDF2 (nettle) and
   * libcryptsetup's (OpenSSL 3 on Debian 12) differ by a factor of 2.5-3.5
   * here for the same slot, and cryptsetup's --iter-time benchmark matches
   * neither and varies by ±20% on a busy machine.  So: open a 1-slot image
   * with QEMU at a known iteration count and at the minimum, and take the
   * difference in CPU time (CPU, not wall time: other load on the machine
   * does not count). */
        const char *pass = "calibration";
        const guint probe_iters = 400000;
        g_autofree char *secret = write_secret_file(pass);
        double cost[2];
        const guint iters[2] = { 1000, probe_iters };
        for (guint k = 0; k < 2; k++) {
                g_autofree char *scratch = create_sized_file(".pbkdf-calibration.img", 4 + 2);
                g_autofree char *it = g_strdup_printf("%u", iters[k]);
                const char *argv[] = { "cryptsetup",
                                       "luksFormat",
                                       "--type",
                                       "luks1",
                                       "--pbkdf",
                                       "pbkdf2",
                                       "--pbkdf-force-iterations",
                                       it,
                                       "--batch-mode",
                                       "--key-file=-",
                                       scratch,
                                       NULL };
                g_autofree char *out G_GNUC_UNUSED = run_tool(argv, pass, strlen(pass));
                cost[k] = qemu_open_cpu_seconds(scratch, secret);
                unlink(scratch);
        }
        unlink(secret);
        if (cost[1] - cost[0] < 0.01)
                g_error("PBKDF2 calibration failed: QEMU opened %u iterations in %.3f s of CPU, 1000 in %.3f s",
                        probe_iters, cost[1], cost[0]);
        iters_per_s = (probe_iters - 1000) / (cost[1] - cost[0]);
        note("PBKDF2 calibration: QEMU derives a LUKS1 key slot at %.0f iterations/s "
             "(%u iterations: %.0f ms of CPU, 1000: %.0f ms)",
             iters_per_s, probe_iters, cost[1] * 1000, cost[0] * 1000);
        return (guint) MAX(1000.0, iters_per_s * slot_ms / 1000.0);
}

char *lv_make_luks1_slots_image(const char *name, const char *const *passphrases, guint n_slots, guint slot_ms,
                                guint size_mib) {
        if (n_slots < 1 || n_slots > 8)
                g_error("a LUKS1 header has 1 to 8 key slots, not %u", n_slots);
        guint n_iters = lv_pbkdf2_iterations(slot_ms);
        g_autofree char *iters = g_strdup_printf("%u", n_iters);
        g_autofree char *path = create_sized_file(name, size_mib + 2);

        /* The volume key comes from a file, so that adding a slot need not open
   * another one first (libcryptsetup is about 3× slower at that than QEMU). */
        guint8 vk[64];
        for (gsize i = 0; i < sizeof vk; i += 4) {
                guint32 r = g_random_int();
                memcpy(vk + i, &r, 4);
        }
        g_autofree char *vk_file = g_build_filename(lv_sandbox_dir(), ".volume-key-XXXXXX", NULL);
        int fd = g_mkstemp_full(vk_file, O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, vk, sizeof vk) != (ssize_t) sizeof vk)
                g_error("cannot write a volume key file in %s: %s", lv_sandbox_dir(), g_strerror(errno));
        close(fd);
        g_autofree char *vk_arg = g_strconcat("--volume-key-file=", vk_file, NULL);

        /* Forced iterations also pin the volume key's digest at 1000 iterations,
   * so a wrong slot costs its own PBKDF2 and nothing more. */
        const char *format[] = {
                "cryptsetup",   "luksFormat", "--type", "luks1", "--pbkdf",    "pbkdf2", "--pbkdf-force-iterations",
                iters,          "--key-size", "512",    vk_arg,  "--key-slot", "0",      "--batch-mode",
                "--key-file=-", path,         NULL
        };
        g_autofree char *out G_GNUC_UNUSED = run_tool(format, passphrases[0], strlen(passphrases[0]));
        for (guint i = 1; i < n_slots; i++) {
                g_autofree char *slot = g_strdup_printf("%u", i);
                g_autofree char *keyi = write_secret_file(passphrases[i]);
                const char *add[] = { "cryptsetup", "luksAddKey", "--pbkdf",    "pbkdf2", "--pbkdf-force-iterations",
                                      iters,        vk_arg,       "--key-slot", slot,     "--batch-mode",
                                      path,         keyi,         NULL };
                g_autofree char *aout G_GNUC_UNUSED = run_tool(add, NULL, 0);
                unlink(keyi);
        }
        unlink(vk_file);

        guint got[8];
        guint enabled = luks1_dump_slots(path, got);
        if (enabled != n_slots)
                g_error("%s has %u active key slots, not %u", path, enabled, n_slots);
        for (guint i = 0; i < n_slots; i++)
                if (got[i] != n_iters)
                        g_error("%s: key slot %u has %u iterations, not %u", path, i, got[i], n_iters);
        return g_steal_pointer(&path);
}

char *lv_make_luks1_image_bytes(const char *name, const void *key, gsize key_len, guint size_mib) {
        g_autofree char *path = create_sized_file(name, size_mib + 2);
        const char *argv[] = { "cryptsetup", "luksFormat",   "--type",       "luks1", "--pbkdf-force-iterations",
                               "1000",       "--batch-mode", "--key-file=-", path,    NULL };
        g_autofree char *out G_GNUC_UNUSED = run_tool(argv, key, key_len);
        return g_steal_pointer(&path);
}

char *lv_make_plain_file(const char *name, guint size_mib) {
        return create_sized_file(name, size_mib);
}

char *lv_losetup(const char *path) {
        const char *argv[] = { "losetup", "--find", "--show", path, NULL };
        char *out = run_tool(argv, NULL, 0);
        g_strstrip(out);
        if (!g_str_has_prefix(out, "/dev/loop"))
                g_error("losetup printed '%s', not a loop device", out);
        return out;
}

void lv_losetup_detach(const char *dev) {
        if (dev == NULL)
                return;
        const char *argv[] = { "losetup", "--detach", dev, NULL };
        g_autofree char *out G_GNUC_UNUSED = run_tool(argv, NULL, 0);
}

/* ---- libvirt -------------------------------------------------------------- */

static void quiet_virt_errors(void *opaque, virErrorPtr err) {
        /* Helpers report errors themselves, with context; libvirt's default
   * handler would print every expected failure too. */
}

static const char *virt_error(void) {
        const char *m = virGetLastErrorMessage();
        return m ? m : "unknown libvirt error";
}

static virConnectPtr cached_conn;

virConnectPtr lv_virt(void) {
        virConnectPtr conn = cached_conn;
        if (conn != NULL && virConnectIsAlive(conn) != 1) {
                /* libvirtd was restarted (lv_restart_libvirtd): start afresh. */
                virConnectClose(conn);
                conn = cached_conn = NULL;
        }
        if (conn == NULL) {
                const char *uri = require_env("LV_LIBVIRT_URI");
                virSetErrorFunc(NULL, quiet_virt_errors);
                conn = cached_conn = virConnectOpen(uri);
                if (conn == NULL)
                        g_error("cannot connect to %s: %s", uri, virt_error());
        }
        return conn;
}

gboolean lv_libvirtd_alive(void) {
        g_autofree char *pidtext = NULL;
        if (!g_file_get_contents("/run/libvirtd.pid", &pidtext, NULL, NULL))
                return FALSE;
        pid_t pid = (pid_t) g_ascii_strtoll(pidtext, NULL, 10);
        return pid > 1 && kill(pid, 0) == 0;
}

void lv_restart_libvirtd(void) {
        g_autofree char *pidtext = NULL;
        if (!g_file_get_contents("/run/libvirtd.pid", &pidtext, NULL, NULL))
                g_error("cannot read /run/libvirtd.pid");
        pid_t pid = (pid_t) g_ascii_strtoll(pidtext, NULL, 10);
        g_assert_cmpint(pid, >, 1);
        /* Already gone (crashed) is fine: it is started again below. */
        if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
                g_error("cannot signal libvirtd: %s", g_strerror(errno));
        for (int i = 0; i < 1000 && kill(pid, 0) == 0; i++)
                g_usleep(10 * 1000);
        if (kill(pid, 0) == 0)
                g_error("libvirtd (pid %d) did not exit within 10 s", (int) pid);
        if (cached_conn != NULL) {
                virConnectClose(cached_conn);
                cached_conn = NULL;
        }
        /* The same way sandbox.sh starts it; it reconnects to running guests. */
        const char *argv[] = { "libvirtd", "-d", NULL };
        g_autoptr(GError) error = NULL;
        gint status = 0;
        g_auto(GStrv) env =
                g_environ_setenv(g_get_environ(), "LIBVIRT_LOG_OUTPUTS", "3:file:/var/log/libvirt/libvirtd.log", TRUE);
        if (!g_spawn_sync(NULL, (char **) argv, env, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status, &error))
                g_error("cannot start libvirtd: %s", error->message);
        for (int i = 0; i < 2000; i++) {
                virConnectPtr c = virConnectOpen(require_env("LV_LIBVIRT_URI"));
                if (c != NULL) {
                        cached_conn = c;
                        return;
                }
                g_usleep(10 * 1000);
        }
        g_error("libvirtd did not come back within 20 s");
}

/* No OS: SeaBIOS idles, which is all QEMU's block layer needs.  ACPI is
 * required for PCI hot-plug; virtio-scsi disks are released at once on
 * detach even without a guest driver (virtio-blk ones are not).  Without
 * rebootTimeout='-1' SeaBIOS finds nothing to boot and reboots every 60 s:
 * with 20 TCG guests that is a firmware boot somewhere every 3 s, CPU taken
 * from whatever is being measured. */
static char *osless_guest_xml(const char *name) {
        return g_strdup_printf("<domain type='qemu'>"
                               "  <name>%s</name>"
                               "  <memory unit='MiB'>64</memory>"
                               "  <vcpu>1</vcpu>"
                               "  <os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>"
                               "  <features><acpi/></features>"
                               "  <on_poweroff>destroy</on_poweroff>"
                               "  <devices>"
                               "    <controller type='scsi' index='0' model='virtio-scsi'/>"
                               "    <console type='pty'/>"
                               "    <memballoon model='none'/>"
                               "  </devices>"
                               "</domain>",
                               name);
}

virDomainPtr lv_start_guest(const char *name) {
        check_name(name);
        g_autofree char *xml = osless_guest_xml(name);
        virDomainPtr dom = virDomainCreateXML(lv_virt(), xml, 0);
        if (dom == NULL)
                g_error("cannot start guest %s: %s", name, virt_error());
        return dom;
}

virDomainPtr lv_start_persistent_guest(const char *name) {
        check_name(name);
        g_autofree char *xml = osless_guest_xml(name);
        virDomainPtr dom = virDomainDefineXML(lv_virt(), xml);
        if (dom == NULL)
                g_error("cannot define guest %s: %s", name, virt_error());
        if (virDomainCreate(dom) < 0)
                g_error("cannot start guest %s: %s", name, virt_error());
        return dom;
}

void lv_remove_guest(virDomainPtr dom) {
        if (dom == NULL)
                return;
        if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
                g_error("cannot destroy guest %s: %s", virDomainGetName(dom), virt_error());
        if (virDomainIsPersistent(dom) == 1 && virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0)
                g_error("cannot undefine guest %s: %s", virDomainGetName(dom), virt_error());
        virDomainFree(dom);
}

void lv_destroy_guest(virDomainPtr dom) {
        if (dom == NULL)
                return;
        if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
                g_error("cannot destroy guest %s: %s", virDomainGetName(dom), virt_error());
        virDomainFree(dom);
}

/* ---- the heartbeat guest ------------------------------------------------------ */

#ifndef LV_HEARTBEAT_INIT
#error "LV_HEARTBEAT_INIT (the built heartbeat-init) must be defined by tests/integration/meson.build"
#endif

/* How long a TCG guest may take from start to its first heartbeat (~7 s on
 * an idle machine; a busy one with parallel tests is much slower). */
#define LV_HEARTBEAT_BOOT_TIMEOUT_MS 180000
/* How long lv_heartbeat_next() waits: two 20 ms periods, plus any stall
 * still in progress. */
#define LV_HEARTBEAT_NEXT_TIMEOUT_MS 60000

const char *lv_heartbeat_kernel(void) {
        static gboolean looked;
        static char *kernel;
        if (looked)
                return kernel;
        looked = TRUE;

        const char *env = g_getenv("LV_VM_KERNEL");
        if (env != NULL && *env != '\0') {
                if (g_file_test(env, G_FILE_TEST_IS_REGULAR) && access(env, R_OK) == 0)
                        kernel = g_strdup(env);
                return kernel;
        }
        /* The newest Debian 6.1 kernel, as tests/vm/run-in-vm.sh picks it. */
        g_autoptr(GDir) dir = g_dir_open("/boot", 0, NULL);
        if (dir == NULL)
                return NULL;
        g_autofree char *best = NULL;
        const char *n;
        while ((n = g_dir_read_name(dir)) != NULL) {
                if (!g_str_has_prefix(n, "vmlinuz-6.1.") || !g_str_has_suffix(n, "-amd64"))
                        continue;
                g_autofree char *p = g_build_filename("/boot", n, NULL);
                if (access(p, R_OK) != 0)
                        continue;
                if (best == NULL || strverscmp(n, best) > 0) {
                        g_free(best);
                        best = g_strdup(n);
                }
        }
        if (best != NULL)
                kernel = g_build_filename("/boot", best, NULL);
        return kernel;
}

/* One entry of a newc ("070701") cpio archive, as the kernel unpacks an
 * initramfs: header, NUL-terminated name, data, each padded to 4 bytes. */
static void cpio_add(GByteArray *a, const char *name, guint32 mode, guint32 rdev_major, guint32 rdev_minor,
                     const void *data, gsize len) {
        static guint32 ino = 1;
        g_autofree char *hdr = g_strdup_printf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino++,
                                               mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u, (guint32) len, 0u, 0u,
                                               rdev_major, rdev_minor, (guint32) strlen(name) + 1, 0u);
        static const guint8 zeros[4];
        g_byte_array_append(a, (const guint8 *) hdr, (guint) strlen(hdr));
        g_byte_array_append(a, (const guint8 *) name, (guint) strlen(name) + 1);
        g_byte_array_append(a, zeros, (4 - a->len % 4) % 4);
        if (len > 0)
                g_byte_array_append(a, data, (guint) len);
        g_byte_array_append(a, zeros, (4 - a->len % 4) % 4);
}

/* The kernel release of the heartbeat kernel ("6.1.0-57-amd64" from
 * /boot/vmlinuz-6.1.0-57-amd64), or $LV_VM_KVER. */
static const char *heartbeat_kernel_release(void) {
        const char *env = g_getenv("LV_VM_KVER");
        if (env != NULL && *env != '\0')
                return env;
        const char *kernel = lv_heartbeat_kernel();
        const char *base = kernel ? strrchr(kernel, '/') : NULL;
        base = base ? base + 1 : kernel;
        if (base == NULL || !g_str_has_prefix(base, "vmlinuz-"))
                return NULL;
        return base + strlen("vmlinuz-");
}

/* The modules a guest needs to see hot-plugged virtio disks (virtio_pci,
 * virtio_blk and what they depend on), as files, in load order: what
 * "modprobe --show-depends" says for the heartbeat kernel.  NULL if its
 * module tree or one of them is missing. */
static GPtrArray *heartbeat_disk_modules(void) {
        static const char *const wanted[] = { "virtio_pci", "virtio_blk" };
        const char *release = heartbeat_kernel_release();
        if (release == NULL)
                return NULL;
        GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
        for (gsize i = 0; i < G_N_ELEMENTS(wanted); i++) {
                g_autofree char *out = NULL;
                const char *argv[] = { "modprobe", "-S", release, "--show-depends", wanted[i], NULL };
                if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                                  NULL, &out, NULL, NULL, NULL)) {
                        g_ptr_array_unref(files);
                        return NULL;
                }
                g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
                for (char **l = lines; *l; l++) {
                        /* "insmod /lib/modules/…/virtio_ring.ko " ("builtin …" needs nothing) */
                        g_auto(GStrv) w = g_strsplit(g_strstrip(*l), " ", -1);
                        if (g_strv_length(w) < 2 || !g_str_equal(w[0], "insmod"))
                                continue;
                        gboolean have = FALSE;
                        for (guint k = 0; k < files->len; k++)
                                have = have || g_str_equal(files->pdata[k], w[1]);
                        if (!have)
                                g_ptr_array_add(files, g_strdup(w[1]));
                }
        }
        for (guint k = 0; k < files->len; k++)
                if (!g_str_has_suffix(files->pdata[k], ".ko") || access(files->pdata[k], R_OK) != 0) {
                        /* Compressed or missing: the static init loads plain .ko files. */
                        g_ptr_array_unref(files);
                        return NULL;
                }
        return files;
}

gboolean lv_heartbeat_disks_possible(void) {
        if (lv_heartbeat_kernel() == NULL)
                return FALSE;
        g_autoptr(GPtrArray) m = heartbeat_disk_modules();
        return m != NULL && m->len > 0;
}

/* $LV_SANDBOX_DIR/heartbeat-initramfs.cpio (or -disks.cpio): /dev/console
 * (which the kernel opens as init's stdin/stdout/stderr) and /init; with
 * disks, also the disk drivers' modules and /modules.list naming them in
 * load order.  Written here rather than with cpio(1) so that the device
 * node needs no mknod at build time. */
static const char *heartbeat_initramfs(gboolean disks) {
        static char *paths[2];
        if (paths[disks] != NULL)
                return paths[disks];
        g_autofree char *init = NULL;
        gsize init_len = 0;
        g_autoptr(GError) error = NULL;
        if (!g_file_get_contents(LV_HEARTBEAT_INIT, &init, &init_len, &error))
                g_error("cannot read the heartbeat guest's init (is the build complete?): %s", error->message);
        g_autoptr(GByteArray) a = g_byte_array_new();
        cpio_add(a, "dev", S_IFDIR | 0755, 0, 0, NULL, 0);
        cpio_add(a, "dev/console", S_IFCHR | 0600, 5, 1, NULL, 0);
        cpio_add(a, "init", S_IFREG | 0755, 0, 0, init, init_len);
        if (disks) {
                g_autoptr(GPtrArray) modules = heartbeat_disk_modules();
                if (modules == NULL)
                        g_error("no virtio disk modules for %s; callers must check lv_heartbeat_disks_possible()",
                                lv_heartbeat_kernel());
                g_autoptr(GString) list = g_string_new(NULL);
                cpio_add(a, "lib", S_IFDIR | 0755, 0, 0, NULL, 0);
                for (guint k = 0; k < modules->len; k++) {
                        g_autofree char *data = NULL;
                        gsize len = 0;
                        g_autofree char *base = g_path_get_basename(modules->pdata[k]);
                        g_autofree char *name = g_strconcat("lib/", base, NULL);
                        if (!g_file_get_contents(modules->pdata[k], &data, &len, &error))
                                g_error("cannot read %s: %s", (char *) modules->pdata[k], error->message);
                        cpio_add(a, name, S_IFREG | 0644, 0, 0, data, len);
                        g_string_append_printf(list, "/%s\n", name);
                }
                cpio_add(a, "modules.list", S_IFREG | 0644, 0, 0, list->str, list->len);
        }
        cpio_add(a, "TRAILER!!!", 0, 0, 0, NULL, 0);
        g_autofree char *p = lv_sandbox_path(disks ? "heartbeat-initramfs-disks.cpio" : "heartbeat-initramfs.cpio");
        if (!g_file_set_contents_full(p, (const char *) a->data, a->len, G_FILE_SET_CONTENTS_NONE, 0644, &error))
                g_error("cannot write %s: %s", p, error->message);
        paths[disks] = g_steal_pointer(&p);
        return paths[disks];
}

/* A copy of the kernel in the sandbox (see fixture.h: libvirt relabels a
 * domain's kernel while it runs). */
static const char *heartbeat_kernel_copy(void) {
        static char *path;
        if (path != NULL)
                return path;
        const char *kernel = lv_heartbeat_kernel();
        if (kernel == NULL)
                g_error("no kernel for the heartbeat guest (install linux-image-amd64); "
                        "callers must check lv_heartbeat_kernel() and skip");
        g_autofree char *data = NULL;
        gsize len = 0;
        g_autoptr(GError) error = NULL;
        if (!g_file_get_contents(kernel, &data, &len, &error))
                g_error("cannot read %s: %s", kernel, error->message);
        g_autofree char *p = lv_sandbox_path("heartbeat-vmlinuz");
        if (!g_file_set_contents_full(p, data, len, G_FILE_SET_CONTENTS_NONE, 0644, &error))
                g_error("cannot write %s: %s", p, error->message);
        path = g_steal_pointer(&p);
        return path;
}

static char *console_tail(const char *console_path) {
        g_autofree char *all = NULL;
        gsize len = 0;
        if (!g_file_get_contents(console_path, &all, &len, NULL))
                return g_strdup("(no console file)");
        gsize from = len > 3000 ? len - 3000 : 0;
        return g_strndup(all + from, len - from);
}

static virDomainPtr start_heartbeat_guest(const char *name, gboolean disks, char **ret_console_path) {
        check_name(name);
        const char *kernel = heartbeat_kernel_copy();
        const char *initrd = heartbeat_initramfs(disks);
        g_autofree char *console_name = g_strdup_printf("%s-console.log", name);
        g_autofree char *console = lv_sandbox_path(console_name);
        /* A guest of the same name before: its heartbeats must not count. */
        g_autofree char *rolled = g_strconcat(console, ".0", NULL);
        if ((unlink(console) < 0 && errno != ENOENT) || (unlink(rolled) < 0 && errno != ENOENT))
                g_error("cannot remove %s: %s", console, g_strerror(errno));

        /* quiet: the kernel prints only errors, which keeps the console to
   * heartbeats.  panic=-1 with on_reboot=destroy: a guest that dies ends
   * the domain instead of looping. */
        g_autofree char *xml = g_strdup_printf("<domain type='qemu'>"
                                               "  <name>%s</name>"
                                               "  <memory unit='MiB'>256</memory>"
                                               "  <vcpu>1</vcpu>"
                                               "  <os>"
                                               "    <type arch='x86_64' machine='pc'>hvm</type>"
                                               "    <kernel>%s</kernel>"
                                               "    <initrd>%s</initrd>"
                                               "    <cmdline>console=ttyS0 quiet panic=-1</cmdline>"
                                               "  </os>"
                                               "  <features><acpi/></features>"
                                               "  <on_poweroff>destroy</on_poweroff>"
                                               "  <on_reboot>destroy</on_reboot>"
                                               "  <on_crash>destroy</on_crash>"
                                               "  <devices>"
                                               "    <controller type='scsi' index='0' model='virtio-scsi'/>"
                                               "    <serial type='file'><source path='%s'/><target port='0'/></serial>"
                                               "    <memballoon model='none'/>"
                                               "  </devices>"
                                               "</domain>",
                                               name, kernel, initrd, console);
        gint64 t0 = g_get_monotonic_time();
        virDomainPtr dom = virDomainCreateXML(lv_virt(), xml, 0);
        if (dom == NULL)
                g_error("cannot start the heartbeat guest %s: %s", name, virt_error());

        gint64 deadline = t0 + (gint64) LV_HEARTBEAT_BOOT_TIMEOUT_MS * 1000;
        for (;;) {
                if (g_file_test(console, G_FILE_TEST_EXISTS)) {
                        g_autoptr(GArray) beats = lv_heartbeat_read(console);
                        if (beats->len > 0)
                                break;
                }
                if (virDomainIsActive(dom) != 1) {
                        g_autofree char *tail = console_tail(console);
                        g_error("the heartbeat guest %s ended before its first heartbeat; console:\n%s", name, tail);
                }
                if (g_get_monotonic_time() >= deadline) {
                        g_autofree char *tail = console_tail(console);
                        g_error("no heartbeat from %s within %d s; console:\n%s", name,
                                LV_HEARTBEAT_BOOT_TIMEOUT_MS / 1000, tail);
                }
                g_usleep(50 * 1000);
        }
        note("heartbeat guest %s (kernel %s) beating after %.1f s", name, lv_heartbeat_kernel(),
             (g_get_monotonic_time() - t0) / 1e6);
        if (ret_console_path)
                *ret_console_path = g_steal_pointer(&console);
        return dom;
}

virDomainPtr lv_start_heartbeat_guest(const char *name, char **ret_console_path) {
        return start_heartbeat_guest(name, FALSE, ret_console_path);
}

virDomainPtr lv_start_heartbeat_guest_disks(const char *name, char **ret_console_path) {
        return start_heartbeat_guest(name, TRUE, ret_console_path);
}

/* "BLK <name> <sectors> <serial>" → its fields; FALSE for any other line. */
static gboolean parse_disk_report(const char *line, gsize len, char **ret_name, guint64 *ret_sectors,
                                  char **ret_serial) {
        g_autofree char *copy = g_strndup(line, len);
        g_strchomp(copy);
        g_auto(GStrv) w = g_strsplit(copy, " ", -1);
        if (g_strv_length(w) != 4 || !g_str_equal(w[0], "BLK"))
                return FALSE;
        char *end = NULL;
        guint64 sectors = g_ascii_strtoull(w[2], &end, 10);
        if (end == w[2] || *end != '\0')
                return FALSE;
        *ret_name = g_strdup(w[1]);
        *ret_sectors = sectors;
        *ret_serial = g_strdup(w[3]);
        return TRUE;
}

gboolean lv_heartbeat_disk(const char *console_path, const char *disk, guint64 *ret_sectors, char **ret_serial) {
        g_autofree char *all = NULL, *last_serial = NULL;
        gsize len = 0;
        guint64 last_sectors = 0;
        gboolean found = FALSE;
        if (!g_file_get_contents(console_path, &all, &len, NULL))
                return FALSE;
        const char *p = all, *end = all + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (nl == NULL)
                        break;
                g_autofree char *name = NULL, *serial = NULL;
                guint64 sectors;
                if (parse_disk_report(p, (gsize) (nl - p), &name, &sectors, &serial) && g_str_equal(name, disk)) {
                        found = TRUE;
                        last_sectors = sectors;
                        g_free(last_serial);
                        last_serial = g_steal_pointer(&serial);
                }
                p = nl + 1;
        }
        if (!found)
                return FALSE;
        *ret_sectors = last_sectors;
        if (ret_serial)
                *ret_serial = g_steal_pointer(&last_serial);
        return TRUE;
}

gboolean lv_heartbeat_wait_disk(const char *console_path, const char *disk, guint64 sectors, guint timeout_ms,
                                char **ret_serial) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        guint64 seen = 0;
        gboolean any = FALSE;
        for (;;) {
                g_autofree char *serial = NULL;
                any = lv_heartbeat_disk(console_path, disk, &seen, &serial);
                if (any && seen == sectors) {
                        if (ret_serial)
                                *ret_serial = g_steal_pointer(&serial);
                        return TRUE;
                }
                if (g_get_monotonic_time() >= deadline)
                        break;
                g_usleep(100 * 1000);
        }
        if (any)
                note("the guest sees %s with %" G_GUINT64_FORMAT " sectors, not %" G_GUINT64_FORMAT, disk, seen,
                     sectors);
        else
                note("the guest reports no disk %s", disk);
        return FALSE;
}

/* "HB <seq> <s>.<6 digits>", nothing else on the line (a line garbled by
 * kernel output interleaved with it is not a heartbeat). */
static gboolean parse_heartbeat(const char *line, gsize len, LvHeartbeat *hb) {
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
                len--;
        if (len < 6 || memcmp(line, "HB ", 3) != 0)
                return FALSE;
        const char *p = line + 3, *end = line + len;
        guint64 seq = 0, sec = 0, usec = 0;
        const char *q = p;
        while (p < end && g_ascii_isdigit(*p) && p - q < 19)
                seq = seq * 10 + (guint64) (*p++ - '0');
        if (p == q || p >= end || *p++ != ' ')
                return FALSE;
        q = p;
        while (p < end && g_ascii_isdigit(*p) && p - q < 12)
                sec = sec * 10 + (guint64) (*p++ - '0');
        if (p == q || p >= end || *p++ != '.')
                return FALSE;
        if (end - p != 6)
                return FALSE;
        for (; p < end; p++) {
                if (!g_ascii_isdigit(*p))
                        return FALSE;
                usec = usec * 10 + (guint64) (*p - '0');
        }
        hb->seq = seq;
        hb->guest_us = (gint64) (sec * G_USEC_PER_SEC + usec);
        return TRUE;
}

static void heartbeats_from_file(const char *path, GArray *out) {
        g_autofree char *all = NULL;
        gsize len = 0;
        if (!g_file_get_contents(path, &all, &len, NULL))
                return;
        const char *p = all, *end = all + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                if (nl == NULL)
                        break; /* a line still being written */
                LvHeartbeat hb;
                if (parse_heartbeat(p, (gsize) (nl - p), &hb))
                        g_array_append_val(out, hb);
                p = nl + 1;
        }
}

GArray *lv_heartbeat_read(const char *console_path) {
        GArray *beats = g_array_new(FALSE, FALSE, sizeof(LvHeartbeat));
        /* virtlogd rolls the file over at 2 MiB (its max_size), to NAME.0: some
   * 25 minutes of heartbeats.  Read the older part first. */
        g_autofree char *rolled = g_strconcat(console_path, ".0", NULL);
        heartbeats_from_file(rolled, beats);
        heartbeats_from_file(console_path, beats);
        return beats;
}

LvHeartbeat lv_heartbeat_latest(const char *console_path) {
        g_autoptr(GArray) beats = lv_heartbeat_read(console_path);
        if (beats->len == 0)
                g_error("no heartbeat on %s", console_path);
        return g_array_index(beats, LvHeartbeat, beats->len - 1);
}

LvHeartbeat lv_heartbeat_next(const char *console_path) {
        LvHeartbeat now = lv_heartbeat_latest(console_path);
        gint64 deadline = g_get_monotonic_time() + (gint64) LV_HEARTBEAT_NEXT_TIMEOUT_MS * 1000;
        for (;;) {
                g_usleep(10 * 1000);
                g_autoptr(GArray) beats = lv_heartbeat_read(console_path);
                for (guint i = 0; i < beats->len; i++) {
                        LvHeartbeat *b = &g_array_index(beats, LvHeartbeat, i);
                        if (b->seq >= now.seq + 2 && b->guest_us > now.guest_us)
                                return *b;
                }
                if (g_get_monotonic_time() >= deadline) {
                        g_autofree char *tail = console_tail(console_path);
                        g_error("the heartbeat guest stopped beating (nothing after seq %" G_GUINT64_FORMAT
                                " within %d s); console:\n%s",
                                now.seq, LV_HEARTBEAT_NEXT_TIMEOUT_MS / 1000, tail);
                }
        }
}

static int cmp_gint64(gconstpointer a, gconstpointer b) {
        gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;
        return x < y ? -1 : x > y;
}

gboolean lv_heartbeat_gaps(const char *console_path, gint64 since_guest_us, gint64 until_guest_us,
                           LvHeartbeatGaps *ret) {
        g_autoptr(GArray) beats = lv_heartbeat_read(console_path);
        g_autoptr(GArray) gaps = g_array_new(FALSE, FALSE, sizeof(gint64));
        LvHeartbeatGaps r = { 0 };
        const LvHeartbeat *prev = NULL;
        for (guint i = 0; i < beats->len; i++) {
                const LvHeartbeat *b = &g_array_index(beats, LvHeartbeat, i);
                if (b->guest_us < since_guest_us || b->guest_us > until_guest_us)
                        continue;
                r.n_beats++;
                /* A sequence number going down is a guest that started over: its clock
     * did too, so no gap spans it. */
                if (prev != NULL && b->seq > prev->seq && b->guest_us >= prev->guest_us) {
                        gint64 gap = b->guest_us - prev->guest_us;
                        g_array_append_val(gaps, gap);
                        r.n_lost += (guint) (b->seq - prev->seq - 1);
                }
                prev = b;
        }
        if (gaps->len == 0) {
                note("%s: %u heartbeat(s) between guest times %.3f and %.3f s: no gap to measure", console_path,
                     r.n_beats, since_guest_us / 1e6, until_guest_us / 1e6);
                return FALSE;
        }
        if (g_getenv("LV_HEARTBEAT_DEBUG") != NULL)
                for (guint i = 0; i < gaps->len; i++)
                        if (g_array_index(gaps, gint64, i) > 30000)
                                note("gap #%u: %.1f ms", i, g_array_index(gaps, gint64, i) / 1000.0);
        g_array_sort(gaps, cmp_gint64);
        r.max_gap_us = g_array_index(gaps, gint64, gaps->len - 1);
        r.median_gap_us = g_array_index(gaps, gint64, gaps->len / 2);
        for (guint i = 0; i < gaps->len; i++) {
                gint64 gap = g_array_index(gaps, gint64, i);
                r.excess_us += MAX(gap - r.median_gap_us, 0);
                r.n_long += gap > 2 * r.median_gap_us;
        }
        if (ret)
                *ret = r;
        return TRUE;
}

gboolean lv_heartbeat_max_gap(const char *console_path, gint64 since_guest_us, gint64 until_guest_us,
                              double *ret_max_gap_ms) {
        LvHeartbeatGaps g;
        if (!lv_heartbeat_gaps(console_path, since_guest_us, until_guest_us, &g))
                return FALSE;
        if (ret_max_gap_ms)
                *ret_max_gap_ms = g.max_gap_us / 1000.0;
        return TRUE;
}

char *lv_domain_xml(virDomainPtr dom) {
        char *xml = virDomainGetXMLDesc(dom, 0);
        if (xml == NULL)
                g_error("cannot get the XML of %s: %s", virDomainGetName(dom), virt_error());
        /* libvirt allocates with malloc; hand out a g_malloc'd copy. */
        char *copy = g_strdup(xml);
        free(xml);
        return copy;
}

char *lv_domain_disk_xml(virDomainPtr dom, const char *target) {
        if (target == NULL || strpbrk(target, "'\"") != NULL)
                g_error("invalid disk target '%s'", target ? target : "(null)");
        g_autofree char *xml = lv_domain_xml(dom);
        xmlDocPtr doc = xmlReadMemory(xml, (int) strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
        if (doc == NULL)
                g_error("libvirt returned unparsable domain XML:\n%s", xml);
        xmlXPathContextPtr xp = xmlXPathNewContext(doc);
        g_autofree char *expr = g_strdup_printf("/domain/devices/disk[target/@dev='%s']", target);
        xmlXPathObjectPtr res = xmlXPathEvalExpression(BAD_CAST expr, xp);
        char *out = NULL;
        if (res && res->nodesetval && res->nodesetval->nodeNr > 0) {
                if (res->nodesetval->nodeNr > 1)
                        g_error("domain %s has %d disks with target %s", virDomainGetName(dom), res->nodesetval->nodeNr,
                                target);
                xmlBufferPtr buf = xmlBufferCreate();
                xmlNodeDump(buf, doc, res->nodesetval->nodeTab[0], 0, 0);
                out = g_strdup((const char *) xmlBufferContent(buf));
                xmlBufferFree(buf);
        }
        xmlXPathFreeObject(res);
        xmlXPathFreeContext(xp);
        xmlFreeDoc(doc);
        return out;
}

char *lv_domain_disk_alias(virDomainPtr dom, const char *target) {
        g_autofree char *disk = lv_domain_disk_xml(dom, target);
        if (disk == NULL)
                return NULL;
        xmlDocPtr doc = xmlReadMemory(disk, (int) strlen(disk), "disk.xml", NULL, XML_PARSE_NONET);
        if (doc == NULL)
                g_error("cannot parse the disk XML:\n%s", disk);
        xmlXPathContextPtr xp = xmlXPathNewContext(doc);
        xmlXPathObjectPtr res = xmlXPathEvalExpression(BAD_CAST "string(/disk/alias/@name)", xp);
        char *out = NULL;
        if (res && res->type == XPATH_STRING && res->stringval && *res->stringval)
                out = g_strdup((const char *) res->stringval);
        xmlXPathFreeObject(res);
        xmlXPathFreeContext(xp);
        xmlFreeDoc(doc);
        return out;
}

gboolean lv_domain_has_disk(virDomainPtr dom, const char *target) {
        g_autofree char *disk = lv_domain_disk_xml(dom, target);
        return disk != NULL;
}

gboolean lv_domain_wait_disk_gone(virDomainPtr dom, const char *target, guint timeout_ms) {
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;
        for (;;) {
                if (!lv_domain_has_disk(dom, target))
                        return TRUE;
                if (g_get_monotonic_time() >= deadline)
                        return FALSE;
                g_usleep(20 * 1000);
        }
}

guint lv_count_secrets(void) {
        int n = virConnectNumOfSecrets(lv_virt());
        if (n < 0)
                g_error("cannot count secrets: %s", virt_error());
        return (guint) n;
}

/* ---- a small JSON reader (for QMP replies) ----------------------------------
 * JSON maps onto GVariant as: object a{sv}, array av, string s, integer x,
 * other number d, true/false b, null "mv" nothing.  Enough for QMP; it is
 * strict and refuses what it does not understand. */

typedef struct {
        const char *p, *end;
} JCur;

/* Each reader returns TRUE with *out set, or FALSE with *error set: every
 * failure is a "return json_fail(…)", or passes one on. */
static gboolean json_value(JCur *c, int depth, GVariant **out, GError **error);

static void json_ws(JCur *c) {
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

static gboolean json_fail(GError **error, JCur *c, const char *what) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "JSON: %s near '%.20s'", what, c->p);
        return FALSE;
}

static gboolean json_string(JCur *c, char **out, GError **error) {
        if (c->p >= c->end || *c->p != '"')
                return json_fail(error, c, "expected a string");
        c->p++;
        g_autoptr(GString) s = g_string_new(NULL);
        while (c->p < c->end && *c->p != '"') {
                char ch = *c->p++;
                if (ch != '\\') {
                        g_string_append_c(s, ch);
                        continue;
                }
                if (c->p >= c->end)
                        break;
                ch = *c->p++;
                switch (ch) {
                case '"':
                case '\\':
                case '/':
                        g_string_append_c(s, ch);
                        break;
                case 'b':
                        g_string_append_c(s, '\b');
                        break;
                case 'f':
                        g_string_append_c(s, '\f');
                        break;
                case 'n':
                        g_string_append_c(s, '\n');
                        break;
                case 'r':
                        g_string_append_c(s, '\r');
                        break;
                case 't':
                        g_string_append_c(s, '\t');
                        break;
                case 'u': {
                        if (c->end - c->p < 4 || !g_ascii_isxdigit(c->p[0]) || !g_ascii_isxdigit(c->p[1]) ||
                            !g_ascii_isxdigit(c->p[2]) || !g_ascii_isxdigit(c->p[3]))
                                return json_fail(error, c, "bad \\u escape");
                        gunichar u = 0;
                        for (int i = 0; i < 4; i++)
                                u = u * 16 + g_ascii_xdigit_value(*c->p++);
                        /* A lone or paired surrogate: keep it simple, QMP sends ASCII. */
                        if (u >= 0xd800 && u <= 0xdfff)
                                u = 0xfffd;
                        g_string_append_unichar(s, u);
                        break;
                }
                default:
                        return json_fail(error, c, "bad escape");
                }
        }
        if (c->p >= c->end)
                return json_fail(error, c, "unterminated string");
        c->p++;
        if (!g_utf8_validate(s->str, s->len, NULL))
                return json_fail(error, c, "string is not UTF-8");
        *out = g_string_free(g_steal_pointer(&s), FALSE);
        return TRUE;
}

static gboolean json_value(JCur *c, int depth, GVariant **out, GError **error) {
        if (depth > 64)
                return json_fail(error, c, "nested too deeply");
        json_ws(c);
        if (c->p >= c->end)
                return json_fail(error, c, "unexpected end");
        char ch = *c->p;
        if (ch == '{') {
                c->p++;
                GVariantBuilder b;
                g_variant_builder_init(&b, G_VARIANT_TYPE("a{sv}"));
                json_ws(c);
                if (c->p < c->end && *c->p == '}') {
                        c->p++;
                        *out = g_variant_builder_end(&b);
                        return TRUE;
                }
                for (;;) {
                        json_ws(c);
                        g_autofree char *key = NULL;
                        if (!json_string(c, &key, error))
                                goto obj_fail;
                        json_ws(c);
                        if (c->p >= c->end || *c->p != ':') {
                                json_fail(error, c, "expected ':'");
                                goto obj_fail;
                        }
                        c->p++;
                        GVariant *v;
                        if (!json_value(c, depth + 1, &v, error))
                                goto obj_fail;
                        g_variant_builder_add(&b, "{sv}", key, v);
                        json_ws(c);
                        if (c->p < c->end && *c->p == ',') {
                                c->p++;
                                continue;
                        }
                        if (c->p < c->end && *c->p == '}') {
                                c->p++;
                                *out = g_variant_builder_end(&b);
                                return TRUE;
                        }
                        json_fail(error, c, "expected ',' or '}'");
                        goto obj_fail;
                }
        obj_fail:
                g_variant_builder_clear(&b);
                return FALSE;
        }
        if (ch == '[') {
                c->p++;
                GVariantBuilder b;
                g_variant_builder_init(&b, G_VARIANT_TYPE("av"));
                json_ws(c);
                if (c->p < c->end && *c->p == ']') {
                        c->p++;
                        *out = g_variant_builder_end(&b);
                        return TRUE;
                }
                for (;;) {
                        GVariant *v;
                        if (!json_value(c, depth + 1, &v, error))
                                goto arr_fail;
                        g_variant_builder_add(&b, "v", v);
                        json_ws(c);
                        if (c->p < c->end && *c->p == ',') {
                                c->p++;
                                continue;
                        }
                        if (c->p < c->end && *c->p == ']') {
                                c->p++;
                                *out = g_variant_builder_end(&b);
                                return TRUE;
                        }
                        json_fail(error, c, "expected ',' or ']'");
                        goto arr_fail;
                }
        arr_fail:
                g_variant_builder_clear(&b);
                return FALSE;
        }
        if (ch == '"') {
                char *s;
                if (!json_string(c, &s, error))
                        return FALSE;
                *out = g_variant_new_take_string(s);
                return TRUE;
        }
        if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) {
                c->p += 4;
                *out = g_variant_new_boolean(TRUE);
                return TRUE;
        }
        if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) {
                c->p += 5;
                *out = g_variant_new_boolean(FALSE);
                return TRUE;
        }
        if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
                c->p += 4;
                *out = g_variant_new_maybe(G_VARIANT_TYPE_VARIANT, NULL);
                return TRUE;
        }
        if (ch == '-' || g_ascii_isdigit(ch)) {
                const char *start = c->p;
                gboolean integral = TRUE;
                while (c->p < c->end && (g_ascii_isdigit(*c->p) || strchr("+-.eE", *c->p))) {
                        if (strchr(".eE", *c->p))
                                integral = FALSE;
                        c->p++;
                }
                g_autofree char *num = g_strndup(start, c->p - start);
                char *endp;
                if (integral) {
                        errno = 0;
                        gint64 v = g_ascii_strtoll(num, &endp, 10);
                        if (*endp == '\0' && errno != ERANGE) {
                                *out = g_variant_new_int64(v);
                                return TRUE;
                        }
                        /* Out of range (QMP may send uint64 values): fall back to double. */
                }
                double d = g_ascii_strtod(num, &endp);
                if (*endp != '\0')
                        return json_fail(error, c, "bad number");
                *out = g_variant_new_double(d);
                return TRUE;
        }
        return json_fail(error, c, "unexpected character");
}

/* text as one JSON value: TRUE with *out set (a full reference), or FALSE
 * with *error set. */
static gboolean json_parse(const char *text, GVariant **out, GError **error) {
        JCur c = { text, text + strlen(text) };
        g_autoptr(GVariant) v = NULL;
        if (!json_value(&c, 0, &v, error))
                return FALSE;
        g_variant_ref_sink(v);
        json_ws(&c);
        if (c.p != c.end)
                return json_fail(error, &c, "trailing data");
        *out = g_steal_pointer(&v);
        return TRUE;
}

/* ---- QEMU monitor ------------------------------------------------------------ */

GVariant *lv_guest_qmp(virDomainPtr dom, const char *command_json) {
        char *reply = NULL;
        if (virDomainQemuMonitorCommand(dom, command_json, &reply, 0) < 0)
                g_error("QMP %s on %s failed: %s", command_json, virDomainGetName(dom), virt_error());
        g_autoptr(GError) error = NULL;
        g_autoptr(GVariant) v = NULL;
        if (!json_parse(reply, &v, &error))
                g_error("cannot parse the QMP reply to %s (%s):\n%s", command_json, error->message, reply);
        GVariant *ret = g_variant_lookup_value(v, "return", NULL);
        if (ret == NULL)
                g_error("QMP %s returned no result:\n%s", command_json, reply);
        free(reply);
        return ret;
}

/* The query-block entry of the device whose id is alias (a virtio-blk-pci
 * device reports its backend, ".../alias/virtio-backend"). */
static GVariant *query_block_entry(virDomainPtr dom, const char *alias) {
        g_autoptr(GVariant) ret = lv_guest_qmp(dom, "{\"execute\":\"query-block\"}");
        g_autofree char *inner = g_strdup_printf("/%s/", alias);
        GVariantIter it;
        GVariant *item;
        g_variant_iter_init(&it, ret);
        while (g_variant_iter_next(&it, "v", &item)) {
                const char *qdev = NULL;
                if (g_variant_lookup(item, "qdev", "&s", &qdev) && (g_str_equal(qdev, alias) || strstr(qdev, inner)))
                        return item;
                g_variant_unref(item);
        }
        return NULL;
}

gint64 lv_guest_disk_size(virDomainPtr dom, const char *alias) {
        g_autoptr(GVariant) entry = query_block_entry(dom, alias);
        if (entry == NULL)
                return -1;
        g_autoptr(GVariant) inserted = g_variant_lookup_value(entry, "inserted", NULL);
        g_autoptr(GVariant) image = inserted ? g_variant_lookup_value(inserted, "image", NULL) : NULL;
        gint64 size = -1;
        if (image == NULL || !g_variant_lookup(image, "virtual-size", "x", &size))
                g_error("query-block: no virtual-size for %s", alias);
        return size;
}

char *lv_guest_device_property(virDomainPtr dom, const char *alias, const char *property) {
        if (strpbrk(alias, "\"\\") || strpbrk(property, "\"\\"))
                g_error("unsafe QOM name");
        g_autofree char *cmd = g_strdup_printf(
                "{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine/peripheral/%s\",\"property\":\"%s\"}}",
                alias, property);
        g_autoptr(GVariant) ret = lv_guest_qmp(dom, cmd);
        if (!g_variant_is_of_type(ret, G_VARIANT_TYPE_STRING))
                g_error("qom-get %s.%s is not a string", alias, property);
        return g_variant_dup_string(ret, NULL);
}

void lv_block_node_free(LvBlockNode *n) {
        if (n == NULL)
                return;
        g_free(n->node_name);
        g_free(n->drv);
        g_free(n->file);
        g_free(n);
}

GPtrArray *lv_guest_block_nodes(virDomainPtr dom) {
        g_autoptr(GVariant) ret =
                lv_guest_qmp(dom, "{\"execute\":\"query-named-block-nodes\",\"arguments\":{\"flat\":true}}");
        if (!g_variant_is_of_type(ret, G_VARIANT_TYPE("av")))
                g_error("query-named-block-nodes did not return an array");
        GPtrArray *nodes = g_ptr_array_new_with_free_func((GDestroyNotify) lv_block_node_free);
        GVariantIter it;
        GVariant *item;
        g_variant_iter_init(&it, ret);
        while (g_variant_iter_next(&it, "v", &item)) {
                LvBlockNode *n = g_new0(LvBlockNode, 1);
                if (!g_variant_lookup(item, "node-name", "s", &n->node_name) ||
                    !g_variant_lookup(item, "drv", "s", &n->drv))
                        g_error("query-named-block-nodes: an entry without node-name/drv");
                if (!g_variant_lookup(item, "file", "s", &n->file))
                        n->file = g_strdup("");
                g_ptr_array_add(nodes, n);
                g_variant_unref(item);
        }
        return nodes;
}

char *lv_guest_luks_node_for(virDomainPtr dom, const char *image_path) {
        g_autoptr(GPtrArray) nodes = lv_guest_block_nodes(dom);
        for (guint i = 0; i < nodes->len; i++) {
                LvBlockNode *n = nodes->pdata[i];
                /* The file of a luks node is its child's filename, or a json:{…}
     * pseudo-filename that contains it. */
                if (g_str_equal(n->drv, "luks") &&
                    (g_str_equal(n->file, image_path) || strstr(n->file, image_path) != NULL))
                        return g_strdup(n->node_name);
        }
        return NULL;
}

/* One qemu-io read check on one node; the verdict is read back from the log. */
static gboolean node_reads_pattern(virDomainPtr dom, const char *log_dir, const char *node, guint8 pattern, gsize len) {
        g_autofree char *log_path = g_strdup_printf("%s/%s.log", log_dir, virDomainGetName(dom));
        struct stat st;
        if (stat(log_path, &st) < 0)
                g_error("no QEMU log %s: %s", log_path, g_strerror(errno));
        goffset mark = st.st_size;

        g_autofree char *hmp =
                g_strdup_printf("qemu-io %s \"read -P 0x%02x 0 %" G_GSIZE_FORMAT "\"", node, pattern, len);
        char *reply = NULL;
        if (virDomainQemuMonitorCommand(dom, hmp, &reply, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) < 0)
                g_error("HMP '%s' failed: %s", hmp, virt_error());
        /* HMP's own errors (unknown node, …) come back in the reply; qemu-io's
   * output goes to QEMU's stdout, i.e. the log. */
        if (reply != NULL && reply[strspn(reply, " \r\n")] != '\0') {
                g_test_message("HMP '%s' replied: %s", hmp, reply);
                free(reply);
                return FALSE;
        }
        free(reply);

        g_autofree char *ok = g_strdup_printf("read %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT " bytes", len, len);
        gint64 deadline = g_get_monotonic_time() + LV_QEMU_IO_TIMEOUT_MS * 1000;
        for (;;) {
                g_autofree char *news = read_file_from(log_path, mark);
                /* qemu-io prints the mismatch before (or instead of) its summary line,
     * on the same stream, so seeing either line decides. */
                if (strstr(news, "Pattern verification failed") != NULL) {
                        g_test_message("node %s does not read pattern 0x%02x: %s", node, pattern, g_strstrip(news));
                        return FALSE;
                }
                if (strstr(news, "read failed") != NULL) {
                        g_test_message("node %s: read failed: %s", node, g_strstrip(news));
                        return FALSE;
                }
                if (strstr(news, ok) != NULL)
                        return TRUE;
                if (g_get_monotonic_time() >= deadline)
                        g_error("no qemu-io verdict in %s within %d ms after '%s' (new log text: '%s')", log_path,
                                LV_QEMU_IO_TIMEOUT_MS, hmp, news);
                g_usleep(10 * 1000);
        }
}

gboolean lv_guest_reads_pattern_logged(virDomainPtr dom, const char *log_dir, const char *node_name, guint8 pattern,
                                       gsize len) {
        if (node_name != NULL)
                return node_reads_pattern(dom, log_dir, node_name, pattern, len);

        g_autoptr(GPtrArray) nodes = lv_guest_block_nodes(dom);
        guint nluks = 0;
        for (guint i = 0; i < nodes->len; i++) {
                LvBlockNode *n = nodes->pdata[i];
                if (!g_str_equal(n->drv, "luks"))
                        continue;
                nluks++;
                if (node_reads_pattern(dom, log_dir, n->node_name, pattern, len))
                        return TRUE;
        }
        if (nluks == 0)
                g_test_message("guest %s has no block node with driver luks", virDomainGetName(dom));
        return FALSE;
}

gboolean lv_guest_reads_pattern_on(virDomainPtr dom, const char *node_name, guint8 pattern, gsize len) {
        return lv_guest_reads_pattern_logged(dom, "/var/log/libvirt/qemu", node_name, pattern, len);
}

gboolean lv_guest_reads_pattern_on_device(virDomainPtr dom, const char *log_dir, const char *file, guint8 pattern,
                                          gsize len) {
        g_autoptr(GPtrArray) nodes = lv_guest_block_nodes(dom);
        for (guint i = 0; i < nodes->len; i++) {
                LvBlockNode *n = nodes->pdata[i];
                if (g_strcmp0(n->file, file) == 0 && g_strcmp0(n->drv, "luks") != 0)
                        return lv_guest_reads_pattern_logged(dom, log_dir, n->node_name, pattern, len);
        }
        g_test_message("%s has no block node for %s", virDomainGetName(dom), file);
        return FALSE;
}

gboolean lv_guest_reads_pattern(virDomainPtr dom, guint8 pattern, gsize len) {
        return lv_guest_reads_pattern_on(dom, NULL, pattern, len);
}

/* ---- misbehaving neighbours ------------------------------------------------- */

GSubprocess *lv_spawn_ready(const char *const *argv) {
        g_autoptr(GError) error = NULL;
        GSubprocess *p = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
        g_assert_no_error(error);
        g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
        g_autofree char *line = g_data_input_stream_read_line(in, NULL, NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(line);
        return p;
}

GSubprocess *lv_hold_flock(const char *path) {
        g_autofree char *script = g_strdup_printf("import fcntl, os, time\n"
                                                  "fd = os.open('%s', os.O_RDONLY | os.O_CREAT, 0o600)\n"
                                                  "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                                                  "print('locked', flush=True)\n"
                                                  "time.sleep(600)\n",
                                                  path);
        const char *argv[] = { "/usr/bin/python3", "-c", script, NULL };
        return lv_spawn_ready(argv);
}

void lv_kill_wait(GSubprocess *p) {
        if (!p)
                return;
        g_subprocess_send_signal(p, SIGKILL);
        g_subprocess_wait(p, NULL, NULL);
        g_object_unref(p);
}

GSubprocess *lv_mount_hang_fuse(const char *script, const char *name, const char *backing, char **ret_dir) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
        char *dir = lv_sandbox_path(name);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        if (backing)
                g_subprocess_launcher_setenv(l, "HANG_FUSE_BACKING", backing, TRUE);
        const char *argv[] = { "/usr/bin/python3", script, dir, NULL };
        GSubprocess *fs = g_subprocess_launcher_spawnv(l, argv, &error);
        g_assert_no_error(error);

        g_autofree char *ready = g_build_filename(dir, backing ? "hang-write.img" : "eacces.img", NULL);
        for (int i = 0; i < 500 && !g_file_test(ready, G_FILE_TEST_EXISTS); i++)
                g_usleep(10 * 1000);
        if (!g_file_test(ready, G_FILE_TEST_EXISTS))
                g_error("hang-fuse.py did not mount %s", dir);
        *ret_dir = dir;
        return fs;
}

void lv_unmount_hang_fuse(GSubprocess *fs, const char *dir) {
        if (!fs)
                return;
        g_subprocess_send_signal(fs, SIGKILL);
        g_subprocess_wait(fs, NULL, NULL);
        (void) umount2(dir, MNT_DETACH);
        g_object_unref(fs);
}

char *lv_make_luks1_cryptsetup(const char *name, const char *passphrase, guint iterations, const char *const *extra) {
        g_autofree char *path = lv_sandbox_path(name);
        g_autofree char *iters = g_strdup_printf("%u", iterations);
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        g_assert_cmpint(fd, >=, 0);
        g_assert_no_errno(ftruncate(fd, 8 << 20));
        close(fd);
        for (const char *const *a =
                     (const char *const[]){ "cryptsetup", "luksFormat", "--type", "luks1", "--pbkdf-force-iterations",
                                            iters, "--batch-mode", "--key-file=-", NULL };
             *a; a++)
                g_ptr_array_add(argv, (char *) *a);
        for (; *extra; extra++)
                g_ptr_array_add(argv, (char *) *extra);
        g_ptr_array_add(argv, path);
        g_ptr_array_add(argv, NULL);
        g_autoptr(GSubprocess) p = g_subprocess_newv((const char *const *) argv->pdata,
                                                     G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                                             G_SUBPROCESS_FLAGS_STDERR_PIPE,
                                                     &error);
        g_assert_no_error(error);
        g_autoptr(GBytes) in = g_bytes_new(passphrase, strlen(passphrase));
        g_autoptr(GBytes) errb = NULL;
        g_assert_true(g_subprocess_communicate(p, in, NULL, NULL, &errb, &error));
        g_assert_no_error(error);
        if (!g_subprocess_get_successful(p))
                g_error("cryptsetup luksFormat %s failed: %.*s", path, (int) g_bytes_get_size(errb),
                        (const char *) g_bytes_get_data(errb, NULL));
        return g_steal_pointer(&path);
}

static void patch_bytes(const char *path, off_t off, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(pwrite(fd, data, len, off), ==, (ssize_t) len);
        g_assert_cmpint(fsync(fd), ==, 0);
        close(fd);
}

void lv_luks1_patch_cipher(const char *path, const char *name, const char *mode) {
        char buf[32];

        memset(buf, 0, sizeof buf);
        g_strlcpy(buf, name, sizeof buf);
        patch_bytes(path, 8, buf, sizeof buf);
        memset(buf, 0, sizeof buf);
        g_strlcpy(buf, mode, sizeof buf);
        patch_bytes(path, 40, buf, sizeof buf);
}

struct LvSwapper {
        int dir_fd;
        char *a, *b;
        gint stop;
        guint64 swaps;
        GThread *thread;
};

static gpointer swap_loop(gpointer data) {
        LvSwapper *s = data;
        guint32 seed = 0x9e3779b9;

        while (!g_atomic_int_get(&s->stop)) {
                if (syscall(SYS_renameat2, s->dir_fd, s->a, s->dir_fd, s->b, 2 /* RENAME_EXCHANGE */) < 0)
                        g_error("renameat2: %s", g_strerror(errno));
                s->swaps++;
                /* Each state for 20-300 µs: the daemon's and QEMU's opens
                 * each see one or the other. */
                seed = seed * 1664525 + 1013904223;
                g_usleep(20 + (seed >> 8) % 280);
        }
        struct stat st;
        if (fstatat(s->dir_fd, s->a, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                (void) syscall(SYS_renameat2, s->dir_fd, s->a, s->dir_fd, s->b, 2);
        return NULL;
}

LvSwapper *lv_swap_start(const char *dir, const char *a, const char *b) {
        LvSwapper *s = g_new0(LvSwapper, 1);

        s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(s->dir_fd, >=, 0);
        s->a = g_strdup(a);
        s->b = g_strdup(b);
        s->thread = g_thread_new("swap", swap_loop, s);
        return s;
}

guint64 lv_swap_stop(LvSwapper *s) {
        guint64 n;

        g_atomic_int_set(&s->stop, 1);
        g_thread_join(s->thread);
        close(s->dir_fd);
        n = s->swaps;
        g_free(s->a);
        g_free(s->b);
        g_free(s);
        return n;
}

/* ---- Ceph ---------------------------------------------------------------- */

char *lv_ceph_tool(const char *const *argv) {
        g_autoptr(GError) error = NULL;
        g_autofree char *out = NULL, *err = NULL;
        g_auto(GStrv) envp = g_environ_setenv(g_get_environ(), "CEPH_CONF", LV_CEPH_DIR "/ceph.conf", TRUE);
        int status = 0;

        if (!g_spawn_sync(NULL, (char **) argv, envp, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &error))
                g_error("%s: %s", argv[0], error->message);
        if (!g_spawn_check_wait_status(status, &error))
                g_error("%s %s: %s\n%s", argv[0], argv[1] ? argv[1] : "", error->message, err);
        return g_steal_pointer(&out);
}

void lv_ceph_define_secret(void) {
        lv_ceph_define_secret_on(lv_virt());
}

void lv_ceph_define_secret_on(virConnectPtr conn) {
        const char *get_key[] = { "ceph", "auth", "get-key", "client.admin", NULL };
        g_autofree char *key = lv_ceph_tool(get_key);
        gsize len = 0;
        g_autofree guchar *raw = g_base64_decode(g_strstrip(key), &len);
        virSecretPtr s = virSecretDefineXML(conn,
                                            "<secret ephemeral='no' private='yes'><uuid>" LV_CEPH_SECRET_UUID "</uuid>"
                                            "<usage type='ceph'><name>client.admin secret</name></usage></secret>",
                                            0);
        if (!s)
                g_error("cannot define the ceph secret: %s", virGetLastErrorMessage());
        g_assert_cmpint(virSecretSetValue(s, raw, len, 0), ==, 0);
        virSecretFree(s);
}
