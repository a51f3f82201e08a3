"""Section 1: the latency of each protocol call Docker makes, sent straight to the daemon's socket, and
the daemon's memory over many network + endpoint create/delete cycles."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from daemon import ep_body, ep_ids, ext_body, join_body, net_body, new_id

if TYPE_CHECKING:
    from runner import Bench

SUBNET = "10.251.100"
HOST_PORT = 17300
PACE_S = 0.3  # between two cycles of the paced run: a `docker run` loop's pace (~0.3-0.5 s a container)
REST_S = 6.5  # the daemon gives freed heap back at its first 5 s tick after 1 s without a call (procmem.py)


def cycle(net_id: str, ep_id: str) -> list[tuple[str, dict]]:
    """The calls of `docker network create`, `docker run -p 80` and their removal, in Docker's order."""
    ids = ep_ids(net_id, ep_id)
    return [
        ("Plugin.Activate", {}),
        ("CreateNetwork", net_body(net_id, SUBNET)),
        ("CreateEndpoint", ep_body(net_id, ep_id, f"{SUBNET}.2/24", HOST_PORT)),
        ("Join", join_body(net_id, ep_id, HOST_PORT)),
        ("ProgramExternalConnectivity", ext_body(net_id, ep_id, HOST_PORT)),
        ("RevokeExternalConnectivity", ids),
        ("Leave", ids),
        ("DeleteEndpoint", ids),
        ("DeleteNetwork", {"NetworkID": net_id}),
    ]


def run_cycle(b: Bench, into: dict[str, list[float]]) -> None:
    """One cycle's calls, back-to-back; each call's client-side ms appended to into[call]."""
    for key, body in cycle(new_id(), new_id()):
        path = "/Plugin.Activate" if key == "Plugin.Activate" else f"/NetworkDriver.{key}"
        into.setdefault(key, []).append(b.d.timed(path, body) * 1000)


def at_rest(b: Bench, cycles: int) -> dict:
    """The daemon's memory once it has been idle long enough to give freed heap back (its idle trim,
    waited for): VmRSS read from /proc first, then what the daemon counts (heap in use, Python's blocks)."""
    trims = (b.d.status().get("memory") or {}).get("idle_trims")
    for _ in range(3):
        time.sleep(REST_S)
        rss_kb = b.d.rss()
        mem = b.d.status().get("memory") or {}
        if trims is None or mem.get("idle_trims", 0) > trims:
            break
    return {"cycles": cycles, "rss_kb": rss_kb, "trimmed": trims is not None and mem.get("idle_trims", 0) > trims,
            "heap_in_use": mem.get("heap_in_use"), "python_blocks": mem.get("python_blocks")}


def measure(b: Bench) -> dict:
    n = b.p["proto_cycles"]
    every = b.p["rss_every"]
    warm = n // 5  # cycles before the daemon's caches and pools have their size
    lat: dict[str, list[float]] = {}
    rest = [at_rest(b, 0)]
    rss = [(0, b.d.rss())]
    wall = 0.0
    for i in range(n):
        t0 = time.monotonic()
        run_cycle(b, lat)
        wall += time.monotonic() - t0
        if (i + 1) % every == 0:
            rss.append((i + 1, b.d.rss()))
        if i + 1 == warm:
            rest.append(at_rest(b, warm))
    time.sleep(1)
    rss_after = b.d.rss()
    rest.append(at_rest(b, n))
    b.rss_mark(f"after {n} protocol cycles")
    paced: dict[str, list[float]] = {}
    for _ in range(b.p["proto_paced_cycles"]):
        time.sleep(PACE_S)  # the calls of one cycle back-to-back, as Docker sends them; a pause between
        run_cycle(b, paced)
    time.sleep(3)  # the reaper's MAX_WAIT: links retired by the last cycles are unregistered
    leftovers = b.d.status().get("leftovers_now")
    return {"cycles": n, "latency_ms": lat, "rss": rss, "rss_after_settle": rss_after, "at_rest": rest, "wall_s": wall,
            "leftovers": leftovers, "paced_ms": paced, "pace_s": PACE_S}
