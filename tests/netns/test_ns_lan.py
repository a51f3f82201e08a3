"""LAN modes on a namespace LAN: the daemon's up0 is `parent`, the LAN client (192.0.2.2) is its router.

transparent: the container is on the LAN with its own MAC (macvlan), the host reaches it through a shim.
l2bridge: the container has a LAN address, but only the host's MAC is on the wire (routed veth, proxy ARP).
"""

from __future__ import annotations

import json

from nslib import UPLINK_CLIENT, UPLINK_HOST, UPLINK_IF, Container, Net, fetch, network_body, new_id, peer_server


def lan_network(host, mode: str) -> Net:
    net_id = new_id()
    body = network_body(net_id, pool="192.0.2.0/24", gateway=f"{UPLINK_CLIENT}/24",
                        generic={"mode": mode, "parent": UPLINK_IF})
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}
    return Net(net_id, 0, "", UPLINK_CLIENT)


def lan_container(host, net: Net, ip: str, label: str) -> Container:
    ep_id = new_id()
    reply = host.ok("/NetworkDriver.CreateEndpoint", {"NetworkID": net.id, "EndpointID": ep_id,
                                                      "Interface": {"Address": f"{ip}/24"}, "Options": {}})
    ns = host.netns(label)
    join = host.join(net, ep_id, sandbox=f"/run/netns/{ns.name}")
    assert join["Gateway"] == UPLINK_CLIENT
    ctr = Container(ns, net.id, ep_id, ip, f"{ip}/24", reply["Interface"]["MacAddress"], join)
    host.containers.append(ctr)
    host.plug(ctr)
    return ctr


def lan_mac_for(lan, ip: str) -> str:
    neigh = json.loads(lan.run("ip", "-j", "neigh", "show", ip).stdout)
    return neigh[0]["lladdr"] if neigh and "lladdr" in neigh[0] else ""


def test_transparent_container_is_on_the_lan_with_its_own_mac(host):
    lan = host.lan_client()
    net = lan_network(host, "transparent")
    shim = host.networks()[net.id]["shim"]
    assert host.link(shim)["linkinfo"]["info_kind"] == "macvlan"
    ctr = lan_container(host, net, "192.0.2.10", "t")
    assert ctr.ping(UPLINK_CLIENT) and ctr.ping(UPLINK_HOST)  # the LAN, and the host through the shim
    assert lan_mac_for(lan, ctr.ip) == ctr.mac == "02:42:c0:00:02:0a"
    ctr.serve(8000)
    assert fetch(f"http://{ctr.ip}:8000/", lan.name) == UPLINK_CLIENT
    assert fetch(f"http://{ctr.ip}:8000/", host.ns.name) == UPLINK_HOST
    host.remove_container(ctr)
    assert ctr.ip not in host.ns.run("ip", "route", "show", "dev", shim).stdout
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net.id}) == {}
    assert host.links() == []
    assert f"{UPLINK_HOST}/24" in host.addrs(UPLINK_IF)  # the parent is the user's: never removed


def test_l2bridge_container_has_a_lan_address_behind_the_hosts_mac(host):
    lan = host.lan_client()
    net = lan_network(host, "l2bridge")
    ctr = lan_container(host, net, "192.0.2.20", "l2")
    assert ctr.ping(UPLINK_CLIENT) and ctr.ping(UPLINK_HOST)
    host_mac = host.link(UPLINK_IF)["address"]
    assert lan_mac_for(lan, ctr.ip) == host_mac != ctr.mac  # proxy ARP: only the host's MAC on the wire
    ctr.serve(8000)
    assert fetch(f"http://{ctr.ip}:8000/", lan.name) == UPLINK_CLIENT  # routed, not NATed, both ways
    host.procs.append(peer_server(lan.name, 8001))
    assert ctr.fetch(f"http://{UPLINK_CLIENT}:8001/") == ctr.ip
    host.remove_container(ctr)
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net.id}) == {}
    assert host.links() == []
    assert f"{UPLINK_HOST}/24" in host.addrs(UPLINK_IF)
