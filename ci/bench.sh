#!/usr/bin/env bash
# Regression benchmark of two git revisions of ringdns: builds both (release,
# in temporary worktrees under $TMPDIR), runs the same scenarios against
# each in alternation (A B, B A, ...; server pinned to SERVER_CPU 0, load to
# LOAD_CPU 1, one load generator: ringdns-perf of the current tree), then
# prints `ringdns-perf compare` of the median runs per scenario.
#
#   ci/bench.sh [options] REV_A REV_B
#     --scenario "S0 S3"    scenarios (default "S0 S1 S2 S3")
#     --runs N              runs per revision and scenario (default 3)
#     --secs S              measured seconds per run (default 10)
#     --threshold PCT       regression threshold for compare (default 5)
#     --perf-args "..."     load options (default "-c 16 -q 200 -T 1 -t 1")
#     --out DIR             results folder (default: under $TMPDIR)
#
# BIN_A=path BIN_B=path skip the worktree builds and use these binaries
# (REV_A/REV_B then only name the sides in the report).
#
# Exit status: 0 when no scenario regressed, 1 when one did, 2 on error.
set -euo pipefail

# shellcheck source=ci/scenarios.sh
source "$(dirname "${BASH_SOURCE[0]}")/scenarios.sh"

WT=()
bench_cleanup() {
    cleanup
    local w
    for w in "${WT[@]+"${WT[@]}"}"; do
        git -C "$SC_REPO" worktree remove --force "$w" >/dev/null 2>&1 || true
    done
}

# build_rev REV DIR : worktree of REV in DIR, release ringdns built there; sets REV_BIN.
build_rev() {
    local rev=$1 dir=$2
    git -C "$SC_REPO" worktree add --detach "$dir" "$rev" >/dev/null
    WT+=("$dir")
    log "building ringdns at $rev ($(git -C "$dir" rev-parse --short HEAD))"
    (cd "$dir" && CARGO_TARGET_DIR=$dir/target cargo build --release -q --bin ringdns)
    REV_BIN=$dir/target/release/ringdns
}

bench_main() {
    local scs="S0 S1 S2 S3" runs=3 threshold=5
    SECS=10
    PERF_ARGS="-c 16 -q 200 -T 1 -t 1"
    OUT=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --scenario) scs=$2; shift 2 ;;
            --runs) runs=$2; shift 2 ;;
            --secs) SECS=$2; shift 2 ;;
            --threshold) threshold=$2; shift 2 ;;
            --perf-args) PERF_ARGS=$2; shift 2 ;;
            --out) OUT=$2; shift 2 ;;
            -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
            *) break ;;
        esac
    done
    [[ $# -eq 2 ]] || { sed -n '2,19p' "$0"; exit 2; }
    local rev_a=$1 rev_b=$2
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringdns-bench.XXXXXX")
    OUT=${OUT:-$WORK/results}
    mkdir -p "$OUT"
    trap bench_cleanup EXIT INT TERM
    setup_tools
    local bin_a=${BIN_A:-} bin_b=${BIN_B:-}
    if [[ -z $bin_a ]]; then
        build_rev "$rev_a" "$WORK/rev-a"
        bin_a=$REV_BIN
    fi
    if [[ -z $bin_b ]]; then
        build_rev "$rev_b" "$WORK/rev-b"
        bin_b=$REV_BIN
    fi
    log "results in $OUT"
    local sc r t order status=0
    for sc in $scs; do
        query_file "$sc" >/dev/null
        UP_PID=""
        [[ $sc == S1 || $sc == S2 ]] && start_upstream
        for r in $(seq "$runs"); do
            if ((r % 2)); then order="A B"; else order="B A"; fi
            for t in $order; do
                if [[ $t == A ]]; then
                    measure "$sc-A" "$sc" "$OUT/$sc-A-$r.json" "$bin_a" -conf Corefile || true
                else
                    measure "$sc-B" "$sc" "$OUT/$sc-B-$r.json" "$bin_b" -conf Corefile || true
                fi
            done
        done
        [[ -n $UP_PID ]] && stop_pid "$UP_PID"
    done
    for sc in $scs; do
        echo
        echo "== $sc: $rev_a (A) -> $rev_b (B), median of $runs runs"
        if ! ls "$OUT/$sc-A-"*.json "$OUT/$sc-B-"*.json >/dev/null 2>&1; then
            echo "no runs for $sc (server did not answer?)"
            status=2
            continue
        fi
        "$PERF" median "$OUT/$sc-A-"*.json >"$OUT/$sc-A.median.json"
        "$PERF" median "$OUT/$sc-B-"*.json >"$OUT/$sc-B.median.json"
        local rc=0
        "$PERF" compare --threshold "$threshold" "$OUT/$sc-A.median.json" "$OUT/$sc-B.median.json" || rc=$?
        ((rc == 0)) || { ((status == 2)) || status=1; }
    done
    # shellcheck disable=SC2046
    "$PERF" plot "$OUT/report.svg" $(ls "$OUT"/*.median.json) 2>/dev/null && echo "plot: $OUT/report.svg"
    return "$status"
}

bench_main "$@"
