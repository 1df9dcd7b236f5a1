#!/usr/bin/env bash
# File transfer throughput over loopback: ferry get and put of one file next to
# a raw netcat transfer of the same file, in the same run, alternating rounds.
#
#   bash benches/files.sh            # 1 GiB, 3 rounds
#   FERRY_BENCH_MIB=256 ROUNDS=5 bash benches/files.sh
#
# Rows (each the median of ROUNDS, MB/s = 10^6 bytes per second):
#   nc -> nc, to /dev/null        the floor: a raw TCP copy of the file
#   nc -> nc, to a file + fsync   the floor for an upload that lands on disk
#   get, digest none              ferryd's sendfile path; client discards (Python, 20 lines)
#   ferry get (sha256) -> file    the CLI: .part file, whole-file digest checked, renamed
#   ferry get - (sha256) > null   the CLI without the local disk
#   ferry put (sha256)            the CLI: hashes the file, sends it; ferryd writes a temp
#                                 file, fsyncs, checks the digest, renames
# Ratios are against the matching nc row. Only ratios of one run mean anything
# on a shared machine; nothing here gates CI. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${FERRY_BENCH_MIB:-1024}
ROUNDS=${ROUNDS:-3}

if ! command -v nc >/dev/null || ! nc -h 2>&1 | grep -q -- "-N" || ! command -v bc >/dev/null || ! command -v ss >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netcat-openbsd bc iproute2 >/dev/null
fi
cargo build --release --quiet --bin ferryd --bin ferry
BIN=$PWD/target/release

work=$(mktemp -d)
trap 'kill $dpid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/root" "$work/out"
head -c $((MIB << 20)) /dev/urandom > "$work/root/big"
"$BIN/ferry" keygen -q --id bench "$work/keys"
export FERRY_KEYS=$work/keys

"$BIN/ferryd" --listen 127.0.0.1:0 --root "$work/root" --keys "$work/keys" 2> "$work/ferryd.log" &
dpid=$!
for _ in $(seq 200); do
  grep -q 'listening on' "$work/ferryd.log" && break
  sleep 0.05
done
addr=$(grep -o 'listening on .*' "$work/ferryd.log" | head -1 | awk '{print $3}')
[ -n "$addr" ] || { echo "ferryd did not start"; cat "$work/ferryd.log"; exit 1; }
port=${addr##*:}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Seconds for a command, as a float.
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

nc_copy() { # $1: receiver's output file
  local p; p=$(free_port)
  nc -l 127.0.0.1 "$p" > "$1" &
  local r=$!
  for _ in $(seq 100); do ss -ltn 2>/dev/null | grep -q ":$p " && break; sleep 0.02; done
  nc -N 127.0.0.1 "$p" < "$work/root/big"
  wait $r
  [ "$1" = /dev/null ] || sync "$1"
}

raw_get_none() {
  python3 - "$port" "$work/keys" <<'EOF'
import hashlib, hmac, json, os, socket, struct, sys
port, keys = int(sys.argv[1]), sys.argv[2]
kid, secret = next(l.split() for l in open(keys) if l.strip() and not l.startswith('#'))
s = socket.create_connection(("127.0.0.1", port))
def send(h): b = json.dumps(h).encode(); s.sendall(struct.pack(">I", len(b)) + b)
def exact(n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c: raise SystemExit("cut")
        b += c
    return bytes(b)
def recv(): return json.loads(exact(struct.unpack(">I", exact(4))[0]))
hello = recv(); cn = os.urandom(32).hex()
mac = hmac.new(secret.encode(), f"ferry-client|{hello['nonce']}|{cn}".encode(), hashlib.sha256).hexdigest()
send({"type": "auth", "key_id": kid, "nonce": cn, "mac": mac}); assert recv()["type"] == "welcome"
send({"type": "get", "path": "big", "digest": "none"}); h = recv(); left = h["size"]
buf = bytearray(1 << 20)
while left:
    n = s.recv_into(buf, min(left, len(buf)))
    if not n: raise SystemExit("cut")
    left -= n
assert recv()["type"] == "done"
EOF
}

declare -A times
add() { times[$1]="${times[$1]:-} $2"; }
for r in $(seq "$ROUNDS"); do
  add nc_null "$(timed nc_copy /dev/null)"
  add get_none "$(timed raw_get_none)"
  add get_cli_null "$(timed sh -c "'$BIN/ferry' -q get '$addr' big - > /dev/null")"
  add nc_file "$(timed nc_copy "$work/out/nc.bin")"
  rm -f "$work/out/nc.bin"
  add get_cli_file "$(timed "$BIN/ferry" -q get "$addr" big "$work/out/got.bin")"
  cmp -s "$work/out/got.bin" "$work/root/big" || { echo "ferry get: the copy differs"; exit 1; }
  rm -f "$work/out/got.bin"
  add put_cli "$(timed "$BIN/ferry" -q put "$addr" "$work/root/big" put.bin)"
  cmp -s "$work/root/put.bin" "$work/root/big" || { echo "ferry put: the copy differs"; exit 1; }
  rm -f "$work/root/put.bin"
  echo "round $r done" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f-%.2f", lo, hi}'; }
bytes=$((MIB << 20))
rate() { echo "scale=0; $bytes / $1 / 1000000" | bc -l; }

row() { # key label baseline-key
  local m b; m=$(echo "${times[$1]}" | median); b=$(echo "${times[$3]}" | median)
  printf '| %s | %s | %.2f | %s | %.2fx |\n' "$2" "$(rate "$m")" "$m" "$(echo "${times[$1]}" | spread)" \
    "$(echo "$b / $m" | bc -l)"
}
echo
echo "$MIB MiB over 127.0.0.1, $ROUNDS rounds, $(nproc) cores, $(uname -r)"
echo
echo '| transfer | MB/s (median) | seconds (median) | seconds (min-max) | vs nc |'
echo '|---|---|---|---|---|'
row nc_null "nc -> nc, to /dev/null" nc_null
row get_none "get, digest none, discarded" nc_null
row get_cli_null "ferry get - (sha256) > /dev/null" nc_null
row nc_file "nc -> nc, to a file + sync" nc_file
row get_cli_file "ferry get (sha256) to a file" nc_file
row put_cli "ferry put (sha256), fsynced" nc_file
