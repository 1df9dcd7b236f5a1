#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); targets default to all of them (frame,
# header, paths, conn, datagram, sniff, sealed). Builds with cargo-fuzz (libFuzzer, AddressSanitizer,
# debug assertions) on the stable toolchain with RUSTC_BOOTSTRAP=1, which
# lets stable rustc take the -Z flags cargo-fuzz passes. cargo-fuzz itself is
# used when on PATH, else installed once into $FERRY_CACHE/cargo-fuzz
# (default /var/cache/ferry-ci, the directory CI keeps between runs).
#
# Targets run side by side, FUZZ_JOBS at once (default: the number of CPUs,
# at most 4). Each starts from its committed seeds (tests/fuzz/seeds/TARGET)
# plus what earlier runs found (tests/fuzz/corpus/TARGET, not committed).
# Exits 1 if any target crashed, hung (over 10 s on one input) or ran out
# of memory, and prints where the reproducer is and how to replay it.
set -euo pipefail

# All in one function, read whole before it runs: editing this file while it
# runs cannot change what a running copy does.
main() {
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
export CARGO_TERM_COLOR=never

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame header paths conn datagram sniff sealed)
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

# cargo-fuzz: the one on PATH, else the cached one, else install it there.
cache=${FERRY_CACHE:-/var/cache/ferry-ci}/cargo-fuzz
if ! cargo fuzz --version >/dev/null 2>&1; then
  export PATH="$cache/bin:$PATH"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz into $cache"
    mkdir -p "$cache"
    cargo install --quiet --locked --root "$cache" cargo-fuzz@0.13.2
  fi
fi

start=$(date +%s)
echo "fuzz: building the targets ($(cargo fuzz --version))"
if ! RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir tests/fuzz >"$top/tests/fuzz/build.log" 2>&1; then
  tail -n 40 tests/fuzz/build.log
  echo "fuzz: the build failed (tests/fuzz/build.log)"
  exit 1
fi
built=$(date +%s)
echo "fuzz: built in $((built - start)) s"
bin=tests/fuzz/target/x86_64-unknown-linux-gnu/release

# Scratch space for the targets' temporary roots, on a memory file system
# when there is one; removed at the end.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then tmp=$(mktemp -d /dev/shm/ferry-fuzz.XXXXXX); else tmp=$(mktemp -d); fi
# The targets write there: on any exit, stop them before removing it.
trap 'for p in "$tmp"/*.pid; do [ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; wait; rm -rf "$tmp"' EXIT

jobs=${FUZZ_JOBS:-$(nproc)}
[ "$jobs" -le 4 ] || jobs=4
[ "$jobs" -ge 1 ] || jobs=1

run_one() {
  local t=$1
  local corpus=tests/fuzz/corpus/$t artifacts=tests/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts" "$tmp/$t"
  local rc=0
  TMPDIR="$tmp/$t" "$bin/$t" "$corpus" "tests/fuzz/seeds/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$tmp/$t.log" 2>&1 &
  echo $! >"$tmp/$t.pid"
  wait $! || rc=$?
  rm -f "$tmp/$t.pid"
  echo "$rc" >"$tmp/$t.rc"
}

running=0
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  echo "fuzz: $t for ${secs} s"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

status=0
for t in "${targets[@]}"; do
  rc=$(cat "$tmp/$t.rc")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$tmp/$t.log" | tail -1 || true)
  if [ "$rc" = 0 ]; then
    echo "fuzz: $t: ok, ${runs:-?} executions, ${cov:-cov: ?}, corpus $(ls tests/fuzz/corpus/"$t" | wc -l) files"
  else
    status=1
    echo "fuzz: $t: FAILED (exit $rc) after ${runs:-?} executions; the end of its log:"
    grep -v -e '^"' -e '^###### ' "$tmp/$t.log" | tail -n 40 | sed 's/^/  | /'
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$tmp/$t.log" | tail -1)
    if [ -n "$repro" ]; then
      echo "fuzz: $t: reproducer: $repro"
      echo "fuzz: $t: replay it: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz $t $repro"
    fi
  fi
done
echo "fuzz: done in $(($(date +%s) - start)) s (build $((built - start)) s)"
return $status
}

main "$@"
exit
