"""Section 5: recovery after `kill -9`."""

from __future__ import annotations

from .fmt import fmt, med, ratio, spread
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    return [f"Recovery, `kill -9` → first Activate: {fmt(med(d['full_s']), 2)} s with {d['endpoints']} "
            f"endpoints ({fmt(med(d['empty_s']), 2)} s with none)."]


def render(page: Page, d: dict) -> None:
    n = d["endpoints"]
    page.add("`kill -9` of the daemon, then at once `pynet serve` again (as a supervisor would); the time runs "
             "from the kill to the first `/Plugin.Activate` answered 200 (pynet answers only after it has "
             "loaded its state and reconciled the kernel with it). First with one network and no endpoint, "
             f"then with {n} endpoints (each a veth pair, joined, with one published port) made "
             "through protocol calls. Not interleaved (the endpoints are made once).")
    floor = med(d["floor_s"])

    def row(label: str, v: list[float], vs_floor: bool = True) -> list:
        return [label, len(v), fmt(med(v), 3), spread(v, 3), ratio(med(v), floor) if vs_floor else "–"]

    page.table(["state", "rounds", "kill → Activate s", "min–max", "vs floor"], [
        row("floor: `pynet --help` (interpreter + CLI import)", d["floor_s"], vs_floor=False),
        row("1 network, 0 endpoints", d["empty_s"]),
        row(f"1 network, {n} endpoints, {n} ports", d["full_s"]),
    ])
    checks = d["checks_full"]
    ok = all(c["endpoints"] == n and c["ports"] >= n and not c["leftovers"] and not c["problems"] for c in checks)
    page.add(f"After every restart with {n} endpoints the daemon reported "
             f"{checks[0]['endpoints'] if checks else '?'} endpoints, {checks[0]['ports'] if checks else '?'} "
             f"published ports, no leftovers and no state problems: {'yes' if ok else 'NO: ' + str(checks)}. "
             f"Making the {n} endpoints took {d['fill_s']:.1f} s "
             f"({d['fill_s'] / n * 1000:.0f} ms each: CreateEndpoint + Join + "
             f"ProgramExternalConnectivity); deleting the network with them {d['delete_network_s']:.2f} s.")
