"""Section 8: a swarm of two Docker 28 nodes (scripts/swarm.sh, a bed of its own named SWARM_BED):
swarm task start time and node-to-node throughput over pynet (l2bridge, overlay) and over Docker's
macvlan and overlay, in the same swarm.

Needs no system dockerd but for building the plugin (scripts/plugin.sh build): `bench.py --only
swarm` measures this alone. Each network is made for its turn in a round and removed after it (the
LAN ones share the LAN's subnet, which a node's IPAM will not hand out twice), so every sample
includes what a node does for the first task of a network (CreateNetwork there).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING

from common import ROOT, BenchError, in_netns, in_pid_netns, log, rotated, sh
from shared import SWARM_BED, SWARM_PAIRS

from .iperf3 import iperf, iperf_server

if TYPE_CHECKING:
    from runner import Bench

SWARM = str(ROOT / "scripts/swarm.sh")
NODES = (1, 2)
IMAGE = "10.88.0.1:5000/busybox:latest"
LAN, ROUTER = "10.88.0.0/24", "10.88.0.1"
OVERLAY = "pynet-overlay"
FIRST, MORE = 2, 6  # tasks: one per node (the network is made on each node), then two more per node
# key: (driver, network options, or None for a LAN network through --config-only/--config-from)
NETS = {
    "pynet overlay": (f"{OVERLAY}:latest", ["--subnet", "10.90.0.0/24"]),
    "docker overlay": ("overlay", ["--subnet", "10.89.0.0/24"]),
    "pynet l2bridge": ("pynet:latest", None),
    "docker macvlan": ("macvlan", None),
}
CONFIG_OPTS = {"pynet l2bridge": ["-o", "mode=l2bridge"], "docker macvlan": []}


def swarm(*args: str, timeout: float = 600) -> str:
    p = subprocess.run(["bash", SWARM, *args], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, SWARM_NAME=SWARM_BED))
    if p.returncode != 0:
        raise BenchError(f"swarm.sh {' '.join(args)} -> {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.stderr


def dk(node: int, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, DOCKER_HOST=f"unix:///run/{SWARM_BED}/n{node}/docker.sock"))
    if check and p.returncode != 0:
        raise BenchError(f"node {node}: docker {' '.join(args[:8])} -> {p.returncode}: {p.stderr.strip()[-400:]}")
    return p


def cleanup() -> list[str]:
    """The bed, if one is up (the runner's cleanup calls this before and after a run)."""
    if not os.path.exists(f"/run/{SWARM_BED}") and not os.path.exists(f"/run/netns/{SWARM_BED}-sw"):
        return []
    try:
        swarm("down", timeout=300)
    except BenchError as e:
        log(f"swarm bed down: {e}")
    return [f"swarm bed {SWARM_BED}"]


def bed_up() -> dict:
    """The plugin built, the bed up, pynet installed twice (local and global scope) from its registry."""
    t0 = time.monotonic()
    sh("bash", str(ROOT / "scripts/plugin.sh"), "build", "build/plugin", timeout=1800)
    built = time.monotonic() - t0
    t0 = time.monotonic()
    swarm("up", str(len(NODES)))
    up = time.monotonic() - t0
    t0 = time.monotonic()
    swarm("push", "pynet", "build/plugin")
    swarm("install", "pynet", "10.88.0.1:5000/pynet:latest")
    swarm("install", OVERLAY, "10.88.0.1:5000/pynet:latest", "PYNET_SCOPE=global")
    swarm("plugin-wait", "pynet", OVERLAY)
    return {"plugin_build_s": built, "bed_up_s": up, "plugin_install_s": time.monotonic() - t0,
            "engine": dk(1, "version", "-f", "{{.Server.Version}}").stdout.strip()}


def until(what: str, fn, timeout: float = 120, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out: {what}")
        time.sleep(interval)


def make_net(key: str, name: str) -> None:
    driver, opts = NETS[key]
    if opts is not None:
        dk(1, "network", "create", "-d", driver, "--scope", "swarm", *opts, name)
        return
    for n in NODES:
        dk(n, "network", "create", "--config-only", "--subnet", LAN, "--gateway", ROUTER, "--ip-range",
           f"10.88.0.{64 + 32 * (n - 1)}/27", "-o", "parent=lan0", *CONFIG_OPTS[key], f"{name}-cfg")
    dk(1, "network", "create", "-d", driver, "--scope", "swarm", "--config-from", f"{name}-cfg", name)


def remove_net(key: str, name: str) -> None:
    until(f"docker network rm {name}", lambda: dk(1, "network", "rm", name, check=False).returncode == 0
          or dk(1, "network", "inspect", name, check=False).returncode != 0, interval=0.5)
    if NETS[key][1] is None:
        for n in NODES:  # a node drops the swarm network a moment after its last task
            until(f"node {n}: docker network rm {name}-cfg",
                  lambda: dk(n, "network", "rm", f"{name}-cfg", check=False).returncode == 0
                  or dk(n, "network", "inspect", f"{name}-cfg", check=False).returncode != 0, interval=0.5)


def running(svc: str) -> int:
    out = dk(1, "service", "ls", "--filter", f"name={svc}", "--format", "{{.Name}} {{.Replicas}}").stdout
    for line in out.splitlines():
        name, replicas = line.split()[:2]
        if name == svc:
            return int(replicas.split("/")[0])
    return 0


def start_tasks(svc: str, net: str) -> tuple[float, float]:
    """Seconds until FIRST tasks run (one per node: the network is made on each), then until MORE run."""
    t0 = time.monotonic()
    dk(1, "service", "create", "-d", "--name", svc, "--network", net, "--endpoint-mode", "dnsrr",
       "--no-resolve-image", "--stop-grace-period", "1s", "--replicas", str(FIRST), "--replicas-max-per-node",
       str(MORE // len(NODES)), IMAGE, "sleep", "1000000")
    until(f"{svc}: {FIRST} tasks running", lambda: running(svc) == FIRST)
    first = time.monotonic() - t0
    t0 = time.monotonic()
    dk(1, "service", "scale", "-d", f"{svc}={MORE}")
    until(f"{svc}: {MORE} tasks running", lambda: running(svc) == MORE)
    return first, time.monotonic() - t0


def task_on(node: int, svc: str, net: str) -> tuple[list[str], str]:
    """(command prefix into the network namespace, address on NET) of a task of SVC on NODE."""
    cid = dk(node, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={svc}").stdout.split()[0]
    pid = dk(node, "inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
    ip = dk(node, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', cid).stdout.strip()
    return in_pid_netns(pid), ip


def throughput(b: Bench, server: tuple[list[str], str], client: list[str]) -> dict[str, float]:
    iperf_server(b, server[0])
    try:
        return {"node 2 → node 1": iperf(b, client, server[1], False),
                "node 1 → node 2": iperf(b, client, server[1], True)}
    finally:
        b.kill_children()


def one_turn(b: Bench, key: str, r: int) -> tuple[float, float, dict[str, float]]:
    net, svc = f"bn{r}{key.split()[1][:2]}", f"bs{r}{key.split()[1][:2]}"
    make_net(key, net)
    try:
        first, more = start_tasks(svc, net)
        gbps = throughput(b, task_on(1, svc, net), task_on(2, svc, net)[0])
    finally:
        dk(1, "service", "rm", svc, check=False)
        for n in NODES:
            until(f"node {n}: {svc}'s containers gone", lambda: not dk(
                n, "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={svc}").stdout.strip(),
                interval=0.5)
        remove_net(key, net)
    return first, more, gbps


def measure(b: Bench) -> dict:
    cleanup()  # an earlier attempt's bed
    try:
        bed = bed_up()
        keys = [k for pair in SWARM_PAIRS for k in pair]
        start: dict = {f"first {FIRST} tasks": {k: [] for k in keys}, f"{MORE - FIRST} more tasks": {k: [] for k in keys}}
        gbps: dict = {}
        under = throughput(b, (in_netns(f"{SWARM_BED}-n1"), "10.88.0.11"), in_netns(f"{SWARM_BED}-n2"))
        for path, v in under.items():
            gbps.setdefault(path, {})["node to node (underlay)"] = [v]
        for r in range(b.p["swarm_rounds"]):
            for k in rotated(keys, r):
                first, more, g = one_turn(b, k, r)
                start[f"first {FIRST} tasks"][k].append(first)
                start[f"{MORE - FIRST} more tasks"][k].append(more)
                for path, v in g.items():
                    gbps.setdefault(path, {}).setdefault(k, []).append(v)
    finally:
        cleanup()
    return {"start_s": start, "gbps": gbps, "secs": b.p["iperf_secs"], "nodes": len(NODES), "first": FIRST,
            "more": MORE, **bed}
