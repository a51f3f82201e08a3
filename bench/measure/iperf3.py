"""Section 4: iperf3 TCP throughput host <-> container and container <-> container: pynet nat vs
Docker's bridge vs a hand-built veth + bridge in namespaces. Its iperf3 helpers serve section 6 too."""

from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING

from common import (BR_NET, NAME, NAT_NET, PREFIX, BenchError, del_netns, in_netns, in_pid_netns,
                    netns_switch, rotated, sh)

if TYPE_CHECKING:
    from runner import Bench

HAND_SUBNET = "10.251.3"
HAND_HOST = f"{PREFIX}x0"  # the host's veth into the hand-built switch


def hand_netns() -> dict:
    """pnbb-sw: a bridge in its own netns (no firewall there); pnbb-a, pnbb-b and the host hang off it."""
    sw, a, b = f"{NAME}-sw", f"{NAME}-a", f"{NAME}-b"
    netns_switch(sw, (a, b), HAND_HOST, "p0")
    sh("ip", "addr", "add", f"{HAND_SUBNET}.1/24", "dev", HAND_HOST)
    sh("ip", "link", "set", HAND_HOST, "up")
    for i, ns in ((1, a), (2, b)):
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", sw)
        sh("ip", "-n", ns, "addr", "add", f"{HAND_SUBNET}.{i + 1}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"{HAND_SUBNET}.1")
    for i in range(3):
        sh("ip", "-n", sw, "link", "set", f"p{i}", "master", "br0")
        sh("ip", "-n", sw, "link", "set", f"p{i}", "up")
    return {"a": (in_netns(a), f"{HAND_SUBNET}.2"), "b": (in_netns(b), f"{HAND_SUBNET}.3")}


def iperf_server(b: Bench, prefix: list[str]) -> None:
    b.spawn(prefix + ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sh(*prefix, "ss", "-Hltn", "sport = :5201", check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise BenchError(f"iperf3 server did not start in {prefix}")


def iperf(b: Bench, prefix: list[str], ip: str, reverse: bool) -> float:
    """Gbit/s of `iperf3 -c ip` run with the command prefix (a namespace; [] for the host); reverse: -R."""
    secs = b.p["iperf_secs"]
    args = prefix + ["iperf3", "-c", ip, "-p", "5201", "-t", str(secs), "-O", "0", "-J",
                     "--connect-timeout", "3000"]
    if reverse:
        args.append("-R")
    for attempt in range(3):
        try:
            p = sh(*args, check=False, timeout=secs + 20)
        except subprocess.TimeoutExpired:
            raise BenchError(f"iperf3 to {ip} hung (was dockerd restarted?)") from None
        if p.returncode == 0:
            return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
        time.sleep(0.5)  # the one-test-at-a-time server may still be finishing the last test
    raise BenchError(f"iperf3 {' '.join(args)}: {p.stdout[-300:]} {p.stderr[-300:]}")


def measure(b: Bench) -> dict:
    b.ensure_networks()
    setups = {}
    for key, net in (("pynet nat", NAT_NET), ("docker bridge", BR_NET)):
        tag = "p" if key.startswith("pynet") else "d"
        ca, cb = b.container(f"ip{tag}a", net), b.container(f"ip{tag}b", net)
        setups[key] = {"a": (in_pid_netns(b.cpid(ca)), b.cip(ca, net)),
                       "b": (in_pid_netns(b.cpid(cb)), b.cip(cb, net))}
    setups["hand-built veth+bridge"] = hand_netns()
    for s in setups.values():
        iperf_server(b, s["a"][0])
    paths = {"host → container": ([], False), "container → host": ([], True),
             "container → container": ("b", False)}
    res: dict = {}
    for r in range(b.p["iperf_rounds"]):
        for path, (client, reverse) in paths.items():
            for k in rotated(list(setups), r):
                s = setups[k]
                prefix = s["b"][0] if client == "b" else []
                res.setdefault(path, {}).setdefault(k, []).append(iperf(b, prefix, s["a"][1], reverse))
    del_netns(*(f"{NAME}-{ns}" for ns in ("sw", "a", "b")))
    sh("ip", "link", "del", HAND_HOST, check=False)
    return {"gbps": res, "secs": b.p["iperf_secs"]}
