#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The systemd suite, host side (tests/systemd/meson.build): get the Debian
# package of this tree, then boot a TCG VM with the host's systemd as PID 1
# (tests/vm/run-in-vm.sh --systemd) and run test-systemd.sh in it, which
# installs that package with dpkg and checks the service the way an
# administrator meets it.  TAP on stdout (test-systemd.sh's); everything
# else on stderr.
#
#   run-systemd-vm.sh --source-dir SRC --deb-cache DIR --vm-cache-dir DIR
#                     [--timeout SEC]
#
# The package: $LV_SYSTEMD_DEB if set (a .deb built elsewhere, e.g. a
# release artifact); otherwise tests/packaging/test-deb.sh builds one from
# SRC (and checks it: ~40 s) into DIR, a directory of the build tree, under
# a name that hashes the sources it is built from -- so repeated runs on an
# unchanged tree reuse it, and a fresh clone needs nothing outside its
# build directory.  Changes below tests/ do not change the package and do
# not cause a rebuild.
#
# Skips (TAP "1..0 # SKIP") only when there is no usable kernel image for
# the VM, like the vm suite; checked first, before the package is built.
set -euo pipefail

readonly PROG=run-systemd-vm.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
readonly run_in_vm=$here/../vm/run-in-vm.sh

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage() {
        echo "usage: $PROG --source-dir SRC --deb-cache DIR --vm-cache-dir DIR [--timeout SEC]" >&2
        exit 1
}

src="" deb_cache="" vm_cache="" timeout_s=1020
while (($#)); do
        case $1 in
                --source-dir)   (($# >= 2)) || usage; src=$2; shift 2 ;;
                --deb-cache)    (($# >= 2)) || usage; deb_cache=$2; shift 2 ;;
                --vm-cache-dir) (($# >= 2)) || usage; vm_cache=$2; shift 2 ;;
                --timeout)      (($# >= 2)) || usage; timeout_s=$2; shift 2 ;;
                *) usage ;;
        esac
done
[[ -n $src && -n $deb_cache && -n $vm_cache ]] || usage
src=$(cd "$src" && pwd)

# ── skip early: no kernel, no VM (and no reason to build a package) ───────
set +e
reason=$(bash "$run_in_vm" --check 2>&1 >/dev/null)
rc=$?
set -e
if ((rc == 77)); then
        reason=${reason##*SKIP: }
        echo "1..0 # SKIP $reason"
        exit 0
elif ((rc != 0)); then
        say "$reason"
        echo "Bail out! the VM cannot run here (run-in-vm.sh --check: status $rc)"
        exit 1
fi

# ── the package ───────────────────────────────────────────────────────────
# Hash of what the package is built from: every file git knows or would
# add, except tests/ (only test code; debian/rules runs the unit suite
# from it, but nothing of it is installed).  Without git: no reuse.
source_key() {
        if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
                (cd "$src" && git ls-files -z --cached --others --exclude-standard -- . ':!tests' |
                        while IFS= read -r -d '' f; do
                                [[ -f $f ]] || continue
                                printf '%s\0' "$f"
                        done | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-16
        else
                echo "nogit-$$"
        fi
}

if [[ -n ${LV_SYSTEMD_DEB:-} ]]; then
        deb=$(realpath "$LV_SYSTEMD_DEB")
        [[ -f $deb ]] || { echo "Bail out! LV_SYSTEMD_DEB=$LV_SYSTEMD_DEB is not a file"; exit 1; }
        say "using the package $deb (LV_SYSTEMD_DEB)"
else
        key=$(source_key)
        dir=$deb_cache/$key
        deb=$(find "$dir" -maxdepth 1 -name 'luksvolumed_*.deb' -print -quit 2>/dev/null || true)
        if [[ -z $deb ]]; then
                say "building the package from $src (tests/packaging/test-deb.sh)"
                rm -rf "$deb_cache"
                mkdir -p "$deb_cache"
                # Into a temporary name first: an interrupted build must not
                # leave a directory that looks finished.
                tmp=$(mktemp -d "$deb_cache/.build.XXXXXX")
                if ! LV_DEB_KEEP=$tmp bash "$src/tests/packaging/test-deb.sh" >"$tmp/test-deb.log" 2>&1; then
                        tail -n 40 "$tmp/test-deb.log" >&2
                        echo "Bail out! the Debian package did not build (tests/packaging/test-deb.sh)"
                        exit 1
                fi
                tail -n 1 "$tmp/test-deb.log" >&2
                mv "$tmp" "$dir"
                deb=$(find "$dir" -maxdepth 1 -name 'luksvolumed_*.deb' -print -quit)
        else
                say "reusing $deb (built from the same sources)"
        fi
        [[ -n $deb ]] || { echo "Bail out! test-deb.sh kept no .deb"; exit 1; }
fi

# ── the VM ────────────────────────────────────────────────────────────────
# 3 GiB: systemd, journald, udevd, dbus, polkitd, logind, libvirtd and a
# nested TCG guest, all in an overlay root in RAM.  The .deb and the test
# are read from the host root (shared read-only), so they need no copying.
exec bash "$run_in_vm" --systemd --mem 3072 --timeout "$timeout_s" --cache-dir "$vm_cache" -- \
        bash "$here/test-systemd.sh" --deb "$deb" --tap
