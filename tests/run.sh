#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The test command (README "Quick start"): installs what is missing, builds
# with warnings as errors, runs every suite, then the unit and integration
# suites again in an AddressSanitizer+UBSan build (daemon included).
#
#   tests/run.sh [MESON-TEST-ARGS...]     e.g. tests/run.sh --suite unit
#
# Build directories: build/ and build-sanitize/ (override with BUILD_DIR,
# SANITIZE_BUILD_DIR).  LV_SKIP_SANITIZE=1 skips the second pass.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$src/build}
san_build=${SANITIZE_BUILD_DIR:-$src/build-sanitize}

bash "$src/tests/install-deps.sh"

setup() {
        local dir=$1; shift
        if [ -f "$dir/build.ninja" ]; then
                meson setup --reconfigure "$dir" "$src" "$@" >/dev/null
        else
                meson setup "$dir" "$src" "$@" >/dev/null
        fi
        ninja -C "$dir"
}

passed=0 failed=0 skipped=0
# Adds the counts of one meson test run (from its JSON log) to the totals.
tally() {
        local counts
        counts=$(python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
        read -r p f s <<<"$counts"
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

status=0

setup "$build" -Dwerror=true
meson test -C "$build" --print-errorlogs --num-processes 2 "$@" || status=1
tally "$build"

if [ "${LV_SKIP_SANITIZE:-0}" != 1 ] && [ $# -eq 0 ]; then
        setup "$san_build" -Dwerror=true -Dsanitize=true -Db_lundef=false
        # halt_on_error: any report fails the run; the daemon inherits this
        # environment through the sandbox's bus activation.
        ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                meson test -C "$san_build" --print-errorlogs --num-processes 2 --suite unit --suite integration || status=1
        tally "$san_build"
fi

echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
