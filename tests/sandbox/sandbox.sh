#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run one command inside a throwaway sandbox that holds the real stack the
# service talks to: libvirtd + virtlogd (qemu:///system, TCG guests), a private
# D-Bus system bus with activation, and polkitd with the project's policy and
# a writable rules directory.  Nothing is changed on the host:
#
#   - the script re-executes itself as PID 1 of new pid/mount/net/ipc
#     namespaces, so every process it starts (and every process the bus
#     activates) dies and is reaped with it;
#   - all state lives on tmpfs mounts private to that mount namespace
#     (/run, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt,
#     /etc/libvirt, /dev/shm);
#   - test users come from bind-mounted copies of /etc/passwd and /etc/group;
#   - libvirt is told not to use cgroups (they are host-global);
#   - loop devices (the only host-global objects tests create) whose backing
#     file lives in the sandbox are detached on exit.
#
# Usage:
#   sandbox.sh --daemon PATH --dbus-policy FILE --polkit-policy FILE
#              [--daemon-arg ARG]... -- CMD [ARGS...]
#
# CMD runs with:
#   DBUS_SYSTEM_BUS_ADDRESS  the private system bus
#   LV_SANDBOX_DIR           scratch dir (tmpfs, 0755, reachable by libvirt-qemu)
#   LV_DAEMON_LOG            the bus log; bus-activated services (the daemon)
#                            inherit the bus's stdout/stderr, so it is their log
#   LV_POLKIT_RULES_DIR      writable, watched by polkitd (/etc/polkit-1/rules.d)
#   LV_LIBVIRT_URI           qemu:///system
#   LV_BUS_SERVICES_DIR      the bus's activation directory
#   TMPDIR                   $LV_SANDBOX_DIR/tmp
#
# Exit status: CMD's status.  77 (skip) when not root or a required host
# program is missing; if CMD is given --tap, a skip is instead the TAP plan
# "1..0 # SKIP …" on stdout and status 0 (meson's TAP protocol counts 77 as an
# error).  1 when the sandbox itself could not be set up: a broken harness
# must fail, not skip.
#
# Environment knobs:
#   LV_SANDBOX_LIBVIRT_LOG_LEVEL  libvirtd/virtlogd log level (1 debug .. 4 error; default 3)
#   LV_SANDBOX_VERBOSE=1          print each setup step with a timestamp
#   LV_SANDBOX_SAVE_LOGS=DIR      on exit, copy the bus/daemon, polkitd, libvirtd
#                                 and QEMU logs to DIR (a host path) before they vanish

set -euo pipefail
shopt -s nullglob

readonly PROG=sandbox.sh
readonly BUS_NAME=org.example.LuksVolume1
readonly BUS_SOCKET=/run/dbus/system_bus_socket
readonly LIBVIRT_SOCKET=/run/libvirt/libvirt-sock
readonly POLKITD=/usr/lib/polkit-1/polkitd
readonly STOCK_SYSTEM_CONF=/usr/share/dbus-1/system.conf
readonly STOCK_POLKIT_BUS_CONF=/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf
# Test identities (see the passwd/group copies below).
readonly LV_GROUP_GID=4200 LV_USER_UID=4201 LV_ADMIN_UID=4202

say()  { printf '%s: %s\n' "$PROG" "$*" >&2; }
# A skip is exit status 77, except when the command speaks TAP (an argument
# after -- is "--tap", as for GTest programs run with meson's protocol 'tap',
# which counts any non-zero status as an error): then it is an empty TAP plan
# with a SKIP directive on stdout and status 0.
skip() {
    say "SKIP: $*"
    if ((tap)); then
        printf '1..0 # SKIP %s\n' "$*"
        exit 0
    fi
    exit 77
}
die()  { say "ERROR: $*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $PROG --daemon PATH --dbus-policy FILE --polkit-policy FILE
             [--daemon-arg ARG]... -- CMD [ARGS...]
EOF
    exit 1
}

daemon="" dbus_policy="" polkit_policy=""
daemon_args=()
orig_args=("$@")
while (($#)); do
    case $1 in
        --daemon)        (($# >= 2)) || usage; daemon=$2; shift 2 ;;
        --dbus-policy)   (($# >= 2)) || usage; dbus_policy=$2; shift 2 ;;
        --polkit-policy) (($# >= 2)) || usage; polkit_policy=$2; shift 2 ;;
        --daemon-arg)    (($# >= 2)) || usage; daemon_args+=("$2"); shift 2 ;;
        --)              shift; break ;;
        -h|--help)       usage ;;
        *)               say "unknown argument '$1'"; usage ;;
    esac
done
(($# >= 1)) || usage
cmd=("$@")
tap=0
for a in "${cmd[@]:1}"; do [[ $a != --tap ]] || tap=1; done
[[ -n $daemon && -n $dbus_policy && -n $polkit_policy ]] || usage

# ---------------------------------------------------------------------------
# Outside: checks, then re-exec as PID 1 of fresh namespaces.
# ---------------------------------------------------------------------------
if [[ -z ${LV_SANDBOX_INNER:-} ]]; then
    ((EUID == 0)) || skip "needs root (mount/pid namespaces, libvirtd qemu:///system, loop devices)"
    for p in unshare mount virtlogd libvirtd dbus-daemon dbus-send "$POLKITD" losetup ip; do
        command -v "$p" >/dev/null || skip "required program '$p' is not installed"
    done
    [[ -r $STOCK_SYSTEM_CONF ]] || skip "$STOCK_SYSTEM_CONF missing (dbus-daemon not installed?)"
    [[ -r $STOCK_POLKIT_BUS_CONF ]] || skip "$STOCK_POLKIT_BUS_CONF missing (polkitd not installed?)"
    getent passwd libvirt-qemu >/dev/null ||
        skip "user libvirt-qemu missing (install libvirt-daemon-system)"
    # These are build products / project files: their absence is a harness bug.
    [[ -x $daemon ]] || die "--daemon '$daemon' is not an executable file"
    [[ -r $dbus_policy ]] || die "--dbus-policy '$dbus_policy' is not readable"
    [[ -r $polkit_policy ]] || die "--polkit-policy '$polkit_policy' is not readable"
    for id in $LV_USER_UID $LV_ADMIN_UID; do
        ! getent passwd "$id" >/dev/null || die "uid $id already exists on the host; test users would clash"
    done
    ! getent group "$LV_GROUP_GID" >/dev/null || die "gid $LV_GROUP_GID already exists on the host"

    # --fork: the child, not unshare, is PID 1 of the new pid namespace.
    # --kill-child: if unshare is killed (e.g. SIGKILL from a test runner's
    # timeout), the sandbox's PID 1 gets SIGKILL, which takes the whole
    # namespace with it (measured: nothing survives; only loop devices, which
    # the EXIT trap could not detach, would be left).  A SIGTERM to the
    # process group reaches PID 1's trap and cleans up properly.
    # --net/--ipc: libvirtd and QEMU see only a loopback interface and their
    # own SysV IPC, so nothing (bridges, firewall rules) can leak to the host.
    export LV_SANDBOX_INNER=1
    exec unshare --pid --fork --kill-child --mount --propagation private --mount-proc \
        --net --ipc -- "$BASH" "$(realpath "${BASH_SOURCE[0]}")" "${orig_args[@]}"
fi

# ---------------------------------------------------------------------------
# Inside: PID 1 of the sandbox.
# ---------------------------------------------------------------------------
unset LV_SANDBOX_INNER
(($$ == 1)) || die "internal: expected to be PID 1 of the sandbox, am $$"

daemon=$(realpath "$daemon")
dbus_policy=$(realpath "$dbus_policy")
polkit_policy=$(realpath "$polkit_policy")

t0=$EPOCHREALTIME
elapsed_ms() {
    local now=$EPOCHREALTIME
    local a=$((10#${t0/./})) b=$((10#${now/./}))
    echo $(((b - a) / 1000))
}
step() { [[ ${LV_SANDBOX_VERBOSE:-} != 1 ]] || say "[$(elapsed_ms) ms] $*"; }

# Print the tail of a log file after a setup failure.
show_log() {
    local f=$1
    if [[ -s $f ]]; then
        say "---- last lines of $f ----"
        tail -n 30 "$f" >&2 || true
        say "----"
    fi
}

# Poll until "$@" succeeds, at most $1 seconds.  Returns 1 on timeout.
wait_for() {
    local timeout_s=$1; shift
    local deadline=$(($(date +%s%N) + timeout_s * 1000000000))
    until "$@"; do
        (($(date +%s%N) < deadline)) || return 1
        sleep 0.02
    done
}

SB=/run/lvtest             # == LV_SANDBOX_DIR
declare -A own_devs=()
PRIV=/run/lvsandbox        # sandbox internals (configs, stashes), not for tests

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ -n ${LV_SANDBOX_SAVE_LOGS:-} && -d $SB ]]; then
        mkdir -p "$LV_SANDBOX_SAVE_LOGS" &&
            cp -a "$SB"/*.log /var/log/libvirt/. "$LV_SANDBOX_SAVE_LOGS"/ 2>/dev/null ||
            say "warning: could not save logs to $LV_SANDBOX_SAVE_LOGS"
    fi
    # Loop devices are host-global; a leftover one would pin this sandbox's
    # tmpfs forever.  Detach every one whose backing file lives on one of our
    # tmpfs mounts, recognised by device number: paths would not do, every
    # sandbox has the same /run/lvtest and parallel sandboxes must not detach
    # each other's devices.  (Autoclear makes this lazy if QEMU still holds
    # the device open: it goes when QEMU dies with the namespace.)
    local dev majmin back
    while read -r dev majmin back; do
        [[ -n ${own_devs[$majmin]:-} ]] || continue
        say "detaching leftover loop device $dev ($back)"
        losetup -d "$dev" 2>/dev/null || say "warning: could not detach $dev ($back)"
    done < <(losetup --list --noheadings --output NAME,BACK-MAJ:MIN,BACK-FILE 2>/dev/null || true)
    exit "$rc"
}
trap cleanup EXIT
# Under set -e a failing setup command ends the script; say which one.
trap 'say "ERROR: setup command failed (line $LINENO): $BASH_COMMAND"' ERR
# PID 1 gets no default signal handling: without these traps a SIGTERM from
# the outside would be ignored.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

step "namespaces ready"

# --- filesystems -----------------------------------------------------------
# mount -n everywhere: without it libmount creates /run/mount (for its utab)
# on the host's /run before the first tmpfs hides it.
mount -n -t tmpfs -o mode=0755,nosuid,nodev lvsandbox-run /run || die "cannot mount tmpfs on /run"
mkdir -p "$PRIV" "$SB" "$SB/tmp"
chmod 0700 "$PRIV"
# QEMU runs as libvirt-qemu and must reach images in $SB.
chmod 0755 "$SB"
chmod 1777 "$SB/tmp"

# /etc/libvirt: a private, writable copy of the host's configuration.
mkdir -p "$PRIV/etc-libvirt"
cp -a /etc/libvirt/. "$PRIV/etc-libvirt/" || die "cannot copy /etc/libvirt"
mount -n -t tmpfs -o mode=0755 lvsandbox-etc-libvirt /etc/libvirt || die "cannot mount tmpfs on /etc/libvirt"
cp -a "$PRIV/etc-libvirt/." /etc/libvirt/
rm -rf "$PRIV/etc-libvirt"
# No autostarted networks: nothing here needs dnsmasq or a bridge.
rm -f /etc/libvirt/qemu/networks/autostart/*.xml
# cgroups are host-global (and per-domain names would clash between parallel
# sandboxes): keep libvirt out of them.
cat >>/etc/libvirt/qemu.conf <<'EOF'

# Added by luksvolumed's test sandbox.
cgroup_controllers = [ ]
EOF

for d in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
    mount -n -t tmpfs -o mode=0755 "lvsandbox${d//\//-}" "$d" || die "cannot mount tmpfs on $d"
done
mount -n -t tmpfs -o mode=1777,nosuid,nodev lvsandbox-dev-shm /dev/shm || die "cannot mount tmpfs on /dev/shm"
# Device numbers of our tmpfs mounts (see cleanup).
for d in /run /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /dev/shm; do
    own_devs[$(stat -c '%Hd:%Ld' "$d")]=1
done
mkdir -p /run/libvirt /run/dbus /run/cryptsetup /run/lock \
         /var/log/libvirt/qemu /var/lib/libvirt/images /var/cache/libvirt/qemu
chmod 0700 /run/cryptsetup

# Test users.  polkitd resolves group membership by user name through NSS,
# dbus-daemon by uid: both read these copies.
cp /etc/passwd "$PRIV/passwd"
cp /etc/group "$PRIV/group"
cat >>"$PRIV/passwd" <<EOF
lvuser:x:$LV_USER_UID:$LV_USER_UID:luksvolumed test user:/nonexistent:/usr/sbin/nologin
lvadmin:x:$LV_ADMIN_UID:$LV_ADMIN_UID:luksvolumed test admin:/nonexistent:/usr/sbin/nologin
EOF
cat >>"$PRIV/group" <<EOF
lvuser:x:$LV_USER_UID:
lvadmin:x:$LV_ADMIN_UID:
lvgroup:x:$LV_GROUP_GID:lvadmin
EOF
chmod 0644 "$PRIV/passwd" "$PRIV/group"
mount -n --bind "$PRIV/passwd" /etc/passwd
mount -n --bind "$PRIV/group" /etc/group

# polkit: only the project's actions, no rules except what tests write.
mkdir -p "$PRIV/polkit-actions" "$PRIV/polkit-rules-empty" "$SB/polkit-rules"
# polkitd only reads *.policy files.
actions_name=$(basename "$polkit_policy")
[[ $actions_name == *.policy ]] || actions_name+=.policy
cp "$polkit_policy" "$PRIV/polkit-actions/$actions_name"
chmod 0755 "$PRIV/polkit-actions" "$PRIV/polkit-rules-empty" "$SB/polkit-rules"
chmod 0644 "$PRIV/polkit-actions"/*
mount -n --bind "$PRIV/polkit-actions" /usr/share/polkit-1/actions
mount -n --bind "$PRIV/polkit-rules-empty" /usr/share/polkit-1/rules.d
mount -n --bind "$SB/polkit-rules" /etc/polkit-1/rules.d
# polkitd (which drops to its own user) must traverse $PRIV to see the actions.
chmod 0711 "$PRIV"

ip link set lo up 2>/dev/null || true
step "filesystems ready"

# --- private system bus ------------------------------------------------------
mkdir -p "$PRIV/bus/system.d" "$PRIV/bus/services"
# dbus-daemon only reads *.conf from an includedir: keep the suffix right so
# a differently named policy is not silently ignored.
policy_name=$(basename "$dbus_policy")
[[ $policy_name == *.conf ]] || policy_name+=.conf
cp "$dbus_policy" "$PRIV/bus/system.d/$policy_name"
cp "$STOCK_POLKIT_BUS_CONF" "$PRIV/bus/system.d/"

# The stock configuration minus what cannot work here: <user> (we stay root so
# activated services run as root), <fork/> and <pidfile> (we track the
# process), <servicehelper> (the setuid helper refuses to run here), <syslog/>
# (no syslog: log to stderr instead), and every host service/policy
# directory (only the project's policy must make the service work).
sed -E \
    -e '/<user>[^<]*<\/user>/d' \
    -e '/<fork\/>/d' \
    -e '/<pidfile>[^<]*<\/pidfile>/d' \
    -e '/<servicehelper>[^<]*<\/servicehelper>/d' \
    -e '/<syslog\/>/d' \
    -e '/<standard_system_servicedirs\/>/d' \
    -e '/<includedir>[^<]*<\/includedir>/d' \
    -e '/<include [^>]*>\/etc\/dbus-1\/[^<]*<\/include>/d' \
    -e "s|<listen>[^<]*</listen>|<listen>unix:path=$BUS_SOCKET</listen>|" \
    -e "s|</busconfig>|  <servicedir>$PRIV/bus/services</servicedir>\n  <includedir>$PRIV/bus/system.d</includedir>\n</busconfig>|" \
    "$STOCK_SYSTEM_CONF" >"$PRIV/bus/system.conf"
# If the stock file ever changes shape, fail here rather than mysteriously later.
for bad in '<user>' '<fork/>' '<pidfile>' '<servicehelper>' '<standard_system_servicedirs/>'; do
    ! grep -qF "$bad" "$PRIV/bus/system.conf" ||
        die "could not strip $bad from $STOCK_SYSTEM_CONF (unexpected layout)"
done
grep -qF "<listen>unix:path=$BUS_SOCKET</listen>" "$PRIV/bus/system.conf" ||
    die "no <listen> element found in $STOCK_SYSTEM_CONF"

# Activation files.  Exec= is split by dbus-daemon with shell-like quoting;
# single-quote every word.
quote_exec() {
    local out="" w
    for w in "$@"; do
        out+=" '${w//\'/\'\\\'\'}'"
    done
    echo "${out# }"
}
cat >"$PRIV/bus/services/$BUS_NAME.service" <<EOF
[D-BUS Service]
Name=$BUS_NAME
Exec=$(quote_exec "$daemon" "${daemon_args[@]}")
User=root
EOF
# polkitd is started directly below (so setup can wait for it); this file
# only mirrors a real system, where polkitd is bus-activated, in case it exits.
cat >"$PRIV/bus/services/org.freedesktop.PolicyKit1.service" <<EOF
[D-BUS Service]
Name=org.freedesktop.PolicyKit1
Exec=$POLKITD --no-debug
User=root
EOF

export LV_SANDBOX_DIR=$SB
export LV_DAEMON_LOG=$SB/bus.log
export LV_DAEMON_BINARY=$daemon
export LV_POLKIT_RULES_DIR=$SB/polkit-rules
export LV_LIBVIRT_URI=qemu:///system
# Tests that take polkitd away remove its activation file from here.
export LV_BUS_SERVICES_DIR=$PRIV/bus/services
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$BUS_SOCKET
export TMPDIR=$SB/tmp
: >"$LV_DAEMON_LOG"
chmod 0644 "$LV_DAEMON_LOG"

# stdin from /dev/null: activated services must not compete for the
# terminal.  Their stdout/stderr are the bus's: $LV_DAEMON_LOG.
dbus-daemon --config-file="$PRIV/bus/system.conf" --nofork --nopidfile --nosyslog \
    </dev/null >>"$LV_DAEMON_LOG" 2>&1 &
bus_pid=$!
bus_ready() { [[ -S $BUS_SOCKET ]] || ! kill -0 "$bus_pid" 2>/dev/null; }
wait_for 10 bus_ready && kill -0 "$bus_pid" 2>/dev/null && [[ -S $BUS_SOCKET ]] || {
    show_log "$LV_DAEMON_LOG"
    die "dbus-daemon did not come up on $BUS_SOCKET"
}
# dbus-daemon skips an included file it cannot parse and carries on; a
# broken project policy must fail here, not as puzzling AccessDenied later.
if grep -q "Encountered error" "$LV_DAEMON_LOG"; then
    show_log "$LV_DAEMON_LOG"
    die "dbus-daemon rejected part of its configuration (is $dbus_policy valid?)"
fi
step "bus ready"

name_has_owner() {
    dbus-send --system --print-reply=literal --reply-timeout=2000 \
        --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q true
}

"$POLKITD" --no-debug </dev/null >>"$SB/polkitd.log" 2>&1 &
polkitd_pid=$!
polkit_ready() { name_has_owner org.freedesktop.PolicyKit1 || ! kill -0 "$polkitd_pid" 2>/dev/null; }
wait_for 10 polkit_ready && name_has_owner org.freedesktop.PolicyKit1 || {
    show_log "$SB/polkitd.log"
    show_log "$LV_DAEMON_LOG"
    die "polkitd did not claim org.freedesktop.PolicyKit1"
}
# polkitd skips a .policy file it cannot parse without a word; make sure it
# knows every action the project's file declares.
mapfile -t want_actions < <(grep -oE '<action[[:space:]]+id="[^"]+"' "$polkit_policy" | sed -E 's/.*id="([^"]+)"/\1/')
((${#want_actions[@]})) || die "no <action id=…> found in $polkit_policy"
known_actions=$(dbus-send --system --print-reply --reply-timeout=5000 \
    --dest=org.freedesktop.PolicyKit1 /org/freedesktop/PolicyKit1/Authority \
    org.freedesktop.PolicyKit1.Authority.EnumerateActions string: 2>&1) ||
    die "polkitd EnumerateActions failed: $known_actions"
for a in "${want_actions[@]}"; do
    grep -qF "string \"$a\"" <<<"$known_actions" ||
        die "polkitd did not load action $a from $polkit_policy (invalid policy file?)"
done
step "polkitd ready (${#want_actions[@]} actions)"

# --- libvirt -------------------------------------------------------------------
# Started after the bus so that libvirtd finds (our) polkit and system bus.
log_level=${LV_SANDBOX_LIBVIRT_LOG_LEVEL:-3}
LIBVIRT_LOG_OUTPUTS="$log_level:file:/var/log/libvirt/virtlogd.log" virtlogd -d </dev/null ||
    { show_log /var/log/libvirt/virtlogd.log; die "virtlogd -d failed"; }
LIBVIRT_LOG_OUTPUTS="$log_level:file:/var/log/libvirt/libvirtd.log" libvirtd -d </dev/null ||
    { show_log /var/log/libvirt/libvirtd.log; die "libvirtd -d failed"; }
wait_for 20 test -S "$LIBVIRT_SOCKET" || {
    show_log /var/log/libvirt/libvirtd.log
    die "libvirtd socket $LIBVIRT_SOCKET did not appear within 20 s"
}
ln -s /var/log/libvirt "$SB/libvirt-logs"
step "libvirtd ready"

say "sandbox ready in $(elapsed_ms) ms (scratch $SB, bus log $LV_DAEMON_LOG)"

# --- the command ---------------------------------------------------------------
# Run in the background and wait, so the signal traps above can fire while it
# runs; its stdin is passed through explicitly (a background job would
# otherwise get /dev/null).
trap - ERR
set +e
"${cmd[@]}" <&0 &
cmd_pid=$!
wait "$cmd_pid"
rc=$?
set -e
if ((rc != 0)); then
    say "command exited with status $rc; daemon log: $LV_DAEMON_LOG (gone with the sandbox)"
    show_log "$LV_DAEMON_LOG"
fi
# In a sanitizer build every daemon instance that ran here (and every one
# that exited, with its leak check) wrote its reports to this log: any
# report fails the test, whatever the test itself concluded.
if ((rc == 0)) && grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$LV_DAEMON_LOG"; then
    say "sanitizer report in the daemon log:"
    grep -E -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$LV_DAEMON_LOG" | head -60 >&2
    rc=1
fi
exit "$rc"
