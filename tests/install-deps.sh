#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what building, testing and the demo need on Debian 12, and
# nothing when it is all there already.  Needs root for apt-get.
set -euo pipefail

packages=(
        # build
        meson ninja-build pkg-config gcc clang llvm lld
        # static analysis (scan-build), kept at zero findings by tests/run.sh;
        # clang-format checks the code style (.clang-format)
        clang-tools clang-format
        libsystemd-dev libvirt-dev libxml2-dev libcryptsetup-dev nettle-dev libglib2.0-dev libinih-dev
        # pkg-config files naming the install directories
        libdbus-1-dev libpolkit-gobject-1-dev
        # the real stack the integration tests and the demo run
        dbus-daemon polkitd libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
        qemu-system-x86 qemu-utils cryptsetup-bin util-linux
        # systemd-analyze for the unit's security score
        systemd
        # the dm-crypt test VM: a real kernel and a static busybox for its initramfs
        linux-image-amd64 busybox-static kmod
        # the systemd suite's VM boots this host's systemd: pam_systemd makes its
        # logind session, gdbus shows D-Bus error names, dmsetup the mappings
        libpam-systemd libglib2.0-bin dmsetup
        # luksvolumectl --json
        libjson-c-dev
        # manual pages (scdoc) and their test (man, groff); the Debian package
        # (tests/packaging/test-deb.sh)
        scdoc man-db groff-base debhelper dpkg-dev fakeroot lintian
        # the shared-host test's misbehaving file system (tests/integration/hang-fuse.py)
        python3-fuse fuse3
        # examples/luksvolume-agent.py (PyGObject/GDBus) and its test
        python3-gi gir1.2-glib-2.0
        # the Cockpit page's browser test (tests/integration/test-cockpit.py):
        # Cockpit's web server and bridge, headless Chromium driven through
        # WebDriver
        cockpit-ws cockpit-bridge chromium chromium-driver python3-selenium
        # the Cockpit page's translation template (xgettext, in the build)
        gettext
        # RBD sources (issue 18): librbd's headers to build; the `ceph` suite's
        # single-node cluster (tests/ceph/cluster.sh: a monitor and a memstore
        # OSD), the rbd tool, and QEMU's rbd block driver
        librbd-dev librados-dev ceph-mon ceph-osd ceph-common qemu-block-extra
)

missing=()
for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
                missing+=("$p")
        fi
done

# The Cockpit page's PatternFly 5 (npm, pinned with its integrity hash by
# cockpit/package-lock.json) into cockpit/node_modules; only the npm
# registry is asked.  Debian's npm if the machine has no npm of its own.
cockpit_npm() {
        local dir
        dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/cockpit"
        if [ -f "$dir/node_modules/@patternfly/patternfly/package.json" ] &&
                [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
                return 0
        fi
        if ! command -v npm >/dev/null; then
                [ "$(id -u)" -eq 0 ] || { echo "install-deps: npm is missing and not root." >&2; return 1; }
                export DEBIAN_FRONTEND=noninteractive
                apt-get update -qq
                apt-get install -y -qq --no-install-recommends npm >/dev/null
        fi
        echo "install-deps: npm ci in $dir"
        (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

if [ ${#missing[@]} -eq 0 ]; then
        echo "install-deps: all ${#packages[@]} packages present."
        cockpit_npm
        exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages (${missing[*]}) and not root; run as root." >&2
        exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done."
cockpit_npm
