// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Every piece of text the page shows, in one place, for translators.
//
// Each entry goes through cockpit.gettext, so a po.LANG.js loaded by
// cockpit's usual mechanism translates it; without one the English text
// below is used.  Entries with placeholders are cockpit.format() templates
// ($0, $1, …): translate the words, keep the placeholders.
//
// index.html holds no text of its own: elements carry data-text="KEY"
// (their text content) or data-text-ATTR="KEY" (an attribute) and
// luksvolume.js fills them in from this table.

const _ = cockpit.gettext;

export const S = Object.freeze({
    pageTitle: _("Encrypted guest volumes"),
    pageSubtitle: _("LUKS volumes attached to running virtual machines by luksvolumed"),

    // Buttons and headings
    attachOpen: _("Attach volume…"),
    probeOpen: _("Inspect a source…"),
    hostHeading: _("Host"),
    volumesHeading: _("Attached volumes"),
    close: _("Close"),
    cancel: _("Cancel"),

    // Host facts (Probe(""))
    hostService: _("luksvolumed"),
    hostLibvirt: _("libvirt"),
    hostHypervisor: _("Hypervisor"),
    hostNative: _("Native LUKS (QEMU decrypts)"),
    hostDmCrypt: _("dm-crypt on the host"),
    available: _("available"),
    notAvailable: _("not available"),
    hostLoading: _("Asking the service…"),
    hostRefused: _("Not available to your account."),
    accessDenied: _("Your account may not attach or detach volumes here: turn on administrative access, or ask an administrator."),
    hostFailed: _("The host's facts could not be read: $0"),

    // Volume list
    volumesLoading: _("Loading volumes…"),
    volumesEmpty: _("No encrypted volume is attached to any guest."),
    guestUuid: _("UUID $0"),
    colTarget: _("Target"),
    colBus: _("Bus"),
    colSource: _("Source"),
    colProtection: _("Decryption"),
    colState: _("State"),
    colAccess: _("Access"),
    colSize: _("Size"),
    colActions: _("Actions"),
    nativeBadge: _("QEMU"),
    nativeText: _("decrypted by QEMU — no cleartext on the host"),
    cryptsetupBadge: _("Host"),
    cryptsetupText: _("decrypted on the host (dm-crypt)"),
    cryptsetupMapper: _("cleartext device $0"),
    unknownModeBadge: _("?"),
    unknownModeText: _("mode “$0”"),
    luksVersion: _("LUKS$0"),
    stateAttached: _("attached"),
    stateDetaching: _("detaching"),
    readOnly: _("read-only"),
    readWrite: _("read-write"),
    detach: _("Detach"),
    detachLabel: _("Detach $0 from $1"),
    detaching: _("Detaching…"),
    retryDetach: _("Try detaching again"),
    retryDetachLabel: _("Try detaching $0 from $1 again"),
    detachBusy: _("The guest has not released $0 yet, so it is still attached (state “detaching”). The guest's operating system must let go of the disk — unmount it there — then try again. The service finishes the clean-up by itself as soon as the guest releases it."),
    detachFailed: _("Detaching failed: $0"),
    detached: _("Detached $0 from $1."),
    attached: _("Attached $0 to $1 as $2."),

    // Row menu and its actions
    rowMenu: _("Actions for $0 on $1"),
    actionDetach: _("Detach…"),
    actionResize: _("Resize…"),
    actionVerify: _("Check a passphrase…"),
    actionChange: _("Change a passphrase…"),
    actionAdd: _("Add a passphrase…"),
    actionRemove: _("Remove a passphrase…"),
    actionRearm: _("Rearm for restore…"),
    titleResize: _("Resize $0 on $1"),
    titleVerify: _("Check a passphrase of $0"),
    titleChange: _("Change a passphrase of $0"),
    titleAdd: _("Add a passphrase to $0"),
    titleRemove: _("Remove a passphrase from $0"),
    titleRearm: _("Rearm $0 for the restore of $1"),
    submitResize: _("Resize"),
    submitVerify: _("Check"),
    submitChange: _("Change"),
    submitAdd: _("Add"),
    submitRemove: _("Remove"),
    submitRearm: _("Rearm"),
    fieldSize: _("New size (MiB)"),
    fieldSizeHelp: _("What the guest sees. Now: $0."),
    fieldAllowShrink: _("Allow shrinking (the data past the new end is lost)"),
    fieldCurrentPassphrase: _("Current passphrase"),
    fieldExistingPassphrase: _("A passphrase that opens it now"),
    fieldRemovePassphrase: _("The passphrase to remove"),
    fieldNewPassphrase: _("New passphrase"),
    fieldConfirmPassphrase: _("New passphrase again"),
    fieldForce: _("Even if it is the last one (the volume can never be opened again)"),
    keysHelp: _("Only the LUKS header changes; the guest keeps using the volume. The next attach needs the new passphrase."),
    removeWarning: _("The key slot this passphrase opens is erased. Keep another passphrase that opens the volume."),
    rearmHelp: _("The guest is saved with this disk; libvirt lost its key. Give the passphrase so that the restore works."),
    resizedTo: _("$0 on $1 is now $2."),
    verified: _("The passphrase opens key slot $0 of $1."),
    changed: _("The passphrase of $0 was changed."),
    added: _("Added a passphrase to $0 (key slot $1)."),
    removed: _("Removed a passphrase from $0."),
    rearmed: _("$0 on $1 is ready for the restore."),
    working: _("Working… (deriving a key can take a few seconds)"),
    notAllowedRow: _("Your account may not change this volume."),
    readOnlyNoResize: _("A read-only volume cannot be resized."),
    cryptsetupWhy: _("Why on the host: $0"),
    cryptsetupWarning: _("Its cleartext exists on this host as a block device: anyone with root here can read it."),

    // Detach confirmation
    detachTitle: _("Detach $0 from $1?"),
    detachBody: _("The guest loses the disk $0 ($1). Unmount it inside the guest first, or the guest may lose data written to it."),

    // Attach dialog
    attachTitle: _("Attach an encrypted volume"),
    fieldGuest: _("Guest"),
    guestState: _("$0 ($1)"),
    fieldGuestHelp: _("Name or UUID of a running virtual machine."),
    fieldSource: _("Source"),
    fieldSourceHelp: _("Absolute path of a LUKS image file or block device on this host."),
    fieldSourcePlaceholder: _("/var/lib/libvirt/images/data.img"),
    fieldPassphrase: _("Passphrase"),
    fieldPassphraseHelp: _("Sent once to the service and cleared from this page right away."),
    fieldPassphraseCleared: _("The passphrase was cleared from the page; enter it again."),
    fieldBus: _("Bus"),
    fieldTarget: _("Target"),
    fieldTargetHelp: _("Optional: vdX for virtio, sdX for the other buses. Empty: the next free one."),
    fieldTargetPlaceholder: _("next free"),
    fieldMode: _("Decryption"),
    modeAuto: _("Automatic (QEMU when possible)"),
    modeNative: _("QEMU only — no cleartext on the host"),
    modeCryptsetup: _("dm-crypt on the host"),
    fieldReadOnly: _("Attach read-only"),
    attachSubmit: _("Attach"),
    attaching: _("Attaching… (the key derivation can take a few seconds)"),

    // Probe dialog
    probeTitle: _("Inspect a source"),
    probeSubmit: _("Inspect"),
    probing: _("Reading the LUKS header…"),
    probeLuksVersion: _("LUKS version"),
    probeUuid: _("LUKS UUID"),
    probeCipher: _("Cipher"),
    probeKeySize: _("Key size"),
    probeKeySizeBits: _("$0 bits"),
    probeKeyslots: _("Active key slots"),
    probeSize: _("Size"),
    probeNative: _("Decrypted by QEMU"),
    probeNativeYes: _("yes — automatic mode attaches it without cleartext on the host"),
    probeNativeNo: _("no — $0"),
    probeAttached: _("Attached"),
    probeAttachedYes: _("yes, as $0 on $1"),
    probeAttachedOther: _("yes ($0)"),
    probeAttachedNo: _("no"),
    obstacleLuks2: _("QEMU decrypts only LUKS1 and this is LUKS$0: the host would decrypt it with dm-crypt."),
    obstacleHost: _("this host's libvirt or QEMU is too old for QEMU to decrypt it: the host would decrypt it with dm-crypt."),
    obstacleUnknown: _("the service would decrypt it on the host."),

    // Errors, as sentences next to the field they concern
    errRequired: _("This field is required."),
    errAbsolute: _("Give an absolute path (starting with /)."),
    errBadPassphrase: _("This passphrase opens none of the volume's key slots."),
    errNotLuks: _("This is not a LUKS volume: no valid LUKS header was found."),
    errAlreadyAttached: _("This volume is already attached. $0"),
    errInUse: _("This source is in use elsewhere. $0"),
    errNoSuchDomain: _("There is no guest with this name or UUID."),
    errDomainNotRunning: _("This guest is not running; volumes can only be attached to running guests."),
    errTargetInUse: _("The guest already has a disk on this target. Choose another or leave it empty."),
    errNotSupported: _("This mode cannot be used for this volume here. $0"),
    errInvalid: _("$0"),
    errBusy: _("The service is busy: $0"),
    errActionNotSupported: _("Not possible for this volume: $0"),
    errConfirm: _("The two new passphrases differ."),
    errSize: _("Give a size in MiB, a whole number greater than 0."),
    errFailed: _("The service reported an error: $0"),
    errNoSuchVolume: _("This volume no longer exists."),

    // Page-level banners
    refused: _("You are not allowed to do this."),
    refusedAttach: _("You are not allowed to attach this volume to this guest."),
    refusedDetach: _("You are not allowed to detach this volume."),
    refusedProbe: _("You are not allowed to inspect this source."),
    refusedResize: _("You are not allowed to resize this volume."),
    refusedKeys: _("You are not allowed to manage this volume's passphrases."),
    refusedNeedsAuth: _("This needs administrative access, which is off."),
    serviceUnavailable: _("The luksvolumed service is not available on this host: $0"),
    dismiss: _("Dismiss"),
});

// cockpit.format with the table's templates.
export function f(template, ...args) {
    return cockpit.format(template, ...args);
}
