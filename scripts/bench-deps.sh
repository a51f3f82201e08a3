#!/usr/bin/env bash
# Idempotent: what `make bench` needs beyond `make install`:
# iperf3 (Debian) for throughput, matplotlib (into .venv) for the charts.
# `bench-deps.sh charts`: matplotlib only (make bench-report measures nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != charts ] && ! command -v iperf3 >/dev/null 2>&1; then
  echo "installing iperf3"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends iperf3 >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends iperf3 >/dev/null
  }
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "installing matplotlib into .venv"
  .venv/bin/pip install -q --disable-pip-version-check matplotlib
fi
