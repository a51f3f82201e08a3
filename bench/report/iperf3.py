"""Section 4: throughput (iperf3, TCP) host <-> container and container <-> container."""

from __future__ import annotations

from .charts import DOCKER_C, OTHER_C, PYNET_C, bars
from .fmt import fmt, med, med_spread, ratio
from .page import Page

KEYS = ["pynet nat", "docker bridge", "hand-built veth+bridge"]


def headline(d: dict, r: dict) -> list[str]:
    parts = []
    for path, per in d["gbps"].items():
        pv, dv = med(per.get("pynet nat", [])), med(per.get("docker bridge", []))
        parts.append(f"{path} {fmt(pv)} vs {fmt(dv)} Gbit/s ({ratio(pv, dv)})")
    return ["iperf3, pynet vs Docker bridge: " + "; ".join(parts) + "."]


def render(page: Page, d: dict) -> None:
    page.add(f"`iperf3 -t {d['secs']}` between the host and a container, and between two containers of the "
             "same network. iperf3 runs on the host inside the container's network namespace "
             "(`nsenter -t PID -n`): the busybox image has no iperf3. The third column is a hand-built "
             "baseline: two namespaces and the host on a Linux bridge that sits in its own namespace (no "
             "firewall rules on that path).")
    rows = []
    for path, per in d["gbps"].items():
        pynet, docker, hand = (med(per.get(k, [])) for k in KEYS)
        rows.append([path, *(med_spread(per.get(k, [])) for k in KEYS), ratio(pynet, docker), ratio(pynet, hand)])
    page.table(["path", "pynet Gbit/s (min–max)", "Docker bridge", "hand-built", "pynet ÷ Docker",
                "pynet ÷ hand-built"], rows)
    groups = list(d["gbps"])
    series = {k: [d["gbps"][g].get(k, []) for g in groups] for k in KEYS}
    page.chart(bars("iperf3 TCP throughput", "Gbit/s", groups, series, [PYNET_C, DOCKER_C, OTHER_C]),
               "iperf3.png", "iperf3")
