#!/usr/bin/env bash
# Transfers, before and after: an older build of ferry and ferryd (A, given as
# OLD=DIR holding its ferry and ferryd) against this tree's release build (B),
# each client with its own daemon on the same root, next to the peers the
# targets of issue 20 name: nc (to /dev/null and into a file + sync), scp
# (throwaway sshd) and the rsync daemon. Every row runs once per round and the
# rows alternate within a round (A B peers A B peers ...), so load elsewhere
# hits both builds alike. Plaintext rows, then the same transfers over TLS
# (`--tls`, forced on loopback).
#
#   OLD=/tmp/ferry-old ROUNDS=5 MIB=256 bash benches/transfer_ab.sh
#
# Prints one line per row (median, min-max, seconds per round) and the ratios
# of the medians and per round. Nothing is written to BENCHMARKS.md: the
# figures go there by hand, with the load this script prints.
set -euo pipefail
cd "$(dirname "$0")/.."
ME=transfer_ab.sh
. benches/lib.sh
OLD=${OLD:?give OLD=DIR with the older ferry and ferryd}
ROUNDS=${ROUNDS:-5}
MIB=${MIB:-256}
BIN=$PWD/target/release
case "$ROUNDS$MIB" in *[!0-9]*) echo "$ME: ROUNDS and MIB are numbers" >&2; exit 2;; esac
need_commands nc:netcat-openbsd sshd:openssh-server scp:openssh-client rsync:rsync ss:iproute2
install_needed
cargo build --release --quiet --bin ferryd --bin ferry

bench_work transfer-ab
wait_port() {
  for _ in $(seq 300); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done
  echo "$ME: nothing listens on $1" >&2; return 1
}
mkdir -p "$work/root" "$work/out" "$work/ssh"
head -c $((MIB << 20)) /dev/urandom > "$work/root/big"
sync "$work/root/big"
cat "$work/root/big" > /dev/null

"$BIN/ferry" keygen -q --id bench "$work/keys"
export FERRY_KEYS=$work/keys
start_ferryd() { # dir-of-binaries ; sets PORT
  local p; p=$(free_port)
  "$1/ferryd" --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" --log-level warn \
    > /dev/null 2>> "$work/ferryd.log" &
  pids+=("$!")
  wait_port "$p"
  PORT=$p
}
start_ferryd "$OLD"; APORT=$PORT
start_ferryd "$BIN"; BPORT=$PORT

RPORT=$(free_port)
printf 'use chroot = no\npid file = %s\n[mod]\n  path = %s\n  read only = no\n  uid = root\n  gid = root\n' \
  "$work/rsyncd.pid" "$work/root" > "$work/rsyncd.conf"
rsync --daemon --no-detach --address=127.0.0.1 --port="$RPORT" --config="$work/rsyncd.conf" &
pids+=("$!")
wait_port "$RPORT"
# shellcheck source=benches/sshd.sh
. benches/sshd.sh
sshd_keys "$work/ssh"
SPORT=$(free_port)
sshd_start "$SPORT" 127.0.0.1

declare -A vals
add() { vals[$1]="${vals[$1]:-} $2"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}'; }
# Each copy is checked and removed, then (untimed) everything is synced: the
# file system here is mounted with `discard`, and the journal commit that
# trims a removed file's blocks would otherwise land in the next row's fsync,
# always the other build's.
same() { cmp -s "$1" "$work/root/big" || { echo "$ME: $2: the copy differs" >&2; exit 1; }; rm -f "$1"; sync; }
nc_copy() { # out-file
  local p r t; p=$(free_port)
  nc -l 127.0.0.1 "$p" > "$1" & r=$!
  wait_port "$p"
  t=$(now); nc -N 127.0.0.1 "$p" < "$work/root/big"; wait $r
  [ "$1" = /dev/null ] || sync "$1"
  since "$t"
}
fget_null() { # bin port flags...
  local b=$1 p=$2 t; shift 2; t=$(now); "$b/ferry" -q get "$@" "127.0.0.1:$p" big - > /dev/null; since "$t"
}
fget_file() { # bin port out flags...
  local b=$1 p=$2 o=$3 t; shift 3; t=$(now); "$b/ferry" -q get "$@" "127.0.0.1:$p" big "$o"; since "$t"
}
fput() { # bin port name flags...
  local b=$1 p=$2 n=$3 t; shift 3; t=$(now); "$b/ferry" -q put "$@" "127.0.0.1:$p" "$work/root/big" "$n"; since "$t"
}

o=$work/out r=$work/root
sync
for round in $(seq "$ROUNDS"); do
  echo "round $round: $(uptime | sed 's/.*load average: /load /')" >&2
  add nc_null "$(nc_copy /dev/null)"
  add a_null "$(fget_null "$OLD" "$APORT")"
  add b_null "$(fget_null "$BIN" "$BPORT")"
  add b_null_sha "$(fget_null "$BIN" "$BPORT" --digest sha256)"
  add a_file "$(fget_file "$OLD" "$APORT" "$o/a.bin")"; same "$o/a.bin" "old get"
  add b_file "$(fget_file "$BIN" "$BPORT" "$o/b.bin")"; same "$o/b.bin" "new get"
  add nc_file "$(nc_copy "$o/nc.bin")"; same "$o/nc.bin" "nc"
  t=$(now); scp -q "${SSH_OPTS[@]}" -P "$SPORT" "root@127.0.0.1:$r/big" "$o/scp.bin"; sync "$o/scp.bin"
  add scp_get "$(since "$t")"; same "$o/scp.bin" "scp get"
  t=$(now); rsync -q --whole-file "rsync://127.0.0.1:$RPORT/mod/big" "$o/rs.bin"; sync "$o/rs.bin"
  add rsync_get "$(since "$t")"; same "$o/rs.bin" "rsync get"
  add a_put "$(fput "$OLD" "$APORT" a-put.bin)"; same "$r/a-put.bin" "old put"
  add b_put "$(fput "$BIN" "$BPORT" b-put.bin)"; same "$r/b-put.bin" "new put"
  t=$(now); scp -q "${SSH_OPTS[@]}" -P "$SPORT" "$r/big" "root@127.0.0.1:$r/scp-put.bin"; sync "$r/scp-put.bin"
  add scp_put "$(since "$t")"; same "$r/scp-put.bin" "scp put"
  t=$(now); rsync -q --whole-file "$r/big" "rsync://127.0.0.1:$RPORT/mod/rs-put.bin"; sync "$r/rs-put.bin"
  add rsync_put "$(since "$t")"; same "$r/rs-put.bin" "rsync put"
  add a_tls_null "$(fget_null "$OLD" "$APORT" --tls)"
  add b_tls_null "$(fget_null "$BIN" "$BPORT" --tls)"
  add a_tls_file "$(fget_file "$OLD" "$APORT" "$o/at.bin" --tls)"; same "$o/at.bin" "old TLS get"
  add b_tls_file "$(fget_file "$BIN" "$BPORT" "$o/bt.bin" --tls)"; same "$o/bt.bin" "new TLS get"
  add a_tls_put "$(fput "$OLD" "$APORT" at-put.bin --tls)"; same "$r/at-put.bin" "old TLS put"
  add b_tls_put "$(fput "$BIN" "$BPORT" bt-put.bin --tls)"; same "$r/bt-put.bin" "new TLS put"
done
echo "end: $(uptime | sed 's/.*load average: /load /')" >&2

for k in "${!vals[@]}"; do echo "$k${vals[$k]}"; done | sort > "$work/vals"
python3 - "$work/vals" "$MIB" <<'EOF'
import statistics, sys
vals = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open(sys.argv[1])}
mb = int(sys.argv[2]) * 1048576 / 1e6
for k, v in vals.items():
    print(f"{k:12} median {statistics.median(v):.3f} s ({mb/statistics.median(v):,.0f} MB/s), "
          f"{min(v):.3f}-{max(v):.3f}, rounds: {' '.join(f'{x:.3f}' for x in v)}")
def ratio(name, fast, slow):
    # speed of `fast` over the speed of `slow`: slow's time over fast's
    if fast not in vals or slow not in vals:
        return
    m = statistics.median(vals[slow]) / statistics.median(vals[fast])
    per = [s / f for f, s in zip(vals[fast], vals[slow])]
    print(f"{name:44} {m:.2f}x  per round {min(per):.2f}-{max(per):.2f}x ({' '.join(f'{x:.2f}' for x in per)})")
print()
for pre, label in (("", ""), ("tls_", "TLS ")):
    ratio(f"{label}get -, after / before", f"b_{pre}null", f"a_{pre}null")
    ratio(f"{label}get -, after with sha256 / before", f"b_{pre}null_sha", f"a_{pre}null")
    ratio(f"{label}get to disk, after / before", f"b_{pre}file", f"a_{pre}file")
    ratio(f"{label}put, after / before", f"b_{pre}put", f"a_{pre}put")
for who in ("a", "b"):
    w = "before" if who == "a" else "after"
    ratio(f"get - ({w}) / nc > /dev/null", f"{who}_null", "nc_null")
    ratio(f"get to disk ({w}) / scp", f"{who}_file", "scp_get")
    ratio(f"get to disk ({w}) / rsyncd", f"{who}_file", "rsync_get")
    ratio(f"put ({w}) / nc into a file", f"{who}_put", "nc_file")
    ratio(f"put ({w}) / scp", f"{who}_put", "scp_put")
    ratio(f"put ({w}) / rsyncd", f"{who}_put", "rsync_put")
    ratio(f"TLS get to disk ({w}) / scp", f"{who}_tls_file", "scp_get")
    ratio(f"TLS put ({w}) / scp", f"{who}_tls_put", "scp_put")
EOF
