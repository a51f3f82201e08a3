#!/usr/bin/env bash
# The Docker engines the test suite runs against:
#   20  the system dockerd (Debian 12's docker.io 20.10), default socket, host network namespace
#   28  Docker 28 from Debian unstable, run SIDE BY SIDE with 20 (20 is never stopped for it)
#
#   engine.sh fetch 28              download docker.io + docker-compose from Debian unstable into
#                                   /var/cache/pynet/engines/docker28 (skipped when present and runnable)
#   engine.sh start 20|28 [FLAGS]   start the engine (extra dockerd FLAGS, e.g. --live-restore)
#   engine.sh stop 20|28            stop its dockerd (its containers stop too, unless --live-restore)
#   engine.sh restart 20|28 [FLAGS] stop, start with FLAGS; no FLAGS = back to normal. If it does not
#                                   come up with FLAGS, it is started normally again and this fails.
#   engine.sh status 20|28          version, pid, flags; exit 0 only when `docker info` answers
#   engine.sh env 20|28             shell lines: DOCKER_HOST, PYNET_ENGINE (eval "$(engine.sh env 28)")
#   engine.sh exec 20|28 CMD...     run CMD with the engine's DOCKER_HOST, in the engine's netns
#   engine.sh down 28               stop, and remove its network namespace, uplink and host rules
#   engine.sh compose               path of the docker-compose 2.x binary (fetches 28 if needed)
#
# Why Docker 28 lives in its own network namespace (pynet-engine28), not next to 20.10 in the
# host's: every dockerd removes and recreates the iptables chains DOCKER (nat and filter) and
# DOCKER-ISOLATION-STAGE-1/2 when it starts (moby: removeIPChains), and Docker 28 also deletes
# FORWARD's jump to DOCKER-ISOLATION-STAGE-1 (its 28.0 migration). Two engines in one namespace
# therefore wipe each other's published-port DNAT and isolation rules on every (re)start, and the
# suite restarts engines. In its own namespace Docker 28 has its own firewall, docker0 (172.17/16,
# its defaults), default address pools and DOCKER-USER, as on a host of its own. Only the network
# namespace is separate: mounts, PIDs and cgroups are the host's, so the netns files Docker makes
# for containers (SandboxKey) are visible to pynet, and `docker -H unix:///run/pynet-engine/...`
# works from anywhere. Tests for 28 run in that namespace too (tests/engine.py enters it).
# The namespace has an uplink veth to the host (eth0 inside, masqueraded by the host), so that
# image builds inside it (the managed plugin's) reach the Debian and PyPI registries.
#
# Docker 28's dockerd runs as `dockerd28` (a renamed copy): `pgrep -x dockerd` keeps meaning the
# system dockerd for every script that uses it.
set -euo pipefail
# The uplink, the host's rules and the dockerds belong to the host's network namespace: start, stop,
# restart and down refuse to run inside Docker 28's (tests/engine.py calls them from the host's).
case "${1:-}" in
  start|stop|restart|down)
    if [ -e /run/netns/pynet-engine28 ] \
        && [ "$(stat -L -c %i /proc/self/ns/net)" = "$(stat -L -c %i /run/netns/pynet-engine28)" ]; then
      echo "engine.sh $1: run from the host's network namespace, not from Docker 28's (pynet-engine28)" >&2
      exit 1
    fi ;;
esac
cd "$(dirname "$0")/.."
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
DOCKER=/usr/bin/docker
CACHE=/var/cache/pynet/engines
RUN=/run/pynet-engine
LOCK=/run/lock/pynet-engine.lock

# Docker 28 (side by side)
D28=$CACHE/docker28
NS28=pynet-engine28
SOCK28=$RUN/docker28.sock
PID28=$RUN/docker28.pid
FLAGS28=$RUN/docker28.flags     # the extra flags it was started with (empty: normal)
LOG28=/var/log/pynet-engine-docker28.log
ROOT28=/var/lib/pynet-engine/docker28
EXEC28=$RUN/docker28
# Uplink: a /30 no test uses. Host side pyeng28 (not pn-*: pynet's DOCKER-USER accepts match pn-*).
UP_HOST=pyeng28 UP_NS=eth0 UP_NET=100.64.28.0/30 UP_HOST_IP=100.64.28.1 UP_NS_IP=100.64.28.2
UP_TABLE=pynet_engine28          # host nft table: masquerade for the uplink
UP_COMMENT=pynet-engine28        # comment on the host's DOCKER-USER accepts for the uplink

# Docker 20.10 (the system's)
PID20=/var/run/docker.pid
LOG20=/var/log/pynet-dockerd.log   # where scripts/dockerd.sh has always logged

log() { echo "engine.sh: $*" >&2; }
die() { log "$*"; exit 1; }

need_engine() {
  case "${1:-}" in
    20|28) ;;
    *) die "engine must be 20 (system Docker 20.10) or 28 (Docker 28 from Debian unstable), got '${1:-}'" ;;
  esac
}

sock_of() { if [ "$1" = 28 ]; then echo "$SOCK28"; else echo /var/run/docker.sock; fi; }
dk() { local e=$1; shift; DOCKER_HOST="unix://$(sock_of "$e")" "$DOCKER" "$@"; }
answers() { dk "$1" info >/dev/null 2>&1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ------------------------------------------------------------------ fetch (Debian unstable)

# The machine's own mirror of the Debian archive, as apt reports it (never written in the repo).
apt_mirror() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(TARGET_OF)' 'Created-By: Packages' \
    2>/dev/null | awk '$3 == "main" && $4 == "deb" && $2 !~ /-(security|updates|backports)$/ && $1 ~ /\/debian\/?$/ \
    && !m { m = $1 } END { print m }'
}

runnable28() {
  [ -x "$D28/dockerd28" ] && [ -x "$D28/docker-proxy" ] && [ -x "$D28/docker-compose" ] \
    && "$D28/dockerd28" --version >/dev/null 2>&1 && "$D28/docker-compose" version >/dev/null 2>&1
}

cmd_fetch() {
  [ "${1:-}" = 28 ] || die "fetch: only 28 is downloaded (20 is the system's docker.io package)"
  if runnable28; then
    log "present: $(cat "$D28/VERSION" 2>/dev/null | tr '\n' ' ')($D28)"
    return 0
  fi
  local mirror work
  mirror=$(apt_mirror)
  [ -n "$mirror" ] || die "fetch 28: no Debian mirror in this machine's apt configuration (apt-get indextargets)"
  work=$(mktemp -d /var/tmp/pynet-engine-fetch.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb" "$work/x"
  echo "deb $mirror sid main" >"$work/sid.list"
  # A private source list, lists and package cache: the system's apt configuration and state stay
  # exactly as they were (no sid entry ever reaches /etc/apt or /var/lib/apt).
  local -a o=(-o "Dir::Etc::sourcelist=$work/sid.list" -o Dir::Etc::sourceparts=/nonexistent
              -o "Dir::State::lists=$work/lists" -o "Dir::Cache=$work/cache")
  log "fetch 28: Debian unstable from $mirror"
  apt-get "${o[@]}" -qq update >"$work/update.log" 2>&1 \
    || { cat "$work/update.log" >&2; die "fetch 28: apt-get update of Debian unstable failed"; }
  # Whatever version unstable has today (it moves: a pinned version vanishes when replaced).
  (cd "$work/deb" && apt-get "${o[@]}" -qq download docker.io docker-compose) >"$work/dl.log" 2>&1 \
    || { cat "$work/dl.log" >&2; die "fetch 28: apt-get download docker.io docker-compose from Debian unstable failed"; }
  local v_engine v_compose
  v_engine=$(dpkg-deb -f "$work"/deb/docker.io_*.deb Version)
  v_compose=$(dpkg-deb -f "$work"/deb/docker-compose_*.deb Version)
  log "fetch 28: docker.io $v_engine, docker-compose $v_compose"
  for deb in "$work"/deb/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
  local new=$D28.new
  rm -rf "$new" && mkdir -p "$new"
  # Only these three: the package's own runc/tini need a newer glibc than Debian 12's; Debian 12's
  # containerd 1.6 and runc 1.1 serve Docker 28 (measured, shared/docs/testing.md).
  cp "$work/x/usr/sbin/dockerd" "$new/dockerd28"
  cp "$work/x/usr/sbin/docker-proxy" "$new/docker-proxy"
  cp "$work/x/usr/libexec/docker/cli-plugins/docker-compose" "$new/docker-compose"
  printf 'docker.io %s\ndocker-compose %s\n' "$v_engine" "$v_compose" >"$new/VERSION"
  "$new/dockerd28" --version >/dev/null 2>&1 \
    || die "fetch 28: the downloaded dockerd ($v_engine) does not run here: $("$new/dockerd28" --version 2>&1 | tail -3)"
  "$new/docker-compose" version >/dev/null 2>&1 \
    || die "fetch 28: the downloaded docker-compose ($v_compose) does not run here: $("$new/docker-compose" version 2>&1 | tail -3)"
  rm -rf "$D28" && mv "$new" "$D28"
  log "fetch 28: $("$D28/dockerd28" --version); $("$D28/docker-compose" version) in $D28"
  # Compose against the system engine too (the suite's compose tests run on both engines).
  if DOCKER_HOST=unix:///var/run/docker.sock "$D28/docker-compose" ls >/dev/null 2>&1; then
    log "fetch 28: docker-compose also drives the system engine ($(dk 20 version -f '{{.Server.Version}}' 2>/dev/null))"
  else
    log "fetch 28: note: docker-compose cannot talk to the system engine: $(DOCKER_HOST=unix:///var/run/docker.sock "$D28/docker-compose" ls 2>&1 | tail -1)"
  fi
}

# ------------------------------------------------------------------ Docker 28's namespace

in_ns28() { nsenter --net="/run/netns/$NS28" -- "$@"; }

# The namespace, its uplink and the host's rules for it; idempotent, repairs what is missing.
ns28_up() {
  if [ ! -e "/run/netns/$NS28" ]; then
    ip netns add "$NS28"
    # Forwarding off, as on a fresh host: Docker then turns it on itself and, because it did,
    # sets the FORWARD policy to DROP (what every Docker host has and pynet must live with).
    in_ns28 sysctl -qw net.ipv4.ip_forward=0
  fi
  in_ns28 ip link set lo up
  if ! ip link show "$UP_HOST" >/dev/null 2>&1; then
    ip link add "$UP_HOST" type veth peer name pyeng28n netns "$NS28"
    in_ns28 ip link set pyeng28n name "$UP_NS"
  fi
  ip addr replace "$UP_HOST_IP/30" dev "$UP_HOST"
  ip link set "$UP_HOST" up
  in_ns28 ip addr replace "$UP_NS_IP/30" dev "$UP_NS"
  in_ns28 ip link set "$UP_NS" up
  in_ns28 ip route replace default via "$UP_HOST_IP" dev "$UP_NS"
  # The host forwards and masquerades the namespace's own traffic out (registries). Docker's
  # FORWARD policy is DROP and a drop in `ip filter` is final, so the accepts go in DOCKER-USER,
  # where Docker wants third parties' rules and keeps them across its restarts.
  sysctl -qw net.ipv4.ip_forward=1
  if iptables -t filter -n -L DOCKER-USER >/dev/null 2>&1; then
    iptables -C DOCKER-USER -i "$UP_HOST" -m comment --comment "$UP_COMMENT" -j ACCEPT 2>/dev/null \
      || iptables -I DOCKER-USER -i "$UP_HOST" -m comment --comment "$UP_COMMENT" -j ACCEPT
    iptables -C DOCKER-USER -o "$UP_HOST" -m conntrack --ctstate RELATED,ESTABLISHED \
        -m comment --comment "$UP_COMMENT" -j ACCEPT 2>/dev/null \
      || iptables -I DOCKER-USER -o "$UP_HOST" -m conntrack --ctstate RELATED,ESTABLISHED \
        -m comment --comment "$UP_COMMENT" -j ACCEPT
  fi
  if ! nft list table ip "$UP_TABLE" >/dev/null 2>&1; then
    nft -f - <<EOF
table ip $UP_TABLE {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $UP_NET oifname != "$UP_HOST" masquerade
  }
}
EOF
  fi
}

ns28_down() {
  ip link del "$UP_HOST" 2>/dev/null || true
  nft delete table ip "$UP_TABLE" 2>/dev/null || true
  while iptables -D DOCKER-USER -i "$UP_HOST" -m comment --comment "$UP_COMMENT" -j ACCEPT 2>/dev/null; do :; done
  while iptables -D DOCKER-USER -o "$UP_HOST" -m conntrack --ctstate RELATED,ESTABLISHED \
      -m comment --comment "$UP_COMMENT" -j ACCEPT 2>/dev/null; do :; done
  ip netns del "$NS28" 2>/dev/null || true
}

# ------------------------------------------------------------------ start / stop

pid_of() {
  local f
  if [ "$1" = 28 ]; then f=$PID28; else f=$PID20; fi
  local pid
  pid=$(cat "$f" 2>/dev/null || true)
  if alive "$pid"; then echo "$pid"; return 0; fi
  if [ "$1" = 20 ]; then
    # No pidfile (started some other way): the process named exactly dockerd (Docker 28's is dockerd28).
    pid=$(pgrep -x -o dockerd || true)
    if alive "$pid"; then echo "$pid"; return 0; fi
  fi
  return 1
}

systemd_docker() {
  command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1 \
    && systemctl is-active --quiet docker 2>/dev/null
}

wait_up() {  # wait_up ENGINE LOG [PID of the dockerd just started: give up at once when it exits]
  local e=$1 logf=$2 pid=${3:-}
  for _ in $(seq 120); do
    answers "$e" && return 0
    if [ -n "$pid" ] && ! alive "$pid"; then
      log "Docker $e exited at start; last lines of $logf:"
      tail -5 "$logf" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "Docker $e did not answer on $(sock_of "$e") within 60 s; last lines of $logf:"
  tail -20 "$logf" >&2 || true
  return 1
}

start20() {
  if answers 20; then
    [ $# -eq 0 ] || die "start 20: already running; use restart 20 $* to change its flags"
    return 0
  fi
  if [ $# -eq 0 ] && command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker || true
  fi
  local started=""
  if ! answers 20 && ! pid_of 20 >/dev/null; then
    mkdir -p /var/log
    # As scripts/dockerd.sh always has: plain /usr/sbin/dockerd, default socket and pidfile.
    nohup /usr/sbin/dockerd "$@" >>"$LOG20" 2>&1 </dev/null 9>&- &
    started=$!
  fi
  wait_up 20 "$LOG20" "$started"
}

start28() {
  runnable28 || die "start 28: Docker 28 is not in $D28: run scripts/engine.sh fetch 28 (make test does)"
  mkdir -p "$RUN" "$ROOT28" "$EXEC28"
  ns28_up
  local pid
  if pid=$(pid_of 28); then
    if [ "$(cat "$FLAGS28" 2>/dev/null)" = "$*" ] && wait_up 28 "$LOG28"; then return 0; fi
    die "start 28: already running (pid $pid, flags '$(cat "$FLAGS28" 2>/dev/null)'); use restart 28 $*"
  fi
  # Containers' netns files (SandboxKey) go under $EXEC28/netns. Make it a shared mount, so that a
  # test run with a mount namespace of its own (tests/engine.py: its /sys shows this netns) still
  # sees the netns files dockerd makes later.
  mkdir -p "$EXEC28/netns"
  if [ "$(findmnt -n -o PROPAGATION --mountpoint "$EXEC28/netns" 2>/dev/null)" != shared ]; then
    findmnt -n --mountpoint "$EXEC28/netns" >/dev/null 2>&1 || mount --bind "$EXEC28/netns" "$EXEC28/netns"
    mount --make-shared "$EXEC28/netns"
  fi
  printf '%s' "$*" >"$FLAGS28"
  # Its own socket, data root, exec root (its containerd lives there), pidfile, containerd
  # namespaces and cgroup parent: nothing is shared with the system dockerd but the kernel, the
  # images' busybox and /run/docker/plugins (legacy plugin sockets: pynet's test daemon serves both).
  echo "=== $(date -Is) start $("$D28/dockerd28" --version) flags: $*" >>"$LOG28"
  nohup nsenter --net="/run/netns/$NS28" -- "$D28/dockerd28" \
    -H "unix://$SOCK28" --pidfile "$PID28" --data-root "$ROOT28" --exec-root "$EXEC28" \
    --userland-proxy-path "$D28/docker-proxy" \
    --containerd-namespace pynet-docker28 --containerd-plugins-namespace pynet-docker28-plugins \
    --cgroup-parent /pynet-docker28 "$@" >>"$LOG28" 2>&1 </dev/null 9>&- &
  wait_up 28 "$LOG28" $!
}

stop_pid() {
  local pid=$1 what=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  # dockerd stops every container first (busybox ignores SIGTERM as PID 1: 10 s stop timeout)
  for _ in $(seq 240); do alive "$pid" || return 0; sleep 0.5; done
  log "$what (pid $pid) did not stop in 120 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 20); do alive "$pid" || return 0; sleep 0.5; done
}

stop20() {
  local pid
  if systemd_docker; then systemctl stop docker.socket docker; return 0; fi
  pid=$(pid_of 20) || return 0
  stop_pid "$pid" "dockerd"
}

stop28() {
  local pid
  pid=$(pid_of 28) || { rm -f "$FLAGS28"; return 0; }
  stop_pid "$pid" "dockerd28"
  rm -f "$FLAGS28"
}

restart_engine() {
  local e=$1; shift
  if [ "$e" = 20 ] && systemd_docker; then
    [ $# -eq 0 ] || die "restart 20 $*: dockerd is a systemd service here; flags go in its unit, not here"
    systemctl restart docker
    wait_up 20 "$LOG20"
    return
  fi
  "stop$e"
  if "start$e" "$@"; then return 0; fi
  if [ $# -gt 0 ]; then
    log "Docker $e did not come up with '$*': starting it normally again"
    "stop$e"
    "start$e" || die "Docker $e does not start normally either: see the log above"
  fi
  die "restart $e $*: failed (Docker $e runs normally again)"
}

cmd_status() {
  local e=$1 pid flags
  pid=$(pid_of "$e" || true)
  if [ "$e" = 28 ]; then flags=$(cat "$FLAGS28" 2>/dev/null || true); else
    flags=$( [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | cut -d' ' -f2- || true); fi
  if answers "$e"; then
    echo "Docker $e: $(dk "$e" version -f '{{.Server.Version}} (API {{.Server.APIVersion}})') on $(sock_of "$e"), pid ${pid:-?}, flags '${flags% }'"
  else
    echo "Docker $e: not answering on $(sock_of "$e") (pid ${pid:-none})"
    return 3
  fi
}

cmd_env() {
  echo "export PYNET_ENGINE=$1"
  echo "export DOCKER_HOST=unix://$(sock_of "$1")"
}

cmd_exec() {
  local e=$1; shift
  [ $# -gt 0 ] || die "exec $e: no command"
  export PYNET_ENGINE=$e DOCKER_HOST="unix://$(sock_of "$e")"
  if [ "$e" = 28 ]; then exec nsenter --net="/run/netns/$NS28" -- "$@"; fi
  exec "$@"
}

# ------------------------------------------------------------------ main
cmd=${1:-}
shift || true
case "$cmd" in
  fetch|start|stop|restart|status|env|exec|down) need_engine "${1:-}" ;;
esac
case "$cmd" in
  fetch)   exec 9>"$LOCK"; flock 9; cmd_fetch "$@" ;;
  start)   e=$1; shift; exec 9>"$LOCK"; flock 9; "start$e" "$@" ;;
  stop)    exec 9>"$LOCK"; flock 9; "stop$1" ;;
  restart) e=$1; shift; exec 9>"$LOCK"; flock 9; restart_engine "$e" "$@" ;;
  status)  cmd_status "$1" ;;
  env)     cmd_env "$1" ;;
  exec)    e=$1; shift; cmd_exec "$e" "$@" ;;
  down)    [ "$1" = 28 ] || die "down: only 28 (the system dockerd stays)"
           exec 9>"$LOCK"; flock 9; stop28; ns28_down; umount -l "$EXEC28/netns" 2>/dev/null || true ;;
  compose) exec 9>"$LOCK"; flock 9; runnable28 || cmd_fetch 28 >&2; echo "$D28/docker-compose" ;;
  *) die "usage: $0 fetch 28 | start|stop|restart|status|env|exec 20|28 ... | down 28 | compose" ;;
esac
