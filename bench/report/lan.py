"""Section 6: throughput container <-> LAN (iperf3, TCP): each pynet mode against its baseline."""

from __future__ import annotations

from shared import LAN_PAIRS, LAN_PARENT, NAME

from .charts import OTHER_C, PYNET_C, bars
from .fmt import fmt, med, med_spread, ratio
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    parts = []
    for path, per in d["gbps"].items():
        pp = []
        for a, b in LAN_PAIRS:
            va, vb = med(per.get(a, [])), med(per.get(b, []))
            pp.append(f"{a.replace('pynet ', '')} {fmt(va)} vs {b} {fmt(vb)} ({ratio(va, vb)})")
        parts.append(f"{path}: " + ", ".join(pp))
    return ["iperf3 container ↔ LAN client, Gbit/s, pynet vs baseline: " + "; ".join(parts) + "."]


def render(page: Page, d: dict) -> None:
    par = LAN_PARENT
    page.add(f"A LAN made of namespaces, as `tests/e2e/lan.py` builds it: a Linux bridge in `{NAME}-sw`, the LAN "
             f"client `{NAME}-cl` ({d['client']}), a router `{NAME}-rt`, and the host's uplink `{par}` (a veth "
             f"into the switch, the `parent` of the LAN modes; subnet {d['subnet']}). The iperf3 server runs in "
             f"the LAN client; the client (`iperf3 -t {d['secs']}`, `-R` for LAN → container) in the container's "
             "network namespace (`nsenter`). Each pair is a pynet mode and its baseline:")
    page.bullets([
        "**pynet nat** vs **Docker bridge**: routed by the host and masqueraded (both directions use "
        "the connection the container opened; no published port).",
        f"**pynet transparent** (`-o mode=transparent -o parent={par} --ip "
        f"{d['ips']['pynet transparent']}`) vs a **hand-built macvlan**: `ip link add link {par} type "
        "macvlan mode bridge`, moved into a namespace.",
        f"**pynet l2bridge** (`-o mode=l2bridge -o parent={par} --gateway ... --ip "
        f"{d['ips']['pynet l2bridge']}`) vs a **hand-built routed veth**: a namespace behind a veth, a "
        f"/32 route to it, `proxy_arp` on the veth and `ip neigh add proxy` on {par}, and no nftables of "
        "its own (only two DOCKER-USER accepts for its veth, as Docker's FORWARD policy is drop; pynet "
        "adds the same for its links), no policy routing.",
    ])
    page.add("The transparent and l2bridge networks share the LAN's subnet, which Docker's default IPAM will "
             "not hand out twice, so each is created (network + container) for its turn in a round and removed "
             "after it; the order of the six setups rotates each round.")
    rows = []
    for path, per in d["gbps"].items():
        for a, b in LAN_PAIRS:
            va, vb = per.get(a, []), per.get(b, [])
            rows.append([path, a, med_spread(va), b, med_spread(vb), ratio(med(va), med(vb))])
    page.table(["path", "pynet", "Gbit/s (min–max)", "baseline", "Gbit/s (min–max)", "pynet ÷ baseline"], rows)
    paths = list(d["gbps"])
    groups = [f"{a.replace('pynet ', '')}\n{path.replace('container', 'ctr')}" for a, _ in LAN_PAIRS for path in paths]
    series = {"pynet": [d["gbps"][path].get(a, []) for a, _ in LAN_PAIRS for path in paths],
              "baseline (Docker bridge / macvlan / routed veth)":
                  [d["gbps"][path].get(b, []) for _, b in LAN_PAIRS for path in paths]}
    page.chart(bars("iperf3 TCP throughput, container ↔ LAN client", "Gbit/s", groups, series, [PYNET_C, OTHER_C]),
               "iperf3_lan.png", "iperf3 LAN")
