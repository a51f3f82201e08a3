"""Section 7: section 3's connection rate (0 and 1,000 other ports) and publish time against Docker with
--userland-proxy=false. Restarts dockerd with the flag (once the shared test suite is done), measures
pynet again, interleaved, on that dockerd, and restores the original dockerd."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import BenchError, docker, dockerd_pid, engine, log, rotated, sh, timed_docker, wait_docker

from .ports import (FILL, SERVERS, Rates, proxy_mem_mb, record, run_filler, run_server_container, start_server,
                    wait_port, wait_ports)

if TYPE_CHECKING:
    from runner import Bench

PROXY_OFF_FLAG = "--userland-proxy=false"
CI_DONE = Path("/tmp/ci-done")  # the shared test suite is done: dockerd may be restarted


# ---------------------------------------------------------------- dockerd restart
# Through tests/engine.py (scripts/engine.sh), like the tests: the engine under test (PYNET_ENGINE) is
# restarted with the flag and back; a flag it refuses brings it back normally.
def dockerd_with_flag(b: Bench) -> None:
    """Restart dockerd with --userland-proxy=false; b.dockerd_orig says it must be restored."""
    pid = dockerd_pid()
    if not pid:
        raise BenchError("no dockerd process")
    cmd = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if any(a == "--userland-proxy" or a.startswith("--userland-proxy=") for a in cmd):  # not -path
        raise BenchError(f"dockerd already runs with {cmd}: not touching it")
    b.dockerd_orig = {"pid": pid, "cmd": cmd}
    log(f"restarting Docker {engine.ENGINE} ({' '.join(cmd)}) with {PROXY_OFF_FLAG}")
    try:
        engine.restart(PROXY_OFF_FLAG)
    except AssertionError as e:
        raise BenchError(f"dockerd did not come back with the flag: {e}") from None


def restore(b: Bench) -> None:
    """Put the engine back to normal (idempotent; signals are ignored meanwhile)."""
    if not b.dockerd_orig:
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        log(f"restoring Docker {engine.ENGINE}")
        engine.restart()
        wait_docker(240)
        b.dockerd_orig = None
        cmd = Path(f"/proc/{dockerd_pid()}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        log(f"dockerd restored: {cmd.strip()}")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def wait_ci_done(timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    said = 0.0
    while not CI_DONE.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"{CI_DONE} did not appear in {timeout:.0f} s: dockerd not restarted")
        if time.monotonic() - said > 60:
            log(f"waiting for {CI_DONE} (a test suite shares this dockerd) before restarting dockerd")
            said = time.monotonic()
        time.sleep(2)


# ---------------------------------------------------------------- the section
def measure(b: Bench) -> dict:
    wait_ci_done()
    b.section_cleanup()
    dockerd_with_flag(b)
    try:
        return _measure(b)
    finally:
        b.kill_children()
        b.section_cleanup()
        restore(b)


def _measure(b: Bench) -> dict:
    b.ensure_networks()
    publish: dict = {}
    for drv, s in SERVERS.items():
        docker("rm", "-f", s.cname, check=False)
        record(publish, drv, 1, "add", run_server_container(drv))
        start_server(b, s.cname)
    rates = Rates(b, {"host IP": b.host_ip, "127.0.0.1": "127.0.0.1"})
    wait_ports(rates.targets)
    docker_port = SERVERS["docker"].port
    proxies = {"docker-proxy processes, 1 port": proxy_mem_mb(docker_port, docker_port)[0]}
    for r in range(b.p["rate_rounds0"]):
        for drv in rotated(list(SERVERS), r):
            rates.sample("0", drv)
    for rep in range(b.p["publish_reps"]):
        for drv in rotated(list(SERVERS), rep):
            record(publish, drv, 1000, "add", run_filler(drv))
            if drv == "docker":
                proxies["docker-proxy processes, 1,000 ports"] = proxy_mem_mb(30000, 30999)[0]
            wait_port(b.host_ip, SERVERS[drv].port)
            rates.sample("1000", drv)
            record(publish, drv, 1000, "rm", timed_docker("rm", "-f", FILL))
    b.kill_children()
    for drv, s in SERVERS.items():
        record(publish, drv, 1, "rm", timed_docker("rm", "-f", s.cname))
    return {"rate": rates.rate, "publish": publish, "proxies": proxies, "errors": rates.errors,
            "targets": rates.targets, "rate_secs": b.p["rate_secs"], "flag": PROXY_OFF_FLAG}
