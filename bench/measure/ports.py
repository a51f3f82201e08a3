"""Section 3: published ports. The new-connection rate through one published port with 0, 1,000 and
10,000 other ports published (wrk, bench/loadgen.py), the time to publish and unpublish N ports, their
memory; pynet vs Docker's bridge with its default userland proxy. The servers and samplers
(connserver.py) serve section 7 too."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

from common import NAT_NET, PYNET, SOCK, BenchError, DockerDown, docker, rotated, sh, timed_docker
from shared import NO_NAT, PUBLISH_HOW

from .connserver import (CPORT, FILL, SERVERS, Rates, private_engine, proxy_mem_mb, publish_10000, record,
                         republish_server, run_filler, run_server_container, wait_ports)

if TYPE_CHECKING:
    from runner import Bench


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
    engine_said = private_engine(b) if b.engine_sock else ""  # scripts/bench-engine.sh run ports
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
    return {**run.result(), **({"engine": engine_said} if engine_said else {})}
