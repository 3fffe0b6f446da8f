#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Proves the dm-crypt test VM end to end, so that failures of the daemon's
# cryptsetup-mode tests (run the same way) say something about the daemon:
#
#   run-in-vm.sh -- bash sandbox.sh ARGS -- bash test-vm-smoke.sh --tap
#
# i.e. inside the VM (real device-mapper) and inside the namespace sandbox
# (private libvirtd, TCG guests), exactly like test-cryptsetup:
#   - device-mapper with dm-crypt and loop devices are there;
#   - a LUKS2 file on a loop device opens with `cryptsetup open`, the
#     mapping reads back what was written (and the backing device holds
#     only ciphertext), and closes;
#   - a TCG guest starts (no OS, virtio-scsi, acpi), /dev/mapper/NAME
#     attaches to it as a type='block' disk on bus scsi, shows up in the live
#     XML, QEMU reads the plaintext through it, it detaches (gone from the
#     live XML) and the mapping then closes.
#
# Output: TAP on stdout (meson protocol 'tap'); each step depends on the
# ones before, so the first failure bails out.  Diagnostics on stderr.

set -euo pipefail

[[ ${1:-} == --tap ]] || { echo "usage: $0 --tap (inside run-in-vm.sh + sandbox.sh)" >&2; exit 1; }

readonly URI=${LV_LIBVIRT_URI:-qemu:///system}
readonly DOM=lvvm-smoke
readonly MAP=lvvm-smoke-crypt
readonly PASS='vm smoke passphrase'
readonly PLAN=12

n=0
echo "1..$PLAN"
# Run "$@" as step DESC: ok, or not ok + its output + bail out.  It runs in
# a subshell with errexit in force (bash ignores -e inside an if condition,
# so this is done with set +e around it); steps hand state on through files.
step() {
    local desc=$1 rc; shift
    set +e
    ( set -e; "$@" ) >"$W/step.out" 2>&1
    rc=$?
    set -e
    n=$((n + 1))
    if ((rc == 0)); then
        echo "ok $n - $desc"
        sed '/^[[:space:]]*$/d; s/^/# /' "$W/step.out"
    else
        echo "not ok $n - $desc"
        sed '/^[[:space:]]*$/d; s/^/# /' "$W/step.out"
        echo "Bail out! step $n failed (status $rc)"
        exit 1
    fi
}
ms_since() { local now=$EPOCHREALTIME; echo $(((10#${now/./} - 10#${1/./}) / 1000)); }

[[ -n ${LV_SANDBOX_DIR:-} && ${LV_VM:-} == 1 ]] || {
    echo "Bail out! not inside run-in-vm.sh + sandbox.sh (LV_VM / LV_SANDBOX_DIR unset)"
    exit 1
}
W=$LV_SANDBOX_DIR/vm-smoke
mkdir -p "$W"
chmod 0755 "$W"
img=$W/luks2.img
loopdev=""

cleanup() {
    virsh -q -c "$URI" destroy "$DOM" >/dev/null 2>&1 || true
    [[ ! -e /dev/mapper/$MAP ]] || cryptsetup close "$MAP" 2>/dev/null || true
    [[ -z $loopdev ]] || losetup -d "$loopdev" 2>/dev/null || true
}
trap cleanup EXIT

# --- device-mapper in the VM -------------------------------------------------
check_dm() {
    [[ -c /dev/mapper/control ]] || { echo "/dev/mapper/control missing"; return 1; }
    [[ -d /sys/module/dm_crypt ]] || { echo "dm_crypt not loaded"; return 1; }
    [[ -c /dev/loop-control ]] || { echo "/dev/loop-control missing"; return 1; }
    dmsetup version
    echo "kernel $(uname -r)"
}
step "device-mapper, dm-crypt and loop devices are available" check_dm

# --- cryptsetup on a loop device ---------------------------------------------
# A cheap KDF: the test is about dm-crypt, not about key stretching.
make_image() {
    truncate -s 32M "$img"
    printf '%s' "$PASS" | cryptsetup luksFormat --batch-mode --type luks2 \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - "$img"
    losetup -f --show "$img" >"$W/loopdev"
    echo "LUKS2 image on $(<"$W/loopdev")"
}
step "LUKS2 image on a loop device" make_image
loopdev=$(<"$W/loopdev")

open_map() {
    local t0=$EPOCHREALTIME
    printf '%s' "$PASS" | cryptsetup open --type luks2 --key-file - "$loopdev" "$MAP"
    [[ -b /dev/mapper/$MAP ]] || { echo "/dev/mapper/$MAP is not a block device"; return 1; }
    dmsetup table "$MAP" | sed -E 's/ [0-9a-f]{32,} / <key> /'   # never print the key
    echo "opened in $(ms_since "$t0") ms"
}
step "cryptsetup open $loopdev $MAP" open_map

# 64 KiB of 0x5a at offset 0: the pattern the guest-side check reads below.
pattern() { head -c 65536 /dev/zero | tr '\0' '\132'; }
write_read() {
    pattern | dd of="/dev/mapper/$MAP" bs=64K count=1 iflag=fullblock oflag=direct status=none
    cmp <(pattern) <(dd if="/dev/mapper/$MAP" bs=64K count=1 iflag=direct status=none)
    # The backing device holds ciphertext: the pattern must not be in it.
    # (grep -c reads everything: grep -q would SIGPIPE dd under pipefail.)
    local hits
    hits=$(dd if="$loopdev" bs=1M iflag=direct status=none |
        grep -ca "$(head -c 4096 /dev/zero | tr '\0' 'Z')") || true
    [[ ${hits:-0} == 0 ]] || { echo "plaintext pattern found on $loopdev: not encrypted?"; return 1; }
}
step "write and read back through /dev/mapper/$MAP (ciphertext on $loopdev)" write_read

close_map() {
    cryptsetup close "$MAP"
    [[ ! -e /dev/mapper/$MAP ]] || { echo "/dev/mapper/$MAP still exists"; return 1; }
}
step "cryptsetup close $MAP" close_map

# --- libvirt + a TCG guest ---------------------------------------------------
libvirt_up() {
    virsh -q -c "$URI" version
}
step "libvirtd answers on $URI" libvirt_up

# The guest the environment notes measured: no OS, ACPI (PCI hot-plug needs
# it), a virtio-scsi controller (its disks unplug without guest help).
cat >"$W/domain.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <controller type='scsi' model='virtio-scsi'/>
    <console type='pty'/>
  </devices>
</domain>
EOF
start_guest() {
    local t0=$EPOCHREALTIME
    virsh -q -c "$URI" create "$W/domain.xml"
    [[ $(virsh -q -c "$URI" domstate "$DOM") == running ]]
    echo "guest started in $(ms_since "$t0") ms"
}
step "a transient TCG guest starts" start_guest

reopen() {
    printf '%s' "$PASS" | cryptsetup open --type luks2 --key-file - "$loopdev" "$MAP"
    [[ -b /dev/mapper/$MAP ]]
}
step "cryptsetup open again for the guest" reopen

cat >"$W/disk.xml" <<EOF
<disk type='block' device='disk'>
  <driver name='qemu' type='raw' cache='none'/>
  <source dev='/dev/mapper/$MAP'/>
  <target dev='sdb' bus='scsi'/>
</disk>
EOF
# (No "virsh | grep -q": grep quitting early SIGPIPEs virsh, and pipefail
# turns a match into a failure.)
live_has_disk() {
    local xml
    xml=$(virsh -c "$URI" dumpxml "$DOM")
    [[ $xml == *"<source dev='/dev/mapper/$MAP'"* ]]
}
attach() {
    local t0=$EPOCHREALTIME
    virsh -q -c "$URI" attach-device "$DOM" "$W/disk.xml" --live
    live_has_disk || { echo "attached, but not in the live XML:"; virsh -c "$URI" dumpxml "$DOM"; return 1; }
    virsh -c "$URI" domblklist "$DOM"
    echo "attached in $(ms_since "$t0") ms"
}
step "/dev/mapper/$MAP attaches as a scsi block disk and is in the live XML" attach

# QEMU itself reads the plaintext through the attached disk: HMP qemu-io on
# the disk's block node prints its verdict into the domain's QEMU log.
guest_reads_plaintext() {
    local log=/var/log/libvirt/qemu/$DOM.log node
    # The guest has no other disk, so the one format node libvirt named
    # (libvirt-N-format, raw over the host_device node) is ours.
    node=$(virsh -c "$URI" qemu-monitor-command "$DOM" --pretty \
        '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
        grep -oE '"node-name": "libvirt-[0-9]+-format"' | head -n1 | cut -d'"' -f4) || true
    [[ -n $node ]] || { echo "no block node found"; return 1; }
    virsh -c "$URI" qemu-monitor-command "$DOM" --hmp "qemu-io $node \"read -P 0x5a 0 64k\""
    for _ in $(seq 50); do
        grep -q 'read 65536/65536 bytes' "$log" 2>/dev/null && { echo "node $node: read -P 0x5a ok"; return 0; }
        grep -q 'Pattern verification failed' "$log" 2>/dev/null && break
        sleep 0.1
    done
    echo "qemu-io on $node did not verify the pattern; QEMU log:"
    tail -n 20 "$log"
    return 1
}
step "QEMU reads the plaintext pattern through the disk" guest_reads_plaintext

detach() {
    local t0=$EPOCHREALTIME
    virsh -q -c "$URI" detach-device "$DOM" "$W/disk.xml" --live
    # Unplug completes asynchronously (virtio-scsi: at once, no guest OS).
    for _ in $(seq 100); do
        live_has_disk || { echo "detached in $(ms_since "$t0") ms"; return 0; }
        sleep 0.1
    done
    echo "still in the live XML after 10 s"
    return 1
}
step "detach: the disk leaves the live XML" detach

close_after() {
    local t0=$EPOCHREALTIME
    # QEMU may drop its last reference to the device a moment after the
    # unplug shows in the XML: retry briefly while the mapping is busy.
    for _ in $(seq 50); do
        cryptsetup close "$MAP" 2>/dev/null && break
        sleep 0.1
    done
    [[ ! -e /dev/mapper/$MAP ]] || { echo "/dev/mapper/$MAP still open:"; dmsetup info "$MAP"; return 1; }
    echo "closed in $(ms_since "$t0") ms"
}
step "cryptsetup close after detach" close_after
