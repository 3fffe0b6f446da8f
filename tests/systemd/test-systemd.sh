#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The package as an administrator gets it: inside a TCG VM whose PID 1 is
# the host's systemd (run-in-vm.sh --systemd, started by
# run-systemd-vm.sh), install the built .deb with dpkg and use the service
# through the real system bus, systemd, polkit.service, logind, a
# socket-activated libvirtd and a nested TCG guest, with the tools an admin
# has (luksvolumectl, systemctl, journalctl, virsh, gdbus).  The checks and
# why each is there: README, Tests, "systemd".
#
#   test-systemd.sh --deb PATH.deb --tap      (inside the VM, as root)
#
# One TAP line per check (the plan comes last); diagnostics as "# " lines.
# A check that cannot be made here is "ok N - ... # SKIP why", never a pass.
# Nothing is mocked.  The VM's root is an overlay in RAM: whatever this
# script installs or writes disappears with the VM.

set -euo pipefail

usage() { echo "usage: $0 --deb PATH.deb --tap (inside run-in-vm.sh --systemd)" >&2; exit 1; }
deb=""
tap=0
while (($#)); do
        case $1 in
                --deb) (($# >= 2)) || usage; deb=$2; shift 2 ;;
                --tap) tap=1; shift ;;
                *) usage ;;
        esac
done
if [[ -z $deb ]] || ((!tap)); then usage; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# lv_make_luks1_image, lv_start_guest: the fixtures every shell test makes
# the same way.
# shellcheck source=../sandbox/lib.sh
source "$here/../sandbox/lib.sh"

# stdout is the VM's serial port, a tty: without these systemctl and
# journalctl would start a pager and wait for a key.
export SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
# sd-bus clients (luksvolumectl, busctl) wait 25 s for a reply by default.
# A call that activates the daemon, which first has libvirtd socket-
# activated and rescans, took up to 45 s in this TCG VM on a loaded 2-core
# host; give the clients more patience than real hardware needs.  (The
# attach and detach verbs wait 5 minutes anyway.)
export SYSTEMD_BUS_TIMEOUT=120

readonly UNIT=luksvolumed.service
readonly BUS_NAME=org.example.LuksVolume1
readonly GUEST=lvsd-guest
readonly USER_NAME=lvsd-user
readonly IMAGES=/var/lib/libvirt/images
readonly IMG1=$IMAGES/lvsd-luks1.img IMG2=$IMAGES/lvsd-luks2.img
# Distinctive strings, so that finding one in the journal can only mean a
# leak.  The wrong one is tried too, and must not be logged either.
readonly PASS='lvsd-right-7c1e94b2-passphrase'
readonly WRONG='lvsd-wrong-3fa08d61-passphrase'
# MESSAGE_IDs of the daemon's structured journal entries (luksvolumed(8));
# they are an interface: journalctl MESSAGE_ID=… filters rely on them.
readonly MID_ATTACHED=76ba7d3f2d4e4eecb4a35d38cc676205
readonly MID_DETACHED=93d1baaef87548c0a65b401381d4ab71
readonly MID_REFUSED=710f07435b5f41b8b23d68cdfc096081
readonly WATCHDOG_DROPIN=/etc/systemd/system/$UNIT.d/50-lvsd-watchdog.conf
readonly IDLE_DROPIN=/etc/luksvolumed.conf.d/50-lvsd-idle.conf
readonly URI=qemu:///system
virsh=(virsh -q -c "$URI")

W=/run/lvsd
mkdir -p "$W"
chmod 0700 "$W"

# ─────────────────────────────── TAP ──────────────────────────────────────
n=0
plan_done=0
finish() {
        ((plan_done)) || echo "1..$n"
        plan_done=1
}
trap finish EXIT
bail() {
        echo "Bail out! $*"
        finish
        exit 1
}
diag_file() { sed '/^[[:space:]]*$/d; s/^/# /' "$1"; }

# point DESCRIPTION FUNCTION [ARGS...]: one test point.  FUNCTION runs in a
# subshell with errexit, so its first failing command fails the point; its
# output becomes the point's diagnostics; state goes on to later points
# through files in $W.  Sets last_ok (1/0) for points later ones depend on.
# Never call point from a condition (`point … || …`, `if point …`): bash
# then ignores errexit in everything it runs, the subshell included, and
# every point would pass.
last_ok=0
point() {
        local desc=$1 rc t0; shift
        t0=$(ms_now)
        set +e
        ( set -euo pipefail; "$@" ) >"$W/point.out" 2>&1 </dev/null
        rc=$?
        set -e
        n=$((n + 1))
        last_ok=$((rc == 0))
        # A point may rename itself (to carry a measured value) or skip.
        [[ ! -s $W/point.desc ]] || desc=$(<"$W/point.desc")
        if [[ -s $W/point.skip ]]; then
                echo "ok $n - $desc # SKIP $(<"$W/point.skip")"
        elif ((rc == 0)); then
                echo "ok $n - $desc"
        else
                echo "not ok $n - $desc"
        fi
        diag_file "$W/point.out"
        echo "# ($(( ($(ms_now) - t0) / 1000 )) s)"
        rm -f "$W/point.desc" "$W/point.skip"
}
# Inside a point: the TAP description to print instead (with a value).
describe() { printf '%s' "$*" >"$W/point.desc"; }
# Inside a point: it could not be checked here; why.  Ends the point.
skip_point() { printf '%s' "$*" >"$W/point.skip"; exit 0; }
fail() { echo "$*"; return 1; }

# ─────────────────────────────── helpers ──────────────────────────────────
ms_now() { local t=$EPOCHREALTIME; echo $((10#${t/./} / 1000)); }

# wait_until SECONDS COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_until() {
        local deadline=$(($(ms_now) + $1 * 1000)); shift
        until "$@"; do
                (($(ms_now) < deadline)) || return 1
                sleep 0.2
        done
}

# Every systemctl run costs a second or two under TCG: fetch what is needed
# in one.  load_props UNIT PROPERTY...: fills P[PROPERTY].
declare -A P
load_props() {
        local unit=$1 line; shift
        P=()
        while IFS= read -r line; do
                P[${line%%=*}]=${line#*=}
        done < <(systemctl show "${@/#/--property=}" "$unit")
}
prop() { systemctl show -p "$1" --value "$UNIT"; }
main_pid() { prop MainPID; }
unit_active() { [[ $(prop ActiveState) == active ]]; }
unit_gone() { local s; s=$(prop ActiveState); [[ $s != active && $s != activating ]]; }
# PID of the process owning the bus name, asked from the bus driver.
bus_owner_pid() {
        dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus.GetConnectionUnixProcessID "string:$BUS_NAME" | awk '{ print $2 }'
}

# A journal position; later: journal_since CURSOR [journalctl args…].
journal_cursor() { journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }
journal_since() { local c=$1; shift; journalctl -q --no-pager --after-cursor="$c" "$@"; }

# Leftovers of ours: libvirt secrets with our usage ids, mappings in our
# namespace, loop devices on our images, volume objects, extra guest disks.
nothing_left() {
        local left=0 secrets maps loops vols disks
        secrets=$("${virsh[@]}" secret-list | grep -c 'luksvolumed:' || true)
        maps=$(find /dev/mapper -name 'luksvol-*' | wc -l)
        loops=$(losetup -a | grep -c 'lvsd-luks' || true)
        vols=$(luksvolumectl --json list)
        disks=$("${virsh[@]}" domblklist "$GUEST" | grep -c . || true)
        ((secrets == 0)) || { echo "left: $secrets luksvolumed secret(s)"; "${virsh[@]}" secret-list; left=1; }
        ((maps == 0)) || { echo "left: mapping(s)"; ls -l /dev/mapper; left=1; }
        ((loops == 0)) || { echo "left: loop device(s)"; losetup -a; left=1; }
        [[ $vols == '[]' ]] || { echo "left: volume objects $vols"; left=1; }
        ((disks == 0)) || { echo "left: guest disks"; "${virsh[@]}" domblklist "$GUEST"; left=1; }
        return "$left"
}

# json_field JSON KEY: one value of a luksvolumectl --json object.
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# The block node of QEMU's that reads DRIVER (luks: QEMU decrypts; raw:
# a plain device, the dm-crypt mapping) from FILE.
block_node() {
        local drv=$1 file=$2
        "${virsh[@]}" qemu-monitor-command "$GUEST" \
                '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
                python3 -c '
import json, sys
drv, file = sys.argv[1], sys.argv[2]
for n in json.load(sys.stdin)["return"]:
    if n["drv"] == drv and file in n["file"]:
        print(n["node-name"]); break
' "$drv" "$file"
}

# qemu_reads NODE BYTE: QEMU's own block layer reads 64 KiB of BYTE at
# offset 0 through NODE.  HMP's qemu-io prints its verdict to QEMU's
# stdout, i.e. the domain's log (as in tests/integration/fixture.c).
qemu_reads() {
        local node=$1 byte=$2 log=/var/log/libvirt/qemu/$GUEST.log mark reply news deadline
        mark=$(stat -c %s "$log")
        reply=$("${virsh[@]}" qemu-monitor-command "$GUEST" --hmp "qemu-io $node \"read -P $byte 0 64k\"")
        [[ -z ${reply//[[:space:]]/} ]] || { echo "HMP qemu-io: $reply"; return 1; }
        deadline=$(($(ms_now) + 30000))
        while (($(ms_now) < deadline)); do
                news=$(tail -c +"$((mark + 1))" "$log")
                if [[ $news == *'Pattern verification failed'* || $news == *'read failed'* ]]; then
                        echo "node $node, pattern $byte: ${news//$'\n'/ }"
                        return 1
                fi
                [[ $news != *'read 65536/65536 bytes'* ]] || return 0
                sleep 0.2
        done
        echo "no qemu-io verdict in $log within 30 s"
        return 1
}

# The daemon's sandbox as the kernel sees it (the hardened unit applied):
# no new privileges, a seccomp filter, exactly six capabilities
# (CAP_DAC_OVERRIDE 1, CAP_SETGID 6, CAP_SETUID 7, CAP_IPC_LOCK 14,
# CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21).
sandboxed() {
        local pid=$1 st
        st=$(<"/proc/$pid/status")
        [[ $st == *$'NoNewPrivs:\t1'* ]] || fail "pid $pid: NoNewPrivs is not 1"
        [[ $st == *$'Seccomp:\t2'* ]] || fail "pid $pid: no seccomp filter"
        [[ $st == *$'CapBnd:\t00000000002840c2'* ]] ||
                fail "pid $pid: bounding set $(grep CapBnd <<<"$st"), not CAP_SYS_ADMIN CAP_DAC_OVERRIDE CAP_IPC_LOCK CAP_SETUID CAP_SETGID CAP_SYS_PTRACE"
}

# ─────────────────────────── install the package ──────────────────────────
install_deb() {
        [[ -r $deb ]] || fail "no package at $deb"
        [[ $(cat /proc/1/comm) == systemd ]] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
        ! dpkg -s luksvolumed >/dev/null 2>&1 || fail "luksvolumed is already installed in the VM (on the host?)"
        # man-db's trigger would rebuild the whole manual database over 9p
        # (minutes); this is what debconf's man-db/auto-update=false does.
        rm -f /var/lib/man-db/auto-update
        local t0
        t0=$(ms_now)
        dpkg -i "$deb" | tail -n 4
        [[ $(dpkg-query -W -f '${Status}' luksvolumed) == 'install ok installed' ]] ||
                fail "dpkg says: $(dpkg-query -W -f '${Status}' luksvolumed)"
        # The maintainer scripts reloaded systemd: the unit is known, and
        # neither enabled nor started (it is bus-activated).
        load_props "$UNIT" LoadState ActiveState FragmentPath
        [[ ${P[LoadState]} == loaded ]] || fail "$UNIT: LoadState ${P[LoadState]}"
        [[ ${P[ActiveState]} == inactive ]] || fail "$UNIT is ${P[ActiveState]} right after install"
        [[ ${P[FragmentPath]} == /lib/systemd/system/$UNIT ]] || fail "$UNIT comes from ${P[FragmentPath]}"
        describe "dpkg -i installs the built package ($(basename "$deb"), $(($(ms_now) - t0)) ms); $UNIT loaded, not started"
}
point "dpkg -i installs the built package" install_deb
((last_ok)) || bail "the package did not install"

# ──────────────────── the unit's dependencies on libvirt ──────────────────
# The unit must not pull in a libvirt daemon: on hosts with the modular
# daemons (virtqemud, virtsecretd) starting libvirtd.service conflicts with
# them, and qemu:///system socket-activates whichever daemon the host runs.
# Ordering only: at shutdown the service stops before the daemons and
# after libvirt-guests.
unit_deps() {
        local dep
        load_props "$UNIT" Wants Requires Requisite BindsTo PartOf Upholds After Before
        for dep in Wants Requires Requisite BindsTo PartOf Upholds After Before; do
                echo "$dep=${P[$dep]}"
        done
        for dep in Wants Requires Requisite BindsTo PartOf Upholds; do
                if [[ " ${P[$dep]} " =~ \ (libvirtd|virtqemud|virtsecretd|virtproxyd|virtstoraged)[.-] ]]; then
                        fail "$dep= names a libvirt daemon"
                fi
        done
        for dep in libvirtd.service virtqemud.service virtsecretd.service; do
                [[ " ${P[After]} " == *" $dep "* ]] || fail "After= lacks $dep"
        done
        [[ " ${P[Before]} " == *" libvirt-guests.service "* ]] || fail "Before= lacks libvirt-guests.service"
}
point "$UNIT requires no libvirt daemon (Wants/Requires/Requisite/BindsTo/PartOf/Upholds); After= libvirtd, virtqemud, virtsecretd; Before= libvirt-guests" unit_deps

# ────────────── libvirtd socket activation by the first call ──────────────
# First the QEMU capabilities cache, as any host that has run libvirtd
# before has it: probing QEMU for it takes libvirtd minutes inside this
# TCG VM, longer than a D-Bus activation may take; the check below is
# about who starts libvirtd, not about that probe.
warm_libvirt() {
        local t0
        t0=$(ms_now)
        systemctl start libvirtd.service
        "${virsh[@]}" domcapabilities --virttype qemu >/dev/null
        systemctl stop libvirtd.service
        echo "libvirtd started, QEMU probed and stopped again in $(($(ms_now) - t0)) ms"
}
point "libvirtd's QEMU capabilities cache is warm (libvirtd started once and stopped)" warm_libvirt
((last_ok)) || bail "libvirtd does not work in the VM"

socket_activation() {
        systemctl start libvirtd.socket
        [[ $(systemctl show -p ActiveState --value libvirtd.service) == inactive ]] ||
                fail "libvirtd.service is $(systemctl show -p ActiveState --value libvirtd.service) before the call"
        [[ $(systemctl show -p SubState --value libvirtd.socket) == listening ]] ||
                fail "libvirtd.socket is not listening: $(systemctl show -p SubState --value libvirtd.socket)"
        local cursor t0
        cursor=$(journal_cursor)
        # systemd logs "Incoming traffic" on a socket unit at debug level.
        systemd-analyze log-level debug
        t0=$(ms_now)
        luksvolumectl probe >"$W/probe.out" || { systemd-analyze log-level info; cat "$W/probe.out"; fail "luksvolumectl probe failed"; }
        systemd-analyze log-level info
        cat "$W/probe.out"
        grep -q '^libvirt-version: [0-9]' "$W/probe.out" || fail "probe reports no libvirt version"
        [[ $(systemctl show -p ActiveState --value libvirtd.service) == active ]] ||
                fail "libvirtd.service is $(systemctl show -p ActiveState --value libvirtd.service) after the call"
        journal_since "$cursor" -o cat _PID=1 >"$W/pid1.log"
        grep -q '^libvirtd.socket: Incoming traffic' "$W/pid1.log" ||
                fail "systemd logged no incoming traffic on libvirtd.socket"
        # libvirtd's start job must be the socket's, not part of
        # luksvolumed's start transaction (as Wants=libvirtd.service made it).
        ! grep -E "^$UNIT: starting held back, waiting for: libvirtd" "$W/pid1.log" ||
                fail "$UNIT's start waited for libvirtd.service: it pulled it in"
        grep -m 5 -E '^libvirtd\.(socket|service): (Incoming|Trying to enqueue|Installed new job)' "$W/pid1.log"
        describe "libvirtd.service stopped, libvirtd.socket listening: the first call (probe, activating $UNIT) works in $(($(ms_now) - t0)) ms and libvirtd was started by its socket"
}
point "socket activation of libvirtd by the first call" socket_activation

# ──────────────────────── activation through systemd ──────────────────────
activation() {
        unit_active || fail "$UNIT is $(prop ActiveState)"
        local owner mainpid
        owner=$(bus_owner_pid)
        mainpid=$(main_pid)
        echo "bus name owner pid $owner, $UNIT MainPID $mainpid"
        [[ -n $owner && $owner == "$mainpid" ]] || fail "the bus name's owner is not the unit's main process"
        # (grep -m, not | head: head leaving early could SIGPIPE the writer,
        # and pipefail would turn that into a failure.)
        journalctl -q -b -o short-monotonic _COMM=dbus-daemon >"$W/dbus.log"
        grep -m 1 -F "Activating via systemd: service name='$BUS_NAME' unit='$UNIT'" "$W/dbus.log" ||
                fail "dbus-daemon did not activate $BUS_NAME through systemd"
        # When the name came (dbus-daemon gives an activation 25 s): the
        # first activation, above, waits for libvirtd's socket start too.
        grep -m 1 -F "Successfully activated service '$BUS_NAME'" "$W/dbus.log" || true
        sandboxed "$mainpid"
}
point "activation via systemd: the bus name's owner is $UNIT's MainPID, sandboxed as the unit says" activation

# ─────────────────────── systemd-analyze security ─────────────────────────
security_score() {
        unit_active || luksvolumectl probe >/dev/null
        local out level
        out=$(systemd-analyze security --no-pager "$UNIT")
        level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$out")
        [[ -n $level ]] || { echo "$out"; fail "no exposure level in the output"; }
        grep '✗' <<<"$out" | sed 's/  */ /g' | awk 'NR <= 12'
        # 2.5: two look-ups issue 16 needs, each 0.3: CAP_SETUID/CAP_SETGID
        # with setfsuid/setgroups (a caller's look-up runs with the caller's
        # file-system identity, source.c), and CAP_SYS_PTRACE (which file
        # QEMU opened after a native hot-plug, qemu-fds.c).
        describe "systemd-analyze security $UNIT (loaded, running): exposure $level (limit 2.5)"
        awk -v l="$level" 'BEGIN { exit !(l <= 2.5) }' || fail "exposure $level is above 2.5"
}
point "systemd-analyze security $UNIT <= 2.5" security_score

# ─────────────────────────────── fixtures ─────────────────────────────────
# Images where an admin keeps them, readable by QEMU; the plaintext of each
# starts with 64 KiB of 0x5a.  A nested TCG guest without OS whose
# virtio-scsi disks unplug without guest help.
fixtures() {
        umask 077
        printf '%s' "$PASS" >"$W/pass"
        printf '%s' "$WRONG" >"$W/wrong"
        umask 022
        mkdir -p "$IMAGES"
        lv_make_luks1_image "$IMG1" "$W/pass"
        qemu-io --object "secret,id=s0,file=$W/pass" \
                --image-opts "driver=luks,key-secret=s0,file.filename=$IMG1" \
                -c 'write -P 0x5a 0 64k' >/dev/null
        truncate -s 32M "$IMG2"
        cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
                --key-file="$W/pass" "$IMG2"
        # Not in the daemon's namespace (luksvol-…): it cleans those up.
        cryptsetup open --key-file="$W/pass" "$IMG2" lvsd-prep
        head -c 65536 /dev/zero | tr '\0' '\132' |
                dd of=/dev/mapper/lvsd-prep bs=64K count=1 iflag=fullblock oflag=direct status=none
        cryptsetup close lvsd-prep
        chmod 0644 "$IMG2"
        lv_start_guest "$GUEST"
        [[ $("${virsh[@]}" domstate "$GUEST") == running ]]
        useradd --no-create-home --shell /bin/sh "$USER_NAME"
}
point "fixtures: a LUKS1 and a LUKS2 image in $IMAGES, a running TCG guest, a plain user" fixtures
((last_ok)) || bail "no fixtures"

# ───────────────────────── native mode (LUKS1) ────────────────────────────
attach_native() {
        local path mode
        path=$(luksvolumectl attach "$GUEST" "$IMG1" --bus=scsi --passphrase-file="$W/pass")
        echo "$path" >"$W/native.path"
        luksvolumectl status "$path"
        local json shim
        json=$(luksvolumectl --json status "$path")
        mode=$(json_field "$json" Mode)
        [[ $mode == native ]] || fail "Mode is $mode"
        "${virsh[@]}" secret-list | grep -F "luksvolumed:" || fail "no libvirt secret"
        # Where device-mapper exists, LUKS1 goes through a header shim too
        # (issue 17): a linear device (ciphertext), never a crypt target.
        [[ $(json_field "$json" NativeHeader) == shim ]] || fail "NativeHeader is not shim"
        shim=$(json_field "$json" ShimDevice)
        [[ $shim == /dev/mapper/luksvol-shim-* && -b $shim ]] || fail "no shim device $shim"
        dmsetup table "${shim#/dev/mapper/}"
        ! dmsetup table | awk '{ print $4 }' | grep -qx crypt || fail "a dm-crypt mapping exists in native mode"
        local node
        node=$(block_node luks "$shim")
        [[ -n $node ]] || fail "QEMU has no luks block node on $shim"
        qemu_reads "$node" 0x5a || fail "QEMU does not read the plaintext"
        # The same check must be able to fail: a pattern that is not there.
        ! qemu_reads "$node" 0xa5 >/dev/null || fail "qemu-io verified a pattern that is not there"
        echo "QEMU read 0x5a through luks node $node (and did not verify 0xa5)"
}
point "native mode: LUKS1 attached to the nested guest, QEMU decrypts and reads the plaintext" attach_native

# detach_saved NAME: detach the volume an earlier point saved in
# $W/NAME.path; then nothing of ours may be left.
detach_saved() {
        [[ -s $W/$1.path ]] || fail "nothing attached"
        luksvolumectl detach "$(<"$W/$1.path")"
        nothing_left
}
point "native mode: detach; no secret, disk, object left" detach_saved native

# ─────────────────────── cryptsetup mode (LUKS2) ──────────────────────────
attach_cryptsetup() {
        local path json mapper node
        path=$(luksvolumectl attach "$GUEST" "$IMG2" --bus=scsi --passphrase-file="$W/pass")
        echo "$path" >"$W/crypt.path"
        json=$(luksvolumectl --json status "$path")
        echo "$json"
        [[ $(json_field "$json" Mode) == cryptsetup ]] || fail "auto mode did not pick cryptsetup for LUKS2"
        mapper=$(json_field "$json" MapperDevice)
        [[ $mapper == /dev/mapper/luksvol-* && -b $mapper ]] || fail "no mapping $mapper"
        dmsetup table "${mapper#/dev/mapper/}" | awk '{ print $3 }' | grep -qx crypt || fail "$mapper is not dm-crypt"
        # The daemon opened it under its sandbox: same process, the unit's.
        sandboxed "$(main_pid)"
        [[ $(bus_owner_pid) == "$(main_pid)" ]] || fail "the bus name moved away from the unit"
        node=$(block_node raw "$mapper")
        [[ -n $node ]] || fail "QEMU has no raw block node on $mapper"
        qemu_reads "$node" 0x5a || fail "QEMU does not read the plaintext through $mapper"
        echo "QEMU read 0x5a through $mapper (node $node)"
        ! "${virsh[@]}" secret-list | grep -F "luksvolumed:" || fail "a libvirt secret exists in cryptsetup mode"
}
point "cryptsetup mode: LUKS2 in auto mode opened by the sandboxed unit; QEMU reads the mapping's plaintext" attach_cryptsetup

point "cryptsetup mode: detach closes the mapping (and its loop device)" detach_saved crypt

# ──────────────────────────── wrong passphrase ────────────────────────────
wrong_passphrase() {
        local img rc bytes
        for img in "$IMG1" "$IMG2"; do
                rc=0
                luksvolumectl attach "$GUEST" "$img" --bus=scsi --passphrase-file="$W/wrong" 2>"$W/err" || rc=$?
                cat "$W/err"
                ((rc == 4)) || fail "luksvolumectl exited $rc for $img, not 4 (bad passphrase)"
        done
        # The error's name, as a D-Bus client sees it (gdbus prints it).
        bytes=$(printf '%s' "$WRONG" | od -An -tx1 -v | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1, /g' | tr -d '\n')
        rc=0
        gdbus call --system --timeout 120 --dest "$BUS_NAME" --object-path /org/example/LuksVolume1 \
                --method org.example.LuksVolume1.Attach "$GUEST" "$IMG1" "@ay [${bytes%, }]" \
                "{'bus': <'scsi'>}" >"$W/gdbus.out" 2>&1 || rc=$?
        cat "$W/gdbus.out"
        ((rc != 0)) || fail "the attach succeeded"
        grep -q 'org\.example\.LuksVolume1\.Error\.BadPassphrase' "$W/gdbus.out" || fail "not Error.BadPassphrase"
        nothing_left
}
point "a wrong passphrase (LUKS1 and LUKS2): Error.BadPassphrase, exit 4, nothing left" wrong_passphrase

# Every attach and refusal above derived key slots on a thread that puts
# itself under SCHED_BATCH (daemon/luks-derive.c); the unit's system call
# filter must let it (@resources holds sched_setscheduler), or the daemon
# says once that its derivations run as normal threads.
sched_batch() {
        journalctl -q --no-pager -u "$UNIT" >"$W/unit.journal"
        grep -q 'derived in [0-9]* ms' "$W/unit.journal" || skip_point "no key derivation was logged above"
        ! grep 'cannot set SCHED_BATCH' "$W/unit.journal" || fail "the sandboxed daemon cannot use SCHED_BATCH"
}
point "key derivations run under SCHED_BATCH in the sandboxed unit (its system call filter allows it)" sched_batch

# ──────────────────────────────── polkit ──────────────────────────────────
plain_user() {
        local rc=0
        runuser -u "$USER_NAME" -- luksvolumectl --no-ask-password probe >"$W/out" 2>"$W/err" || rc=$?
        cat "$W/out" "$W/err"
        ((rc == 3)) || fail "exit $rc, not 3 (not authorized)"
        ! grep -q 'polkit is unavailable' "$W/err" || fail "refused because polkit is unavailable, not by polkit"
        [[ $(systemctl show -p ActiveState --value polkit.service) == active ]] || fail "polkit.service is not active"
        echo "polkit.service MainPID $(systemctl show -p MainPID --value polkit.service)"
}
point "a plain user without a session is refused by polkit.service (luksvolumectl exit 3)" plain_user

# A user at an active local session (logind seat0, VT 1) may probe without
# authenticating (allow_active=yes for probe).  The session is made the way
# a console login makes one: PAM service "login" with pam_systemd, on
# /dev/tty1, which is the foreground VT.
active_session() {
        systemctl start systemd-user-sessions.service   # a booted host ran it
        [[ -c /dev/tty1 ]] || skip_point "no /dev/tty1: no virtual terminal for a seat0 session"
        local unit=lvsd-session rc
        # shellcheck disable=SC2016  # expanded by the session's shell
        systemd-run --quiet --wait --unit="$unit" --service-type=exec \
                -p PAMName=login -p User="$USER_NAME" -p TTYPath=/dev/tty1 -p StandardInput=tty-force \
                -p StandardOutput=file:"$W/session.out" -p StandardError=file:"$W/session.err" \
                /bin/sh -c 'loginctl show-session "$XDG_SESSION_ID" -p Seat -p VTNr -p Active -p Remote -p Type -p Class
                            luksvolumectl --no-ask-password probe; echo "probe-exit=$?"' || true
        cat "$W/session.out" "$W/session.err"
        if ! grep -q '^Seat=seat0' "$W/session.out" || ! grep -q '^Active=yes' "$W/session.out" ||
                ! grep -q '^Remote=no' "$W/session.out"; then
                skip_point "logind gave no active local seat0 session here ($(tr '\n' ' ' <"$W/session.out" | cut -c1-120))"
        fi
        rc=$(sed -n 's/^probe-exit=//p' "$W/session.out")
        [[ $rc == 0 ]] || fail "probe from the active session exited $rc"
}
point "a user at an active local session (seat0, tty1) probes without a password (allow_active)" active_session

# ────────────────────────── idle exit, re-activation ──────────────────────
idle_exit() {
        mkdir -p "$(dirname "$IDLE_DROPIN")"
        printf '[Daemon]\nIdleTimeoutSec=2\n' >"$IDLE_DROPIN"
        systemctl stop "$UNIT"
        local pid path pid2 t0
        path=$(luksvolumectl attach "$GUEST" "$IMG1" --bus=scsi --passphrase-file="$W/pass")
        pid=$(main_pid)
        # Not while a volume is attached: it must follow libvirt's events.
        sleep 6
        if [[ $(main_pid) != "$pid" ]] || ! unit_active; then
                fail "the daemon left within 6 s with a volume attached (IdleTimeoutSec=2)"
        fi
        luksvolumectl detach "$path"
        t0=$(ms_now)
        wait_until 30 unit_gone || fail "still $(prop ActiveState) 30 s after the detach (IdleTimeoutSec=2)"
        load_props "$UNIT" ActiveState Result
        echo "exited $(($(ms_now) - t0)) ms after the detach: ${P[ActiveState]}, Result=${P[Result]}"
        [[ ${P[Result]} == success ]] || fail "it did not exit cleanly: Result=${P[Result]}"
        # Back to the default timeout, or the new instance might be gone
        # again before it is looked at.
        rm -f "$IDLE_DROPIN"
        luksvolumectl probe >/dev/null || fail "the next call did not re-activate it"
        pid2=$(main_pid)
        echo "re-activated: MainPID $pid2 (was $pid)"
        [[ $pid2 != "$pid" && $pid2 != 0 ]] || fail "no new instance"
        [[ $(bus_owner_pid) == "$pid2" ]] || fail "the new instance does not own the bus name"
}
point "IdleTimeoutSec=2: stays while a volume is attached, exits cleanly once it is detached, the next call re-activates it" idle_exit
rm -f "$IDLE_DROPIN"

# ──────────────────────── kill -9, state rebuilt ──────────────────────────
kill_rebuild() {
        local path pid pid2
        unit_active || luksvolumectl probe >/dev/null
        path=$(luksvolumectl attach "$GUEST" "$IMG1" --bus=scsi --passphrase-file="$W/pass")
        echo "$path" >"$W/killed.path"
        pid=$(main_pid)
        kill -9 "$pid"
        wait_until 20 unit_gone || fail "$UNIT still $(prop ActiveState) after kill -9"
        load_props "$UNIT" ActiveState Result
        echo "after kill -9 of $pid: ${P[ActiveState]} (${P[Result]})"
        # The disk and its secret stay with the guest meanwhile.
        "${virsh[@]}" secret-list | grep -F "luksvolumed:" || fail "the secret went away with the daemon"
        luksvolumectl --json list >"$W/list.json"
        cat "$W/list.json"
        pid2=$(main_pid)
        [[ $pid2 != "$pid" && $pid2 != 0 ]] || fail "no new instance (MainPID $pid2)"
        python3 -c '
import json, sys
paths = [v["Volume"] for v in json.load(open(sys.argv[1]))]
sys.exit(0 if paths == [sys.argv[2]] else 1)' "$W/list.json" "$path" || fail "the volume object $path was not rebuilt"
        echo "new instance $pid2 rebuilt $path"
        luksvolumectl detach "$path"
        nothing_left
}
point "kill -9 with a volume attached: the next call re-activates $UNIT and the object is rebuilt (same path); then detached" kill_rebuild

# ───────────────────────────── the watchdog ───────────────────────────────
# The daemon feeds systemd's watchdog from its event loop
# (sd_event_set_watchdog).  With WatchdogSec=3s a daemon that did not would
# be killed (SIGABRT) 3 s after its start; a healthy one lives on.  The
# drop-in stays until the VM ends: one daemon-reload fewer (each costs
# seconds here), and nothing after this needs the shipped 3 min.
watchdog() {
        mkdir -p "$(dirname "$WATCHDOG_DROPIN")"
        printf '[Service]\nWatchdogSec=3s\n' >"$WATCHDOG_DROPIN"
        systemctl daemon-reload
        systemctl stop "$UNIT"
        luksvolumectl probe >/dev/null
        local pid cursor
        cursor=$(journal_cursor)
        load_props "$UNIT" MainPID WatchdogUSec
        pid=${P[MainPID]}
        [[ ${P[WatchdogUSec]} == 3s ]] || fail "WatchdogUSec is ${P[WatchdogUSec]}"
        tr '\0' '\n' <"/proc/$pid/environ" | grep '^WATCHDOG_' || true
        sleep 10
        load_props "$UNIT" MainPID ActiveState NRestarts
        echo "after 10 s: MainPID ${P[MainPID]} (was $pid), ${P[ActiveState]}, NRestarts=${P[NRestarts]}"
        [[ ${P[MainPID]} == "$pid" && ${P[ActiveState]} == active ]] ||
                fail "the daemon did not survive 10 s with WatchdogSec=3s"
        [[ ${P[NRestarts]} == 0 ]] || fail "NRestarts=${P[NRestarts]}"
        ! journal_since "$cursor" -o cat -u "$UNIT" | grep -i 'watchdog' || fail "the journal reports a watchdog timeout"
}
point "WatchdogSec=3s: the healthy daemon keeps its MainPID for 10 s, NRestarts=0, no watchdog timeout" watchdog

# ────────────────────────────── the journal ───────────────────────────────
journal() {
        # The daemon's structured entries (its stderr is the journal).
        journalctl -q -b -u "$UNIT" -o json >"$W/journal.json"
        python3 - "$W/journal.json" "$GUEST" "$IMG1" "$IMG2" "$MID_ATTACHED" "$MID_DETACHED" "$MID_REFUSED" <<'PY'
import json, sys
path, guest, img1, img2, attached, detached, refused = sys.argv[1:]
entries = [json.loads(l) for l in open(path)]
ours = [e for e in entries if "MESSAGE_ID" in e and e.get("LUKSVOLUME_DOMAIN") == guest]
def has(mid, src, mode):
    return any(e["MESSAGE_ID"] == mid and e.get("LUKSVOLUME_SOURCE") == src and
               e.get("LUKSVOLUME_MODE") == mode and e.get("LUKSVOLUME_TARGET", "").startswith("sd")
               for e in ours)
want = [(attached, img1, "native"), (detached, img1, "native"),
        (attached, img2, "cryptsetup"), (detached, img2, "cryptsetup")]
missing = [w for w in want if not has(*w)]
refusals = [e for e in ours if e["MESSAGE_ID"] == refused]
for e in ours:
    print(e["MESSAGE_ID"], {k: v for k, v in e.items() if k.startswith("LUKSVOLUME_")})
if missing or not refusals:
    print("missing:", missing, "refusals:", len(refusals))
    sys.exit(1)
PY
        # No passphrase anywhere in this boot's journal, in any field of any
        # entry -- and the search does find what is there (a canary).
        local canary=lvsd-canary-$RANDOM$RANDOM
        logger -t lvsd-test "$canary"
        wait_until 10 bash -c "journalctl -q -b -o export | grep -qaF '$canary'" ||
                fail "the canary did not show up: the search cannot see the journal"
        journalctl -q -b -o export >"$W/journal.export"
        echo "journal: $(grep -c '^__CURSOR=' "$W/journal.export") entries searched"
        ! grep -aF -e "$PASS" -e "$WRONG" "$W/journal.export" || fail "a passphrase is in the journal"
        # Also the journal files themselves (nothing hidden by the export).
        ! grep -raF -e "$PASS" -e "$WRONG" /var/log/journal /run/log/journal 2>/dev/null ||
                fail "a passphrase is in a journal file"
}
point "journal: MESSAGE_ID + LUKSVOLUME_* entries for attach/detach in both modes and the refusals; no passphrase anywhere" journal

final() {
        nothing_left
        "${virsh[@]}" destroy "$GUEST" >/dev/null
}
point "nothing left behind at the end" final
