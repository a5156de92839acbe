#!/usr/bin/env bash
# Instructions and L1 data-cache misses per forwarded query in the daemon's own code
# (user space), counted by valgrind's cachegrind: unlike CPU time on this shared
# machine, the counts repeat to within about 1 %, so a change of a few percent in the
# daemon's own work shows. The kernel's share (most of a forwarded query's cost) is not
# counted; `ci/fixedrate.sh` and `../shared/bench/run.sh` measure the whole.
#
#   ci/cachegrind.sh [--seconds N] BIN [OTHER_BIN...]
#
# S2's shape: `forward . 127.0.0.1:5301` to a ringdns `file` server (a wildcard zone),
# every name distinct, dnsperf keeping 400 queries in flight (as run.sh's S2); the
# daemon measured on CPU 0 (so one worker), the load and the upstream on CPU 1. The
# simulated caches are 32 KiB L1 data and 1 MiB "last level" (an L2's size).
# Needs valgrind, dnsperf, dig and taskset. Prints one line per binary.
set -euo pipefail

SECS=20
if [[ ${1:-} == --seconds ]]; then SECS=$2; shift 2; fi
[[ $# -ge 1 ]] || { echo "usage: $0 [--seconds N] BIN [OTHER_BIN...]" >&2; exit 2; }
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
need valgrind dnsperf dig taskset
workdir cachegrind
s2_files
awk 'BEGIN { for (i = 0; i < 1000000; i++) print "u" i ".wild.bench.test. A" }' > "$WORK/queries.txt"

FIRST=$(realpath "$1")
taskset -c 1 "$FIRST" -conf "$WORK/up.Corefile" >/dev/null 2>&1 &
PIDS+=("$!")
ready 5301 probe.wild.bench.test 300 || { echo "$0: the upstream did not start" >&2; exit 1; }

for b in "$@"; do
  bin=$(realpath "$b")
  taskset -c 0 valgrind --tool=cachegrind --cache-sim=yes --D1=32768,8,64 --LL=1048576,8,64 \
    --cachegrind-out-file="$WORK/cg.out" "$bin" -conf "$WORK/Corefile" \
    >"$WORK/vg.log" 2>&1 &
  srv=$!
  PIDS+=("$srv")
  ready 5353 probe.wild.bench.test 300 || { echo "$b: did not answer" >&2; kill "$srv"; continue; }
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5353 -d "$WORK/queries.txt" -l "$SECS" -c 16 -q 200 -T 2 -t 5 \
    > "$WORK/dnsperf.txt" 2>&1 || true
  kill -INT "$srv" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  q=$(awk '/Queries completed/ {print $3}' "$WORK/dnsperf.txt")
  awk -v b="$b" -v q="$q" '
    /I *refs:/ { gsub(",", "", $4); ir = $4 }
    /D1  misses:/ { gsub(",", "", $4); d1 = $4 }
    /LLd misses:/ { gsub(",", "", $4); ll = $4 }
    END { printf "%s: %.0f instructions, %.1f L1d misses, %.2f 1-MiB misses per query (%d queries)\n", b, ir / q, d1 / q, ll / q, q }
  ' "$WORK/vg.log"
done
