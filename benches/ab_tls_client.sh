#!/usr/bin/env bash
# A/B of the TLS client (TlsClient, shared by ferry, fan-out and ferry-bench):
# two client builds, A (a copy of main's release binaries, in $A_BIN) and B
# (this tree's release build), against one ferryd (B's), on 127.0.0.1.
# Each round (A/B order alternating between rounds), for A then B:
#   ferry-bench ping --tls -c 50 and ferry-bench ping -c 50 (SECS each),
#   ferry --tls get of a MIB MiB file to /dev/null (wall and CPU, /usr/bin/time);
# then once, cold starts alternated by the C loop (benches/baseline.c alt):
#   ferry --tls run -n HOST -- true, A and B, COLD runs each.
# One line per run, then the medians (min-max) and the per-round TLS/plaintext
# ratios. Needs gcc, jq, python3. Every server is killed by PID at exit.
#   A_BIN=/tmp/ab-main ROUNDS=6 SECS=3 bash benches/ab_tls_client.sh
set -euo pipefail
cd "$(dirname "$0")/.."
A_BIN=${A_BIN:?set A_BIN to a directory holding the ferry and ferry-bench of main}
B_BIN=${B_BIN:-target/release}
ROUNDS=${ROUNDS:-6}; SECS=${SECS:-3}; MIB=${MIB:-256}; COLD=${COLD:-300}
work=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
gcc -O2 -o "$work/baseline" benches/baseline.c
"$B_BIN/ferry" keygen -q --id bench "$work/keys"; export FERRY_KEYS=$work/keys
mkdir "$work/root"; head -c $((MIB << 20)) /dev/urandom > "$work/root/big"
p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$B_BIN/ferryd" --config /dev/null --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" \
  --log-level warn 2> /dev/null & pids+=("$!"); FPID=$!
for _ in $(seq 200); do ss -Hltn "sport = :$p" | grep -q . && break; sleep 0.05; done
load() { cut -d' ' -f1 /proc/loadavg; }
ping() { # name bin [--tls]
  local j; j=$("$2/ferry-bench" ping --port "$p" --server-pid "$FPID" -c 50 -d "$SECS" --json "${@:3}" 2> /dev/null)
  echo "r$r ${1}-$([ $# = 3 ] && echo tls || echo plain) ops=$(jq .ops_per_s <<<"$j") ccpu=$(jq .client_cpu_us_per_op <<<"$j") scpu=$(jq .server_cpu_us_per_op <<<"$j") load=$(load)"
}
get() { # name bin
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$2/ferry" --tls get "127.0.0.1:$p" big /dev/null
  read -r e u s < "$work/t"
  echo "r$r ${1}-get wall=$e cpu=$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}') load=$(load)"
}
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for n in $order; do
    b=$A_BIN; [ "$n" = B ] && b=$B_BIN
    ping "$n" "$b" --tls; ping "$n" "$b"; get "$n" "$b"
  done
done | tee "$work/runs"
"$work/baseline" alt "$COLD" "$A_BIN/ferry" --tls run -n "127.0.0.1:$p" -- true :: "$B_BIN/ferry" --tls run -n "127.0.0.1:$p" -- true \
  | awk '{print "cold-" (NR == 1 ? "A" : "B") " p50_us=" $1 " min_us=" $2 " max_us=" $3}' | tee -a "$work/runs"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/runs" <<'PY'
import collections, statistics as st, sys
d = collections.defaultdict(list); per = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    if not f[0].startswith("r"):
        continue
    kv = dict(x.split("=") for x in f[2:])
    d[f[1]].append(kv); per[f[0]][f[1]] = kv
def m(xs): return f"{st.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
for k in sorted(d):
    print(k, "  ".join(f"{n}={m([float(r[n]) for r in d[k]])}" for n in d[k][0] if n != "load"))
for n in "AB":
    rs = [float(v[f"{n}-tls"]["ops"]) / float(v[f"{n}-plain"]["ops"]) for v in per.values()]
    t = st.median(float(r["ops"]) for r in d[f"{n}-tls"]); c = st.median(float(r["ops"]) for r in d[f"{n}-plain"])
    print(f"{n}: TLS/plain req/s ratio of medians {t / c:.2f}; per round {m(rs)}, >= 0.85 in {sum(x >= 0.85 for x in rs)} of {len(rs)}")
PY
