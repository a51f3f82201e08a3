"""Published ports: ProgramExternalConnectivity with Docker's port map, reached from a LAN namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib import TABLE
from nslib import UPLINK_CLIENT, UPLINK_HOST, fetch, peer_server, portmap

UDP_ASK = str(Path(__file__).resolve().parents[1] / "udp_ask.py")


def publish(host, ctr, maps: list[dict]) -> dict:
    return host.ok("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": ctr.net_id, "EndpointID": ctr.ep_id,
        "Options": {"com.docker.network.portmap": maps,
                    "com.docker.network.endpoint.exposedports": [{"Proto": m["Proto"], "Port": m["Port"]}
                                                                 for m in maps]}})


def revoke(host, ctr) -> dict:
    return host.ok("/NetworkDriver.RevokeExternalConnectivity", {"NetworkID": ctr.net_id, "EndpointID": ctr.ep_id})


def bindings(host, ctr=None) -> list[dict]:
    q = f"?network={ctr.net_id}&endpoint={ctr.ep_id}" if ctr else ""
    return host.get("/pynet/v1/ports" + q)


def udp_ask(netns: str, ip: str, port: int) -> str | None:
    p = subprocess.run(["ip", "netns", "exec", netns, sys.executable, UDP_ASK, ip, str(port)],
                       capture_output=True, text=True, timeout=20)
    return p.stdout.strip() if p.returncode == 0 else None


def test_published_port_from_lan_host_localhost_and_hairpin(host):
    lan = host.lan_client()
    net = host.create_network(71)
    maps = portmap((8000, 18080), (8000, 18081, "127.0.0.1"), (8000, 18082, "", "udp"))
    web = host.run_container(net, 2, options={"com.docker.network.portmap": maps})
    other = host.run_container(net, 3)
    web.serve(8000)
    assert publish(host, web, maps) == {}
    got = {(b["host_ip"], b["host_port"], b["proto"]): (b["container_ip"], b["container_port"])
           for b in bindings(host, web)}
    assert got == {("", 18080, "tcp"): (web.ip, 8000), ("127.0.0.1", 18081, "tcp"): (web.ip, 8000),
                   ("", 18082, "udp"): (web.ip, 8000)}
    assert len(host.nft_elements("pubany4")) == 2 and len(host.nft_elements("pub4")) == 1

    # The server answers with the client address it sees.
    assert fetch(f"http://{UPLINK_HOST}:18080/", lan.name) == UPLINK_CLIENT  # LAN source kept
    assert udp_ask(lan.name, UPLINK_HOST, 18082) == UPLINK_CLIENT
    assert fetch("http://127.0.0.1:18080/", host.ns.name) == net.gateway  # localhost, no proxy process
    assert fetch("http://127.0.0.1:18081/", host.ns.name) == net.gateway
    assert fetch(f"http://{UPLINK_HOST}:18080/", host.ns.name) == UPLINK_HOST  # host through its own address
    # Hairpin: through the host address from the same network, the answer must come back via the host.
    assert other.fetch(f"http://{UPLINK_HOST}:18080/") == net.gateway
    assert web.fetch(f"http://{UPLINK_HOST}:18080/") == net.gateway
    # Bound to 127.0.0.1: nothing on the LAN side.
    assert fetch(f"http://{UPLINK_HOST}:18081/", lan.name, timeout=2) is None

    assert revoke(host, web) == {}
    assert bindings(host) == []
    assert host.nft_elements("pubany4") == [] and host.nft_elements("pub4") == []
    assert fetch(f"http://{UPLINK_HOST}:18080/", lan.name, timeout=2) is None
    assert revoke(host, web) == {}  # idempotent


def test_host_port_zero_is_chosen_and_released_with_the_endpoint(host):
    lan = host.lan_client()
    net = host.create_network(72)
    web = host.run_container(net, 2)
    web.serve(8000)
    publish(host, web, portmap((8000, 0)))
    (b,) = bindings(host, web)
    lo, hi = (int(x) for x in host.sysctl("net.ipv4.ip_local_port_range").split())
    assert lo <= b["host_port"] <= hi
    assert fetch(f"http://{UPLINK_HOST}:{b['host_port']}/", lan.name) == UPLINK_CLIENT
    host.remove_container(web)
    assert bindings(host) == [] and host.nft_elements("pubany4") == []


def test_port_conflicts_are_refused_whole_and_name_the_port(host):
    lan = host.lan_client()
    net = host.create_network(73)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    a.serve(8000)
    publish(host, a, portmap((8000, 18090)))
    status, doc = host.call("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": b.net_id, "EndpointID": b.ep_id,
        "Options": {"com.docker.network.portmap": portmap((8000, 18091), (8000, 18090))}})
    assert status != 200 and "18090" in doc["Err"], doc
    # Nothing of b's half-applied: 18091 is not open, a still owns 18090.
    assert [x["host_port"] for x in bindings(host)] == [18090]
    assert len(host.nft_elements("pubany4")) == 1
    assert fetch(f"http://{UPLINK_HOST}:18090/", lan.name) == UPLINK_CLIENT
    # A port a process of the host already listens on is refused too.
    host.procs.append(peer_server(host.ns.name, 18092))
    err = host.err("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": b.net_id, "EndpointID": b.ep_id,
        "Options": {"com.docker.network.portmap": portmap((8000, 18092))}})
    assert "18092" in err and "already" in err
    assert bindings(host, b) == []


def test_ports_survive_kill9_and_a_flushed_table(host):
    lan = host.lan_client()
    net = host.create_network(74)
    web = host.run_container(net, 2)
    web.serve(8000)
    publish(host, web, portmap((8000, 18100)))
    host.daemon.kill9()
    assert fetch(f"http://{UPLINK_HOST}:18100/", lan.name) == UPLINK_CLIENT  # the kernel serves it alone
    host.nft("delete", "table", "inet", TABLE)
    assert fetch(f"http://{UPLINK_HOST}:18100/", lan.name, timeout=1) is None
    host.daemon.start()
    assert [b["host_port"] for b in bindings(host)] == [18100]
    assert fetch(f"http://{UPLINK_HOST}:18100/", lan.name) == UPLINK_CLIENT


def test_port_map_from_create_endpoint_and_delete_network_closes_ports(host):
    """Docker may send ProgramExternalConnectivity without the map: the one from CreateEndpoint applies."""
    lan = host.lan_client()
    net = host.create_network(75)
    maps = portmap((8000, 18110))
    web = host.run_container(net, 2, options={"com.docker.network.portmap": maps})
    web.serve(8000)
    assert bindings(host) == []  # nothing is published before ProgramExternalConnectivity
    host.ok("/NetworkDriver.ProgramExternalConnectivity", {"NetworkID": net.id, "EndpointID": web.ep_id,
                                                           "Options": {}})
    assert fetch(f"http://{UPLINK_HOST}:18110/", lan.name) == UPLINK_CLIENT
    host.delete_network(net)
    assert bindings(host) == [] and host.nft_elements("pubany4") == []
    assert fetch(f"http://{UPLINK_HOST}:18110/", lan.name, timeout=2) is None


def test_endpoint_missing_at_restart_releases_its_ports(host):
    """A container gone while pynet was down (no DeleteEndpoint) must not block its host port."""
    lan = host.lan_client()
    net = host.create_network(76)
    old = host.run_container(net, 2)
    publish(host, old, portmap((8000, 18120)))
    host.daemon.kill9()
    host.containers.remove(old)
    old.close()
    host.daemon.start()
    assert bindings(host) == [] and host.nft_elements("pubany4") == []
    new = host.run_container(net, 3)
    new.serve(8000)
    publish(host, new, portmap((8000, 18120)))
    assert fetch(f"http://{UPLINK_HOST}:18120/", lan.name) == UPLINK_CLIENT
