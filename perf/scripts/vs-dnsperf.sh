#!/usr/bin/env bash
# ringdns-perf against dnsperf on the udp_echo ceiling of shared/bench, in
# the same run: udp_echo pinned to CPU 0, the load generator to CPU 1, the
# same query file (hot.txt) and options, alternating the tools.
#
#   perf/scripts/vs-dnsperf.sh [ROUNDS] [qps|lat|both]
#
#   qps: -l 10 -c 16 -q 200 -t 1, dnsperf -T 2 (the harness setting),
#        ringdns-perf -T 2 and -T 1.
#   lat: fixed 50,000 q/s (-Q 50000), -T 1 for both. dnsperf prints no
#        percentiles, so it runs with -v and its per-query latencies are
#        sorted here.
#
# POLL_VARIANTS="auto always never" measures several --poll modes.
# Runs wait for a quiet machine (< 5 % CPU busy over 2 s) and are repeated
# (up to 4 times) when other processes used more than 10 % of a core during
# them. Work files go to $TMPDIR. Needs dnsperf, gcc, python3, taskset.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO/../shared/bench}
ROUNDS=${1:-5}
MODE=${2:-both}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vs-dnsperf.XXXXXX")
(cd "$REPO" && cargo build --release -q -p ringdns-perf)
P=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ringdns-perf
gcc -O2 -o "$WORK/udp_echo" "$BENCH_DIR/echo/udp_echo.c"
python3 "$BENCH_DIR/gen_data.py" "$WORK/data" >/dev/null
Q=$WORK/data/hot.txt

taskset -c 0 "$WORK/udp_echo" 127.0.0.1 5353 &
EP=$!
trap 'kill $EP 2>/dev/null || true' EXIT INT TERM
sleep 0.3

ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }     # user+nice+system+irq+softirq
echo_ticks() { awk '{print $14+$15}' "/proc/$EP/stat"; }
# CPU of finished children (the load generator), from the shell's own `times`.
child_ticks() {
    times >"$WORK/times"
    awk 'NR==2 {gsub(/[ms]/," "); print int(($1*60+$2+$3*60+$4)*100)}' "$WORK/times"
}
quiet() {
    local i a b
    for i in $(seq 150); do
        a=$(ticks); sleep 2; b=$(ticks)
        ((b - a < 20)) && return 0
    done
}

# run NAME CMD... : output in $WORK/NAME.txt; prints QPS, loss, CPU shares.
run() {
    local name=$1 try a e c b1 e1 c1 other
    shift
    for try in 1 2 3 4; do
        quiet
        child_ticks >"$WORK/c0"
        a=$(ticks); e=$(echo_ticks); c=$(<"$WORK/c0")
        taskset -c 1 "$@" >"$WORK/$name.txt" 2>&1 || true
        child_ticks >"$WORK/c1"
        b1=$(ticks); e1=$(echo_ticks); c1=$(<"$WORK/c1")
        other=$(((b1 - a) - (e1 - e) - (c1 - c)))
        ((other <= 100)) && break
        echo "  ($name: other processes used $((other / 10))% of a core, again)"
    done
    printf '%-16s qps %10.0f  lost %4s  echo CPU %3d%%  load CPU %3d%%  other %3d%%\n' "$name" \
        "$(awk '/Queries per second/{print $4}' "$WORK/$name.txt")" \
        "$(awk '/Queries lost/{print $3}' "$WORK/$name.txt")" \
        $(((e1 - e) / 10)) $(((c1 - c) / 10)) $((other / 10))
}

pct_dnsperf() {
    grep '^> ' "$1" | awk '{print $NF}' | sort -g | awk '{a[NR]=$1} END {n=NR;
        printf "p50 %.6f p90 %.6f p99 %.6f p99.9 %.6f max %.6f (n=%d)\n",
        a[int(n*0.5)], a[int(n*0.9)], a[int(n*0.99)], a[int(n*0.999)], a[n], n}'
}

COMMON="-s 127.0.0.1 -p 5353 -d $Q -l 10 -c 16 -q 200 -t 1"
for r in $(seq "$ROUNDS"); do
    if [[ $MODE != lat ]]; then
        # shellcheck disable=SC2086
        run "dnsperf-T2-$r" dnsperf $COMMON -T 2
        # shellcheck disable=SC2086
        run "rperf-T2-$r" "$P" $COMMON -T 2
        # shellcheck disable=SC2086
        run "rperf-T1-$r" "$P" $COMMON -T 1
    fi
    if [[ $MODE != qps ]]; then
        # shellcheck disable=SC2086
        run "dnsperf-Q-$r" dnsperf $COMMON -T 1 -Q 50000 -v
        echo "    dnsperf      $(pct_dnsperf "$WORK/dnsperf-Q-$r.txt")"
        # shellcheck disable=SC2086
        for v in ${POLL_VARIANTS:-auto}; do
            # shellcheck disable=SC2086
            run "rperf-Q-$v-$r" "$P" $COMMON -T 1 -Q 50000 --poll "$v"
            echo "    ringdns-perf $(grep 'Latency percentiles' "$WORK/rperf-Q-$v-$r.txt" | sed 's/.*(s): //; s/,//g') (from the schedule)"
            echo "    ringdns-perf $(grep 'Service latency' "$WORK/rperf-Q-$v-$r.txt" | sed 's/.*(s): *//; s/,//g')"
        done
    fi
done
echo "outputs: $WORK"
