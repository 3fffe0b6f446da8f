#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The benchmark (README "Benchmark"): builds, then runs bench/bench.c in the
# throwaway sandbox against the built daemon, and writes into OUTDIR
# (default bench/results): results.md (the table), concurrency.csv,
# stall.csv (each guest-stall measurement) and attach-latency.png
# (gnuplot-nox, installed if missing).  Takes ~5.5 minutes on an otherwise
# idle machine; run nothing else meanwhile: the guest-stall figures are
# timings of a TCG guest, and other load shows up in them.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$src/build}
out=$(realpath -m "${1:-$src/bench/results}")

bash "$src/tests/install-deps.sh"
# gnuplot only for the plot; not a test dependency.
if ! command -v gnuplot >/dev/null && [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
                echo "bench: gnuplot-nox could not be installed; no plot" >&2
fi

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" >/dev/null
fi
ninja -C "$build" >/dev/null
mkdir -p "$out"
chmod 0755 "$out"

# The sandbox mounts tmpfs over /run and friends; $out is a host path it can
# write into because the mount namespace keeps everything else.
bash "$src/tests/sandbox/sandbox.sh" \
        --daemon "$build/daemon/luksvolumed" \
        --dbus-policy "$src/dbus/org.example.LuksVolume1.conf" \
        --polkit-policy "$src/polkit/org.example.LuksVolume1.policy" \
        -- "$build/bench/luksvolume-bench" "$out" | tee "$out/results.md"

if command -v gnuplot >/dev/null; then
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
