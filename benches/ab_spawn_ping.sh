#!/usr/bin/env bash
# A/B of the exec and ping rows (issue 20 items 4 and 5): two ferryd builds,
# A (a copy of main's binaries, in $A_BIN) and B (this tree's release build),
# run side by side with the same ferry-bench (B's), alternating A B redis
# every round. Prints one line per run and the medians. Needs redis-server
# and gcc (for baseline.c's posix_spawn+wait loop).
#   A_BIN=/tmp/ab-main ROUNDS=5 SECS=3 bash benches/ab_spawn_ping.sh
set -euo pipefail
cd "$(dirname "$0")/.."
A_BIN=${A_BIN:?set A_BIN to a directory holding the ferryd of main}
B_BIN=${B_BIN:-target/release}
ROUNDS=${ROUNDS:-5}; SECS=${SECS:-3}
FB=$B_BIN/ferry-bench
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
gcc -O2 -o "$work/baseline" benches/baseline.c
"$B_BIN/ferry" keygen -q --id bench "$work/keys"; export FERRY_KEYS=$work/keys
mkdir "$work/root"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # name bin
  local p; p=$(port)
  "$2/ferryd" --config /dev/null --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" \
    --log-level warn --max-connections 5000 2> "$work/$1.log" & pids+=("$!")
  eval "${1}_PID=$!; ${1}_PORT=$p"
  for _ in $(seq 200); do ss -Hltn "sport = :$p" | grep -q . && return; sleep 0.05; done; exit 1
}
start A "$A_BIN"; start B "$B_BIN"
RPORT=$(port); redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 5000 > "$work/redis.log" 2>&1 & RPID=$!; pids+=("$RPID")
sleep 0.5
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
j() { "$FB" "$@" --json 2>/dev/null; }
for r in $(seq "$ROUNDS"); do
  echo "round $r, load $(cut -d' ' -f1 /proc/loadavg)"
  for s in A B; do
    pv=${s}_PORT; pp=${s}_PID
    e=$(j exec --port "${!pv}" --server-pid "${!pp}" -c 1 -d "$SECS" --argv /bin/true)
    echo "exec $s p50_us=$(jq .latency_us.p50 <<<"$e") mean_us=$(jq '1e6/.ops_per_s' <<<"$e") server_cpu_us=$(jq .server_cpu_us_per_op <<<"$e") failed=$(jq .failed <<<"$e")"
  done
  echo "spawn local p50_us=$("$work/baseline" spawn 1000 /bin/true | awk '{print $2}')"
  for c in 50 1000; do
    for s in A B R; do
      if [ $s = R ]; then e=$(j ping --resp --port "$RPORT" --server-pid "$RPID" -c $c -d "$SECS")
      else pv=${s}_PORT; pp=${s}_PID; e=$(j ping --port "${!pv}" --server-pid "${!pp}" -c $c -d "$SECS"); fi
      echo "ping$c $s rps=$(jq .ops_per_s <<<"$e") p99_us=$(jq .latency_us.p99 <<<"$e") server_cpu_us=$(jq .server_cpu_us_per_op <<<"$e")"
    done
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
