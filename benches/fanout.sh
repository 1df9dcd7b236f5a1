#!/usr/bin/env bash
# ferry run -H of `true` on many targets: distinct loopback address:port pairs
# (127.0.D.A:PORT; all of 127.0.0.0/8 is local on Linux), served by a few
# ferryd processes that each listen on up to 63 addresses (ferryd takes at
# most 64 --listen). Prints the wall time of each round and the median.
#
#   bash benches/fanout.sh              # 100 and 1000 targets, 5 rounds each
#   TARGETS="1000" ROUNDS=9 bash benches/fanout.sh
#
# Only the figures of one run mean anything on a shared machine; nothing here
# gates CI. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
TARGETS=${TARGETS:-"100 1000"}
PORT=${PORT:-7931}
PER=63

cargo build --release --quiet --bin ferryd --bin ferry
BIN=$PWD/target/release
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$BIN/ferry" keygen -q --id bench "$work/keys"
export FERRY_KEYS=$work/keys

max=0
for n in $TARGETS; do ((n > max)) && max=$n; done
daemons=$(((max + PER - 1) / PER))
for d in $(seq 1 "$daemons"); do
  args=()
  for a in $(seq 1 $PER); do args+=(--listen "127.0.$d.$a:$PORT"); done
  mkdir -p "$work/root$d"
  "$BIN/ferryd" --config /dev/null --foreground --log-level warn --root "$work/root$d" --keys "$work/keys" \
    "${args[@]}" 2> "$work/ferryd$d.log" &
  pids+=($!)
done
# Every daemon answers before the clock starts.
for _ in $(seq 200); do
  "$BIN/ferry" -q -w 1 ping -H "127.0.[1-$daemons].1:$PORT" 2>/dev/null && break
  sleep 0.05
done

# The first N targets, as a HOSTS spec: whole daemons, then part of one.
spec() {
  local n=$1 full=$(($1 / PER)) rest=$(($1 % PER)) s=""
  ((full > 0)) && s="127.0.[1-$full].[1-$PER]:$PORT"
  ((rest > 0)) && s="${s:+$s,}127.0.$((full + 1)).[1-$rest]:$PORT"
  echo "$s"
}

echo "ferry run -H of true, $ROUNDS rounds ($daemons ferryd, up to $PER addresses each; $(nproc) cores)"
for n in $TARGETS; do
  hosts=$(spec "$n")
  times=()
  for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s.%N)
    "$BIN/ferry" -q run -H "$hosts" -- true || { echo "round failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc)")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")
  printf '%5d targets: median %.3f s (rounds: %s)\n' "$n" "$median" "$(printf '%.3f ' "${times[@]}")"
done
