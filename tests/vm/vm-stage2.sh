#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stage 2 of the test VM (see run-in-vm.sh): PID 1 after switch_root, run by
# the host's bash from the work share (/lvvm/work).  Sets up the few kernel
# file systems and devices a Debian userland expects, makes device-mapper and
# loop devices available, runs the command with its stdout on ttyS1 and its
# stderr on ttyS2 (kept by the host), records its exit status on the work
# share and powers the VM off.
#
# Everything that goes wrong before the command runs is reported on the
# console (ttyS0) and leaves no status file: the host then fails with the
# console's tail.
#
# With --systemd (run-in-vm.sh --systemd) it is not PID 1 but the service
# lvvm-test.service under the host's systemd: systemd has mounted the
# kernel file systems and /run and owns power-off (the unit's
# ExecStopPost=), so only the part from the modules on is done here.

W=/lvvm/work
exec </dev/null >/dev/console 2>&1

under_systemd=0
[[ ${1:-} != --systemd ]] || under_systemd=1

say() { echo "lvvm-stage2: $*"; }
# Progress with guest uptime, for the console log (boot-time profiling).
mark() { local up; read -r up _ </proc/uptime; say "[$up s] $*"; }
off() {
    sync
    # Under systemd the unit's ExecStopPost= powers off once we are gone.
    ((!under_systemd)) || exit 0
    # reboot(2) straight away; the VM has nothing to shut down cleanly.
    /bin/busybox poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 5
    exit 1    # PID 1 exiting panics the kernel; panic=-1 + -no-reboot end QEMU
}
fail() { say "FATAL: $*"; off; }

set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# The duties of PID 1 that systemd does itself when it is PID 1.
pid1_setup() {
    mount -t proc proc /proc || fail "mount /proc"
    mount -t sysfs sysfs /sys || fail "mount /sys"
    mark "stage 2 started"
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts || fail "mount /dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm || fail "mount /dev/shm"
    mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
    # devtmpfs has no /dev/fd & co.; bash process substitution needs /dev/fd.
    ln -sfn /proc/self/fd /dev/fd
    ln -sfn /proc/self/fd/0 /dev/stdin
    ln -sfn /proc/self/fd/1 /dev/stdout
    ln -sfn /proc/self/fd/2 /dev/stderr
    ln -sfn pts/ptmx /dev/ptmx 2>/dev/null || true

    # A fresh, empty /run: the host's (seen through the overlay) holds sockets,
    # pid files and locks of host processes (libvirtd, dbus) at the very paths
    # the sandbox's own daemons use.  /tmp stays the host's, seen through the
    # overlay (writes go to RAM): build directories and paths that meson passes
    # may well live there.
    mount -t tmpfs -o mode=0755,nosuid,nodev lvvm-run /run || fail "mount /run"
    mkdir -p /run/lock /run/user
    # /etc/libvirt, /var/lib, /var/cache, /var/log need no tmpfs of their own:
    # the overlay root already keeps every write in RAM (copy-up), and
    # sandbox.sh puts its own tmpfs on the libvirt directories anyway.
    mark "file systems ready"
    hostname lvvm 2>/dev/null || true
    ip link set lo up 2>/dev/null || true
}
if ((under_systemd)); then
    mark "stage 2 started (under systemd)"
else
    pid1_setup
fi

# device-mapper, dm-crypt and loop come from the initramfs; should one be
# missing, the host's modprobe (same kernel, same module tree) can still
# load it.  dm-crypt's cipher modules (xts, ...) are requested by the kernel
# on demand through the same /sbin/modprobe.
for m in dm_mod dm_crypt loop; do
    [[ -d /sys/module/$m ]] || modprobe "$m" || fail "modprobe $m"
done
# devtmpfs creates the nodes asynchronously; give it a moment.
for _ in $(seq 50); do
    [[ -c /dev/mapper/control && -c /dev/loop-control ]] && break
    sleep 0.1
done
mark "modules loaded"
[[ -c /dev/mapper/control ]] || fail "/dev/mapper/control did not appear"
[[ -c /dev/loop-control ]] || fail "/dev/loop-control did not appear"
[[ -d /sys/module/dm_crypt ]] || fail "dm_crypt is not loaded"

# The command's environment and argv (written by run-in-vm.sh with %q).
# shellcheck source=/dev/null
source "$W/env.sh" || fail "cannot read $W/env.sh"
# shellcheck source=/dev/null
source "$W/cmd.sh" || fail "cannot read $W/cmd.sh"    # sets cmd_cwd, cmd=()
# shellcheck disable=SC2154  # cmd_cwd and cmd come from cmd.sh
cd -- "$cmd_cwd" || fail "cannot cd to $cmd_cwd inside the VM"

# Raw serial lines: no \n -> \r\n, no echo, no signals from the line.
for t in /dev/ttyS1 /dev/ttyS2; do
    stty -F "$t" raw -echo 2>/dev/null || fail "stty $t"
done
cut -d' ' -f1 /proc/uptime >"$W/started"
mark "running the command"

# A heartbeat on the console every 10 s while the command runs: the host
# (run-in-vm.sh, watch_lockup) takes a VM whose heartbeat stops as frozen.
(
    while sleep 10; do
        read -r up _ </proc/uptime
        echo "lvvm-heartbeat $up"
    done
) &
heartbeat_pid=$!

# Its own session and process group, no controlling terminal.
# shellcheck disable=SC2154
setsid "${cmd[@]}" </dev/null >/dev/ttyS1 2>/dev/ttyS2 &
wait $!
rc=$?
kill "$heartbeat_pid" 2>/dev/null || true

# Closing the last file descriptor of a serial tty waits until its output
# has left the UART, so once nothing holds ttyS1/ttyS2 all output reached
# the host.  Leftover background processes of the command may still hold
# them: powering off then may lose only their output.
echo "$rc" >"$W/status.tmp" && mv "$W/status.tmp" "$W/status"
say "command exited with status $rc after $(cut -d' ' -f1 /proc/uptime) s of uptime"
off
