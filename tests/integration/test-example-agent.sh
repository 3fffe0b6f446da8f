#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# examples/luksvolume-agent.py end to end on the real stack: the example
# (PyGObject/GDBus) → private system bus → the bus-activated daemon → polkitd
# → libvirtd → a TCG guest.  Runs inside tests/sandbox/sandbox.sh and speaks
# TAP (the plan comes last).
#
# Usage (inside the sandbox): test-example-agent.sh PATH-TO-AGENT [--tap]
#
# Proves that the example does what examples/README.md says: Probe, an
# asynchronous Attach with the passphrase through passphrase-fd (from a file
# and from stdin; a bus monitor shows the message's ay empty and the
# handle), that it follows its volume object (properties, the
# State=detaching change, InterfacesRemoved), that it detaches and leaves
# nothing behind (no volume object, no libvirt secret, no disk in the
# guest), that Ctrl-C during --hold detaches, its exit codes 3…6, and that
# it asks for interactive authorization exactly when it should, and that on
# a terminal an unprivileged user authenticates through the pkttyagent it
# starts (Probe, Attach, and Detach after a Ctrl-C).
#
# python3-gi is a declared dependency (tests/install-deps.sh): without it
# this test fails, it does not skip.

set -uo pipefail
# shellcheck source=../sandbox/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../sandbox/lib.sh"
# TAP plumbing: ok, not_ok, diag, check (and the counters n, failed).
# shellcheck source=../sandbox/tap.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../sandbox/tap.sh"

agent=${1:?usage: test-example-agent.sh PATH-TO-AGENT [--tap]}
[[ -r $agent ]] || { echo "Bail out! $agent is not readable"; exit 1; }
agent=$(realpath "$agent")
[[ -n ${LV_SANDBOX_DIR:-} && -n ${DBUS_SYSTEM_BUS_ADDRESS:-} ]] ||
        { echo "Bail out! not inside tests/sandbox/sandbox.sh"; exit 1; }

readonly GUEST=lvagent-guest
readonly PASS='agent test passphrase'
readonly LV_USER_UID=4201 LV_GROUP_GID=4200
# The agent's interpreter (its shebang): Debian's, which python3-gi is for.
readonly PYTHON=/usr/bin/python3
readonly VOLUME_RE='^/org/example/LuksVolume1/volume/[0-9a-f]{32}_sd[a-z]+$'
virsh=(virsh -q -c "${LV_LIBVIRT_URI:-qemu:///system}")
W=$LV_SANDBOX_DIR/agent
mkdir -p "$W"
cd "$W" || exit 1


finish() {
        "${virsh[@]}" destroy $GUEST >/dev/null 2>&1
        echo "1..$n"
        ((failed == 0))
        exit
}

# run NAME ARGS...: runs the agent with ARGS, stdout → NAME.out, stderr →
# NAME.err, status → $rc.  Its stdin is this script's unless redirected.
rc=0
run() {
        local name=$1; shift
        "$agent" "$@" >"$name.out" 2>"$name.err"
        rc=$?
}

# expect_rc WANT DESCRIPTION NAME: one test point: the run NAME exited WANT
# (and, when failing, explained itself on stderr with the agent's prefix).
expect_rc() {
        local want=$1 desc=$2 name=$3
        if ((rc == want)) && { ((want == 0)) || grep -q '^luksvolume-agent: ' "$name.err"; }; then
                ok "$desc (exit $rc)"
        else
                not_ok "$desc (exit $rc, want $want)"
                diag "$name.out" "$name.err"
        fi
}

# The daemon's volume objects, as busctl prints GetManagedObjects ("a{oa{sa{sv}}} 0"
# when there are none).  busctl (sd-bus), not GDBus: an independent client.
managed_objects() {
        busctl --system call org.example.LuksVolume1 /org/example/LuksVolume1 \
                org.freedesktop.DBus.ObjectManager GetManagedObjects
}

# has_object STRING: GetManagedObjects' output contains STRING.
has_object() { managed_objects | grep -qF -- "$1"; }

# Nothing left behind: no volume object, no libvirt secret, no disk in the
# guest.  Prints what it found on failure.
nothing_left() {
        local objs secrets disks
        objs=$(managed_objects 2>&1)
        secrets=$("${virsh[@]}" secret-list 2>&1)
        disks=$("${virsh[@]}" domblklist $GUEST 2>&1)
        if [[ $objs == 'a{oa{sa{sv}}} 0' && -z $secrets && -z $disks ]]; then
                return 0
        fi
        echo "# objects: $objs"
        echo "# secrets:"; diag <<<"$secrets"
        echo "# disks:"; diag <<<"$disks"
        return 1
}

# ──────────────────────────── prerequisites ──────────────────────────────

if $PYTHON -c 'import gi; gi.require_version("Gio", "2.0"); from gi.repository import Gio' 2>gi.err; then
        ok "python3-gi and Gio's typelib are installed"
else
        not_ok "python3-gi and Gio's typelib are installed (run tests/install-deps.sh)"
        diag gi.err
        finish
fi
if [[ -x $agent ]] && head -n1 "$agent" | grep -qx "#!$PYTHON"; then
        ok "the example is executable, with $PYTHON as its interpreter"
else
        not_ok "the example is executable, with $PYTHON as its interpreter"
        finish
fi

run help --help
check "--help exits 0 and shows the usage" \
        bash -c '(($1 == 0)) && grep -q "^usage: luksvolume-agent " help.out &&
                 grep -q -- "--passphrase-file" help.out' _ "$rc"
run usage --bus floppy $GUEST volume.img
expect_rc 2 "a bad --bus is a usage error" usage

# ─────────────────────────────── fixtures ────────────────────────────────

umask 077
printf '%s' "$PASS" >pass
printf '%s' "not $PASS" >wrongpass
lv_make_luks1_image volume.img pass ||
        { echo "Bail out! cryptsetup could not create the LUKS image"; exit 1; }
head -c 1M /dev/zero >plain.img
# QEMU runs as libvirt-qemu and must open the images.
chmod 0644 volume.img plain.img
chmod 0755 "$W"
umask 022

lv_start_guest "$GUEST" ||
        { echo "Bail out! virsh create failed"; exit 1; }

# ──────────────────── attach, follow, detach (root) ──────────────────────

# Watch the bus while the agent runs, to see what its Attach message carries.
busctl monitor --json=short org.example.LuksVolume1 >monitor.json 2>monitor.err &
mon_pid=$!
# The monitor is in place once it has seen a call (which also activates the
# daemon).
for ((i = 0; i < 100; i++)); do
        busctl call org.example.LuksVolume1 /org/example/LuksVolume1 org.example.LuksVolume1 \
                Probe 'sa{sv}' "" 0 >/dev/null 2>&1
        grep -q '"Probe"' monitor.json && break
        sleep 0.1
done

run main $GUEST "$W/volume.img" --bus scsi --passphrase-file pass --hold 1
kill $mon_pid
wait $mon_pid 2>/dev/null
expect_rc 0 "attach --bus scsi --passphrase-file, hold 1 s, detach" main
echo "# agent output:"
diag main.out main.err

vol=$(sed -n 's/^Volume: //p' main.out)
check "it printed the volume object path ($vol)" \
        bash -c '[[ $1 =~ $2 ]]' _ "$vol" "$VOLUME_RE"
check "it printed Probe's host facts" \
        bash -c 'grep -qx "Host:" main.out && grep -qx "  native-luks: yes" main.out &&
                 grep -qE "^  libvirt-version: [0-9]+\.[0-9]+" main.out'
check "it printed the volume's properties" \
        bash -c 'sed -n "/^Properties:/,/^[^ ]/p" main.out >props.txt
                 for want in "Domain: $1" "Source: $2" "Target: sda" "Bus: scsi" \
                             "Mode: native" "LuksVersion: 1" "ReadOnly: no" \
                             "State: attached" "MapperDevice: -"; do
                         grep -qx "  $want" props.txt || { echo "# missing: $want"; exit 1; }
                 done
                 grep -qE "^  SecretUUID: [0-9a-f-]{36}$" props.txt' _ $GUEST "$W/volume.img"
check "it followed PropertiesChanged: State=detaching" grep -qx "Changed: State=detaching" main.out
check "it saw InterfacesRemoved for its volume" grep -qx "Removed: $vol" main.out
# The order a reader of the output relies on.
check "events came in order: attached, held, detaching, removed, done" \
        bash -c 'diff <(grep -E "^(Volume|Holding|Detaching|Changed|Removed|Detached)" main.out |
                        sed -E "s/^(Volume|Holding|Detaching|Changed|Removed|Detached).*/\1/") \
                      <(printf "%s\n" Volume Holding Detaching Changed Removed Detached)'
check "nothing on stderr" test ! -s main.err
# The passphrase travelled as a file descriptor: the message's ay is empty,
# passphrase-fd is a handle, and the message body never held the secret.
check "on the bus, Attach carried an empty ay and passphrase-fd (h), not the passphrase" \
        $PYTHON -c '
import json, sys
attach = None
for line in open("monitor.json"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("member") == "Attach":
        attach = m
if attach is None:
    sys.exit("# no Attach message seen on the monitor")
body = attach["payload"]["data"]
ok = (attach["payload"]["type"] == "ssaya{sv}" and body[2] == []
      and body[3]["passphrase-fd"]["type"] == "h" and body[3]["bus"]["data"] == "scsi")
if not ok or sys.argv[1] in json.dumps(attach):
    sys.exit("# unexpected Attach: " + json.dumps(attach))
' "$PASS"
check "afterwards: no volume object, no libvirt secret, no disk in the guest" nothing_left

# ─────────────── passphrase on stdin, options, Ctrl-C (root) ─────────────

"$agent" $GUEST "$W/volume.img" --target sdc --read-only --hold 600 \
        <pass >stdin.out 2>stdin.err &
agent_pid=$!
for ((i = 0; i < 600; i++)); do
        grep -q '^Holding' stdin.out 2>/dev/null && break
        kill -0 $agent_pid 2>/dev/null || break
        sleep 0.1
done
check "passphrase from stdin: attached and holding" grep -q '^Holding' stdin.out
check "--target sdc --read-only reached the volume (Target sdc, Bus scsi, ReadOnly yes)" \
        bash -c 'grep -qx "  Target: sdc" stdin.out && grep -qx "  Bus: scsi" stdin.out &&
                 grep -qx "  ReadOnly: yes" stdin.out'
check "while held, the volume object exists" has_object '_sdc"'
kill -INT $agent_pid
wait $agent_pid
rc=$?
expect_rc 0 "SIGINT during --hold detaches and exits 0" stdin
check "it said so and saw the removal" \
        bash -c 'grep -qx "Interrupted: detaching now." stdin.out &&
                 grep -qx "Changed: State=detaching" stdin.out && grep -q "^Removed: " stdin.out'
check "afterwards: nothing left" nothing_left

# ──────────────────────────────── errors ─────────────────────────────────

run wrong $GUEST "$W/volume.img" --bus scsi --passphrase-file wrongpass --no-ask-password
expect_rc 4 "a wrong passphrase" wrong
check "the message names Error.BadPassphrase" \
        grep -q 'Attach failed: .*(org.example.LuksVolume1.Error.BadPassphrase)$' wrong.err
check "after a wrong passphrase: nothing left" nothing_left

run nodom no-such-guest "$W/volume.img" --passphrase-file pass --no-ask-password
expect_rc 5 "a domain that does not exist" nodom
run notluks $GUEST plain.img --bus scsi --passphrase-file pass --no-ask-password
expect_rc 6 "a source without a LUKS header (relative path made absolute)" notluks
run empty $GUEST "$W/volume.img" --passphrase-file /dev/null
expect_rc 2 "an empty passphrase is refused before any call" empty
check "after the errors: nothing left" nothing_left

# ───────────────────────────── authorization ─────────────────────────────

# The unprivileged user must be able to run the agent; a checkout under a
# 0700 home would not let it, so fall back to a copy.
user_agent=$agent
if ! setpriv --reuid=$LV_USER_UID --regid=$LV_GROUP_GID --clear-groups test -r "$agent" 2>/dev/null; then
        user_agent=$W/luksvolume-agent.py
        cp "$agent" "$user_agent" && chmod 0755 "$user_agent"
fi
# The passphrase file is root's (0600): give it through stdin, as a user
# would pipe it in.
as_user() {
        setpriv --reuid=$LV_USER_UID --regid=$LV_GROUP_GID --clear-groups \
                "$user_agent" "$@" <pass
}

as_user $GUEST "$W/volume.img" --bus scsi --no-ask-password >user.out 2>user.err
rc=$?
expect_rc 3 "uid $LV_USER_UID with --no-ask-password is not authorized" user
check "… because polkit would need interaction it was not allowed" \
        grep -q '(org.freedesktop.DBus.Error.InteractiveAuthorizationRequired)$' user.err
check "… and the hint tells what to do" grep -q '^luksvolume-agent: Hint: ' user.err

# Without --no-ask-password the agent sets ALLOW_INTERACTIVE_AUTHORIZATION;
# with no polkit authentication agent registered the daemon then answers
# AccessDenied instead: the difference shows the flag was sent.
as_user $GUEST "$W/volume.img" --bus scsi >user2.out 2>user2.err
rc=$?
expect_rc 3 "uid $LV_USER_UID allowing interaction, without an authentication agent" user2
check "… gets AccessDenied: the call carried ALLOW_INTERACTIVE_AUTHORIZATION" \
        grep -q '(org.freedesktop.DBus.Error.AccessDenied)$' user2.err
check "after the refusals: nothing left" nothing_left

# ───────────────── interactive authorization on a terminal ─────────────────

# A user whom polkit lets in after authenticating as themselves, with a
# password that exists only in this sandbox's mount namespace; the agent
# runs on a pseudo-terminal, starts pkttyagent for itself, and the "user"
# types the password at each prompt (Probe, Attach, Detach).  The Detach
# follows a Ctrl-C during --hold, which the terminal delivers to pkttyagent
# too: it must survive that to ask for the Detach.
readonly USER_PASSWORD='lvuser sandbox password'
hash=$($PYTHON -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))' \
        "$USER_PASSWORD")
cp /etc/shadow shadow
echo "lvuser:$hash:19000:0:99999:7:::" >>shadow
chown root:shadow shadow && chmod 0640 shadow
mount -n --bind shadow /etc/shadow
cat >"$LV_POLKIT_RULES_DIR/50-lvuser-auth-self.rules" <<'RULES'
polkit.addRule(function(action, subject) {
  if (action.id.indexOf("org.example.luksvolume1.") == 0 && subject.user == "lvuser")
    return polkit.Result.AUTH_SELF;
});
RULES
cp pass userpass && chown $LV_USER_UID userpass
# tty-driver.py PASSWORD CMD...: runs CMD on a new pseudo-terminal, copies what it
# shows to stdout, answers every "Password:" prompt, types Ctrl-C once when
# "Holding" appears, and exits with CMD's status.
cat >tty-driver.py <<'PY'
import os, pty, select, sys, time
password, cmd = sys.argv[1].encode(), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
seen, answered, interrupted = b"", 0, False
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if not select.select([fd], [], [], 0.5)[0]:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:         # EIO: the terminal's last user closed it
        break
    if not data:
        break
    seen += data
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    if b"Holding" in seen and not interrupted:
        interrupted = True
        time.sleep(0.5)
        os.write(fd, b"\x03")    # the terminal turns it into SIGINT
    if seen.count(b"Password:") > answered:
        answered += 1
        time.sleep(0.3)     # let it turn echo off (which flushes input) first
        os.write(fd, password + b"\n")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
PY
# Only the rules file must be watched: polkitd reloads it on change.
sleep 1
timeout 180 setpriv --reuid=$LV_USER_UID --regid=$LV_GROUP_GID --clear-groups \
        $PYTHON tty-driver.py "$USER_PASSWORD" "$user_agent" $GUEST "$W/volume.img" --bus scsi \
        --passphrase-file userpass --hold 60 >tty.out 2>tty.err
rc=$?
tr -d '\r' <tty.out | sed 's/\x1b\[[0-9;]*m//g' >tty.txt
echo "# terminal:"
diag tty.txt tty.err
expect_rc 0 "on a terminal, uid $LV_USER_UID authenticates through pkttyagent (Ctrl-C during --hold)" tty
check "pkttyagent asked for Probe, Attach and Detach, and each succeeded" \
        bash -c 'for a in probe attach detach; do
                         grep -qx "==== AUTHENTICATING FOR org.example.luksvolume1.$a ====" tty.txt || exit 1
                 done
                 (($(grep -cx "==== AUTHENTICATION COMPLETE ====" tty.txt) == 3))'
check "… and the agent attached, was interrupted, detached and saw its volume go" \
        bash -c 'grep -q "^Volume: /org/example/" tty.txt && grep -q "Interrupted: detaching now." tty.txt &&
                 grep -qx "Changed: State=detaching" tty.txt &&
                 grep -q "^Removed: " tty.txt && grep -qx "Detached." tty.txt'
check "the agent ended its pkttyagent" bash -c '! pgrep -x pkttyagent >/dev/null'
check "after the interactive run: nothing left" nothing_left

finish
