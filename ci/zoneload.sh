#!/usr/bin/env bash
# Load time and memory of a large zone: ringdns (`file`) against NSD and Knot.
#
#   ci/zoneload.sh [--records N] [--runs R] [BIN]
#
# Writes a zone of N A records (default 1,000,000: SOA, NS, then
# n0..n(N-1) A) under $TMPDIR, then for each server, R times: starts it on
# 127.0.0.1 (a free port), measures the wall time from start until it
# answers the zone's last name, its largest process's peak resident memory
# (VmHWM) and the proportional set size of all its processes once loaded. BIN defaults to target/release/ringdns
# (built when missing). NSD and Knot are measured when installed (Debian
# packages `nsd`, `knot`), each with one worker; a server missing is skipped
# with a message. Every process started is stopped by PID; each server gets
# at most 120 s to answer.
set -euo pipefail

RECORDS=1000000
RUNS=3
while [[ $# -gt 0 ]]; do
    case $1 in
    --records) RECORDS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/target/release/ringdns}
if [[ ! -x $BIN ]]; then
    (cd "$REPO" && cargo build --release -q --bin ringdns)
fi
command -v dig >/dev/null || { echo "zoneload: dig is needed (bind9-dnsutils)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringdns-zoneload.XXXXXX")
PID=
cleanup() {
    if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ZONE=$WORK/db.load.test
LAST="n$((RECORDS - 1)).load.test"
awk -v n="$RECORDS" 'BEGIN {
    print "$ORIGIN load.test.\n$TTL 3600"
    print "@ SOA ns hostmaster 1 7200 3600 1209600 3600"
    print "@ NS ns\nns A 192.0.2.1"
    for (i = 0; i < n; i++) printf "n%d A 10.%d.%d.%d\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256
}' >"$ZONE"
echo "zone: $RECORDS A records, $(du -m "$ZONE" | cut -f1) MB"

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# measure NAME PORT CMD... : starts CMD, waits for an answer for $LAST,
# prints one result line.
measure() {
    local name=$1 port=$2
    shift 2
    local t0 t1 hwm rss ok=
    t0=$(date +%s.%N)
    "$@" >"$WORK/$name.log" 2>&1 &
    PID=$!
    local deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$PID" 2>/dev/null; then break; fi
        if dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" "$LAST" A 2>/dev/null | grep -q '^10\.'; then
            ok=1
            break
        fi
        sleep 0.05
    done
    t1=$(date +%s.%N)
    if [[ -n $ok ]]; then
        sleep 1
        # NSD forks its server and xfrd processes: count the whole tree, shared
        # pages once (PSS), and the largest process's peak.
        local pids=$PID p kids
        kids=$(pgrep -P "$PID" || true)
        for p in $kids; do pids="$pids $p $(pgrep -P "$p" | tr '\n' ' ')"; done
        hwm=0 rss=0
        for p in $pids; do
            local h s
            h=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
            s=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
            ((h > hwm)) && hwm=$h
            rss=$((rss + ${s:-0}))
        done
        printf '%-8s load %6.2f s   peak RSS %6d MB   PSS (%d processes) %6d MB\n' "$name" \
            "$(echo "$t1 - $t0" | bc)" $((hwm / 1024)) "$(wc -w <<<"$pids")" $((rss / 1024))
    else
        echo "$name: no answer for $LAST within 120 s (log: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' '))"
    fi
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

run_ringdns() {
    local port
    port=$(free_port)
    printf 'load.test:%s {\n    bind 127.0.0.1\n    file %s\n}\n' "$port" "$ZONE" >"$WORK/Corefile"
    measure ringdns "$port" "$BIN" -conf "$WORK/Corefile" -quiet
}

run_nsd() {
    local port dir=$WORK/nsd
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$port
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$WORK"
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    pidfile: "$dir/nsd.pid"
    logfile: "$dir/nsd.log"
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: load.test
    zonefile: db.load.test
EOF
    rm -f "$dir/zone.list" "$dir/xfrd.state"
    measure nsd "$port" nsd -d -c "$dir/nsd.conf"
}

run_knot() {
    local port dir=$WORK/knot
    port=$(free_port)
    rm -rf "$dir"
    mkdir -p "$dir/db"
    cat >"$dir/knot.conf" <<EOF
server:
    rundir: "$dir"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$dir/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$WORK"
    semantic-checks: off
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: load.test
    file: db.load.test
EOF
    measure knot "$port" knotd -c "$dir/knot.conf"
}

for ((r = 1; r <= RUNS; r++)); do
    echo "run $r"
    run_ringdns
    if command -v nsd >/dev/null; then run_nsd; else echo "nsd: not installed, skipped"; fi
    if command -v knotd >/dev/null; then run_knot; else echo "knot: not installed, skipped"; fi
done
