# shellcheck shell=bash
# What benches/compare.sh, benches/fanout.sh and benches/ansible.sh share,
# sourced (not run) from the repository's root; the throwaway sshd is
# benches/sshd.sh, sourced next to it by the scripts that start one.
#
#   . benches/lib.sh
#   log() { echo "$ME: $*" >&2; }          # the caller's: one line to stderr
#   need_commands sshd:openssh-server ss:iproute2
#   install_needed                         # apt-get, as root, what is missing
#   bench_work fanout                      # $work, pids=(), cleanup on exit
#   "$server" & pids+=("$!")               # killed by PID on exit
#   port=$(free_port)
#
# ME is the script's name, the prefix of every message. Every wait is bounded:
# a process gets 5 s to exit after TERM, then KILL.

ME=${0##*/}
need=()

# Adds to need the package of each command that is not on PATH (nor in /usr/sbin).
need_commands() { # command:package...
  local pair
  for pair; do
    PATH=$PATH:/usr/sbin command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
  done
}

# Installs the packages in need with apt-get (root only), or exits.
install_needed() {
  local made_policy=0 ok=1
  [ ${#need[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || { echo "$ME: missing ${need[*]}; run as root to install them" >&2; exit 1; }
  log "installing ${need[*]}"
  # Keep the packages' own services (sshd on :22, redis on :6379) from starting.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || ok=0
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  [ "$ok" = 1 ] || { echo "$ME: could not install ${need[*]}" >&2; exit 1; }
}

# Waits up to 5 s for each process to exit, then kills it.
reap() { # pid...
  local p
  for p; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}

# Stops every process in pids and removes $work.
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  reap "${pids[@]}"
  wait 2>/dev/null || true
  rm -rf "$work"
}

# Makes the work directory /tmp/ferry-NAME.XXXXXX and arms cleanup on exit
# (a caller with more to stop traps EXIT again and calls cleanup last).
bench_work() { # name
  work=$(mktemp -d "/tmp/ferry-$1.XXXXXX")
  pids=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# A port nobody uses (TCP or UDP), below the ephemeral range so no client socket takes it.
free_port() {
  local p
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    ss -Htuan "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  echo "$ME: no free port" >&2; return 1
}
