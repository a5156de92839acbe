# Shared by ci/fixedrate.sh and ci/cachegrind.sh (sourced, not run).

# need TOOL...: exits naming the first tool not installed.
need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$0: $t not found" >&2; exit 1; }
  done
}

# workdir NAME: a fresh $WORK under $TMPDIR, removed on exit with every process whose
# PID the script adds to PIDS.
workdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringdns-$1.XXXXXX")
  PIDS=()
  trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
}

# ready PORT QNAME [TENTHS]: waits until 127.0.0.1:PORT answers QNAME (5 s by default).
ready() {
  local i
  for i in $(seq "${3:-50}"); do
    dig +tries=1 +time=1 -p "$1" @127.0.0.1 "$2" A 2>/dev/null | grep -q 'status: NOERROR' && return 0
    sleep 0.1
  done
  return 1
}

# s2_files: S2's upstream zone (a wildcard: every name resolves) and Corefiles in $WORK:
# up.Corefile serves it on 127.0.0.1:5301, Corefile forwards to it from :5353.
s2_files() {
  cat > "$WORK/db.bench.test" <<'ZONE'
$ORIGIN bench.test.
$TTL 300
@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300
@ IN NS ns.bench.test.
ns IN A 127.0.0.1
*.wild IN A 192.0.2.1
ZONE
  printf 'bench.test:5301 {\n file %s\n}\n' "$WORK/db.bench.test" > "$WORK/up.Corefile"
  printf '.:5353 {\n forward . 127.0.0.1:5301\n}\n' > "$WORK/Corefile"
}
