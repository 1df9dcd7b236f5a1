#!/usr/bin/env bash
# End-to-end install test of the ferry .deb on a clean Debian bookworm system.
#
#   packaging/test-install.sh [DEB]      (as root; DEB defaults to the newest target/debian/ferry_*.deb)
#
# 1. A clean root: `debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm`
#    from the mirror the host's apt uses, built once into $FERRY_CACHE/bookworm-minbase.tar
#    (default /var/cache/ferry-ci; CI may keep that directory between runs) and extracted
#    into a fresh work directory on every run.
# 2. Booted with `systemd-nspawn -b --private-network` (systemd as PID 1, loopback only),
#    driven from the host with nsenter (works without systemd-machined on the host).
# 3. Inside: apt-get install ./ferry_*.deb (offline: its Depends must already be in the
#    root), ferryd enabled, active and READY (Type=notify), `ferry run -- id` runs as user
#    ferry, `ferry run -tt -- tty` gets a terminal inside the sandbox, put/get round
#    trip, reload keeps the PID, restart changes it, the journal has the access lines,
#    apt-get purge leaves nothing behind.
# 4. If the machine cannot boot a container, falls back to installing with dpkg in a chroot
#    (policy-rc.d stops service starts) and running ferryd by hand as user ferry on
#    127.0.0.1, with the same client checks; the output says which mode ran.
#
# Environment: FERRY_CACHE (cache directory), FERRY_MIRROR (Debian mirror URL, default:
# the host's), FERRY_CACHE_REFRESH=1 (rebuild the cached root), FERRY_FORCE_CHROOT=1 (skip
# nspawn), FERRY_KEEP=1 (keep the work directory). Every wait is bounded; a trap stops
# the container and removes the work directory, never the cache.
set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."

SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus
CACHE=${FERRY_CACHE:-/var/cache/ferry-ci}
CACHE_TAR=$CACHE/$SUITE-minbase.tar
BOOT_TIMEOUT=90        # seconds for the container to reach a running systemd
CMD_TIMEOUT=60         # seconds for any one command run inside
INPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- output, timing ---------------------------------------------------------

T0=$(date +%s.%N)
PHASES=()
PHASE='' PHASE_T=''
say() { printf 'install test: %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
phase() { # phase NAME: ends the current phase (recording its time) and starts NAME
  local t; t=$(now)
  if [ -n "$PHASE" ]; then PHASES+=("$(printf '%-28s %6ss' "$PHASE" "$(secs "$PHASE_T" "$t")")"); fi
  PHASE=$1 PHASE_T=$t
  [ -z "$1" ] || say "== $1"
}
timings() {
  phase ""
  say "timings:"
  local p; for p in "${PHASES[@]}"; do printf '  %s\n' "$p"; done
  printf '  %-28s %6ss\n' total "$(secs "$T0" "$(now)")"
}
fail() { say "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root"

# ---- the package --------------------------------------------------------------

DEB=${1:-}
if [ -z "$DEB" ]; then
  DEB=$(find target/debian -maxdepth 1 -name 'ferry_*.deb' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n1 | cut -d' ' -f2-)
  [ -n "$DEB" ] || fail "no target/debian/ferry_*.deb: run packaging/build-deb.sh first, or pass a .deb"
fi
[ -f "$DEB" ] || fail "no such package: $DEB"
DEB=$(readlink -f "$DEB")
DEBNAME=$(basename "$DEB")
say "package $DEB ($(dpkg-deb -f "$DEB" Version), Depends: $(dpkg-deb -f "$DEB" Depends))"

# ---- work directory, cleanup ------------------------------------------------

MACHINE=ferry-ci-$$-$RANDOM
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/ferry-install.XXXXXX")
ROOT=$WORK/root
NSPAWN_PID='' LEADER='' FERRYD_PID=''
MODE=none

unmount_under() { # unmounts everything mounted below $1, deepest first
  local m
  awk -v w="$1/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}
stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true          # nspawn halts the container
    local _; for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NSPAWN_PID" 2>/dev/null; then
      say "container did not halt in 10 s: killing it"
      [ -z "$LEADER" ] || kill -KILL "$LEADER" 2>/dev/null || true
      kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    fi
  fi
  wait "$NSPAWN_PID" 2>/dev/null || true
  NSPAWN_PID='' LEADER=''
  rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
}
exec 3>&1 4>&2   # the script's own output, for the trap (it may run inside a redirected command)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  if [ -n "$FERRYD_PID" ]; then kill -KILL "$FERRYD_PID" 2>/dev/null || true; wait "$FERRYD_PID" 2>/dev/null || true; fi
  stop_container
  unmount_under "$WORK"
  if [ "${FERRY_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf --one-file-system "$WORK"; fi
  if [ $rc -ne 0 ]; then
    timings >&2 || true
    say "FAILED (mode: $MODE, exit $rc)" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- host tools -------------------------------------------------------------

phase "host tools"
need=()
[ -s "$CACHE_TAR" ] && [ "${FERRY_CACHE_REFRESH:-0}" != 1 ] || command -v debootstrap >/dev/null || need+=(debootstrap)
[ "${FERRY_FORCE_CHROOT:-0}" = 1 ] || command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  timeout 300 apt-get update -qq
  timeout 300 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- 1. the clean root, cached --------------------------------------------------

host_mirror() { # the first Debian archive URI in the host's apt sources
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; IGNORECASE = 1 }
      {
        types = uris = suites = ""; on = 1
        n = split($0, ls, "\n")
        for (i = 1; i <= n; i++) {
          if (ls[i] ~ /^Types:/) types = ls[i]
          else if (ls[i] ~ /^URIs:/) { uris = ls[i]; sub(/^URIs:[ \t]*/, "", uris); sub(/[ \t].*/, "", uris) }
          else if (ls[i] ~ /^Suites:/) suites = ls[i]
          else if (ls[i] ~ /^Enabled:[ \t]*no/) on = 0
        }
        if (on && types ~ /[ \t]deb([ \t]|$)/ && uris != "" &&
            suites ~ /[ \t](oldstable|stable|testing|unstable|sid|bullseye|bookworm|trixie|forky)([ \t]|$)/) {
          print uris; exit
        }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
        i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) ~ /^(oldstable|stable|testing|unstable|sid|bullseye|bookworm|trixie|forky)$/) { print $i; exit }
      }' "$f"
  done
}

phase "clean root"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
timeout 600 flock 9 || fail "could not lock $CACHE/.lock in 10 min"
cache_ok() { # the cached archive is whole and holds a root with systemd and apt
  [ -s "$CACHE_TAR" ] && [ "${FERRY_CACHE_REFRESH:-0}" != 1 ] || return 1
  local list
  list=$(tar -tf "$CACHE_TAR" 2>/dev/null) || { say "the cache $CACHE_TAR is unreadable: rebuilding it"; return 1; }
  if ! grep -qx './usr/lib/systemd/systemd' <<<"$list" || ! grep -qx './usr/bin/apt-get' <<<"$list"; then
    say "the cache $CACHE_TAR lacks systemd or apt: rebuilding it"; return 1
  fi
}
if cache_ok; then
  say "clean root: from the cache $CACHE_TAR ($(head -n1 "$CACHE_TAR.info" 2>/dev/null))"
else
  MIRROR=${FERRY_MIRROR:-$(host_mirror | head -n1)}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  say "clean root: not cached, running debootstrap from $MIRROR"
  t=$(now)
  # On a tmpfs when it can: dpkg's fsyncs cost nothing there.
  mkdir -p "$WORK/bootstrap"
  mount -t tmpfs -o mode=0755,size=2g ferry-ci-bootstrap "$WORK/bootstrap" 2>/dev/null || true
  if ! timeout 600 debootstrap --variant=minbase --include=$INCLUDE $SUITE "$WORK/bootstrap" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    fail "debootstrap failed (log above)"
  fi
  unmount_under "$WORK/bootstrap"
  chroot "$WORK/bootstrap" apt-get clean
  rm -f "$WORK/bootstrap/etc/hostname"   # debootstrap copies the host's; systemd then uses the machine name
  # No device nodes in the cache: nspawn makes /dev, the chroot mode binds the host's.
  tar -C "$WORK/bootstrap" --numeric-owner --xattrs --exclude='./dev/*' -cf "$CACHE_TAR.tmp" .
  printf 'debootstrap --variant=minbase --include=%s %s %s, %s\n' "$INCLUDE" "$SUITE" "$MIRROR" "$(date -u +%FT%TZ)" \
    >"$CACHE_TAR.info"
  mv -f "$CACHE_TAR.tmp" "$CACHE_TAR"
  unmount_under "$WORK"
  rm -rf --one-file-system "$WORK/bootstrap"
  say "clean root: built and cached in $(secs "$t" "$(now)") s ($(du -h "$CACHE_TAR" | cut -f1) in $CACHE_TAR)"
fi
exec 9>&-

fresh_root() { # a fresh copy of the cached root at $ROOT (on a tmpfs when it can), the package in /ferry-test
  local t where=tmpfs; t=$(now)
  unmount_under "$WORK"
  rm -rf --one-file-system "$ROOT"
  mkdir -p "$ROOT"
  # tmpfs: about 300 MB of memory, and no 200 MB of disk writes to wait for on a busy CI disk.
  mount -t tmpfs -o mode=0755,size=2g ferry-ci-root "$ROOT" 2>/dev/null || where=disk
  tar -C "$ROOT" --numeric-owner --xattrs -xpf "$CACHE_TAR"
  install -d -m 0755 "$ROOT/ferry-test"
  install -m 0644 "$DEB" "$ROOT/ferry-test/$DEBNAME"
  say "copied the cached root to $ROOT ($where) in $(secs "$t" "$(now)") s"
}
fresh_root

# ---- 2. boot it ---------------------------------------------------------------

# ct [-t SECS] CMD...: CMD inside the system under test, as root, clean environment, bounded.
ct() {
  local t=$CMD_TIMEOUT
  if [ "$1" = -t ]; then t=$2; shift 2; fi
  local envv=(env -i "PATH=$INPATH" HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive)
  if [ "$MODE" = nspawn ]; then
    timeout -k 5 "$t" nsenter -t "$LEADER" -a -- "${envv[@]}" "$@"
  else
    timeout -k 5 "$t" chroot "$ROOT" "${envv[@]}" "$@"
  fi
}

find_leader() { # the container's PID 1, seen from the host: nspawn's child whose innermost pid is 1
  local c
  for c in $(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null) $(pgrep -P "$NSPAWN_PID" 2>/dev/null); do
    if awk 'BEGIN { r = 1 } /^NSpid:/ { r = !(NF >= 3 && $NF == 1) } END { exit r }' /proc/"$c"/status 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

boot_container() { # boots $ROOT; on failure sets WHY and returns 1
  WHY=
  if ! command -v systemd-nspawn >/dev/null; then WHY="systemd-nspawn is not installed"; return 1; fi
  if ! unshare --pid --mount --net --uts --ipc --fork true 2>/dev/null; then
    WHY="the kernel refuses new namespaces (unshare --pid --mount --net --uts --ipc failed)"; return 1
  fi
  local opts=(-q -b --private-network -D "$ROOT" -M "$MACHINE" --register=no --console=passive)
  # Without systemd on the host there is no bus to allocate a scope: stay in our own cgroup.
  [ -d /run/systemd/system ] || opts+=(--keep-unit)
  say "booting: systemd-nspawn ${opts[*]}"
  MODE=nspawn
  systemd-nspawn "${opts[@]}" </dev/null >"$WORK/boot.log" 2>&1 &
  NSPAWN_PID=$!
  local deadline=$((SECONDS + BOOT_TIMEOUT)) state
  until LEADER=$(find_leader); do
    if ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
      WHY="systemd-nspawn exited at once: $(grep -v '^$' "$WORK/boot.log" | tail -n 3 | tr '\n' ' ')"; return 1
    fi
    [ $SECONDS -lt $deadline ] || { WHY="no container PID 1 after ${BOOT_TIMEOUT}s"; return 1; }
    sleep 0.1
  done
  until ct -t 5 test -S /run/systemd/private 2>/dev/null; do
    if ! kill -0 "$NSPAWN_PID" 2>/dev/null; then
      WHY="the container stopped while booting: $(grep -v '^$' "$WORK/boot.log" | tail -n 3 | tr '\n' ' ')"; return 1
    fi
    [ $SECONDS -lt $deadline ] || { WHY="systemd in the container never opened its socket in ${BOOT_TIMEOUT}s"; return 1; }
    sleep 0.2
  done
  local left=$((deadline - SECONDS)); [ $left -gt 1 ] || left=1
  state=$(ct -t "$left" systemctl is-system-running --wait 2>/dev/null) || true
  case $state in
    running) ;;
    degraded)
      say "warning: the container booted degraded; failed units:"
      ct systemctl --failed --no-legend --no-pager || true ;;
    *) WHY="the container's systemd is '${state:-no answer}' after ${BOOT_TIMEOUT}s"; return 1 ;;
  esac
  local nics
  # shellcheck disable=SC2016 # awk's own variables
  nics=$(ct awk 'NR > 2 { sub(/:.*/, ""); printf "%s%s", sep, $1; sep = " " }' /proc/net/dev)
  [ "$nics" = lo ] || { WHY="the container has network interfaces other than lo: $nics"; return 1; }
  say "container $MACHINE is up: systemd $state, PID 1 is host pid $LEADER, network: lo only"
}

phase "boot container"
if [ "${FERRY_FORCE_CHROOT:-0}" = 1 ]; then
  WHY="FERRY_FORCE_CHROOT=1"
  MODE=chroot
elif boot_container; then
  say "ran under systemd-nspawn"
else
  tail -n 20 "$WORK/boot.log" 2>/dev/null >&2 || true
  stop_container
  MODE=chroot
  fresh_root
fi
[ "$MODE" = nspawn ] || say "FELL BACK to chroot because $WHY"

# ---- 3. the checks ------------------------------------------------------------

expect() { # expect WHAT GOT WANT
  [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
  say "ok: $1 = $2"
}
ADDR=127.0.0.1
fy() { ct ferry -k /etc/ferry/keys -w 10 "$@"; }   # the client, inside, with the package's keys
mainpid() { ct systemctl show -p MainPID --value ferryd; }
ferryd_procs() { # pids of processes named ferryd in the system under test
  if [ "$MODE" = nspawn ]; then
    # shellcheck disable=SC2016 # expanded by the shell inside
    ct sh -c 'for f in /proc/[0-9]*/comm; do { read -r c <"$f"; } 2>/dev/null && [ "$c" = ferryd ] && { p=${f%/comm}; echo "${p#/proc/}"; }; done; true'
  else # host pids of the ferryd processes whose root is the chroot
    local f c p
    for f in /proc/[0-9]*/comm; do
      if ! { read -r c <"$f"; } 2>/dev/null || [ "$c" != ferryd ]; then continue; fi
      p=${f%/comm}
      [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ] && echo "${p#/proc/}"
    done
    true
  fi
}

client_checks() { # id as ferry, put/get round trip
  local uid out
  uid=$(ct id -u ferry) || fail "no user ferry after install"
  out=$(fy run "$ADDR" -- id) || fail "ferry run $ADDR -- id failed: $out"
  say "ferry run -- id: $out"
  case $out in "uid=$uid(ferry) "*) say "ok: the command ran as user ferry (uid $uid)" ;;
    *) fail "ferry run -- id: want uid=$uid(ferry), got: $out" ;; esac
  if [ "$MODE" = nspawn ]; then
    # A command on a terminal (ferry run -tt): the unit's sandbox (PrivateDevices)
    # keeps the pseudo-terminals. (The chroot fallback binds /dev without /dev/pts.)
    out=$(fy run -tt "$ADDR" -- tty </dev/null) || fail "ferry run -tt $ADDR -- tty failed: $out"
    out=${out%$'\r'}
    case $out in /dev/pts/*) say "ok: ferry run -tt -- tty: $out" ;;
      *) fail "ferry run -tt -- tty: want /dev/pts/N, got: $out" ;; esac
  fi
  ct sh -c 'head -c 3000017 /dev/urandom >/root/ferry-test.bin'
  fy put "$ADDR" /root/ferry-test.bin ferry-test.bin || fail "ferry put failed"
  fy get "$ADDR" ferry-test.bin /root/ferry-test.back || fail "ferry get failed"
  ct cmp /root/ferry-test.bin /root/ferry-test.back || fail "get returned other bytes than put sent"
  expect "owner of the uploaded file in /var/lib/ferry" "$(ct stat -c %U /var/lib/ferry/ferry-test.bin)" ferry
  say "ok: put/get round trip of 3000017 bytes, identical"
}

access_checks() { # access_checks LOGCMD...: the log has access lines for exec, put and get
  local log op
  for _ in $(seq 25); do   # the journal may lag behind the request by a little
    log=$("$@" 2>/dev/null | grep 'access: ' || true)
    if grep -q ' exec ' <<<"$log" && grep -q ' put ' <<<"$log" && grep -q ' get ' <<<"$log"; then break; fi
    sleep 0.2
  done
  [ -n "$log" ] || fail "no access: lines in the log"
  say "access lines ($(wc -l <<<"$log")):"; printf '    %s\n' "${log//$'\n'/$'\n'    }"
  for op in exec put get; do grep -q " $op " <<<"$log" || fail "no access line for $op"; done
  say "ok: access lines for exec, put and get"
}

gone_checks() { # after purge
  local f
  for f in /usr/sbin/ferryd /usr/bin/ferry /etc/ferry /lib/systemd/system/ferryd.service \
      /etc/systemd/system/multi-user.target.wants/ferryd.service /var/lib/ferry; do
    if ct test -e "$f" || ct test -L "$f"; then fail "$f is still there after purge"; fi
  done
  say "ok: no ferryd, ferry, /etc/ferry, unit file, enablement link or /var/lib/ferry after purge"
  ct dpkg-query -W -f="\${db:Status-Abbrev}\\n" ferry 2>/dev/null | grep -q '^ii' && fail "dpkg still lists ferry as installed"
  [ -z "$(ferryd_procs)" ] || fail "a ferryd process is still running after purge: $(ferryd_procs)"
  say "ok: no ferryd process left"
  if ct getent passwd ferry >/dev/null; then say "note: user ferry is kept after purge"; else say "note: user ferry removed by purge"; fi
}

if [ "$MODE" = nspawn ]; then
  phase "install (apt-get)"
  ct -t 180 apt-get install -y "/ferry-test/$DEBNAME" >"$WORK/apt.log" 2>&1 || {
    cat "$WORK/apt.log" >&2
    fail "apt-get install failed offline: every Depends must be in the minbase root (see above)"; }
  grep -E '^(Setting up|Created symlink)' "$WORK/apt.log" | sed 's/^/    /' || true

  phase "service up"
  expect "systemctl is-enabled ferryd" "$(ct systemctl is-enabled ferryd 2>&1 || true)" enabled
  for _ in $(seq 50); do [ "$(ct systemctl is-active ferryd 2>&1 || true)" = active ] && break; sleep 0.2; done
  expect "systemctl is-active ferryd" "$(ct systemctl is-active ferryd 2>&1 || true)" active
  show=$(ct systemctl show -p Type -p ActiveState -p SubState -p StatusText -p MainPID -p User ferryd)
  say "systemctl show: $(tr '\n' ' ' <<<"$show")"
  expect "Type" "$(sed -n 's/^Type=//p' <<<"$show")" notify
  expect "ActiveState" "$(sed -n 's/^ActiveState=//p' <<<"$show")" active
  expect "SubState" "$(sed -n 's/^SubState=//p' <<<"$show")" running
  expect "User" "$(sed -n 's/^User=//p' <<<"$show")" ferry
  ct systemctl status --no-pager --lines=5 ferryd | sed 's/^/    /' || true
  expect "keys file mode and owner" "$(ct stat -c '%a %U' /etc/ferry/keys)" "600 ferry"
  ct grep -q '^default[[:space:]]' /etc/ferry/keys || fail "/etc/ferry/keys has no key named default"

  phase "client checks"
  client_checks

  phase "reload, restart"
  pid=$(mainpid); [ "${pid:-0}" -gt 0 ] || fail "no MainPID before reload"
  ct systemctl reload ferryd || fail "systemctl reload ferryd failed"
  hup=
  for _ in $(seq 25); do hup=$(ct journalctl -u ferryd --no-pager -o cat | grep 'HUP' || true); [ -z "$hup" ] || break; sleep 0.2; done
  [ -n "$hup" ] || fail "no HUP line in the journal after systemctl reload: the reload did not reach ferryd"
  say "ok: reload reached ferryd: $hup"
  fy ping -c 1 "$ADDR" >/dev/null || fail "ferry ping after reload failed"
  expect "MainPID after reload" "$(mainpid)" "$pid"
  expect "is-active after reload" "$(ct systemctl is-active ferryd 2>&1 || true)" active
  ct systemctl restart ferryd || fail "systemctl restart ferryd failed"
  pid2=$(mainpid)
  if [ "${pid2:-0}" -le 0 ] || [ "$pid2" = "$pid" ]; then fail "MainPID after restart: got '$pid2', want a new one (was $pid)"; fi
  say "ok: MainPID after restart = $pid2 (was $pid)"
  fy ping -c 1 "$ADDR" >/dev/null || fail "ferry ping after restart failed"
  say "ok: serving after reload and after restart"
  access_checks ct journalctl -u ferryd --no-pager -o cat

  phase "purge"
  ct -t 120 apt-get purge -y ferry >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "apt-get purge failed"; }
  expect "LoadState after purge" "$(ct systemctl show -p LoadState --value ferryd)" not-found
  st=$(ct systemctl is-active ferryd 2>&1 || true)
  case $st in active | activating | reloading) fail "ferryd is $st after purge" ;; esac
  say "ok: ferryd is $st after purge"
  gone_checks
else
  phase "install (dpkg, chroot)"
  mount -t proc proc "$ROOT/proc"
  mount --bind /dev "$ROOT/dev"
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  ct -t 180 dpkg -i "/ferry-test/$DEBNAME" >"$WORK/apt.log" 2>&1 || {
    cat "$WORK/apt.log" >&2; fail "dpkg -i failed in the chroot: every Depends must be in the minbase root"; }
  expect "systemctl is-enabled ferryd (offline)" "$(ct systemctl is-enabled ferryd 2>&1 || true)" enabled
  expect "keys file mode and owner" "$(ct stat -c '%a %U' /etc/ferry/keys)" "600 ferry"
  ct grep -q '^default[[:space:]]' /etc/ferry/keys || fail "/etc/ferry/keys has no key named default"

  # The unit's command line, run by hand as user ferry in the state directory, on a free loopback port.
  unit=$ROOT/lib/systemd/system/ferryd.service
  [ -f "$unit" ] || fail "no /lib/systemd/system/ferryd.service in the package"
  exec_start=$(sed -n 's/^ExecStart=[-@+!:]*//p' "$unit" | head -n1)
  [ -n "$exec_start" ] || fail "no ExecStart in the unit"
  workdir=$(sed -n 's/^WorkingDirectory=-\{0,1\}//p' "$unit" | tail -n1)
  workdir=${workdir:-/var/lib/ferry}
  read -r -a unit_env <<<"$(sed -n 's/^Environment=//p' "$unit" | tr -d '"' | tr '\n' ' ')"
  touch "$WORK/ferryd.log"
  start_ferryd() { # chroot, env and sh exec in turn: $! is ferryd itself (the trap kills it)
    local skip; skip=$(wc -l <"$WORK/ferryd.log")
    chroot --userspec=ferry:ferry "$ROOT" env -i "PATH=$INPATH" HOME=/var/lib/ferry LANG=C.UTF-8 \
      "${unit_env[@]}" sh -c "cd $workdir && exec $exec_start --listen 127.0.0.1:0" 2>>"$WORK/ferryd.log" &
    FERRYD_PID=$!
    ADDR=
    for _ in $(seq 100); do
      ADDR=$(tail -n +$((skip + 1)) "$WORK/ferryd.log" | sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' | head -n1)
      [ -z "$ADDR" ] || break
      kill -0 "$FERRYD_PID" 2>/dev/null || { cat "$WORK/ferryd.log" >&2; fail "ferryd exited at start"; }
      sleep 0.1
    done
    [ -n "$ADDR" ] || { cat "$WORK/ferryd.log" >&2; fail "ferryd did not say 'listening on' in 10 s"; }
    say "ferryd by hand as user ferry in $workdir, ${unit_env[*]}: $exec_start --listen 127.0.0.1:0 -> $ADDR"
  }
  phase "service up (by hand)"
  start_ferryd

  phase "client checks"
  client_checks

  stop_ferryd() { # TERM, then a bounded wait for the exit
    kill -TERM "$FERRYD_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$FERRYD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$FERRYD_PID" 2>/dev/null && fail "ferryd did not exit within 10 s of TERM"
    wait "$FERRYD_PID" 2>/dev/null || true
    FERRYD_PID=
  }
  phase "reload, restart"
  dpid=$FERRYD_PID
  expect "the ferryd running as user ferry in the chroot" "$(ferryd_procs | tr '\n' ' ')" "$dpid "
  expect "its uid (user ferry's in the chroot)" "$(stat -c %u /proc/"$dpid")" "$(ct id -u ferry)"
  kill -HUP "$dpid"
  for _ in $(seq 50); do grep -q 'HUP' "$WORK/ferryd.log" && break; sleep 0.1; done
  grep -q 'HUP' "$WORK/ferryd.log" || fail "ferryd logged no HUP line after kill -HUP"
  say "ok: reload reached ferryd: $(grep 'HUP' "$WORK/ferryd.log" | tail -n1)"
  fy ping -c 1 "$ADDR" >/dev/null || fail "ferry ping after HUP failed"
  expect "ferryd pid after HUP" "$(ferryd_procs | tr '\n' ' ')" "$dpid "
  stop_ferryd
  start_ferryd
  dpid2=$FERRYD_PID
  [ "$dpid2" != "$dpid" ] || fail "no new ferryd after restart"
  expect "the ferryd running after restart" "$(ferryd_procs | tr '\n' ' ')" "$dpid2 "
  fy ping -c 1 "$ADDR" >/dev/null || fail "ferry ping after restart failed"
  say "ok: serving after HUP (same pid $dpid) and after restart (pid $dpid2)"
  stop_ferryd
  access_checks cat "$WORK/ferryd.log"

  phase "purge"
  ct -t 120 dpkg --purge ferry >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "dpkg --purge failed"; }
  gone_checks
fi

timings
say "PASS (mode: $MODE$([ "$MODE" = nspawn ] || echo ", FELL BACK: $WHY"))"
