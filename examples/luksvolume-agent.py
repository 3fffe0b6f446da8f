#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# luksvolume-agent: an example client of luksvolumed (org.example.LuksVolume1)
# written with PyGObject's GDBus bindings (Debian: python3-gi,
# gir1.2-glib-2.0).
#
# It shows, in one small program, what a well-behaved client does:
#
#   1. connects to the system bus (GDBus honours DBUS_SYSTEM_BUS_ADDRESS);
#   2. calls Probe("") and prints the host facts;
#   3. calls Attach *asynchronously*, handing the passphrase over through a
#      pipe as the `passphrase-fd` (h) option with an empty `ay`, so that the
#      secret is never in argv, the environment or a D-Bus message body;
#   4. allows interactive polkit authorization unless --no-ask-password,
#      and on a terminal starts pkttyagent for itself so that polkit can
#      ask for a password there (as systemd's tools do);
#   5. follows its volume object: PropertiesChanged on the object,
#      InterfacesRemoved on the ObjectManager;
#   6. detaches the volume after --hold seconds and waits until the object is
#      really gone;
#   7. maps D-Bus errors to the exit codes luksvolumectl uses.
#
# Everything runs from one GLib main loop: each step is started by the
# completion callback of the previous one, so the program never blocks while
# the daemon spends the key derivation time or while polkit waits for a
# password.
#
# The shebang names Debian's interpreter on purpose: python3-gi is installed
# for /usr/bin/python3, and a python3 found first on PATH (a virtualenv,
# pyenv) would not have it.

import argparse
import getpass
import os
import select
import shutil
import signal
import subprocess
import sys

import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402 (needs require_version first)

PROG = "luksvolume-agent"

BUS_NAME = "org.example.LuksVolume1"
MANAGER_PATH = "/org/example/LuksVolume1"
MANAGER_IFACE = "org.example.LuksVolume1"
VOLUME_IFACE = "org.example.LuksVolume1.Volume"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"

# The daemon's own limit; checking it here gives a clear message instead of
# an InvalidArgs round trip.  It also keeps the whole passphrase within one
# pipe buffer (64 KiB on Linux), so writing it can never block.
MAX_PASSPHRASE = 8192

# Attach spends the volume's PBKDF time inside QEMU and may wait for a polkit
# dialog; Detach may wait for the guest.  D-Bus's default 25 s is too short
# for either, so use luksvolumectl's 5 minutes.
CALL_TIMEOUT_MS = 5 * 60 * 1000

# After a successful Detach the InterfacesRemoved signal is normally already
# here (the daemon emits it before it replies); this is only a safety net.
REMOVAL_TIMEOUT_S = 10

# Exit codes, the same as luksvolumectl's (see README.md, "Exit status").
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_ARGS = 2
EXIT_NOT_AUTHORIZED = 3
EXIT_BAD_PASSPHRASE = 4
EXIT_NOT_FOUND = 5
EXIT_NOT_SUPPORTED = 6
EXIT_BUSY = 7

_ERR = "org.example.LuksVolume1.Error."
_DBUS_ERR = "org.freedesktop.DBus.Error."
ERROR_EXIT_CODES = {
    _DBUS_ERR + "InvalidArgs": EXIT_INVALID_ARGS,
    _DBUS_ERR + "AccessDenied": EXIT_NOT_AUTHORIZED,
    _DBUS_ERR + "InteractiveAuthorizationRequired": EXIT_NOT_AUTHORIZED,
    _ERR + "BadPassphrase": EXIT_BAD_PASSPHRASE,
    _ERR + "NoSuchDomain": EXIT_NOT_FOUND,
    _ERR + "DomainNotRunning": EXIT_NOT_FOUND,
    _ERR + "NoSuchVolume": EXIT_NOT_FOUND,
    _DBUS_ERR + "UnknownObject": EXIT_NOT_FOUND,
    _DBUS_ERR + "UnknownInterface": EXIT_NOT_FOUND,
    _ERR + "NotSupported": EXIT_NOT_SUPPORTED,
    _ERR + "NotLuks": EXIT_NOT_SUPPORTED,
    _DBUS_ERR + "UnknownMethod": EXIT_NOT_SUPPORTED,
    _ERR + "Busy": EXIT_BUSY,
    _ERR + "AlreadyAttached": EXIT_BUSY,
    _ERR + "TargetInUse": EXIT_BUSY,
}
# Everything else (Error.Failed, ServiceUnknown, NoReply, timeouts, ...)
# is a plain failure.

# Probe's documented host facts and the volume properties, printed in this
# (the API's) order; unknown keys follow alphabetically.
HOST_FACTS = ("version", "libvirt-version", "hypervisor",
              "hypervisor-version", "native-luks", "dm-crypt")
VOLUME_PROPERTIES = ("Domain", "DomainUUID", "Source", "Target", "Bus",
                     "Mode", "SecretUUID", "MapperDevice", "LuksVersion",
                     "LuksUUID", "ReadOnly", "State")

# How long pkttyagent may take to register with polkitd.
TTY_AGENT_TIMEOUT_S = 10


class UsageError(Exception):
    """A problem with what we were asked to do, found before any call."""


def describe_error(error):
    """Return (exit code, D-Bus error name or None, message) for a GLib.Error.

    GDBus turns a remote error into a GLib.Error whose message starts with
    "GDBus.Error:NAME: "; the name is what a program should look at, never
    the text.  Errors raised locally by GDBus (no bus, timeouts) carry no
    name.
    """
    name = Gio.DBusError.get_remote_error(error)
    message = error.message
    if name:
        # Gio.DBusError.strip_remote_error() edits a C copy that PyGObject
        # does not hand back, so strip the prefix here.
        prefix = "GDBus.Error:%s: " % name
        if message.startswith(prefix):
            message = message[len(prefix):]
    return ERROR_EXIT_CODES.get(name, EXIT_FAILURE), name, message


def format_value(value):
    """Show a property or Probe value the way luksvolumectl does."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == "":
        return "-"
    return str(value)


def print_dict(values, order=()):
    """Print an a{sv} (already unpacked) as indented key: value lines."""
    keys = [k for k in order if k in values]
    keys += sorted(k for k in values if k not in order)
    for key in keys:
        print("  %s: %s" % (key, format_value(values[key])))


def read_passphrase(args):
    """Return the passphrase as a bytearray (so that it can be wiped).

    Like luksvolumectl: a file (or "-" for stdin) is used verbatim, trailing
    newline included, as cryptsetup's --key-file does; a terminal gets a
    prompt without echo.  The passphrase never comes from the command line:
    argv is readable by every user through /proc.
    """
    name = args.passphrase_file
    if name is None or name == "-":
        if sys.stdin.isatty():
            if name == "-":
                raise UsageError("refusing to read a passphrase from a "
                                 "terminal with --passphrase-file - "
                                 "(it would echo); leave the option out "
                                 "to be prompted")
            if args.no_ask_password:
                raise UsageError("no passphrase: give --passphrase-file, "
                                 "pipe it to stdin, or drop "
                                 "--no-ask-password to be prompted")
            # getpass() turns echo off and restores it on every exit path,
            # Ctrl-C included.
            text = getpass.getpass("Passphrase for %s: " % args.source)
            data = bytearray(text.encode())
            del text
        else:
            data = bytearray(sys.stdin.buffer.read(MAX_PASSPHRASE + 1))
    else:
        try:
            with open(name, "rb", buffering=0) as f:
                data = bytearray(f.read(MAX_PASSPHRASE + 1))
        except OSError as e:
            # An unreadable file is a failure (1), as for luksvolumectl.
            raise OSError("cannot read passphrase file %s: %s"
                          % (name, e.strerror)) from None
    if not data:
        raise UsageError("the passphrase is empty")
    if len(data) > MAX_PASSPHRASE:
        wipe(data)
        raise UsageError("the passphrase is longer than %d bytes"
                         % MAX_PASSPHRASE)
    return data


def wipe(buf):
    """Overwrite a bytearray in place.

    Best effort: Python may have made copies we cannot reach (a str from
    getpass, I/O buffers).  A program for which that matters should be
    written in C, like luksvolumectl; the point here is the transport.
    """
    buf[:] = bytes(len(buf))


def passphrase_pipe(passphrase):
    """Put the passphrase into a fresh pipe and return its read end.

    The daemon reads the fd until EOF, so the write end must be closed
    before the call is sent; the data sits in the pipe buffer meanwhile.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        view = memoryview(passphrase)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


class Agent:
    """The whole run: Probe, Attach, follow, hold, Detach, as callbacks."""

    def __init__(self, args, passphrase):
        self.args = args
        self.passphrase = passphrase
        self.loop = GLib.MainLoop()
        self.exit_code = EXIT_FAILURE
        self.conn = None
        self.manager = None
        self.volume = None           # object path once attached
        self.subscriptions = []
        self.hold_source = None
        self.removal_source = None
        self.interrupted = False     # SIGINT/SIGTERM seen
        self.attaching = False       # an Attach call is in flight
        self.detaching = False       # a Detach call is in flight or done
        self.detach_done = False     # Detach replied successfully
        self.removed = False         # InterfacesRemoved seen for our volume

        # Allowing interaction lets polkit ask for a password through an
        # authentication agent registered for us (see examples/README.md).
        # Without the flag, a call that needs authentication fails at once
        # with InteractiveAuthorizationRequired, which is what scripts want.
        flags = Gio.DBusCallFlags.NONE
        if not args.no_ask_password:
            flags |= Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION
        self.call_flags = flags

    # ---------------------------------------------------------------- run

    def run(self):
        # Ctrl-C must not kill us half-way with the volume still attached:
        # handle the signals in the main loop and detach instead.
        for signum in (signal.SIGINT, signal.SIGTERM):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum,
                                 self.on_signal, signum)
        try:
            # Connecting is local and quick: no need to make it async.
            self.conn = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
        except GLib.Error as e:
            self.fail("cannot connect to the system bus", e)
            return self.exit_code

        self.subscribe_removals()
        # A proxy for the manager only: the daemon's methods are all we call
        # on it, so skip loading properties and subscribing to its signals.
        # Not setting DO_NOT_AUTO_START lets the bus activate the daemon.
        self.manager = Gio.DBusProxy.new_sync(
            self.conn,
            Gio.DBusProxyFlags.DO_NOT_LOAD_PROPERTIES
            | Gio.DBusProxyFlags.DO_NOT_CONNECT_SIGNALS,
            None, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, None)

        GLib.idle_add(self.probe)
        self.loop.run()
        for sub in self.subscriptions:
            self.conn.signal_unsubscribe(sub)
        return self.exit_code

    def finish(self, code):
        self.exit_code = code
        self.loop.quit()

    def fail(self, what, error):
        code, name, message = describe_error(error)
        if name:
            print("%s: %s: %s (%s)" % (PROG, what, message, name),
                  file=sys.stderr)
        else:
            print("%s: %s: %s" % (PROG, what, message), file=sys.stderr)
        if code == EXIT_NOT_AUTHORIZED:
            print("%s: Hint: run as root, or from a terminal with a polkit "
                  "authentication agent (see examples/README.md) and "
                  "without --no-ask-password" % PROG, file=sys.stderr)
        self.finish(code)

    def on_signal(self, signum):
        self.interrupted = True
        if self.volume and not self.detaching:
            print("Interrupted: detaching now.", flush=True)
            self.cancel_hold()
            self.detach()
        elif self.attaching:
            # The daemon cannot be stopped half-way through an attach, and
            # leaving now would leave the volume attached: detach once the
            # attach completes (see on_properties).
            print("Interrupted: will detach as soon as the attach completes.",
                  flush=True)
        elif not self.volume:
            self.finish(128 + signum)
        # else: a Detach is already under way; let it finish.
        return GLib.SOURCE_CONTINUE

    # -------------------------------------------------------------- Probe

    def probe(self):
        self.manager.call(
            "Probe", GLib.Variant("(sa{sv})", ("", {})), self.call_flags,
            CALL_TIMEOUT_MS, None, self.on_probed)
        return GLib.SOURCE_REMOVE

    def on_probed(self, proxy, result):
        try:
            (info,) = proxy.call_finish(result).unpack()
        except GLib.Error as e:
            self.fail("Probe failed", e)
            return
        print("Host:")
        print_dict(info, HOST_FACTS)
        if self.interrupted:
            self.finish(EXIT_FAILURE)
        else:
            self.attach()

    # ------------------------------------------------------------- Attach

    def attach(self):
        args = self.args
        options = {}
        if args.target:
            options["target"] = GLib.Variant("s", args.target)
        if args.bus:
            options["bus"] = GLib.Variant("s", args.bus)
        if args.mode:
            options["mode"] = GLib.Variant("s", args.mode)
        if args.read_only:
            options["read-only"] = GLib.Variant("b", True)

        # The passphrase goes into a pipe; the message carries only the
        # pipe's read end (an index into the message's fd list) and an empty
        # `ay`, so the secret never sits in a D-Bus message that the bus,
        # a monitor or a core dump could show.
        try:
            read_fd = passphrase_pipe(self.passphrase)
        except OSError as e:
            print("%s: cannot create a pipe: %s" % (PROG, e.strerror),
                  file=sys.stderr)
            self.finish(EXIT_FAILURE)
            return
        finally:
            wipe(self.passphrase)
        fd_list = Gio.UnixFDList.new()
        # append() duplicates the fd; the list closes its copy when it is
        # freed, and we close ours right away.
        index = fd_list.append(read_fd)
        os.close(read_fd)
        options["passphrase-fd"] = GLib.Variant("h", index)

        print("Attaching %s to %s..." % (args.source, args.domain), flush=True)
        self.attaching = True
        self.manager.call_with_unix_fd_list(
            "Attach",
            GLib.Variant("(ssaya{sv})",
                         (args.domain, args.source, b"", options)),
            self.call_flags, CALL_TIMEOUT_MS, fd_list, None, self.on_attached)

    def on_attached(self, proxy, result):
        self.attaching = False
        try:
            reply, _ = proxy.call_with_unix_fd_list_finish(result)
        except GLib.Error as e:
            self.fail("Attach failed", e)
            return
        (self.volume,) = reply.unpack()
        print("Volume: %s" % self.volume, flush=True)

        # Follow the object.  The subscription's AddMatch goes out before
        # any Detach we send later, and the bus handles one connection's
        # messages in order, so no State change can be missed.
        self.subscriptions.append(self.conn.signal_subscribe(
            BUS_NAME, PROPERTIES_IFACE, "PropertiesChanged", self.volume,
            VOLUME_IFACE, Gio.DBusSignalFlags.NONE,
            self.on_properties_changed))

        self.conn.call(
            BUS_NAME, self.volume, PROPERTIES_IFACE, "GetAll",
            GLib.Variant("(s)", (VOLUME_IFACE,)),
            GLib.VariantType.new("(a{sv})"), Gio.DBusCallFlags.NONE,
            -1, None, self.on_properties)

    def on_properties(self, conn, result):
        try:
            (props,) = conn.call_finish(result).unpack()
        except GLib.Error as e:
            # Not fatal: the volume is attached and must still be detached.
            code, name, message = describe_error(e)
            print("%s: cannot read the volume's properties: %s"
                  % (PROG, message), file=sys.stderr)
        else:
            print("Properties:")
            print_dict(props, VOLUME_PROPERTIES)
        if self.removed:
            return              # on_interfaces_removed has finished the run
        if self.interrupted:
            self.detach()
        elif self.args.hold > 0:
            print("Holding for %g s (Ctrl-C detaches now)..." % self.args.hold,
                  flush=True)
            self.hold_source = GLib.timeout_add(
                int(self.args.hold * 1000), self.on_hold_over)
        else:
            self.detach()

    def on_hold_over(self):
        self.hold_source = None
        self.detach()
        return GLib.SOURCE_REMOVE

    def cancel_hold(self):
        if self.hold_source is not None:
            GLib.source_remove(self.hold_source)
            self.hold_source = None

    # ------------------------------------------------------------ signals

    def subscribe_removals(self):
        # Subscribed before Attach: the volume can vanish at any time
        # (the guest stops, someone else detaches it), not just after our
        # own Detach.  arg0 would be the object path, but it is not known
        # yet, so filter in the callback.
        self.subscriptions.append(self.conn.signal_subscribe(
            BUS_NAME, OBJECT_MANAGER_IFACE, "InterfacesRemoved", MANAGER_PATH,
            None, Gio.DBusSignalFlags.NONE, self.on_interfaces_removed))

    def on_properties_changed(self, conn, sender, path, iface, signal_name,
                              params):
        _, changed, invalidated = params.unpack()
        for name, value in changed.items():
            print("Changed: %s=%s" % (name, format_value(value)), flush=True)
        for name in invalidated:
            print("Changed: %s (invalidated)" % name, flush=True)

    def on_interfaces_removed(self, conn, sender, path, iface, signal_name,
                              params):
        obj, interfaces = params.unpack()
        if obj != self.volume or VOLUME_IFACE not in interfaces:
            return
        self.removed = True
        print("Removed: %s" % obj, flush=True)
        if self.detach_done:
            self.done()
        elif not self.detaching:
            # Gone without our Detach: the guest stopped, or another client
            # detached it.  The daemon has cleaned up; nothing left to do.
            self.cancel_hold()
            print("%s: the volume was removed before we detached it "
                  "(guest stopped?)" % PROG, file=sys.stderr)
            self.finish(EXIT_FAILURE)
        # else: our Detach is still in flight; on_detached finishes.

    # ------------------------------------------------------------- Detach

    def detach(self):
        if self.detaching:
            return
        self.detaching = True
        options = {}
        timeout_ms = CALL_TIMEOUT_MS
        if self.args.detach_timeout is not None:
            options["timeout"] = GLib.Variant("u", self.args.detach_timeout)
            # The daemon may wait that long for the guest; leave room.
            timeout_ms = max(timeout_ms,
                             (self.args.detach_timeout + 60) * 1000)
        print("Detaching %s..." % self.volume, flush=True)
        self.manager.call(
            "Detach", GLib.Variant("(oa{sv})", (self.volume, options)),
            self.call_flags, timeout_ms, None, self.on_detached)

    def on_detached(self, proxy, result):
        try:
            proxy.call_finish(result)
        except GLib.Error as e:
            if self.removed:
                # It went away by itself while we asked; fine.
                self.done()
                return
            # Busy: the guest has not released the disk; the object stays
            # with State=detaching and a later Detach finishes the job.
            self.fail("Detach failed", e)
            return
        self.detach_done = True
        if self.removed:
            self.done()
        else:
            self.removal_source = GLib.timeout_add_seconds(
                REMOVAL_TIMEOUT_S, self.on_removal_timeout)

    def on_removal_timeout(self):
        print("%s: Detach succeeded but no InterfacesRemoved arrived within "
              "%d s" % (PROG, REMOVAL_TIMEOUT_S), file=sys.stderr)
        self.removal_source = None
        self.finish(EXIT_FAILURE)
        return GLib.SOURCE_REMOVE

    def done(self):
        if self.removal_source is not None:
            GLib.source_remove(self.removal_source)
            self.removal_source = None
        print("Detached.", flush=True)
        # Interrupted runs still report that the cleanup worked.
        self.finish(EXIT_OK)


def start_tty_agent():
    """Start pkttyagent for this process; return it, or None.

    polkit asks for a password through an authentication agent registered
    either for the caller's login session (a desktop's agent) or for the
    calling process itself.  A terminal program cannot count on the first,
    so, like systemctl, it registers a text agent for its own process.  The
    subject is "PID,START-TIME": a bare PID could be recycled (pkttyagent(1)).

    No --fallback, deliberately: polkitd uses a fallback agent only for a
    caller inside a logind session, so with it an ssh login without
    pam_systemd, su or a container would get no prompt at all.  Without it
    this agent also takes precedence over a desktop's for this process,
    which suits a program run from a terminal.
    """
    path = shutil.which("pkttyagent")
    if path is None:
        return None
    with open("/proc/self/stat") as f:
        # Field 22, counted after the parenthesised command name, which may
        # itself contain spaces and parentheses.
        start_time = f.read().rsplit(")", 1)[1].split()[19]
    # pkttyagent closes --notify-fd once polkitd has accepted it: waiting
    # for EOF on that pipe waits exactly until prompts can work.
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    # Ctrl-C reaches the whole foreground process group.  This program
    # answers it by detaching, and that Detach may need a password again:
    # so pkttyagent must survive it.  An ignored signal stays ignored
    # across exec; we are still single-threaded here, so flipping our own
    # disposition around the fork is safe.
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        agent = subprocess.Popen(
            [path, "--notify-fd", str(write_fd),
             "--process", "%d,%s" % (os.getpid(), start_time)],
            pass_fds=(write_fd,))
    except OSError as e:
        os.close(read_fd)
        print("%s: cannot start pkttyagent: %s" % (PROG, e.strerror),
              file=sys.stderr)
        return None
    finally:
        signal.signal(signal.SIGINT, old_sigint)
        os.close(write_fd)
    try:
        # EOF (readable) comes when pkttyagent registers or dies; the
        # timeout only guards against a polkitd that does not answer.
        if not select.select([read_fd], [], [], TTY_AGENT_TIMEOUT_S)[0]:
            print("%s: pkttyagent did not register within %d s; continuing "
                  "without it" % (PROG, TTY_AGENT_TIMEOUT_S), file=sys.stderr)
    finally:
        os.close(read_fd)
    if agent.poll() is not None:
        # It prints its own diagnostics (exit 127: could not register).
        return None
    return agent


def stop_tty_agent(agent):
    """pkttyagent never exits by itself (pkttyagent(1)): end it."""
    if agent is not None:
        agent.terminate()
        try:
            agent.wait(timeout=5)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Attach a LUKS volume to a running libvirt guest through "
                    "luksvolumed, follow its volume object, then detach it. "
                    "An example client of the org.example.LuksVolume1 D-Bus "
                    "API.",
        epilog="The passphrase is read from --passphrase-file, from stdin "
               "when it is not a terminal, or else from a prompt without "
               "echo; it reaches the daemon through a pipe. Exit status: "
               "0 ok, 1 failure, 2 invalid arguments, 3 not authorized, "
               "4 bad passphrase, 5 not found, 6 not supported or not LUKS, "
               "7 busy or in use.")
    parser.add_argument("domain", metavar="DOMAIN",
                        help="libvirt name or UUID of a running guest")
    parser.add_argument("source", metavar="SOURCE",
                        help="LUKS image file or block device")
    parser.add_argument("--bus", choices=("virtio", "scsi", "sata", "usb"),
                        help="guest disk bus (default: the daemon's, virtio)")
    parser.add_argument("--target", metavar="DEV",
                        help="guest device name, e.g. vdb or sdc "
                             "(default: the first free one)")
    parser.add_argument("--mode", choices=("auto", "native", "cryptsetup"),
                        help="how to decrypt (default: auto)")
    parser.add_argument("--read-only", action="store_true",
                        help="attach read-only")
    parser.add_argument("--passphrase-file", metavar="FILE",
                        help="read the passphrase from FILE, verbatim "
                             "(trailing newline included); - for stdin")
    parser.add_argument("--hold", metavar="SECONDS", type=float, default=0,
                        help="keep the volume attached this long before "
                             "detaching (default: 0); Ctrl-C cuts it short")
    parser.add_argument("--detach-timeout", metavar="SECONDS", type=int,
                        help="how long the daemon waits for the guest to "
                             "release the disk (default: the daemon's, 30)")
    parser.add_argument("--no-ask-password", action="store_true",
                        help="never prompt: neither for the passphrase nor "
                             "for polkit authentication")
    args = parser.parse_args(argv)
    if not args.hold >= 0 or args.hold > 10**6:   # also rejects nan
        parser.error("--hold must be a number of seconds from 0 to 1000000")
    timeout = args.detach_timeout
    if timeout is not None and not 0 <= timeout <= 3600:
        parser.error("--detach-timeout must be from 0 to 3600")
    # The daemon wants an absolute path and runs in "/": resolve a relative
    # one against our working directory, as the user means it.
    args.source = os.path.abspath(args.source)
    return args


def main(argv):
    args = parse_args(argv)
    try:
        passphrase = read_passphrase(args)
    except UsageError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return EXIT_INVALID_ARGS
    except (OSError, EOFError) as e:
        print("%s: %s" % (PROG, str(e) or "no passphrase"), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 128 + signal.SIGINT
    tty_agent = None
    if not args.no_ask_password and sys.stdin.isatty():
        tty_agent = start_tty_agent()
    try:
        return Agent(args, passphrase).run()
    finally:
        stop_tty_agent(tty_agent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
