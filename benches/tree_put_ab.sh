#!/bin/bash
# A/B of `ferry put -r` of a tree of big files (N files of MIB MiB): an
# older build (OLD=dir with its ferry and ferryd) against this tree's
# release build, each into its own ferryd of the same build, alternating,
# ROUNDS rounds; rows "old", "new-blake3" (default digest) and "new-sha256"
# (--digest sha256). Each copy is diffed and removed, then synced.
#   OLD=/tmp/oldbin N=6 MIB=32 ROUNDS=7 bash benches/tree_put_ab.sh
set -euo pipefail
W=${WORK:-$(mktemp -d)}/w; rm -rf "$W"; mkdir -p "$W/src/tbig" "$W/rold" "$W/rnew"
N=${N:-8}; MIB=${MIB:-32}; ROUNDS=${ROUNDS:-5}
for i in $(seq $N); do head -c $((MIB<<20)) /dev/urandom > "$W/src/tbig/f$i.bin"; done
sync -f "$W"
NEW=${NEW:-$(cd "$(dirname "$0")/.." && pwd)/target/release}; OLD=${OLD:?OLD: the directory of the older ferry and ferryd}
$NEW/ferry keygen -q --id ab "$W/keys"; export FERRY_KEYS=$W/keys
start() { # bin root
  "$1/ferryd" --config /dev/null --foreground --listen 127.0.0.1:0 --root "$2" --keys "$W/keys" --log-level info 2> "$2.log" > /dev/null &
  echo $! > "$2.pid"
  for _ in $(seq 200); do p=$(grep -o 'listening on [0-9.]*:[0-9]*' "$2.log" | head -1 | sed 's/.*://'); [ -n "$p" ] && break; sleep 0.05; done
  echo "$p"
}
PO=$(start $OLD "$W/rold"); PN=$(start $NEW "$W/rnew")
run() { # name bin port root args...
  local name=$1 bin=$2 port=$3 root=$4; shift 4
  local t0=$EPOCHREALTIME
  "$bin/ferry" -q put -r "$@" 127.0.0.1:$port "$W/src/tbig" t
  local t1=$EPOCHREALTIME
  diff -r -q "$W/src/tbig" "$root/t" >/dev/null || { echo "$name: differs"; exit 1; }
  rm -rf "$root/t"; sync -f "$W"
  awk -v a=$t0 -v b=$t1 -v n=$name 'BEGIN{printf "%s %.3f\n", n, b-a}'
}
for r in $(seq $ROUNDS); do
  run old $OLD $PO "$W/rold"
  run new-blake3 $NEW $PN "$W/rnew"
  run new-sha256 $NEW $PN "$W/rnew" --digest sha256
done
kill "$(cat $W/rold.pid)" "$(cat $W/rnew.pid)"; rm -rf "$W"
