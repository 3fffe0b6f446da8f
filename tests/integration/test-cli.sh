#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# luksvolumectl end to end on the real stack: the built client → private
# system bus → the bus-activated daemon → polkitd → libvirtd → a TCG guest.
# Runs inside tests/sandbox/sandbox.sh and speaks TAP (the plan comes last).
#
# Usage (inside the sandbox): test-cli.sh PATH-TO-LUKSVOLUMECTL [--tap]
#
# Covers: probe/list/status as text and --json (parsed with python3),
# attach with --passphrase-file, detach by DOMAIN:TARGET, monitor (text and
# --json) in the background across an attach and a detach, the passphrase
# commands (files and the prompt on a pseudo-terminal), the documented
# exit codes 2…7 (3 through polkit for an unprivileged uid), and --host
# failing cleanly without a reachable host.

set -uo pipefail
# shellcheck source=../sandbox/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../sandbox/lib.sh"
# TAP plumbing: ok, not_ok, diag, check (and the counters n, failed).
# shellcheck source=../sandbox/tap.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../sandbox/tap.sh"

ctl=${1:?usage: test-cli.sh PATH-TO-LUKSVOLUMECTL [--tap]}
[[ -x $ctl ]] || { echo "Bail out! $ctl is not executable"; exit 1; }
ctl=$(realpath "$ctl")
[[ -n ${LV_SANDBOX_DIR:-} && -n ${DBUS_SYSTEM_BUS_ADDRESS:-} ]] ||
        { echo "Bail out! not inside tests/sandbox/sandbox.sh"; exit 1; }

readonly GUEST=lvcli-guest
readonly PASS='cli test passphrase'
readonly LV_USER_UID=4201 LV_GROUP_GID=4200
virsh=(virsh -q -c "${LV_LIBVIRT_URI:-qemu:///system}")
W=$LV_SANDBOX_DIR/cli
mkdir -p "$W"
cd "$W" || exit 1


# run NAME ARGS...: runs luksvolumectl ARGS, stdout → NAME.out, stderr →
# NAME.err, status → $rc.
rc=0
run() {
        local name=$1; shift
        "$ctl" "$@" >"$name.out" 2>"$name.err"
        rc=$?
}

# expect_rc WANT DESCRIPTION ARGS...: one test point: luksvolumectl ARGS
# exits WANT; a failure must explain itself on stderr with our prefix.
expect_rc() {
        local want=$1 desc=$2; shift 2
        run last "$@"
        if ((rc == want)) && { ((want == 0)) || grep -q '^luksvolumectl: ' last.err; }; then
                ok "$desc (exit $rc)"
        else
                not_ok "$desc (exit $rc, want $want)"
                diag last.out last.err
        fi
}

# json_ok FILE PYTHON-EXPR: FILE holds exactly one line of valid JSON (d)
# for which the expression holds.
json_ok() {
        local file=$1 expr=$2
        [[ $(wc -l <"$file") == 1 ]] || { echo "# $file: not one line:"; diag "$file"; return 1; }
        python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if not eval("(" + sys.argv[2] + "\n)"):
    print("# JSON check failed: " + " ".join(sys.argv[2].split()))
    print("# " + json.dumps(d))
    sys.exit(1)
' "$file" "$expr"
}

# Every line of FILE is a JSON object (one per line, --json monitor).
json_lines_ok() {
        python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert isinstance(d, dict), line
' "$1"
}

# ─────────────────────────────── fixtures ────────────────────────────────

umask 077
printf '%s' "$PASS" >pass
printf '%s' "not $PASS" >wrongpass
# cryptsetup, not qemu-img: qemu-img's PBKDF benchmark fails now and then on
# a busy machine ("Unable to get accurate CPU usage"); forced iterations
# need no benchmark.  LUKS1 either way; QEMU opens both alike.
lv_make_luks1_image volume.img pass ||
        { echo "Bail out! cryptsetup could not create the LUKS image"; exit 1; }
head -c 1M /dev/zero >plain.img
chmod 0644 volume.img plain.img
chmod 0755 "$W"
umask 022

lv_start_guest "$GUEST" ||
        { echo "Bail out! virsh create failed"; exit 1; }

# The unprivileged user must be able to run the client; a build directory
# under a 0700 home would not let it, so fall back to a copy.
user_ctl=$ctl
if ! setpriv --reuid=$LV_USER_UID --regid=$LV_GROUP_GID --clear-groups test -x "$ctl" 2>/dev/null; then
        user_ctl=$W/luksvolumectl
        cp "$ctl" "$user_ctl" && chmod 0755 "$user_ctl"
fi

# The unique bus name of the connection owned by process $1, or nothing.
bus_name_of_pid() {
        local name pid
        for name in $(dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus \
                        /org/freedesktop/DBus org.freedesktop.DBus.ListNames); do
                [[ $name == :* ]] || continue
                pid=$(dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus \
                        /org/freedesktop/DBus org.freedesktop.DBus.GetConnectionUnixProcessID \
                        "string:$name" 2>/dev/null | awk '{ print $2 }')
                [[ $pid == "$1" ]] && { echo "$name"; return 0; }
        done
        return 1
}

# Waits until process $1 has its three match rules on the bus, so that no
# event can slip by before it listens. Without the bus's Debug.Stats
# interface, a fixed pause has to do.
wait_monitor_ready() {
        local pid=$1 name rules i
        for ((i = 0; i < 200; i++)); do
                kill -0 "$pid" 2>/dev/null || return 1
                if name=$(bus_name_of_pid "$pid"); then
                        rules=$(dbus-send --system --print-reply --dest=org.freedesktop.DBus \
                                /org/freedesktop/DBus org.freedesktop.DBus.Debug.Stats.GetConnectionStats \
                                "string:$name" 2>/dev/null |
                                awk '/"MatchRules"/ { getline; print $NF }')
                        [[ -z $rules ]] && { sleep 2; return 0; }
                        ((rules >= 3)) && return 0
                fi
                sleep 0.05
        done
        return 1
}

# ─────────────────────────── no daemon needed ────────────────────────────

run version --version
check "--version prints the package version" \
        bash -c '(($1 == 0)) && grep -qE "^luksvolumectl [0-9]+\.[0-9]+" version.out' _ "$rc"

expect_rc 2 "usage: unknown command" frobnicate
expect_rc 2 "usage: list takes no arguments" list extra
expect_rc 2 "usage: invalid --json value" --json=bogus list
expect_rc 2 "usage: --json does not apply to detach" --json detach $GUEST:sda
expect_rc 2 "usage: invalid --bus" attach $GUEST volume.img --bus=floppy
expect_rc 2 "usage: malformed DOMAIN:TARGET" status nocolon
expect_rc 2 "usage: monitor takes no arguments" monitor extra
expect_rc 2 "usage: -H without a host" list -H
expect_rc 2 "usage: resize without SIZE" resize $GUEST:sda
expect_rc 2 "usage: resize with a malformed SIZE" resize $GUEST:sda 12X
expect_rc 2 "usage: resize with a SIZE too large" resize $GUEST:sda 99999999999T
expect_rc 2 "usage: --allow-shrink does not apply to detach" detach $GUEST:sda --allow-shrink
expect_rc 2 "usage: --all does not apply to list" list --all
expect_rc 2 "usage: --domain does not apply to status" status $GUEST:sda --domain=$GUEST
expect_rc 2 "usage: --serial does not apply to resize" resize $GUEST:sda 1G --serial=x
expect_rc 2 "usage: detach --all takes one DOMAIN at most" detach --all a b

# --host: the option parses and a failure to connect is quick and clear.
# (The sandbox has no network, so no host is reachable.)
start=$SECONDS
timeout 60 "$ctl" -H nosuchhost.invalid list >host.out 2>host.err
rc=$?
if ((rc == 1 && SECONDS - start < 30)) &&
   grep -q '^luksvolumectl: Failed to connect to the system bus of nosuchhost.invalid over ssh' host.err; then
        ok "--host with an unreachable host fails with exit 1 and says so"
else
        not_ok "--host with an unreachable host fails with exit 1 and says so (exit $rc)"
        diag host.out host.err
fi
PATH=/nonexistent "$ctl" --host=root@somewhere list >host.out 2>host.err
rc=$?
if ((rc == 1)) && grep -q 'ssh(1), which was not found' host.err; then
        ok "--host without ssh installed says so (exit 1)"
else
        not_ok "--host without ssh installed says so (exit $rc)"
        diag host.out host.err
fi
expect_rc 2 "--host refuses a relative SOURCE" -H nosuchhost.invalid probe volume.img

# ──────────────────────────────── probe ──────────────────────────────────

expect_rc 0 "probe (host facts)" probe
check "probe prints documented keys as key: value" \
        grep -qE '^native-luks: (yes|no)$' last.out
run probe --json probe
check "probe --json: one line, typed host facts" json_ok probe.out \
        'isinstance(d["version"], str) and isinstance(d["native-luks"], bool) and d["native-luks"] is True
         and isinstance(d["dm-crypt"], bool) and list(d)[0] == "version"'

expect_rc 0 "probe SOURCE" probe volume.img
check "probe SOURCE shows LUKS1 and not attached" \
        bash -c 'grep -qx "luks-version: 1" last.out && grep -qx "attached: /" last.out'
run probesrc --json probe "$W/volume.img"
check "probe SOURCE --json: numbers, booleans, object path" json_ok probesrc.out \
        'd["luks-version"] == 1 and type(d["key-size"]) is int and d["active-keyslots"] == 1
         and d["native-capable"] is True and d["attached"] == "/" and isinstance(d["uuid"], str)'
run probepretty --json=pretty probe volume.img
check "probe --json=pretty is indented valid JSON" \
        bash -c '(($(wc -l <probepretty.out) > 3)) && python3 -m json.tool probepretty.out >/dev/null'

expect_rc 6 "probe of a file without LUKS header" probe plain.img

# ─────────────────────────────── list-domains ────────────────────────────

expect_rc 0 "list-domains" list-domains
uuid=$(virsh -q -c qemu:///system domuuid "$GUEST" | tr -d '[:space:]')
check "list-domains prints the running guest: name, UUID, state" \
        grep -qxF "$GUEST	$uuid	running" last.out
run domains --json list-domains
check "list-domains --json: an array of {name, uuid, state}" json_ok domains.out \
        "any(e == {'name': '$GUEST', 'uuid': '$uuid', 'state': 'running'} for e in d)"
expect_rc 2 "usage: list-domains takes no arguments" list-domains extra

# ─────────────────── monitor, attach, list, status ───────────────────────

"$ctl" monitor >monitor.out 2>monitor.err &
mon_pid=$!
"$ctl" monitor --json >monitor-json.out 2>monitor-json.err &
monj_pid=$!
check "monitor subscribes" wait_monitor_ready $mon_pid
check "monitor --json subscribes" wait_monitor_ready $monj_pid

expect_rc 4 "attach with a wrong passphrase" \
        attach $GUEST volume.img --bus=scsi --passphrase-file=wrongpass --no-ask-password
expect_rc 5 "attach to a domain that does not exist" \
        attach no-such-guest volume.img --bus=scsi --passphrase-file=pass --no-ask-password
expect_rc 6 "attach of a file without LUKS header" \
        attach $GUEST plain.img --bus=scsi --passphrase-file=pass --no-ask-password

expect_rc 0 "attach --passphrase-file --bus=scsi" \
        attach $GUEST volume.img --bus=scsi --passphrase-file=pass --no-ask-password
vol=$(cat last.out)
check "attach prints the volume object path" \
        bash -c '[[ $1 =~ ^/org/example/LuksVolume1/volume/[0-9a-f]{32}_sda$ ]]' _ "$vol"

expect_rc 7 "attach of an already attached source" \
        attach $GUEST "$W/volume.img" --bus=scsi --passphrase-file=pass --no-ask-password

expect_rc 0 "list" list
check "list shows the volume row" \
        bash -c 'head -n1 last.out | grep -q "^VOLUME  *DOMAIN  *TARGET  *MODE  *SOURCE  *STATE$" &&
                 grep -qE "^$1  +$2  +sda  +native  +$3  +attached$" last.out' _ "$vol" $GUEST "$W/volume.img"
run list --json list
check "list --json: an array with every property, typed" json_ok list.out \
        "isinstance(d, list) and len(d) == 1 and d[0]['Volume'] == '$vol' and d[0]['Domain'] == '$GUEST'
         and d[0]['Target'] == 'sda' and d[0]['Bus'] == 'scsi' and d[0]['Mode'] == 'native'
         and d[0]['Source'] == '$W/volume.img' and d[0]['LuksVersion'] == 1 and d[0]['ReadOnly'] is False
         and d[0]['State'] == 'attached' and d[0]['MapperDevice'] == '' and len(d[0]['SecretUUID']) == 36
         and d[0]['Size'] == 16777216 and d[0]['Serial'] == '' and d[0]['AttachedByUID'] == 0
         and d[0]['AttachTimestamp'] > 0 and d[0]['PayloadOffset'] > 0
         and list(d[0]) == ['Volume', 'Domain', 'DomainUUID', 'Source', 'Target', 'Bus', 'Mode',
                            'SecretUUID', 'MapperDevice', 'LuksVersion', 'LuksUUID', 'ReadOnly', 'State',
                            'Size', 'PayloadOffset', 'Serial', 'AttachedByUID', 'AttachTimestamp',
                            'NativeHeader', 'ShimDevice']
         and d[0]['NativeHeader'] == 'volume' and d[0]['ShimDevice'] == ''"

expect_rc 0 "status DOMAIN:TARGET" status $GUEST:sda
check "status prints Volume: and the properties" \
        bash -c 'head -n1 last.out | grep -qx "Volume: $1" && grep -qx "State: attached" last.out &&
                 grep -qx "ReadOnly: no" last.out && grep -qx "LuksVersion: 1" last.out' _ "$vol"
run status --json status "$vol"
check "status --json is the same object as list --json's element" \
        json_ok status.out "d == json.load(open('list.out'))[0]"
run probeatt --json probe volume.img
check "probe --json names the attached volume" json_ok probeatt.out "d['attached'] == '$vol'"

# ──────────────────────── --host over a loopback ssh ──────────────────────

# sd-bus runs "ssh -xT -- HOST systemd-stdio-bridge"; a stand-in ssh that
# runs the command here makes the real --host code path reach this
# sandbox's system bus, without a network or an sshd.
if command -v systemd-stdio-bridge >/dev/null; then
        mkdir -p fakessh
        cat >fakessh/ssh <<'SH'
#!/bin/bash
# Stand-in for "ssh [OPTIONS] -- HOST COMMAND...": runs COMMAND locally,
# with pipes for its stdin and stdout as sshd gives it (sd-bus hands us a
# socket, which would let it pass file descriptors, unlike real ssh).
while (($#)) && [[ $1 != -- ]]; do shift; done
shift 2
# sd-bus's end is non-blocking, which cat does not expect.
python3 -c 'import os; os.set_blocking(0, True); os.set_blocking(1, True)'
cat | "$@" | cat
SH
        chmod 0755 fakessh/ssh
        PATH=$W/fakessh:$PATH "$ctl" -H root@loopback --json list >remote.out 2>remote.err
        rc=$?
        if ((rc == 0)) && json_ok remote.out "[v['Volume'] for v in d] == ['$vol']"; then
                ok "--host: list --json through ssh and systemd-stdio-bridge"
        else
                not_ok "--host: list --json through ssh and systemd-stdio-bridge (exit $rc)"
                diag remote.out remote.err
        fi
        PATH=$W/fakessh:$PATH "$ctl" -H loopback attach $GUEST "$W/volume.img" --bus=scsi \
                --passphrase-file=pass >remote.out 2>remote.err
        rc=$?
        if ((rc == 6)) && grep -q '^luksvolumectl: Cannot attach over --host' remote.err; then
                ok "--host: attach is refused, ssh cannot pass the passphrase fd (exit 6)"
        else
                not_ok "--host: attach is refused, ssh cannot pass the passphrase fd (exit $rc, want 6)"
                diag remote.out remote.err
        fi
else
        ok "--host: list --json through ssh # SKIP systemd-stdio-bridge is not installed"
        ok "--host: attach is refused # SKIP systemd-stdio-bridge is not installed"
fi

# ───────────────────────────── authorization ─────────────────────────────

as_user() { setpriv --reuid=$LV_USER_UID --regid=$LV_GROUP_GID --clear-groups "$user_ctl" "$@"; }
as_user --no-ask-password probe >user.out 2>user.err
rc=$?
if ((rc == 3)) && grep -q '^luksvolumectl: Hint:' user.err; then
        ok "probe as uid $LV_USER_UID is denied by polkit (exit 3, with hint)"
        diag user.err
else
        not_ok "probe as uid $LV_USER_UID is denied by polkit (exit $rc, want 3)"
        diag user.out user.err
fi
# expect_user_denied VERB ARGS...: luksvolumectl VERB ARGS as the plain
# user exits 3 (polkit).
expect_user_denied() {
        as_user --no-ask-password "$@" >user.out 2>user.err
        rc=$?
        if ((rc == 3)); then
                ok "$1 as uid $LV_USER_UID is denied by polkit (exit 3)"
        else
                not_ok "$1 as uid $LV_USER_UID is denied by polkit (exit $rc, want 3)"
                diag user.out user.err
        fi
}
expect_user_denied detach $GUEST:sda
expect_user_denied list-domains

# ──────────────────────────────── detach ─────────────────────────────────

expect_rc 0 "detach DOMAIN:TARGET" detach $GUEST:sda --no-ask-password
run listempty --json list
check "list --json after detach is []" json_ok listempty.out 'd == []'
expect_rc 0 "list after detach" list
check "list says no volumes" grep -qx "No volumes attached." last.out
expect_rc 5 "detach of a volume that is gone" detach $GUEST:sda --no-ask-password
expect_rc 5 "status of a volume path that is not exported" status "$vol"

# ─────────────────────────── passphrases (key slots) ──────────────────────

umask 077
printf '%s' "second $PASS" >pass2
printf '%s' "third $PASS" >pass3
lv_make_luks1_image keys.img pass ||
        { echo "Bail out! cryptsetup could not create the LUKS image"; exit 1; }
chmod 0644 keys.img
umask 022

expect_rc 0 "add-passphrase" add-passphrase keys.img --passphrase-file=pass --new-passphrase-file=pass2
check "add-passphrase prints the new key slot" grep -qx "slot: 1" last.out
run addjson --json add-passphrase keys.img --passphrase-file=pass2 --new-passphrase-file=pass3 \
        --pbkdf-iterations=2345
check "add-passphrase --json prints {\"slot\": 2}" json_ok addjson.out 'd == {"slot": 2}'
run probekeys --json probe keys.img
check "three key slots now" json_ok probekeys.out 'd["active-keyslots"] == 3'
check "probe --json: keyslots as objects, the new slot's iterations among them" json_ok probekeys.out \
        '[k["slot"] for k in d["keyslots"]] == [0, 1, 2] and d["keyslots"][2]["iterations"] == 2345
         and all(k["pbkdf"] == "pbkdf2" and k["state"] == "active" for k in d["keyslots"])'
expect_rc 0 "probe SOURCE with three key slots" probe keys.img
check "probe shows the key slots as key=value, ';' between slots" \
        grep -qE "^keyslots: slot=0 .*pbkdf=pbkdf2.*; slot=1 .*; slot=2 .*iterations=2345" last.out
check "--pbkdf-iterations reaches the new key slot" \
        bash -c 'cryptsetup luksDump keys.img | grep -A1 "^Key Slot 2: ENABLED" | grep -qE "Iterations:\s+2345$"'
run verifyjson --json verify keys.img --passphrase-file=pass3
check "verify --json prints the slot the passphrase opens" json_ok verifyjson.out 'd == {"slot": 2}'
expect_rc 4 "verify with a wrong passphrase" verify keys.img --passphrase-file=wrongpass
expect_rc 0 "change-passphrase" change-passphrase keys.img --passphrase-file=pass2 --new-passphrase-file=wrongpass
expect_rc 4 "the old passphrase no longer opens it" verify keys.img --passphrase-file=pass2
expect_rc 0 "the new one does" verify keys.img --passphrase-file=wrongpass
expect_rc 0 "remove-passphrase" remove-passphrase keys.img --passphrase-file=wrongpass
expect_rc 0 "remove-passphrase" remove-passphrase keys.img --passphrase-file=pass3
expect_rc 6 "remove-passphrase of the last key slot is refused" remove-passphrase keys.img --passphrase-file=pass
check "and says why" grep -q "last one" last.err
expect_rc 0 "verify: the last one is still there" verify keys.img --passphrase-file=pass
expect_rc 2 "usage: --force only applies to remove-passphrase" verify keys.img --passphrase-file=pass --force
expect_rc 2 "usage: --new-passphrase-file does not apply to verify" \
        verify keys.img --passphrase-file=pass --new-passphrase-file=pass2
expect_rc 2 "usage: --pbkdf-iterations must be positive" \
        add-passphrase keys.img --passphrase-file=pass --new-passphrase-file=pass2 --pbkdf-iterations=0
expect_rc 2 "usage: both passphrases from standard input" \
        change-passphrase keys.img --passphrase-file=- --new-passphrase-file=- </dev/null
expect_rc 2 "usage: change-passphrase expects SOURCE" change-passphrase
expect_rc 6 "change-passphrase of a file without LUKS header" \
        change-passphrase plain.img --passphrase-file=pass --new-passphrase-file=pass2
install -m 0644 pass userpass
expect_user_denied verify keys.img --passphrase-file="$W/userpass"

# on_tty WANT DESCRIPTION ANSWERS ARGS...: runs luksvolumectl ARGS on a
# pseudo-terminal, typing the next line of ANSWERS after each passphrase
# prompt; one test point: it exits WANT.
on_tty() {
        local want=$1 desc=$2 answers=$3; shift 3
        python3 - "$answers" "$ctl" "$@" >tty.out 2>&1 <<'PY'
import os, pty, select, sys
answers = sys.argv[1].split("\n")
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
out, typed = b"", 0
while True:
    if not select.select([fd], [], [], 30)[0]:
        break
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    out += data
    if out.count(b"assphrase for ") > typed and out.endswith(b": ") and typed < len(answers):
        os.write(fd, answers[typed].encode() + b"\n")
        typed += 1
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
PY
        rc=$?
        if ((rc == want)); then
                ok "$desc (exit $rc)"
        else
                not_ok "$desc (exit $rc, want $want)"
                diag tty.out
        fi
}

on_tty 2 "change-passphrase at the prompt: two different new passphrases are refused" \
        "$PASS"$'\n'"typed once"$'\n'"typed twice" change-passphrase keys.img
check "it asked for the old passphrase, the new one and again" \
        bash -c 'grep -q "Old passphrase for .*keys.img: " tty.out && grep -q "Repeat new passphrase for" tty.out &&
                 grep -q "do not match" tty.out'
on_tty 0 "change-passphrase at the prompt" "$PASS"$'\n'"typed twice"$'\n'"typed twice" change-passphrase keys.img
printf '%s' "typed twice" >typed
expect_rc 0 "the typed passphrase opens it" verify keys.img --passphrase-file=typed

# ─────────────────────────────── monitor ─────────────────────────────────

# The removal signal may still be on its way: wait for it, then stop.
for ((i = 0; i < 100; i++)); do
        grep -q '^removed ' monitor.out && grep -q '"removed"' monitor-json.out && break
        sleep 0.05
done
kill -INT $mon_pid
wait $mon_pid
rc=$?
check "monitor exits 0 on SIGINT (exit $rc)" test $rc = 0
kill -TERM $monj_pid
wait $monj_pid
rc=$?
check "monitor --json exits 0 on SIGTERM (exit $rc)" test $rc = 0

echo "# monitor output:"
diag monitor.out monitor.err
expected=$(printf '%s\n' \
        "added $vol domain=$GUEST target=sda mode=native source=$W/volume.img" \
        "changed $vol State=detaching" \
        "removed $vol")
if [[ $(cat monitor.out) == "$expected" ]] && [[ ! -s monitor.err ]]; then
        ok "monitor printed exactly added, changed State=detaching, removed"
else
        not_ok "monitor printed exactly added, changed State=detaching, removed"
        echo "# expected:"
        diag <<<"$expected"
fi

echo "# monitor --json output:"
diag monitor-json.out
check "monitor --json prints one JSON object per line" json_lines_ok monitor-json.out
check "monitor --json events carry typed properties" python3 -c '
import json, sys
vol = sys.argv[1]
ev = [json.loads(l) for l in open("monitor-json.out")]
assert [e["event"] for e in ev] == ["added", "changed", "removed"], ev
assert all(e["volume"] == vol for e in ev), ev
assert ev[0]["properties"]["Target"] == "sda" and ev[0]["properties"]["LuksVersion"] == 1
assert ev[0]["properties"]["ReadOnly"] is False
assert ev[1]["properties"] == {"State": "detaching"}
assert "properties" not in ev[2]
' "$vol"

# ─────────────── resize, list --domain, detach --all (API v1.1) ───────────────

umask 077
lv_make_luks1_image volume2.img pass ||
        { echo "Bail out! cryptsetup could not create the second LUKS image"; exit 1; }
chmod 0644 volume2.img
umask 022

expect_rc 6 "attach --discard --mode=native is not supported" \
        attach $GUEST volume.img --bus=scsi --discard --mode=native --passphrase-file=pass --no-ask-password
expect_rc 2 "attach with a serial the service refuses" \
        attach $GUEST volume.img --bus=scsi --serial='no spaces' --passphrase-file=pass --no-ask-password
expect_rc 0 "attach --serial" \
        attach $GUEST volume.img --bus=scsi --serial=CLI-SERIAL_1 --passphrase-file=pass --no-ask-password
vol=$(cat last.out)
expect_rc 0 "status of the new volume" status $GUEST:sda
check "status shows Serial, Size and AttachedByUID" \
        bash -c 'grep -qx "Serial: CLI-SERIAL_1" last.out && grep -qx "Size: 16777216" last.out &&
                 grep -qx "AttachedByUID: 0" last.out'
expect_rc 0 "resize DOMAIN:TARGET 32M" resize $GUEST:sda 32M --no-ask-password
run size --json status $GUEST:sda
check "status --json: Size is 32 MiB after the resize" json_ok size.out "d['Size'] == 33554432"
expect_rc 2 "resize to a smaller size without --allow-shrink" resize $GUEST:sda 24m
check "the refusal names --allow-shrink's option" grep -q 'allow-shrink' last.err
expect_rc 2 "resize to a size that is not a multiple of 512" resize "$vol" 33555000
expect_rc 0 "resize VOLUME-PATH 24M --allow-shrink" resize "$vol" 24M --allow-shrink
run size2 --json status "$vol"
check "status --json: Size is 24 MiB after the shrink" json_ok size2.out "d['Size'] == 25165824"
as_user --no-ask-password resize $GUEST:sda 40M >user.out 2>user.err
rc=$?
check "resize as uid $LV_USER_UID is denied by polkit (exit $rc)" test $rc = 3
expect_rc 5 "resize of a volume that does not exist" resize $GUEST:sdz 1G

expect_rc 0 "attach a second volume" \
        attach $GUEST volume2.img --bus=scsi --passphrase-file=pass --no-ask-password
run listdom --json list --domain=$GUEST
check "list --domain --json: both volumes of the domain" json_ok listdom.out \
        "[v['Target'] for v in d] == ['sda', 'sdb']"
run listuuid --json list --domain="$("${virsh[@]}" domuuid $GUEST | tr a-f A-F)"
check "list --domain takes the UUID in any case" json_ok listuuid.out "len(d) == 2"
run listother --json list --domain=no-such-guest
check "list --domain of another domain: none" json_ok listother.out "d == []"
expect_rc 0 "list --domain of another domain (text)" list --domain=no-such-guest
check "list --domain says no volumes" grep -qx "No volumes attached." last.out
expect_rc 0 "detach --all of another domain does nothing" detach --all no-such-guest --no-ask-password
run still --json list
check "both volumes are still attached" json_ok still.out "len(d) == 2"
expect_rc 0 "detach --all DOMAIN" detach --all $GUEST --no-ask-password --timeout=30
run none --json list
check "list --json after detach --all is []" json_ok none.out 'd == []'
expect_rc 0 "detach --all with nothing attached" detach --all --no-ask-password

"${virsh[@]}" destroy $GUEST >/dev/null 2>&1

echo "1..$n"
((failed == 0))
