#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and integration tests
# on both packet engines. Installs the DNS clients the tests use when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
if [ ${#need[@]} -gt 0 ]; then
  echo "ci/test.sh: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build --release (daemon used by integration tests)"
cargo build --workspace --all-targets

# io_uring integration runs only where the kernel allows it; say why otherwise.
if ./target/debug/ringdns -backend uring -validate -conf /dev/null 2>/dev/null | grep -q "packet engine io_uring"; then
  export RINGDNS_TEST_URING=1
  echo "== io_uring available: integration tests run on both backends"
else
  echo "== io_uring unavailable here: integration tests run on the epoll backend only"
fi

echo "== cargo test"
cargo test --workspace --all-targets -- --test-threads=2
