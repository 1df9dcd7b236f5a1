# shellcheck shell=bash
# Throwaway sshd processes for the benchmarks, sourced (not run) by
# benches/compare.sh, benches/fanout.sh and benches/ansible.sh, after
# benches/lib.sh has installed openssh-server if it was missing:
#
#   . benches/sshd.sh
#   sshd_keys "$work/ssh"                  # host key, root key, authorized_keys, empty HOME
#   sshd_start 7932 127.0.0.1 127.0.0.2    # one sshd per 16 addresses, all on port 7932
#   ssh "${SSH_OPTS[@]}" -p 7932 root@127.0.0.2 true
#
# Everything is generated at run time in the given directory: an ed25519 host
# key, an ed25519 client key for root (authorized only there), a config that
# listens on the given loopback addresses only, public keys only, no PAM, no
# DNS, no pidfile, MaxStartups and MaxSessions high enough for a fan-out, and
# HOME set to an empty directory so that root's own shell start-up files (on
# some machines seconds of pyenv or conda) are not counted against ssh.
# OpenSSH listens on at most 16 ListenAddress per process, hence several.
# The caller owns the `pids` array (every sshd's PID is appended to it) and
# kills them on exit; every wait here is bounded.
#
# Sets SSHD (the binary), SSH_DIR, SSH_KEY and SSH_OPTS (the client options:
# no config file, that key only, batch mode, no host key checks, quiet).

SSHD=${SSHD:-$(PATH=$PATH:/usr/sbin command -v sshd || true)}
SSHD_PER=16

sshd_keys() { # dir
  SSH_DIR=$1
  mkdir -p "$SSH_DIR/home" /run/sshd
  chmod 755 /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/id_ed25519"
  cp "$SSH_DIR/id_ed25519.pub" "$SSH_DIR/authorized_keys"
  SSH_KEY=$SSH_DIR/id_ed25519
  # shellcheck disable=SC2034 # for the caller
  SSH_OPTS=(-F /dev/null -i "$SSH_KEY" -o IdentitiesOnly=yes -o BatchMode=yes
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
}

# Waits (bounded) until something listens on ADDR:PORT.
sshd_wait() { # addr port
  local _
  for _ in $(seq 200); do
    ss -Hltn "src $1 and sport = :$2" | grep -q . && return 0
    sleep 0.05
  done
  echo "sshd.sh: nothing listens on $1:$2" >&2
  return 1
}

sshd_start() { # port addr...
  local port=$1 n=0 conf a
  shift
  [ -n "$SSHD" ] || { echo "sshd.sh: no sshd (Debian: openssh-server)" >&2; return 1; }
  [ -n "${SSH_DIR:-}" ] || { echo "sshd.sh: sshd_keys first" >&2; return 1; }
  while [ $# -gt 0 ]; do
    n=$((n + 1))
    conf=$SSH_DIR/sshd_config.$port.$n
    {
      echo "Port $port"
      for a in "${@:1:$SSHD_PER}"; do echo "ListenAddress $a"; done
      cat <<EOF
HostKey $SSH_DIR/host_ed25519
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile none
LogLevel ERROR
MaxStartups 4096
MaxSessions 256
Subsystem sftp internal-sftp
SetEnv HOME=$SSH_DIR/home
EOF
    } > "$conf"
    "$SSHD" -D -e -f "$conf" 2> "$SSH_DIR/sshd.$port.$n.log" &
    pids+=("$!")
    for a in "${@:1:$SSHD_PER}"; do
      sshd_wait "$a" "$port" || { cat "$SSH_DIR/sshd.$port.$n.log" >&2; return 1; }
    done
    shift $(($# < SSHD_PER ? $# : SSHD_PER))
  done
}
