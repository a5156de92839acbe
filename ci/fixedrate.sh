#!/usr/bin/env bash
# Server CPU per query at a fixed rate: each server pinned to CPU 0, dnsperf (and, in S2,
# the upstream) on CPU 1, `perf stat -e task-clock` on the server for 5 s, the servers
# taking turns in every run. Unlike `../shared/bench/run.sh`, which loads each server as
# hard as CPU 1 allows, every server here gets the same load (the same batch sizes);
# rounds of one build agree within 2-3 %.
#
#   ci/fixedrate.sh [--scenario S0|S2] [--qps N] [--runs N] [--base OLD_BIN] BIN
#
# S0 (issue 3): `whoami`; peer udp_echo.
# S2 (issue 4): `forward . 127.0.0.1:5301` to a ringdns `file` server on CPU 1 (a wildcard
#   zone, so every name resolves, as the bench's S2); peers: the bare relay
#   (`ringdns-perf relay`, taken from next to BIN), the same relay on the io_uring engine
#   (`relay --uring`: where the kernel refuses io_uring its round fails and is left out)
#   and dnsdist without cache, if installed.
# --base adds an older build's two backends to the same runs (for an A/B of a change).
#
# Needs dnsperf, dig, perf, cc and (S0) the bench harness's echo source (BENCH_DIR,
# default ../shared/bench). Prints one line per server and run, then each server's median.
set -euo pipefail

SCEN=S0
QPS=
RUNS=2
BASE=
while [[ $# -gt 1 ]]; do
  case $1 in
    --scenario) SCEN=$2; shift 2 ;;
    --qps) QPS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --base) BASE=$(realpath "$2"); shift 2 ;;
    *) echo "usage: $0 [--scenario S0|S2] [--qps N] [--runs N] [--base OLD_BIN] BIN" >&2; exit 2 ;;
  esac
done
[[ $# -eq 1 ]] || { echo "usage: $0 [--scenario S0|S2] [--qps N] [--runs N] [--base OLD_BIN] BIN" >&2; exit 2; }
case $SCEN in
  S0) QPS=${QPS:-100000} ;;
  S2) QPS=${QPS:-80000} ;;
  *) echo "$0: unknown scenario $SCEN (S0 or S2)" >&2; exit 2 ;;
esac
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
# shellcheck source=ci/lib.sh
. "$HERE/ci/lib.sh"
need dnsperf dig perf taskset
workdir fixedrate

SERVERS=()   # "name|command" (the command is word-split)
case $SCEN in
  S0)
    command -v cc >/dev/null || { echo "$0: cc not found" >&2; exit 1; }
    cc -O2 -o "$WORK/udp_echo" "$BENCH_DIR/echo/udp_echo.c"
    printf '.:5353 {\n whoami\n}\n' > "$WORK/Corefile"
    for i in $(seq 0 999); do echo "n$i.bench.test. A"; done > "$WORK/queries.txt"
    PROBE=n0.bench.test
    SERVERS+=("echo|$WORK/udp_echo 127.0.0.1 5353")
    ;;
  S2)
    s2_files
    awk 'BEGIN { for (i = 0; i < 200000; i++) print "u" i ".wild.bench.test. A" }' > "$WORK/queries.txt"
    PROBE=probe.wild.bench.test
    taskset -c 1 "$BIN" -conf "$WORK/up.Corefile" >/dev/null 2>&1 &
    PIDS+=("$!")
    ready 5301 "$PROBE" || { echo "$0: the upstream did not start" >&2; exit 1; }
    RELAY=$(dirname "$BIN")/ringdns-perf
    if [[ -x $RELAY ]]; then
      SERVERS+=("relay|$RELAY relay 127.0.0.1:5353 127.0.0.1:5301")
      SERVERS+=("relay-uring|$RELAY relay --uring 127.0.0.1:5353 127.0.0.1:5301")
    fi
    if command -v dnsdist >/dev/null; then
      cat > "$WORK/dnsdist.conf" <<'EOF'
setSecurityPollSuffix("")
setLocal("127.0.0.1:5353")
setMaxUDPOutstanding(65535)
newServer({address="127.0.0.1:5301", name="upstream", checkName="bench.test."})
EOF
      SERVERS+=("dnsdist|dnsdist --supervised --disable-syslog -C $WORK/dnsdist.conf")
    fi
    ;;
esac
SERVERS+=("uring|$BIN -conf $WORK/Corefile" "epoll|$BIN -backend epoll -conf $WORK/Corefile")
if [[ -n $BASE ]]; then
  SERVERS+=("base-uring|$BASE -conf $WORK/Corefile" "base-epoll|$BASE -backend epoll -conf $WORK/Corefile")
fi

run() { # name, server command...
  local name=$1; shift
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local srv=$!
  PIDS+=("$srv")
  if ! ready 5353 "$PROBE"; then
    echo "$name: did not answer" >&2
    kill "$srv" 2>/dev/null || true
    return
  fi
  taskset -c 1 dnsperf -s 127.0.0.1 -p 5353 -d "$WORK/queries.txt" -l 8 -Q "$QPS" -c 16 -T 2 -t 1 \
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
    'BEGIN { printf "%-10s %8.0f QPS  %.2f us of server CPU per query\n", n, q, ms * 1000 / (q * 5) }' \
    | tee -a "$WORK/results.txt"
}

for r in $(seq 1 "$RUNS"); do
  echo "run $r ($SCEN, target $QPS QPS)"
  for s in "${SERVERS[@]}"; do
    # shellcheck disable=SC2086 # the command is meant to be split into words
    run "${s%%|*}" ${s#*|}
  done
done
echo "medians ($RUNS runs):"
for name in $(awk '{print $1}' "$WORK/results.txt" | sort -u); do
  awk -v n="$name" '$1 == n {print $4}' "$WORK/results.txt" | sort -g |
    awk -v n="$name" '{ a[NR] = $1 } END {
      m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
      printf "%-10s %.2f us per query\n", n, m
    }'
done
