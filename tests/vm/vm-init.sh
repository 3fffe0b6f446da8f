#!/bin/busybox sh
# shellcheck shell=dash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# /init of the test VM's initramfs (built by run-in-vm.sh).  Its only job is
# to assemble the root file system and hand over to stage 2:
#
#   /          overlay: lower = the host's / over 9p (exported read-only by
#              QEMU), upper = tmpfs.  Everything looks writable to the tests
#              (libvirtd, sandbox.sh, cp -a, mkdir /run/...), writes stay in
#              the VM's RAM, and the host can never be modified.
#   /lvvm/work the per-run scratch directory of the host (9p, read-write):
#              stage 2 script, command, environment, exit status.
#
# Then switch_root and exec stage 2 (a bash script from the work share, run
# by the host's bash) -- or, with lvvm.init=systemd on the kernel command
# line (run-in-vm.sh --systemd), the host's systemd as PID 1, whose test
# target runs stage 2 as a service.  On any failure: a message on the console (ttyS0, the
# host's console log) and power off, so the host sees "no exit status" at
# once instead of waiting for its timeout.

export PATH=/bin
/bin/busybox --install -s /bin

fail() {
    echo "lvvm-init: FATAL: $*" >/dev/console
    sync
    poweroff -f
    # poweroff should not return; if it does, PID 1 exiting panics the
    # kernel and panic=-1 + QEMU's -no-reboot end the VM.
    exit 1
}

mkdir -p /proc /sys /dev /lower /rw /newroot
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
# The kernel only automounts devtmpfs on a real root, not on the initramfs.
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"

# Modules, in dependency order (the list was made by modprobe --show-depends
# at build time and the files were decompressed, so plain insmod suffices).
# A "?" prefix marks an optional one (a speed-up only).
while read -r ko; do
    case $ko in
        "") ;;
        \?*) insmod "/modules/${ko#?}" 2>/dev/null || true ;;
        *) insmod "/modules/$ko" || fail "insmod $ko" ;;
    esac
done </modules/load-order

# 9p options: msize large enough that reading executables and libraries over
# the virtio transport is not dominated by per-message overhead; cache=loose
# lets the guest keep pages of the (unchanging, read-only) host root.  The
# work share is written from both sides: no caching there.
P9OPTS=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$P9OPTS,ro,cache=loose" hostroot /lower || fail "mount 9p hostroot"
mount -t tmpfs -o mode=0755 lvvm-rw /rw || fail "mount tmpfs /rw"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work lvvm-root /newroot ||
    fail "mount overlay root"
mkdir -p /newroot/lvvm/work
mount -t 9p -o "$P9OPTS,cache=none" work /newroot/lvvm/work || fail "mount 9p work"
[ -r /newroot/lvvm/work/stage2.sh ] || fail "no stage2.sh on the work share"

# Who becomes PID 1 (run-in-vm.sh puts lvvm.init=systemd on the kernel
# command line for --systemd): stage 2 itself, or the host's systemd, which
# then runs stage 2 from the test unit run-in-vm.sh put on the work share.
init_mode=script
case " $(cat /proc/cmdline) " in
    *" lvvm.init=systemd "*) init_mode=systemd ;;
esac
if [ "$init_mode" = systemd ]; then
    [ -x /newroot/lib/systemd/systemd ] || fail "no /lib/systemd/systemd on the host root"
    # The host's fstab names disks this VM does not have: systemd would wait
    # for them (and then fail local-fs.target).  An empty machine-id makes
    # systemd generate a transient one instead of reusing the host's (it
    # would be the same in every VM and the host's journal id).  Both files
    # are written to the overlay's tmpfs layer, not to the host.
    : >/newroot/etc/fstab || fail "write /etc/fstab"
    : >/newroot/etc/machine-id || fail "write /etc/machine-id"
    # The host may be a container (this project's CI machines are): its
    # marker files, seen through the overlay, would make systemd believe it
    # runs in a container -- ignore the kernel command line (systemd.unit=),
    # skip udev and hardware units.  Deleting them here only whites them
    # out in the overlay.
    rm -f /newroot/.dockerenv /newroot/run/.containerenv /newroot/run/systemd/container
    # Keep the host's /tmp as the script mode does: Debian's tmpfiles.d/
    # tmp.conf empties /tmp at boot, and the command, its arguments or the
    # build directory may live there.  (/etc/tmpfiles.d overrides the file
    # of the same name below /usr/lib.)
    mkdir -p /newroot/etc/tmpfiles.d || fail "mkdir /etc/tmpfiles.d"
    : >/newroot/etc/tmpfiles.d/tmp.conf || fail "override tmpfiles.d/tmp.conf"
    # The test target and unit (tests/vm/lvvm-test.*); /etc wins over the
    # host's units of the same name, were there any.
    cp /newroot/lvvm/work/units/* /newroot/etc/systemd/system/ || fail "install the test units"
fi

# switch_root deletes the initramfs' files; keep /dev (devtmpfs) by moving
# it, drop the rest (stage 2, or systemd, mounts proc and sys again).
mount --move /dev /newroot/dev || fail "move /dev"
umount /sys /proc
if [ "$init_mode" = systemd ]; then
    # systemd.unit= on the kernel command line names lvvm-test.target.
    # shellcheck disable=SC2093  # reached only if switch_root fails
    exec switch_root /newroot /lib/systemd/systemd
else
    # shellcheck disable=SC2093  # reached only if switch_root fails
    exec switch_root /newroot /bin/bash /lvvm/work/stage2.sh
fi
fail "switch_root failed"
