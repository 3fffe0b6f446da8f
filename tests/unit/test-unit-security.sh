#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The systemd unit's sandbox stays tight: `systemd-analyze security
# --offline=true` must rate the configured unit at an exposure of 2.5 or
# less (systemd's own hostnamed: 1.5, timedated: 2.4), and
# `systemd-analyze verify` must have nothing to say about it.  Both work on
# the file alone: no systemd as PID 1 needed.
#
#   test-unit-security.sh BUILDDIR/dbus/luksvolumed.service
#
# Exit 0 pass, 1 fail, 77 skip (systemd-analyze missing).
set -uo pipefail

THRESHOLD=2.5

unit=${1:?usage: $0 UNIT-FILE}
[[ -r $unit ]] || { echo "cannot read unit file '$unit'"; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
        echo "SKIP: systemd-analyze not found (install systemd)"
        exit 77
fi
echo "systemd-analyze: $(systemd-analyze --version | head -n1)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# The analysis keys on the file name; keep it.
cp "$unit" "$tmp/luksvolumed.service"

# ---- security -------------------------------------------------------------
# --threshold is in tenths (0..100) and makes the exit status non-zero above
# it; the "Overall exposure level" line is parsed as well, so the verdict
# and the printed score can never disagree.
limit=$(awk -v t="$THRESHOLD" 'BEGIN { printf "%d", t * 10 + 0.5 }')
out=$(systemd-analyze security --offline=true --threshold="$limit" --no-pager "$tmp/luksvolumed.service" 2>&1)
rc=$?
level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$out")
if [[ -z $level ]]; then
        echo "$out"
        echo "FAIL: no 'Overall exposure level' line in the output above"
        exit 1
fi

echo "exposure: $level (limit $THRESHOLD)"
echo "still exposed, largest first:"
# Lines starting with ✗ end in their share of the exposure.
grep '✗' <<<"$out" | awk '{ print $NF "\t" $0 }' | sort -rn -k1,1 | cut -f2- | head -n 15 |
        sed 's/  */ /g; s/^/  /'

if awk -v l="$level" -v t="$THRESHOLD" 'BEGIN { exit !(l > t) }'; then
        echo "FAIL: exposure $level is above $THRESHOLD"
        status=1
elif ((rc != 0)); then
        echo "$out"
        echo "FAIL: systemd-analyze security exited $rc (threshold $limit)"
        status=1
fi

# ---- verify ---------------------------------------------------------------
# ExecStart= names the installed path, which need not exist at build time;
# point it at the built daemon if it is next to us, else at a stand-in, so
# that verify checks everything else (unknown keys, bad values, missing
# dependency units).  --man=no: the man page is not part of the build.
daemon=$(cd "$(dirname "$unit")/.." 2>/dev/null && pwd)/daemon/luksvolumed
[[ -x $daemon ]] || daemon=$(command -v true)
sed -i "s|^ExecStart=.*|ExecStart=$daemon|" "$tmp/luksvolumed.service"
vout=$(systemd-analyze verify --man=no "$tmp/luksvolumed.service" 2>&1)
vrc=$?
# verify reports unknown keys and bad values as warnings with exit status 0:
# any output at all is a failure.
if ((vrc != 0)) || [[ -n $vout ]]; then
        echo "$vout"
        echo "FAIL: systemd-analyze verify (exit $vrc) complained about the unit"
        status=1
else
        echo "verify: clean"
fi

exit $status
