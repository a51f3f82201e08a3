"""Section 7: section 3's connection rate (0, 1,000 and 10,000 other ports) and publish time against
Docker with --userland-proxy=false. Restarts dockerd with the flag (once the shared test suite is done),
measures pynet again, interleaved, on that dockerd, and restores the original dockerd."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import BenchError, docker, dockerd_pid, engine, log, rotated, sh, timed_docker, wait_docker

from .connserver import (FILL, SERVERS, Rates, private_engine, proxy_mem_mb, publish_10000, record,
                         republish_server, run_filler, run_server_container, wait_ports)

if TYPE_CHECKING:
    from runner import Bench

PROXY_OFF_FLAG = "--userland-proxy=false"
CI_DONE = Path("/tmp/ci-done")  # the shared test suite is done: dockerd may be restarted
DOCKER_10K_NOTE = (
    "Docker's 10,000 other ports are its 1,000-port filler (`docker run -p 30000-30999:30000-30999`) plus, for "
    "ports 31000-39999, copies of the very rules Docker wrote for that filler's port 30000 (every iptables rule "
    "that names it, from `iptables-save`: the DNAT in nat DOCKER, the hairpin MASQUERADE in nat POSTROUTING, the "
    "ACCEPT in filter DOCKER), appended in one `iptables-restore --noflush` and deleted the same way before the "
    "filler goes: the chains Docker would have after publishing 10,000 ports, in one step. `docker run -p` of "
    "10,000 ports itself is not run: with the proxy off Docker runs several iptables commands a port, each "
    "reading the whole ruleset, so the time a port takes grows with the ports already there: 10,000 would take "
    "more than ten times the 1,000 of table 7b (the 1-port rows show the growth).")


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


# ---------------------------------------------------------------- Docker's rules for 10,000 ports
def docker_port_rules(template: int, ports: range) -> dict[str, list[str]]:
    """Every iptables rule Docker wrote for host port template (iptables-save), as it would be for each
    port of ports: {table: ["-A CHAIN ...", ...]}, in the order Docker wrote them."""
    pat = re.compile(rf"(--dport |:){template}\b")
    found: dict[str, list[str]] = {}
    table = ""
    for line in sh("iptables-save", timeout=300).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and pat.search(line):
            found.setdefault(table, []).append(line)
    if "nat" not in found or not any("DNAT" in x for x in found["nat"]):
        raise BenchError(f"no DNAT rule of Docker's for port {template} in iptables-save: {found}")
    return {t: [pat.sub(lambda m: f"{m.group(1)}{p}", x) for p in ports for x in lines] for t, lines in found.items()}


def iptables_batch(rules: dict[str, list[str]], verb: str) -> float:
    """Append (-A) or delete (-D) the rules in one `iptables-restore --noflush`: seconds."""
    text = "".join(f"*{t}\n" + "".join(f"{verb} {x[3:]}\n" for x in lines) + "COMMIT\n" for t, lines in rules.items())
    t0 = time.perf_counter()
    sh("iptables-restore", "--noflush", input=text, timeout=1800)
    return time.perf_counter() - t0


def docker_10000(publish: dict) -> tuple[list[str], dict]:
    """Docker's 10,000 other ports (DOCKER_10K_NOTE): the filler's `docker run` (its 1,000 ports) and
    the rules of the other 9,000 appended. Returns (the filler containers, the rules to delete)."""
    s = SERVERS["docker"]
    lo, hi = (int(x) for x in s.fill.split("-"))
    top = int(s.fill10k.split("-")[1])
    dt = run_filler("docker")
    rules = docker_port_rules(lo, range(hi + 1, top + 1))
    dt += iptables_batch(rules, "-A")
    record(publish, "docker (1,000 by docker run + 9,000 rules copied)", 10000, "add", dt)
    return [FILL], rules


# ---------------------------------------------------------------- the section
def measure(b: Bench) -> dict:
    if b.engine_sock:  # an engine of the bench's own, started with the flag (scripts/bench-engine.sh)
        engine_said = private_engine(b, PROXY_OFF_FLAG)
        try:
            return {**_measure(b), "engine": engine_said}
        finally:
            b.kill_children()
            b.section_cleanup()
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
    notes: list[str] = []
    for drv, s in SERVERS.items():
        docker("rm", "-f", s.cname, check=False)
        record(publish, drv, 1, "add", run_server_container(drv))
    rates = Rates(b, {"host IP": b.host_ip, "127.0.0.1": "127.0.0.1"})
    for drv in SERVERS:
        rates.start(drv)
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
            record(publish, drv, "1 after 1000", "add", republish_server(b, rates, drv))
            rates.sample("1000", drv, b.p["rate_samples"])
            record(publish, drv, 1000, "rm", timed_docker("rm", "-f", FILL))
    notes.append(DOCKER_10K_NOTE)
    for rep in range(b.p["publish_reps_10k"]):
        for drv in rotated(list(SERVERS), rep):
            log(f"10,000 other ports on {drv}")
            rules: dict = {}
            if drv == "docker":
                fill, rules = docker_10000(publish)
                how = "docker (1,000 by docker run + 9,000 rules copied)"
                proxies["docker-proxy processes, 10,000 ports"] = proxy_mem_mb(30000, 39999)[0]
            else:
                suffix, fill, dt, note = publish_10000(drv)
                if note and note not in notes:
                    notes.append(note)
                how = drv + suffix
                record(publish, how, 10000, "add", dt)
            record(publish, drv, "1 after 10000", "add", republish_server(b, rates, drv))
            rates.sample("10000", drv, b.p["rate_samples"])
            t0 = time.perf_counter()
            if rules:
                iptables_batch(rules, "-D")
            for c in fill:
                timed_docker("rm", "-f", c)
            record(publish, how, 10000, "rm", time.perf_counter() - t0)
    b.kill_children()
    rates.servers.clear()
    for drv, s in SERVERS.items():
        record(publish, drv, 1, "rm", timed_docker("rm", "-f", s.cname))
    return {**rates.result(), "publish": publish, "proxies": proxies, "notes": notes, "flag": PROXY_OFF_FLAG}
