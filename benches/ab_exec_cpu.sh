#!/usr/bin/env bash
# A/B of ferryd's own CPU per exec (issue 20 item 4), next to its floor: two
# ferryd builds, A (a copy of main's release binaries, in $A_BIN) and B (this
# tree's release build), each round (A/B order alternating between rounds):
#   ferry-bench exec -c 1 --argv /bin/true against A and B,
#   the C loop `baseline spawn 3000 /bin/true` (benches/baseline.c),
#   the C loop of ferryd's own exec syscalls `baseline execfloor 3000 /bin/true`,
#   ferry-bench ping -c 1 against A and B.
# For each ferryd run: its CPU per operation by `perf stat --no-inherit -e
# task-clock,context-switches -p PID` over the measured window (pcpu, cs) and
# ferry-bench's own figure from /proc (scpu); for the C loop, perf's task-clock
# (pcpu) and its getrusage figure (scpu). One line per run, then the medians.
# Needs perf, gcc, jq. Loopback only; every server is killed by PID at exit.
#   A_BIN=/tmp/ab-main ROUNDS=10 SECS=3 bash benches/ab_exec_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
A_BIN=${A_BIN:?set A_BIN to a directory holding the ferryd of main}
B_BIN=${B_BIN:-target/release}
ROUNDS=${ROUNDS:-10}; SECS=${SECS:-3}
FB=$B_BIN/ferry-bench
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
[ "$(id -u)" != 0 ] || renice -n -10 $$ > /dev/null
gcc -O2 -o "$work/baseline" benches/baseline.c
"$B_BIN/ferry" keygen -q --id bench "$work/keys"; export FERRY_KEYS=$work/keys
mkdir "$work/root"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORTS=(); PIDS=(); NAMES=(A B)
for bin in "$A_BIN" "$B_BIN"; do
  p=$(port)
  "$bin/ferryd" --config /dev/null --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" \
    --log-level warn 2> /dev/null & pids+=("$!"); PIDS+=("$!"); PORTS+=("$p")
  for _ in $(seq 200); do ss -Hltn "sport = :$p" | grep -q . && break; sleep 0.05; done
done
WIN=$(awk -v s="$SECS" 'BEGIN {print s - 0.6}')
per() { awk -v t="$1" -v o="$2" -v s="$WIN" -v k="$3" 'BEGIN {printf "%.2f", t * k / (o * s)}'; }
one() { # mode index
  local p=${PORTS[$2]} pid=${PIDS[$2]} bp tc cs ops
  if [ "$1" = exec ]; then "$FB" exec --port "$p" --server-pid "$pid" -c 1 -d "$SECS" --argv /bin/true --json > "$work/j" 2> /dev/null &
  else "$FB" ping --port "$p" --server-pid "$pid" -c 1 -d "$SECS" --json > "$work/j" 2> /dev/null & fi
  bp=$!; sleep 1.3   # past ferry-bench's 1 s warm-up
  perf stat --no-inherit -x, -e task-clock,context-switches -p "$pid" -- sleep "$WIN" 2> "$work/ps" > /dev/null
  wait "$bp"
  tc=$(grep task-clock "$work/ps" | cut -d, -f1); cs=$(grep context-switches "$work/ps" | cut -d, -f1)
  ops=$(jq .ops_per_s "$work/j")
  echo "r$r $1-${NAMES[$2]} pcpu=$(per "$tc" "$ops" 1000) cs=$(per "$cs" "$ops" 1) scpu=$(jq .server_cpu_us_per_op "$work/j") p50=$(jq .latency_us.p50 "$work/j") failed=$(jq '.failed // 0' "$work/j") load=$(cut -d' ' -f1 /proc/loadavg)"
}
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
  for i in $order; do one exec "$i"; done
  s=$(perf stat --no-inherit -x, -e task-clock,context-switches "$work/baseline" spawn 3000 /bin/true 2> "$work/cps")
  echo "r$r cloop pcpu=$(awk -F, '/task-clock/ {printf "%.2f", $1 * 1000 / 3000}' "$work/cps") cs=$(awk -F, '/context-switches/ {printf "%.2f", $1 / 3000}' "$work/cps") scpu=$(awk '{print $6}' <<<"$s") p50=$(awk '{print $2}' <<<"$s") load=$(cut -d' ' -f1 /proc/loadavg)"
  s=$(perf stat --no-inherit -x, -e task-clock,context-switches "$work/baseline" execfloor 3000 /bin/true 2> "$work/cps")
  echo "r$r xloop pcpu=$(awk -F, '/task-clock/ {printf "%.2f", $1 * 1000 / 3000}' "$work/cps") cs=$(awk -F, '/context-switches/ {printf "%.2f", $1 / 3000}' "$work/cps") scpu=$(awk '{print $6}' <<<"$s") p50=$(awk '{print $2}' <<<"$s") load=$(cut -d' ' -f1 /proc/loadavg)"
  for i in $order; do one ping "$i"; done
done | tee "$work/runs"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians (min-max) over $ROUNDS rounds:"
python3 - "$work/runs" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    for kv in f[2:]:
        k, v = kv.split("=")
        if k not in ("load", "failed"):
            d[f[1]][k].append(float(v))
for name in sorted(d):
    print(f"{name:12}", " ".join(f"{k}={statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" for k, v in d[name].items()))
PY
