#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside tests/sandbox/sandbox.sh (see tests/demo.sh).
set -euo pipefail
# shellcheck source=../sandbox/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../sandbox/lib.sh"

ctl=$LUKSVOLUMECTL
virsh=(virsh -q -c qemu:///system)
cd "$LV_SANDBOX_DIR"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A LUKS1 image whose plaintext starts with 64 KiB of 0x5a"
umask 077
printf 'demo passphrase' > passphrase
lv_make_luks1_image volume.img passphrase
qemu-io --object secret,id=s0,file=passphrase \
        --image-opts driver=luks,key-secret=s0,file.filename=volume.img \
        -c 'write -P 0x5a 0 64k' >/dev/null
echo "volume.img: $(stat -c %s volume.img) bytes, LUKS1"

step "A running guest (TCG, no OS)"
lv_start_guest demo

step "What the host can do, and what the volume is"
run "$ctl" probe
run "$ctl" probe "$LV_SANDBOX_DIR/volume.img"

step "Attach (the passphrase goes to the daemon through a pipe, never argv)"
run "$ctl" attach demo "$LV_SANDBOX_DIR/volume.img" --bus=scsi --passphrase-file=passphrase
run "$ctl" list
run "$ctl" status demo:sda

step "libvirt holds an ephemeral, private secret; the disk carries <encryption>"
"${virsh[@]}" secret-list
"${virsh[@]}" dumpxml demo | sed -n '/<disk/,/<\/disk>/p'

step "QEMU decrypts: qemu-io inside the guest's QEMU reads the plaintext pattern"
node=$("${virsh[@]}" qemu-monitor-command demo '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' |
        python3 -c 'import json,sys; print([n["node-name"] for n in json.load(sys.stdin)["return"] if n["drv"]=="luks"][0])')
"${virsh[@]}" qemu-monitor-command demo --hmp "qemu-io $node \"read -P 0x5a 0 64k\"" >/dev/null
for _ in $(seq 50); do
        grep -q "read 65536/65536" /var/log/libvirt/qemu/demo.log && break
        sleep 0.1
done
grep -E "read 65536/65536|Pattern verification" /var/log/libvirt/qemu/demo.log
echo "(no /dev/mapper device exists on the host: $(ls /dev/mapper 2>/dev/null | grep -vc control) mappings)"

step "Detach"
run "$ctl" detach demo:sda
run "$ctl" list
echo "secrets left: $("${virsh[@]}" secret-list | wc -l)"

step "Done; the sandbox and everything in it goes away now"
