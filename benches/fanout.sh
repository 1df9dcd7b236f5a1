#!/usr/bin/env bash
# ferry run -H of `true` on many targets, next to pdsh and parallel-ssh over
# sshd on the same targets. The targets are distinct loopback address:port
# pairs (127.0.D.A; all of 127.0.0.0/8 is local on Linux): ferry's on PORT,
# served by a few ferryd processes that each listen on up to 63 addresses
# (ferryd takes at most 64 --listen); ssh's on SSH_PORT of the same addresses,
# served by throwaway sshd processes (benches/sshd.sh) that each listen on 16
# (OpenSSH's most), with a generated host key and root key.
#
# Each round runs ferry and then every ssh tool once, back to back, so they
# share the machine's noise; the table gives each tool's median and spread
# (min-max) over the rounds, its median over ferry's, and the same ratio
# within each round, and the CPU time the whole machine spent per target
# (clients and servers). Only the ratios of one run mean anything.
#
#   bash benches/fanout.sh                        # 100 targets (5 rounds), 1,000 (3 rounds)
#   TARGETS=100 ROUNDS=9 bash benches/fanout.sh
#   PEERS= BIG_PEERS= bash benches/fanout.sh      # ferry alone
#
# Run as root on Debian: it installs pdsh, pssh, openssh-server,
# openssh-client and iproute2 when missing (their services kept from starting)
# and builds ferry in release. Loopback only; every server is killed by PID on
# exit and every run is bounded (TOOL_TIMEOUT). The package installation and
# the cleanup are benches/lib.sh's.
#
# Environment:
#   TARGETS      target counts (default "100 1000")
#   ROUNDS       rounds at counts up to 100 (default 5)
#   BIG_ROUNDS   rounds at larger counts (default 3)
#   PEERS        ssh tools next to ferry at counts up to 100 (default
#                "pdsh pdsh-f64 pssh"): pdsh = `pdsh -R ssh` at its default
#                fanout (32), pdsh-f64 = the same with -f 64 (ferry's default
#                -f), pssh = `parallel-ssh -p 64`
#   BIG_PEERS    the same at larger counts (default "pdsh-f64"; empty: none)
#   PORT         ferryd's port (default 7931); SSH_PORT sshd's (default 7932)
#   TOOL_TIMEOUT seconds one run of one tool may take (default 600)
#   NICE         niceness for the whole run as root (default -10; 0 leaves it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
log() { echo "$ME: $*" >&2; }
TARGETS=${TARGETS:-"100 1000"}
ROUNDS=${ROUNDS:-5}
BIG_ROUNDS=${BIG_ROUNDS:-3}
PEERS=${PEERS-"pdsh pdsh-f64 pssh"}
BIG_PEERS=${BIG_PEERS-"pdsh-f64"}
PORT=${PORT:-7931}
SSH_PORT=${SSH_PORT:-7932}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-600}
NICE=${NICE:--10}
PER=63
case "$TARGETS $ROUNDS $BIG_ROUNDS $PORT $SSH_PORT $TOOL_TIMEOUT" in
  *[!0-9\ ]*) echo "fanout.sh: TARGETS, ROUNDS, BIG_ROUNDS, PORT, SSH_PORT and TOOL_TIMEOUT are numbers" >&2; exit 2;;
esac
for p in $PEERS $BIG_PEERS; do
  case "$p" in pdsh|pdsh-f64|pssh) ;; *) echo "fanout.sh: unknown peer $p (pdsh, pdsh-f64, pssh)" >&2; exit 2;; esac
done
if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ]; then renice -n "$NICE" -p $$ >/dev/null; fi

max=0 ssh_max=0
for n in $TARGETS; do
  ((n > max)) && max=$n
  if ((n <= 100)); then peers=$PEERS; else peers=$BIG_PEERS; fi
  [ -n "$peers" ] && ((n > ssh_max)) && ssh_max=$n
done
((max <= 254 * PER)) || { echo "fanout.sh: at most $((254 * PER)) targets" >&2; exit 2; }

# ---------------------------------------------------------------- packages
if ((ssh_max > 0)); then
  need_commands pdsh:pdsh parallel-ssh:pssh sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client ss:iproute2
fi
install_needed

cargo build --release --quiet --bin ferryd --bin ferry
BIN=$PWD/target/release

# ---------------------------------------------------------------- cleanup
bench_work fanout
ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- ferryd
"$BIN/ferry" keygen -q --id bench "$work/keys"
export FERRY_KEYS=$work/keys
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
up=0
for _ in $(seq 200); do
  "$BIN/ferry" -q -w 1 ping -H "127.0.[1-$daemons].1:$PORT" 2>/dev/null && { up=1; break; }
  sleep 0.05
done
[ "$up" = 1 ] || { echo "fanout.sh: the ferryd processes did not answer" >&2; cat "$work"/ferryd*.log >&2; exit 1; }

# The first N targets, as a HOSTS spec: whole daemons, then part of one.
spec() {
  local n=$1 full=$(($1 / PER)) rest=$(($1 % PER)) s=""
  ((full > 0)) && s="127.0.[1-$full].[1-$PER]:$PORT"
  ((rest > 0)) && s="${s:+$s,}127.0.$((full + 1)).[1-$rest]:$PORT"
  echo "$s"
}
# The first N addresses, one a line, in the same order.
addrs() {
  local d a i=0
  for d in $(seq 1 "$daemons"); do
    for a in $(seq 1 $PER); do
      ((i++ < $1)) || return 0
      echo "127.0.$d.$a"
    done
  done
}

# ---------------------------------------------------------------- sshd
if ((ssh_max > 0)); then
  # shellcheck source=benches/sshd.sh
  . benches/sshd.sh
  sshd_keys "$work/ssh"
  mapfile -t all < <(addrs "$ssh_max")
  t=$EPOCHREALTIME
  sshd_start "$SSH_PORT" "${all[@]}"
  echo "fanout.sh: $(( (ssh_max + SSHD_PER - 1) / SSHD_PER )) sshd on $ssh_max addresses, port $SSH_PORT, up in $(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s" >&2
  ssh "${SSH_OPTS[@]}" -p "$SSH_PORT" -n "root@${all[0]}" true ||
    { echo "fanout.sh: ssh to the throwaway sshd failed" >&2; cat "$SSH_DIR"/sshd.*.log >&2; exit 1; }
  # pdsh's ssh module: the port, the key and the options, then its own -l%u %h.
  export PDSH_SSH_ARGS="-p $SSH_PORT ${SSH_OPTS[*]} -l%u %h"
fi

# ---------------------------------------------------------------- runs
# Each prints "SECONDS CPU-SECONDS": the wall time and the CPU time the whole
# machine spent meanwhile (/proc/stat: user, nice, system, irq, softirq, steal),
# which counts the servers' side too: every sshd forks a process per session.
# It prints nothing (and fails) if the tool failed.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)
since() { awk -v a="$1" -v b="$EPOCHREALTIME" -v c0="$2" -v c1="$(busy)" -v hz="$HZ" 'BEGIN{printf "%.4f %.3f", b-a, (c1-c0)/hz}'; }
run_ferry() { # n
  local t c; c=$(busy); t=$EPOCHREALTIME
  timeout "$TOOL_TIMEOUT" "$BIN/ferry" -q run -H "$(spec "$1")" -- true || { echo "fanout.sh: ferry run -H failed" >&2; return 1; }
  since "$t" "$c"
}
run_peer() { # tool n
  local t c err=$work/peer.err hosts=$work/hosts.$2
  [ -s "$hosts" ] || addrs "$2" > "$hosts"
  [ -s "$hosts.pssh" ] || sed "s/\$/:$SSH_PORT/" "$hosts" > "$hosts.pssh"
  c=$(busy); t=$EPOCHREALTIME
  case "$1" in
    pdsh) timeout "$TOOL_TIMEOUT" pdsh -R ssh -S -w "^$hosts" true 2> "$err" ;;
    pdsh-f64) timeout "$TOOL_TIMEOUT" pdsh -R ssh -S -f 64 -w "^$hosts" true 2> "$err" ;;
    pssh) timeout "$TOOL_TIMEOUT" parallel-ssh -h "$hosts.pssh" -l root -p 64 -t "$TOOL_TIMEOUT" \
            -x "${SSH_OPTS[*]}" true > "$work/pssh.out" 2> "$err" ;;
  esac || { echo "fanout.sh: $1 on $2 targets failed:" >&2; tail -5 "$err" "$work/pssh.out" >&2 2>/dev/null; return 1; }
  [ ! -s "$err" ] || { echo "fanout.sh: $1 on $2 targets said:" >&2; tail -5 "$err" >&2; return 1; }
  since "$t" "$c"
}
label() {
  case "$1" in
    ferry) echo "\`ferry run -H … -- true\` (-f 64)" ;;
    pdsh) echo "\`pdsh -R ssh\` (fanout 32)" ;;
    pdsh-f64) echo "\`pdsh -R ssh -f 64\`" ;;
    pssh) echo "\`parallel-ssh -p 64\`" ;;
  esac
}
stat3() { # numbers... -> "median min max"
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; print m, a[1], a[NR]}'
}

echo "ferry run -H of true: $daemons ferryd (up to $PER addresses each); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "${PDSH_SSH_ARGS:-}" ] || echo "$(ssh -V 2>&1); pdsh $(pdsh -V 2>&1 | head -1 | sed 's/^pdsh-//'); parallel-ssh $(parallel-ssh --version 2>&1)"
for n in $TARGETS; do
  if ((n <= 100)); then peers=$PEERS rounds=$ROUNDS; else peers=$BIG_PEERS rounds=$BIG_ROUNDS; fi
  declare -A t=() cpu=()
  for r in $(seq "$rounds"); do
    line="round $r/$rounds, $n targets:"
    for tool in ferry $peers; do
      if [ "$tool" = ferry ]; then out=$(run_ferry "$n"); else out=$(run_peer "$tool" "$n"); fi
      read -r w c <<<"$out"
      t[$tool]+=" $w" cpu[$tool]+=" $c"
      line+=" $tool $w s ($c CPU-s)"
    done
    echo "$line" >&2
  done
  # shellcheck disable=SC2086
  read -r fm _ _ <<<"$(stat3 ${t[ferry]})"
  echo
  echo "$n targets, $rounds rounds:"
  echo
  echo "| tool | median | min–max | median / ferry's | per-round ratios | machine CPU per target (median) |"
  echo "|---|---|---|---|---|---|"
  for tool in ferry $peers; do
    # shellcheck disable=SC2086
    read -r m lo hi <<<"$(stat3 ${t[$tool]})"
    # shellcheck disable=SC2086
    read -r cm _ _ <<<"$(stat3 ${cpu[$tool]})"
    if [ "$tool" = ferry ]; then
      ratio="" ratios=""
    else
      ratio=$(awk -v a="$m" -v b="$fm" 'BEGIN{printf "%.1f×", a/b}')
      ratios=$(paste -d' ' <(tr ' ' '\n' <<<"${t[$tool]# }") <(tr ' ' '\n' <<<"${t[ferry]# }") |
               awk '{x = $1 / $2; if (NR == 1 || x < lo) lo = x; if (NR == 1 || x > hi) hi = x} END {printf "%.1f–%.1f×", lo, hi}')
    fi
    printf '| %s | %.3f s | %.3f–%.3f s | %s | %s | %.1f ms |\n' "$(label "$tool")" "$m" "$lo" "$hi" "$ratio" "$ratios" \
      "$(awk -v c="$cm" -v n="$n" 'BEGIN{print c * 1000 / n}')"
  done
  unset t cpu
done
