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


def measure(b: Bench) -> dict:
    n = b.p["proto_cycles"]
    every = b.p["rss_every"]
    lat: dict[str, list[float]] = {}
    rss = [(0, b.d.rss())]
    t0 = time.monotonic()
    for i in range(n):
        run_cycle(b, lat)
        if (i + 1) % every == 0:
            rss.append((i + 1, b.d.rss()))
    wall = time.monotonic() - t0
    time.sleep(1)
    rss_after = b.d.rss()
    b.rss_mark(f"after {n} protocol cycles")
    paced: dict[str, list[float]] = {}
    for _ in range(b.p["proto_paced_cycles"]):
        time.sleep(PACE_S)  # the calls of one cycle back-to-back, as Docker sends them; a pause between
        run_cycle(b, paced)
    time.sleep(3)  # the reaper's MAX_WAIT: links retired by the last cycles are unregistered
    leftovers = b.d.status().get("leftovers_now")
    return {"cycles": n, "latency_ms": lat, "rss": rss, "rss_after_settle": rss_after, "wall_s": wall,
            "leftovers": leftovers, "paced_ms": paced, "pace_s": PACE_S}
