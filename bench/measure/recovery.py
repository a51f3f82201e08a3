"""Section 5: recovery after `kill -9` of the daemon: the time from the kill to the first answered
/Plugin.Activate of a new daemon, with no endpoint and with many endpoints in its state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from common import PYNET, sh
from daemon import attach, net_body, new_id

if TYPE_CHECKING:
    from runner import Bench

SUBNET = "10.251.101"
FIRST_HOST_PORT = 17400


def restart_rounds(b: Bench) -> tuple[list[float], list[dict]]:
    """kill -9 and start again, rounds times: seconds to ready, and what the daemon reports then."""
    times, checks = [], []
    for _ in range(b.p["rec_rounds"]):
        b.d.kill9()
        t0 = time.perf_counter()
        b.d.spawn()
        b.d.wait_ready(poll=0.002)
        times.append(time.perf_counter() - t0)
        st = b.d.status()
        checks.append({"endpoints": st["endpoints"], "ports": st["published_ports"],
                       "leftovers": len(st["leftovers_now"]), "problems": len(st["state_problems"])})
        time.sleep(0.3)
    return times, checks


def measure(b: Bench) -> dict:
    n_ep = b.p["rec_endpoints"]
    net_id = new_id()
    floor = []
    for _ in range(b.p["rec_rounds"]):
        t0 = time.perf_counter()
        sh(PYNET, "--help")
        floor.append(time.perf_counter() - t0)
    b.d.ok("/NetworkDriver.CreateNetwork", net_body(net_id, SUBNET))
    empty, empty_checks = restart_rounds(b)
    t0 = time.perf_counter()
    for i in range(n_ep):
        attach(b.d, net_id, new_id(), f"{SUBNET}.{i + 2}/24", FIRST_HOST_PORT + i)
    fill_s = time.perf_counter() - t0
    b.rss_mark(f"{n_ep} endpoints, {n_ep} ports")
    full, full_checks = restart_rounds(b)
    b.rss_mark(f"{n_ep} endpoints after kill -9 + restart")
    t0 = time.perf_counter()
    b.d.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
    del_s = time.perf_counter() - t0
    return {"endpoints": n_ep, "floor_s": floor, "empty_s": empty, "full_s": full, "fill_s": fill_s,
            "delete_network_s": del_s, "checks_empty": empty_checks, "checks_full": full_checks}
