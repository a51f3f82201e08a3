#!/usr/bin/env bash
# Sections 3 and 7 of the bench (published ports: Docker's bridge with its userland proxy, and with
# --userland-proxy=false) on a Docker engine of the bench's own, so that no shared dockerd is
# restarted (section 7's default way restarts the engine under test, after /tmp/ci-done) and
# others' restarts of the system dockerd (their tests do it) do not void the figures.
#
#   bench-engine.sh run SECTION [BENCH ARGS...]
#       up (ports_proxy_off: with --userland-proxy=false; ports: Docker's defaults); then
#       bench.py --only SECTION --engine-sock SOCK ARGS in the engine's network namespace; down
#       (also on failure or Ctrl-C)
#   bench-engine.sh up [DOCKERD FLAGS...] | down    only start / remove it (down: everything up made)
#
# The engine: Docker 28's dockerd (scripts/engine.sh fetch 28) in a network namespace of its own
# (pnbbpx: not pnbb-*, which the bench's clean-up removes), like engine.sh's Docker 28 (nsenter --net
# only: mounts, PIDs and cgroups are the host's, so pynet sees its containers' netns files), with its
# own socket, data and exec roots, containerd namespace and cgroup parent. The namespace's "host
# address" is 10.253.0.1 on a veth pair that lives wholly inside it: all traffic stays there. The
# busybox image is built in it by scripts/images.sh (the system engine is not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
NS=pnbbpx
RUN=/run/$NS VAR=/var/lib/$NS
SOCK=$RUN/docker.sock PIDFILE=$RUN/docker.pid EXEC=$RUN/exec LOG=$RUN/dockerd.log
D28=/var/cache/pynet/engines/docker28
DOCKER=/usr/bin/docker

die() { echo "bench-engine.sh: $*" >&2; exit 1; }
in_ns() { nsenter --net="/run/netns/$NS" -- "$@"; }

up() {
  [ -x "$D28/dockerd28" ] || die "Docker 28 is not in $D28: run scripts/engine.sh fetch 28"
  [ ! -e "/run/netns/$NS" ] && [ ! -e "$RUN" ] || die "$NS is there already: bench-engine.sh down first"
  ip netns add "$NS"
  in_ns ip link set lo up
  in_ns ip link add pnbbpx0 type veth peer name pnbbpx1
  in_ns ip addr add 10.253.0.1/24 dev pnbbpx0
  in_ns ip link set pnbbpx0 up
  in_ns ip link set pnbbpx1 up
  in_ns ip route add default via 10.253.0.2 dev pnbbpx0
  in_ns sysctl -qw net.ipv4.ip_forward=0  # as on a fresh host: Docker turns it on (and FORWARD to DROP)
  mkdir -p "$EXEC/netns" "$VAR"
  # containers' netns files: a shared mount, so the bench (ip netns exec: a mount namespace of its
  # own) sees the ones dockerd makes later
  mount --bind "$EXEC/netns" "$EXEC/netns"
  mount --make-shared "$EXEC/netns"
  nohup nsenter --net="/run/netns/$NS" -- "$D28/dockerd28" -H "unix://$SOCK" --pidfile "$PIDFILE" \
    --data-root "$VAR/data" --exec-root "$EXEC" "$@" \
    --userland-proxy-path "$D28/docker-proxy" --containerd-namespace "$NS" \
    --containerd-plugins-namespace "$NS-plugins" --cgroup-parent "/$NS" >"$LOG" 2>&1 </dev/null &
  for _ in $(seq 120); do
    DOCKER_HOST="unix://$SOCK" $DOCKER info >/dev/null 2>&1 && break
    sleep 0.5
  done
  DOCKER_HOST="unix://$SOCK" $DOCKER info >/dev/null 2>&1 || die "dockerd did not come up: $(tail -5 "$LOG")"
  DOCKER_HOST="unix://$SOCK" bash scripts/images.sh >/dev/null
  echo "bench-engine.sh: $("$D28/dockerd28" --version) ${*:-(defaults)} up in $NS ($SOCK)"
}

down() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # its containerd (under the exec root) and shims, if dockerd could not stop them
  for p in $(pgrep -f -- "$EXEC/" || true); do kill -KILL "$p" 2>/dev/null || true; done
  for m in $(findmnt -rn -o TARGET | grep -E "^($EXEC|$VAR)(/|$)" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$RUN" "$VAR"
  for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
  echo "bench-engine.sh: $NS down"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  run)
    [ $# -ge 2 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
    section=$2
    shift 2
    flags=()
    [ "$section" = ports_proxy_off ] && flags=(--userland-proxy=false)
    trap down EXIT
    up "${flags[@]}"
    ip netns exec "$NS" .venv/bin/python bench/bench.py --only "$section" --engine-sock "$SOCK" "$@" ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
