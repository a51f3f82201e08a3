#!/usr/bin/env bash
# Builds the local test images without a registry:
#   busybox        busybox-static + one symlink per applet, PATH set
#   busybox:expose the same with EXPOSE 80 and 5353/udp (for -P)
# Idempotent: an image already present is kept.
set -euo pipefail
DOCKER=${DOCKER:-/usr/bin/docker}
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
if ! have busybox:latest; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/var/www"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$dir/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
  echo 'root:x:0:' > "$dir/etc/group"
  echo '<h1>pynet test page</h1>' > "$dir/var/www/index.html"
  tar -C "$dir" -c . | "$DOCKER" import -c 'ENV PATH=/bin' -c 'WORKDIR /var/www' -c 'CMD ["sh"]' - busybox:latest >/dev/null
  echo "built busybox:latest"
fi
if ! have busybox:expose; then
  printf 'FROM busybox:latest\nEXPOSE 80 5353/udp\n' | DOCKER_BUILDKIT=0 "$DOCKER" build -q -t busybox:expose - >/dev/null
  echo "built busybox:expose"
fi
