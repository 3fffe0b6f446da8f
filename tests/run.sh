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
# SANITIZE_BUILD_DIR).  LV_SKIP_SANITIZE=1 skips the second pass,
# LV_SKIP_FUZZ=1 the fuzz smoke, LV_SKIP_SCAN=1 the static analysis,
# LV_SKIP_DEB=1 the Debian package build, LV_SKIP_STYLE=1 the clang-format
# check, LV_SKIP_BENCH=1 the short benchmark at the end.
# Then a fuzz smoke: each libFuzzer target for LV_FUZZ_SECONDS (default 20)
# in a clang build, build-fuzz/ (FUZZ_BUILD_DIR); LV_SKIP_FUZZ=1 skips it.
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
# What failed, with the end of its output: printed again last, because a CI
# log is often read from its tail only.
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT
# Adds the counts of one meson test run (from its JSON log) to the totals.
tally() {
        local counts
        counts=$(python3 - "$1/meson-logs/testlog.json" "$1" "$failures" <<'PY'
import json, sys
p = f = s = 0
with open(sys.argv[3], "a") as out:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        r = t["result"]
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else:
            f += 1
            lines = (t.get("stdout") or "").splitlines()
            bad = [l for l in lines if l.startswith(("not ok", "Bail out")) or "ERROR" in l][:10]
            out.write(f"--- {t['name']} ({sys.argv[2]}): {r} after {t.get('duration', 0):.0f} s\n")
            out.write("".join(f"    {l}\n" for l in bad + ["..."] + lines[-15:]))
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
# The ceph test's single-node cluster (tests/ceph/cluster.sh): how long it
# took to start, from the test's TAP comments.
grep -ho 'ceph: cluster up in [0-9]* ms.*' "$build/meson-logs/testlog.txt" 2>/dev/null | head -n 1 || true

if [ "${LV_SKIP_SANITIZE:-0}" != 1 ] && [ $# -eq 0 ]; then
        setup "$san_build" -Dwerror=true -Dsanitize=true -Db_lundef=false
        # halt_on_error: any report fails the run; the daemon inherits this
        # environment through the sandbox's bus activation.
        ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                meson test -C "$san_build" --print-errorlogs --num-processes 2 --suite unit --suite integration || status=1
        tally "$san_build"
fi

# Fuzz smoke (tests/fuzz/README.md): every libFuzzer target, each for a
# short fixed time, starting from a copy of its seed corpus so the source
# tree is never written to.  Each target counts as one test; a crash, leak,
# sanitizer report or failed check fails it, and its reproducer is kept in
# build-fuzz/fuzz-artifacts/.
if [ "${LV_SKIP_FUZZ:-0}" != 1 ] && [ $# -eq 0 ]; then
        fuzz_build=${FUZZ_BUILD_DIR:-$src/build-fuzz}
        fuzz_seconds=${LV_FUZZ_SECONDS:-20}
        if CC=clang setup "$fuzz_build" -Dfuzz=true; then
                for corpus in "$src"/tests/fuzz/corpus/*/; do
                        name=$(basename "$corpus")
                        exe=$fuzz_build/tests/fuzz/fuzz-$name
                        work=$(mktemp -d)
                        mkdir "$work/corpus"
                        cp -r "$corpus". "$work/corpus/"
                        # -timeout: one slow input is a failure, not a
                        # 20-minute stall (libFuzzer's default).
                        if [ -x "$exe" ] && (cd "$work" && "$exe" -max_total_time="$fuzz_seconds" -timeout=10 \
                                        -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1); then
                                passed=$((passed + 1))
                                echo "fuzz-$name: OK, $(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log") runs in ${fuzz_seconds}s"
                        else
                                failed=$((failed + 1)) status=1
                                tail -n 40 "$work/log" 2>/dev/null || echo "fuzz-$name: $exe was not built"
                                mkdir -p "$fuzz_build/fuzz-artifacts"
                                find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
                                        -exec cp -t "$fuzz_build/fuzz-artifacts/" {} +
                                echo "fuzz-$name: FAILED (reproducers, if any, in $fuzz_build/fuzz-artifacts/)"
                                echo "--- fuzz-$name: FAILED (reproducers, if any, in $fuzz_build/fuzz-artifacts/)" >>"$failures"
                        fi
                        rm -rf "$work"
                done
        else
                echo "fuzz smoke: the clang build in $fuzz_build failed"
                echo "--- fuzz smoke: the clang build in $fuzz_build failed" >>"$failures"
                failed=$((failed + 1)) status=1
        fi
fi

# Static analysis: clang's analyzer (Debian's clang-tools, scan-build) over
# the whole tree must find nothing.  One test in the totals; the HTML
# reports of a failure stay in build-scan/reports/.
if [ "${LV_SKIP_SCAN:-0}" != 1 ] && [ $# -eq 0 ]; then
        scan_build=${SCAN_BUILD_DIR:-$src/build-scan}
        rm -rf "$scan_build"
        if scan-build --status-bugs -o "$scan_build/reports" meson setup "$scan_build" "$src" >/dev/null &&
           scan-build --status-bugs -o "$scan_build/reports" ninja -C "$scan_build" >"$scan_build/scan-build.log" 2>&1; then
                passed=$((passed + 1))
                echo "scan-build: OK, no bugs found"
        else
                failed=$((failed + 1)) status=1
                grep -E 'warning:|scan-build:' "$scan_build/scan-build.log" 2>/dev/null | sort -u | tail -n 40
                echo "scan-build: FAILED (reports in $scan_build/reports)"
                echo "--- scan-build: FAILED (reports in $scan_build/reports)" >>"$failures"
        fi
fi

# Code style: every C file of the tree (daemon, client, common, tests,
# bench, fuzz) as .clang-format says; one test in the totals.
# LV_SKIP_STYLE=1 skips it.
if [ "${LV_SKIP_STYLE:-0}" != 1 ] && [ $# -eq 0 ]; then
        mapfile -t c_files < <(cd "$src" && git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
        if (cd "$src" && clang-format --dry-run -Werror "${c_files[@]}" >/dev/null 2>&1); then
                passed=$((passed + 1))
                echo "style: OK, ${#c_files[@]} C files as .clang-format says"
        else
                failed=$((failed + 1)) status=1
                (cd "$src" && clang-format --dry-run "${c_files[@]}" 2>&1 | grep 'warning:' | head -n 20)
                echo "style: FAILED (clang-format -i on the files above fixes it)"
                echo "--- style: FAILED (clang-format -i on the files above fixes it)" >>"$failures"
        fi
fi

# Packaging: the .deb builds from the tree and holds what a deployment needs.
# (The systemd suite above built the same package for itself, ~40 s, so that
# it also runs alone from a fresh clone; tests/systemd/run-systemd-vm.sh.)
if [ "${LV_SKIP_DEB:-0}" != 1 ] && [ $# -eq 0 ]; then
        if bash "$src/tests/packaging/test-deb.sh"; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1)) status=1
                echo "packaging: test-deb.sh FAILED"
                echo "--- packaging: test-deb.sh FAILED" >>"$failures"
        fi
fi

# The benchmark's short form (bench/run.sh --short, README "Benchmark"):
# its table is printed for information and never changes the status —
# neither a figure over its target (a ✗ in the table) nor the benchmark
# itself failing to complete (said loudly here: the suites above, not the
# benchmark, are what guard correctness, and a benchmark on a loaded CI
# machine can time out for reasons of its own).  ~2 minutes, bounded to 15.
if [ "${LV_SKIP_BENCH:-0}" != 1 ] && [ $# -eq 0 ]; then
        echo
        echo "benchmark, short form (informs; does not fail the build):"
        bench_rc=0
        BUILD_DIR=$build timeout --kill-after=30 900 bash "$src/bench/run.sh" --short "$build/bench-short" || bench_rc=$?
        if [ "$bench_rc" != 0 ]; then
                echo "benchmark: DID NOT COMPLETE (status $bench_rc; 124 = timed out); not counted as a failure"
        fi
fi

if [ -s "$failures" ]; then
        echo
        echo "meson tests that failed (the full logs are in the build directories' meson-logs/):"
        cat "$failures"
fi
echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
