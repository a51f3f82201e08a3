"""mode=overlay on the real kernel, without a swarm: two "nodes" (namespaces, each with a global-scope
pynet) on a LAN of namespaces, driven like a swarm drives them (research/swarm-global.md):
DiscoverNew Self on each, AllocateNetwork on the "manager", the same CreateNetwork on both.

What the kernel must do: one L2 segment over VXLAN (flood through the multicast group, then
learning), each node its containers' gateway with the same address and MAC (the gateway's ARP
and MAC never cross the VXLAN port), and egress NAT per node (the LAN sees the node's address).
"""

from __future__ import annotations

import json

import pytest

from lib import TABLE, Netns
from nslib import Host, Net, network_body, peer_server, stop_proc

SWARM_ID = "ovl0testnet0000000000000a"  # a swarm network ID's shape: 25 characters of [0-9a-z]
LAN = {1: "192.0.2.11", 2: "192.0.2.12"}
CLIENT = "192.0.2.20"
N = 77  # subnet 10.77.0.0/24, gateway 10.77.0.1


@pytest.fixture
def nodes():
    """Two global-scope pynets, each in its own namespace with `lan0` on one switch, and a LAN client."""
    sw = Netns("ovsw")
    made: list = [sw]
    try:
        sw.run("ip", "link", "add", "br0", "type", "bridge")
        sw.run("ip", "link", "set", "br0", "up")
        hosts = {}
        for i, ip in LAN.items():
            h = Host(f"ovn{i}")
            made.append(h)
            h.daemon.extra_env.update({"PYNET_SCOPE": "global", "PYNET_LOG_LEVEL": "info"})
            h.ns.run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", f"p{i}", "netns", sw.name)
            h.ns.run("ip", "addr", "add", f"{ip}/24", "dev", "lan0")
            h.ns.run("ip", "link", "set", "lan0", "up")
            sw.run("ip", "link", "set", f"p{i}", "master", "br0", "up")
            hosts[i] = h.start()
        client = Netns("ovcl")
        made.append(client)
        client.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "pc", "netns", sw.name)
        client.run("ip", "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        client.run("ip", "link", "set", "eth0", "up")
        sw.run("ip", "link", "set", "pc", "master", "br0", "up")
        yield hosts, client
    finally:
        for m in reversed(made):
            m.close()


def overlay(hosts) -> tuple[Net, str]:
    """What a swarm does: each node told its own address, the manager allocates, every node creates."""
    for i, h in hosts.items():
        h.ok("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {
            "Address": LAN[i], "BindAddress": LAN[i], "Self": True}})
    reply = hosts[1].ok("/NetworkDriver.AllocateNetwork", {
        "NetworkID": SWARM_ID, "Options": {}, "IPv4Data": [{"AddressSpace": "", "Pool": f"10.{N}.0.0/24",
                                                           "Gateway": f"10.{N}.0.1/24"}], "IPv6Data": None})
    assert set(reply["Options"]) == {"vni"}
    for h in hosts.values():
        assert h.ok("/NetworkDriver.CreateNetwork", network_body(SWARM_ID, N, generic=reply["Options"])) == {}
    info = hosts[1].networks()[SWARM_ID]
    return Net(SWARM_ID, N, info["bridge"], f"10.{N}.0.1"), info["vxlan"]


def bridge_drops(h: Host, chain: str) -> int:
    """Packets the drop rules of a chain of the daemon's bridge-family table counted."""
    p = h.nft("-j", "list", "chain", "bridge", TABLE, chain)
    return sum(expr["counter"]["packets"] for item in json.loads(p.stdout)["nftables"] if "rule" in item
               for expr in item["rule"]["expr"] if "counter" in expr)


def test_overlay_across_two_nodes(nodes):
    hosts, client = nodes
    net, vxlan = overlay(hosts)
    a = hosts[1].run_container(net, 2, label="ova")
    b = hosts[2].run_container(net, 3, label="ovb")
    for i, h in hosts.items():
        vx = h.link(vxlan)
        data = vx["linkinfo"]["info_data"]
        assert (data["local"], data["link"], vx["mtu"]) == (LAN[i], "lan0", 1450), vx
        assert h.link(net.bridge)["address"] == hosts[1].link(net.bridge)["address"], "one gateway MAC everywhere"
    # One segment: the containers reach each other across the nodes, a full-MTU packet included.
    assert a.ping(b.ip) and b.ping(a.ip)
    assert a.run("busybox", "ping", "-c1", "-W2", "-s", "1422", b.ip, check=False).returncode == 0
    # Each node is its containers' gateway: the same MAC answers on both sides, and the gateway's ARP
    # and frames were kept off the VXLAN port (the drop counters moved).
    for ctr in (a, b):
        assert ctr.ping(net.gateway)
        neigh = ctr.run("ip", "-j", "neigh", "show", net.gateway).stdout
        assert json.loads(neigh)[0]["lladdr"] == hosts[1].link(net.bridge)["address"]
    assert sum(bridge_drops(h, "ov_fwd") + bridge_drops(h, "ov_out") for h in hosts.values()) > 0
    # Egress NAT per node: the LAN client sees each node's own address.
    server = peer_server(client.name, 7001)
    try:
        for ctr, i in ((a, 1), (b, 2)):
            assert ctr.fetch(f"http://{CLIENT}:7001/") == LAN[i]
    finally:
        stop_proc(server)
    # Gone on both nodes: the containers, then the network (what a node does when its last task goes).
    for h, ctr in ((hosts[1], a), (hosts[2], b)):
        h.remove_container(ctr)
        h.delete_network(net)
        assert h.links() == [] and h.state_ids() == []
        elems = h.nft("-j", "list", "set", "bridge", TABLE, "ov_gwmac").stdout
        assert not [x for x in json.loads(elems)["nftables"] if x.get("set", {}).get("elem")]
    hosts[1].ok("/NetworkDriver.FreeNetwork", {"NetworkID": SWARM_ID})
    assert hosts[1].get("/pynet/v1/status")["cluster"]["allocations"] == {}
