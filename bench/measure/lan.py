"""Section 6: iperf3 between a container (or a hand-built namespace) and a LAN client, on a LAN of
namespaces like tests/e2e/lan.py's: each pynet mode against its baseline (LAN_PAIRS)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from common import (BR_NET, DRIVER, LABEL, NAME, NAT_NET, PREFIX, BenchError, del_netns, docker,
                    in_netns, in_pid_netns, netns_switch, rotated, sh)
from shared import LAN_PAIRS, LAN_PARENT

from .iperf3 import iperf, iperf_server

if TYPE_CHECKING:
    from runner import Bench

# PARENT: the host's uplink into the LAN; not under PREFIX: cleanup removes it by name
LAN_NET, PARENT = "10.251.50", LAN_PARENT
LAN_ROUTER, LAN_CLIENT, LAN_HOST = f"{LAN_NET}.1", f"{LAN_NET}.20", f"{LAN_NET}.10"
LAN_IPS = {"pynet transparent": f"{LAN_NET}.130", "pynet l2bridge": f"{LAN_NET}.140",
           "hand-built macvlan": f"{LAN_NET}.150", "hand-built routed veth": f"{LAN_NET}.160"}
TR_NET, L2_NET = f"{NAME}-tr", f"{NAME}-l2"
HAND_RV = "pnbbrv0"  # the hand-built routed veth's host side (own DOCKER-USER accepts, removed by cleanup)
# the pynet LAN modes share the LAN's subnet: made (network + container) for their turn in a round
LAN_MODES = {"pynet transparent": (TR_NET, "lt", ["-o", "mode=transparent"]),
             "pynet l2bridge": (L2_NET, "ll", ["-o", "mode=l2bridge", "--gateway", LAN_ROUTER])}


def build() -> None:
    """pnbb-sw (br0), pnbb-cl (the LAN client), pnbb-rt (the LAN router); PARENT is the host's uplink."""
    sw, cl, rt = f"{NAME}-sw", f"{NAME}-cl", f"{NAME}-rt"
    netns_switch(sw, (cl, rt), PARENT, "uplink")
    for ns, ifname in ((cl, "c0"), (rt, "r0")):
        port = ifname[0] + "p"
        sh("ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", sw)
        sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", ifname, "up")
    sh("ip", "-n", sw, "link", "set", "uplink", "master", "br0", "up")
    sh("ip", "addr", "add", f"{LAN_HOST}/24", "dev", PARENT)
    sh("ip", "link", "set", PARENT, "up")
    sh("ip", "-n", cl, "addr", "add", f"{LAN_CLIENT}/24", "dev", "c0")
    sh("ip", "-n", rt, "addr", "add", f"{LAN_ROUTER}/24", "dev", "r0")
    sh("ip", "netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    sh("ip", "-n", cl, "route", "add", "default", "via", LAN_ROUTER)


def lan_address(ns: str, ip: str) -> list[str]:
    """eth0 of namespace ns up with ip on the LAN, default route via the LAN's router; its command prefix."""
    sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", LAN_ROUTER)
    return in_netns(ns)


def hand_macvlan() -> list[str]:
    """A bridge-mode macvlan on PARENT moved into pnbb-mv (what transparent makes, by hand)."""
    ns = f"{NAME}-mv"
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", f"{PREFIX}mv0", "link", PARENT, "type", "macvlan", "mode", "bridge")
    sh("ip", "link", "set", f"{PREFIX}mv0", "netns", ns, "name", "eth0")
    return lan_address(ns, LAN_IPS["hand-built macvlan"])


def hand_routed() -> list[str]:
    """pnbb-rv behind a routed veth: /32 route, proxy_arp on the veth, a proxy neighbour on PARENT
    (what l2bridge makes, by hand: no policy routing table, no nftables source check). Docker's
    FORWARD policy is drop, so two accepts go first in DOCKER-USER (as pynet's own do)."""
    ns, ip = f"{NAME}-rv", LAN_IPS["hand-built routed veth"]
    sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", HAND_RV, check=False)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", HAND_RV, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("sysctl", "-qw", f"net.ipv4.conf.{HAND_RV}.proxy_arp=1")
    sh("ip", "link", "set", HAND_RV, "up")
    sh("ip", "route", "add", f"{ip}/32", "dev", HAND_RV)
    sh("ip", "neigh", "add", "proxy", ip, "dev", PARENT)
    for d in ("-i", "-o"):
        sh("iptables", "-I", "DOCKER-USER", "1", d, HAND_RV, "-j", "ACCEPT")
    return lan_address(ns, ip)


def cleanup() -> list[str]:
    """What the LAN leaves outside the bench's prefix (the runner's cleanup calls it too)."""
    found = []
    for d in ("-i", "-o"):
        while sh("iptables", "-D", "DOCKER-USER", d, HAND_RV, "-j", "ACCEPT", check=False).returncode == 0:
            found.append(f"DOCKER-USER {d} {HAND_RV}")
    for link in (HAND_RV, PARENT):
        if sh("ip", "link", "del", link, check=False).returncode == 0:
            found.append(f"link {link}")
    return found


def reach(key: str, prefix: list[str]) -> None:
    """The setup reaches the LAN client before it is measured (ARP, proxy entries, gratuitous ARP)."""
    deadline = time.monotonic() + 10
    while sh(*prefix, "busybox", "ping", "-c1", "-W1", LAN_CLIENT, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise BenchError(f"{key}: {LAN_CLIENT} (the LAN client) does not answer ping")


def setups(b: Bench) -> dict[str, list[str]]:
    """The command prefixes of the setups that stay for the whole section (all but LAN_MODES)."""
    fixed: dict[str, list[str]] = {}
    for key, net, tag in (("pynet nat", NAT_NET, "ln"), ("docker bridge", BR_NET, "ld")):
        fixed[key] = in_pid_netns(b.cpid(b.container(tag, net)))
    fixed["hand-built macvlan"] = hand_macvlan()
    fixed["hand-built routed veth"] = hand_routed()
    return fixed


def lan_mode_up(b: Bench, key: str) -> list[str]:
    """Network + container of a pynet LAN mode for its turn; its command prefix."""
    net, tag, opts = LAN_MODES[key]
    docker("network", "create", "-d", DRIVER, "--label", LABEL, *opts, "-o", f"parent={PARENT}",
           "--subnet", f"{LAN_NET}.0/24", net)
    prefix = in_pid_netns(b.cpid(b.container(tag, net, "--ip", LAN_IPS[key])))
    reach(key, prefix)
    return prefix


def measure(b: Bench) -> dict:
    """The transparent and l2bridge networks share the LAN's subnet, which Docker's default IPAM
    refuses twice: each is made (network + container) for its turn in a round and removed after."""
    b.ensure_networks()
    cleanup()  # an earlier attempt's (a dockerd restart by someone else voids an attempt)
    build()
    for net in (TR_NET, L2_NET):
        docker("network", "rm", net, check=False)
    fixed = setups(b)
    iperf_server(b, in_netns(f"{NAME}-cl"))
    for k, prefix in fixed.items():
        reach(k, prefix)
    keys = [k for pair in LAN_PAIRS for k in pair]
    paths = {"container → LAN": False, "LAN → container": True}
    res: dict = {path: {k: [] for k in keys} for path in paths}
    for r in range(b.p["iperf_rounds"]):
        for k in rotated(keys, r):
            prefix = lan_mode_up(b, k) if k in LAN_MODES else fixed[k]
            for path, reverse in paths.items():
                res[path][k].append(iperf(b, prefix, LAN_CLIENT, reverse))
            if k in LAN_MODES:
                docker("rm", "-f", f"{NAME}-{LAN_MODES[k][1]}")
                docker("network", "rm", LAN_MODES[k][0])
    b.kill_children()
    b.section_cleanup()
    del_netns(*(f"{NAME}-{ns}" for ns in ("mv", "rv", "cl", "rt", "sw")))
    cleanup()
    return {"gbps": res, "secs": b.p["iperf_secs"], "subnet": f"{LAN_NET}.0/24", "client": LAN_CLIENT,
            "ips": LAN_IPS}
