"""The core (core/), called with typed requests over fake links/nft/sysctl: validate -> apply with
undo -> persist -> answer. No Docker body here: the wire layer has its own tests (test_wire.py),
and the HTTP edge its own (test_protocol.py)."""

from __future__ import annotations

import asyncio

import dataclasses
from pathlib import Path

import pytest
import statedb

from fakes import (EP_1, EP_2, EP_3, ID_A, ID_B, FakeLinks, FakeNft, ep_req, join_req, make_driver, net_req, pec_req,
                   port, ref)
from pynet.errors import KernelError, NotFound, PynetError

T = "pynet_unit"
BR_A = "pn-n" + ID_A[:11]
H1, K1 = "pn-h" + EP_1[:11], "pn-k" + EP_1[:11]


def saved(cfg, net_id=ID_A) -> dict | None:
    return statedb.network(cfg.state_dir, net_id)


def stored(driver, cfg, net_id=ID_A) -> dict | None:
    """What the database holds once the deferred deletes are written (PURGE_DELAY after the call)."""
    driver.state.store.flush()
    return saved(cfg, net_id)


async def refused(call, exc=PynetError) -> str:
    with pytest.raises(exc) as ei:
        await call
    return str(ei.value)


async def a_container(driver, ep_id=EP_1, address="172.30.0.2/24", ports=None, sandbox="/x"):
    await driver.endpoints.create(ep_req(ep_id=ep_id, address=address, ports=ports))
    return await driver.endpoints.join(join_req(ep_id=ep_id, sandbox=sandbox, ports=ports))


async def test_nat_lifecycle(driver, cfg, links, nft, sysctls):
    # CreateNetwork: bridge with the gateway, sysctls, table elements, DOCKER-USER, state on disk.
    await driver.networks.create(net_req())
    assert links.links[BR_A].kind == "bridge" and links.links[BR_A].addrs == ["172.30.0.1/24"]
    assert links.links[BR_A].alias == cfg.owner_tag + ID_A
    assert sysctls.values["/proc/sys/net/ipv4/ip_forward"] == "1"
    assert sysctls.values[f"/proc/sys/net/ipv4/conf/{BR_A}/route_localnet"] == "1"
    assert f'"{BR_A}"' in nft.elements(T, "bridges") and f'"{BR_A}"' in nft.elements(T, "masq")
    assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]
    assert saved(cfg)["bridge"] == BR_A

    # CreateEndpoint: a veth on the bridge; the MAC pynet chose is what Docker is told.
    mapping = [port(80, 8080), port(443)]
    assert await driver.endpoints.create(ep_req(ports=mapping)) == "02:42:ac:1e:00:02"
    assert links.links[H1].master == BR_A and links.links[K1].mac == "02:42:ac:1e:00:02"
    assert EP_1 in saved(cfg)["endpoints"]

    # Join: what Docker moves into the container, and the gateway (no docker_gwbridge).
    info = await driver.endpoints.join(join_req(sandbox="/var/run/docker/netns/abc", ports=mapping))
    assert (info.src_name, info.dst_prefix, info.gateway, info.gateway6) == (K1, "eth", "172.30.0.1", "")
    assert saved(cfg)["endpoints"][EP_1]["sandbox"] == "/var/run/docker/netns/abc"

    # ProgramExternalConnectivity: the ports, in the maps and on disk.
    await driver.published.program(pec_req(ports=mapping))
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80", "tcp . 40000": "172.30.0.2 . 443"}
    assert [(b["host_port"], b["container_port"]) for b in saved(cfg)["endpoints"][EP_1]["bindings"]] == [
        (8080, 80), (40000, 443)]
    assert [(p["host_port"], p["container_ip"], p["endpoint"]) for p in driver.published.listing()] == [
        (8080, "172.30.0.2", EP_1), (40000, "172.30.0.2", EP_1)]
    info = driver.endpoints.oper_info(ref())
    assert info["mac"] == "02:42:ac:1e:00:02" and info["bridge"] == BR_A

    # A repeated PEC keeps the host port pynet chose.
    await driver.published.program(pec_req(ports=mapping))
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80", "tcp . 40000": "172.30.0.2 . 443"}

    # Teardown, in Docker's order; each call again (already gone) still succeeds.
    driver.networks.docker_user_linger = 0.05
    for _ in range(2):
        await driver.published.revoke(ref())
        assert nft.elements(T, "pubany4") == {}
        await driver.endpoints.leave(ref())
        await driver.endpoints.delete(ref())
        assert H1 not in links.links and K1 not in links.links
        await driver.networks.delete(ref(ep_id=None))
        assert BR_A not in links.links and stored(driver, cfg) is None
        assert nft.elements(T, "bridges") == {} and nft.elements(T, "masq") == {}
        # The last network's Docker-side accepts go a moment later (they linger: churn re-adds nothing).
        await asyncio.sleep(0.2)
        assert nft.du_patterns("ip") == []
    assert len(driver.published.index) == 0


async def test_docker_user_accepts_linger_through_churn_and_go_after_or_at_a_clean_stop(driver, nft):
    """A network removed and made again (compose down/up, CI) finds DOCKER-USER's accepts in place: no
    nft work in either call. With no network for `docker_user_linger` seconds they go, and a clean
    stop takes lingering ones at once (the next start would not know a custom bridge name's)."""
    driver.networks.docker_user_linger = 0.3
    await driver.networks.create(net_req())
    want = [("iifname", "pn-*"), ("oifname", "pn-*")]
    assert sorted(nft.du_patterns("ip")) == want
    for _ in range(3):
        changes = len(nft.scripts)
        await driver.networks.delete(ref(ep_id=None))
        await driver.networks.create(net_req())
        assert not any("DOCKER-USER" in line for script in nft.scripts[changes:] for line in script)
    assert sorted(nft.du_patterns("ip")) == want
    await driver.networks.delete(ref(ep_id=None))
    assert sorted(nft.du_patterns("ip")) == want  # still lingering
    await asyncio.sleep(0.5)
    assert nft.du_patterns("ip") == []

    driver.networks.docker_user_linger = 60
    await driver.networks.create(net_req(ID_B, pool="172.31.0.0/24", gateway="172.31.0.1/24"))
    await driver.networks.create(net_req(generic={"com.docker.network.bridge.name": "mybr0"}))
    assert ("iifname", "mybr0") in nft.du_patterns("ip")
    await driver.networks.delete(ref(ep_id=None))
    assert ("iifname", "mybr0") in nft.du_patterns("ip")  # lingering, for a minute
    await driver.reconciler.shutdown()  # another network stays: its accepts do too
    assert sorted(nft.du_patterns("ip")) == want


async def test_docker_user_linger_counts_from_the_last_delete(driver, nft):
    """Networks made and removed again and again, each gone for less than the linger but the churn
    longer than it (a `docker run` loop with its own network): the accepts never go, nor when the
    periodic firewall check comes while no network is there. Counted from the first delete, or
    taken out by the check, they went and the next create re-added them (~1.5 ms of its time)."""
    driver.networks.docker_user_linger = 0.5
    await driver.networks.create(net_req())
    changes = len(nft.scripts)
    for _ in range(3):
        await driver.networks.delete(ref(ep_id=None))
        await asyncio.sleep(0.15)
        await driver.reconciler.check_firewall()  # the periodic check, with no network: what lingers stays
        await asyncio.sleep(0.15)
        await driver.networks.create(net_req())
    assert not any("DOCKER-USER" in line for script in nft.scripts[changes:] for line in script)
    assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]
    await driver.networks.delete(ref(ep_id=None))
    await asyncio.sleep(0.8)
    assert nft.du_patterns("ip") == []


async def test_port_conflict_between_containers(driver, cfg, nft):
    await driver.networks.create(net_req())
    for ep, ip in ((EP_1, "172.30.0.2/24"), (EP_2, "172.30.0.3/24")):
        await a_container(driver, ep, ip)
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
    before = nft.elements(T, "pubany4")
    err = await refused(driver.published.program(pec_req(ep_id=EP_2, ports=[port(81, 8081), port(80, 8080)])))
    assert "0.0.0.0:8080/tcp is already published by pynet" in err and EP_1[:12] in err
    # Nothing half applied: 8081 is not in the map, the second container holds nothing.
    assert nft.elements(T, "pubany4") == before
    assert saved(cfg)["endpoints"][EP_2]["bindings"] == []
    assert driver.published.index.holder(4, "", "tcp", 8081) is None


async def test_failed_port_change_keeps_old_ports(driver, cfg, nft):
    """nft refuses the new port set: the container keeps exactly the ports it had, in kernel, index and state."""
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
    nft.fail_next, nft.fail_count = KernelError("nftables refused the change: busy"), 2  # and the rewrite too
    assert "busy" in await refused(driver.published.program(pec_req(ports=[port(90, 9090)])))
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert [b["host_port"] for b in saved(cfg)["endpoints"][EP_1]["bindings"]] == [8080]
    assert driver.published.index.holder(4, "", "tcp", 8080).endpoint_id == EP_1
    assert driver.published.index.holder(4, "", "tcp", 9090) is None


def disk_full(net, *eps):
    raise OSError(28, "No space left on device")


async def test_failed_port_persist_is_rolled_back(driver, nft, monkeypatch):
    """The state file cannot be written: the new ports come out of nft again, the old ones stay."""
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
    monkeypatch.setattr(driver.state.store, "save", disk_full)
    err = await refused(driver.published.program(pec_req(ports=[port(90, 9090)])), OSError)
    assert "No space left on device" in err
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert [b.host_port for b in driver.state.nets[ID_A].endpoints[EP_1].bindings] == [8080]
    assert driver.published.index.holder(4, "", "tcp", 9090) is None


async def test_capital_P_with_two_exposed_ports(driver, nft):
    await driver.networks.create(net_req())
    await a_container(driver)
    await driver.published.program(pec_req(ports=[port(80), port(443)]))
    assert sorted(nft.elements(T, "pubany4").values()) == ["172.30.0.2 . 443", "172.30.0.2 . 80"]


async def test_failed_create_network_is_undone(driver, cfg, links, nft):
    nft.fail_next, nft.fail_count = KernelError("nftables refused the change: no memory"), 2
    assert await refused(driver.networks.create(net_req())) == "nftables refused the change: no memory"
    assert BR_A not in links.links and ("delete", BR_A) in links.calls  # the bridge it made is gone again
    assert driver.state.nets == {} and saved(cfg) is None
    await driver.networks.create(net_req())  # and a retry works
    assert BR_A in links.links


async def test_failed_persist_is_undone(driver, links, nft, monkeypatch):
    monkeypatch.setattr(driver.state.store, "save", disk_full)
    assert "No space left on device" in await refused(driver.networks.create(net_req()), OSError)
    assert BR_A not in links.links and driver.state.nets == {}
    assert nft.elements(T, "bridges") == {}


async def test_failed_endpoint_is_undone(driver, cfg, links):
    await driver.networks.create(net_req())
    links.fail["ensure_veth"] = KernelError("create veth: Operation not permitted")
    assert "Operation not permitted" in await refused(driver.endpoints.create(ep_req()))
    assert driver.state.nets[ID_A].endpoints == {} and saved(cfg)["endpoints"] == {}
    await driver.endpoints.create(ep_req())


async def test_subnet_conflicts_name_the_other_side(driver):
    err = await refused(driver.networks.create(net_req(pool="192.168.50.0/24", gateway="192.168.50.1/24")))
    assert "overlaps 192.168.50.10/24 on host interface eth0" in err and "--subnet" in err
    await driver.networks.create(net_req())
    err = await refused(driver.networks.create(net_req(net_id=ID_B, pool="172.30.0.0/16", gateway="172.30.0.1/16")))
    assert f"of pynet network {ID_A[:12]}" in err


async def test_bridge_name_conflicts(driver, links):
    links.add_foreign("eth1", kind="device")
    err = await refused(driver.networks.create(net_req(generic={"bridge_name": "eth1"})))
    assert "eth1 already exists and is not pynet's" in err
    await driver.networks.create(net_req(generic={"bridge_name": "mybr0"}))
    err = await refused(driver.networks.create(net_req(net_id=ID_B, pool="10.8.0.0/24", gateway="10.8.0.1/24",
                                                       generic={"bridge_name": "mybr0"})))
    assert "bridge_name mybr0 is already used by pynet network" in err


async def test_create_network_retry_and_changed_settings(driver):
    await driver.networks.create(net_req())
    await driver.networks.create(net_req())  # the same request: a retry
    assert "already exists with other settings" in await refused(
        driver.networks.create(net_req(generic={"mtu": "1400"})))
    assert driver.state.nets[ID_A].mtu == 0


async def test_duplicate_address_and_mac(driver, links):
    await driver.networks.create(net_req())
    # A joined, live container; its SandboxKey is a path pynet may not see (managed plugin).
    await a_container(driver, sandbox="/var/run/docker/netns/nothere")
    links.move_to_container(K1)
    err = await refused(driver.endpoints.create(ep_req(ep_id=EP_2)))
    assert f"address 172.30.0.2/24 is already used by endpoint {EP_1[:12]}" in err
    err = await refused(driver.endpoints.create(ep_req(ep_id=EP_3, address="172.30.0.9/24", mac="02:42:ac:1e:00:02")))
    assert "MAC address 02:42:ac:1e:00:02 is already used" in err and "--mac-address" in err


async def test_ghost_endpoint_evicted_when_address_reused(driver, links, nft):
    await driver.networks.create(net_req())
    await a_container(driver)
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
    await links.delete(H1)  # its namespace went away while pynet was down; DeleteEndpoint never came
    await driver.endpoints.create(ep_req(ep_id=EP_2))
    assert list(driver.state.nets[ID_A].endpoints) == [EP_2]
    assert nft.elements(T, "pubany4") == {} and driver.published.index.holder(4, "", "tcp", 8080) is None


async def test_unjoined_holder_of_an_address_is_a_ghost(driver):
    """pynet saved an endpoint but died before answering: Docker reuses the address for another one."""
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    await driver.endpoints.create(ep_req(ep_id=EP_2))
    assert list(driver.state.nets[ID_A].endpoints) == [EP_2]


async def test_ports_of_another_network_accepted_at_internal_join(driver, nft):
    """Docker sends a container's whole port map with every Join (compose: web with ports on a
    front network and on an internal back network): the internal Join takes it, publishes nothing."""
    await driver.networks.create(net_req(internal=True))
    info = await a_container(driver, ports=[port(80, 8080)])
    assert info.gateway == "" and driver.published.listing() == []
    assert f'"{BR_A}"' in nft.elements(T, "internal") and nft.elements(T, "masq") == {}


async def test_dual_stack_join(driver):
    await driver.networks.create(net_req(v6=("fd00:30::/64", "fd00:30::1/64")))
    await driver.endpoints.create(ep_req(address6="fd00:30::2/64"))
    info = await driver.endpoints.join(join_req())
    assert (info.gateway, info.gateway6) == ("172.30.0.1", "fd00:30::1")


async def test_mac_from_docker_is_not_echoed(driver):
    await driver.networks.create(net_req())
    assert await driver.endpoints.create(ep_req(mac="02:00:00:00:00:99")) is None


async def test_transparent_network(driver, links):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24",
                                         gateway="192.168.50.1/24"))
    shim = "pn-s" + ID_A[:11]
    assert links.links[shim].kind == "macvlan" and links.links[shim].parent == "eth0"
    # The port map comes with every Join; it is refused only where Docker wants it applied.
    await a_container(driver, address="192.168.50.20/24", ports=[port(80, 8080)])
    err = await refused(driver.published.program(pec_req(ports=[port(80, 8080)])))
    assert "published ports (-p/-P) belong to mode=nat" in err and "gw-priority" in err
    assert links.links[K1].kind == "macvlan" and links.links[K1].mac == "02:42:c0:a8:32:14"
    assert links.routes["192.168.50.20/32"] == (shim, "192.168.50.10")  # host's own LAN address as source


async def test_transparent_parent_must_exist(driver):
    err = await refused(driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth9"})))
    assert "parent interface eth9 does not exist" in err


async def test_l2bridge_network_routes_rules_and_proxy_entries(driver, links, nft):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "l2bridge", "parent": "eth0"}, pool="192.168.50.0/24",
                                         gateway="192.168.50.1/24"))
    from pynet.modes.l2bridge import RULE_PRIORITY, table_id

    net = driver.state.nets[ID_A]
    table = table_id(net)
    assert links.table_routes[(table, "0.0.0.0/0")] == ("eth0", "192.168.50.1")
    info = await a_container(driver, address="192.168.50.20/24")
    assert info.gateway == "192.168.50.1" and info.src_name == K1
    assert ("192.168.50.20", "eth0") in links.proxy_neighs
    assert await links.rules(RULE_PRIORITY) == [(2, H1, table)]
    assert nft.elements(T, "l2b_src4") == {f'"{H1}" . 192.168.50.20': None}
    await driver.endpoints.leave(ref())
    await driver.endpoints.delete(ref())
    assert links.proxy_neighs == set() and await links.rules(RULE_PRIORITY) == []
    assert nft.elements(T, "l2b_src4") == {}


async def test_restart_restores_table_and_ports(driver, cfg, links, sysctls):
    """pynet restarts (kernel kept, nft table flushed): the table comes back from state, ports included."""
    await driver.networks.create(net_req())
    await a_container(driver)
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
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


async def test_reboot_drops_ports_of_missing_endpoints(driver, cfg, sysctls):
    """Host reboot: no links at all. The network comes back from state; a ghost endpoint holds no port."""
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    await driver.published.program(pec_req(ports=[port(80, 8080)]))
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
    Path(cfg.state_dir, "networks").mkdir(parents=True)  # pynet ran here before
    links.add_foreign("eth0", kind="device")
    links.add_foreign("pn-h0123456789a", kind="veth")  # our name shape, in no state file
    links.add_foreign("other0", kind="veth", alias=cfg.owner_tag + "dead")  # our tag
    links.add_foreign("pn-hnothex!!!!!", kind="veth")  # not our shape: not ours to delete
    drv = make_driver(cfg, links, nft, sysctls)
    await drv.start()
    try:
        assert sorted(drv.reconciler.leftovers_removed) == ["other0", "pn-h0123456789a"]
        assert sorted(links.links) == ["eth0", "pn-hnothex!!!!!"]
    finally:
        await drv.shutdown()


async def test_state_dir_moved_keeps_everything(cfg, links, nft, sysctls):
    """`docker plugin upgrade` resets a plugin's state.source (Docker 28 keeps `plugin set` mount
    sources in the plugin's config, which the new version replaces): the first start on a new state
    directory that finds this pynet's links keeps them, the table and DOCKER-USER, and says so; an
    operator's `pynet reconcile` then removes them."""
    drv = make_driver(cfg, links, nft, sysctls)
    await drv.start()
    await drv.networks.create(net_req())
    await drv.shutdown()
    nft_before = nft.elements(T, "bridges")
    cfg2 = dataclasses.replace(cfg, state_dir=cfg.state_dir + "-new")
    drv = make_driver(cfg2, links, nft, sysctls)
    await drv.start()
    try:
        assert BR_A in links.links and nft.elements(T, "bridges") == nft_before
        assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]
        assert "is new, yet 1 interfaces of this pynet exist" in drv.state.moved and drv.reconciler.leftovers_removed == []
        report = await drv.reconciler.reconcile()  # `pynet reconcile`: the operator's decision
        assert report["leftovers_removed"] == [BR_A] and not drv.state.moved and nft.du_patterns("ip") == []
    finally:
        await drv.shutdown()


async def test_refused_calls_for_unknown_networks_add_no_lock(driver):
    """Every refused call naming an unknown network once added a lock (10,000 calls, 10,000 locks)."""
    await driver.networks.create(net_req())
    for i in range(300):
        net_id = f"{i:064x}"
        for call in (driver.endpoints.create(ep_req(net_id=net_id, ep_id=EP_2, address="172.30.0.9/24")),
                     driver.endpoints.join(join_req(net_id=net_id, ep_id=EP_2)),
                     driver.published.program(pec_req(net_id=net_id, ep_id=EP_2))):
            await refused(call, NotFound)
        with pytest.raises(NotFound):
            driver.endpoints.oper_info(ref(net_id, EP_2))
        await driver.endpoints.leave(ref(net_id, EP_2))  # already gone: fine
        await driver.endpoints.delete(ref(net_id, EP_2))
        await driver.published.revoke(ref(net_id, EP_2))
        await driver.networks.delete(ref(net_id, None))
    assert driver.state.lock_count() <= 1
    await driver.networks.delete(ref(ep_id=None))
    assert driver.state.lock_count() == 0
