#!/usr/bin/env bash
# Idempotent: what `make bench` needs beyond `make install`:
# iperf3 (Debian) for throughput, wrk (Debian) for the connection rate, matplotlib (into .venv) for
# the charts. `bench-deps.sh charts`: matplotlib only (make bench-report measures nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != charts ]; then
  missing=()
  command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    }
  fi
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "installing matplotlib into .venv"
  .venv/bin/pip install -q --disable-pip-version-check matplotlib
fi
