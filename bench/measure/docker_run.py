"""Section 2: `docker run --rm busybox true` on a pynet nat network, a user-defined Docker bridge and
--net none, one at a time and par_n at once."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

from common import BR_NET, DOCKER, IMAGE, LABEL, NAT_NET, BenchError, DockerDown, rotated, timed_docker, wait_docker

if TYPE_CHECKING:
    from runner import Bench

NETS = {"pynet nat": NAT_NET, "docker bridge": BR_NET, "none": "none"}
RUN = ["run", "--rm", "--label", LABEL, "--net"]


def one(net: str) -> float | None:
    """Seconds of one `docker run --rm`; a sample voided by a dockerd restart is taken again (3 tries)."""
    for attempt in range(3):
        try:
            return timed_docker(*RUN, net, IMAGE, "true")
        except DockerDown:
            wait_docker()
    return None


def parallel(key: str, n: int) -> float:
    """Seconds until n `docker run --rm` started at once are all gone."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([DOCKER, *RUN, NETS[key], IMAGE, "true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            errs.append(err.strip())
    dt = time.perf_counter() - t0
    if errs:
        raise BenchError(f"parallel docker run on {key}: {len(errs)} of {n} failed: {errs[0][-400:]}")
    return dt


def measure(b: Bench) -> dict:
    b.ensure_networks()
    for net in NETS.values():  # warm-up (image, network first use)
        timed_docker(*RUN, net, IMAGE, "true")
    keys = list(NETS)
    seq: dict[str, list[float]] = {k: [] for k in NETS}
    for r in range(b.p["run_rounds"]):
        for k in rotated(keys, r):
            dt = one(NETS[k])
            if dt is not None:
                seq[k].append(dt)
    par: dict[str, list[float]] = {k: [] for k in NETS}
    n = b.p["par_n"]
    for r in range(b.p["par_rounds"]):
        for k in rotated(keys, r):
            par[k].append(parallel(k, n))
    return {"sequential_s": seq, "parallel_s": par, "parallel_n": n}
