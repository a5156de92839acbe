#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and integration tests
# on both packet engines. Installs what the tests need when missing: the DNS
# clients (dig, kdig, delv), dnstap tools (dnstap-read, fstrm_capture), BIND's zone
# verifier (dnssec-verify), dnsperf, and real servers used as upstream/primary
# (nsd, knot), etcd and its etcdctl (for *etcd*), and a Prometheus server that
# scrapes us, without starting their packaged services.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
command -v dnstap-read >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v dnssec-verify >/dev/null 2>&1 || need+=(bind9-utils)
command -v fstrm_capture >/dev/null 2>&1 || need+=(fstrm-bin)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v nsd >/dev/null 2>&1 || [ -x /usr/sbin/nsd ] || need+=(nsd)
command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci/test.sh: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # pgrep matches at most 15 characters of a name: one pattern per daemon.
  daemons() { for d in nsd knotd prometheus etcd; do pgrep -x "$d" || true; done; }
  before=$(daemons)
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    made_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
  # Packages may still have started their daemons: stop exactly those the install started.
  for pid in $(daemons); do
    if ! printf '%s\n' $before | grep -qx "$pid"; then
      echo "ci/test.sh: stopping pid $pid started by the install"
      $SUDO kill -TERM "$pid" 2>/dev/null || true
    fi
  done
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build"
cargo build --workspace --all-targets

# io_uring integration runs only where the kernel allows it; say why otherwise.
probe=$(./target/debug/ringdns -backend auto -validate -conf /dev/null 2>&1 | grep "packet engine" || true)
if echo "$probe" | grep -q "packet engine io_uring"; then
  export RINGDNS_TEST_URING=1
  echo "== io_uring available: integration tests run on both backends"
else
  echo "== io_uring unavailable here (${probe#*packet engine }): integration tests run on the epoll backend only"
fi

echo "== cargo test"
cargo test --workspace --all-targets
