#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The demo (README "Quick start"): the whole stack in a throwaway sandbox
# that changes nothing on the host — a private system bus, polkitd,
# libvirtd and a TCG guest.  It attaches a LUKS1 volume with luksvolumectl,
# shows the volume object and that QEMU itself reads the plaintext, then
# detaches it.  Installs missing dependencies and builds first.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$src/build}

bash "$src/tests/install-deps.sh"
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" >/dev/null
fi
ninja -C "$build" >/dev/null

export LUKSVOLUMECTL="$build/client/luksvolumectl"
exec bash "$src/tests/sandbox/sandbox.sh" \
        --daemon "$build/daemon/luksvolumed" \
        --dbus-policy "$src/dbus/org.example.LuksVolume1.conf" \
        --polkit-policy "$src/polkit/org.example.LuksVolume1.policy" \
        -- bash "$src/tests/demo/demo-inside.sh"
