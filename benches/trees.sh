# shellcheck shell=bash
# Directory trees (issue 21): `ferry put -r` and `ferry get -r` next to
# `scp -r`, the rsync daemon (`rsync -a` into an empty target) and
# `tar cf - | ferry run -- tar xf -`, on two generated trees: TREE_FILES small
# files (sizes 100 B to 64 KiB, uniformly drawn, in TREE_DIRS directories) and
# TREE_BIG files of TREE_BIG_MIB MiB. Every copy ends on disk: ferry syncs the
# file system itself at the end of a tree (syncfs), and the script runs
# `sync -f` on the target's file system inside the timed span for the peers.
# A local `cp -a` of the same tree (same disk, no network, then `sync -f`)
# runs beside them as the floor: no tool that moves the tree over a socket
# can beat it, so it says which ratios this machine's disk allows at all.
# Every copy is compared with its source (`diff -r`, outside the timed span)
# and removed, so each round really copies.
#
# Sourced by benches/compare.sh, which calls trees_setup once (after ferryd,
# the sshd and the rsync daemon are up; they serve $work/root) and trees once
# a round, and prints trees_report's tables. Run on its own, it starts those
# three peers itself and writes only the tree rows:
#
#   bash benches/trees.sh                    # 10,000 files in 200 dirs; 20 x 50 MiB; 3 rounds
#   QUICK=1 bash benches/trees.sh            # 1,000 files in 20 dirs; 20 x 4 MiB; 1 round
#   TREE_FILES=2000 TREE_BIG_MIB=8 ROUNDS=2 bash benches/trees.sh
#
# Environment: TREE_FILES, TREE_DIRS, TREE_BIG, TREE_BIG_MIB, ROUNDS, QUICK,
# OUT (standalone: the Markdown file, default target/TREES.md).

trees_sizes() {
  if [ "${QUICK:-0}" = 1 ]; then
    TREE_FILES=${TREE_FILES:-1000}; TREE_DIRS=${TREE_DIRS:-20}; TREE_BIG=${TREE_BIG:-20}; TREE_BIG_MIB=${TREE_BIG_MIB:-4}
  else
    TREE_FILES=${TREE_FILES:-10000}; TREE_DIRS=${TREE_DIRS:-200}; TREE_BIG=${TREE_BIG:-20}; TREE_BIG_MIB=${TREE_BIG_MIB:-50}
  fi
  case "$TREE_FILES$TREE_DIRS$TREE_BIG$TREE_BIG_MIB" in *[!0-9]*) echo "$ME: TREE_* are numbers" >&2; exit 2;; esac
}

# Writes the two trees under $work/root (served by all three peers).
trees_setup() {
  trees_sizes
  log "writing a tree of $TREE_FILES small files in $TREE_DIRS directories, and one of $TREE_BIG x $TREE_BIG_MIB MiB"
  python3 - "$work/root/tsmall" "$TREE_FILES" "$TREE_DIRS" <<'PY'
import os, random, sys
top, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(21)
paths = []
for i in range(dirs):
    # Two levels: a tenth of the directories at the top, the rest under them.
    top_dirs = max(1, dirs // 10)
    p = f"{top}/d{i:03}" if i < top_dirs else f"{top}/d{i % top_dirs:03}/s{i:03}"
    os.makedirs(p, exist_ok=True)
    paths.append(p)
for i in range(files):
    with open(f"{paths[i % dirs]}/f{i:05}.bin", "wb") as f:
        f.write(os.urandom(rnd.randint(100, 65536)))
PY
  mkdir -p "$work/root/tbig"
  local i
  for i in $(seq "$TREE_BIG"); do head -c "$((TREE_BIG_MIB << 20))" /dev/urandom > "$work/root/tbig/f$i.bin"; done
  TREE_SMALL_BYTES=$(du -sb --apparent-size "$work/root/tsmall" | cut -f1)
  TREE_BIG_BYTES=$((TREE_BIG * (TREE_BIG_MIB << 20)))
  mkdir -p "$work/tsrc" "$work/tout"
  # The put sources: the same trees outside the served root.
  cp -a "$work/root/tsmall" "$work/root/tbig" "$work/tsrc/"
  sync -f "$work/root"
}

tsync() { sync -f "$1"; }
# Each prints the seconds; $1 the tree (tsmall or tbig), $2 where the copy goes.
tput_ferry() { local t; t=$(now); "$BIN/ferry" -q put -r "$FADDR" "$work/tsrc/$1" "$2"; since "$t"; }
tget_ferry() { local t; t=$(now); "$BIN/ferry" -q get -r "$FADDR" "$1" "$2"; since "$t"; }
tput_scp() { local t; t=$(now); scp -q -r "${SSH_OPTS[@]}" -P "$SPORT" "$work/tsrc/$1" "root@127.0.0.1:$work/root/$2"; tsync "$work/root"; since "$t"; }
tget_scp() { local t; t=$(now); scp -q -r "${SSH_OPTS[@]}" -P "$SPORT" "root@127.0.0.1:$work/root/$1" "$2"; tsync "$2"; since "$t"; }
tput_rsync() { local t; t=$(now); rsync -a "$work/tsrc/$1/" "rsync://127.0.0.1:$RPORT/mod/$2/"; tsync "$work/root"; since "$t"; }
tget_rsync() { local t; t=$(now); rsync -a "rsync://127.0.0.1:$RPORT/mod/$1/" "$2/"; tsync "$2"; since "$t"; }
tput_cp() { local t; t=$(now); cp -a "$work/tsrc/$1" "$work/root/$2"; tsync "$work/root"; since "$t"; }
tget_cp() { local t; t=$(now); cp -a "$work/root/$1" "$2"; tsync "$2"; since "$t"; }
tput_tar() {
  local t; t=$(now)
  tar cf - -C "$work/tsrc" "$1" | "$BIN/ferry" run "$FADDR" -- "mkdir -p '$2' && tar xf - -C '$2' --strip-components=1 && sync -f ."
  since "$t"
}
tget_tar() {
  local t; t=$(now)
  mkdir -p "$2"
  "$BIN/ferry" run -n "$FADDR" -- tar cf - "$1" | tar xf - -C "$2" --strip-components=1; tsync "$2"
  since "$t"
}
tsame() { # copy source what
  diff -r -q "$1" "$2" > /dev/null || { echo "$ME: $3: the copy of $2 differs" >&2; exit 1; }
  rm -rf "$1"
  # Untimed: the removal's writeback and (on a discard mount) its trim would
  # otherwise land in the next row's timed sync, always ferry's put -r first.
  sync -f "$(dirname "$1")"
}

# One round: every tool, each tree, put then get, one after the other.
trees() {
  local k tree
  for k in small big; do
    tree=t$k
    add "tput_ferry_$k" "$(tput_ferry "$tree" "p-ferry")"; tsame "$work/root/p-ferry" "$work/tsrc/$tree" "ferry put -r"
    add "tput_scp_$k" "$(tput_scp "$tree" "p-scp")"; tsame "$work/root/p-scp" "$work/tsrc/$tree" "scp -r put"
    add "tput_rsync_$k" "$(tput_rsync "$tree" "p-rsync")"; tsame "$work/root/p-rsync" "$work/tsrc/$tree" "rsync -a put"
    add "tput_tar_$k" "$(tput_tar "$tree" "p-tar")"; tsame "$work/root/p-tar" "$work/tsrc/$tree" "tar | ferry run put"
    add "tput_cp_$k" "$(tput_cp "$tree" "p-cp")"; tsame "$work/root/p-cp" "$work/tsrc/$tree" "cp -a put"
    add "tget_ferry_$k" "$(tget_ferry "$tree" "$work/tout/g-ferry")"; tsame "$work/tout/g-ferry" "$work/root/$tree" "ferry get -r"
    add "tget_scp_$k" "$(tget_scp "$tree" "$work/tout/g-scp")"; tsame "$work/tout/g-scp" "$work/root/$tree" "scp -r get"
    add "tget_rsync_$k" "$(tget_rsync "$tree" "$work/tout/g-rsync")"; tsame "$work/tout/g-rsync" "$work/root/$tree" "rsync -a get"
    add "tget_tar_$k" "$(tget_tar "$tree" "$work/tout/g-tar")"; tsame "$work/tout/g-tar" "$work/root/$tree" "ferry run tar | tar get"
    add "tget_cp_$k" "$(tget_cp "$tree" "$work/tout/g-cp")"; tsame "$work/tout/g-cp" "$work/root/$tree" "cp -a get"
  done
}

# The tables and the targets, in Markdown on stdout.
trees_report() {
  local k bytes label row dir peer goal
  cat <<EOF

## Trees: \`put -r\` and \`get -r\` (issue 21)

Two generated trees: $(grp "$TREE_FILES") files of 100 B to 64 KiB in $TREE_DIRS
directories ($(ev '%.1f' "$TREE_SMALL_BYTES / 1048576") MiB), and $TREE_BIG files of
$TREE_BIG_MIB MiB. Each copy ends on disk (ferry: one syncfs at the end of
the tree; the others: \`sync -f\` inside the timed span), into an empty target,
and is checked with \`diff -r\` outside it. ssh is the throwaway sshd (scp's
SFTP protocol); rsync is the daemon (\`rsync -a\`, no ssh); tar runs through
\`ferry run\` (\`tar cf - | ferry run HOST -- tar xf -\` and back). The last
row of each group is no transfer at all: \`cp -a\` of the same tree on the
same disk, then \`sync -f\`, the floor that no tool moving the tree over a
socket can beat.

| tree | direction | tool | files/s | MB/s | seconds (median) | seconds (min–max) |
|---|---|---|---|---|---|---|
EOF
  for k in small big; do
    if [ "$k" = small ]; then bytes=$TREE_SMALL_BYTES; n=$TREE_FILES; else bytes=$TREE_BIG_BYTES; n=$TREE_BIG; fi
    for dir in put get; do
      for row in "ferry:\`ferry $dir -r\`" "scp:\`scp -r\`" "rsync:\`rsync -a\` (daemon)" "tar:tar through \`ferry run\`" "cp:local \`cp -a\` (the floor)"; do
        label=${row#*:}
        read -r m lo hi <<<"$(stat3 "t${dir}_${row%%:*}_$k")"
        echo "| $k | $dir | $label | $(grp "$(ev '%f' "$n / $m")") | $(grp "$(ev '%f' "$bytes / $m / 1e6")") | $(ev '%.3f' "$m") | $(ev '%.3f' "$lo")–$(ev '%.3f' "$hi") |"
      done
    done
  done
  echo
  echo "The floor against the ≥ 10× \`scp -r\` target: the local \`cp -a\` (medians) is"
  for k in small big; do
    for dir in put get; do
      echo "- $k tree, $dir: $(ev '%.2f' "$(med "t${dir}_scp_$k") / $(med "t${dir}_cp_$k")")× \`scp -r\`; \`ferry $dir -r\` reaches $(ev '%.0f' "100 * $(med "t${dir}_cp_$k") / $(med "t${dir}_ferry_$k")")% of its speed."
    done
  done
}

# The targets, as compare.sh's `target` rows.
trees_targets() {
  local k dir peer goal name
  for k in small big; do
    for dir in put get; do
      for peer in "scp:\`scp -r\`:10" "rsync:the rsync daemon:1.0" "tar:\`tar \\| ferry run -- tar\`:1.0"; do
        IFS=: read -r p name goal <<<"$peer"
        target "\`ferry $dir -r\` ($k tree) ≥ ${goal}× $name" \
          "$(ev '%.2f' "$(med "t${dir}_ferry_$k")") vs $(ev '%.2f' "$(med "t${dir}_${p}_$k")") s" "t${dir}_${p}_$k" "t${dir}_ferry_$k" ">=" "$goal"
      done
    done
  done
}

# ---------------------------------------------------------------- standalone
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  REPO=$PWD
  # shellcheck source=benches/lib.sh
  . benches/lib.sh
  START=$EPOCHREALTIME
  # shellcheck source=benches/stats.sh
  . benches/stats.sh
  QUICK=${QUICK:-0}
  if [ "$QUICK" = 1 ]; then ROUNDS=${ROUNDS:-1}; else ROUNDS=${ROUNDS:-3}; fi
  OUT=${OUT:-target/TREES.md}
  need_commands sshd:openssh-server ssh:openssh-client scp:openssh-client rsync:rsync ss:iproute2 python3:python3
  install_needed
  log "building ferry (release)"
  cargo build --release --quiet --bin ferryd --bin ferry
  BIN=$REPO/target/release
  bench_work trees
  wait_port() { for _ in $(seq 300); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.05; done; echo "$ME: nothing on $1" >&2; return 1; }
  mkdir -p "$work/root" "$work/ssh"
  "$BIN/ferry" keygen -q --id bench "$work/keys"
  export FERRY_KEYS=$work/keys
  FPORT=$(free_port)
  "$BIN/ferryd" --config /dev/null --foreground --listen "127.0.0.1:$FPORT" --root "$work/root" --keys "$work/keys" \
    --log-level warn 2> "$work/ferryd.log" &
  pids+=("$!"); wait_port "$FPORT"; FADDR=127.0.0.1:$FPORT
  # shellcheck source=benches/sshd.sh
  . benches/sshd.sh
  sshd_keys "$work/ssh"; SPORT=$(free_port); sshd_start "$SPORT" 127.0.0.1
  RPORT=$(free_port)
  printf 'use chroot = no\npid file = %s\nlog file = %s\n[mod]\n  path = %s\n  read only = no\n  uid = root\n  gid = root\n' \
    "$work/rsyncd.pid" "$work/rsyncd.log" "$work/root" > "$work/rsyncd.conf"
  rsync --daemon --no-detach --address=127.0.0.1 --port="$RPORT" --config="$work/rsyncd.conf" & pids+=("$!")
  wait_port "$RPORT"
  trees_setup
  LOAD0=$(cut -d' ' -f1-3 /proc/loadavg); LOADS=()
  for r in $(seq "$ROUNDS"); do
    LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
    log "round $r/$ROUNDS: trees"; trees
  done
  LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
  {
    echo "# Trees: ferry put -r / get -r next to scp -r, rsync -a and tar through ferry run"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, rounds: $ROUNDS$( [ "$QUICK" = 1 ] && echo ', QUICK mode'),"
    echo "load average $LOAD0 at the start, $LOAD1 at the end (1-minute load at each round's start: ${LOADS[*]})."
    trees_report
    trees_targets
    echo
    echo "| target | measured (medians) | ratio | per-round ratios | status |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${TARGETS[@]}"
  } > "$OUT"
  log "wrote $OUT"
  cat "$OUT"
fi
