#!/usr/bin/env bash
# Starts dockerd when it is not running, and waits until `docker info` answers.
set -euo pipefail
DOCKER=/usr/bin/docker
if $DOCKER info >/dev/null 2>&1; then exit 0; fi
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! $DOCKER info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
  mkdir -p /var/log
  nohup /usr/sbin/dockerd >/var/log/pynet-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do
  $DOCKER info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not come up; see /var/log/pynet-dockerd.log" >&2
tail -20 /var/log/pynet-dockerd.log >&2 || true
exit 1
