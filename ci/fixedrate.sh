#!/usr/bin/env bash
# Server CPU per query at a fixed rate (issue 3: `dnsperf -Q 100000` on S0):
# udp_echo, ringdns on io_uring and ringdns on epoll, each pinned to CPU 0 with
# dnsperf on CPU 1, `perf stat -e task-clock` on the server for 5 s.
#
#   ci/fixedrate.sh [--qps N] [--runs N] BIN
#
# Needs dnsperf, perf, cc and the bench harness's echo source
# (BENCH_DIR, default ../shared/bench). Prints one line per server and run.
set -euo pipefail

QPS=100000
RUNS=2
while [[ $# -gt 1 ]]; do
  case $1 in
    --qps) QPS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [--qps N] [--runs N] BIN" >&2; exit 2 ;;
  esac
done
[[ $# -eq 1 ]] || { echo "usage: $0 [--qps N] [--runs N] BIN" >&2; exit 2; }
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
for t in dnsperf perf cc taskset; do
  command -v "$t" >/dev/null || { echo "$0: $t not found" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringdns-fixedrate.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cc -O2 -o "$WORK/udp_echo" "$BENCH_DIR/echo/udp_echo.c"
printf '.:5353 {\n whoami\n}\n' > "$WORK/Corefile"
for i in $(seq 0 999); do echo "n$i.bench.test. A"; done > "$WORK/queries.txt"

run() { # name, server command...
  local name=$1; shift
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local srv=$!
  PIDS+=("$srv")
  sleep 1
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5353 -d "$WORK/queries.txt" -l 8 -Q "$QPS" -c 16 -T 2 \
    > "$WORK/dnsperf.txt" 2>&1 &
  local load=$!
  sleep 2
  perf stat -e task-clock -x, -p "$srv" -- sleep 5 2> "$WORK/stat.txt"
  wait "$load" || true
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  local ms qps
  ms=$(grep task-clock "$WORK/stat.txt" | cut -d, -f1)
  qps=$(awk '/Queries per second/ {print $4}' "$WORK/dnsperf.txt")
  awk -v n="$name" -v ms="$ms" -v q="$qps" \
    'BEGIN { printf "%-6s %8.0f QPS  %.2f us of server CPU per query\n", n, q, ms * 1000 / (q * 5) }'
}

for r in $(seq 1 "$RUNS"); do
  echo "run $r (target $QPS QPS)"
  run echo "$WORK/udp_echo" 127.0.0.1 5353
  run uring "$BIN" -conf "$WORK/Corefile"
  run epoll "$BIN" -backend epoll -conf "$WORK/Corefile"
done
