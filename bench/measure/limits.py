"""Section 10: bandwidth-limit accuracy: iperf3 (TCP) against the rate set, both directions, each mode.

One container per mode: nat on the bench's nat network (iperf3 server on the host, bound to its
gateway), transparent and l2bridge on section 6's LAN of namespaces (server in the LAN client).
Each rate is set at run time through the daemon's control API (what `pynet limit` does), both
directions at once; every run is measured after OMIT seconds (TCP's slow start, and the
nftables policer's one second of credit after idle time: kernel/police.py), and one run per
mode from idle without omitting anything shows that credit.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from typing import TYPE_CHECKING

from common import NAME, NAT_NET, NAT_SUBNET, BenchError, del_netns, docker, in_netns, in_pid_netns, sh

from . import lan

if TYPE_CHECKING:
    from runner import Bench

RATES = [10, 100, 1000]  # Mbit/s
OMIT = 2
PORT = 5299  # not iperf3's default: the host's namespace is shared with other users of the machine
IDLE_RATE = 100  # the rate of the from-idle runs
MECHANISMS = {  # what enforces each direction (the modes' limiters, modes/*.py)
    "nat": {"in": "TBF on the veth's host side", "out": "nftables policer, veth ingress"},
    "transparent": {"in": "nftables policer, parent ingress by dst MAC",
                    "out": "HTB class on the parent by src MAC"},
    "l2bridge": {"in": "TBF on the veth's host side", "out": "nftables policer, veth ingress"},
}


def server(b: Bench, prefix: list[str], bind: str = "") -> None:
    b.spawn(prefix + ["iperf3", "-s", "-p", str(PORT)] + (["-B", bind] if bind else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sh(*prefix, "ss", "-Hltn", f"sport = :{PORT}", check=False).stdout.strip():
            return
        time.sleep(0.05)
    raise BenchError(f"iperf3 server did not start in {prefix}")


def mbits(prefix: list[str], ip: str, reverse: bool, secs: int, omit: int) -> float:
    args = prefix + ["iperf3", "-c", ip, "-p", str(PORT), "-t", str(secs), "-O", str(omit), "-J",
                     "--connect-timeout", "3000"] + (["-R"] if reverse else [])
    for _ in range(3):
        p = sh(*args, check=False, timeout=secs + omit + 30)
        doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
        if p.returncode == 0 and "sum_received" in doc.get("end", {}):
            return doc["end"]["sum_received"]["bits_per_second"] / 1e6
        time.sleep(0.5)  # the one-test-at-a-time server may still be finishing the last test
    raise BenchError(f"iperf3 {' '.join(args)}: {doc.get('error') or p.stdout[-300:]} {p.stderr[-300:]}")


def set_limit(b: Bench, net: str, ctr: str, settings: dict[str, str]) -> None:
    net_id = docker("network", "inspect", "-f", "{{.Id}}", net).stdout.strip()
    ep_id = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").EndpointID}}}}',
                   ctr).stdout.strip()
    b.d.ok("/pynet/v1/limits", {"NetworkID": net_id, "EndpointID": ep_id, "limits": settings})


def measure_mode(b: Bench, net: str, ctr: str, client: list[str], server_ip: str) -> dict:
    secs, rounds = b.p["limit_secs"], b.p["limit_rounds"]
    out: dict = {"unlimited": {}, "steady": {}, "from_idle": {}}
    for reverse, d in ((True, "in"), (False, "out")):
        out["unlimited"][d] = mbits(client, server_ip, reverse, 2, 1)
    for rate in RATES:
        set_limit(b, net, ctr, {"ingress_rate": f"{rate}mbit", "egress_rate": f"{rate}mbit"})
        per = out["steady"][str(rate)] = {"in": [], "out": []}
        for _ in range(rounds):
            for reverse, d in ((True, "in"), (False, "out")):
                per[d].append(mbits(client, server_ip, reverse, secs, OMIT))
    set_limit(b, net, ctr, {"ingress_rate": f"{IDLE_RATE}mbit", "egress_rate": f"{IDLE_RATE}mbit"})
    for reverse, d in ((True, "in"), (False, "out")):
        time.sleep(3)  # idle: the policer's bucket fills (one second at the rate, plus the burst)
        out["from_idle"][d] = mbits(client, server_ip, reverse, 3, 0)
    set_limit(b, net, ctr, {"ingress_rate": "none", "egress_rate": "none"})
    return out


def measure(b: Bench) -> dict:
    res: dict = {"rates": RATES, "secs": b.p["limit_secs"], "omit": OMIT, "idle_rate": IDLE_RATE,
                 "mechanisms": MECHANISMS, "modes": {}}
    b.ensure_networks()
    gw = str(ipaddress.ip_network(NAT_SUBNET)[1])  # Docker's IPAM gives a --subnet network its first address
    server(b, [], gw)
    ctr = b.container("limn", NAT_NET)
    res["modes"]["nat"] = measure_mode(b, NAT_NET, ctr, in_pid_netns(b.cpid(ctr)), gw)
    docker("rm", "-f", ctr)
    b.kill_children()

    lan.cleanup()  # an earlier attempt's
    lan.build()
    try:
        server(b, in_netns(f"{NAME}-cl"))
        for key, mode in (("pynet transparent", "transparent"), ("pynet l2bridge", "l2bridge")):
            net, tag, _opts = lan.LAN_MODES[key]
            docker("network", "rm", net, check=False)
            prefix = lan.lan_mode_up(b, key)
            res["modes"][mode] = measure_mode(b, net, f"{NAME}-{tag}", prefix, lan.LAN_CLIENT)
            docker("rm", "-f", f"{NAME}-{tag}")
            docker("network", "rm", net)
    finally:
        b.kill_children()
        del_netns(*(f"{NAME}-{ns}" for ns in ("cl", "rt", "sw")))
        lan.cleanup()
    return res
