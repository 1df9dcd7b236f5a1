#!/usr/bin/env bash
# The soak: CLIENTS clients (default 200) for SECONDS seconds (default 60)
# against one release-built ferryd on loopback, mixing ping, exec (stdin in,
# digest out), get and put (read back), every byte checked by SHA-256.
# Prints requests, errors (must be 0), bytes verified, the daemon's peak RSS
# and fd count; exits non-zero on any error. (tests/soak.rs; CI runs its
# 10 s, 50-client version as part of `cargo test`.)
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-200}
secs=${2:-60}
# 200 clients hold up to 200 sockets each side, plus the files they verify.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FERRY_SOAK_CLIENTS=$clients FERRY_SOAK_SECS=$secs \
  exec cargo test --release --test soak -- --ignored --nocapture --exact soak_full
