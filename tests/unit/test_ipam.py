"""core/ipam.py (pynet as IPAM driver: static pools, DHCPv4/v6, SLAAC), with fake DHCP clients and probes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import statedb

from fakes import EP_1, EP_2, ID_A, ID_B, FakeLinks, FakeProber, ep_body, make_driver, net_body
from pynet import dhcp, options
from pynet.dhcp import client6, ra

SPACE = options.DHCP_SPACE
MAC = "02:42:c0:a8:32:99"
MAC2 = "02:42:c0:a8:32:98"
MAC_OPT = "com.docker.network.endpoint.macaddress"
NAME_OPT = "com.docker.network.endpoint.name"


class FakeDhcp:
    """DHCPv4 client: hands out `ips` in turn; records what pynet asked for."""

    def __init__(self, *ips: str):
        self.ips = list(ips or ["192.168.50.77"])
        self.acquired: list[dict] = []
        self.released: list[str] = []
        self.declined: list[str] = []

    async def acquire(self, ifname, mac, hostname="", prefix_default=24, *, identity=None, domain="", subnet=None):
        self.acquired.append({"ifname": ifname, "mac": mac, "hostname": hostname, "identity": identity,
                              "domain": domain, "subnet": subnet})
        ip = self.ips[min(len(self.acquired), len(self.ips)) - 1]
        return dhcp.Lease(mac=mac, ip=ip, prefixlen=24, server="192.168.50.1", server_mac="52:54:00:00:00:01",
                          lease_time=600, t1=300, t2=525, acquired=time.time(), hostname=hostname,
                          identity=identity or "", domain=domain)

    async def decline(self, ifname, lease):
        self.declined.append(lease.ip)

    async def release(self, ifname, lease):
        self.released.append(lease.ip)

    async def renew(self, ifname, lease, rebind=False):
        raise dhcp.DhcpError("no server answered")

    async def reboot(self, ifname, lease):
        lease.acquired, lease.lost_at, lease.lost_why = time.time(), 0.0, ""
        return lease


class FakeDhcp6:
    def __init__(self, ip="fd50::77"):
        self.ip = ip
        self.acquired: list[tuple] = []
        self.released: list[str] = []

    async def acquire(self, ifname, mac, identity, *, hostname="", domain="", prefix=None):
        self.acquired.append((mac, identity, hostname))
        return client6.Lease6(mac=mac, ip=self.ip, prefixlen=64, iaid=1, duid="0003", server_duid="01",
                              server_ip="fe80::1", server_mac="52:54:00:00:00:01", t1=300, t2=480, preferred=600,
                              valid=600, acquired=time.time(), identity=identity, hostname=hostname)

    async def release(self, ifname, lease):
        self.released.append(lease.ip)

    async def decline(self, ifname, lease):
        self.released.append(lease.ip)


@pytest.fixture
def fake_dhcp(driver):
    driver.leases.client = FakeDhcp()
    driver.leases.client6 = FakeDhcp6()
    return driver.leases.client


@pytest.fixture
def answers(driver) -> dict:
    """IP -> the MAC that answers a probe for it on the LAN."""
    return driver.guard.prober.answers


async def pool(docker, subnet="192.168.50.0/24", v6=False, sub="", **opts) -> str:
    reply = await docker.ok("/IpamDriver.RequestPool", {"AddressSpace": SPACE, "Pool": subnet, "SubPool": sub,
                                                        "Options": opts, "V6": v6})
    assert reply["PoolID"].startswith(f"{SPACE}/{reply['Pool']}@") and reply["Data"] == {}
    return reply["PoolID"]


async def lan_net(docker, links, netmode="transparent", gateway="192.168.50.1", aux=(), net_id=ID_A, **opts) -> str:
    """Docker's sequence for `docker network create --ipam-driver pynet ...`: the pool, the gateway and
    the aux addresses from the IPAM driver, then CreateNetwork."""
    links.add_foreign("eth0", kind="device")
    pid = await pool(docker, **opts)
    await docker.ok("/IpamDriver.RequestAddress", {"PoolID": pid, "Address": gateway,
                                                   "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    for ip in aux:
        await docker.ok("/IpamDriver.RequestAddress", {"PoolID": pid, "Address": ip, "Options": None})
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        net_id=net_id, generic={"mode": netmode, "parent": "eth0"}, pool="192.168.50.0/24",
        gateway=f"{gateway}/24", space=SPACE))
    return pid


async def address(docker, pid, mac=MAC, **extra) -> str:
    opts = {MAC_OPT: mac, **extra}
    return (await docker.ok("/IpamDriver.RequestAddress", {"PoolID": pid, "Address": "", "Options": opts}))["Address"]


async def until(fn, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def saved(cfg, net_id: str = ID_A) -> dict:
    return statedb.network(cfg.state_dir, net_id)


# ---------------------------------------------------------------- pools

async def test_request_pool_and_release(docker, cfg):
    pid = await pool(docker, subnet="192.168.50.7/24", mode="static")
    assert statedb.doc(cfg.state_dir, "ipam")["pools"][pid]["mode"] == "static"
    v6 = await pool(docker, subnet="fd50::/64", v6=True, mode6="slaac")
    assert v6.startswith(f"{SPACE}/fd50::/64@")
    assert await docker.ok("/IpamDriver.ReleasePool", {"PoolID": pid}) == {}
    assert list(statedb.doc(cfg.state_dir, "ipam")["pools"]) == [v6]


@pytest.mark.parametrize("body, why", [
    ({"Pool": "192.168.50.0/24", "SubPool": "192.168.50.128/25"}, "--ip-range has no meaning with --ipam-driver "
                                                                   "pynet mode dhcp"),
    ({"Pool": "192.168.50.0/24", "SubPool": "10.0.0.0/25", "Options": {"mode": "static"}}, "not inside --subnet"),
    ({"Pool": "fd00::/64"}, "is not IPv4"),
    ({"Pool": "lan"}, "is not an IP prefix"),
    ({"Pool": ""}, "needs --subnet"),
    ({"Pool": "192.168.50.0/24", "Options": {"mode": "slaac"}}, "mode='slaac' is not possible for IPv4"),
    ({"Pool": "fd00::/64", "V6": True, "Options": {"mode6": "magic"}}, "mode6='magic' is not possible for IPv6"),
    ({"Pool": "fd00::/56", "V6": True, "Options": {"mode6": "slaac"}}, "SLAAC needs the LAN's /64"),
    ({"Pool": "192.168.50.0/24", "Options": {"colour": "red"}}, "unknown --ipam-opt 'colour'"),
])
async def test_request_pool_refused(docker, cfg, body, why):
    err = await docker.err("/IpamDriver.RequestPool", dict(body, AddressSpace=SPACE))
    assert why in err
    assert statedb.doc(cfg.state_dir, "ipam") == {}


async def test_docker_keys_among_ipam_options_are_ignored(docker):
    await pool(docker, **{"com.docker.network.ipam.serial": "true"})


@pytest.mark.parametrize("mode, opts, why", [
    ("l2bridge", {}, "with DHCP needs mode=transparent"),
    ("nat", {"mode": "static"}, "is for the LAN modes"),
])
async def test_modes_that_cannot_have_the_pool_are_refused(docker, links, mode, opts, why):
    links.add_foreign("eth0", kind="device")
    pid = await pool(docker, **opts)
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(generic={"mode": mode, "parent": "eth0"} if
                                                                    mode != "nat" else {}, pool="192.168.50.0/24",
                                                                    gateway="192.168.50.1/24", space=SPACE))
    assert why in err
    await docker.ok("/IpamDriver.ReleasePool", {"PoolID": pid})


# ---------------------------------------------------------------- static pools

async def test_static_pool_allocation(docker, links, cfg, driver, answers):
    """192.168.50.1 gateway, .2 aux, .3 answers a probe, .10 is the host's (eth0): never handed out."""
    answers["192.168.50.3"] = "52:54:00:aa:bb:cc"
    links.add_foreign("eth0", kind="device")
    pid = await pool(docker, sub="192.168.50.0/28", mode="static")
    await docker.ok("/IpamDriver.RequestAddress", {"PoolID": pid, "Address": "192.168.50.1",
                                                   "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    await docker.ok("/IpamDriver.RequestAddress", {"PoolID": pid, "Address": "192.168.50.2", "Options": None})
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "l2bridge", "parent": "eth0"}, pool="192.168.50.0/24", gateway="192.168.50.1/24",
        space=SPACE))
    assert (driver.state.nets[ID_A].ipam, driver.state.nets[ID_A].ipam6) == ("static", "")
    got = [await address(docker, pid, mac=f"02:42:00:00:00:{i:02x}") for i in range(1, 12)]
    assert got == [f"192.168.50.{i}/24" for i in (4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15)]  # .15: not the /24's end
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": pid, "Options": {MAC_OPT: MAC}})
    assert "no free address left in 192.168.50.0/28 (in use on the LAN: 192.168.50.3 by 52:54:00:aa:bb:cc)" in err
    assert "192.168.50.3" in [c[1] for c in driver.guard.prober.calls]
    # Docker asks again for the same MAC: the same address, no new probe.
    calls = len(driver.guard.prober.calls)
    assert await address(docker, pid, mac="02:42:00:00:00:01") == "192.168.50.4/24"
    assert len(driver.guard.prober.calls) == calls


async def test_static_pool_full_and_answering_named(docker, links, answers):
    links.add_foreign("eth0", kind="device")
    answers.update({"192.168.50.1": "52:54:00:00:00:01", "192.168.50.2": "52:54:00:00:00:02",
                    "192.168.50.3": "52:54:00:00:00:03"})
    pid = await pool(docker, sub="192.168.50.0/30", mode="static")  # .1 to .3 (.0 is the /24's own)
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24", gateway="192.168.50.254/24",
        space=SPACE))
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": pid, "Options": {MAC_OPT: MAC}})
    assert "no free address left in 192.168.50.0/30" in err
    assert "192.168.50.1 by 52:54:00:00:00:01" in err and "larger --ip-range" in err


async def test_static_reservations_survive_a_restart_and_are_released(docker, links, cfg, driver, nft, sysctls):
    pid = await lan_net(docker, links, mode="static", sub="192.168.50.16/28")
    first = await address(docker, pid)
    assert first == "192.168.50.16/24"
    await driver.shutdown()
    again = make_driver(cfg, links, nft, sysctls)
    await again.start()
    try:
        assert again.ipam.book.get(pid).reserved["192.168.50.16"] == MAC
        assert again.ipam.book.get(pid).network_id == ID_A
        from pynet.api.wire_ipam import RequestAddress, ReleaseAddress
        assert await again.ipam.request_address(RequestAddress(pid, mac=MAC2)) == "192.168.50.17/24"
        await again.ipam.release_address(ReleaseAddress(pid, "192.168.50.16/24"))
        assert await again.ipam.request_address(RequestAddress(pid, mac="02:42:00:00:00:33")) == "192.168.50.16/24"
    finally:
        await again.shutdown()


async def test_static_ip_reserved_and_taken_once(docker, links):
    pid = await lan_net(docker, links, mode="static")
    body = {"PoolID": pid, "Address": "192.168.50.40", "Options": {MAC_OPT: MAC}}
    assert (await docker.ok("/IpamDriver.RequestAddress", body))["Address"] == "192.168.50.40/24"
    err = await docker.err("/IpamDriver.RequestAddress", dict(body, Options={MAC_OPT: MAC2}))
    assert "192.168.50.40 is already taken" in err


async def test_unclaimed_pools_go_after_an_hour(cfg, links, nft, sysctls):
    from pynet.store import Store
    from pynet.core.pools import PoolBook

    book = PoolBook(Store(cfg.state_dir))
    old = book.new("10.1.0.0/24", "", "static")
    book.pools[old.id].created -= 7200
    kept = book.new("10.2.0.0/24", "", "static")
    book.save()
    again = PoolBook(Store(cfg.state_dir))
    again.load()
    assert list(again.pools) == [kept.id]


# ---------------------------------------------------------------- DHCP

async def test_dhcp_lease_round_trip(docker, driver, cfg, links, fake_dhcp):
    pid = await lan_net(docker, links)
    assert await address(docker, pid) == "192.168.50.77/24"
    assert fake_dhcp.acquired[0] == {"ifname": "eth0", "mac": MAC, "hostname": "", "identity": None, "domain": "",
                                     "subnet": "192.168.50.0/24"}
    net = saved(cfg)
    assert net["leases"][MAC]["ip"] == "192.168.50.77" and net["ipam"] == "dhcp"  # persisted before the answer
    assert (ID_A, MAC, 4) in driver.leases.tasks  # renewal scheduled
    # Docker asks again (replay): the same lease, no second DHCP exchange.
    assert await address(docker, pid) == "192.168.50.77/24"
    assert len(fake_dhcp.acquired) == 1
    leases = await docker.get("/pynet/v1/leases")
    assert [(x["ip"], x["network"], x["family"], x["state"]) for x in leases] == [
        ("192.168.50.77", ID_A, 4, "bound")]
    # The address was probed by the IPAM: CreateEndpoint does not probe it again.
    probes = len(driver.guard.prober.calls)
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.77/24", mac=MAC))
    assert len(driver.guard.prober.calls) == probes
    await docker.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": ID_A, "EndpointID": EP_1})
    await docker.ok("/IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": "192.168.50.77/24"})
    assert fake_dhcp.released == ["192.168.50.77"]
    assert saved(cfg)["leases"] == {}
    assert (ID_A, MAC, 4) not in driver.leases.tasks
    await docker.ok("/IpamDriver.ReleaseAddress", {"PoolID": pid, "Address": "192.168.50.77/24"})
    assert fake_dhcp.released == ["192.168.50.77"]  # already gone: nothing more to do


async def test_docker_29_name_is_identity_and_hostname_with_the_domain(docker, links, fake_dhcp):
    links.add_foreign("eth0", kind="device")
    pid = await pool(docker)
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0", "dhcp_domain": "Lan.Test."}, pool="192.168.50.0/24",
        gateway="192.168.50.1/24", space=SPACE))
    await address(docker, pid, **{NAME_OPT: "web_1.prod"})
    assert fake_dhcp.acquired[0] | {"ifname": "", "subnet": ""} == {
        "ifname": "", "mac": MAC, "hostname": "web-1-prod", "identity": "web_1.prod", "domain": "lan.test",
        "subnet": ""}


async def test_dhcp_domain_needs_dhcp(docker, links):
    links.add_foreign("eth0", kind="device")
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0", "dhcp_domain": "lan.test"}, pool="192.168.50.0/24",
        gateway="192.168.50.1/24"))
    assert "dhcp_domain" in err and "needs --ipam-driver pynet" in err
    err = await docker.err("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0", "dhcp_domain": "bad_domain"}, pool="192.168.50.0/24",
        gateway="192.168.50.1/24", space=SPACE))
    assert "option dhcp_domain must be a DNS domain" in err


async def test_dhcp_address_in_use_is_declined_and_another_asked(docker, links, driver, answers, fake_dhcp):
    fake_dhcp.ips = ["192.168.50.10", "192.168.50.60", "192.168.50.61"]  # .10 is the host's (eth0)
    pid = await lan_net(docker, links)
    assert await address(docker, pid) == "192.168.50.60/24"
    assert fake_dhcp.declined == ["192.168.50.10"]
    answers["192.168.50.61"] = "52:54:00:00:00:61"
    fake_dhcp.ips, fake_dhcp.acquired = ["192.168.50.61"], []
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": pid, "Options": {MAC_OPT: MAC2}})
    assert "offered only addresses in use: 192.168.50.61: 52:54:00:00:00:61 answered a probe" in err
    assert fake_dhcp.declined == ["192.168.50.10", "192.168.50.61", "192.168.50.61"]
    assert list(driver.state.nets[ID_A].leases) == [MAC]


async def test_request_address_errors(docker, fake_dhcp):
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": "default/10.0.0.0/8"}, status=400)
    assert "is not one of pynet's" in err
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": f"{SPACE}/192.168.50.0/24", "Options": {}},
                           status=400)
    assert "no MAC address" in err
    err = await docker.err("/IpamDriver.RequestAddress", {
        "PoolID": f"{SPACE}/192.168.50.0/24", "Options": {MAC_OPT: MAC}}, status=404)
    assert "no pynet network uses the pool 192.168.50.0/24" in err and "--ipam-driver pynet" in err


async def test_legacy_pool_ids_still_work(docker, links, fake_dhcp):
    """Networks made before pool records: PoolID pynet-dhcp/<subnet>, DHCP."""
    links.add_foreign("eth0", kind="device")
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24", gateway="192.168.50.1/24",
        space=SPACE))
    assert await address(docker, f"{SPACE}/192.168.50.0/24") == "192.168.50.77/24"


# ---------------------------------------------------------------- IPv6

async def v6_net(docker, links, **opts) -> tuple[str, str]:
    links.add_foreign("eth0", kind="device")
    p4 = await pool(docker, **opts)
    p6 = await pool(docker, subnet="fd50::/64", v6=True, **opts)
    body = net_body(generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24",
                    gateway="192.168.50.1/24", space=SPACE, v6=("fd50::/64", "fd50::1/64"))
    body["IPv6Data"][0]["AddressSpace"] = SPACE
    await docker.ok("/NetworkDriver.CreateNetwork", body)
    return p4, p6


async def test_dhcpv6_lease_and_release(docker, links, driver, fake_dhcp):
    p4, p6 = await v6_net(docker, links)
    assert (driver.state.nets[ID_A].ipam, driver.state.nets[ID_A].ipam6) == ("dhcp", "dhcp")
    assert await address(docker, p6, **{NAME_OPT: "web"}) == "fd50::77/64"
    assert driver.leases.client6.acquired == [(MAC, "web", "web")]
    assert (ID_A, MAC, 6) in driver.leases.tasks
    leases = await docker.get("/pynet/v1/leases")
    assert [(x["ip"], x["family"]) for x in leases] == [("fd50::77", 6)]
    await docker.ok("/IpamDriver.ReleaseAddress", {"PoolID": p6, "Address": "fd50::77/64"})
    assert driver.leases.client6.released == ["fd50::77"] and driver.state.nets[ID_A].leases6 == {}


async def test_slaac_address_from_the_router(docker, links, driver, answers, monkeypatch):
    seen = []

    async def learn(ifname, mac, timeout=3.0, tries=3):
        seen.append((ifname, mac))
        return ra.Slaac(mac=mac, address="fd50::42:c0ff:fea8:3299", prefix="fd50::/64", prefixlen=64, valid=600,
                        preferred=300, router="fe80::1", router_mac="52:54:00:00:00:01", router_lifetime=1800,
                        managed=False, other=False, mtu=0, acquired=time.time())

    monkeypatch.setattr(driver.ipam.acquirer, "learn", learn)
    p4, p6 = await v6_net(docker, links, mode="static", mode6="slaac")
    assert (driver.state.nets[ID_A].ipam, driver.state.nets[ID_A].ipam6) == ("static", "slaac")
    assert await address(docker, p6) == "fd50::42:c0ff:fea8:3299/64"
    assert seen == [("eth0", MAC)]
    assert driver.ipam.book.get(p6).reserved == {"fd50::42:c0ff:fea8:3299": MAC}
    answers["fd50::42:c0ff:fea8:3298"] = "52:54:00:00:00:09"

    async def learn2(ifname, mac, timeout=3.0, tries=3):
        return ra.Slaac(mac=mac, address="fd50::42:c0ff:fea8:3298", prefix="fd50::/64", prefixlen=64, valid=600,
                        preferred=300, router="fe80::1", router_mac="", router_lifetime=0, managed=False,
                        other=False, mtu=0, acquired=time.time())

    monkeypatch.setattr(driver.ipam.acquirer, "learn", learn2)
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": p6, "Options": {MAC_OPT: MAC2}})
    assert "SLAAC address fd50::42:c0ff:fea8:3298" in err and "52:54:00:00:00:09 answered" in err


# ---------------------------------------------------------------- a lease that ends

async def test_expired_lease_is_taken_away_and_given_back(docker, links, driver, cfg, fake_dhcp, monkeypatch):
    pid = await lan_net(docker, links)
    await address(docker, pid)
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.77/24", mac=MAC))
    await docker.ok("/NetworkDriver.Join", {"NetworkID": ID_A, "EndpointID": EP_1, "SandboxKey": "/run/x"})
    links.container_addrs[("/run/x", MAC)] = {"192.168.50.77/24"}
    driver.leases.stop(ID_A, MAC, 4)
    net = driver.state.nets[ID_A]
    net.leases[MAC]["acquired"] = time.time() - 700  # 600 s lease, the server silent since
    driver.leases.lost_retry = 0.05

    async def silent(ifname, lease):
        raise dhcp.DhcpError("no DHCP server answered")

    monkeypatch.setattr(fake_dhcp, "reboot", silent)
    driver.leases.start(ID_A, MAC, 4)
    await until(lambda: net.leases[MAC]["lost_at"], "the lease marked lost")
    assert links.container_addrs[("/run/x", MAC)] == set()
    shown = (await docker.get("/pynet/v1/leases"))[0]
    assert shown["state"] == "lost" and "expired" in shown["lost_why"]
    assert saved(cfg)["leases"][MAC]["lost_at"]
    monkeypatch.undo()
    await until(lambda: not net.leases[MAC]["lost_at"], "the lease bound again")
    await until(lambda: links.container_addrs[("/run/x", MAC)] == {"192.168.50.77/24"}, "the address back")
    await driver.leases.stop_all()


# ---------------------------------------------------------------- CreateEndpoint: the host's, the LAN's

async def static_lan(docker, links, **generic):
    links.add_foreign("eth0", kind="device")
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0", **generic}, pool="192.168.50.0/24",
        gateway="192.168.50.1/24"))


async def test_host_address_refused_and_nothing_left(docker, links, driver):
    await static_lan(docker, links)
    before = set(links.links)
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.10/24"))
    assert "address 192.168.50.10 is configured on this host (eth0)" in err
    assert "--ip-range" in err and "--aux-address host=192.168.50.10" in err
    assert set(links.links) == before and driver.state.nets[ID_A].endpoints == {}
    assert driver.guard.prober.calls == []  # refused before any probe


async def test_probed_collision_refused_naming_the_mac(docker, links, driver, answers):
    await static_lan(docker, links)
    answers["192.168.50.20"] = "52:54:00:12:34:56"
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.20/24"))
    assert "address 192.168.50.20 is in use on the LAN: 52:54:00:12:34:56 answered pynet's ARP probe on eth0" in err
    assert "--ipam-opt mode=static" in err
    assert driver.state.nets[ID_A].endpoints == {} and not [n for n in links.links if n.startswith("pn-k")]
    assert driver.guard.prober.calls == [("eth0", "192.168.50.20", 2, 0.2)]
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.21/24"))


async def test_ipv6_collision_named_and_probes_run_together(docker, links, driver, answers):
    links.add_foreign("eth0", kind="device")
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "l2bridge", "parent": "eth0"}, pool="192.168.50.0/24", gateway="192.168.50.1/24",
        v6=("fd50::/64", "fd50::1/64")))
    answers["fd50::20"] = "52:54:00:12:34:57"
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.20/24", address6="fd50::20/64"))
    assert "fd50::20 is in use on the LAN: 52:54:00:12:34:57 answered pynet's neighbour solicitation (DAD)" in err
    assert {c[1] for c in driver.guard.prober.calls} == {"192.168.50.20", "fd50::20"}


async def test_probe_off_by_option_and_by_config(docker, links, driver, answers, cfg, nft, sysctls):
    await static_lan(docker, links, probe="false")
    answers["192.168.50.20"] = "52:54:00:12:34:56"
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.20/24"))
    assert driver.guard.prober.calls == []
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(ep_id=EP_2, address="192.168.50.10/24"))
    assert "configured on this host" in err  # the host's own addresses are always refused
    import dataclasses

    off = make_driver(dataclasses.replace(cfg, probe_wait=0.0, state_dir=cfg.state_dir + "-off"), FakeLinks(),
                      nft, sysctls, prober=FakeProber({"10.0.0.5": "52:54:00:00:00:05"}))
    assert not off.guard.probing(driver.state.nets[ID_A]) and off.guard.prober.calls == []


async def test_a_probe_that_cannot_run_is_logged_not_fatal(docker, links, driver, caplog, monkeypatch):
    from pynet.errors import KernelError

    async def down(ifname, ip, count=2, wait=0.2):
        raise KernelError(f"cannot probe {ip} on {ifname}: Network is down")

    monkeypatch.setattr(driver.guard.prober, "probe", down)
    await static_lan(docker, links)
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.20/24"))
    (rec,) = [r for r in caplog.records if r.getMessage() == "address not probed"]
    assert "Network is down" in rec.fields["error"]


async def test_nat_endpoints_are_not_probed(docker, driver):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(net_id=ID_B))
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(net_id=ID_B))
    assert driver.guard.prober.calls == []


async def test_an_address_handed_out_again_is_probed_again(docker, links, driver):
    """The IPAM's mark spares the next CreateEndpoint one probe; a later container with the address is probed."""
    pid = await lan_net(docker, links, mode="static")
    ip = await address(docker, pid)
    assert [c[1] for c in driver.guard.prober.calls] == [ip.split("/")[0]]
    for _ in range(2):
        await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address=ip, mac=MAC))
        await docker.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": ID_A, "EndpointID": EP_1})
    assert [c[1] for c in driver.guard.prober.calls] == [ip.split("/")[0]] * 2


def test_candidates_skip_the_subnets_own_addresses():
    from itertools import islice

    from pynet.core.pools import Pool, candidates

    assert list(candidates(Pool(id="x", subnet="10.0.0.0/30"), set())) == ["10.0.0.1", "10.0.0.2"]
    ranged = Pool(id="x", subnet="10.0.0.0/24", range="10.0.0.252/30")
    assert list(candidates(ranged, {"10.0.0.253"})) == ["10.0.0.252", "10.0.0.254"]  # .255 is the broadcast
    v6 = Pool(id="x", subnet="fd00::/64")
    assert list(islice(candidates(v6, {"fd00::1"}), 2)) == ["fd00::2", "fd00::3"]  # :: is the subnet-router anycast
