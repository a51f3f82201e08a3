#!/usr/bin/env bash
# Builds pynet as a managed Docker plugin, and installs or removes it.
#
#   scripts/plugin.sh base             debian:bookworm-slim, bootstrapped locally when missing
#   scripts/plugin.sh build [DIR]      image pynet-plugin:latest -> DIR (default build/plugin):
#                                      DIR/rootfs + DIR/config.json
#   scripts/plugin.sh create [NAME [DIR]]   build, then docker plugin create NAME DIR, disabled
#                                      (NAME defaults to pynet; an old NAME is removed first)
#   scripts/plugin.sh install [NAME [DIR]]  create, then enable (state in /var/lib/pynet)
#   scripts/plugin.sh rm [NAME]        disable (forced) and remove plugin NAME
#
# Docker Hub may be unreachable: then debian:bookworm-slim is made with
# debootstrap from this machine's own apt mirror (as apt itself reports it),
# tarred and `docker import`ed under that name. The apt sources for the image
# build come from the same place, as the APT_SOURCES build argument. Python
# packages are fetched on the host by pip (so the host's pip configuration,
# index and CA apply) into build/wheels, and installed in the image offline.
# Nothing here names a mirror: it is read from apt's configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
DOCKER=/usr/bin/docker
BASE=debian:bookworm-slim
IMAGE=pynet-plugin:latest
BUILD_IMAGE=pynet-plugin:build   # the Dockerfile's build stage, kept for the cache
SUITE=bookworm
PIP=.venv/bin/pip
STATE_DIR=/var/lib/pynet   # host side of the plugin's `state` mount (config.json)

log() { echo "plugin.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# "URI RELEASE" for every deb (binary) source of component main that apt is configured with.
apt_sources() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(TARGET_OF)' 'Created-By: Packages' \
    2>/dev/null | awk '$3 == "main" && $4 == "deb" { print $1, $2 }' | sort -u
}

# The host's mirror for the Debian $SUITE archive; on a host of another Debian
# release, the mirror of its own main archive (a Debian mirror carries every suite).
apt_mirror() {
  local all
  all=$(apt_sources)
  awk -v s="$SUITE" '$2 == s { print $1; found = 1; exit } END { exit !found }' <<<"$all" \
    || awk '$2 !~ /-(security|updates|backports)$/ && $1 ~ /\/debian\/?$/ { print $1; exit }' <<<"$all"
}

# sources.list lines for the image build: the host's $SUITE, -updates and -security
# sources, or else $SUITE and $SUITE-updates from apt_mirror.
apt_sources_list() {
  local lines mirror
  lines=$(apt_sources | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security" { print "deb " $1 " " $2 " main" }')
  if [ -z "$lines" ] && mirror=$(apt_mirror) && [ -n "$mirror" ]; then
    lines=$(printf 'deb %s %s main\ndeb %s %s-updates main' "$mirror" "$SUITE" "$mirror" "$SUITE")
  fi
  printf '%s\n' "$lines"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
}

cmd_base() {
  if $DOCKER image inspect "$BASE" >/dev/null 2>&1; then return 0; fi
  if timeout 300 $DOCKER pull -q "$BASE" >/dev/null 2>&1; then return 0; fi
  local mirror root
  mirror=$(apt_mirror)
  [ -n "$mirror" ] || die "no apt source for Debian $SUITE in this machine's apt configuration; cannot debootstrap $BASE"
  ensure_debootstrap
  root=$(mktemp -d /var/tmp/pynet-bootstrap.XXXXXX)
  trap 'rm -rf "$root"' RETURN
  log "bootstrapping $BASE from $mirror (debootstrap --variant=minbase $SUITE)"
  debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
  rm -f "$root.log"
  # What makes the official image "slim": no docs, man pages or translations from later installs,
  # no package cache. debootstrap already wrote etc/apt/sources.list for the mirror.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/debootstrap
  tar --numeric-owner --xattrs -C "$root" -c . \
    | $DOCKER import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase $SUITE (pynet scripts/plugin.sh)" - "$BASE" >/dev/null
  log "imported $BASE ($($DOCKER image inspect -f '{{.Size}}' "$BASE") bytes)"
}

# build/wheels: pynet and its PyPI dependencies as wheels, fetched by the host's pip.
wheels() {
  [ -x "$PIP" ] || bash scripts/install.sh >/dev/null
  local dir=build/wheels stamp=build/wheels/.stamp
  if [ -f "$stamp" ] && [ -z "$(find setup.cfg pyproject.toml requirements.txt plugin/pynet -name __pycache__ -prune -o -newer "$stamp" -print -quit)" ]; then
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  log "fetching wheels (host pip) into $dir"
  # Built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
  local src
  src=$(mktemp -d /var/tmp/pynet-src.XXXXXX)
  cp -r setup.cfg pyproject.toml plugin "$src/"
  find "$src" -name __pycache__ -prune -exec rm -rf {} +
  # requirements.txt as constraints: the same version bounds as the development venv.
  if ! $PIP wheel -q --disable-pip-version-check --no-build-isolation -c requirements.txt -w "$dir" "$src" \
      >"$src.log" 2>&1; then
    cat "$src.log" >&2; rm -rf "$src" "$src.log"; die "pip could not fetch pynet's dependencies"
  fi
  rm -rf "$src" "$src.log"
  touch "$stamp"
}

cmd_build() {
  local out=${1:-build/plugin}
  cmd_base
  wheels
  log "building $IMAGE"
  local sources
  sources=$(apt_sources_list)
  # The build stage is tagged too, so that pruning older builds (dangling images
  # with the Dockerfile's label) keeps its cache.
  DOCKER_BUILDKIT=0 $DOCKER build -q --network host --build-arg "APT_SOURCES=$sources" \
    --target build -t "$BUILD_IMAGE" . >/dev/null
  DOCKER_BUILDKIT=0 $DOCKER build -q --network host --build-arg "APT_SOURCES=$sources" -t "$IMAGE" . >/dev/null
  $DOCKER image prune -f --filter label=pynet.plugin.build=1 >/dev/null
  local id
  id=$($DOCKER image inspect -f '{{.Id}}' "$IMAGE")
  if [ -f "$out/.image-id" ] && [ "$(cat "$out/.image-id")" = "$id" ] && cmp -s config.json "$out/config.json"; then
    return 0  # rootfs already exported from this very image
  fi
  rm -rf "$out" && mkdir -p "$out/rootfs"
  local ctr
  ctr=$($DOCKER create "$IMAGE")
  # shellcheck disable=SC2064
  trap "$DOCKER rm -f $ctr >/dev/null 2>&1 || true" RETURN
  $DOCKER export "$ctr" | tar --numeric-owner -x -C "$out/rootfs"
  cp config.json "$out/config.json"
  echo "$id" >"$out/.image-id"
  log "rootfs in $out: $(du -sh "$out/rootfs" | cut -f1)"
}

plugin_exists() { $DOCKER plugin inspect "$1" >/dev/null 2>&1; }

cmd_rm() {
  local name=${1:-pynet}
  if plugin_exists "$name"; then
    $DOCKER plugin disable -f "$name" >/dev/null 2>&1 || true
    $DOCKER plugin rm -f "$name" >/dev/null
    log "removed plugin $name"
  fi
}

cmd_create() {
  local name=${1:-pynet} dir=${2:-build/plugin}
  cmd_build "$dir"
  cmd_rm "$name"
  $DOCKER plugin create "$name" "$dir" >/dev/null
}

cmd_install() {
  local name=${1:-pynet}
  cmd_create "$@"
  mkdir -p "$STATE_DIR"
  $DOCKER plugin enable "$name" >/dev/null
  log "plugin $name enabled: docker network create -d $name:latest NET  (Docker 20.10 wants the tag)"
}

# One build at a time on this machine (base bootstrap, image tag, build/ dirs).
exec 9>/run/lock/pynet-plugin-build.lock
flock 9
case "${1:-}" in
  base) cmd_base ;;
  build) shift; cmd_build "$@" ;;
  create) shift; cmd_create "$@" ;;
  install) shift; cmd_install "$@" ;;
  rm) shift; cmd_rm "$@" ;;
  mirror) apt_mirror ;;
  *) die "usage: $0 base|build [DIR]|create [NAME [DIR]]|install [NAME [DIR]]|rm [NAME]|mirror" ;;
esac
