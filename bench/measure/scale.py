"""Section 11: N containers on one network (issue 17's 200 and 1,000): `docker run -d` one after
another until N run, then one `docker rm -f` of all of them; pynet nat vs a Docker bridge network,
each on a network of its own made for the turn (a /21: room for 1,000). The daemon's own call log
gives CreateEndpoint/Join/DeleteEndpoint durations at the first and the last containers: a cost that
grows with the network's size shows there (the state file rewritten at every call, before O(1))."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from common import DRIVER, IMAGE, LABEL, NAME, docker, log, rotated

from .lan_run import calls_ms, log_size

if TYPE_CHECKING:
    from runner import Bench

NETS = {"pynet nat": (DRIVER, "10.252.0.0/21"), "docker bridge": ("bridge", "10.252.8.0/21")}
NET = f"{NAME}-scale"
EDGE = 20  # containers at each end whose calls are compared


def turn(b: Bench, key: str, n: int) -> dict:
    driver, subnet = NETS[key]
    docker("network", "create", "-d", driver, "--label", LABEL, "--subnet", subnet, NET)
    ids: list[str] = []
    try:
        mark = mark_last = log_size(b)
        first: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for i in range(n):
            ids.append(docker("run", "-d", "--label", LABEL, "--net", NET, IMAGE, "sleep", "3600").stdout.strip())
            if i == EDGE - 1:
                first = calls_ms(b, mark)
            if i == n - EDGE - 1:
                mark_last = log_size(b)
        start_s = time.perf_counter() - t0
        last = calls_ms(b, mark_last)
        mark = log_size(b)
        t0 = time.perf_counter()
        docker("rm", "-f", *ids, timeout=3600)
        rm_s = time.perf_counter() - t0
        ids = []
        removal = calls_ms(b, mark)
    finally:
        if ids:
            docker("rm", "-f", *ids, check=False, timeout=3600)
        remove_network(key, n)
    if key != "pynet nat":  # the log is pynet's: Docker's bridge has none
        first, last, removal = {}, {}, {}
    calls = {f"{c} ms, first {EDGE}": first.get(c, []) for c in ("CreateEndpoint", "Join")}
    calls |= {f"{c} ms, last {EDGE}": last.get(c, []) for c in ("CreateEndpoint", "Join")}
    calls["DeleteEndpoint ms, all"] = removal.get("DeleteEndpoint", [])
    return {"start_s": start_s, "rm_s": rm_s, "calls": calls}


def remove_network(key: str, n: int) -> None:
    """Right after a `docker rm -f` of many containers, Docker may still count endpoints on the network
    ("has active endpoints", no container left): seen with its bridge and with pynet. Tried for 60 s."""
    for _ in range(60):
        gone = docker("network", "rm", NET, check=False)
        if gone.returncode == 0 or "not found" in gone.stderr:
            return
        time.sleep(1)
    log(f"scale: {key}: network rm after {n} containers failed for 60 s: {gone.stderr.strip()[-300:]}")


def measure(b: Bench) -> dict:
    docker("network", "rm", NET, check=False)
    b.ensure_networks()
    timed = {}
    for n in b.p["scale_levels"]:
        for key in rotated(list(NETS), n // 100):
            timed.setdefault(str(n), {})[key] = turn(b, key, n)
    return {"levels": timed, "edge": EDGE}
