#!/usr/bin/env bash
# Where a forwarded query's CPU goes: user space (the daemon's own work) and the
# kernel, per query, for ringdns and for the bare forwarder on the same io_uring
# engine (`ringdns-perf relay --uring`), under the same fixed-rate S2 load.
#
#   ci/s2split.sh [--qps N] [--rounds N] RINGDNS_BIN RINGDNS_PERF_BIN
#
# S2's shape (see ci/cachegrind.sh): `forward . 127.0.0.1:5301` to a ringdns `file`
# server (a wildcard zone), every name distinct; the server measured on CPU 0, the
# load (dnsperf -Q N, default 70000: below both servers' limits, so both do the same
# work) and the upstream on CPU 1. User and system time come from the server's
# /proc/PID/stat over 8 s after a 2 s warm-up; rounds alternate the two servers.
# Needs dnsperf, dig and taskset.
set -euo pipefail

QPS=70000
ROUNDS=3
while [[ ${1:-} == --* ]]; do
  case $1 in
    --qps) QPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $# -eq 2 ]] || { echo "usage: $0 [--qps N] [--rounds N] RINGDNS_BIN RINGDNS_PERF_BIN" >&2; exit 2; }
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
need dnsperf dig taskset
workdir s2split
s2_files
awk 'BEGIN { for (i = 0; i < 1000000; i++) print "u" i ".wild.bench.test. A" }' > "$WORK/queries.txt"
RD=$(realpath "$1")
RP=$(realpath "$2")
TICK=$(getconf CLK_TCK)

taskset -c 1 "$RD" -conf "$WORK/up.Corefile" >/dev/null 2>&1 &
PIDS+=("$!")
ready 5301 probe.wild.bench.test 300 || { echo "$0: the upstream did not start" >&2; exit 1; }

# one NAME CMD...: prints "NAME user µs system µs total µs" per query.
one() {
  local name=$1 srv q u0 s0 u1 s1
  shift
  taskset -c 0 "$@" >/dev/null 2>&1 &
  srv=$!
  PIDS+=("$srv")
  ready 5353 probe.wild.bench.test 300 || { echo "$name: did not answer" >&2; kill "$srv"; return 1; }
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5353 -d "$WORK/queries.txt" -l 2 -c 16 -q 200 -T 2 -t 1 -Q "$QPS" \
    >/dev/null 2>&1 || true
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$srv/stat")
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5353 -d "$WORK/queries.txt" -l 8 -c 16 -q 200 -T 2 -t 1 -Q "$QPS" \
    > "$WORK/dnsperf.txt" 2>&1 || true
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$srv/stat")
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  q=$(awk '/Queries completed/ {print $3}' "$WORK/dnsperf.txt")
  awk -v n="$name" -v q="$q" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TICK" 'BEGIN {
    k = 1e6 / t / q
    printf "%-8s %d queries: user %.2f µs, system %.2f µs, total %.2f µs per query\n", n, q, u * k, s * k, (u + s) * k
  }'
}

for _ in $(seq "$ROUNDS"); do
  one relay "$RP" relay --uring 127.0.0.1:5353 127.0.0.1:5301
  one ringdns "$RD" -conf "$WORK/Corefile"
done
