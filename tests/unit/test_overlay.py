"""mode=overlay and the swarm calls of a global-scope pynet, on fake links/nft/sysctl.

The manager's side (AllocateNetwork: options checked, VNI chosen, refusals kept for `pynet ls`),
a node's side (DiscoverNew Self, CreateNetwork with what AllocateNetwork returned: bridge with the
shared gateway and MAC, a vxlan port on the underlay, the gateway kept off the vxlan port).
"""

from __future__ import annotations


import pytest
import statedb

from fakes import EP_1, FakeLinks, FakeNft, FakeSysctl, ep_req, join_req, make_driver, net_req, ref
from pynet.api.wire import AllocateNetwork, Discovery, IpData, NetworkRef
from pynet.config import Config
from pynet.errors import PynetError
from pynet.modes.overlay import VNI_BASE, gateway_mac, group_for, vni_for

SWARM_ID = "u94o4fgmu7s9xayjraoxm5i03"  # what a swarm's network IDs look like
OTHER_ID = "mja36h87rwt4z0c9ywnpy6kig"
T = "pynet_ov"
BR, VX = "po-n" + SWARM_ID[:11], "po-v" + SWARM_ID[:11]
POOL, GW = "10.0.1.0/24", "10.0.1.1/24"


@pytest.fixture
def gcfg(tmp_path) -> Config:
    return Config(socket=str(tmp_path / "pynet-ov.sock"), state_dir=str(tmp_path / "state"), scope="global",
                  port_range="40000-40009", table=T)


@pytest.fixture
def glinks() -> FakeLinks:
    links = FakeLinks(host_addrs=[("lo", "127.0.0.1/8"), ("lan0", "10.88.0.11/24")])
    links.add_foreign("lan0", kind="veth")
    links.links["lan0"].mtu = 1500
    return links


@pytest.fixture
async def gdriver(gcfg, glinks):
    drv = make_driver(gcfg, glinks, FakeNft(docker_user={"ip": [], "ip6": None}), FakeSysctl())
    await drv.start()
    yield drv
    await drv.shutdown()


def alloc(net_id=SWARM_ID, options=None, pool=POOL, gw=GW) -> AllocateNetwork:
    return AllocateNetwork(network_id=net_id, options=dict(options or {}), v4=[IpData(pool, gw, "")])


async def refused(call) -> str:
    with pytest.raises(PynetError) as ei:
        await call
    return str(ei.value)


# ---------------------------------------------------------------- the manager

async def test_allocate_returns_the_vni_every_node_gets(gdriver, gcfg):
    reply = await gdriver.cluster.allocate(alloc(options={"icc": "false"}))
    assert reply == {"icc": "false", "vni": str(vni_for(SWARM_ID))}
    assert VNI_BASE <= vni_for(SWARM_ID) <= 0xFFFFFF
    assert statedb.doc(gcfg.state_dir, "allocations") == {SWARM_ID: reply}
    # A new leader allocates again with what pynet returned before: the same answer.
    assert await gdriver.cluster.allocate(alloc(options=reply)) == reply
    await gdriver.cluster.free(NetworkRef(SWARM_ID))
    assert statedb.doc(gcfg.state_dir, "allocations") == {}


async def test_allocate_keeps_vnis_unique(gdriver, monkeypatch):
    first = await gdriver.cluster.allocate(alloc())
    # Another network whose ID derives the same VNI gets the next one.
    import pynet.modes.overlay as overlay

    monkeypatch.setattr(overlay, "vni_for", lambda net_id, attempt=0: VNI_BASE + attempt)
    a = await gdriver.cluster.allocate(alloc(OTHER_ID, pool="10.0.2.0/24", gw="10.0.2.1/24"))
    b = await gdriver.cluster.allocate(alloc("z" * 25, pool="10.0.3.0/24", gw="10.0.3.1/24"))
    assert (a["vni"], b["vni"]) == (str(VNI_BASE), str(VNI_BASE + 1)) and first["vni"] not in (a["vni"], b["vni"])
    err = await refused(gdriver.cluster.allocate(alloc("y" * 25, {"vni": str(VNI_BASE)}, "10.0.4.0/24", "10.0.4.1/24")))
    assert f"VNI {VNI_BASE} (-o vni) is already used" in err


@pytest.mark.parametrize("options, why", [
    ({"foo": "bar"}, "unknown network option 'foo'"),
    ({"mode": "l2bridge", "parent": "lan0"}, "mode=l2bridge is for the local-scope pynet plugin"),
    ({"mode": "nat"}, "mode=nat is for the local-scope pynet plugin"),
    ({"vni": "0"}, "option vni must be 1-16777215"),
    ({"vxlan_group": "10.1.1.1"}, "option vxlan_group must be an IPv4 multicast address"),
    ({"icc": "maybe"}, "option icc must be true or false"),
])
async def test_allocate_refusals_are_kept_for_ls_and_doctor(gdriver, options, why):
    """Docker shows an AllocateNetwork error to nobody: pynet keeps it for `pynet ls`/`doctor`."""
    assert why in await refused(gdriver.cluster.allocate(alloc(options=options)))
    await refused(gdriver.cluster.allocate(alloc(options=options)))  # Docker retries every ~10 s
    (refusal,) = gdriver.cluster.view()["refusals"]
    assert refusal["network"] == SWARM_ID and why in refusal["error"] and refusal["count"] == 2
    await gdriver.cluster.free(NetworkRef(SWARM_ID))  # no FreeNetwork comes for these; rm anyway
    assert gdriver.cluster.view()["refusals"] == []


async def test_local_scope_pynet_refuses_swarm_allocation(driver):
    assert "local-scope" in await refused(driver.cluster.allocate(alloc()))


async def test_overlay_refused_on_a_local_scope_pynet(driver):
    err = await refused(driver.networks.create(net_req(generic={"mode": "overlay"})))
    assert "mode=overlay needs the global-scope pynet plugin" in err and "PYNET_SCOPE=global" in err


# ---------------------------------------------------------------- a node

async def test_discover_new_self_is_kept(gdriver, gcfg):
    gdriver.cluster.discover(Discovery(node=True, address="10.88.0.11", self_=True), new=True)
    gdriver.cluster.discover(Discovery(node=True, address="10.88.0.12"), new=True)
    view = gdriver.cluster.view()
    assert (view["node_address"], view["peers"]) == ("10.88.0.11", ["10.88.0.12"])
    gdriver.cluster.discover(Discovery(node=True, address="10.88.0.12"), new=False)
    assert gdriver.cluster.view()["peers"] == []
    assert statedb.doc(gcfg.state_dir, "node") == {"address": "10.88.0.11"}


async def overlay_net(gdriver, options=None):
    reply = await gdriver.cluster.allocate(alloc(options=options))
    gdriver.cluster.discover(Discovery(node=True, address="10.88.0.11", self_=True), new=True)
    await gdriver.networks.create(net_req(SWARM_ID, POOL, GW, generic=reply))
    return int(reply["vni"])


async def test_overlay_lifecycle(gdriver, glinks):
    vni = await overlay_net(gdriver)
    br, vx = glinks.links[BR], glinks.links[VX]
    assert (br.kind, br.addrs, br.mac, br.mtu) == ("bridge", [GW], gateway_mac(SWARM_ID), 1450)
    assert (vx.kind, vx.vni, vx.parent, vx.group, vx.master, vx.mtu) == ("vxlan", vni, "lan0", group_for(vni), BR, 1450)
    assert ("ensure_vxlan", VX, vni, "lan0", "10.88.0.11", group_for(vni), 4789) in glinks.calls
    nft = gdriver.firewall.nft
    assert nft.elements(f"bridge {T}", "ov_gwmac") == {f'"{VX}" . {gateway_mac(SWARM_ID)}': None}
    assert nft.elements(f"bridge {T}", "ov_gw4") == {f'"{VX}" . 10.0.1.1': None}
    assert f'"{BR}"' in nft.elements(T, "masq")  # egress NAT on every node

    await gdriver.endpoints.create(ep_req(SWARM_ID, address="10.0.1.3/24"))
    info = await gdriver.endpoints.join(join_req(SWARM_ID))
    assert info.gateway == "10.0.1.1"  # the node's own bridge: no docker_gwbridge
    assert glinks.links["po-k" + EP_1[:11]].mtu == 1450

    await gdriver.endpoints.leave(ref(SWARM_ID))
    await gdriver.endpoints.delete(ref(SWARM_ID))
    await gdriver.networks.delete(ref(SWARM_ID, None))
    assert not [n for n in glinks.links if n.startswith("po-")]
    assert nft.elements(f"bridge {T}", "ov_gwmac") == {} and nft.elements(f"bridge {T}", "ov_gw4") == {}
    assert gdriver.state.nets == {}


async def test_overlay_restored_at_start(gcfg, glinks):
    drv = make_driver(gcfg, glinks, FakeNft(docker_user={"ip": [], "ip6": None}), FakeSysctl())
    await drv.start()
    await overlay_net(drv)
    await drv.shutdown()
    del glinks.links[VX]  # a reboot, or someone deleted it
    drv = make_driver(gcfg, glinks, FakeNft(docker_user={"ip": [], "ip6": None}), FakeSysctl())
    await drv.start()
    assert glinks.links[VX].vni == drv.state.nets[SWARM_ID].vni
    assert drv.node.address == "10.88.0.11"  # DiscoverNew is not sent again to a restarted plugin
    await drv.shutdown()


async def test_underlay_choice_and_mtu(gdriver, glinks):
    # No swarm address and no default route: say what to give.
    err = await refused(gdriver.networks.create(net_req(SWARM_ID, POOL, GW)))
    assert "found no underlay" in err and "-o parent=IFACE" in err
    # The default route's interface, when Docker told nothing.
    glinks.default_dev = "lan0"
    await gdriver.networks.create(net_req(SWARM_ID, POOL, GW, generic={"mtu": "1400"}))
    assert glinks.links[VX].mtu == 1400 and gdriver.state.nets[SWARM_ID].local == "10.88.0.11"
    err = await refused(gdriver.networks.create(net_req(OTHER_ID, "10.0.2.0/24", "10.0.2.1/24",
                                                        generic={"mtu": "1480"})))
    assert "option mtu 1480 does not fit VXLAN on lan0 (MTU 1500): at most 1450" in err
    err = await refused(gdriver.networks.create(net_req(OTHER_ID, "10.0.2.0/24", "10.0.2.1/24",
                                                        generic={"parent": "eth9"})))
    assert "underlay interface eth9 does not exist" in err


async def test_same_vni_twice_on_a_node_refused(gdriver):
    await overlay_net(gdriver, {"vni": "5000"})
    err = await refused(gdriver.networks.create(net_req(OTHER_ID, "10.0.2.0/24", "10.0.2.1/24",
                                                        generic={"vni": "5000"})))
    assert "VNI 5000 is already used by pynet network" in err


async def test_icc_false_isolates_the_vxlan_port_too(gdriver, glinks):
    await overlay_net(gdriver, {"icc": "false"})
    assert glinks.links[VX].isolated  # else containers on different nodes would still reach each other


# ---------------------------------------------------------------- the wire

async def test_global_scope_on_the_wire(gcfg, gdriver):
    from aiohttp.test_utils import TestClient, TestServer

    from fakes import Docker, build_app

    async with TestClient(TestServer(build_app(gcfg, gdriver))) as client:
        docker = Docker(client)
        caps = await docker.ok("/NetworkDriver.GetCapabilities")
        assert (caps["Scope"], caps["ConnectivityScope"]) == ("global", "global")
        assert await docker.ok("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {
            "Address": "10.88.0.11", "BindAddress": "10.88.0.11", "Self": True}}) == {}
        assert gdriver.node.address == "10.88.0.11"
        body = {"NetworkID": SWARM_ID, "Options": {"icc": "true"},
                "IPv4Data": [{"AddressSpace": "", "Gateway": GW, "Pool": POOL}], "IPv6Data": None}
        assert await docker.ok("/NetworkDriver.AllocateNetwork", body) == {
            "Options": {"icc": "true", "vni": str(vni_for(SWARM_ID))}}
        err = await docker.err("/NetworkDriver.AllocateNetwork", dict(body, Options={"bogus": "1"}))
        assert "unknown network option 'bogus'" in err
        status = await docker.get("/pynet/v1/status")
        assert status["cluster"]["node_address"] == "10.88.0.11"
        assert [r["network"] for r in status["cluster"]["refusals"]] == [SWARM_ID]
        assert await docker.ok("/NetworkDriver.FreeNetwork", {"NetworkID": SWARM_ID}) == {}
        assert (await docker.get("/pynet/v1/status"))["cluster"]["allocations"] == {}
