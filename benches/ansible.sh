#!/usr/bin/env bash
# tests/ansible/playbook.yml end to end, over ferry and over ssh, on the same
# three hosts: three ferryd on 127.0.0.1, .2 and .3 (the connection plugin
# packaging/ansible/connection/ferry.py) and one throwaway sshd on the same
# three addresses (benches/sshd.sh: generated host and root keys), ssh with
# `-o ControlMaster=auto -o ControlPersist=60s` and pipelining on.
#
# Each round runs the playbook five times, back to back:
#   ssh cold     the ssh masters closed first, so the run opens them
#   ferry        ansible_pipelining=true
#   ssh warm     the masters of the cold run still up
#   ferry, no pipelining
#   local        ansible_connection=local on the same paths: no network at
#                all, for reference (Ansible's local plugin has costs of its own)
# and reports, over the rounds, the median and spread (min-max) of each
# one's wall time (ansible-playbook started to ended), its ratio to ferry's
# (the median's, and within each round), the CPU time the whole machine
# spent meanwhile, and each task's median time (benches/ansible/
# callback_plugins/task_times.py: from the task's start to its last host's
# result). Every run starts from fresh work directories, so that each
# changes the same files, and its stats are checked (15 ok, 1 ignored, no
# failure per host) as is the copied file on each host. The inventory is
# tests/ansible.rs's: h1 and h2 keep their files outside ferryd's served root
# (files through sh and cat), h3 inside it with ansible_ferry_root (ferry's
# put and get); the playbook's variables (work, files, fetched) are passed
# the same way. ferryd runs with a clean environment (as under systemd; sshd
# gives its sessions one too) and ansible-playbook without PYTHONUNBUFFERED.
# Only the ratios of one run mean anything.
#
#   bash benches/ansible.sh
#   ROUNDS=9 bash benches/ansible.sh
#
# Run as root on Debian: it installs openssh-server, openssh-client,
# iproute2, jq, python3 and python3-venv when missing (their services kept from
# starting), makes a venv with tests/ansible.rs's ansible-core from the Python
# package registry (or reuses the test's: target/tmp/ansible-venv-VERSION),
# and builds ferryd in release. Loopback only; every server and ssh master is
# killed by PID on exit and every run is bounded (RUN_TIMEOUT). The package
# installation and the cleanup are benches/lib.sh's.
#
# Environment:
#   ROUNDS              rounds (default 5)
#   FORKS               Ansible forks (default 3, as tests/ansible.rs)
#   FERRY_ANSIBLE_VENV  the venv to use or make (default as tests/ansible.rs)
#   RUN_TIMEOUT         seconds one ansible-playbook may take (default 300)
#   NICE                niceness for the whole run as root (default -10; 0 leaves it)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=benches/lib.sh
. benches/lib.sh
ROUNDS=${ROUNDS:-5}
FORKS=${FORKS:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
NICE=${NICE:--10}
case "$ROUNDS$FORKS$RUN_TIMEOUT" in *[!0-9]*) echo "ansible.sh: ROUNDS, FORKS and RUN_TIMEOUT are numbers" >&2; exit 2;; esac
[ "$ROUNDS" -ge 1 ] || { echo "ansible.sh: ROUNDS must be at least 1" >&2; exit 2; }
if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ]; then renice -n "$NICE" -p $$ >/dev/null; fi
log() { echo "$ME: $*" >&2; }

# The ansible-core release tests/ansible.rs runs, and its venv.
CORE=$(sed -n 's/^const ANSIBLE_CORE: &str = "\(ansible-core==[^"]*\)";/\1/p' tests/ansible.rs)
[ -n "$CORE" ] || { echo "ansible.sh: no ANSIBLE_CORE in tests/ansible.rs" >&2; exit 1; }
VENV=${FERRY_ANSIBLE_VENV:-$REPO/target/tmp/ansible-venv-${CORE/==/-}}

# ---------------------------------------------------------------- packages
need_commands sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client ss:iproute2 jq:jq python3:python3
[ -e "$VENV/.ferry-ready" ] || python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
install_needed

# The same venv as tests/ansible.rs: its marker is written last, so a venv
# made halfway is made again.
if [ ! -e "$VENV/.ferry-ready" ]; then
  log "making $VENV with $CORE"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  timeout 120 python3 -m venv "$VENV"
  timeout 600 "$VENV/bin/python3" -m pip install --disable-pip-version-check -q "$CORE"
  printf '%s' "$CORE" > "$VENV/.ferry-ready"
fi
PLAYBOOK=$VENV/bin/ansible-playbook
[ -x "$PLAYBOOK" ] || { echo "ansible.sh: no $PLAYBOOK" >&2; exit 1; }
PY=python3
for p in /usr/bin/python3 /usr/local/bin/python3; do [ -x "$p" ] && { PY=$p; break; }; done

cargo build --release --quiet --bin ferryd --bin ferry
BIN=$REPO/target/release

# ---------------------------------------------------------------- cleanup
bench_work ansible
# The ssh masters Ansible leaves (ControlPersist): asked to exit, then killed by PID.
masters() { # prints the PIDs of the masters behind the control sockets
  local s
  for s in "$work"/cp/*; do
    [ -S "$s" ] || continue
    ssh -F /dev/null -o ControlPath="$s" -O check master 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p' || true
  done
}
close_masters() {
  local s mp
  mp=$(masters)
  for s in "$work"/cp/*; do
    [ -S "$s" ] && { ssh -F /dev/null -o ControlPath="$s" -O exit master 2>/dev/null || true; }
  done
  # shellcheck disable=SC2086 # one PID a word
  reap $mp
  rm -f "$work"/cp/*
}
# The masters first, then lib.sh's cleanup of the servers and $work.
trap 'if [ -d "$work/cp" ]; then close_masters; fi; cleanup' EXIT

# ---------------------------------------------------------------- servers
ADDRS=(127.0.0.1 127.0.0.2 127.0.0.3)
HOSTS=(h1 h2 h3)
"$BIN/ferry" keygen -q --id bench "$work/keys"
FPORT=$(free_port)
# ferryd starts with a clean environment, as a service manager (or sshd, for
# its sessions) gives one: variables of the shell that runs this script reach
# every module otherwise; PYTHONUNBUFFERED=1, for one, makes a pipelined
# module's python read its code from stdin one byte per read(2).
mkdir -p "$work/home"
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME="$work/home")
for i in 0 1 2; do
  mkdir -p "$work/root-${HOSTS[$i]}"
  "${CLEAN_ENV[@]}" "$BIN/ferryd" --config /dev/null --foreground --log-level warn --listen "${ADDRS[$i]}:$FPORT" \
    --root "$work/root-${HOSTS[$i]}" --keys "$work/keys" 2> "$work/ferryd-${HOSTS[$i]}.log" &
  pids+=($!)
done
# shellcheck source=benches/sshd.sh
. benches/sshd.sh
sshd_keys "$work/ssh"
SPORT=$(free_port)
sshd_start "$SPORT" "${ADDRS[@]}"
for i in 0 1 2; do
  up=0
  for _ in $(seq 100); do
    FERRY_KEYS=$work/keys "$BIN/ferry" -q -w 1 ping "${ADDRS[$i]}:$FPORT" 2>/dev/null && { up=1; break; }
    sleep 0.05
  done
  [ "$up" = 1 ] || { echo "ansible.sh: ferryd on ${ADDRS[$i]}:$FPORT did not answer" >&2; cat "$work"/ferryd-*.log >&2; exit 1; }
  ssh "${SSH_OPTS[@]}" -p "$SPORT" -n "root@${ADDRS[$i]}" true ||
    { echo "ansible.sh: ssh to ${ADDRS[$i]}:$SPORT failed" >&2; cat "$SSH_DIR"/sshd.*.log >&2; exit 1; }
done

# ---------------------------------------------------------------- the playbook's files and inventories
# h1 and h2 work outside ferryd's root, h3 inside it (as in tests/ansible.rs);
# the ssh runs use the same directories.
mkdir -p "$work/files" "$work/cp" "$work/ansible-home" "$work/local-tmp"
head -c 200000 /dev/urandom > "$work/files/payload.bin"
cp tests/ansible/greeting.j2 "$work/files/"
base() { # i
  if [ "${HOSTS[$1]}" = h3 ]; then echo "$work/root-h3"; else echo "$work/hosts/${HOSTS[$1]}"; fi
}
inventory() { # ferry|ssh pipelining
  local i b
  echo "[fleet]"
  for i in 0 1 2; do
    b=$(base "$i")
    printf '%s ansible_host=%s work=%s/work ansible_remote_tmp=%s/remote-tmp' "${HOSTS[$i]}" "${ADDRS[$i]}" "$b" "$b"
    if [ "$1" = ferry ]; then
      printf ' ansible_port=%s ansible_ferry_keys=%s ansible_ferry_key_id=bench' "$FPORT" "$work/keys"
      [ "${HOSTS[$i]}" = h3 ] && printf ' ansible_ferry_root=%s' "$b"
    else # local ignores the port, but the template prints it
      printf ' ansible_port=%s' "$SPORT"
    fi
    echo
  done
  echo
  echo "[fleet:vars]"
  echo "ansible_pipelining=$2"
  echo "ansible_python_interpreter=$PY"
  echo "files=$work/files"
  echo "fetched=$work/fetched"
  if [ "$1" = ferry ]; then
    echo "ansible_connection=ferry"
  elif [ "$1" = local ]; then
    echo "ansible_connection=local"
  else
    echo "ansible_connection=ssh"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$SSH_KEY"
    echo "ansible_ssh_args=-o ControlMaster=auto -o ControlPersist=60s"
    echo "ansible_ssh_common_args=-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  fi
}
inventory ferry true > "$work/ferry.ini"
inventory ferry false > "$work/ferry-nopipe.ini"
inventory ssh true > "$work/ssh.ini"
inventory local true > "$work/local.ini"

# ---------------------------------------------------------------- runs
fresh() { # every host's work directory as the playbook expects it
  local i b
  rm -rf "$work/fetched" "$work/hosts"
  for i in 0 1 2; do
    b=$(base "$i")
    rm -rf "$b/work" "$b/remote-tmp"
    mkdir -p "$b/work"
    echo "to be removed" > "$b/work/old.txt"
  done
  mkdir -p "$work/fetched"
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}'; }
# The CPU time the whole machine spent (/proc/stat: user, nice, system, irq,
# softirq, steal), in clock ticks: Ansible, its forks, the servers and the modules.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)
declare -A wall=() cpu=()
run() { # mode inventory: one playbook run, its wall time and task times kept
  local mode=$1 t c s out=$work/out.$1 times=$work/times.$1.$r
  fresh
  c=$(busy)
  t=$EPOCHREALTIME
  s=0
  env -u FERRY_KEYS -u ANSIBLE_PIPELINING -u PYTHONUNBUFFERED \
    ANSIBLE_CONNECTION_PLUGINS="$REPO/packaging/ansible/connection" \
    ANSIBLE_CALLBACK_PLUGINS="$REPO/benches/ansible/callback_plugins" \
    ANSIBLE_CALLBACKS_ENABLED=task_times FERRY_BENCH_TIMES="$times" \
    ANSIBLE_HOME="$work/ansible-home" ANSIBLE_LOCAL_TEMP="$work/local-tmp" \
    ANSIBLE_SSH_CONTROL_PATH_DIR="$work/cp" ANSIBLE_HOST_KEY_CHECKING=False \
    ANSIBLE_CONFIG="$work/none.cfg" ANSIBLE_NOCOLOR=1 PYTHONDONTWRITEBYTECODE=1 ANSIBLE_FORKS="$FORKS" \
    timeout "$RUN_TIMEOUT" "$PLAYBOOK" -i "$2" tests/ansible/playbook.yml > "$out" 2>&1 || s=$?
  wall[$mode]+=" $(since "$t")"
  cpu[$mode]+=" $(awk -v a="$c" -v b="$(busy)" -v hz="$HZ" 'BEGIN{printf "%.2f", (b-a)/hz}')"
  [ "$s" = 0 ] || { echo "ansible.sh: $mode: ansible-playbook failed ($s):" >&2; tail -40 "$out" >&2; exit 1; }
  # The same outcome every time: 15 ok and the failing shell task ignored on
  # every host, and the file really copied.
  jq -e '[.stats[] | select(.ok == 15 and .ignored == 1 and .failures == 0 and .unreachable == 0)] | length == 3' \
    "$times" >/dev/null || { echo "ansible.sh: $mode: unexpected stats:" >&2; jq -c .stats "$times" >&2; exit 1; }
  for i in 0 1 2; do
    cmp -s "$work/files/payload.bin" "$(base "$i")/work/payload.bin" ||
      { echo "ansible.sh: $mode: payload.bin did not reach ${HOSTS[$i]}" >&2; exit 1; }
  done
}

MODES=(ssh-cold ferry ssh-warm ferry-nopipe local)
log "$CORE ($("$VENV/bin/python3" --version)), $ROUNDS rounds, forks $FORKS; modules run by $PY"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  close_masters
  run ssh-cold "$work/ssh.ini"
  run ferry "$work/ferry.ini"
  n=$(masters | wc -w)
  [ "$n" = 3 ] || { echo "ansible.sh: $n ssh masters up before the warm run, not 3" >&2; exit 1; }
  run ssh-warm "$work/ssh.ini"
  run ferry-nopipe "$work/ferry-nopipe.ini"
  run local "$work/local.ini"
  line="round $r/$ROUNDS:"
  for m in "${MODES[@]}"; do line+=" $m ${wall[$m]##* } s (${cpu[$m]##* } CPU-s)"; done
  log "$line"
done

# ---------------------------------------------------------------- report
stat3() { # numbers... -> "median min max"
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; print m, a[1], a[NR]}'
}
label() {
  case "$1" in
    ferry) echo "ferry, pipelining" ;;
    ferry-nopipe) echo "ferry, no pipelining" ;;
    ssh-warm) echo "ssh, ControlPersist master up, pipelining" ;;
    ssh-cold) echo "ssh, first run: opens the masters, pipelining" ;;
    local) echo "no network: ansible_connection=local" ;;
  esac
}
# shellcheck disable=SC2086
read -r fm _ _ <<<"$(stat3 ${wall[ferry]})"
echo
echo "$CORE, $FORKS forks, 3 hosts, $ROUNDS rounds; $(nproc) cores; load $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(ssh -V 2>&1)"
echo
echo "| run | wall time, median | min–max | / ferry's median | per-round ratios | machine CPU, median |"
echo "|---|---|---|---|---|---|"
for m in ferry ferry-nopipe ssh-warm ssh-cold local; do
  # shellcheck disable=SC2086
  read -r med lo hi <<<"$(stat3 ${wall[$m]})"
  ratios=$(paste -d' ' <(tr ' ' '\n' <<<"${wall[$m]# }") <(tr ' ' '\n' <<<"${wall[ferry]# }") |
           awk '{x = $1 / $2; if (NR == 1 || x < lo) lo = x; if (NR == 1 || x > hi) hi = x} END {printf "%.2f–%.2f×", lo, hi}')
  # shellcheck disable=SC2086
  read -r cm _ _ <<<"$(stat3 ${cpu[$m]})"
  printf '| %s | %.2f s | %.2f–%.2f s | %.2f× | %s | %.1f s |\n' "$(label "$m")" "$med" "$lo" "$hi" \
    "$(awk -v a="$med" -v b="$fm" 'BEGIN{print a/b}')" "$ratios" "$cm"
done
echo
echo "Per task (median over the rounds, seconds, from the task's start to its last host's result):"
echo
echo "| task | ferry | ferry, no pipelining | ssh warm | ssh cold | local | ssh warm / ferry |"
echo "|---|---|---|---|---|---|---|"
# One line per task: name, then each mode's median.
for m in "${MODES[@]}"; do
  cat "$work"/times."$m".* | jq -r --arg m "$m" '.tasks | to_entries[] | [.key, $m, .value.name, .value.s] | @tsv'
done | awk -F'\t' '
  { k = $1; name[k] = $3; v[k, $2] = v[k, $2] " " $4; if (k > last) last = k }
  function med(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    for (k = 0; k <= last; k++) {
      f = med(v[k, "ferry"]); w = med(v[k, "ssh-warm"])
      l = med(v[k, "local"])
      printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f× |\n", name[k], f, med(v[k, "ferry-nopipe"]), w, med(v[k, "ssh-cold"]), l, (f > 0 ? w / f : 0)
      tf += f; tw += w; tn += med(v[k, "ferry-nopipe"]); tc += med(v[k, "ssh-cold"]); tl += l
    }
    printf "| all tasks | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f× |\n", tf, tn, tw, tc, tl, (tf > 0 ? tw / tf : 0)
  }'
