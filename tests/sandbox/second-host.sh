#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A second libvirt "host" inside a sandbox.sh sandbox, for migration tests:
# run from inside the sandbox (host A), it makes a mount namespace of its
# own (same pid and network namespaces: QEMU's migration stream goes over
# the loopback, and everything dies with the sandbox's PID 1) with fresh
# tmpfs state, and starts there what sandbox.sh starts for A: a system bus
# (the same policy, activating the daemon), polkitd and libvirtd with
# virtlogd — libvirtd with a host_uuid of its own, or libvirt would refuse
# to migrate "to the same host".
#
# Shared with A: the sandbox's scratch directory $LV_SANDBOX_DIR (the
# images, under the same path), and SHARED (a directory in it) where host B
# puts what A's side needs to reach:
#   SHARED/bus              B's system bus (a second <listen>)
#   SHARED/libvirt/         B's libvirtd sockets (unix_sock_dir): connect A's
#                           clients with qemu+unix:///system?socket=SHARED/libvirt/libvirt-sock
#   SHARED/log/             B's /var/log/libvirt (its QEMU logs)
#   SHARED/bus.log          B's bus log: the output of B's daemon
#
# Usage: second-host.sh SHARED DAEMON [DAEMON_ARG...]
# Prints "ready" on stdout once everything answers, then sleeps until it is
# killed (B's processes live until the sandbox ends).  Exit status 1 and no
# "ready" if anything fails.

set -euo pipefail

readonly PROG=second-host.sh
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

(($# >= 2)) || die "usage: $PROG SHARED DAEMON [DAEMON_ARG...]"

if [[ -z ${LV_SECOND_HOST_INNER:-} ]]; then
    [[ -n ${LV_SANDBOX_DIR:-} ]] || die "run me inside sandbox.sh"
    export LV_SECOND_HOST_INNER=1
    exec unshare --mount --propagation private -- "$BASH" "$(realpath "${BASH_SOURCE[0]}")" "$@"
fi
unset LV_SECOND_HOST_INNER

shared=$1 daemon=$(realpath "$2")
shift 2
daemon_args=("$@")
SB=$LV_SANDBOX_DIR
PRIV=/run/lvsandbox
case $shared in "$SB"/*) ;; *) die "SHARED must be inside $SB" ;; esac

wait_for() {
    local timeout_s=$1; shift
    local deadline=$(($(date +%s%N) + timeout_s * 1000000000))
    until "$@"; do
        (($(date +%s%N) < deadline)) || return 1
        sleep 0.02
    done
}

mkdir -p "$shared/libvirt" "$shared/log/qemu" "$shared/.stash"
chmod 0755 "$shared" "$shared/log"
# What A's setup made that B starts from (A's /run is about to be hidden).
rm -rf "$shared/.stash"/*
cp -a "$PRIV/bus" "$shared/.stash/bus"
cp -a /etc/libvirt "$shared/.stash/etc-libvirt"

# --- filesystems: fresh tmpfs everywhere A has one, but the scratch dir ------
# The scratch directory lives on A's /run: park a bind mount of it while /run
# is replaced, then move it back to the same path.
mount -n --bind "$SB" /var/cache/libvirt
mount -n -t tmpfs -o mode=0755,nosuid,nodev hostb-run /run
mkdir -p "$SB"
mount -n --move /var/cache/libvirt "$SB"
for d in /var/lib/libvirt /var/cache/libvirt; do
    mount -n -t tmpfs -o mode=0755 "hostb${d//\//-}" "$d"
done
mount -n -t tmpfs -o mode=1777,nosuid,nodev hostb-dev-shm /dev/shm
mount -n --bind "$shared/log" /var/log/libvirt
mount -n -t tmpfs -o mode=0755 hostb-etc-libvirt /etc/libvirt
cp -a "$shared/.stash/etc-libvirt/." /etc/libvirt/
mkdir -p "$PRIV" /run/libvirt /run/dbus /run/cryptsetup /run/lock \
         /var/lib/libvirt/images /var/cache/libvirt/qemu
chmod 0700 /run/cryptsetup
cp -a "$shared/.stash/bus" "$PRIV/bus"
chmod 0711 "$PRIV"

# --- bus -------------------------------------------------------------------------
# A's configuration, listening on a second socket A can reach.
sed -i -e "s|</busconfig>|  <listen>unix:path=$shared/bus</listen>\n</busconfig>|" "$PRIV/bus/system.conf"
quote_exec() {
    local out="" w
    for w in "$@"; do
        out+=" '${w//\'/\'\\\'\'}'"
    done
    echo "${out# }"
}
cat >"$PRIV/bus/services/org.example.LuksVolume1.service" <<EOF
[D-BUS Service]
Name=org.example.LuksVolume1
Exec=$(quote_exec "$daemon" "${daemon_args[@]}")
User=root
EOF
: >"$shared/bus.log"
chmod 0644 "$shared/bus.log"
rm -f "$shared/bus"
dbus-daemon --config-file="$PRIV/bus/system.conf" --nofork --nopidfile --nosyslog \
    </dev/null >>"$shared/bus.log" 2>&1 &
wait_for 10 test -S "$shared/bus" || { tail -n 20 "$shared/bus.log" >&2; die "B's bus did not come up"; }

name_has_owner() {
    dbus-send --system --print-reply=literal --reply-timeout=2000 \
        --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q true
}
/usr/lib/polkit-1/polkitd --no-debug </dev/null >>"$shared/polkitd.log" 2>&1 &
wait_for 10 name_has_owner org.freedesktop.PolicyKit1 ||
    { tail -n 20 "$shared/polkitd.log" >&2; die "B's polkitd did not claim its name"; }

# --- libvirt -----------------------------------------------------------------------
host_uuid=$(cat /proc/sys/kernel/random/uuid)
cat >>/etc/libvirt/libvirtd.conf <<EOF

# Added by luksvolumed's second test host.
host_uuid = "$host_uuid"
unix_sock_dir = "$shared/libvirt"
EOF
# B's own clients (its daemon, virsh inside) use the default path.
for s in libvirt-sock libvirt-sock-ro libvirt-admin-sock; do
    ln -sf "$shared/libvirt/$s" "/run/libvirt/$s"
done
rm -f "$shared/libvirt"/libvirt-*sock*
log_level=${LV_SANDBOX_LIBVIRT_LOG_LEVEL:-3}
LIBVIRT_LOG_OUTPUTS="$log_level:file:/var/log/libvirt/virtlogd.log" virtlogd -d </dev/null ||
    die "B's virtlogd -d failed"
LIBVIRT_LOG_OUTPUTS="$log_level:file:/var/log/libvirt/libvirtd.log" libvirtd -d </dev/null ||
    die "B's libvirtd -d failed"
wait_for 20 test -S "$shared/libvirt/libvirt-sock" ||
    { tail -n 20 /var/log/libvirt/libvirtd.log >&2; die "B's libvirtd socket did not appear"; }

say "host B ready (host_uuid $host_uuid, bus $shared/bus)"
echo ready
exec sleep infinity
