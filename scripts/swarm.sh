#!/usr/bin/env bash
# A multi-node Docker swarm on one machine: N Docker 28 nodes on a LAN made of namespaces.
#
#   swarm.sh up N                  N = 2 or 3 nodes, one swarm (node 1 the manager), a registry
#                                  on the LAN, the busybox test image pushed to it
#   swarm.sh plugin ALIAS [DIR] [KEY=VALUE...]
#                                  the managed plugin built in DIR (scripts/plugin.sh build; default
#                                  build/plugin) created on node 1, pushed to the registry, then
#                                  `docker plugin install`ed on every node as ALIAS with the given
#                                  settings and a state dir of the node's own; enabled
#                                  (= push ALIAS DIR; install ALIAS <registry>/ALIAS:latest; plugin-wait ALIAS)
#   swarm.sh push NAME [DIR]       only create and push <registry>/NAME:latest
#   swarm.sh install ALIAS REF [KEY=VALUE...]   only install REF as ALIAS on every node, enabled
#   swarm.sh plugin-wait ALIAS...  until the manager lists every ALIAS on every node
#   swarm.sh down                  removes everything up made: processes, namespaces, mounts, data
#   swarm.sh restart I             node I's dockerd stopped and started again
#   swarm.sh status                nodes, pids, swarm membership
#   swarm.sh docker I ARGS...      docker CLI against node I
#   swarm.sh exec I|cl|rt CMD...   CMD in node I's (or the LAN client's / router's) network namespace
#   swarm.sh env I                 DOCKER_HOST line for node I
#
# SWARM_NAME (default pnsw) names everything: namespaces $SWARM_NAME-{sw,cl,rt,n1..n3}, /run/$SWARM_NAME,
# /var/lib/$SWARM_NAME, cgroups /$SWARM_NAME-nI. Two beds with different names run side by side (every
# address lives inside the bed's own namespaces).
#
#  [rt] r0 10.88.0.1 (router; registry :5000) ─┐
#  [cl] c0 10.88.0.20 (LAN client) ────────────┤ br0 in [sw]
#  [nI] lan0 10.88.0.1I (node I: its dockerd) ─┘   (nI's default route is "unreachable": no Hub lookups)
#
# How a node runs (shared/docs/testing.md, "A multi-node swarm on one machine"): Docker 28's dockerd
# (scripts/engine.sh fetch 28) under `ip netns exec nI unshare --uts`, in a wrapper that mounts a
# tmpfs on /sys/fs/cgroup with the host's cgroup hierarchies again (ip netns exec remounted /sys),
# bind-mounts a per-node directory over /run/docker/plugins (managed-plugin sockets go there whatever
# the exec root) and sets the node's hostname. Its own --data-root, --exec-root (its own containerd
# lives there), socket, pidfile, --config-file and --cgroup-parent. Nothing is shared with the system
# dockerd or Docker 28 of engine.sh but the kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
DOCKER=/usr/bin/docker
NAME=${SWARM_NAME:-pnsw}
[[ $NAME =~ ^[a-z][a-z0-9-]{1,11}$ ]] || { echo "swarm.sh: SWARM_NAME must be 2-12 of [a-z0-9-]" >&2; exit 2; }
D28=/var/cache/pynet/engines/docker28
REGDIR=/var/cache/pynet/registry          # docker-registry binary, from Debian's package
RUN=/run/$NAME
VAR=/var/lib/$NAME
LOCK=/run/lock/$NAME-swarm.lock
LAN=10.88.0 ROUTER=10.88.0.1 CLIENT=10.88.0.20
REGISTRY=10.88.0.1:5000
IMAGE=$REGISTRY/busybox:latest            # the test image as every node pulls it
SRC_IMAGE=busybox:latest                  # scripts/images.sh, made on node 1

log() { echo "swarm.sh: $*" >&2; }
die() { log "$*"; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
ns() { echo "$NAME-$1"; }
node_ip() { echo "$LAN.1$1"; }
sock() { echo "$RUN/n$1/docker.sock"; }
dk() { local i=$1; shift; DOCKER_HOST="unix://$(sock "$i")" "$DOCKER" "$@"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
nodes() { cat "$RUN/nodes" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------ pieces fetched once

ensure_engine() {
  [ -x "$D28/dockerd28" ] && "$D28/dockerd28" --version >/dev/null 2>&1 && return 0
  bash scripts/engine.sh fetch 28 >&2 || die "Docker 28 cannot be fetched (scripts/engine.sh fetch 28): no swarm bed"
}

# Debian's docker-registry (2.8): the binary out of the package, never installed (its postinst would
# start a registry on the host's :5000).
ensure_registry() {
  [ -x "$REGDIR/docker-registry" ] && return 0
  local work
  work=$(mktemp -d /var/tmp/pynet-registry.XXXXXX)
  (cd "$work" && apt-get download -qq docker-registry) >"$work/dl.log" 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1; (cd "$work" && apt-get download -qq docker-registry) >"$work/dl.log" 2>&1; } \
    || { cat "$work/dl.log" >&2; rm -rf "$work"; die "apt-get download docker-registry failed"; }
  dpkg-deb -x "$work"/docker-registry_*.deb "$work/x"
  mkdir -p "$REGDIR"
  cp "$work/x/usr/bin/docker-registry" "$REGDIR/docker-registry.new"
  dpkg-deb -f "$work"/docker-registry_*.deb Version >"$REGDIR/VERSION"
  mv "$REGDIR/docker-registry.new" "$REGDIR/docker-registry"
  rm -rf "$work"
  log "docker-registry $(cat "$REGDIR/VERSION") in $REGDIR"
}

# ------------------------------------------------------------------ the LAN

lan_up() {
  local n=$1 s c r i
  s=$(ns sw) c=$(ns cl) r=$(ns rt)
  for x in "$s" "$c" "$r"; do ip netns add "$x"; ip -n "$x" link set lo up; done
  ip -n "$s" link add br0 type bridge
  ip -n "$s" link set br0 up
  ip -n "$c" link add c0 type veth peer name cp netns "$s"
  ip -n "$r" link add r0 type veth peer name rp netns "$s"
  for i in $(seq "$n"); do
    ip netns add "$(ns "n$i")"
    ip -n "$(ns "n$i")" link set lo up
    ip -n "$(ns "n$i")" link add lan0 type veth peer name "p$i" netns "$s"
  done
  for p in cp rp $(for i in $(seq "$n"); do echo "p$i"; done); do
    ip -n "$s" link set "$p" master br0 up
  done
  ip -n "$c" addr add "$CLIENT/24" dev c0
  ip -n "$c" link set c0 up
  ip -n "$c" route add default via "$ROUTER"
  ip -n "$r" addr add "$ROUTER/24" dev r0
  ip -n "$r" link set r0 up
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
  for i in $(seq "$n"); do
    local x
    x=$(ns "n$i")
    ip -n "$x" addr add "$(node_ip "$i")/24" dev lan0
    ip -n "$x" link set lan0 up
    # No way past the LAN: image lookups on Docker Hub fail at once instead of timing out.
    ip -n "$x" route add unreachable default
    # As on a fresh host: Docker turns forwarding on itself (and then sets FORWARD's policy to DROP).
    ip netns exec "$x" sysctl -qw net.ipv4.ip_forward=0
  done
}

registry_up() {
  mkdir -p "$VAR/registry/storage"
  cat >"$VAR/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $VAR/registry/storage}
  delete: {enabled: true}
http: {addr: "$REGISTRY"}
EOF
  setsid nohup ip netns exec "$(ns rt)" "$REGDIR/docker-registry" serve "$VAR/registry/config.yml" \
    >"$VAR/registry/log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/registry.pid"
}

# ------------------------------------------------------------------ nodes

# Runs inside `ip netns exec nI unshare --uts`: mounts, hostname, then exec dockerd.
node_exec() {
  local i=$1 m opts
  mount -t tmpfs -o mode=755 "$NAME-cgroup" /sys/fs/cgroup
  # The host's hierarchies again, as the host mounts them (v1 controllers, name=systemd, cgroup2).
  while read -r _ m type opts _; do
    case "$type" in
      cgroup)  mkdir -p "$m"; mount -t cgroup -o "$(sed 's/\(^\|,\)\(rw\|ro\|relatime\|nosuid\|nodev\|noexec\)//g; s/^,//' <<<"$opts")" cgroup "$m" ;;
      cgroup2) mkdir -p "$m"; mount -t cgroup2 cgroup2 "$m" ;;
    esac
  done < <(awk '$3 == "cgroup" || $3 == "cgroup2"' /proc/1/mounts)
  mount --bind "$RUN/n$i/plugins" /run/docker/plugins
  hostname "$NAME-n$i"
  exec "$D28/dockerd28" -H "unix://$(sock "$i")" --pidfile "$RUN/n$i/docker.pid" \
    --data-root "$VAR/n$i/data" --exec-root "$RUN/n$i/exec" --config-file "$VAR/n$i/daemon.json" \
    --cgroup-parent "/$NAME-n$i" --userland-proxy-path "$D28/docker-proxy" \
    --insecure-registry "$REGISTRY" --shutdown-timeout 2 ${SWARM_DOCKERD_FLAGS:-}
}

node_start() {
  local i=$1
  mkdir -p "$RUN/n$i/plugins" "$RUN/n$i/exec" "$VAR/n$i/data"
  echo '{}' >"$VAR/n$i/daemon.json"
  setsid nohup ip netns exec "$(ns "n$i")" unshare --uts -- bash "$0" _node "$i" \
    >>"$VAR/n$i/dockerd.log" 2>&1 </dev/null 9>&- &
}

node_wait() {
  local i=$1
  for _ in $(seq 120); do
    dk "$i" info >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  tail -20 "$VAR/n$i/dockerd.log" >&2
  die "node $i: dockerd did not answer on $(sock "$i") in 30 s (log above: $VAR/n$i/dockerd.log)"
}

swarm_form() {
  local n=$1 tok i pids=()
  dk 1 swarm init --advertise-addr "$(node_ip 1)" --listen-addr "$(node_ip 1):2377" >/dev/null
  tok=$(dk 1 swarm join-token -q worker)
  for i in $(seq 2 "$n"); do
    dk "$i" swarm join --token "$tok" --advertise-addr "$(node_ip "$i")" --listen-addr "$(node_ip "$i"):2377" \
      "$(node_ip 1):2377" >/dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || die "a node could not join the swarm"; done
  for _ in $(seq 80); do
    [ "$(dk 1 node ls -q --filter role=worker | wc -l)" -ge $((n - 1)) ] \
      && ! dk 1 node ls --format '{{.Status}}' | grep -qv Ready && return 0
    sleep 0.25
  done
  dk 1 node ls >&2
  die "the swarm did not see $n ready nodes in 20 s"
}

registry_wait() {
  for _ in $(seq 80); do
    ip netns exec "$(ns n1)" bash -c "exec 3<>/dev/tcp/${REGISTRY%:*}/${REGISTRY#*:}" 2>/dev/null && return 0
    sleep 0.25
  done
  cat "$VAR/registry/log" >&2
  die "the registry did not listen on $REGISTRY"
}

# The test image: made on node 1 (scripts/images.sh: busybox-static imported, no registry needed),
# pushed to the LAN registry, pulled by the other nodes (as users distribute images in a swarm).
# Nothing here needs the system dockerd.
image_up() {
  local n=$1 i pids=()
  DOCKER_HOST="unix://$(sock 1)" bash scripts/images.sh >/dev/null
  dk 1 tag "$SRC_IMAGE" "$IMAGE"
  dk 1 push -q "$IMAGE" >/dev/null
  for i in $(seq 2 "$n"); do dk "$i" pull -q "$IMAGE" >/dev/null & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || true; done
  for i in $(seq 2 "$n"); do dk "$i" image inspect "$IMAGE" >/dev/null || die "node $i could not pull $IMAGE"; done
}

cmd_up() {
  local n=${1:-2} t0 i
  [[ $n =~ ^[23]$ ]] || die "up: N must be 2 or 3"
  [ ! -e "$RUN/nodes" ] || die "up: a bed named $NAME is up already (swarm.sh down first)"
  [ ! -e "/run/netns/$(ns sw)" ] || die "up: leftovers of a bed named $NAME (swarm.sh down first)"
  # From here on, a failure takes down whatever was made.
  trap 'rc=$?; if [ $rc != 0 ]; then log "up failed: tearing down"; cmd_down || true; fi' EXIT
  ensure_engine
  ensure_registry
  t0=$(now)
  mkdir -p "$RUN" "$VAR"
  echo "$n" >"$RUN/nodes"
  lan_up "$n"
  registry_up
  for i in $(seq "$n"); do node_start "$i"; done
  for i in $(seq "$n"); do node_wait "$i"; done
  log "$n nodes answering after $(since "$t0") s ($("$D28/dockerd28" --version))"
  swarm_form "$n"
  log "swarm of $n after $(since "$t0") s"
  registry_wait
  image_up "$n"
  log "up: $n nodes, swarm, registry $REGISTRY, image $IMAGE on every node in $(since "$t0") s"
}

# ------------------------------------------------------------------ the plugin

# The plugin built in DIR, created on node 1 and pushed to the bed's registry as NAME:latest.
cmd_push() {
  local name=${1:?push NAME [DIR]} dir=${2:-build/plugin} ref t0
  [ "$(nodes)" -gt 0 ] || die "push: no bed named $NAME is up"
  [ -f "$dir/config.json" ] && [ -d "$dir/rootfs" ] || die "push: no plugin in $dir (scripts/plugin.sh build $dir)"
  ref="$REGISTRY/$name:latest"
  t0=$(now)
  dk 1 plugin rm -f "$ref" >/dev/null 2>&1 || true
  dk 1 plugin create "$ref" "$dir" >/dev/null
  dk 1 plugin push "$ref" >/dev/null
  dk 1 plugin rm -f "$ref" >/dev/null
  log "plugin $ref created from $dir and pushed in $(since "$t0") s"
}

# `docker plugin install --alias ALIAS REF` on every node with the settings given and a state dir of
# the node's own, then enabled. One plugin may be installed under several aliases (pynet, and
# pynet-overlay with PYNET_SCOPE=global), as users do.
cmd_install() {
  local alias=${1:?install ALIAS REF [KEY=VALUE...]} ref=${2:?install ALIAS REF [KEY=VALUE...]} n i t0 pids=()
  shift 2
  n=$(nodes)
  t0=$(now)
  for i in $(seq "$n"); do
    (
      mkdir -p "$VAR/n$i/state-$alias"
      dk "$i" plugin install --disable --grant-all-permissions --alias "$alias" "$ref" >/dev/null
      dk "$i" plugin set "$alias" "state.source=$VAR/n$i/state-$alias" "$@"
      dk "$i" plugin enable "$alias" >/dev/null
    ) &
    pids+=($!)
  done
  local fail=0
  for i in "${pids[@]}"; do wait "$i" || fail=1; done
  [ $fail = 0 ] || die "install: $ref as $alias failed on a node"
  log "plugin $alias installed from $ref and enabled on $n nodes in $(since "$t0") s"
}

# Until the manager lists every ALIAS on every node: it schedules a task only on nodes whose
# description lists the driver ("missing plugin on 1 node" meanwhile), and nodes report a new plugin
# with their periodic update, not at once.
cmd_plugin_wait() {
  local n t0 alias seen all
  n=$(nodes)
  t0=$(now)
  for _ in $(seq 120); do
    all=1
    for alias in "$@"; do
      seen=$(dk 1 node ls -q | xargs "$DOCKER" -H "unix://$(sock 1)" node inspect \
        -f '{{range .Description.Engine.Plugins}}{{.Type}}={{.Name}} {{end}}' | grep -c " Network=$alias:latest \|^Network=$alias:latest " || true)
      [ "$seen" -ge "$n" ] || all=0
    done
    [ $all = 1 ] && { log "the manager sees $* on all $n nodes after $(since "$t0") s"; return 0; }
    sleep 0.5
  done
  die "plugin: after 60 s the manager does not see $* on all $n nodes"
}

cmd_plugin() {
  local alias=${1:?plugin ALIAS [DIR] [KEY=VALUE...]} dir=${2:-build/plugin}
  shift; [ $# -gt 0 ] && shift
  cmd_push "$alias" "$dir"
  cmd_install "$alias" "$REGISTRY/$alias:latest" "$@"
  cmd_plugin_wait "$alias"
}

# A node's dockerd stopped (its containers and plugins stop with it) and started again.
cmd_restart() {
  local i=${1:?restart I} pid t0
  [ "$i" -ge 1 ] && [ "$i" -le "$(nodes)" ] || die "restart: no node $i"
  t0=$(now)
  pid=$(cat "$RUN/n$i/docker.pid" 2>/dev/null || true)
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 120); do alive "$pid" || break; sleep 0.25; done
    alive "$pid" && die "restart: dockerd of node $i (pid $pid) did not stop in 30 s"
  fi
  node_start "$i"
  node_wait "$i"
  log "node $i restarted in $(since "$t0") s"
}

# ------------------------------------------------------------------ down

# The bed's processes: every process in one of the bed's network namespaces (the wrappers, dockerd,
# containerd, shims, host-network plugins, the registry) or in a node's cgroups (containers).
bed_pids() {
  local x ino p inos=()
  for x in sw cl rt n1 n2 n3; do
    ino=$(stat -L -c %i "/run/netns/$(ns "$x")" 2>/dev/null) && inos+=("net:[$ino]")
  done
  if [ ${#inos[@]} -gt 0 ]; then
    for p in /proc/[0-9]*; do
      x=$(readlink "$p/ns/net" 2>/dev/null) || continue
      for ino in "${inos[@]}"; do [ "$x" = "$ino" ] && echo "${p#/proc/}"; done
    done
  fi
  for x in ${CGROUPS:-$(bed_cgroups)}; do
    find "/sys/fs/cgroup/pids/$x" -name tasks -exec cat {} + 2>/dev/null || true
  done
}

# The socket of a containerd shim (containerd 1.6: /run/containerd/s/sha256(<address>/<namespace>/<id>)).
shim_socket() {
  local -a a
  local addr="" nsp="" id="" k
  mapfile -d '' a <"/proc/$1/cmdline" 2>/dev/null || return 1
  [[ ${a[0]:-} == *containerd-shim* ]] || return 1
  for ((k = 1; k < ${#a[@]} - 1; k++)); do
    case ${a[k]} in -address) addr=${a[k+1]} ;; -namespace) nsp=${a[k+1]} ;; -id) id=${a[k+1]} ;; esac
  done
  [[ $addr == "$RUN/"* ]] || return 1
  echo "/run/containerd/s/$(printf '%s' "$addr/$nsp/$id" | sha256sum | cut -d' ' -f1)"
}

# The cgroups the nodes' dockerds make: /$NAME-nI (containers: --cgroup-parent) and /<plugin id>
# (managed plugins go to the root whatever the cgroup parent; their ids are random per node).
bed_cgroups() {
  local i d
  for i in 1 2 3; do
    echo "$NAME-n$i"
    for d in "$VAR/n$i/data/plugins"/*; do
      d=${d##*/}
      if [[ $d =~ ^[0-9a-f]{64}$ ]]; then echo "$d"; fi
    done
  done
}

cmd_down() {
  local t0 i pid left x d
  t0=$(now)
  CGROUPS=$(bed_cgroups)   # before the data dirs (plugin ids) go
  # dockerd first (it stops its containers: --shutdown-timeout 2), in parallel.
  for i in $(seq 3); do
    pid=$(cat "$RUN/n$i/docker.pid" 2>/dev/null || true)
    alive "$pid" && kill -TERM "$pid"
  done
  for _ in $(seq 60); do
    left=0
    for i in $(seq 3); do alive "$(cat "$RUN/n$i/docker.pid" 2>/dev/null || true)" && left=1; done
    [ $left = 0 ] && break
    sleep 0.25
  done
  local socks=()
  for _ in 1 2 3; do
    left=$(bed_pids | sort -u | tr '\n' ' ')
    [ -n "${left// }" ] || break
    for pid in $left; do x=$(shim_socket "$pid") && socks+=("$x"); done
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.3
  done
  # cgroups the nodes made (containers, plugins), deepest first.
  for x in $CGROUPS; do
    for d in /sys/fs/cgroup/*/"$x"; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  done
  for x in sw cl rt n1 n2 n3; do ip netns del "$(ns "$x")" 2>/dev/null || true; done
  # Killed shims leave their sockets in containerd's directory shared by every containerd.
  [ ${#socks[@]} -eq 0 ] || rm -f "${socks[@]}"
  rm -rf "$RUN" "$VAR"
  log "down in $(since "$t0") s"
  leftovers
}

leftovers() {
  local bad=() x i
  for x in sw cl rt n1 n2 n3; do [ -e "/run/netns/$(ns "$x")" ] && bad+=("netns $(ns "$x")"); done
  for x in ${CGROUPS:-$(bed_cgroups)}; do
    compgen -G "/sys/fs/cgroup/*/$x" >/dev/null && bad+=("cgroup /$x")
  done
  [ -e "$RUN" ] && bad+=("$RUN")
  [ -e "$VAR" ] && bad+=("$VAR")
  grep -q " $VAR/\| $RUN/" /proc/self/mountinfo && bad+=("mounts under $VAR or $RUN")
  x=$(bed_pids | sort -u | tr '\n' ' ')
  [ -n "${x// }" ] && bad+=("processes $x")
  if [ ${#bad[@]} -gt 0 ]; then log "left behind: ${bad[*]}"; return 1; fi
  return 0
}

# ------------------------------------------------------------------ status

cmd_status() {
  local n i pid
  n=$(nodes)
  [ "$n" -gt 0 ] || { echo "no bed named $NAME"; exit 3; }
  for i in $(seq "$n"); do
    pid=$(cat "$RUN/n$i/docker.pid" 2>/dev/null || true)
    echo "node $i: $(ns "n$i") $(node_ip "$i") pid ${pid:-none} $(dk "$i" info -f '{{.Name}} {{.ServerVersion}} swarm={{.Swarm.LocalNodeState}} manager={{.Swarm.ControlAvailable}}' 2>&1 | tail -1)"
  done
  dk 1 node ls 2>&1 || true
  echo "registry $REGISTRY pid $(cat "$RUN/registry.pid" 2>/dev/null)"
}

cmd=${1:-}
shift || true
case "$cmd" in
  _node) node_exec "$1" ;;
  up) exec 9>"$LOCK"; flock 9
      cmd_up "$@" ;;
  down) exec 9>"$LOCK"; flock 9; cmd_down; rm -f "$LOCK" ;;
  plugin) cmd_plugin "$@" ;;
  push) cmd_push "$@" ;;
  install) cmd_install "$@" ;;
  plugin-wait) cmd_plugin_wait "$@" ;;
  restart) cmd_restart "$@" ;;
  status) cmd_status ;;
  docker) i=$1; shift; dk "$i" "$@" ;;
  exec) i=$1; shift; case $i in cl|rt) x=$(ns "$i") ;; *) x=$(ns "n$i") ;; esac
        exec ip netns exec "$x" "$@" ;;
  env) echo "export DOCKER_HOST=unix://$(sock "$1")" ;;
  *) die "usage: $0 up N | plugin ALIAS [DIR] [KEY=VALUE...] | push NAME [DIR] | install ALIAS REF [KEY=VALUE...] | plugin-wait ALIAS... | down | status | docker I ARGS | exec I|cl|rt CMD | env I" ;;
esac
