#!/bin/sh
# Entry point of the managed plugin (config.json): makes the host's network
# sysctls writable, then runs `pynet serve`. Settings come from PYNET_*
# variables (`docker plugin set pynet PYNET_LOG_LEVEL=debug`).
set -eu
# Docker starts plugins with /proc/sys read-only, and config.json cannot change
# that. pynet writes net sysctls (ip_forward, route_localnet on its bridges);
# with network "host", /proc/sys/net is the host's. So re-mount just
# /proc/sys/net read-write (the plugin has CAP_SYS_ADMIN for this); the rest of
# /proc/sys stays read-only. If it fails, pynet still starts and reports each
# sysctl it cannot set with the command to run on the host.
if [ ! -w /proc/sys/net/ipv4/ip_forward ]; then
  mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net \
    || echo "pynet plugin: /proc/sys/net stays read-only; set sysctls on the host" >&2
fi
exec /opt/pynet/venv/bin/pynet serve "$@"
