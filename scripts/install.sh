#!/usr/bin/env bash
# Idempotent set-up of a bare Debian 12 machine for pynet:
# Debian packages, .venv from /usr/bin/python3 (system site packages, for
# python3-nftables), pip dependencies, .venv/bin/pynet.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="docker.io nftables python3-nftables python3-venv busybox-static iproute2 dnsmasq-base iptables procps"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import nftables' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.pynet-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  touch "$stamp"
fi
.venv/bin/python -c 'import nftables, pyroute2, aiohttp, yaml, prometheus_client' 
echo "pynet installed: $(pwd)/.venv/bin/pynet"
