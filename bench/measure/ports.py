"""Section 3: published ports. The new-connection rate through one published port with 0, 1,000 and
10,000 other ports published (wrk, bench/loadgen.py), the time to publish and unpublish N ports, their
memory; pynet vs Docker's bridge with its default userland proxy. Its servers and samplers serve
section 7 too."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import loadgen
from common import (BR_NET, NAME, NAT_NET, PYNET, SOCK, BenchError, DockerDown, docker, docker_down, pss_kb,
                    rotated, sh, sleeper, timed_docker)
from shared import NO_NAT, PUBLISH_HOW

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


# ---------------------------------------------------------------- helpers (sections 3 and 7)
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
    count, kb = 0, 0
    for pid in sh("pgrep", "-x", "docker-proxy", check=False).stdout.split():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-host-port" in args:
                port = int(args[args.index(b"-host-port") + 1])
                if lo <= port <= hi:
                    count += 1
                    kb += pss_kb(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return count, kb / 1024


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


# ---------------------------------------------------------------- section 3
class Ports:
    """One run of section 3; each step a method, in the order measure() calls them."""

    def __init__(self, b: Bench):
        self.b = b
        self.publish: dict = {}
        self.rates = Rates(b, {"host IP": b.host_ip, "127.0.0.1": "127.0.0.1"}, self.alive)
        self.memory: dict = {}
        self.blocked: list[float] = []  # Activate round trips sent while `pynet port rm` of 10,000 ports runs
        self.notes: list[str] = []
        self.base = 0  # published ports before the fillers

    def published(self) -> int:
        return self.b.d.status()["published_ports"] - self.base

    def expect(self, n: int, after: str = "") -> None:
        got = self.published()
        if got != n:
            raise BenchError(f"pynet shows {got} published ports{after}, expected {n}")

    def alive(self, drv: str) -> None:
        """A sample with failed requests counts only if its server and container still run."""
        cname, proc = SERVERS[drv].cname, self.rates.servers[drv]
        running = docker("inspect", "-f", "{{.State.Running}}", cname, check=False).stdout.strip()
        if proc.poll() is not None or running != "true":
            raise DockerDown(f"the {drv} connection server (container {cname}) is gone: dockerd restarted?")

    def servers_up(self) -> None:
        """The servers' own containers: `docker run -d -p` of 1 port (`docker rm -f` in servers_down)."""
        for s in SERVERS.values():
            docker("rm", "-f", s.cname, check=False)
        for drv in SERVERS:
            record(self.publish, PUBLISH_HOW[drv], 1, "add", run_server_container(drv))
        for drv in SERVERS:
            self.rates.start(drv)
        wait_ports(self.rates.targets)

    def rates_alone(self) -> None:
        """No other ports; the floor: the container's own address and port, no NAT (routed over its bridge)."""
        direct = {drv: self.b.cip(s.cname, s.net) for drv, s in SERVERS.items()}
        for r in range(self.b.p["rate_rounds0"]):
            for drv in rotated(list(SERVERS), r):
                self.rates.sample("0", drv)
                self.rates.one("0", drv, NO_NAT, direct[drv], CPORT)

    def with_1000(self, drv: str) -> None:
        """1,000 other ports (`docker run -p` of a range), drv's only: publish, the server's port
        published again after them, sample, remove."""
        b = self.b
        rss0 = b.d.rss() if drv == "pynet" else 0
        record(self.publish, PUBLISH_HOW[drv], 1000, "add", run_filler(drv))
        if drv == "pynet":
            self.expect(1000)
            self.memory["pynet daemon memory growth, 1,000 ports (RSS, MiB)"] = (b.d.rss() - rss0) / 1024
        else:
            count, mb = proxy_mem_mb(30000, 30999)
            self.memory["docker-proxy processes, 1,000 ports"] = count
            self.memory["docker-proxy memory, 1,000 ports (summed PSS, MiB)"] = mb
        republish_server(b, self.rates, drv)
        self.rates.sample("1000", drv, b.p["rate_samples"])
        record(self.publish, PUBLISH_HOW[drv], 1000, "rm", timed_docker("rm", "-f", FILL))

    def with_10000(self, rep: int) -> None:
        """10,000 other ports: pynet only (Docker: 20,000 docker-proxy processes; see the report)."""
        b = self.b
        rss0 = b.d.rss()
        suffix, fill, dt, note = publish_10000("pynet")
        if note and note not in self.notes:
            self.notes.append(note)
        how = PUBLISH_HOW["pynet"] + suffix
        record(self.publish, how, 10000, "add", dt)
        self.expect(10000)
        self.memory["pynet daemon memory growth, 10,000 ports (RSS, MiB)"] = (b.d.rss() - rss0) / 1024
        b.rss_mark(f"10,000 published ports (round {rep + 1})")
        republish_server(b, self.rates, "pynet")
        self.rates.sample("10000", "pynet", b.p["rate_samples"])
        t0 = time.perf_counter()
        for c in fill:
            timed_docker("rm", "-f", c)
        record(self.publish, how, 10000, "rm", time.perf_counter() - t0)

    def port_add_rm(self) -> None:
        """`pynet port add/rm` of 1,000 and 10,000 specs on a running container (CLI -> control API, one call)."""
        pa = self.b.container("pa", NAT_NET)
        for n in (1000, 10000):
            specs = [f"{20000 + i}:{20000 + i}" for i in range(n)]
            t0 = time.perf_counter()
            sh(PYNET, "--socket", SOCK, "port", "add", pa, *specs, timeout=900)
            record(self.publish, "pynet port add", n, "add", time.perf_counter() - t0)
            self.expect(n, " after port add")
            t0 = time.perf_counter()
            self.port_rm(pa, specs, probe=n == 10000)
            record(self.publish, "pynet port add", n, "rm", time.perf_counter() - t0)
        docker("rm", "-f", pa)

    def port_rm(self, container: str, specs: list[str], probe: bool) -> None:
        """`pynet port rm`; probe: does the daemon answer anything else meanwhile (Docker's calls for
        other containers)? The Activate round trip goes to self.blocked."""
        rm = subprocess.Popen([PYNET, "--socket", SOCK, "port", "rm", container, *specs],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if probe:
            time.sleep(0.3)
            if rm.poll() is None:
                a0 = time.perf_counter()
                self.b.d.ok("/Plugin.Activate", {})
                self.blocked.append(time.perf_counter() - a0)
        _, err = rm.communicate(timeout=900)
        if rm.returncode != 0:
            raise BenchError(f"pynet port rm: {err.strip()[-400:]}")

    def servers_down(self) -> None:
        self.b.kill_children()  # the connection servers, before their containers go
        self.rates.servers.clear()
        for drv, s in SERVERS.items():
            record(self.publish, PUBLISH_HOW[drv], 1, "rm", timed_docker("rm", "-f", s.cname))

    def result(self) -> dict:
        return {**self.rates.result(), "publish": self.publish, "activate_during_rm_s": self.blocked,
                "memory": self.memory, "notes": self.notes}


def measure(b: Bench) -> dict:
    b.ensure_networks()
    run = Ports(b)
    run.servers_up()
    run.rates_alone()
    run.base = b.d.status()["published_ports"]
    for rep in range(b.p["publish_reps"]):
        for drv in rotated(list(SERVERS), rep):
            run.with_1000(drv)
        run.with_10000(rep)
        run.port_add_rm()
    run.servers_down()
    return run.result()
