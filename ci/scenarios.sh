#!/usr/bin/env bash
# Runs the benchmark scenarios S0-S3 (the Corefiles of shared/bench) against
# a ringdns binary with ringdns-perf, next to the udp_echo ceiling, in
# interleaved runs: server pinned to SERVER_CPU (0), load to LOAD_CPU (1).
#
#   ci/scenarios.sh [options] RINGDNS_BIN
#     --scenario "S0 S1 S2 S3"   scenarios to run (default: all four)
#     --runs N                   interleaved runs per target (default 3)
#     --secs S                   measured seconds per run (default 10)
#     --perf-args "..."          load options (default "-c 16 -q 200 -T 1 -t 1")
#     --dnsperf                  also measure the echo with dnsperf (if installed)
#     --no-echo                  skip the udp_echo ceiling runs
#     --out DIR                  results folder (default: a new one under $TMPDIR)
#
# The ringdns command is CoreDNS's: `RINGDNS_BIN -conf Corefile`, started in
# a per-run folder holding Corefile and the zone db.bench.test. S1/S2
# forward to 127.0.0.1:5301, served here by a second udp_echo (pinned to
# LOAD_CPU like the upstream of shared/bench/run.sh).
# udp_echo is built with gcc and the data generated with gen_data.py, both
# into $TMPDIR. Every process started is stopped by PID, also on Ctrl-C.
#
# This file can be sourced (bench.sh does) for its functions.
set -euo pipefail

SC_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$SC_REPO/../shared/bench}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU}
PORT=5353
UPPORT=5301
PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}

# start_bg CPU DIR LOG CMD... : starts CMD pinned to CPU in DIR; sets BG_PID.
start_bg() {
    local cpu=$1 dir=$2 logf=$3
    shift 3
    (cd "$dir" && exec taskset -c "$cpu" "$@") >"$logf" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# stop_pid PID: SIGTERM, SIGKILL after 10 s.
stop_pid() {
    local p=$1 i
    kill "$p" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=() q
    for q in "${PIDS[@]}"; do [[ $q == "$p" ]] || keep+=("$q"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# setup_tools: ringdns-perf (PERF), udp_echo (ECHO) and data (DATA) under WORK.
setup_tools() {
    if [[ -z ${PERF:-} ]]; then
        log "building ringdns-perf (release)"
        (cd "$SC_REPO" && cargo build --release -q -p ringdns-perf)
        PERF=$(cd "$SC_REPO" && cargo metadata --format-version 1 --no-deps |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ringdns-perf
    fi
    ECHO=$WORK/udp_echo
    [[ -x $ECHO ]] || gcc -O2 -o "$ECHO" "$BENCH_DIR/echo/udp_echo.c"
    DATA=$WORK/data
    [[ -f $DATA/auth.txt ]] || python3 "$BENCH_DIR/gen_data.py" "$DATA" >/dev/null
    printf '. A\n' >"$WORK/probe.txt"
}

query_file() {
    case $1 in
        S0 | S1) echo "$DATA/hot.txt" ;;
        S2) echo "$DATA/unique.txt" ;;
        S3) echo "$DATA/auth.txt" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

# wait_answer: polls 127.0.0.1:PORT until one query is answered (10 s max).
wait_answer() {
    local i
    for i in $(seq 50); do
        if "$PERF" -s 127.0.0.1 -p "$PORT" -d "$WORK/probe.txt" -n 1 -t 0.2 --json - 2>/dev/null |
            grep -q '"completed": 1,'; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# measure NAME SCENARIO OUT.json CMD... : starts the server command pinned to
# SERVER_CPU in a fresh folder, waits for it, warms it up 2 s, measures
# SECS s with ringdns-perf pinned to LOAD_CPU, stops it.
measure() {
    local name=$1 sc=$2 out=$3
    shift 3
    local dir=$WORK/state/$(basename "$out" .json)
    mkdir -p "$dir"
    cp "$BENCH_DIR/corefiles/$sc.Corefile" "$dir/Corefile"
    ln -sf "$DATA/db.bench.test" "$dir/db.bench.test"
    start_bg "$SERVER_CPU" "$dir" "$dir/server.log" "$@"
    local spid=$BG_PID
    if ! wait_answer; then
        log "$name ($sc) does not answer on :$PORT, see $dir/server.log"
        stop_pid "$spid"
        return 1
    fi
    local file warm
    file=$(query_file "$sc")
    warm=$file
    [[ $sc == S2 ]] && warm=$DATA/hot.txt # no unique name seen before the run
    taskset -c "$LOAD_CPU" "$PERF" -s 127.0.0.1 -p "$PORT" -d "$warm" -l 2 $PERF_ARGS --json - >/dev/null
    taskset -c "$LOAD_CPU" "$PERF" -s 127.0.0.1 -p "$PORT" -d "$file" -l "$SECS" $PERF_ARGS \
        --label "$name" --json "$out" >"${out%.json}.txt"
    stop_pid "$spid"
    log "$name $sc: $(grep -E 'Queries per second' "${out%.json}.txt" | tr -s ' ')"
}

# dnsperf_echo SCENARIO OUT.txt : the same load from dnsperf against udp_echo.
dnsperf_echo() {
    local sc=$1 out=$2 dir=$WORK/state/dnsperf-$sc
    mkdir -p "$dir"
    start_bg "$SERVER_CPU" "$dir" "$dir/server.log" "$ECHO" 127.0.0.1 "$PORT"
    local spid=$BG_PID
    wait_answer
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PORT" -d "$(query_file "$sc")" -l "$SECS" \
        -c 16 -q 200 -T 2 -t 1 >"$out" 2>&1 || true
    stop_pid "$spid"
    log "dnsperf/echo $sc: $(grep -E 'Queries per second' "$out" | tr -s ' ')"
}

start_upstream() {
    mkdir -p "$WORK/state"
    start_bg "$UPSTREAM_CPU" "$WORK/state" "$WORK/state/upstream.log" "$ECHO" 127.0.0.1 "$UPPORT"
    UP_PID=$BG_PID
}

# summary SCENARIOS TARGETS... : median run per scenario and target, as a table.
summary() {
    local scs=$1 sc t
    shift
    printf '%-4s %-10s %12s %9s %9s %9s %8s\n' scen target qps p50_ms p99_ms lost_% of_echo
    for sc in $scs; do
        local echo_qps=""
        for t in "$@"; do
            ls "$OUT/$sc-$t-"*.json >/dev/null 2>&1 || continue
            "$PERF" median "$OUT/$sc-$t-"*.json >"$OUT/$sc-$t.median.json"
            python3 - "$OUT/$sc-$t.median.json" "$sc" "$t" "${echo_qps:-0}" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
ref = float(sys.argv[4])
frac = f"{s['qps'] / ref:.2f}" if ref else "-"
print(f"{sys.argv[2]:<4} {sys.argv[3]:<10} {s['qps']:12.0f} {s['latency_s']['p50']*1e3:9.3f} "
      f"{s['latency_s']['p99']*1e3:9.3f} {s['lost_pct']:9.3f} {frac:>8}")
EOF
            if [[ $t == echo ]]; then
                echo_qps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["qps"])' "$OUT/$sc-$t.median.json")
            fi
        done
    done
}

main() {
    local scs="S0 S1 S2 S3" runs=3 dnsperf=0 echo_runs=1
    SECS=10
    PERF_ARGS="-c 16 -q 200 -T 1 -t 1"
    OUT=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --scenario) scs=$2; shift 2 ;;
            --runs) runs=$2; shift 2 ;;
            --secs) SECS=$2; shift 2 ;;
            --perf-args) PERF_ARGS=$2; shift 2 ;;
            --dnsperf) dnsperf=1; shift ;;
            --no-echo) echo_runs=0; shift ;;
            --out) OUT=$2; shift 2 ;;
            -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
            *) break ;;
        esac
    done
    [[ $# -eq 1 ]] || { sed -n '2,21p' "$0"; exit 2; }
    local bin
    bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    [[ -x $bin ]] || { echo "not executable: $1" >&2; exit 2; }
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringdns-scenarios.XXXXXX")
    OUT=${OUT:-$WORK/results}
    mkdir -p "$OUT"
    trap cleanup EXIT INT TERM
    setup_tools
    log "results in $OUT"
    local sc r targets
    for sc in $scs; do
        query_file "$sc" >/dev/null
        UP_PID=""
        [[ $sc == S1 || $sc == S2 ]] && start_upstream
        for r in $(seq "$runs"); do
            # Alternate the start order from run to run.
            if ((echo_runs == 0)); then targets="ringdns"
            elif ((r % 2)); then targets="echo ringdns"
            else targets="ringdns echo"; fi
            for t in $targets; do
                case $t in
                    echo) measure echo "$sc" "$OUT/$sc-echo-$r.json" "$ECHO" 127.0.0.1 "$PORT" || true ;;
                    ringdns) measure ringdns "$sc" "$OUT/$sc-ringdns-$r.json" "$bin" -conf Corefile || true ;;
                esac
            done
            if ((dnsperf)) && command -v dnsperf >/dev/null; then
                dnsperf_echo "$sc" "$OUT/$sc-dnsperf-echo-$r.txt"
            fi
        done
        [[ -n $UP_PID ]] && stop_pid "$UP_PID"
    done
    echo
    summary "$scs" echo ringdns | tee "$OUT/summary.txt"
    local medians
    medians=$(ls "$OUT"/*.median.json 2>/dev/null || true)
    if [[ -n $medians ]]; then
        # shellcheck disable=SC2086
        "$PERF" plot "$OUT/report.svg" $medians 2>/dev/null && echo "plot: $OUT/report.svg"
    fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
