"""CreateEndpoint / Join / Leave / DeleteEndpoint, then real traffic between namespaces."""

from __future__ import annotations

from lib import PREFIX, TABLE
from nslib import UPLINK_CLIENT, UPLINK_HOST, addr, new_id, peer_server


def test_endpoint_join_gives_a_veth_that_reaches_the_gateway(host):
    net = host.create_network(41)
    ep_id, reply = host.create_endpoint(net, 2)
    # Docker gave no MAC: pynet answers with the one it chose (02:42 + IPv4), and only that.
    assert reply == {"Interface": {"MacAddress": "02:42:0a:29:00:02"}}
    host_if = f"{PREFIX}h{ep_id[:15 - len(PREFIX) - 1]}"
    peer_if = f"{PREFIX}k{ep_id[:15 - len(PREFIX) - 1]}"
    veth = host.link(host_if)
    assert veth is not None and veth["linkinfo"]["info_kind"] == "veth"
    assert veth["master"] == net.bridge and "UP" in veth["flags"]
    assert veth["ifalias"] == f"pynet:{TABLE}:{ep_id}"
    assert host.link(peer_if)["address"] == "02:42:0a:29:00:02"

    ns = host.netns("c")
    join = host.join(net, ep_id, sandbox=f"/run/netns/{ns.name}")
    assert join == {"InterfaceName": {"SrcName": peer_if, "DstPrefix": "eth"}, "Gateway": "10.41.0.1"}
    info = host.ok("/NetworkDriver.EndpointOperInfo", {"NetworkID": net.id, "EndpointID": ep_id})
    assert info["Value"]["host_if"] == host_if and info["Value"]["ipv4"] == addr(41, 2)

    # The engine's part: move, rename, address, default route.
    host.ns.run("ip", "link", "set", peer_if, "netns", ns.name)
    ns.run("ip", "link", "set", peer_if, "name", "eth0")
    ns.run("ip", "addr", "add", addr(41, 2), "dev", "eth0")
    ns.run("ip", "link", "set", "eth0", "up")
    ns.run("ip", "route", "add", "default", "via", join["Gateway"])
    assert ns.run("busybox", "ping", "-c", "1", "-W", "2", "10.41.0.1").returncode == 0
    assert host.link(peer_if) is None  # it lives in the container now

    # Docker's order on the way out: the interface comes back under its SrcName, Leave, DeleteEndpoint.
    ns.run("ip", "link", "set", "eth0", "netns", host.ns.name)
    host.ns.run("ip", "link", "set", "eth0", "name", peer_if)
    assert host.ok("/NetworkDriver.Leave", {"NetworkID": net.id, "EndpointID": ep_id}) == {}
    assert host.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": net.id, "EndpointID": ep_id}) == {}
    assert host.link(host_if) is None and host.link(peer_if) is None
    assert host.links() == [net.bridge]
    assert host.get(f"/pynet/v1/networks/{net.id}")["endpoints"] == []
    # Again: already gone is success.
    assert host.ok("/NetworkDriver.Leave", {"NetworkID": net.id, "EndpointID": ep_id}) == {}
    assert host.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": net.id, "EndpointID": ep_id}) == {}


def test_two_containers_talk_and_a_dead_container_is_cleaned_up(host):
    net = host.create_network(42)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    assert a.ping(b.ip) and b.ping(a.ip)
    b.serve(8000)
    assert a.fetch(f"http://{b.ip}:8000/") == a.ip  # same network: no NAT in between
    assert a.ping("10.42.0.1")
    # A container namespace that vanishes takes its veth pair with it; Leave/DeleteEndpoint still succeed.
    host.remove_container(b)
    assert host.links() == sorted([net.bridge, f"{PREFIX}h{a.ep_id[:15 - len(PREFIX) - 1]}"])
    assert not a.ping(b.ip, wait=1)
    host.remove_container(a)
    assert host.links() == [net.bridge]
    host.delete_network(net)
    assert host.links() == []


def test_delete_network_with_endpoints_left_removes_their_veths(host):
    """Docker deletes endpoints first, but a lost call must not strand links."""
    net = host.create_network(43)
    host.create_endpoint(net, 2)
    ep_id, reply = host.create_endpoint(net, 3, mac="02:aa:bb:cc:dd:03")
    assert reply == {}  # Docker supplied the MAC: echoing it back is an error in the engine
    assert host.link(f"{PREFIX}k{ep_id[:15 - len(PREFIX) - 1]}")["address"] == "02:aa:bb:cc:dd:03"
    assert len(host.links()) == 5  # bridge + two veth pairs
    host.delete_network(net)
    assert host.links() == []


def test_outbound_is_masqueraded_and_networks_are_isolated(host):
    host.lan_client()
    lan_server = host.client.name
    host.procs.append(peer_server(lan_server, 8000))
    net = host.create_network(45)
    other = host.create_network(46)
    a = host.run_container(net, 2)
    z = host.run_container(other, 2)
    # The LAN client has no route to 10.45/24: the answer can only come back through masquerade.
    assert a.fetch(f"http://{UPLINK_CLIENT}:8000/") == UPLINK_HOST
    # No traffic between two pynet networks, either way; each still reaches its gateway and the host.
    dropped = host.forward_drops("oifname", "bridges")
    assert not a.ping(z.ip, wait=1)
    assert not z.ping(a.ip, wait=1)
    assert host.forward_drops("oifname", "bridges") >= dropped + 2  # pynet's drop, not a missing route
    assert a.ping(UPLINK_HOST) and z.ping("10.46.0.1")


def test_icc_false_isolates_containers_but_not_the_gateway(host):
    net = host.create_network(47, generic={"icc": "false"})
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    assert a.ping("10.47.0.1") and b.ping("10.47.0.1")
    assert not a.ping(b.ip, wait=1)


def test_internal_network_has_no_gateway_and_no_way_out(host):
    host.lan_client()
    net = host.create_network(48, internal=True)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    assert "Gateway" not in a.join
    assert a.ping(b.ip)
    # Even with a route to the bridge address, nothing leaves an --internal network.
    a.run("ip", "route", "add", "default", "via", "10.48.0.1")
    dropped = host.forward_drops("iifname", "internal")
    assert not a.ping(UPLINK_CLIENT, wait=1)
    assert host.forward_drops("iifname", "internal") > dropped


def test_dual_stack_endpoint_reaches_its_ipv6_gateway(host):
    net = host.create_network(49, v6="fd00:49::/64")
    ep_id = new_id()
    reply = host.ok("/NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": ep_id,
        "Interface": {"Address": addr(49, 2), "AddressIPv6": "fd00:49::2/64", "MacAddress": ""}, "Options": {}})
    assert reply == {"Interface": {"MacAddress": "02:42:0a:31:00:02"}}
    ns = host.netns("c6")
    join = host.join(net, ep_id, sandbox=f"/run/netns/{ns.name}")
    assert join["GatewayIPv6"] == "fd00:49::1" and join["Gateway"] == "10.49.0.1"
    src = join["InterfaceName"]["SrcName"]
    host.ns.run("ip", "link", "set", src, "netns", ns.name)
    ns.run("ip", "link", "set", src, "name", "eth0")
    ns.run("ip", "addr", "add", "fd00:49::2/64", "dev", "eth0", "nodad")
    ns.run("ip", "link", "set", "eth0", "up")
    ns.run("ip", "-6", "route", "add", "default", "via", join["GatewayIPv6"])
    assert ns.run("busybox", "ping6", "-c", "1", "-W", "2", "fd00:49::1", check=False).returncode == 0
