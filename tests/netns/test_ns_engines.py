"""What newer engines send, driven through the socket as Docker 28 and 29 send it (protocol.md).

Docker 28 (runs in the e2e tier too): new keys in the generic options, IPv6-only
networks (--ipv4=false), GwAllocCheck. Docker 29 (not runnable here, so its call
sequence is played from moby's source): ProgramExternalConnectivity only for the
endpoint that becomes the container's gateway, Revoke when it stops being it, no
Revoke after a live-restore restart (Leave must take the ports), and every Join
carrying the container's whole port map, on internal networks too.
"""

from __future__ import annotations

from lib import Netns
from nslib import UPLINK_CLIENT, UPLINK_HOST, UPLINK_IF, Container, addr, fetch, new_id, portmap, until

V6_LAN_HOST, V6_LAN_CLIENT = "2001:db8:77::1", "2001:db8:77::2"


def pec(host, net_id: str, ep_id: str, maps: list[dict]) -> dict:
    return host.ok("/NetworkDriver.ProgramExternalConnectivity",
                   {"NetworkID": net_id, "EndpointID": ep_id, "Options": {"com.docker.network.portmap": maps}})


def revoke(host, net_id: str, ep_id: str) -> dict:
    return host.ok("/NetworkDriver.RevokeExternalConnectivity", {"NetworkID": net_id, "EndpointID": ep_id})


def ports_of(host, net_id: str = "", ep_id: str = "") -> set[tuple]:
    q = f"?network={net_id}&endpoint={ep_id}" if ep_id else (f"?network={net_id}" if net_id else "")
    return {(b["host_ip"], b["host_port"], b["proto"], b["container_ip"], b["source"])
            for b in host.get("/pynet/v1/ports" + q)}


def test_docker28_generic_options_accepted_unknown_pynet_option_refused(host):
    body = {"NetworkID": new_id(), "Options": {"com.docker.network.enable_ipv6": False,
                                               "com.docker.network.generic": {
                                                   "com.docker.network.enable_ipv4": "true",
                                                   "com.docker.network.enable_ipv6": "false",
                                                   "com.docker.network.some_future_key": "x",
                                                   "mtu": "1400"}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.81.0.0/24", "Gateway": "10.81.0.1/24"}],
            "IPv6Data": []}
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}
    assert host.networks()[body["NetworkID"]]["mtu"] == 1400
    bad = dict(body, NetworkID=new_id(), Options={"com.docker.network.generic": {"mtuu": "1400"}},
               IPv4Data=[{"AddressSpace": "LocalDefault", "Pool": "10.82.0.0/24", "Gateway": "10.82.0.1/24"}])
    err = host.err("/NetworkDriver.CreateNetwork", bad)
    assert "unknown network option 'mtuu'" in err and "mtu" in err
    # An endpoint option newer engines add (sysctls, ifname) is Docker's business, not refused.
    net_id = body["NetworkID"]
    ep = {"NetworkID": net_id, "EndpointID": new_id(), "Interface": {"Address": "10.81.0.2/24"},
          "Options": {"com.docker.network.endpoint.sysctls": "net.ipv4.conf.IFNAME.forwarding=1",
                      "com.docker.network.endpoint.ifname": "foo0"}}
    assert "Interface" in host.ok("/NetworkDriver.CreateEndpoint", ep)


def test_ipv6_only_nat_network_traffic_and_published_port(host):
    """docker network create --ipv4=false --ipv6 --subnet fd00:83::/64 (Docker 28)."""
    lan = host.lan_client()
    host.ns.run("ip", "addr", "add", f"{V6_LAN_HOST}/64", "dev", UPLINK_IF, "nodad")
    lan.run("ip", "addr", "add", f"{V6_LAN_CLIENT}/64", "dev", "eth0", "nodad")
    net_id = new_id()
    body = {"NetworkID": net_id,
            "Options": {"com.docker.network.enable_ipv6": True,
                        "com.docker.network.generic": {"com.docker.network.enable_ipv4": "false"}},
            "IPv4Data": [],
            "IPv6Data": [{"AddressSpace": "LocalDefault", "Pool": "fd00:83::/64", "Gateway": "fd00:83::1/64"}]}
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}
    bridge = host.networks()[net_id]["bridge"]
    assert "fd00:83::1/64" in host.addrs(bridge)
    ctrs = []
    for n in (2, 3):
        ns = Netns(f"v6c{n}")
        host.others.append(ns)
        ep_id = new_id()
        reply = host.ok("/NetworkDriver.CreateEndpoint", {
            "NetworkID": net_id, "EndpointID": ep_id,
            "Interface": {"Address": "", "AddressIPv6": f"fd00:83::{n}/64", "MacAddress": ""}, "Options": {}})
        join = host.ok("/NetworkDriver.Join", {"NetworkID": net_id, "EndpointID": ep_id,
                                               "SandboxKey": f"/run/netns/{ns.name}", "Options": {}})
        assert "Gateway" not in join and join["GatewayIPv6"] == "fd00:83::1"
        src = join["InterfaceName"]["SrcName"]
        host.ns.run("ip", "link", "set", src, "netns", ns.name)
        ns.run("ip", "link", "set", src, "name", "eth0")
        ns.run("ip", "addr", "add", f"fd00:83::{n}/64", "dev", "eth0", "nodad")
        ns.run("ip", "link", "set", "eth0", "up")
        ns.run("ip", "-6", "route", "add", "default", "via", "fd00:83::1")
        ctrs.append((ns, ep_id, reply["Interface"]["MacAddress"]))
    (c2, ep2, _mac2), (c3, _ep3, _mac3) = ctrs
    ping6 = ("busybox", "ping6", "-c", "1", "-W", "2")
    until(lambda: c2.run(*ping6, "fd00:83::3", check=False).returncode == 0, timeout=10, what="v6 c2 -> c3")
    assert c2.run(*ping6, "fd00:83::1", check=False).returncode == 0
    wrap = Container(c2, net_id, ep2, "fd00:83::2", "fd00:83::2/64", "", {})
    wrap.serve(8000)
    try:
        assert pec(host, net_id, ep2, portmap((8000, 18300))) == {}
        got = host.get(f"/pynet/v1/ports?network={net_id}&endpoint={ep2}")
        assert [(b["family"], b["host_port"], b["container_ip"]) for b in got] == [(6, 18300, "fd00:83::2")]
        assert fetch(f"http://[{V6_LAN_HOST}]:18300/", lan.name) == V6_LAN_CLIENT
    finally:
        for p in wrap.procs:
            p.kill()
            p.wait()
            p.stdout.close()
    # --ipv4=false without --ipv6 has no subnet at all: a clear error.
    err = host.err("/NetworkDriver.CreateNetwork", dict(body, NetworkID=new_id(), IPv6Data=[], Options={
        "com.docker.network.generic": {"com.docker.network.enable_ipv4": False}}))
    assert "IPv6" in err and "subnet" in err


def test_gw_alloc_check_and_lan_gateway_from_the_parents_router(host):
    for mode, skip in (("nat", False), ("transparent", True), ("l2bridge", True)):
        reply = host.ok("/NetworkDriver.GwAllocCheck", {"Options": {"com.docker.network.generic": {"mode": mode}}})
        assert reply == {"SkipIPv4": skip, "SkipIPv6": skip}, mode
    assert "mode must be one of" in host.err("/NetworkDriver.GwAllocCheck", {
        "Options": {"com.docker.network.generic": {"mode": "bogus"}}})
    host.lan_client()  # up0 = 192.0.2.1/24 on the host: the "LAN"
    body = {"NetworkID": new_id(), "Options": {"com.docker.network.generic": {"mode": "l2bridge", "parent": UPLINK_IF}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "192.0.2.0/24"}], "IPv6Data": []}
    # No --gateway and no default router on the parent: refused, saying what to give.
    err = host.err("/NetworkDriver.CreateNetwork", body)
    assert "--gateway" in err and UPLINK_IF in err
    assert host.networks() == {}
    host.ns.run("ip", "route", "add", "default", "via", UPLINK_CLIENT, "dev", UPLINK_IF)
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}
    assert host.networks()[body["NetworkID"]]["gateways"] == [f"{UPLINK_CLIENT}/24"]
    # Docker reserved no address for it: the router's address is refused to a container.
    err = host.err("/NetworkDriver.CreateEndpoint", {
        "NetworkID": body["NetworkID"], "EndpointID": new_id(),
        "Interface": {"Address": f"{UPLINK_CLIENT}/24"}, "Options": {}})
    assert UPLINK_CLIENT in err and "gateway" in err
    ep_id = new_id()
    host.ok("/NetworkDriver.CreateEndpoint", {"NetworkID": body["NetworkID"], "EndpointID": ep_id,
                                              "Interface": {"Address": "192.0.2.50/24"}, "Options": {}})
    join = host.ok("/NetworkDriver.Join", {"NetworkID": body["NetworkID"], "EndpointID": ep_id,
                                           "SandboxKey": "", "Options": {}})
    assert join["Gateway"] == UPLINK_CLIENT  # a Gateway, so that Docker 26.1+ forwards DNS for it


def _second_network(host, ctr: Container, net, host_n: int, options: dict, ifname: str) -> str:
    """Another endpoint of the same container (sandbox) on `net`, plugged in as `ifname`."""
    ep_id, _reply = host.create_endpoint(net, host_n, options)
    join = host.join(net, ep_id, sandbox=f"/run/netns/{ctr.ns.name}", options=options)
    src = join["InterfaceName"]["SrcName"]
    host.ns.run("ip", "link", "set", src, "netns", ctr.ns.name)
    ctr.run("ip", "link", "set", src, "name", ifname)
    ctr.run("ip", "addr", "add", addr(net.n, host_n), "dev", ifname)
    ctr.run("ip", "link", "set", ifname, "up")
    return ep_id


def test_docker29_ports_follow_the_gateway_endpoint_and_leave(host):
    """A container on nat networks A, B and internal C, ports -p 18400:8000, Docker 29's sequence."""
    lan = host.lan_client()
    a, b = host.create_network(84), host.create_network(85)
    c = host.create_network(86, internal=True)
    maps = portmap((8000, 18400))
    opts = {"com.docker.network.portmap": maps}
    web = host.run_container(a, 2, options=opts)
    web.serve(8000)
    assert pec(host, a.id, web.ep_id, maps) == {}
    assert fetch(f"http://{UPLINK_HOST}:18400/", lan.name) == UPLINK_CLIENT
    # `pynet port add` on A: lasts until the container leaves A.
    host.ok("/pynet/v1/ports/add", {"NetworkID": a.id, "EndpointID": web.ep_id, "ports": ["18401:8000"]})
    ep_b = _second_network(host, web, b, 2, opts, "eth1")  # not the gateway endpoint: no PEC (29)
    ep_c = _second_network(host, web, c, 2, opts, "eth2")  # internal: the Join takes the port map, publishes nothing
    assert ports_of(host, c.id, ep_c) == set() and ports_of(host, b.id, ep_b) == set()
    # The gateway moves to B: Revoke on A, PEC on B (repeated calls are harmless).
    assert revoke(host, a.id, web.ep_id) == {} and revoke(host, a.id, web.ep_id) == {}
    assert ports_of(host) == set()
    web.run("ip", "route", "replace", "default", "via", b.gateway)  # the engine moves the default route
    assert pec(host, b.id, ep_b, maps) == {} and pec(host, b.id, ep_b, maps) == {}
    # Docker's ports and the `pynet port add` one follow the gateway to B.
    assert ports_of(host) == {("", 18400, "tcp", "10.85.0.2", "docker"), ("", 18401, "tcp", "10.85.0.2", "cli")}
    assert fetch(f"http://{UPLINK_HOST}:18400/", lan.name) == UPLINK_CLIENT
    assert fetch(f"http://{UPLINK_HOST}:18401/", lan.name) == UPLINK_CLIENT
    # ... and back to A when A is the gateway again (e.g. B disconnected: Revoke B, PEC A).
    assert revoke(host, b.id, ep_b) == {}
    web.run("ip", "route", "replace", "default", "via", a.gateway)
    assert pec(host, a.id, web.ep_id, maps) == {}
    assert ports_of(host) == {("", 18400, "tcp", "10.84.0.2", "docker"), ("", 18401, "tcp", "10.84.0.2", "cli")}
    assert fetch(f"http://{UPLINK_HOST}:18401/", lan.name) == UPLINK_CLIENT
    web.run("ip", "route", "replace", "default", "via", b.gateway)
    assert revoke(host, a.id, web.ep_id) == {} and pec(host, b.id, ep_b, maps) == {}
    # Docker 29 after a live-restore restart sends no Revoke: Leave takes the ports.
    host.ok("/NetworkDriver.Leave", {"NetworkID": b.id, "EndpointID": ep_b})
    assert ports_of(host, b.id) == set()
    assert fetch(f"http://{UPLINK_HOST}:18400/", lan.name, timeout=1) is None
    host.ok("/NetworkDriver.Leave", {"NetworkID": a.id, "EndpointID": web.ep_id})
    assert ports_of(host) == set()
    assert host.nft_elements("pubany4") == []
    for net, ep in ((a, web.ep_id), (b, ep_b), (c, ep_c)):
        host.ok("/NetworkDriver.Leave", {"NetworkID": net.id, "EndpointID": ep})  # again: harmless


def test_ports_of_a_container_that_died_unseen_are_freed(host):
    """Docker drops a legacy plugin's endpoints without any call when their container died while
    dockerd was down: once the container's veth is gone, pynet frees its host ports by itself."""
    net = host.create_network(87)
    web = host.run_container(net, 2)
    assert pec(host, net.id, web.ep_id, portmap((8000, 18700))) == {}
    assert ports_of(host) == {("", 18700, "tcp", "10.87.0.2", "docker")}
    web.close()  # the container's namespace goes; no Leave, no DeleteEndpoint
    host.containers.remove(web)
    until(lambda: ports_of(host) == set(), timeout=10, what="ports freed (firewall_check_interval is 1 s)")
    assert host.nft_elements("pubany4") == []
    other = host.run_container(net, 3)
    assert pec(host, net.id, other.ep_id, portmap((8000, 18700))) == {}  # the port is usable again
