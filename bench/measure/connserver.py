"""The connection servers of sections 3 and 7 and their samplers: a server container per driver
behind one published port, bench/connrate.py in its netns, the filler containers that publish the
other ports, and Rates, which drives wrk (bench/loadgen.py) against them."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import loadgen
from common import (BR_NET, NAME, NAT_NET, BenchError, DockerDown, docker, docker_down, pss_kb, sleeper,
                    timed_docker)

if TYPE_CHECKING:
    from runner import Bench

HOST_PY = "/usr/bin/python3"  # the connection-rate server runs in a container's netns: stdlib only
CONNRATE = str(Path(__file__).resolve().parents[1] / "connrate.py")
CPORT = 8080  # the server's port in its container
FILL = f"{NAME}-fill"  # the container that publishes the other ports


class Server(NamedTuple):
    """A driver's connection server: its container, network, published port, and the ranges its
    filler publishes for the 1,000- and 10,000-other-ports levels."""
    cname: str
    net: str
    port: int
    fill: str
    fill10k: str


SERVERS = {"pynet": Server(f"{NAME}-srvp", NAT_NET, 17080, "20000-20999", "20000-29999"),
           "docker": Server(f"{NAME}-srvd", BR_NET, 17081, "30000-30999", "30000-39999")}



def run_server_container(drv: str) -> float:
    """`docker run -d -p PORT:8080` of drv's server container: seconds."""
    s = SERVERS[drv]
    return timed_docker(*sleeper(s.cname, s.net, "-p", f"{s.port}:{CPORT}"))


def run_filler(drv: str) -> float:
    """`docker run -d -p` of the 1,000 other ports on drv's network: seconds."""
    s = SERVERS[drv]
    return timed_docker(*sleeper(FILL, s.net, "-p", f"{s.fill}:{s.fill}"))


def record(publish: dict, how: str, n: int | str, what: str, dt: float) -> None:
    """publish["how|N"] -> {"add": [seconds...], "rm": [seconds...]}"""
    publish.setdefault(f"{how}|{n}", {"add": [], "rm": []})[what].append(dt)


def start_server(b: Bench, cname: str) -> subprocess.Popen:
    """bench/connrate.py in the container's netns, pinned to the server's CPU (taskset and nsenter
    exec: the Popen's pid is the server's)."""
    pid = b.cpid(cname)
    p = b.spawn([*loadgen.server_prefix(), "nsenter", "-t", pid, "-n", HOST_PY, CONNRATE, "serve", str(CPORT)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        raise BenchError(f"connection server in {cname} did not start: {line} {p.stderr.read()[-500:]}")
    return p


def probe(host: str, port: int) -> str:
    """One request to the connection server: "" when its answer came, else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = s.recv(64)
        return "" if got.startswith(b"HTTP/1.1 200") else f"answer {got[:40]!r}"
    except OSError as e:
        return f"{e.__class__.__name__}: {e}"


def wait_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = probe(host, port)
        if not last:
            return
        time.sleep(0.2)
    raise BenchError(f"{host}:{port} does not answer: {last}")


def wait_ports(targets: dict[str, str]) -> None:
    for s in SERVERS.values():
        for t in targets.values():
            wait_port(t, s.port)


def proxy_mem_mb(lo: int, hi: int) -> tuple[int, float]:
    """(count, summed PSS MiB) of docker-proxy processes for host ports lo..hi."""
    pids = loadgen.proxies(lo, hi)
    kb = 0
    for pid in pids:
        try:
            kb += pss_kb(pid)
        except OSError:  # gone meanwhile
            continue
    return len(pids), kb / 1024


class Rates:
    """rate[level][driver][target] -> connections/s and cpu[level][driver][target] -> the CPU shares
    (bench/loadgen.py), one sample a call of sample(); errors: the failed requests. check(drv) runs
    before a sample with failed requests counts. servers[drv]: the running server's process."""

    def __init__(self, b: Bench, targets: dict[str, str], check: Callable[[str], None] | None = None):
        self.b, self.targets, self.check = b, targets, check
        self.servers: dict[str, subprocess.Popen] = {}
        self.rate: dict = {}
        self.cpu: dict = {}
        self.errors: list[str] = []

    def start(self, drv: str) -> None:
        """drv's server (again: a new container is a new process)."""
        self.stop(drv)
        self.servers[drv] = start_server(self.b, SERVERS[drv].cname)

    def stop(self, drv: str) -> None:
        old = self.servers.pop(drv, None)
        if old:
            self.b.kill_child(old)

    def one(self, level: str, drv: str, tname: str, host: str, port: int) -> None:
        b = self.b
        r = loadgen.run(host, port, b.p["rate_secs"], b.p["rate_conns"], self.servers[drv].pid)
        if r["errors"] and self.check:
            self.check(drv)
        self.rate.setdefault(level, {}).setdefault(drv, {}).setdefault(tname, []).append(r["rate"])
        self.cpu.setdefault(level, {}).setdefault(drv, {}).setdefault(tname, []).append(r["cpu"])
        if r["errors"]:
            self.errors.append(f"{level} {drv} {tname}: {r['errors']} failed requests of {r['requests']} "
                               f"({', '.join(f'{k} {v}' for k, v in r['error_kinds'].items())})")

    def sample(self, level: str, drv: str, times: int = 1) -> None:
        for _ in range(times):
            for tname, t in self.targets.items():
                self.one(level, drv, tname, t, SERVERS[drv].port)

    def result(self) -> dict:
        """The rate part of a section's results."""
        return {"rate": self.rate, "cpu": self.cpu, "errors": self.errors, "targets": self.targets,
                "rate_secs": self.b.p["rate_secs"], "load": loadgen.describe(self.b.p["rate_conns"])}


def republish_server(b: Bench, rates: Rates, drv: str) -> float:
    """drv's server container run again, after the other ports: its port is the last one published
    (the end of Docker's iptables chains; pynet's maps have no order). Returns its `docker run` seconds."""
    s = SERVERS[drv]
    rates.stop(drv)
    timed_docker("rm", "-f", s.cname)
    dt = run_server_container(drv)
    rates.start(drv)
    for t in rates.targets.values():
        wait_port(t, s.port)
    return dt


def publish_10000(drv: str) -> tuple[str, list[str], float, str]:
    """drv's 10,000 other ports in one `docker run -p`, or, for pynet where it refuses the one (its
    max_body), as 2 × 5,000: (publish key suffix, the filler containers, seconds, a note or "")."""
    s = SERVERS[drv]
    t0 = time.perf_counter()
    p = docker(*sleeper(FILL, s.net, "-p", f"{s.fill10k}:{s.fill10k}"), check=False, retry=False, timeout=7200)
    one_run_s = time.perf_counter() - t0
    if p.returncode == 0:
        return "", [FILL], one_run_s, ""
    if docker_down(p):
        raise DockerDown(p.stderr.strip())
    docker("rm", "-f", FILL, check=False)
    msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
    if drv != "pynet":
        raise BenchError(f"docker run -p {s.fill10k} on Docker's bridge: {msg}")
    note = (f"`docker run -p 20000-29999:20000-29999` (10,000 ports) on pynet fails: {msg} "
            "(Docker sends the whole port map in one CreateEndpoint body, ~105 bytes a port; pynet's "
            "default max_body is 1 MiB). The 10,000-port level is published as 2 containers × 5,000.")
    dt = 0.0
    for i, rng in enumerate(("20000-24999", "25000-29999")):
        dt += timed_docker(*sleeper(f"{FILL}{i}", NAT_NET, "-p", f"{rng}:{rng}"))
    return " (2×5,000)", [f"{FILL}0", f"{FILL}1"], dt, note


def private_engine(b: Bench, flag: str = "") -> str:
    """What the report says about the engine of --engine-sock (scripts/bench-engine.sh); refused
    unless its dockerd runs with flag."""
    v = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    pidfile = Path(b.engine_sock).parent / "docker.pid"  # scripts/bench-engine.sh's layout
    try:
        cmd = [a.decode() for a in Path(f"/proc/{pidfile.read_text().strip()}/cmdline").read_bytes().split(b"\0")]
    except (OSError, ValueError) as e:
        raise BenchError(f"--engine-sock {b.engine_sock}: no dockerd pid from {pidfile}: {e}") from None
    if flag and flag not in cmd:
        raise BenchError(f"--engine-sock {b.engine_sock}: its dockerd does not run with {flag}")
    how = f"started with {flag}" if flag else "with its defaults (userland proxy on)"
    return (f"Docker {v}, a dockerd of the bench's own {how} in a network namespace of its own "
            f"(`scripts/bench-engine.sh run`), pynet's daemon and the load in that namespace too; its host address "
            f"{b.host_ip} on a veth pair inside it")
