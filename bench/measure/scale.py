"""Section 11: N containers on one network (issue 17's 200 and 1,000): `docker run -d` one after
another until N run, then one `docker rm -f` of all of them; pynet nat vs a Docker bridge network,
each on a network of its own made for the turn (a /21: room for 1,000). The daemon's own call log
gives CreateEndpoint/Join/DeleteEndpoint durations at the first and the last containers: a cost that
grows with the network's size shows there (the state file rewritten at every call, before O(1))."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from common import DRIVER, IMAGE, LABEL, NAME, BenchError, docker, log, rotated

from .lan_run import calls_ms, log_size

if TYPE_CHECKING:
    from runner import Bench

NETS = {"pynet nat": (DRIVER, 0), "docker bridge": ("bridge", 1)}
NET = f"{NAME}-scale"
MAX_TURNS = 6  # per level: each turn's network has a /21 of its own in 10.252.0.0/16
EDGE = 20  # containers at each end whose calls are compared
RM_WAIT_S = 30


def net_of(key: str, level: int, r: int = 0) -> tuple[str, str]:
    """A network name and a /21 of its own for each turn (r: the turn at this level): one Docker would
    not let go (below) must not void the turns after it."""
    driver, k = NETS[key]
    slot = 2 * (MAX_TURNS * (level // 1000) + r) + k
    return f"{NET}-{'p' if driver == DRIVER else 'b'}{level}{'' if not r else f'-{r}'}", f"10.252.{8 * slot}.0/21"


def turn(b: Bench, key: str, n: int, r: int = 0) -> dict:
    driver = NETS[key][0]
    net, subnet = net_of(key, n, r)
    docker("network", "create", "-d", driver, "--label", LABEL, "--subnet", subnet, net)
    ids: list[str] = []
    try:
        mark = mark_last = log_size(b)
        first: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for i in range(n):
            ids.append(docker("run", "-d", "--label", LABEL, "--net", net, IMAGE, "sleep", "3600").stdout.strip())
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
        remove_network(key, n, net)
    if key != "pynet nat":  # the log is pynet's: Docker's bridge has none
        first, last, removal = {}, {}, {}
    calls = {f"{c} ms, first {EDGE}": first.get(c, []) for c in ("CreateEndpoint", "Join")}
    calls |= {f"{c} ms, last {EDGE}": last.get(c, []) for c in ("CreateEndpoint", "Join")}
    calls["DeleteEndpoint ms, all"] = removal.get("DeleteEndpoint", [])
    return {"start_s": start_s, "rm_s": rm_s, "calls": calls}


def remove_network(key: str, n: int, net: str) -> None:
    """Right after a `docker rm -f` of many containers, Docker 20.10 may still count endpoints on the
    network ("has active endpoints", no container left): seen with its bridge and with pynet, and it does
    not go by waiting (seen for 180 s; a dockerd restart clears it). Tried for RM_WAIT_S, then left for
    the bench's clean-up (by label, at the end): the next turn has a network and subnet of its own."""
    for _ in range(RM_WAIT_S):
        gone = docker("network", "rm", net, check=False)
        if gone.returncode == 0 or "not found" in gone.stderr:
            return
        time.sleep(1)
    log(f"scale: {key}: network rm after {n} containers failed for {RM_WAIT_S} s: {gone.stderr.strip()[-300:]}")


def measure(b: Bench) -> dict:
    """One or more turns per level (scale_turns), pynet and Docker in a rotating order, each pair close
    in time: a level's figures are its turns' medians, and the ratio to compare is the median of the
    pairs' ratios (Docker's own turn moves by 10 % from one to the next on this machine)."""
    levels = list(zip(b.p["scale_levels"], b.p["scale_turns"]))
    if any(not 0 < turns <= MAX_TURNS for _, turns in levels):
        raise BenchError(f"scale_turns: 1 to {MAX_TURNS} per level, got {b.p['scale_turns']}")
    for key in NETS:
        for n, turns in levels:
            for r in range(turns):
                docker("network", "rm", net_of(key, n, r)[0], check=False)
    b.ensure_networks()
    timed = {}
    for n, turns in levels:
        runs: dict[str, list[dict]] = {key: [] for key in NETS}
        for r in range(turns):
            for key in rotated(list(NETS), n // 100 + r):
                runs[key].append(turn(b, key, n, r))
        timed[str(n)] = {key: merged(v) for key, v in runs.items()}
    return {"levels": timed, "edge": EDGE}


def merged(turns: list[dict]) -> dict:
    """A level's turns for one network: the median turn's figures, every turn's times, the first turn's
    call durations (the others' would repeat them)."""
    return {"start_s": statistics.median_high(t["start_s"] for t in turns),
            "rm_s": statistics.median_high(t["rm_s"] for t in turns), "calls": turns[0]["calls"],
            "start_turns_s": [t["start_s"] for t in turns], "rm_turns_s": [t["rm_s"] for t in turns]}
