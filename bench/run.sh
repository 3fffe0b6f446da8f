#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The benchmark (README "Benchmark"): builds, then runs bench/bench.c in the
# throwaway sandbox against the built daemon, and writes into OUTDIR
# (default bench/results): results.md (the table), concurrency.csv,
# stall.csv (each guest-stall measurement), scale-N-attach.csv (each
# attach of the scale scenario) and attach-latency.png (gnuplot-nox,
# installed if missing).
#
#   bench/run.sh [--short] [--scale=N,M] [--series] [--shim] [--rbd] [--cold] [--cycle] [--probe] [--debug] [OUTDIR]
#
#   (none)       everything; ~10 minutes on an otherwise idle 2-core machine.
#                Run nothing else meanwhile: the guest-stall figures are
#                timings of a TCG guest, and other load shows up in them.
#   --short      the CI form (tests/run.sh): fewer repetitions, the scale
#                scenario at 40 volumes over 4 domains, no concurrency
#                series, key management or guest stalls; ~2 minutes.  No
#                plot, and nothing installed beyond tests/install-deps.sh.
#   --scale=N,M  the scale scenario with N volumes over M domains
#                (default 200,20; --short: 40,4).
#   --series     only the scale scenario, at 10, 50, 200 and 500 volumes
#                over 20 domains: results-series.md, scale-series.csv and
#                scale.png (attach latency and recovery time against the
#                number of volumes); ~15 minutes.  With --scale=N,M: only
#                the scale scenario, at that size (no plot).
#   --shim       only the header shim's figures (issue 17), inside the TCG
#                VM that has device-mapper (tests/vm/run-in-vm.sh):
#                results-shim.md; ~10 minutes (--short: one repetition).
#   --rbd        only the RBD figures (issue 18): a single-node Ceph
#                (tests/ceph/cluster.sh) in the sandbox, a LUKS1 RBD image
#                attached through the daemon against libvirt's API and
#                `virsh attach-device`: results-rbd.md; ~1 minute.
#   --cold       only cold activation and idle memory (seconds).
#                This and the full run also time v0.1.0's daemon (f56ba28,
#                built from the clone's history into BUILD/bench/v0.1.0, ~1
#                minute the first time) on the same cold call, interleaved.
#   --cycle      only the Attach+Detach cycle against the libvirt-API floor.
#   --probe      only Probe('') idle and under 8 slow attaches (~1 minute).
#   --debug      the daemon at --log-level=debug, its log kept as
#                OUTDIR/logs/ (bus.log): each call's "Trace of …" line says where
#                its time went (call_trace() in daemon/call.c).
#
# Exit status: the benchmark's own (non-zero only if it could not run or
# crashed); a figure over its target is a ✗ in the table, never a failure.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$src/build}
out=
short=0 series=0 shim=0 debug=0 rbd=0 only=0
args=()
for a in "$@"; do
        case $a in
                --short) short=1; args+=("$a") ;;
                --series) series=1; args+=("$a") ;;
                --shim) shim=1; args+=("$a") ;;
                --cold) args+=("$a") ;;
                --cycle|--probe) only=1; args+=("$a") ;;
                --rbd) rbd=1; args+=("--rbd=$src/tests/ceph/cluster.sh") ;;
                --debug) debug=1 ;;
                --scale=*) args+=("$a") ;;
                -*) echo "usage: bench/run.sh [--short] [--scale=N,M] [--series] [--shim] [--rbd] [--cold] [--cycle] [--probe] [--debug] [OUTDIR]" >&2; exit 2 ;;
                *) out=$a ;;
        esac
done
out=$(realpath -m "${out:-$src/bench/results}")

bash "$src/tests/install-deps.sh"
# gnuplot only for the plots; not a test dependency (and not in CI's form).
if [ "$short" = 0 ] && ! command -v gnuplot >/dev/null && [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
                echo "bench: gnuplot-nox could not be installed; no plot" >&2
fi

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" >/dev/null
fi
ninja -C "$build" >/dev/null
mkdir -p "$out"
chmod 0755 "$out"

table=$out/results.md
[ "$series" = 0 ] || table=$out/results-series.md
[ "$rbd" = 0 ] || table=$out/results-rbd.md

if [ "$shim" = 1 ]; then
        # The VM's root is the host's, read-only: the table comes back on
        # the VM's stdout.
        set +e
        bash "$src/tests/vm/run-in-vm.sh" --cache-dir "$build/tests/vm/vm-cache" --timeout 1800 -- \
                bash "$src/tests/sandbox/sandbox.sh" \
                --daemon "$build/daemon/luksvolumed" \
                --dbus-policy "$src/dbus/org.example.LuksVolume1.conf" \
                --polkit-policy "$src/polkit/org.example.LuksVolume1.policy" \
                -- "$build/bench/luksvolume-bench" /tmp "${args[@]}" | tee "$out/results-shim.md"
        rc=${PIPESTATUS[0]}
        exit "$rc"
fi

# The cold row's other baseline: v0.1.0's daemon (issue 20 compares with
# its cold start), when this clone has its commit.  Only the daemon is
# built; a failure to build it leaves the row out, not the benchmark.
baseline_rev=f56ba28
if [ "$short" = 0 ] && [ "$series" = 0 ] && [ "$rbd" = 0 ] && [ "$only" = 0 ] &&
        git -C "$src" cat-file -e "$baseline_rev^{commit}" 2>/dev/null; then
        v010=$build/bench/v0.1.0
        if [ ! -x "$v010/build/daemon/luksvolumed" ]; then
                rm -rf "$v010"
                mkdir -p "$v010/src"
                if ! { git -C "$src" archive "$baseline_rev" | tar -x -C "$v010/src" &&
                        meson setup "$v010/build" "$v010/src" -Dtests=false >/dev/null &&
                        ninja -C "$v010/build" daemon/luksvolumed >/dev/null; }; then
                        echo "bench: v0.1.0's daemon did not build; no v0.1.0 row" >&2
                fi
        fi
        [ ! -x "$v010/build/daemon/luksvolumed" ] || export LV_BASELINE_DAEMON=$v010/build/daemon/luksvolumed
fi

# The sandbox mounts tmpfs over /run and friends; $out is a host path it can
# write into because the mount namespace keeps everything else.
# --max-volumes: the scale scenario attaches up to 500 (+1) volumes; the
# shipped default cap is 64.
daemon_args=(--daemon-arg --max-volumes=1000)
# The RBD figures: the daemon reads the sandbox's cluster, QEMU authenticates
# with the secret rbd.c defines (the ceph test's configuration).
[ "$rbd" = 0 ] || daemon_args+=(--daemon-arg "--config=$src/tests/integration/ceph-daemon.conf")
if [ "$debug" = 1 ]; then
        daemon_args+=(--daemon-arg --log-level=debug)
        export LV_SANDBOX_SAVE_LOGS=$out/logs
fi
set +e
bash "$src/tests/sandbox/sandbox.sh" \
        --daemon "$build/daemon/luksvolumed" \
        "${daemon_args[@]}" \
        --dbus-policy "$src/dbus/org.example.LuksVolume1.conf" \
        --polkit-policy "$src/polkit/org.example.LuksVolume1.policy" \
        -- "$build/bench/luksvolume-bench" "$out" "${args[@]}" | tee "$table"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || { echo "bench: the benchmark exited with status $rc" >&2; exit "$rc"; }

command -v gnuplot >/dev/null || exit 0
[ "$rbd" = 0 ] || exit 0
if [ "$series" = 1 ] && ! grep -q -- '--scale=' <<<"${args[*]}"; then
        gnuplot <<GP
set terminal pngcairo size 800,500
set output "$out/scale.png"
set datafile separator ","
set title "luksvolumed at scale (volumes over 20 domains, minimum-cost LUKS1 images)"
set xlabel "volumes attached"
set ylabel "attach, ms"
set y2label "kill -9 to recovered, ms"
set ytics nomirror
set y2tics
set key left top
set logscale x
set xrange [8:600]
set yrange [0:*]
set y2range [0:*]
plot "$out/scale-series.csv" every ::1 using 1:4 axes x1y1 with linespoints title "median attach with N attached", \
     "" every ::1 using 1:3 axes x1y1 with lines dashtype 2 title "median attach with none attached", \
     "" every ::1 using 1:7 axes x1y2 with linespoints title "kill -9 → all objects back", \
     "" every ::1 using 1:8 axes x1y2 with linespoints title "kill -9 → all properties complete"
GP
        echo "plot: $out/scale.png"
elif [ "$short" = 0 ] && [ -s "$out/concurrency.csv" ] && ! grep -q -- '--scale=' <<<"${args[*]}"; then
        gnuplot <<GP
set terminal pngcairo size 800,500
set output "$out/attach-latency.png"
set datafile separator ","
set title "luksvolumed: attach latency against concurrency (4 domains, 1.5 s PBKDF2 images)"
set xlabel "concurrent attaches"
set ylabel "ms"
set key left top
set xtics (1, 2, 4, 8)
set logscale x 2
set xrange [0.8:10]
plot "$out/concurrency.csv" every ::1 using 1:2 with linespoints title "median attach latency", \
     "" every ::1 using 1:3 with linespoints title "wall time for all"
GP
        echo "plot: $out/attach-latency.png"
fi
