"""Section 8: a swarm of Docker 28 nodes: task start time and node-to-node throughput, each pynet
network across the swarm next to Docker's own counterpart."""

from __future__ import annotations

from shared import SWARM_BED, SWARM_PAIRS

from .charts import OTHER_C, PYNET_C, bars
from .fmt import fmt, med, med_spread, ratio
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    start = next(iter(d["start_s"].values()))
    gbps = next(iter(d["gbps"].values()))
    parts = [f"{a.replace('pynet ', '')} {fmt(med(start[a]))} s vs {b} {fmt(med(start[b]))} s, "
             f"{fmt(med(gbps.get(a, [])))} vs {fmt(med(gbps.get(b, [])))} Gbit/s" for a, b in SWARM_PAIRS]
    return [f"Swarm of {d['nodes']} nodes, first tasks running after / node-to-node iperf3, pynet vs Docker: "
            + "; ".join(parts) + "."]


def render(page: Page, d: dict) -> None:
    page.add(f"A swarm of {d['nodes']} Docker {d.get('engine', '28')} nodes on one machine (`scripts/swarm.sh`, bed "
             f"`{SWARM_BED}`: each node a network namespace with its own dockerd on a LAN of namespaces; up in "
             f"{fmt(d.get('bed_up_s', 0), 1)} s, pynet installed from the bed's registry twice, as `pynet` and as "
             f"`pynet-overlay` with `PYNET_SCOPE=global`, in {fmt(d.get('plugin_install_s', 0), 1)} s). Each "
             "network is created for its turn in a round and removed after it: pynet overlay (`-d "
             "pynet-overlay:latest --scope swarm`) vs Docker's overlay, and pynet l2bridge vs Docker's macvlan "
             "(both through per-node `--config-only` networks and one `--scope swarm --config-from`).")
    page.bullets([
        f"**Task start**: `docker service create --replicas {d['first']}` (one task per node, so each node "
        f"also creates the network: CreateNetwork) until `docker service ls` shows {d['first']}/{d['first']} "
        f"running, then `docker service scale` to {d['more']} (the network exists) until all run. Polled on "
        "the manager every ~0.1 s (the CLI round trip): a resolution of about 0.1 s. pynet l2bridge's "
        "time includes its LAN address probe (`probe_wait`, 0.2 s a container by default: section 6b).",
        f"**Throughput**: `iperf3 -t {d['secs']}` from the task on node 2 to the task on node 1 (`-R` for the "
        "other way), each run inside the task's network namespace (`nsenter`). The first row of each path is "
        "the nodes' own LAN addresses (no overlay, no container): the ceiling of this LAN of veths.",
    ])
    rows = []
    for phase, per in d["start_s"].items():
        for a, b in SWARM_PAIRS:
            rows.append([phase, a, med_spread(per.get(a, [])), b, med_spread(per.get(b, [])),
                         ratio(med(per.get(a, [])), med(per.get(b, [])))])
    page.table(["tasks", "pynet", "s (min–max)", "Docker", "s (min–max)", "pynet ÷ Docker"], rows)
    rows = []
    for path, per in d["gbps"].items():
        rows.append([path, "node to node (underlay)", fmt(med(per.get("node to node (underlay)", []))) + " (once)",
                     "", "", ""])
        for a, b in SWARM_PAIRS:
            rows.append([path, a, med_spread(per.get(a, [])), b, med_spread(per.get(b, [])),
                         ratio(med(per.get(a, [])), med(per.get(b, [])))])
    page.table(["path", "pynet", "Gbit/s (min–max)", "Docker", "Gbit/s (min–max)", "pynet ÷ Docker"], rows)
    paths = list(d["gbps"])
    groups = [f"{a.replace('pynet ', '')}\n{path}" for a, _ in SWARM_PAIRS for path in paths]
    series = {"pynet": [d["gbps"][path].get(a, []) for a, _ in SWARM_PAIRS for path in paths],
              "Docker (overlay / macvlan)": [d["gbps"][path].get(b, []) for _, b in SWARM_PAIRS for path in paths]}
    page.chart(bars("iperf3 TCP, task on one swarm node ↔ task on another", "Gbit/s", groups, series,
                    [PYNET_C, OTHER_C]), "swarm_iperf3.png", "swarm iperf3")
