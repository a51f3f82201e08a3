"""core/ipam.py (pynet as IPAM driver: addresses from the LAN's DHCP server) with a fake DHCP client."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fakes import EP_1, ID_A, ep_body, net_body
from pynet import dhcp, options

SPACE = options.DHCP_SPACE
POOL_ID = f"{SPACE}/192.168.50.0/24"
MAC = "02:42:c0:a8:32:99"


class FakeDhcp:
    def __init__(self, ip="192.168.50.77"):
        self.ip = ip
        self.acquired: list[tuple[str, str]] = []
        self.released: list[str] = []

    async def acquire(self, ifname, mac, hostname="", prefix_default=24):
        self.acquired.append((ifname, mac))
        return dhcp.Lease(mac=mac, ip=self.ip, prefixlen=prefix_default, server="192.168.50.1",
                          server_mac="52:54:00:00:00:01", lease_time=600, t1=300, t2=525, acquired=time.time())

    async def release(self, ifname, lease):
        self.released.append(lease.ip)

    async def renew(self, ifname, lease, rebind=False):
        raise AssertionError("no renewal expected within a unit test")


@pytest.fixture
def fake_dhcp(driver):
    driver.leases.client = FakeDhcp()
    return driver.leases.client


@pytest.fixture
async def dhcp_net(docker, links):
    links.add_foreign("eth0", kind="device")
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(
        generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24", gateway="192.168.50.1/24",
        space=SPACE))
    return ID_A


def leases_on_disk(cfg) -> dict:
    return json.loads((Path(cfg.state_dir) / "networks" / f"{ID_A}.json").read_text())["network"]["leases"]


async def test_request_pool(docker):
    reply = await docker.ok("/IpamDriver.RequestPool", {"AddressSpace": SPACE, "Pool": "192.168.50.7/24"})
    assert reply == {"PoolID": POOL_ID, "Pool": "192.168.50.0/24", "Data": {}}
    assert await docker.ok("/IpamDriver.ReleasePool", {"PoolID": POOL_ID}) == {}


@pytest.mark.parametrize("body, why", [
    ({"Pool": "192.168.50.0/24", "SubPool": "192.168.50.128/25"}, "--ip-range has no meaning"),
    ({"Pool": "fd00::/64"}, "is not IPv4"),
    ({"Pool": "lan"}, "is not an IPv4 prefix"),
])
async def test_request_pool_refused(docker, body, why):
    err = await docker.err("/IpamDriver.RequestPool", dict(body, AddressSpace=SPACE))
    assert why in err


async def test_gateway_and_static_addresses_are_not_dhcp(docker, dhcp_net, fake_dhcp):
    gw = await docker.ok("/IpamDriver.RequestAddress", {
        "PoolID": POOL_ID, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert gw == {"Address": "192.168.50.1/24", "Data": {}}
    ip = await docker.ok("/IpamDriver.RequestAddress", {"PoolID": POOL_ID, "Address": "192.168.50.30"})
    assert ip == {"Address": "192.168.50.30/24", "Data": {}}
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": POOL_ID, "Address": "10.0.0.1"})
    assert "not inside --subnet 192.168.50.0/24" in err
    assert fake_dhcp.acquired == []


async def test_dhcp_lease_round_trip(docker, driver, cfg, dhcp_net, fake_dhcp):
    body = {"PoolID": POOL_ID, "Address": "", "Options": {"com.docker.network.endpoint.macaddress": MAC}}
    assert await docker.ok("/IpamDriver.RequestAddress", body) == {"Address": "192.168.50.77/24", "Data": {}}
    assert fake_dhcp.acquired == [("eth0", MAC)]
    assert leases_on_disk(cfg)[MAC]["ip"] == "192.168.50.77"  # persisted before the answer
    assert (ID_A, MAC) in driver.leases.tasks  # renewal scheduled
    # Docker asks again (replay): the same lease, no second DHCP exchange.
    assert await docker.ok("/IpamDriver.RequestAddress", body) == {"Address": "192.168.50.77/24", "Data": {}}
    assert len(fake_dhcp.acquired) == 1
    leases = await docker.get("/pynet/v1/leases")
    assert [(x["ip"], x["network"]) for x in leases] == [("192.168.50.77", ID_A)]

    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(address="192.168.50.77/24", mac=MAC))
    await docker.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": ID_A, "EndpointID": EP_1})
    await docker.ok("/IpamDriver.ReleaseAddress", {"PoolID": POOL_ID, "Address": "192.168.50.77/24"})
    assert fake_dhcp.released == ["192.168.50.77"]
    assert leases_on_disk(cfg) == {} and (ID_A, MAC) not in driver.leases.tasks
    await docker.ok("/IpamDriver.ReleaseAddress", {"PoolID": POOL_ID, "Address": "192.168.50.77/24"})
    assert fake_dhcp.released == ["192.168.50.77"]  # already gone: nothing more to do


async def test_offer_outside_subnet_is_released(docker, cfg, dhcp_net, fake_dhcp):
    fake_dhcp.ip = "10.1.1.5"
    err = await docker.err("/IpamDriver.RequestAddress", {
        "PoolID": POOL_ID, "Options": {"com.docker.network.endpoint.macaddress": MAC}})
    assert "offered 10.1.1.5, outside --subnet 192.168.50.0/24" in err
    assert fake_dhcp.released == ["10.1.1.5"] and leases_on_disk(cfg) == {}


async def test_request_address_errors(docker, fake_dhcp):
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": "default/10.0.0.0/8"}, status=400)
    assert "is not one of pynet's" in err
    err = await docker.err("/IpamDriver.RequestAddress", {"PoolID": POOL_ID, "Options": {}}, status=400)
    assert "no MAC address" in err
    err = await docker.err("/IpamDriver.RequestAddress", {
        "PoolID": POOL_ID, "Options": {"com.docker.network.endpoint.macaddress": MAC}}, status=404)
    assert "no pynet network uses the DHCP pool 192.168.50.0/24" in err and "--ipam-driver pynet" in err
