"""driver.py through the protocol, over fake links/nft/sysctl: validate -> apply with undo -> persist -> answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import EP_1, EP_2, EP_3, ID_A, ID_B, FakeLinks, FakeNft, ep_body, make_driver, net_body, pm
from pynet.errors import KernelError

T = "pynet_unit"
BR_A = "pn-n" + ID_A[:11]
H1, K1 = "pn-h" + EP_1[:11], "pn-k" + EP_1[:11]


def state_file(cfg, net_id=ID_A) -> Path:
    return Path(cfg.state_dir) / "networks" / f"{net_id}.json"


def saved(cfg, net_id=ID_A) -> dict:
    return json.loads(state_file(cfg, net_id).read_text())["network"]


def ids(net=ID_A, ep=EP_1) -> dict:
    return {"NetworkID": net, "EndpointID": ep}


async def test_nat_lifecycle(docker, driver, cfg, links, nft, sysctls):
    # CreateNetwork: bridge with the gateway, sysctls, table elements, DOCKER-USER, state on disk.
    assert await docker.ok("/NetworkDriver.CreateNetwork", net_body()) == {}
    assert links.links[BR_A].kind == "bridge" and links.links[BR_A].addrs == ["172.30.0.1/24"]
    assert links.links[BR_A].alias == cfg.owner_tag + ID_A
    assert sysctls.values["/proc/sys/net/ipv4/ip_forward"] == "1"
    assert sysctls.values[f"/proc/sys/net/ipv4/conf/{BR_A}/route_localnet"] == "1"
    assert f'"{BR_A}"' in nft.elements(T, "bridges") and f'"{BR_A}"' in nft.elements(T, "masq")
    assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]
    assert saved(cfg)["bridge"] == BR_A

    # CreateEndpoint: a veth on the bridge; the MAC pynet chose is the only field returned.
    reply = await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(options={
        "com.docker.network.portmap": [pm(80, 8080), pm(443)]}))
    assert reply == {"Interface": {"MacAddress": "02:42:ac:1e:00:02"}}
    assert links.links[H1].master == BR_A and links.links[K1].mac == "02:42:ac:1e:00:02"
    assert EP_1 in saved(cfg)["endpoints"]

    # Join: what Docker moves into the container, and the gateway (no docker_gwbridge).
    join = await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/var/run/docker/netns/abc", Options={}))
    assert join == {"InterfaceName": {"SrcName": K1, "DstPrefix": "eth"}, "Gateway": "172.30.0.1"}
    assert saved(cfg)["endpoints"][EP_1]["sandbox"] == "/var/run/docker/netns/abc"

    # ProgramExternalConnectivity: the ports, in the maps and on disk.
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(80, 8080), pm(443)]}))
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80", "tcp . 40000": "172.30.0.2 . 443"}
    assert [(b["host_port"], b["container_port"]) for b in saved(cfg)["endpoints"][EP_1]["bindings"]] == [
        (8080, 80), (40000, 443)]
    listed = await docker.get("/pynet/v1/ports")
    assert [(p["host_port"], p["container_ip"], p["endpoint"]) for p in listed] == [
        (8080, "172.30.0.2", EP_1), (40000, "172.30.0.2", EP_1)]

    info = await docker.ok("/NetworkDriver.EndpointOperInfo", ids())
    assert info["Value"]["mac"] == "02:42:ac:1e:00:02" and info["Value"]["bridge"] == BR_A

    # A retry of ProgramExternalConnectivity keeps the host port pynet chose.
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(80, 8080), pm(443)]}))
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80", "tcp . 40000": "172.30.0.2 . 443"}

    # Teardown, in Docker's order; each call again (already gone) still succeeds.
    for _ in range(2):
        await docker.ok("/NetworkDriver.RevokeExternalConnectivity", ids())
        assert nft.elements(T, "pubany4") == {}
        await docker.ok("/NetworkDriver.Leave", ids())
        await docker.ok("/NetworkDriver.DeleteEndpoint", ids())
        assert H1 not in links.links and K1 not in links.links
        await docker.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": ID_A})
        assert BR_A not in links.links
        assert not state_file(cfg).exists()
        assert nft.elements(T, "bridges") == {} and nft.elements(T, "masq") == {}
        assert nft.du_patterns("ip") == []  # the last network took Docker-side accepts with it
    assert len(driver.published.index) == 0


async def test_port_conflict_between_containers(docker, driver, cfg, nft):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    for ep, ip in ((EP_1, "172.30.0.2/24"), (EP_2, "172.30.0.3/24")):
        await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(ep_id=ep, address=ip))
        await docker.ok("/NetworkDriver.Join", dict(ids(ep=ep), SandboxKey="/x", Options={}))
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))
    before = nft.elements(T, "pubany4")
    err = await docker.err("/NetworkDriver.ProgramExternalConnectivity", dict(ids(ep=EP_2), Options={
        "com.docker.network.portmap": [pm(81, 8081), pm(80, 8080, proto=6)]}))
    assert "0.0.0.0:8080/tcp is already published by pynet" in err and EP_1[:12] in err
    # Nothing half applied: 8081 is not in the map, the second container holds nothing.
    assert nft.elements(T, "pubany4") == before
    assert saved(cfg)["endpoints"][EP_2]["bindings"] == []
    assert driver.published.index.holder(4, "", "tcp", 8081) is None


async def test_failed_port_change_keeps_old_ports(docker, driver, cfg, nft):
    """nft refuses the new port set: the container keeps exactly the ports it had, in kernel, index and state."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))
    nft.fail_next, nft.fail_count = KernelError("nftables refused the change: busy"), 2  # and the rewrite too
    err = await docker.err("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(90, 9090)]}))
    assert "busy" in err
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert [b["host_port"] for b in saved(cfg)["endpoints"][EP_1]["bindings"]] == [8080]
    assert driver.published.index.holder(4, "", "tcp", 8080).endpoint_id == EP_1
    assert driver.published.index.holder(4, "", "tcp", 9090) is None


async def test_failed_port_persist_is_rolled_back(docker, driver, nft, monkeypatch):
    """The state file cannot be written: the new ports come out of nft again, the old ones stay."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))

    def disk_full(net):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver.state.store, "save", disk_full)
    err = await docker.err("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(90, 9090)]}))
    assert "No space left on device" in err
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert [b.host_port for b in driver.state.nets[ID_A].endpoints[EP_1].bindings] == [8080]
    assert driver.published.index.holder(4, "", "tcp", 9090) is None


async def test_capital_P_with_two_exposed_ports(docker, nft):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={}))
    status, doc, _ = await docker.call("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(80), pm(443)]}))
    assert status == 200, doc
    assert sorted(nft.elements(T, "pubany4").values()) == ["172.30.0.2 . 443", "172.30.0.2 . 80"]


async def test_failed_create_network_is_undone(docker, driver, cfg, links, nft):
    nft.fail_next, nft.fail_count = KernelError("nftables refused the change: no memory"), 2
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body())
    assert err == "nftables refused the change: no memory"
    assert BR_A not in links.links and ("delete", BR_A) in links.calls  # the bridge it made is gone again
    assert driver.state.nets == {} and not state_file(cfg).exists()
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())  # and a retry works
    assert BR_A in links.links


async def test_failed_persist_is_undone(docker, driver, cfg, links, nft, monkeypatch):
    def disk_full(net):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver.state.store, "save", disk_full)
    status, doc, _ = await docker.call("/NetworkDriver.CreateNetwork", net_body())
    assert status == 500 and "No space left on device" in doc["Err"]
    assert BR_A not in links.links and driver.state.nets == {}
    assert nft.elements(T, "bridges") == {}


async def test_failed_endpoint_is_undone(docker, driver, cfg, links):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    links.fail["ensure_veth"] = KernelError("create veth: Operation not permitted")
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body())
    assert "Operation not permitted" in err
    assert driver.state.nets[ID_A].endpoints == {} and saved(cfg)["endpoints"] == {}
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())


async def test_subnet_conflicts_name_the_other_side(docker):
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(pool="192.168.50.0/24",
                                                                    gateway="192.168.50.1/24"))
    assert "overlaps 192.168.50.10/24 on host interface eth0" in err and "--subnet" in err
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(net_id=ID_B, pool="172.30.0.0/16",
                                                                    gateway="172.30.0.1/16"))
    assert f"of pynet network {ID_A[:12]}" in err


async def test_bridge_name_conflicts(docker, links):
    links.add_foreign("eth1", kind="device")
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(generic={"bridge_name": "eth1"}))
    assert "eth1 already exists and is not pynet's" in err
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(generic={"bridge_name": "mybr0"}))
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(net_id=ID_B, pool="10.8.0.0/24",
                                                                    gateway="10.8.0.1/24",
                                                                    generic={"bridge_name": "mybr0"}))
    assert "bridge_name mybr0 is already used by pynet network" in err


async def test_create_network_retry_and_changed_settings(docker, driver):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())  # same body: a retry
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(generic={"mtu": "1400"}))
    assert "already exists with other settings" in err
    assert driver.state.nets[ID_A].mtu == 0


async def test_duplicate_address_and_mac(docker, links, tmp_path):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    # A joined, live container; its SandboxKey is a path pynet may not see (managed plugin).
    await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/var/run/docker/netns/nothere", Options={}))
    links.move_to_container(K1)
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(ep_id=EP_2))
    assert f"address 172.30.0.2/24 is already used by endpoint {EP_1[:12]}" in err
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(ep_id=EP_3, address="172.30.0.9/24",
                                                                    mac="02:42:ac:1e:00:02"))
    assert "MAC address 02:42:ac:1e:00:02 is already used" in err and "--mac-address" in err


async def test_ghost_endpoint_evicted_when_address_reused(docker, driver, links, nft, tmp_path):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    sandbox = tmp_path / "netns-1"
    sandbox.touch()
    await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey=str(sandbox), Options={}))
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))
    await links.delete(H1)  # its namespace went away while pynet was down; DeleteEndpoint never came
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(ep_id=EP_2))
    assert list(driver.state.nets[ID_A].endpoints) == [EP_2]
    assert nft.elements(T, "pubany4") == {} and driver.published.index.holder(4, "", "tcp", 8080) is None


async def test_unjoined_holder_of_an_address_is_a_ghost(docker, driver):
    """pynet saved an endpoint but died before answering: Docker reuses the address for another one."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(ep_id=EP_2))
    assert list(driver.state.nets[ID_A].endpoints) == [EP_2]


async def test_ports_of_another_network_accepted_at_internal_join(docker, driver):
    """Docker sends a container's whole port map with every Join (compose: web with ports on a
    front network and on an internal back network): the internal Join takes it, publishes nothing."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(internal=True))
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(options={"com.docker.network.portmap": [pm(80, 8080)]}))
    reply = await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={
        "com.docker.network.portmap": [pm(80, 8080)]}))
    assert "Gateway" not in reply
    assert driver.published.listing() == []


async def test_internal_join_has_no_gateway(docker, nft):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(internal=True))
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    join = await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={}))
    assert "Gateway" not in join
    assert f'"{BR_A}"' in nft.elements(T, "internal") and nft.elements(T, "masq") == {}


async def test_dual_stack_join(docker):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(v6=("fd00:30::/64", "fd00:30::1/64")))
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address6="fd00:30::2/64"))
    join = await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={}))
    assert (join["Gateway"], join["GatewayIPv6"]) == ("172.30.0.1", "fd00:30::1")


async def test_mac_from_docker_is_not_echoed(docker):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    assert await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(mac="02:00:00:00:00:99")) == {}


async def test_transparent_network(docker, links):
    links.add_foreign("eth0", kind="device")
    body = net_body(generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24",
                    gateway="192.168.50.1/24")
    await docker.ok("/NetworkDriver.CreateNetwork", body)
    shim = "pn-s" + ID_A[:11]
    assert links.links[shim].kind == "macvlan" and links.links[shim].parent == "eth0"
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.20/24", options={
        "com.docker.network.portmap": [pm(80, 8080)]}))
    # The port map comes with every Join; it is refused only where Docker wants it applied.
    await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={
        "com.docker.network.portmap": [pm(80, 8080)]}))
    err = await docker.err("/NetworkDriver.ProgramExternalConnectivity", dict(ids(), Options={
        "com.docker.network.portmap": [pm(80, 8080)]}))
    assert "published ports (-p/-P) belong to mode=nat" in err and "gw-priority" in err
    assert links.links[K1].kind == "macvlan" and links.links[K1].mac == "02:42:c0:a8:32:14"
    assert links.routes["192.168.50.20/32"] == (shim, "192.168.50.10")  # host's own LAN address as source


async def test_transparent_parent_must_exist(docker):
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(generic={"mode": "transparent",
                                                                             "parent": "eth9"}))
    assert "parent interface eth9 does not exist" in err


async def test_restart_restores_table_and_ports(docker, driver, cfg, links, sysctls):
    """pynet restarts (kernel kept, nft table flushed): the table comes back from state, ports included."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.Join", dict(ids(), SandboxKey="/x", Options={}))
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))
    fresh = FakeNft(docker_user={"ip": []})
    again = make_driver(cfg, links, fresh, sysctls)
    await again.start()
    try:
        assert list(again.state.nets) == [ID_A]
        assert fresh.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
        assert f'"{BR_A}"' in fresh.elements(T, "bridges")
        assert again.published.index.holder(4, "", "tcp", 8080).endpoint_id == EP_1
    finally:
        await again.shutdown()


async def test_reboot_drops_ports_of_missing_endpoints(docker, driver, cfg, links, sysctls):
    """Host reboot: no links at all. The network comes back from state; a ghost endpoint holds no port."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body())
    await docker.ok("/NetworkDriver.ProgramExternalConnectivity",
                    dict(ids(), Options={"com.docker.network.portmap": [pm(80, 8080)]}))
    booted = FakeLinks()
    fresh = FakeNft(docker_user={"ip": []})
    again = make_driver(cfg, booted, fresh, sysctls)
    await again.start()
    try:
        assert booted.links[BR_A].addrs == ["172.30.0.1/24"]  # recreated from state
        assert H1 not in booted.links  # Docker joins the endpoint again, or deletes it
        assert fresh.elements(T, "pubany4") == {} and len(again.published.index) == 0
        assert saved(cfg)["endpoints"][EP_1]["bindings"] == []
    finally:
        await again.shutdown()


async def test_leftover_links_removed_at_start(cfg, links, nft, sysctls):
    links.add_foreign("eth0", kind="device")
    links.add_foreign("pn-h0123456789a", kind="veth")  # our name shape, in no state file
    links.add_foreign("other0", kind="veth", alias=cfg.owner_tag + "dead")  # our tag
    links.add_foreign("pn-hnothex!!!!!", kind="veth")  # not our shape: not ours to delete
    svc = make_driver(cfg, links, nft, sysctls)
    await svc.start()
    try:
        assert sorted(svc.reconciler.leftovers_removed) == ["other0", "pn-h0123456789a"]
        assert sorted(links.links) == ["eth0", "pn-hnothex!!!!!"]
    finally:
        await svc.shutdown()


async def test_refused_calls_for_unknown_networks_add_no_lock(docker, driver):
    """Every refused call naming an unknown network once added a lock (10,000 calls, 10,000 locks)."""
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    for i in range(300):
        body = {"NetworkID": f"{i:064x}", "EndpointID": EP_2, "SandboxKey": "", "Options": {},
                "Interface": {"Address": "172.30.0.9/24"}}
        for call in ("CreateEndpoint", "Join", "ProgramExternalConnectivity", "EndpointOperInfo"):
            await docker.err(f"/NetworkDriver.{call}", body, status=404)
        for call in ("Leave", "DeleteEndpoint", "RevokeExternalConnectivity", "DeleteNetwork"):
            await docker.ok(f"/NetworkDriver.{call}", body)
    assert len(driver.state._locks) <= 1
    await docker.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": ID_A})
    assert driver.state._locks == {}
