#!/usr/bin/env bash
# ferry next to the tools users would pick instead, on the same machine, in the
# same run, in alternation (A B A B ...), written to benches/BENCHMARKS.md.
#
#   bash benches/compare.sh              # the full run: 1 GiB, 3 rounds, 10,000 idle
#   ROUNDS=5 bash benches/compare.sh     # more rounds
#   QUICK=1 bash benches/compare.sh      # a try-out: 64 MiB, 1 round, short runs,
#                                        # written to target/BENCHMARKS.quick.md
#   bash benches/trees.sh                # the tree rows alone (issue 21), see there
#
# Run as root on Debian: it installs redis-server, netcat-openbsd, openssh-server,
# openssh-client, rsync, gcc, bc, iproute2 and jq if any is missing
# (the packages' own services are not started), builds ferry in release, and
# starts every peer on 127.0.0.1 only, from throwaway configs in a temp dir:
# ferryd (TCP and UDP on one port), an sshd on a free port with its own host
# key and a generated root key (benches/sshd.sh), an rsync daemon with one module, a
# redis-server without persistence (and a second one over TLS only, with a
# throwaway self-signed certificate made by openssl), and the C baseline's bare
# UDP echo. Every
# server is killed by PID when the script exits; every wait is bounded. The
# package installation, the cleanup and free ports are benches/lib.sh's.
#
# The TLS rows (issue 18) run ferry's TLS 1.3 (\`--tls\`, forced on loopback)
# in the same rounds as plaintext ferry and the peers: get, put, the cold start,
# ping at 50 connections (and redis-server over TLS, driven by the same
# ferry-bench), and idle TLS connections (and redis over TLS beside them).
#
# Each row is measured once per round, the rows of a round one after the other,
# so ferry and its peers alternate and share the machine's noise. The table
# gives the median over the rounds and the spread (min-max); ratios are of the
# medians. Only ratios of one run mean anything on a shared machine.
#
# Environment: ROUNDS (default 3), QUICK=1, MIB (file size, default 1024),
# TREE_FILES, TREE_DIRS, TREE_BIG, TREE_BIG_MIB (the trees: benches/trees.sh),
# PING_SECS (default 5), IDLE_CONNS (default 10000), OUT (the Markdown file),
# UDP_SEEN_MAX (ferryd's udp.seen_max, default 4194304),
# NICE (default -10: as root the script and every server and client it starts
# run at this niceness, so other jobs on the machine disturb the run less; 0
# leaves it alone).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=benches/lib.sh
. benches/lib.sh
START=$EPOCHREALTIME
# shellcheck source=benches/stats.sh
. benches/stats.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  MIB=${MIB:-64}; ROUNDS=${ROUNDS:-1}; PING_SECS=${PING_SECS:-1}; IDLE_CONNS=${IDLE_CONNS:-1000}
  COLD_RUNS=5; SPAWN_RUNS=200; PTY_KEYS=200; OUT=${OUT:-target/BENCHMARKS.quick.md}
else
  MIB=${MIB:-1024}; ROUNDS=${ROUNDS:-3}; PING_SECS=${PING_SECS:-5}; IDLE_CONNS=${IDLE_CONNS:-10000}
  COLD_RUNS=30; SPAWN_RUNS=2000; PTY_KEYS=1000; OUT=${OUT:-benches/BENCHMARKS.md}
fi
case "$ROUNDS$MIB$PING_SECS$IDLE_CONNS" in *[!0-9]*) echo "compare.sh: ROUNDS, MIB, PING_SECS and IDLE_CONNS are numbers" >&2; exit 2;; esac
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 50 ]; then echo "compare.sh: ROUNDS must be 1..50" >&2; exit 2; fi
BYTES=$((MIB << 20))
UDP_SEEN_MAX=${UDP_SEEN_MAX:-4194304}
NICE=${NICE:--10}
if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ]; then renice -n "$NICE" -p $$ >/dev/null; fi

# ---------------------------------------------------------------- packages
need_commands redis-server:redis-server nc:netcat-openbsd sshd:openssh-server ssh:openssh-client \
              scp:openssh-client rsync:rsync gcc:gcc bc:bc ss:iproute2 jq:jq openssl:openssl python3:python3
case "$(nc -h 2>&1 || true)" in *-N*) ;; *) need+=(netcat-openbsd);; esac
install_needed

log "building ferry (release)"
cargo build --release --quiet --bin ferryd --bin ferry --bin ferry-bench
BIN=$REPO/target/release
FB=$BIN/ferry-bench

# ---------------------------------------------------------------- cleanup
bench_work compare
stop() { # pid: kill one server we started, wait for it, forget it
  local p keep=()
  kill "$1" 2>/dev/null || true
  reap "$1"
  wait "$1" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
ulimit -n "$(ulimit -Hn)"

wait_port() { # port [what]
  for _ in $(seq 300); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  echo "compare.sh: ${2:-a server} did not listen on 127.0.0.1:$1" >&2; return 1
}
wait_file() {
  for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.02; done
  echo "compare.sh: $1 never appeared" >&2; return 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- the baselines' C helper
gcc -O2 -Wall -o "$work/baseline" benches/baseline.c
BASE=$work/baseline

# ---------------------------------------------------------------- data
mkdir -p "$work/root" "$work/out" "$work/ssh"
log "writing a $MIB MiB file of random bytes"
head -c "$BYTES" /dev/urandom > "$work/root/big"
# On disk before any row: left dirty, its writeback (1 GiB at the default
# size) lands in whichever to-disk row runs first and slows that row's fsync.
sync "$work/root/big"
cat "$work/root/big" > /dev/null   # in the page cache for everyone

# ---------------------------------------------------------------- ferryd
"$BIN/ferry" keygen -q --id bench "$work/keys"
export FERRY_KEYS=$work/keys
FPORT=$(free_port)
# Datagrams on the same port. The seen set (udp.seen_max, 131,072 by default)
# holds each request's nonce for the 30 s window, which caps a sustained rate
# at about 4,200 requests/s; the UDP rows go well past that, so it is raised.
printf '[udp]\nseen_max = %d\n' "$UDP_SEEN_MAX" > "$work/ferryd.toml"
"$BIN/ferryd" -c "$work/ferryd.toml" --foreground --listen "127.0.0.1:$FPORT" --udp "127.0.0.1:$FPORT" \
  --root "$work/root" --keys "$work/keys" \
  --log-level warn --max-connections $((IDLE_CONNS + 1000)) 2> "$work/ferryd.log" &
FPID=$!; pids+=("$FPID")
wait_port "$FPORT" ferryd
FADDR=127.0.0.1:$FPORT

# ---------------------------------------------------------------- the bare UDP echo, and a sink
"$BASE" echo "$work/echo.port" & EPID=$!; pids+=("$EPID")
wait_file "$work/echo.port"; EPORT=$(cat "$work/echo.port")
"$BASE" sink "$work/sink.port" & pids+=("$!")
wait_file "$work/sink.port"; SINKPORT=$(cat "$work/sink.port")

# ---------------------------------------------------------------- sshd
# shellcheck source=benches/sshd.sh
. benches/sshd.sh
sshd_keys "$work/ssh"
SPORT=$(free_port)
sshd_start "$SPORT" 127.0.0.1
CM_OPTS=(-o ControlMaster=auto -o "ControlPath=$work/ssh/cm-%C" -o ControlPersist=60)
ssh "${SSH_OPTS[@]}" -p "$SPORT" -n root@127.0.0.1 true || { echo "compare.sh: ssh to the throwaway sshd failed" >&2; cat "$SSH_DIR"/sshd.*.log >&2; exit 1; }
# The ControlMaster: started (again, if ControlPersist let it go) before the
# rows that use it, never inside them; killed by PID at the end.
cm_pid() { ssh "${SSH_OPTS[@]}" "${CM_OPTS[@]}" -p "$SPORT" -O check root@127.0.0.1 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p' || true; }
ensure_master() {
  local p; p=$(cm_pid)
  [ -n "$p" ] && return 0
  ssh "${SSH_OPTS[@]}" "${CM_OPTS[@]}" -p "$SPORT" -n root@127.0.0.1 true
  p=$(cm_pid)
  [ -n "$p" ] || { echo "compare.sh: the ssh ControlMaster did not start" >&2; return 1; }
  pids+=("$p")
}
ensure_master

# ---------------------------------------------------------------- rsync daemon
RPORT=$(free_port)
cat > "$work/rsyncd.conf" <<EOF
use chroot = no
pid file = $work/rsyncd.pid
log file = $work/rsyncd.log
[mod]
  path = $work/root
  read only = no
  uid = root
  gid = root
EOF
rsync --daemon --no-detach --address=127.0.0.1 --port="$RPORT" --config="$work/rsyncd.conf" &
pids+=("$!")
wait_port "$RPORT" "the rsync daemon"

# ---------------------------------------------------------------- trees (issue 21)
# shellcheck source=benches/trees.sh
. benches/trees.sh
trees_setup

# ---------------------------------------------------------------- redis
DPORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$DPORT" --save '' --appendonly no --daemonize no \
  --maxclients $((IDLE_CONNS + 1000)) --dir "$work" --logfile "$work/redis.log" &
RDPID=$!; pids+=("$RDPID")
wait_port "$DPORT" redis-server

# redis-server over TLS only (no plaintext port), with a throwaway self-signed
# certificate; clients are not asked for one. ferry-bench --resp --tls
# --tls-insecure drives it: it does not check the certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$work/redis-tls.key" -out "$work/redis-tls.crt" 2>/dev/null
REDIS_TLS=(--port 0 --tls-cert-file "$work/redis-tls.crt" --tls-key-file "$work/redis-tls.key"
           --tls-ca-cert-file "$work/redis-tls.crt" --tls-auth-clients no)
TDPORT=$(free_port)
redis-server --bind 127.0.0.1 --tls-port "$TDPORT" "${REDIS_TLS[@]}" --save '' --appendonly no --daemonize no \
  --maxclients $((IDLE_CONNS + 1000)) --dir "$work" --logfile "$work/redis-tls.log" &
RTPID=$!; pids+=("$RTPID")
wait_port "$TDPORT" "redis-server (TLS)"

# ---------------------------------------------------------------- measuring
sync_file() { sync "$1"; }   # fsync(2) the file: every "to a file" row ends on disk
# Before each to-disk row, untimed: nothing another row (or another program)
# left dirty is written back inside this row's fsync, and no removed copy's
# trim (a file system mounted with `discard`) lands in it. Measured on this
# machine: with 1 GiB of another file dirty, a 256 MiB `ferry get` to disk took
# 1.1-5.2x as long as after a sync (4 alternating rounds); see BENCHMARKS.md.
settle() { sync; }

# nc -> nc: the receiver listens first (untimed), then the timed send until it has it all.
nc_copy() { # out-file ; prints seconds
  local p r t; p=$(free_port)
  nc -l 127.0.0.1 "$p" > "$1" & r=$!
  wait_port "$p" nc >/dev/null
  t=$(now)
  nc -N 127.0.0.1 "$p" < "$work/root/big"
  wait $r
  [ "$1" = /dev/null ] || sync_file "$1"
  since "$t"
}
# The C baseline: sendfile(2) from the page cache, 256 KiB a call; the C receiver
# reads 1 MiB at a time and discards, or writes and fsyncs.
c_copy() { # out ('-' discards) ; prints seconds
  local pf=$work/port.$RANDOM r t; rm -f "$pf"
  "$BASE" recv "$pf" "$1" 2>/dev/null & r=$!
  wait_file "$pf"
  t=$(now)
  "$BASE" send "$(cat "$pf")" "$work/root/big"
  wait $r
  rm -f "$pf"
  since "$t"
}
scp_get() { local t; t=$(now); scp -q "${SSH_OPTS[@]}" -P "$SPORT" "root@127.0.0.1:$work/root/big" "$1"; sync_file "$1"; since "$t"; }
# To /dev/null: the SFTP protocol (scp's default) ends with ftruncate(2), which
# /dev/null refuses; the legacy scp protocol (-O) does not truncate a device.
scp_get_null() { local t; t=$(now); scp -O -q "${SSH_OPTS[@]}" -P "$SPORT" "root@127.0.0.1:$work/root/big" /dev/null; since "$t"; }
scp_put() { local t; t=$(now); scp -q "${SSH_OPTS[@]}" -P "$SPORT" "$work/root/big" "root@127.0.0.1:$1"; sync_file "$1"; since "$t"; }
rsync_get() { local t; t=$(now); rsync -q --whole-file "rsync://127.0.0.1:$RPORT/mod/big" "$1"; sync_file "$1"; since "$t"; }
rsync_put() { local t; t=$(now); rsync -q --whole-file "$work/root/big" "rsync://127.0.0.1:$RPORT/mod/$(basename "$1")"; sync_file "$1"; since "$t"; }
ferry_get_file() { local t; t=$(now); "$BIN/ferry" -q get "$FADDR" big "$1"; since "$t"; }
ferry_get_null() { local t; t=$(now); "$BIN/ferry" -q get "$FADDR" big - > /dev/null; since "$t"; }
ferry_put() { local t; t=$(now); "$BIN/ferry" -q put "$FADDR" "$work/root/big" "$(basename "$1")"; since "$t"; }
# The same over TLS (--tls: loopback would be plaintext by default).
tls_get_file() { local t; t=$(now); "$BIN/ferry" --tls -q get "$FADDR" big "$1"; since "$t"; }
tls_get_null() { local t; t=$(now); "$BIN/ferry" --tls -q get "$FADDR" big - > /dev/null; since "$t"; }
tls_put() { local t; t=$(now); "$BIN/ferry" --tls -q put "$FADDR" "$work/root/big" "$(basename "$1")"; since "$t"; }
same() { cmp -s "$1" "$work/root/big" || { echo "compare.sh: $2: the copy differs" >&2; exit 1; }; rm -f "$1"; }
# nc and ferry to /dev/null take a fifth of a second each, so one run of each
# a round, rows apart, left their ratio to chance (0.84–1.71 within one run):
# three of each in turn (A B A B A B), the middle one of each kept.
nc_and_ferry_null() {
  local a=() b=() i
  for i in 1 2 3; do a+=("$(nc_copy /dev/null)"); b+=("$(ferry_get_null)"); done
  add get_nc "$(printf '%s\n' "${a[@]}" | sort -g | sed -n 2p)"
  add get_cli_null "$(printf '%s\n' "${b[@]}" | sort -g | sed -n 2p)"
}

# ferry-bench: JSON out, one object.
fbj() {
  "$FB" "$@" --json 2> "$work/fb.err" && { cat "$work/fb.err" >> "$work/ferry-bench.log"; return 0; }
  echo "compare.sh: ferry-bench $* failed:" >&2; cat "$work/fb.err" >&2; return 1
}
jqn() { jq -r "$1 // empty"; }
fbx() { # key mode args... : one transfer of the file, its seconds and CPU per GiB
  local k=$1 j; shift
  j=$(fbj "$@" --port "$FPORT" -n 1 --server-pid "$FPID")
  add "$k" "$(jqn .elapsed_s <<<"$j")"
  add "cpu_$k" "$(jqn .client_cpu_s_per_gib <<<"$j")"
  add "scpu_$k" "$(jqn .server_cpu_s_per_gib <<<"$j")"
}

transfers() {
  local o=$work/out
  fbx get_fb_none get --path big --digest none
  add get_c "$(c_copy -)"
  nc_and_ferry_null
  fbx get_fb_sha get --path big --digest sha256
  fbx get_fb_b3 get --path big --digest blake3
  settle
  add get_cli "$(ferry_get_file "$o/ferry.bin")"; same "$o/ferry.bin" "ferry get"
  fbx get_fbt_sha get --tls --path big --digest sha256
  add get_tls_null "$(tls_get_null)"
  settle
  add get_tls "$(tls_get_file "$o/tls.bin")"; same "$o/tls.bin" "ferry --tls get"
  settle
  add get_scp "$(scp_get "$o/scp.bin")"; same "$o/scp.bin" "scp get"
  add get_scp_null "$(scp_get_null)"
  settle
  add get_rsync "$(rsync_get "$o/rsync.bin")"; same "$o/rsync.bin" "rsync get"
  settle
  add get_ncf "$(nc_copy "$o/nc.bin")"; same "$o/nc.bin" "nc to a file"
  settle
  add get_cf "$(c_copy "$o/c.bin")"; same "$o/c.bin" "C receiver to a file"
  local r=$work/root
  settle
  add put_cli "$(ferry_put "$r/put-ferry.bin")"; same "$r/put-ferry.bin" "ferry put"
  settle
  add put_tls "$(tls_put "$r/put-tls.bin")"; same "$r/put-tls.bin" "ferry --tls put"
  settle
  fbx put_fb put --path put-fb.bin --file "$r/big" --digest sha256; same "$r/put-fb.bin" "ferry-bench put"
  settle
  add put_scp "$(scp_put "$r/put-scp.bin")"; same "$r/put-scp.bin" "scp put"
  settle
  add put_rsync "$(rsync_put "$r/put-rsync.bin")"; same "$r/put-rsync.bin" "rsync put"
}

# Cold starts: the C loop runs the five commands in turn (A B C D E A B C D E ...),
# each a fresh process (posix_spawnp + waitpid, stdio on /dev/null), so a burst
# of load elsewhere hits them all alike; one median per command and round.
cold() {
  local out a b c d e
  ensure_master
  out=$("$BASE" alt "$COLD_RUNS" "$BIN/ferry" run -n "$FADDR" -- true :: \
        ssh "${SSH_OPTS[@]}" -p "$SPORT" -n root@127.0.0.1 true :: \
        ssh "${SSH_OPTS[@]}" "${CM_OPTS[@]}" -p "$SPORT" -n root@127.0.0.1 true :: /bin/true :: \
        "$BIN/ferry" --tls run -n "$FADDR" -- true)
  { read -r a _; read -r b _; read -r c _; read -r d _; read -r e _; } <<<"$out"
  add run_ferry "$(ev '%.6f' "$a / 1e6")"; add run_ssh "$(ev '%.6f' "$b / 1e6")"
  add run_sshcm "$(ev '%.6f' "$c / 1e6")"; add run_local "$(ev '%.6f' "$d / 1e6")"
  add run_tls "$(ev '%.6f' "$e / 1e6")"
}

# exec on an open connection (ferry-bench exec -c 1, argv /bin/true, no shell)
# next to posix_spawn+wait of /bin/true in a C loop. And the floor of ferryd's
# own CPU per exec, in the same round: the C loop's own CPU per spawn+wait (the
# kernel's spawn) plus ferryd's own CPU per ping on one connection (one request
# round trip, one sleep and wake of the reactor). And the C loop of ferryd's
# own exec syscalls (baseline execfloor: pipes, clone with a pidfd, epoll,
# reap, reads to EOF, closes), whose CPU plus the same ping is the exec floor.
execs() {
  local j s x; j=$(fbj exec --port "$FPORT" -c 1 -d "$PING_SECS" --argv /bin/true --server-pid "$FPID")
  [ "$(jqn .failed <<<"$j")" = 0 ] || { echo "compare.sh: ferry-bench exec: commands failed: $j" >&2; exit 1; }
  add exec_p50 "$(jqn .latency_us.p50 <<<"$j")"
  add exec_mean "$(jq -r '1e6 / .ops_per_s' <<<"$j")"
  add exec_scpu "$(jqn .server_cpu_us_per_op <<<"$j")"; add us80 80
  s=$("$BASE" spawn "$SPAWN_RUNS" /bin/true)
  add spawn_p50 "$(awk '{print $2}' <<<"$s")"
  add spawn_cpu "$(awk '{print $6}' <<<"$s")"
  x=$("$BASE" execfloor "$SPAWN_RUNS" /bin/true)
  add xfloor_p50 "$(awk '{print $2}' <<<"$x")"
  add xfloor_cpu "$(awk '{print $6}' <<<"$x")"
  j=$(fbj ping --port "$FPORT" -c 1 -d "$PING_SECS" --server-pid "$FPID")
  add ping1_scpu "$(jqn .server_cpu_us_per_op <<<"$j")"
  add exec_floor "$(ev '%.3f' "$(awk '{print $6}' <<<"$s") + $(jqn .server_cpu_us_per_op <<<"$j")")"
  add exec_xfloor "$(ev '%.3f' "$(awk '{print $6}' <<<"$x") + $(jqn .server_cpu_us_per_op <<<"$j")")"
}

# ping: the same client (ferry-bench), ferry frames to ferryd, RESP to redis-server.
pings() {
  local c j
  for c in 1 50 1000; do
    j=$(fbj ping --port "$FPORT" -c "$c" -d "$PING_SECS" --server-pid "$FPID")
    add "ping_f_$c" "$(jqn .ops_per_s <<<"$j")"; add "p99_f_$c" "$(jqn .latency_us.p99 <<<"$j")"
    add "scpu_f_$c" "$(jqn .server_cpu_us_per_op <<<"$j")"
    j=$(fbj ping --resp --port "$DPORT" -c "$c" -d "$PING_SECS" --server-pid "$RDPID")
    add "ping_r_$c" "$(jqn .ops_per_s <<<"$j")"; add "p99_r_$c" "$(jqn .latency_us.p99 <<<"$j")"
    add "scpu_r_$c" "$(jqn .server_cpu_us_per_op <<<"$j")"
    [ "$c" = 50 ] || continue
    # Over TLS, the same client: ferry's TLS to ferryd, TLS to redis-server.
    j=$(fbj ping --tls --port "$FPORT" -c "$c" -d "$PING_SECS" --server-pid "$FPID")
    add "ping_ft_$c" "$(jqn .ops_per_s <<<"$j")"; add "p99_ft_$c" "$(jqn .latency_us.p99 <<<"$j")"
    add "scpu_ft_$c" "$(jqn .server_cpu_us_per_op <<<"$j")"
    j=$(fbj ping --resp --tls --tls-insecure --port "$TDPORT" -c "$c" -d "$PING_SECS" --server-pid "$RTPID")
    add "ping_rt_$c" "$(jqn .ops_per_s <<<"$j")"; add "p99_rt_$c" "$(jqn .latency_us.p99 <<<"$j")"
    add "scpu_rt_$c" "$(jqn .server_cpu_us_per_op <<<"$j")"
  done
}

# idle: a fresh server each time, so its RSS before is a clean start, not memory
# kept from the last round's connections.
idles() {
  local p pid j
  p=$(free_port)
  "$BIN/ferryd" -c /dev/null --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" \
    --log-level warn --max-connections $((IDLE_CONNS + 1000)) 2>> "$work/ferryd-idle.log" &
  pid=$!; pids+=("$pid")
  wait_port "$p" "ferryd (idle)"
  j=$(fbj idle --port "$p" -c "$IDLE_CONNS" --server-pid "$pid")
  add kib 1024; add kib4 4096; add idle_f "$(jqn .rss_per_conn_bytes <<<"$j")"; add idlefd_f "$(jqn .fds_per_conn <<<"$j")"
  add idle0_f "$(jqn .rss_before_kib <<<"$j")"; add idlesetup_f "$(jqn .setup_s <<<"$j")"
  add idlepk_f "$(jq -r "(.rss_peak_kib - .rss_before_kib) * 1024 / $IDLE_CONNS" <<<"$j")"
  stop "$pid"
  p=$(free_port)
  redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no --daemonize no \
    --maxclients $((IDLE_CONNS + 1000)) --dir "$work" --logfile "$work/redis-idle.log" &
  pid=$!; pids+=("$pid")
  wait_port "$p" "redis-server (idle)"
  j=$(fbj idle --resp --port "$p" -c "$IDLE_CONNS" --server-pid "$pid")
  add idle_r "$(jqn .rss_per_conn_bytes <<<"$j")"; add idlefd_r "$(jqn .fds_per_conn <<<"$j")"
  add idle0_r "$(jqn .rss_before_kib <<<"$j")"; add idlesetup_r "$(jqn .setup_s <<<"$j")"
  add idlepk_r "$(jq -r "(.rss_peak_kib - .rss_before_kib) * 1024 / $IDLE_CONNS" <<<"$j")"
  stop "$pid"
  # Over TLS: ferryd (TLS sessions, authenticated inside), redis-server TLS-only.
  p=$(free_port)
  "$BIN/ferryd" -c /dev/null --foreground --listen "127.0.0.1:$p" --root "$work/root" --keys "$work/keys" \
    --log-level warn --max-connections $((IDLE_CONNS + 1000)) 2>> "$work/ferryd-idle.log" &
  pid=$!; pids+=("$pid")
  wait_port "$p" "ferryd (idle, TLS)"
  j=$(fbj idle --tls --port "$p" -c "$IDLE_CONNS" --server-pid "$pid")
  idle_adds ft "$j"
  stop "$pid"
  p=$(free_port)
  redis-server --bind 127.0.0.1 --tls-port "$p" "${REDIS_TLS[@]}" --save '' --appendonly no --daemonize no \
    --maxclients $((IDLE_CONNS + 1000)) --dir "$work" --logfile "$work/redis-idle-tls.log" &
  pid=$!; pids+=("$pid")
  wait_port "$p" "redis-server (idle, TLS)"
  j=$(fbj idle --resp --tls --tls-insecure --port "$p" -c "$IDLE_CONNS" --server-pid "$pid")
  idle_adds rt "$j"
  stop "$pid"
}
idle_adds() { # suffix json
  add "idle_$1" "$(jqn .rss_per_conn_bytes <<<"$2")"; add "idlefd_$1" "$(jqn .fds_per_conn <<<"$2")"
  add "idle0_$1" "$(jqn .rss_before_kib <<<"$2")"; add "idlesetup_$1" "$(jqn .setup_s <<<"$2")"
  add "idlepk_$1" "$(jq -r "(.rss_peak_kib - .rss_before_kib) * 1024 / $IDLE_CONNS" <<<"$2")"
}

# Datagrams, the same client (ferry-bench udp) for all: ferryd's authenticated
# UDP ping, the bare C echo with datagrams of the same size, and (at one in
# flight) ferry's TCP ping on an open connection, in turn.
udp_row() { # key-suffix ferry-bench-args...
  local k=$1 j; shift
  j=$(fbj "$@" -d "$PING_SECS")
  add "udp_$k" "$(jqn .ops_per_s <<<"$j")"; add "udp50_$k" "$(jqn .latency_us.p50 <<<"$j")"
  add "udp99_$k" "$(jqn .latency_us.p99 <<<"$j")"; add "udpcpu_$k" "$(jqn .server_cpu_us_per_op <<<"$j")"
  add "udpccpu_$k" "$(jqn .client_cpu_us_per_op <<<"$j")"
  add "udploss_$k" "$(jq -r 'if (.requests // 0) > 0 then 100 * .lost / .requests else 0 end' <<<"$j")"
  add "udpre_$k" "$(jq -r 'if (.datagrams_sent // 0) > 0 then 100 * .retransmits / .datagrams_sent else 0 end' <<<"$j")"
  [ "$k" != f_1 ] || add udpbytes "$(jqn .request_bytes <<<"$j")"
}
udps() {
  local p out a b c d
  for p in 1 64 512; do
    udp_row "f_$p" udp --port "$FPORT" -P "$p" --server-pid "$FPID"
    udp_row "b_$p" udp --bare --port "$EPORT" -P "$p" --server-pid "$EPID"
    [ "$p" != 1 ] || udp_row t_1 ping --port "$FPORT" -c 1 --server-pid "$FPID"
  done
  # Cold, whole processes, strictly alternating (A B C D A B C D ...).
  out=$("$BASE" alt "$COLD_RUNS" "$BIN/ferry" ping -u "$FADDR" :: "$BIN/ferry" ping "$FADDR" :: \
        "$BIN/ferry" run -u "$FADDR" -- true :: "$BIN/ferry" run -n "$FADDR" -- true)
  { read -r a _; read -r b _; read -r c _; read -r d _; } <<<"$out"
  add cold_pingu "$(ev '%.6f' "$a / 1e6")"; add cold_ping "$(ev '%.6f' "$b / 1e6")"
  add cold_runu "$(ev '%.6f' "$c / 1e6")"; add cold_run "$(ev '%.6f' "$d / 1e6")"
}

# TCP pings (50 connections) while forged requests flood ferryd's UDP port,
# next to the same flood at a socket that never reads (the sender's own cost)
# and to no flood, in turn.
flood_row() { # key flood-port-or-empty
  local f="" j n=0
  if [ -n "$2" ]; then "$BASE" flood "$2" "$((PING_SECS + 2))" bench > "$work/flood.out" & f=$!; fi
  j=$(fbj ping --port "$FPORT" -c 50 -d "$PING_SECS" --server-pid "$FPID")
  if [ -n "$f" ]; then wait "$f"; n=$(cat "$work/flood.out"); fi
  add "fl_$1" "$(jqn .ops_per_s <<<"$j")"; add "fl99_$1" "$(jqn .latency_us.p99 <<<"$j")"
  add "flcpu_$1" "$(jqn .server_cpu_us_per_op <<<"$j")"
  add "flrate_$1" "$(ev '%.0f' "$n / ($PING_SECS + 2)")"
}
floods() {
  flood_row none ""
  flood_row sink "$SINKPORT"
  flood_row ferryd "$FPORT"
}

# Keystroke echo on a terminal (issue 21): `ferry run -t` next to `ssh -t`
# through the warm ControlMaster, the same remote program (non-canonical, echo
# on, input discarded), one key at a time in turn (A B A B ...) on terminals
# ferry-bench opens; the time from a key written to its echo read back.
PTY_REMOTE='stty -icanon; echo FERRY-PTY-READY; exec cat >/dev/null'
ptys() {
  local j
  ensure_master
  j=$("$FB" -w 30 --json pty-echo -n "$PTY_KEYS" -- "$BIN/ferry" run -t "$FADDR" -- "$PTY_REMOTE" :: \
        ssh "${SSH_OPTS[@]}" "${CM_OPTS[@]}" -t -p "$SPORT" root@127.0.0.1 "$PTY_REMOTE" 2>> "$work/ferry-bench.log") ||
    { echo "compare.sh: ferry-bench pty-echo failed" >&2; tail -n 5 "$work/ferry-bench.log" >&2; exit 1; }
  add pty_f "$(jq -r '.commands[0].p50_us' <<<"$j")"; add pty_s "$(jq -r '.commands[1].p50_us' <<<"$j")"
  add pty99_f "$(jq -r '.commands[0].p99_us' <<<"$j")"; add pty99_s "$(jq -r '.commands[1].p99_us' <<<"$j")"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
LOADS=()
for r in $(seq "$ROUNDS"); do
  LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
  log "round $r/$ROUNDS: transfers"; transfers
  log "round $r/$ROUNDS: trees"; trees
  log "round $r/$ROUNDS: cold starts"; cold
  log "round $r/$ROUNDS: exec"; execs
  log "round $r/$ROUNDS: terminal echo"; ptys
  log "round $r/$ROUNDS: ping"; pings
  log "round $r/$ROUNDS: idle"; idles
  log "round $r/$ROUNDS: udp"; udps
  log "round $r/$ROUNDS: udp flood"; floods
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(since "$START")

# ---------------------------------------------------------------- the report
us() { awk -v x="$1" 'BEGIN {if (x >= 10000) printf "%.1f ms", x / 1000; else if (x >= 1000) printf "%.2f ms", x / 1000; else printf "%.0f µs", x}'; }

trow() { # key label : a transfer row (seconds per file)
  local s; read -r m lo hi <<<"$(stat3 "$1")"
  s="| $2 | $(grp "$(ev '%f' "$BYTES / $m / 1e6")") | $(ev '%.3f' "$m") | $(ev '%.3f' "$lo")–$(ev '%.3f' "$hi") |"
  if [ -n "${vals[cpu_$1]:-}" ]; then s+=" $(ev '%.2f' "$(med "cpu_$1")") + $(ev '%.2f' "$(med "scpu_$1")") |"; else s+=" |"; fi
  echo "$s"
}
lrow() { # key label unit-scale unit : a latency row (seconds or µs)
  read -r m lo hi <<<"$(stat3 "$1")"
  echo "| $2 | $(ev '%.1f' "$m * $3") $4 | $(ev '%.1f' "$lo * $3")–$(ev '%.1f' "$hi * $3") $4 |"
}

ram=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit+=" (with uncommitted changes in src/)"
notes=""
[ -f "$OUT" ] && notes=$(sed -n '/^<!-- notes: kept by compare.sh -->$/,$p' "$OUT")

{
cat <<EOF
# Benchmarks

ferry next to the tools users would pick instead, measured by
[\`benches/compare.sh\`](benches/compare.sh) on one machine in one run. Each row
is measured once per round and the rounds alternate every row (A B C A B C ...),
so ferry and its peers share the machine's noise; figures are the median over
the rounds, spreads the min–max over the rounds, ratios those of the medians.
Everything runs over 127.0.0.1. Only the ratios of one run mean anything.

## Machine and run

| | |
|---|---|
| CPU | $(nproc) × $model |
| RAM | $ram |
| kernel | $(uname -r) |
| date | $(date -u '+%Y-%m-%d %H:%M UTC') |
| rustc | $(rustc --version) |
| ferry | $commit |
| peers | $(redis-server --version | awk '{print $1, $3}' | sed 's/v=//'), $(ssh -V 2>&1 | cut -d, -f1), rsync $(rsync --version | awk 'NR==1 {print $3}'), netcat-openbsd $(dpkg-query -W -f '${Version}' netcat-openbsd 2>/dev/null || echo '?'), gcc $(gcc -dumpfullversion) |
| run | niceness $(ps -o ni= -p $$ | tr -d ' '), rounds: $ROUNDS, $MIB MiB file, ${PING_SECS} s per load run, $(grp "$IDLE_CONNS") idle connections$( [ "$QUICK" = 1 ] && echo ', QUICK mode') |
| time | $(ev '%.0f' "$ELAPSED") s in all |
| load average | $LOAD0 at the start; 1-minute load at each round's start: ${LOADS[*]}; $LOAD1 at the end |

## Targets

Each the issue's target (issue 6; the UDP row, issue 9; the TLS rows, issue 18,
with \`--tls\` forced on loopback; the digest, exec and ping rows, issue 20,
which raised issue 6's), as the ratio of this
run's medians (the status), and the ratio within each round, where the two
sides ran back to back.

| target | measured (medians) | ratio | per-round ratios | status |
|---|---|---|---|---|
EOF
target "get, digest none ≥ 0.9× the C sendfile sender" \
  "$(grp "$(ev '%f' "$BYTES / $(med get_fb_none) / 1e6")") vs $(grp "$(ev '%f' "$BYTES / $(med get_c) / 1e6")") MB/s" get_c get_fb_none ">=" 0.9
target "get, digest none ≥ 1.3× \`nc\`" \
  "$(grp "$(ev '%f' "$BYTES / $(med get_fb_none) / 1e6")") vs $(grp "$(ev '%f' "$BYTES / $(med get_nc) / 1e6")") MB/s" get_nc get_fb_none ">=" 1.3
target "get, blake3, discarded ≥ 1.0× \`nc\` → /dev/null" \
  "$(grp "$(ev '%f' "$BYTES / $(med get_cli_null) / 1e6")") vs $(grp "$(ev '%f' "$BYTES / $(med get_nc) / 1e6")") MB/s" get_nc get_cli_null ">=" 1.0
target "\`ferry get\` (blake3, to disk) ≥ 2.5× scp" \
  "$(ev '%.2f' "$(med get_cli)") vs $(ev '%.2f' "$(med get_scp)") s" get_scp get_cli ">=" 2.5
target "\`ferry get\` (blake3, to disk) ≥ 1.1× the rsync daemon" \
  "$(ev '%.2f' "$(med get_cli)") vs $(ev '%.2f' "$(med get_rsync)") s" get_rsync get_cli ">=" 1.1
target "\`ferry put\` (blake3, to disk) ≥ 2.5× scp" \
  "$(ev '%.2f' "$(med put_cli)") vs $(ev '%.2f' "$(med put_scp)") s" put_scp put_cli ">=" 2.5
target "\`ferry put\` (blake3, to disk) ≥ 1.1× the rsync daemon" \
  "$(ev '%.2f' "$(med put_cli)") vs $(ev '%.2f' "$(med put_rsync)") s" put_rsync put_cli ">=" 1.1
target "\`ferry put\` ≥ 0.9× \`nc\` into a file" \
  "$(ev '%.2f' "$(med put_cli)") vs $(ev '%.2f' "$(med get_ncf)") s" get_ncf put_cli ">=" 0.9
target "exec on an open connection ≤ 1.15× a local posix_spawn+wait" \
  "$(ev '%.0f' "$(med exec_p50)") vs $(ev '%.0f' "$(med spawn_p50)") µs (p50)" exec_p50 spawn_p50 "<=" 1.15
target "ferryd's own CPU per exec ≤ 80 µs" \
  "$(ev '%.1f' "$(med exec_scpu)") µs" exec_scpu us80 "<=" 1.0
target "\`ferry run -- true\` cold ≥ 40× faster than cold \`ssh host true\`" \
  "$(ev '%.1f' "$(med run_ferry) * 1000") vs $(ev '%.1f' "$(med run_ssh) * 1000") ms" run_ssh run_ferry ">=" 40
target "ping ≥ 1.1× redis-server, 50 connections" \
  "$(grp "$(med ping_f_50)") vs $(grp "$(med ping_r_50)") req/s" ping_f_50 ping_r_50 ">=" 1.1
target "ping p99 no worse than redis-server's, 50 connections" \
  "$(ev '%.0f' "$(med p99_f_50)") vs $(ev '%.0f' "$(med p99_r_50)") µs" p99_f_50 p99_r_50 "<=" 1.0
target "ping ≥ 1.1× redis-server, 1000 connections" \
  "$(grp "$(med ping_f_1000)") vs $(grp "$(med ping_r_1000)") req/s" ping_f_1000 ping_r_1000 ">=" 1.1
target "ping p99 no worse than redis-server's, 1000 connections" \
  "$(ev '%.0f' "$(med p99_f_1000)") vs $(ev '%.0f' "$(med p99_r_1000)") µs" p99_f_1000 p99_r_1000 "<=" 1.0
target "UDP ping round trip ≤ 1.3× a bare UDP echo (one in flight, p50)" \
  "$(ev '%.1f' "$(med udp50_f_1)") vs $(ev '%.1f' "$(med udp50_b_1)") µs" udp50_f_1 udp50_b_1 "<=" 1.3
target "idle connection ≤ 1 KiB of daemon RSS each ($(grp "$IDLE_CONNS") open)" \
  "$(grp "$(med idle_f)") bytes" idle_f kib "<=" 1.0
target "idle connection: below redis-server's RSS each" \
  "$(grp "$(med idle_f)") vs $(grp "$(med idle_r)") bytes" idle_f idle_r "<=" 1.0
target "TLS: \`ferry --tls get - > /dev/null\` ≥ 3× scp to /dev/null" \
  "$(ev '%.2f' "$(med get_tls_null)") vs $(ev '%.2f' "$(med get_scp_null)") s" get_scp_null get_tls_null ">=" 3
target "TLS: \`ferry --tls get\` (to disk) ≥ 3× scp" \
  "$(ev '%.2f' "$(med get_tls)") vs $(ev '%.2f' "$(med get_scp)") s" get_scp get_tls ">=" 3
target "TLS: \`ferry --tls put\` (to disk) ≥ 2.5× scp" \
  "$(ev '%.2f' "$(med put_tls)") vs $(ev '%.2f' "$(med put_scp)") s" put_scp put_tls ">=" 2.5
target "TLS: \`ferry --tls run -- true\` cold ≥ 50× faster than cold \`ssh host true\`" \
  "$(ev '%.1f' "$(med run_tls) * 1000") vs $(ev '%.1f' "$(med run_ssh) * 1000") ms" run_ssh run_tls ">=" 50
target "TLS: \`ferry --tls run -- true\` cold ≥ 2× faster than ssh with a warm ControlMaster" \
  "$(ev '%.1f' "$(med run_tls) * 1000") vs $(ev '%.1f' "$(med run_sshcm) * 1000") ms" run_sshcm run_tls ">=" 2
target "terminal keystroke echo (p50) ≤ 1.2× \`ssh -t\` with a warm ControlMaster" \
  "$(ev '%.0f' "$(med pty_f)") vs $(ev '%.0f' "$(med pty_s)") µs" pty_f pty_s "<=" 1.2
target "TLS: ping ≥ 0.85× plaintext ferry ping, 50 connections" \
  "$(grp "$(med ping_ft_50)") vs $(grp "$(med ping_f_50)") req/s" ping_ft_50 ping_f_50 ">=" 0.85
target "TLS: ping ≥ 1.2× redis-server over TLS, 50 connections" \
  "$(grp "$(med ping_ft_50)") vs $(grp "$(med ping_rt_50)") req/s" ping_ft_50 ping_rt_50 ">=" 1.2
target "TLS: idle connection ≤ 4 KiB of daemon RSS each ($(grp "$IDLE_CONNS") open)" \
  "$(grp "$(med idle_ft)") bytes" idle_ft kib4 "<=" 1.0
trees_targets
printf '%s\n' "${TARGETS[@]}"
cat <<EOF

Ratios read as the target does: for transfers, ferry's speed over the peer's
(the peer's time over ferry's); for exec, ferry's time over the local spawn's;
for the cold start, ssh's time over ferry's; for ping, ferry's requests/s over
redis'; for idle memory, ferry's bytes per connection over 1 KiB and over redis';
for UDP, ferryd's round trip over the bare echo's; for the terminal echo,
ferry's time over ssh's. The TLS rows read the same
way; the idle TLS row is over 4 KiB.

## Files: one $MIB MiB file of random bytes, in the page cache

MB/s = 10^6 bytes/s. "To disk" rows end when the copy is on disk: ferry fsyncs
its \`.part\` or temp file itself; for nc, scp and rsync the script runs
\`sync FILE\` (fsync) after the copy, inside the timed span; the C receiver
fsyncs. Every copy is compared with the original (outside the timed span) and
removed, so each round really copies. \`nc\` and \`ferry get\` to /dev/null
run three times each in turn every round, and the middle time of each counts.
The CPU column is ferry-bench's own
account: CPU seconds per GiB in the client + in the server.

| transfer | MB/s | seconds (median) | seconds (min–max) | CPU s/GiB client + server |
|---|---|---|---|---|
EOF
trow get_fb_none "ferry-bench get, \`digest:\"none\"\` (sendfile), discarded"
trow get_c "C sendfile(2) sender → C receiver, discarded"
trow get_nc "\`nc\` → \`nc\` > /dev/null"
trow get_fb_sha "ferry-bench get, sha256 (both ends hash), discarded"
trow get_fb_b3 "ferry-bench get, blake3 (both ends hash), discarded"
trow get_cli_null "\`ferry get - > /dev/null\` (blake3)"
trow get_cli "\`ferry get\` to disk (blake3, \`.part\`, fsync, rename)"
trow get_fbt_sha "TLS: ferry-bench --tls get, sha256, discarded"
trow get_tls_null "TLS: \`ferry --tls get - > /dev/null\` (blake3)"
trow get_tls "TLS: \`ferry --tls get\` to disk (blake3, \`.part\`, fsync, rename)"
trow get_scp_null "\`scp -O\` get to /dev/null (legacy scp protocol)"
trow get_scp "\`scp\` get to disk (throwaway sshd)"
trow get_rsync "\`rsync --whole-file rsync://…\` get to disk"
trow get_ncf "\`nc\` → \`nc\` > file, to disk"
trow get_cf "C sendfile(2) sender → C receiver, file, fsync"
trow put_cli "\`ferry put\` (blake3 hashed as sent, trailer, server fsyncs and renames)"
trow put_tls "TLS: \`ferry --tls put\` (blake3 hashed as sent, trailer, server fsyncs and renames)"
trow put_fb "ferry-bench put --file (sendfile, sha256 checked by the server)"
trow put_scp "\`scp\` put to disk"
trow put_rsync "\`rsync --whole-file … rsync://…\` put to disk"
trees_report
cat <<EOF

## Starting a command

The cold rows: a C loop (\`baseline alt\` in benches/baseline.c) runs the five
commands in turn, each a new process (posix_spawnp + waitpid, stdio on
/dev/null), 3 warm-up runs and then $COLD_RUNS runs each per round, in
alternation so that load elsewhere hits them alike; the figure is the median
over the rounds of each round's median. \`ferry run 127.0.0.1 -- true\` starts
the client, connects, authenticates and runs \`sh -c true\` (one argument goes
through the shell, as with ssh); \`ferry --tls run\` does the same inside a
TLS 1.3 handshake keyed by the shared key. ssh runs \`true\` through root's shell (bash)
with an empty HOME, set by the throwaway sshd, so that root's own ~/.bashrc
(on this machine it runs \`pyenv init\`, about 200 ms) is not counted against
ssh. The ControlMaster row reuses one master connection (\`ControlPersist=60\`).
The exec rows run argv \`/bin/true\` (no shell) on one open connection for
${PING_SECS} s (ferry-bench exec -c 1), against a C loop of
posix_spawn+waitpid of \`/bin/true\` ($SPAWN_RUNS times a round). The floor
rows, measured right after in each round: the C loop's own CPU time per
spawn+wait (the kernel's clone, exec hand-off and wait, paid by the parent as
ferryd pays it; the children's time is not counted on either side) and
ferryd's own CPU time per ping on one connection (one request's round trip: a
read, a write, one sleep and wake of the reactor). Their sum is what ferryd's
CPU per exec cannot go below; the rest is the exec's own (two pipes and a
pidfd made, registered and closed, the request parsed). The exec floor adds
that: \`baseline execfloor\` (benches/baseline.c) makes, per command, ferryd's
own syscalls in ferryd's order without the protocol (two pipe2, the
vfork-style clone with a pidfd and the child's same steps, three epoll_ctl,
an epoll_wait for the exit, the reap, the pipes read to EOF, five closes),
$SPAWN_RUNS times a round; its own CPU plus ferryd's per ping is the exec
floor. What ferryd spends beyond it is ferry's user space and scheduling.

| what | median | min–max |
|---|---|---|
EOF
lrow run_ferry "\`ferry run 127.0.0.1 -- true\`, cold" 1000 ms
lrow run_ssh "\`ssh root@127.0.0.1 true\`, cold" 1000 ms
lrow run_sshcm "\`ssh\` with a warm ControlMaster" 1000 ms
lrow run_tls "TLS: \`ferry --tls run 127.0.0.1 -- true\`, cold" 1000 ms
lrow run_local "local \`/bin/true\`, the same loop" 1000 ms
lrow exec_p50 "exec on an open connection, p50 (ferry-bench exec -c 1)" 1 µs
lrow exec_mean "exec on an open connection, mean (1 / executions per s)" 1 µs
lrow exec_scpu "ferryd's own CPU time per exec (not the child's)" 1 µs
lrow spawn_cpu "the C loop's own CPU time per posix_spawn+waitpid (getrusage)" 1 µs
lrow ping1_scpu "ferryd's own CPU time per ping, 1 connection (ferry-bench ping -c 1)" 1 µs
lrow exec_floor "the floor for ferryd's CPU per exec: the two rows above, summed per round" 1 µs
lrow xfloor_cpu "the C loop's own CPU time per exec with ferryd's syscalls (pipes, pidfd, epoll; baseline execfloor)" 1 µs
lrow exec_xfloor "the exec floor: that row + ferryd's CPU per ping, 1 connection, summed per round" 1 µs
lrow spawn_p50 "local posix_spawn+waitpid of \`/bin/true\`, median (C)" 1 µs
lrow xfloor_p50 "the C loop with ferryd's syscalls, per exec of \`/bin/true\`, median (C)" 1 µs
cat <<EOF

The terminal rows: ferry-bench pty-echo runs \`ferry run -t 127.0.0.1:PORT --\`
and \`ssh -t\` (through the warm ControlMaster) on terminals of its own, both
with the remote program \`$PTY_REMOTE\`; it types one key into each in turn
and times it until the remote terminal's echo comes back ($PTY_KEYS keys each
per round after 50 of warm-up). The figure is the median over the rounds of
each round's p50 (and p99).

| what | median | min–max |
|---|---|---|
EOF
lrow pty_f "\`ferry run -t\`: a key to its echo, p50" 1 µs
lrow pty_s "\`ssh -t\`, warm ControlMaster: a key to its echo, p50" 1 µs
lrow pty99_f "\`ferry run -t\`: a key to its echo, p99" 1 µs
lrow pty99_s "\`ssh -t\`, warm ControlMaster: a key to its echo, p99" 1 µs
cat <<EOF

## Ping: the same client, ferry frames to ferryd, RESP \`PING\` to redis-server

ferry-bench, one client thread, pipeline depth 1, ${PING_SECS} s measured
after 1 s of warm-up; both servers are single-threaded. p99 is the median over
the rounds of each run's p99.

| connections | ferryd req/s | (min–max) | ferryd p99 | redis req/s | (min–max) | redis p99 | ferryd / redis | per round | server CPU per request, ferryd / redis |
|---|---|---|---|---|---|---|---|---|---|
EOF
for c in 1 50 1000; do
  read -r fm flo fhi <<<"$(stat3 "ping_f_$c")"; read -r rm rlo rhi <<<"$(stat3 "ping_r_$c")"
  echo "| $(grp "$c") | $(grp "$fm") | $(grp "$flo")–$(grp "$fhi") | $(us "$(med "p99_f_$c")") | $(grp "$rm") | $(grp "$rlo")–$(grp "$rhi") | $(us "$(med "p99_r_$c")") | $(ev '%.2f' "$fm / $rm")× | $(paired "ping_f_$c" "ping_r_$c" | awk '{printf "%.2f–%.2f×", $1, $2}') | $(ev '%.1f' "$(med "scpu_f_$c")") / $(ev '%.1f' "$(med "scpu_r_$c")") µs |"
done
cat <<EOF

Over TLS, 50 connections, the same ferry-bench (\`--tls\`): ferry's TLS 1.3
keyed by the shared key to ferryd; TLS to a second redis-server, TLS-only
(\`--tls-port\`, a throwaway self-signed P-256 certificate made by openssl,
not checked by the client: \`--tls-insecure\`). The handshakes happen in the
warm-up. The plaintext rows are those of the table above.

| server | req/s | (min–max) | p99 | / ferryd plaintext | / redis over TLS | per round, / redis over TLS | server CPU per request |
|---|---|---|---|---|---|---|---|
EOF
for s in "ft:ferryd, TLS" "f:ferryd, plaintext" "rt:redis-server, TLS" "r:redis-server, plaintext"; do
  k=${s%%:*}_50; read -r m lo hi <<<"$(stat3 "ping_$k")"
  echo "| ${s#*:} | $(grp "$m") | $(grp "$lo")–$(grp "$hi") | $(us "$(med "p99_$k")") | $(ev '%.2f' "$m / $(med ping_f_50)")× | $(ev '%.2f' "$m / $(med ping_rt_50)")× | $(paired "ping_$k" ping_rt_50 | awk '{printf "%.2f–%.2f×", $1, $2}') | $(ev '%.1f' "$(med "scpu_$k")") µs |"
done
cat <<EOF

## Idle connections: $(grp "$IDLE_CONNS") open, server RSS per connection

A fresh server each round; ferry-bench idle opens the connections (ferry:
authenticated, one ping each; redis: one \`PING\` each), holds them 10 s
(servers may free per-connection buffers lazily), and reads the server's VmRSS
and fd count before and at the end; "peak" is the highest RSS seen while
holding, over the same count. ferry-bench opens at most 256 connections at once.
The TLS rows: ferryd's TLS sessions (authenticated inside, one ping each) and a
TLS-only redis-server (one \`PING\` each), each a fresh server too.

| server | RSS before | bytes of RSS per connection | (min–max) | peak bytes per connection | fds per connection | seconds to open them |
|---|---|---|---|---|---|---|
EOF
for s in f:ferryd r:redis-server "ft:ferryd, TLS" "rt:redis-server, TLS"; do
  k=${s%%:*}; read -r m lo hi <<<"$(stat3 "idle_$k")"
  echo "| ${s#*:} | $(grp "$(med "idle0_$k")") KiB | $(grp "$m") | $(grp "$lo")–$(grp "$hi") | $(grp "$(med "idlepk_$k")") | $(ev '%.2f' "$(med "idlefd_$k")") | $(ev '%.2f' "$(med "idlesetup_$k")") |"
done
cat <<EOF

## Datagrams (UDP): ferryd's authenticated ping, a bare echo, TCP

ferry-bench udp, one socket on one thread, ${PING_SECS} s measured after 1 s of
warm-up: ferryd's UDP ping (each request a fresh nonce, the current \`ts\`
and its HMAC tag; each reply's tag checked and its nonce matched) against a
bare echo (\`baseline echo\`: a C loop of blocking recvfrom/sendto, no check
of any kind) sent datagrams of the same size ($(med udpbytes) bytes) by the
same client, and at one in flight ferry's TCP ping on an open connection
(ferry-bench ping -c 1). A request not answered within 200 ms is sent again
(same nonce; the wait doubles), and given up after 3 retransmissions: "lost"
is the share of requests given up, "resent" the share of datagrams that were
retransmissions. ferryd runs with \`udp.seen_max = $(grp "$UDP_SEEN_MAX")\`
(see the notes). Latencies count from a request's first send; p50 and p99
are medians over the rounds.

| in flight | server | req/s | (min–max) | p50 | p99 | lost | resent | CPU per request, server + client |
|---|---|---|---|---|---|---|---|---|
EOF
for p in 1 64 512; do
  for s in "f:ferryd, UDP" "b:bare echo (C)" "t:ferryd, TCP ping"; do
    k=${s%%:*}_$p
    [ -n "${vals[udp_$k]:-}" ] || continue
    read -r m lo hi <<<"$(stat3 "udp_$k")"
    echo "| $p | ${s#*:} | $(grp "$m") | $(grp "$lo")–$(grp "$hi") | $(us "$(med "udp50_$k")") | $(us "$(med "udp99_$k")") | $(ev '%.2f' "$(med "udploss_$k")") % | $(ev '%.2f' "$(med "udpre_$k")") % | $(ev '%.1f' "$(med "udpcpu_$k")") + $(ev '%.1f' "$(med "udpccpu_$k")") µs |"
  done
done
ratio_row() { # label NUM DEN
  echo "| $1 | $(ev '%.2f' "$(med "$2") / $(med "$3")")× | $(paired "$2" "$3" | awk '{printf "%.2f–%.2f×", $1, $2}') |"
}
cat <<EOF

| ratio | of the medians | per round |
|---|---|---|
EOF
ratio_row "round trip (p50), ferryd UDP / bare echo, 1 in flight" udp50_f_1 udp50_b_1
ratio_row "round trip (p50), ferryd UDP / ferryd TCP ping, 1 in flight" udp50_f_1 udp50_t_1
ratio_row "req/s, ferryd UDP / bare echo, 1 in flight" udp_f_1 udp_b_1
ratio_row "req/s, ferryd UDP / bare echo, 64 in flight" udp_f_64 udp_b_64
ratio_row "req/s, ferryd UDP / bare echo, 512 in flight" udp_f_512 udp_b_512
cat <<EOF

Cold, whole processes: the C loop of the cold rows above (\`baseline alt\`)
runs these four commands in turn (A B C D A B C D ...), 3 warm-up runs and
then $COLD_RUNS runs each per round; the figure is the median over the rounds
of each round's median.

| what | median | min–max |
|---|---|---|
EOF
lrow cold_pingu "\`ferry ping -u 127.0.0.1:PORT\` (one datagram each way)" 1000 ms
lrow cold_ping "\`ferry ping 127.0.0.1:PORT\` (connect, authenticate, one ping)" 1000 ms
lrow cold_runu "\`ferry run -u 127.0.0.1:PORT -- true\`" 1000 ms
lrow cold_run "\`ferry run 127.0.0.1:PORT -- true\`" 1000 ms
cat <<EOF

A UDP flood and TCP clients: ferry-bench ping over 50 TCP connections for
${PING_SECS} s while \`baseline flood\` sends forged requests (valid framing
and fields, a random tag: a JSON parse and an HMAC each for ferryd) as fast
as one blocking loop goes: at ferryd's UDP port, at a socket that never reads
(the sender's own cost on this machine, without ferryd's), or not at all; the
three in turn.

| flood | TCP req/s | (min–max) | p99 | vs no flood | per round | ferryd CPU per TCP request | flood datagrams/s |
|---|---|---|---|---|---|---|---|
EOF
for s in "none:none" "sink:at a socket that never reads" "ferryd:at ferryd's UDP port"; do
  k=${s%%:*}; read -r m lo hi <<<"$(stat3 "fl_$k")"
  echo "| ${s#*:} | $(grp "$m") | $(grp "$lo")–$(grp "$hi") | $(us "$(med "fl99_$k")") | $(ev '%.2f' "$m / $(med fl_none)")× | $(paired "fl_$k" fl_none | awk '{printf "%.2f–%.2f×", $1, $2}') | $(ev '%.1f' "$(med "flcpu_$k")") µs | $(grp "$(med "flrate_$k")") |"
done
echo
if [ -n "$notes" ]; then echo "$notes"; else
  echo '<!-- notes: kept by compare.sh -->'
  echo '## Notes'
  echo
  echo '(Written by hand after a run: compare.sh keeps this section and everything'
  echo 'after it when it rewrites the file.)'
fi
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
cat "$OUT"
