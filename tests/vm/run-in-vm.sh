#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run one command as root inside a throwaway TCG virtual machine that boots
# the host's Debian kernel and sees the host's root file system read-only.
#
# Why: the host kernel here has no device-mapper, so the daemon's cryptsetup
# mode (a dm-crypt mapping handed to the guest as /dev/mapper/NAME) can only
# be exercised under a kernel that has it.  Debian's kernel (package
# linux-image-amd64) has dm-mod/dm-crypt as modules.
#
# Usage:
#   run-in-vm.sh [--mem MiB] [--smp N] [--timeout SEC] [--cache-dir DIR]
#                [--env NAME]... [--systemd] -- CMD [ARGS...]
#   run-in-vm.sh --check
#
# --systemd: the host's systemd becomes PID 1 of the VM (vm-init.sh) and
#   runs CMD from a test unit (lvvm-test.service, pulled in by
#   lvvm-test.target: sysinit.target and dbus.socket; no timers, no
#   multi-user.target), so CMD sees a booted Debian system: journald, udevd,
#   the system bus, logind and polkitd on demand; CMD starts what else it
#   needs (libvirtd.socket).  In the VM /etc/fstab and /etc/machine-id are
#   empty (the host's fstab names disks the VM lacks) and /tmp is not
#   emptied at boot.  Give it 3 GiB (--mem 3072).
# --check: only look for a usable kernel: exit 0 if there is one, 77 (with
#   the reason on stderr) if the VM would be skipped; nothing is built or
#   booted.  For callers with slow preparations to do before a VM run.
#
# The VM:
#   - QEMU TCG (KVM is unusable on these machines), -smp 2, 1536 MiB;
#   - kernel /boot/vmlinuz-6.1.*-amd64 (the newest with a module tree), or
#     $LV_VM_KERNEL (its module tree /lib/modules/$LV_VM_KVER, default: the
#     file name's suffix);
#   - booted as the uncompressed vmlinux through its PVH entry (saves the
#     seconds a bzImage spends decompressing itself under TCG), extracted
#     once from the bzImage; the bzImage itself if that is not possible;
#   - an initramfs (busybox-static, vm-init.sh, the virtio/9p/overlay,
#     dm-mod/dm-crypt/loop and xts/AES-NI modules);
#   - vmlinux and initramfs are built on demand into the cache directory
#     (--cache-dir, $LV_VM_CACHE_DIR, default $XDG_CACHE_HOME/luksvolumed-vm)
#     under names that hash their inputs, so they are rebuilt whenever the
#     kernel, its modules, busybox or vm-init.sh change;
#   - root file system: the host's / over 9p, exported READ-ONLY by QEMU,
#     under an overlay whose upper layer is tmpfs (writes stay in the VM);
#     so /etc/libvirt, /var/lib, /var/log, ... are writable copies-on-write
#     in RAM; a fresh tmpfs on /run;
#     device-mapper, dm-crypt and loop loaded (vm-init.sh, vm-stage2.sh);
#   - a per-run scratch directory (read-write 9p share "work") for the
#     command line, environment and exit status; removed at the end.
#
# CMD runs as root with cwd = the caller's cwd and the caller's PATH, LANG/
# LC_*, LV_*, ASAN_*/UBSAN_*/LSAN_*, MALLOC_PERTURB_/MALLOC_CHECK_, G_DEBUG/
# G_SLICE/G_MESSAGES_DEBUG/G_TEST_*, LIBVIRT_DEBUG/LIBVIRT_LOG_* and MESON_*
# variables, plus every --env NAME.  Its stdout and stderr (separate serial
# ports) go to this script's stdout and stderr once the VM is over (not live:
# a VM whose kernel locks up is booted once more, and its first output must
# not mix with the second's; see watch_lockup); stdin is /dev/null.
#
# Exit status: CMD's.  77 (skip) only when no usable kernel image / module
# tree exists; if an argument of CMD is "--tap" (meson's TAP protocol counts
# 77 as an error), the skip is the TAP plan "1..0 # SKIP …" on stdout and
# status 0 — the convention of tests/sandbox/sandbox.sh.  Any other problem
# (missing QEMU or busybox, VM did not boot, timeout) is status 1, with the
# tail of the VM's console on stderr.
#
# Environment knobs:
#   LV_VM_VERBOSE=1       timings and the QEMU command line on stderr
#   LV_VM_KEEP=1          keep the scratch directory (console log) and say where
#   LV_VM_CONSOLE_LOG=F   copy the VM's console log (kernel + init) to F
#   LV_VM_KERNEL, LV_VM_KVER, LV_VM_CACHE_DIR  see above
#   LV_VM_BOOT=bzimage    do not use the PVH vmlinux
#   LV_VM_CPU=MODEL       QEMU -cpu (default max: AES-NI for dm-crypt)
#   LV_VM_LOCKUP_S=SEC    a CPU stuck this long is a locked-up kernel (120)
#   LV_VM_HANG_S=SEC      so is a VM whose heartbeat stops this long (180)
#   LV_VM_LOCKUP_RETRIES=N  boots after a lockup (1; 0: fail at once)
#   LV_VM_APPEND_EXTRA=…  replaces "quiet" on the kernel command line
#                         (e.g. "loglevel=7" to profile the boot)

set -euo pipefail
shopt -s nullglob

readonly PROG=run-in-vm.sh
HERE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
readonly HERE
readonly QEMU=qemu-system-x86_64
readonly BUSYBOX=/bin/busybox
# Modules loaded by the initramfs, in modprobe --show-depends order: what it
# needs to mount the root (virtio PCI transport, 9p over virtio, overlayfs)
# and what the tests need (device-mapper, dm-crypt, loop devices); loading
# them from RAM is much faster than modprobe over 9p.  dm-crypt's cipher
# modules (xts, ...) are loaded on demand by the kernel through the host's
# /sbin/modprobe once the host root is mounted.
readonly INITRAMFS_MODULES=(virtio_pci 9pnet_virtio 9p overlay dm_mod dm_crypt loop)
# Loaded too when the tree has them, failures ignored: the cipher LUKS
# volumes default to (aes-xts-plain64), loaded up front because on-demand
# loading costs several usermode modprobe runs, each slow under TCG; and
# AES-NI, which QEMU's TCG implements natively (aesni_intel refuses to load
# on a CPU model without AES, which is fine).
readonly OPTIONAL_MODULES=(ecb xts aesni_intel)
# Bump when the initramfs layout changes in a way its inputs do not show.
readonly INITRAMFS_FORMAT=1

say()  { printf '%s: %s\n' "$PROG" "$*" >&2; }
die()  { say "ERROR: $*"; exit 1; }
verbose() { [[ ${LV_VM_VERBOSE:-} != 1 ]] || say "$*"; }
usage() {
    cat >&2 <<EOF
usage: $PROG [--mem MiB] [--smp N] [--timeout SEC] [--cache-dir DIR]
             [--env NAME]... [--systemd] -- CMD [ARGS...]
       $PROG --check
EOF
    exit 1
}

mem=1536 smp=2 timeout_s=300
cache_dir=${LV_VM_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/luksvolumed-vm}
extra_env=()
use_systemd=0 check_only=0
while (($#)); do
    case $1 in
        --mem)       (($# >= 2)) || usage; mem=$2; shift 2 ;;
        --smp)       (($# >= 2)) || usage; smp=$2; shift 2 ;;
        --timeout)   (($# >= 2)) || usage; timeout_s=$2; shift 2 ;;
        --cache-dir) (($# >= 2)) || usage; cache_dir=$2; shift 2 ;;
        --env)       (($# >= 2)) || usage; extra_env+=("$2"); shift 2 ;;
        --systemd)   use_systemd=1; shift ;;
        --check)     check_only=1; shift ;;
        --)          shift; break ;;
        -h|--help)   usage ;;
        *)           say "unknown argument '$1'"; usage ;;
    esac
done
(($# >= 1 || check_only)) || usage
cmd=("$@")
[[ $mem =~ ^[0-9]+$ && $smp =~ ^[0-9]+$ && $timeout_s =~ ^[0-9]+$ ]] ||
    die "--mem, --smp and --timeout take positive integers"
tap=0
for a in "${cmd[@]}"; do [[ $a != --tap ]] || tap=1; done

skip() {
    say "SKIP: $*"
    if ((tap && !check_only)); then
        printf '1..0 # SKIP %s\n' "$*"
        exit 0
    fi
    exit 77
}

now_ms() { local t=$EPOCHREALTIME; echo $((10#${t/./} / 1000)); }
t_begin=$(now_ms)

# ---------------------------------------------------------------------------
# Kernel and module tree.  Their absence is the one reason to skip: it is a
# property of the machine, not a bug in the harness.
# ---------------------------------------------------------------------------
modules_ok() {   # KVER: the module tree exists and has every module we load
    local kver=$1 m
    [[ -r /lib/modules/$kver/modules.dep ]] || return 1
    for m in "${INITRAMFS_MODULES[@]}"; do
        modprobe -S "$kver" --show-depends "$m" >/dev/null 2>&1 || return 1
    done
}

command -v modprobe >/dev/null || skip "modprobe (kmod) is not installed: cannot use a kernel module tree"
kernel="" kver=""
if [[ -n ${LV_VM_KERNEL:-} ]]; then
    kernel=$LV_VM_KERNEL
    kver=${LV_VM_KVER:-$(basename "$kernel")}
    kver=${kver#vmlinuz-}
    [[ -r $kernel ]] || skip "LV_VM_KERNEL=$kernel is not a readable file"
    modules_ok "$kver" || skip "no usable module tree /lib/modules/$kver for LV_VM_KERNEL=$kernel"
else
    # Newest first.  Debian's 6.1 kernel is the one measured to work.
    mapfile -t candidates < <(printf '%s\n' /boot/vmlinuz-6.1.*-amd64 | sort -rV)
    for k in "${candidates[@]}"; do
        v=${k#/boot/vmlinuz-}
        if [[ -r $k ]] && modules_ok "$v"; then kernel=$k kver=$v; break; fi
        verbose "ignoring $k: unreadable, or /lib/modules/$v lacks a needed module"
    done
    [[ -n $kernel ]] || skip "no usable Debian 6.1 kernel: need a readable /boot/vmlinuz-6.1.*-amd64 with /lib/modules/<version> holding ${INITRAMFS_MODULES[*]} (install linux-image-amd64)"
fi
verbose "kernel $kernel ($kver)"

# Everything else is a dependency the test setup installs (tests/install-deps.sh):
# missing means broken, not skipped.
command -v "$QEMU" >/dev/null || die "$QEMU is not installed (qemu-system-x86)"
if [[ ! -x $BUSYBOX || $("$BUSYBOX" --list 2>/dev/null) != *switch_root* ]]; then
    die "$BUSYBOX is missing or lacks switch_root (install busybox-static)"
fi
# A dynamically linked busybox would need its libraries in the initramfs.
if command -v file >/dev/null && [[ $(file -L "$BUSYBOX") == *'dynamically linked'* ]]; then
    die "$BUSYBOX is dynamically linked; the initramfs needs busybox-static"
fi
for p in cpio setpriv timeout mkfifo sha256sum; do
    command -v "$p" >/dev/null || die "required program '$p' is not installed"
done
((!check_only)) || exit 0

# ---------------------------------------------------------------------------
# The initramfs, cached.  Its name carries a hash of every input, so a new
# kernel, changed modules, a new busybox or an edited vm-init.sh give a new
# file; builds go to a private temporary directory and are renamed into
# place, so concurrent runs never see a half-written archive.
# ---------------------------------------------------------------------------
# One line per module file, in load order; optional ones prefixed with "?".
mapfile -t mod_paths < <(
    for m in "${INITRAMFS_MODULES[@]}"; do
        modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
    done
    for m in "${OPTIONAL_MODULES[@]}"; do
        modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print "?" $2 }'
    done
) || true
# Keep the first occurrence of each file (a required one wins over "?").
mapfile -t mod_paths < <(printf '%s\n' "${mod_paths[@]}" | awk '{ f = $0; sub(/^\?/, "", f) } !seen[f]++')
((${#mod_paths[@]})) || die "modprobe --show-depends listed no modules for ${INITRAMFS_MODULES[*]}"

key=$( {
    echo "format $INITRAMFS_FORMAT kver $kver"
    printf '%s\n' "${mod_paths[@]}"
    stat -L -c '%n %s %Y' "$BUSYBOX" "${mod_paths[@]#\?}"
    cat "$HERE/vm-init.sh"
} | sha256sum)
key=${key:0:16}
initrd=$cache_dir/initramfs-$kver-$key.cpio

build_initramfs() {
    mkdir -p "$cache_dir"
    local tmp
    tmp=$(mktemp -d "$cache_dir/.build.XXXXXX")
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" RETURN
    local root=$tmp/root p name opt
    mkdir -p "$root/bin" "$root/modules"
    cp "$BUSYBOX" "$root/bin/busybox"
    install -m 0755 "$HERE/vm-init.sh" "$root/init"
    : >"$root/modules/load-order"
    for p in "${mod_paths[@]}"; do
        opt=""
        [[ $p != \?* ]] || { opt="?"; p=${p#\?}; }
        name=$(basename "$p")
        # Decompress here: busybox insmod need not know the kernel's formats.
        case $name in
            *.ko)     cp "$p" "$root/modules/$name" ;;
            *.ko.xz)  name=${name%.xz};  xz -dc "$p" >"$root/modules/$name" ;;
            *.ko.zst) name=${name%.zst}; zstd -qdc "$p" >"$root/modules/$name" ;;
            *.ko.gz)  name=${name%.gz};  gzip -dc "$p" >"$root/modules/$name" ;;
            *)        die "unexpected module file $p" ;;
        esac
        echo "$opt$name" >>"$root/modules/load-order"
    done
    # Uncompressed: the kernel unpacks it fastest, and it is only ~5 MB.
    (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --quiet) >"$tmp/initramfs.cpio"
    mv -f "$tmp/initramfs.cpio" "$initrd"
    # Older archives (other kernel, older inputs) are dead weight now.
    local old
    for old in "$cache_dir"/initramfs-*.cpio; do
        [[ $old == "$initrd" ]] || rm -f "$old"
    done
}
if [[ ! -s $initrd ]]; then
    t=$(now_ms)
    build_initramfs
    verbose "built $initrd in $(($(now_ms) - t)) ms"
fi

# ---------------------------------------------------------------------------
# Boot speed: an x86 bzImage spends seconds under TCG decompressing itself
# (Debian's is xz-compressed).  Debian's kernel has CONFIG_PVH, so QEMU can
# instead load the uncompressed ELF vmlinux and jump to its PVH entry point:
# decompress the bzImage payload once into the cache.  The payload's place
# comes from the boot protocol header (setup_sects at 0x1f1; payload_offset
# and payload_length at 0x248/0x24c, relative to the protected-mode code).
# Any surprise (other compression, no PVH note) falls back to the bzImage.
# ---------------------------------------------------------------------------
le_u() {   # FILE OFFSET BYTES: unsigned little-endian integer
    od -An -t"u$3" -j "$2" -N "$3" --endian=little "$1" | tr -d ' '
}
extract_vmlinux() {   # bzImage -> $vmlinux, or return 1
    local setup_sects poff plen start tmp magic
    [[ $(od -An -c -j $((0x202)) -N4 "$kernel" | tr -d ' ') == HdrS ]] || return 1
    setup_sects=$(le_u "$kernel" $((0x1f1)) 1)
    ((setup_sects)) || setup_sects=4
    poff=$(le_u "$kernel" $((0x248)) 4)
    plen=$(le_u "$kernel" $((0x24c)) 4)
    start=$(((setup_sects + 1) * 512 + poff))
    magic=$(od -An -tx1 -j "$start" -N6 "$kernel" | tr -d ' ')
    payload() {
        dd if="$kernel" bs=64K skip="$start" count="$plen" \
            iflag=skip_bytes,count_bytes status=none
    }
    mkdir -p "$cache_dir"
    tmp=$(mktemp "$cache_dir/.vmlinux.XXXXXX")
    # --single-stream / gzip: the kernel appends the uncompressed size
    # after the compressed stream; it is not part of it.
    case $magic in
        fd377a585a00) payload | xz -dc --single-stream >"$tmp" ;;
        1f8b*)        payload | gzip -dc >"$tmp" ;;
        28b52ffd*)    payload | zstd -qdc >"$tmp" ;;
        *)            false ;;
    esac 2>/dev/null || { rm -f "$tmp"; return 1; }
    # The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, type 18) must be there.
    if [[ $(od -An -c -N4 "$tmp" | tr -d ' ') != 177ELF ]] ||
        ! { command -v readelf >/dev/null &&
            [[ $(readelf -n "$tmp" 2>/dev/null) == *'note type: (0x00000012)'* ]]; }; then
        rm -f "$tmp"; return 1
    fi
    chmod 0644 "$tmp"
    mv -f "$tmp" "$vmlinux"
}
boot_kernel=$kernel
if [[ ${LV_VM_BOOT:-pvh} == pvh ]]; then
    kkey=$(stat -L -c '%n %s %Y' "$kernel" | sha256sum)
    vmlinux=$cache_dir/vmlinux-$kver-${kkey:0:16}
    if [[ -s $vmlinux ]]; then
        boot_kernel=$vmlinux
    else
        t=$(now_ms)
        for old in "$cache_dir"/vmlinux-*; do rm -f "$old"; done
        if extract_vmlinux; then
            boot_kernel=$vmlinux
            verbose "extracted $vmlinux in $(($(now_ms) - t)) ms"
        else
            say "note: could not extract a PVH-bootable vmlinux from $kernel; booting the bzImage (slower)"
        fi
    fi
fi

# ---------------------------------------------------------------------------
# Per-run scratch directory.  Only its work/ subdirectory is shared with the
# VM; console log and FIFOs stay out of the guest's reach.
# ---------------------------------------------------------------------------
run=$(mktemp -d "${TMPDIR:-/tmp}/lvvm.XXXXXX")
work=$run/work
mkdir "$work"
cp "$HERE/vm-stage2.sh" "$work/stage2.sh"
if ((use_systemd)); then
    # vm-init.sh copies these into the VM's /etc/systemd/system.
    mkdir "$work/units"
    cp "$HERE/lvvm-test.target" "$HERE/lvvm-test.service" "$work/units/"
fi

# The command's environment.  LV_SANDBOX_INNER is sandbox.sh's own
# re-exec marker and must never leak into a fresh sandbox.
{
    while read -r name; do
        case $name in
            PATH|LANG|LC_*|TZ|LV_*|ASAN_*|UBSAN_*|LSAN_*|MALLOC_PERTURB_|MALLOC_CHECK_|\
            G_DEBUG|G_SLICE|G_MESSAGES_DEBUG|G_TEST_*|LIBVIRT_DEBUG|LIBVIRT_LOG_*|MESON_*) ;;
            *) continue ;;
        esac
        [[ $name != LV_SANDBOX_INNER ]] || continue
        printf 'export %s=%q\n' "$name" "${!name}"
    done < <(compgen -e)
    for name in "${extra_env[@]}"; do
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env '$name' is not a variable name"
        [[ -v $name ]] && printf 'export %s=%q\n' "$name" "${!name}"
    done
    echo 'export HOME=/root LV_VM=1'
} >"$work/env.sh"
{
    printf 'cmd_cwd=%q\n' "$PWD"
    printf 'cmd=('
    printf ' %q' "${cmd[@]}"
    printf ' )\n'
} >"$work/cmd.sh"

: >"$run/console.log"

qemu_pid="" watch_pid="" finished=0
# shellcheck disable=SC2317  # called from the EXIT trap
show_console() {
    if [[ -s $run/console.log ]]; then
        say "---- last lines of the VM console ----"
        tail -n 40 "$run/console.log" | tr -d '\r' >&2 || true
        say "----"
    else
        say "(the VM console is empty)"
    fi
}
# shellcheck disable=SC2317  # the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT TERM INT HUP
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    [[ -z $watch_pid ]] || kill "$watch_pid" 2>/dev/null || true
    if ((!finished)); then
        show_console
    fi
    if [[ -n ${LV_VM_CONSOLE_LOG:-} ]]; then
        tr -d '\r' <"$run/console.log" >"$LV_VM_CONSOLE_LOG" 2>/dev/null ||
            say "warning: could not copy the console log to $LV_VM_CONSOLE_LOG"
    fi
    if [[ ${LV_VM_KEEP:-} == 1 ]]; then
        say "kept scratch directory $run"
    else
        rm -rf "$run"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted (SIGTERM)"; exit 143' TERM
trap 'say "interrupted (SIGINT)"; exit 130' INT
trap 'say "interrupted (SIGHUP)"; exit 129' HUP

# ttyS0: kernel and init messages, only shown on failure.  ttyS1/ttyS2:
# CMD's stdout/stderr, into files shown once the VM is over (see below).
# "quiet" keeps the console to warnings and worse.
append="console=ttyS0 ${LV_VM_APPEND_EXTRA:-quiet} panic=-1 8250.nr_uarts=3 mitigations=off"
if ((use_systemd)); then
    # lvvm.init=systemd: read by vm-init.sh.  systemd.firstboot=off: the
    # empty machine-id makes this a "first boot", and systemd-firstboot must
    # not wait on the console for answers.
    append+=" lvvm.init=systemd systemd.unit=lvvm-test.target systemd.firstboot=off"
fi
# shellcheck disable=SC2054  # commas belong to QEMU's option syntax
qemu_args=(
    -accel tcg -machine pc -cpu "${LV_VM_CPU:-max}" -smp "$smp" -m "$mem"
    -display none -nodefaults -no-user-config -no-reboot
    -kernel "$boot_kernel" -initrd "$initrd" -append "$append"
    -chardev "file,id=con,path=$run/console.log" -serial chardev:con
    -chardev "file,id=out,path=$run/out.log" -serial chardev:out
    -chardev "file,id=err,path=$run/err.log" -serial chardev:err
    # The host root: readonly=on makes QEMU itself refuse every write, so
    # nothing in the guest (even root, even a bug) can change the host.
    -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
    -fsdev "local,id=work,path=$work,security_model=none,multidevs=remap"
    -device virtio-9p-pci,fsdev=work,mount_tag=work
)
verbose "$QEMU ${qemu_args[*]}"

# A guest kernel that locks up for good.  Seen in runs of the systemd
# suite under TCG with -smp 2 (QEMU 7.2), in two forms: once CPU 0 spinning
# in rcu_preempt and CPU 1 idle, the console printing "watchdog: BUG: soft
# lockup - CPU#0 stuck for 1073s!"; once both emulated CPUs busy (QEMU at
# 200% CPU) with nothing at all on the console, a minute into the test.
# Both look like an interrupt between the emulated CPUs lost by QEMU's
# multi-threaded TCG, not anything the test did, and each time the VM sat
# out its whole --timeout (25 minutes) before failing.  So the console is
# watched: a CPU reported stuck for LOCKUP_S, or no heartbeat from stage 2
# (vm-stage2.sh prints one every 10 s while the command runs) for HANG_S,
# stops the VM, and it boots once more from scratch
# (LV_VM_LOCKUP_RETRIES, default 1), saying so on stderr.  Short stalls
# under host load recover on their own and are left alone.  So that a
# second boot cannot mix its output with the first's, CMD's output is kept
# in files and shown after the boot that counts: no live streaming.
readonly LOCKUP_S=${LV_VM_LOCKUP_S:-120}
readonly HANG_S=${LV_VM_HANG_S:-180}
# shellcheck disable=SC2317  # runs in the background
watch_lockup() {
    local pid=$1 worst beats=0 n last=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        worst=$(grep -ao 'soft lockup - CPU#[0-9]* stuck for [0-9]*s' "$run/console.log" 2>/dev/null |
            sed 's/.* for \([0-9]*\)s/\1/' | sort -n | tail -n 1) || true # none yet: grep fails
        if [[ -n $worst ]] && ((worst >= LOCKUP_S)); then
            echo "a CPU stuck for ${worst} s" >"$run/lockup"
            kill -TERM "$pid" 2>/dev/null || true
            return
        fi
        n=$(grep -ac '^lvvm-heartbeat' "$run/console.log" 2>/dev/null) || true
        if [[ ${n:-0} != "$beats" ]]; then
            beats=${n:-0} last=$SECONDS
        elif ((beats > 0 && SECONDS - last >= HANG_S)); then
            echo "no heartbeat for $((SECONDS - last)) s" >"$run/lockup"
            kill -TERM "$pid" 2>/dev/null || true
            return
        fi
    done
}

boots_left=$((1 + ${LV_VM_LOCKUP_RETRIES:-1}))
while :; do
    boots_left=$((boots_left - 1))
    rm -f "$work/status" "$work/started" "$run/lockup"
    : >"$run/out.log"
    : >"$run/err.log"

    # timeout(1) bounds the VM; --pdeathsig makes both timeout and QEMU die
    # with this script even if it is SIGKILLed (timeout moves itself to its
    # own process group, out of reach of a test runner's group kill).
    t_qemu=$(now_ms)
    setpriv --pdeathsig KILL -- timeout --kill-after=10 "$timeout_s" \
        setpriv --pdeathsig KILL -- "$QEMU" "${qemu_args[@]}" </dev/null 2>>"$run/console.log" &
    qemu_pid=$!
    watch_lockup "$qemu_pid" &
    watch_pid=$!
    set +e
    wait "$qemu_pid"
    qrc=$?
    set -e
    qemu_pid=""
    kill "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
    watch_pid=""
    t_end=$(now_ms)

    [[ -e $run/lockup ]] || break
    say "the VM's kernel locked up ($(<"$run/lockup"), after $(((t_end - t_qemu) / 1000)) s); its console:"
    grep -av '^lvvm-heartbeat' "$run/console.log" | tail -n 6 | tr -d '\r' >&2 || true
    if ((boots_left <= 0)); then
        finished=1
        say "ERROR: the VM's kernel locked up again; giving up (its output so far follows)"
        cat "$run/out.log"
        cat "$run/err.log" >&2
        exit 1
    fi
    say "booting the VM once more (the first boot's output is dropped)"
    : >"$run/console.log"
done
# The boot that counts: CMD's output, stdout and stderr.
cat "$run/out.log"
cat "$run/err.log" >&2

if [[ -f $work/started ]]; then
    boot_ms=$(($(date -r "$work/started" +%s%3N) - t_qemu))
    verbose "boot to command: ${boot_ms} ms (guest uptime $(cat "$work/started") s); whole VM run $((t_end - t_qemu)) ms; total $((t_end - t_begin)) ms"
fi

if ((qrc == 124 || qrc == 137)); then
    die "the VM did not finish within --timeout $timeout_s s (killed)"
fi
if [[ ! -s $work/status ]]; then
    die "the VM ended (QEMU status $qrc) without the command's exit status: it did not boot or stage 2 failed"
fi
rc=$(<"$work/status")
[[ $rc =~ ^[0-9]+$ ]] || die "garbage exit status from the VM: '$rc'"
finished=1
exit "$rc"
