# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by the shell tests and the demo that run inside sandbox.sh (and
# the VM): the two fixtures they all need, made one way.
# shellcheck shell=bash

# lv_make_luks1_image IMAGE KEYFILE
# An 18 MiB LUKS1 image (16 MiB payload) whose passphrase is KEYFILE's bytes,
# readable by QEMU (libvirt-qemu).  cryptsetup with a fixed PBKDF2 iteration
# count: fast, and unlike qemu-img no benchmark that a busy machine upsets.
lv_make_luks1_image() {
        truncate -s 18M "$1" &&
                cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file="$2" "$1" &&
                chmod 0644 "$1"
}

# lv_start_guest NAME
# A transient, OS-less TCG guest: ACPI (PCI hot-plug needs it) and a
# virtio-scsi controller (whose disks are released on detach without a
# guest OS).
lv_start_guest() {
        virsh -q -c qemu:///system create /dev/stdin >/dev/null <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <controller type='scsi' model='virtio-scsi'/>
    <console type='pty'/>
  </devices>
</domain>
XML
}
