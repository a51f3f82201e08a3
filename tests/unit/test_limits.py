"""Bandwidth limits: parsing and merging (limits.py), the options they ride on (-o, --driver-opt), and
the core and modes against fakes: which shaper or policer each mode asks for, on which device, and
that nothing is asked for an unlimited endpoint, nothing is left after removal."""

from __future__ import annotations


import pytest
import statedb

from fakes import EP_1, EP_2, ID_A, FakeLinks, FakeNft, ep_body, ep_req, join_req, make_driver, net_body, net_req, ref
from pynet import limits, options
from pynet.errors import InvalidOption, KernelError
from pynet.limits import Direction, Rates
from pynet.modes import make_modes

H1, K1 = "pn-h" + EP_1[:11], "pn-k" + EP_1[:11]
H2 = "pn-h" + EP_2[:11]
MAC1 = "02:42:c0:a8:32:14"
LAN = {"pool": "192.168.50.0/24", "gateway": "192.168.50.1/24"}


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("text, bits", [("10mbit", 10_000_000), ("1gbit", 10**9), ("500kbit", 500_000),
                                        ("1.5gbit", 1_500_000_000), ("64kbit", 64_000), (" 10MBit ", 10**7),
                                        ("none", 0), ("0", 0), ("unlimited", 0), ("34gbit", 34 * 10**9)])
def test_rates(text, bits):
    assert limits.parse_rate("ingress_rate", text) == bits


@pytest.mark.parametrize("text", ["10", "10mb", "10 mbps", "fast", "-1mbit", "1e6bit", "", "10kbps"])
def test_bad_rates_are_refused_by_name(text):
    with pytest.raises(InvalidOption, match=r"option egress_rate must be a rate like 500kbit, 10mbit or 1gbit"):
        limits.parse_rate("egress_rate", text)


@pytest.mark.parametrize("text", ["63kbit", "35gbit", "100gbit", "1bit"])
def test_rates_out_of_range(text):
    with pytest.raises(InvalidOption, match="between 64kbit and 34gbit"):
        limits.parse_rate("ingress_rate", text)


@pytest.mark.parametrize("text, size", [("64kb", 65536), ("1mb", 1024**2), ("1518b", 1518), ("2k", 2048),
                                        ("1.5mb", 1572864), ("128KiB", 131072), ("none", 0)])
def test_bursts(text, size):
    assert limits.parse_burst("egress_burst", text) == size


@pytest.mark.parametrize("text, why", [("64", "a size in bytes like 64kb, 1mb or 20000b"),
                                       ("64kbit", "a size in bytes"), ("1500b", "at least 1518b")])
def test_bad_bursts_are_refused_by_name(text, why):
    with pytest.raises(InvalidOption, match=f"option ingress_burst must be {why}"):
        limits.parse_burst("ingress_burst", text)


def test_formats_round_trip():
    for text in ("10mbit", "1gbit", "500kbit", "1.5gbit"):
        assert limits.fmt_rate(limits.parse_rate("r", text)) == text
    assert limits.fmt_size(65536) == "64kb" and limits.fmt_size(1024**2) == "1mb" and limits.fmt_size(20000) == "20000b"


def test_default_burst_is_10ms_and_at_least_64kb():
    assert Direction(10**9).burst_or_default() == 1_250_000
    assert Direction(10**7).burst_or_default() == 65536
    assert Direction(10**9, 4096).burst_or_default() == 4096


def test_overrides_merge_key_by_key():
    net = limits.parse({"ingress_rate": "100mbit", "ingress_burst": "1mb", "egress_rate": "50mbit"}, "-o")
    ep = limits.parse({"ingress_rate": "10mbit", "egress_rate": "none"}, "--driver-opt")
    assert limits.effective(net, ep) == Rates(Direction(10**7, 1024**2), Direction(0, 0))
    assert not limits.effective({}, {}) and limits.effective(net, {})


def test_check_refuses_what_cannot_work():
    with pytest.raises(InvalidOption, match="egress_burst needs an egress_rate"):
        limits.check({}, {"egress_burst": 65536})
    with pytest.raises(InvalidOption, match="smaller than one frame of this network .9018 bytes."):
        limits.check({"ingress_rate": 10**7, "ingress_burst": 4096}, {}, mtu=9000)
    with pytest.raises(InvalidOption, match="lasts more than 60 s at 64kbit"):
        limits.check({"ingress_rate": 64_000, "ingress_burst": 1024**2}, {})
    assert limits.check({"ingress_rate": 10**7}, {"ingress_burst": 4096}) == Rates(Direction(10**7, 4096))


def test_change_for_pynet_limit():
    cur = {"ingress_rate": 10**7}
    assert limits.change(cur, {"egress_rate": "1gbit"}) == {"ingress_rate": 10**7, "egress_rate": 10**9}
    assert limits.change(cur, {"ingress_rate": "default"}) == {}
    assert limits.change(cur, {"ingress_rate": "none"}) == {"ingress_rate": 0}
    with pytest.raises(InvalidOption, match="unknown limit 'ingress'; pynet knows: ingress_rate"):
        limits.change(cur, {"ingress": "1mbit"})


# ---------------------------------------------------------------- options

MODES = make_modes(None, None, "pynet:unit:")


def test_network_options_carry_defaults_for_every_mode():
    net = options.build_network(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "20mbit",
                                                 "egress_burst": "128kb"}), "pn-", MODES)
    assert net.limits == {"ingress_rate": 10**8, "egress_rate": 2 * 10**7, "egress_burst": 131072}
    lan = options.build_network(net_req(generic={"mode": "transparent", "parent": "eth0", "ingress_rate": "1gbit"},
                                        **LAN), "pn-", MODES)
    assert lan.limits == {"ingress_rate": 10**9}


@pytest.mark.parametrize("generic, match", [
    ({"ingress_rate": "100"}, r"option ingress_rate \(-o ingress_rate=...\) must be a rate"),
    ({"egress_burst": "64kb"}, "egress_burst needs an egress_rate"),
    ({"ingress_rte": "1mbit"}, "unknown network option 'ingress_rte'"),
])
def test_bad_network_limits_refused_before_anything(generic, match):
    with pytest.raises(InvalidOption, match=match):
        options.build_network(net_req(generic=generic), "pn-", MODES)


def test_driver_opts_are_endpoint_limits():
    net = options.build_network(net_req(generic={"ingress_rate": "100mbit"}), "pn-", MODES)
    ep = options.build_endpoint(ep_req(driver_opts={"ingress_rate": "10mbit", "egress_rate": "1gbit"}), net, "pn-",
                                MODES["nat"])
    assert ep.limits == {"ingress_rate": 10**7, "egress_rate": 10**9}
    with pytest.raises(InvalidOption, match=r"unknown endpoint option 'foo' \(--driver-opt foo=...\); pynet takes "
                                            r"ingress_rate, ingress_burst, egress_rate, egress_burst"):
        options.build_endpoint(ep_req(driver_opts={"foo": "1"}), net, "pn-", MODES["nat"])
    with pytest.raises(InvalidOption, match=r"option egress_rate \(--driver-opt egress_rate=...\) must be"):
        options.build_endpoint(ep_req(driver_opts={"egress_rate": "lots"}), net, "pn-", MODES["nat"])


# ---------------------------------------------------------------- the core, nat

async def test_nat_network_default_shapes_in_and_polices_out(driver, cfg, links, police):
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "20mbit"}))
    await driver.endpoints.create(ep_req())
    assert links.shapes == {H1: (10**8, 125_000)}  # 10 ms at the rate
    assert police.policers == {(H1, ""): (2 * 10**7, 65536)}
    await driver.endpoints.join(join_req())
    doc = driver.limits.listing()[0]
    assert doc["limits"] == {"ingress_rate": "100mbit", "ingress_burst": "125000b", "egress_rate": "20mbit",
                             "egress_burst": "64kb"}
    assert doc["enforced_by"] == [f"shape {H1}", f"police {H1}"]
    # DeleteEndpoint: the TBF went with the veth, the policer (it outlives its device) by name.
    await driver.endpoints.leave(ref())
    await driver.endpoints.delete(ref())
    assert links.shapes == {} and police.policers == {}


async def test_unlimited_endpoint_pays_nothing(driver, links, police):
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    await driver.endpoints.join(join_req())
    await driver.endpoints.leave(ref())
    await driver.endpoints.delete(ref())
    tc = [c for c in links.calls if c[0] in ("shape", "unshape", "shape_source", "unshape_source")]
    assert tc == [] and police.calls == []


async def test_driver_opt_overrides_network_default(driver, links, police):
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "20mbit"}))
    await driver.endpoints.create(ep_req(driver_opts={"ingress_rate": "10mbit", "egress_rate": "none"}))
    await driver.endpoints.create(ep_req(ep_id=EP_2, address="172.30.0.3/24"))
    assert links.shapes == {H1: (10**7, 65536), H2: (10**8, 125_000)}
    assert set(police.policers) == {(H2, "")}


async def test_pynet_limit_changes_saves_and_reverts(driver, cfg, links, police):
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit"}))
    await driver.endpoints.create(ep_req())
    await driver.endpoints.join(join_req())
    doc = await driver.limits.set(ref(), {"egress_rate": "5mbit", "egress_burst": "256kb"})
    assert doc["overrides"] == {"egress_rate": "5mbit", "egress_burst": "256kb"}
    assert police.policers == {(H1, ""): (5 * 10**6, 262144)} and links.shapes[H1][0] == 10**8
    assert _saved(cfg)["endpoints"][EP_1]["limits"] == {"egress_rate": 5 * 10**6, "egress_burst": 262144}
    # none: this endpoint only, the direction goes (its qdisc with it); default: back to the network's.
    await driver.limits.set(ref(), {"ingress_rate": "none"})
    assert links.shapes == {}
    await driver.limits.set(ref(), {"ingress_rate": "default", "egress_rate": "none", "egress_burst": "default"})
    assert links.shapes[H1][0] == 10**8 and police.policers == {}
    assert _saved(cfg)["endpoints"][EP_1]["limits"] == {"egress_rate": 0}


async def test_pynet_limit_refused_or_failed_changes_nothing(driver, cfg, links, police):
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    with pytest.raises(InvalidOption, match="unknown limit"):
        await driver.limits.set(ref(), {"rate": "1mbit"})
    with pytest.raises(InvalidOption, match="ingress_burst needs an ingress_rate"):
        await driver.limits.set(ref(), {"ingress_burst": "1mb"})
    await driver.limits.set(ref(), {"ingress_rate": "10mbit"})
    police.fail["police"] = KernelError("nftables refused the change: boom")
    with pytest.raises(KernelError, match="boom"):
        await driver.limits.set(ref(), {"ingress_rate": "20mbit", "egress_rate": "1mbit"})
    assert links.shapes == {H1: (10**7, 65536)} and police.policers == {}  # as before, kernel and state
    assert driver.state.nets[ID_A].endpoints[EP_1].limits == {"ingress_rate": 10**7}
    assert _saved(cfg)["endpoints"][EP_1]["limits"] == {"ingress_rate": 10**7}


async def test_failed_limit_undoes_the_endpoint(driver, links, police):
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "1mbit"}))
    police.fail["police"] = KernelError("nftables refused the change: no")
    with pytest.raises(KernelError):
        await driver.endpoints.create(ep_req())
    assert H1 not in links.links and links.shapes == {} and police.policers == {}
    assert EP_1 not in driver.state.nets[ID_A].endpoints


async def test_join_after_reboot_puts_limits_back(driver, links, police):
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "1mbit"}))
    await driver.endpoints.create(ep_req())
    links.shapes.clear()
    police.policers.clear()
    await driver.endpoints.join(join_req())
    assert links.shapes[H1][0] == 10**8 and police.policers[(H1, "")][0] == 10**6


async def test_delete_network_removes_its_limits(driver, links, police):
    await driver.networks.create(net_req(generic={"egress_rate": "1mbit"}))
    await driver.endpoints.create(ep_req())
    await driver.networks.delete(ref(ep_id=None))
    assert police.policers == {}


# ---------------------------------------------------------------- the LAN modes

async def test_transparent_shapes_on_parent_by_source_mac_and_polices_by_destination(driver, links, police):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth0", "ingress_rate": "30mbit",
                                                  "egress_rate": "10mbit"}, **LAN))
    await driver.endpoints.create(ep_req(address="192.168.50.20/24"))
    assert links.sources == {"eth0": {MAC1: (10**7, 65536)}}
    assert police.policers == {("eth0", MAC1): (3 * 10**7, 65536)}
    assert links.shapes == {}  # nothing on the macvlan itself: it moves into the container
    await driver.endpoints.join(join_req())
    links.move_to_container(K1)
    await driver.endpoints.leave(ref())
    await driver.endpoints.delete(ref())
    assert links.sources == {} and police.policers == {}


async def test_transparent_refuses_a_parent_with_a_foreign_qdisc(driver, links, police):
    links.add_foreign("eth0", kind="device")
    links.foreign_qdisc.add("eth0")
    await driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth0", "egress_rate": "1mbit"},
                                         **LAN))
    with pytest.raises(KernelError, match="root qdisc .* that pynet did not make"):
        await driver.endpoints.create(ep_req(address="192.168.50.20/24"))
    assert K1 not in links.links and driver.state.nets[ID_A].endpoints == {}


async def test_l2bridge_limits_the_routed_veth(driver, links, police):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "l2bridge", "parent": "eth0"}, **LAN))
    await driver.endpoints.create(ep_req(address="192.168.50.20/24", driver_opts={"ingress_rate": "1gbit",
                                                                                  "egress_rate": "1gbit"}))
    assert links.shapes[H1] == (10**9, 1_250_000) and police.policers == {(H1, ""): (10**9, 1_250_000)}
    await driver.endpoints.delete(ref())
    assert links.shapes == {} and police.policers == {}


# ---------------------------------------------------------------- restarts

async def test_restart_reapplies_limits_and_sweeps_leftovers(driver, cfg, links, sysctls, police):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"ingress_rate": "100mbit", "egress_rate": "1mbit"}))
    await driver.endpoints.create(ep_req())
    await driver.endpoints.join(join_req())
    # The kernel lost the TBF (someone ran tc) and holds leftovers of endpoints that went unseen.
    links.shapes.clear()
    police.policers[("pn-hdead0000000", "")] = (10**6, 65536)
    links.sources["eth0"] = {"02:42:00:00:00:09": (10**6, 65536)}
    again = make_driver(cfg, links, FakeNft(docker_user={"ip": []}), sysctls, police=police)
    await again.start()
    try:
        assert links.shapes[H1][0] == 10**8 and set(police.policers) == {(H1, "")}
        assert links.sources == {}
        assert "policer pn-hdead0000000" in again.reconciler.leftovers_removed
        assert "shaper for 02:42:00:00:00:09 on eth0" in again.reconciler.leftovers_removed
    finally:
        await again.shutdown()


async def test_flushed_policers_come_back_at_the_periodic_check(driver, links, police):
    await driver.networks.create(net_req(generic={"egress_rate": "1mbit"}))
    await driver.endpoints.create(ep_req())
    await driver.endpoints.create(ep_req(ep_id=EP_2, address="172.30.0.3/24", driver_opts={"egress_rate": "none"}))
    await driver.reconciler.check_firewall()
    assert police.calls[-1][0] == "police" and len(police.calls) == 1  # nothing missing: nothing done
    police.policers.clear()  # `nft flush ruleset`
    await driver.reconciler.check_firewall()
    assert police.policers == {(H1, ""): (10**6, 65536)}


async def test_limits_of_a_vanished_endpoint_are_swept(driver, cfg, sysctls, police):
    await driver.networks.create(net_req(generic={"egress_rate": "1mbit"}))
    await driver.endpoints.create(ep_req())
    booted = FakeLinks()  # a reboot: the veth is gone, the policer (in this fake) stayed
    again = make_driver(cfg, booted, FakeNft(docker_user={"ip": []}), sysctls, police=police)
    await again.start()
    try:
        assert police.policers == {}
    finally:
        await again.shutdown()


async def test_old_state_files_have_no_limits(driver, cfg):
    await driver.networks.create(net_req())
    await driver.endpoints.create(ep_req())
    doc = _saved(cfg)
    del doc["limits"]
    del doc["endpoints"][EP_1]["limits"]
    from pynet.model import network_from_dict

    net = network_from_dict(doc)
    assert net.limits == {} and net.endpoints[EP_1].limits == {}


# ---------------------------------------------------------------- the HTTP side

async def test_control_api_and_wire(docker, links, police):
    await docker.ok("/NetworkDriver.CreateNetwork", net_body(generic={"egress_rate": "10mbit"}))
    err = await docker.err("/NetworkDriver.CreateEndpoint", ep_body(options={"ingress_rate": "fast"}))
    assert "ingress_rate (--driver-opt ingress_rate=...) must be a rate like" in err
    await docker.ok("/NetworkDriver.CreateEndpoint", ep_body(options={"ingress_rate": "2mbit",
                                                                      "com.docker.network.endpoint.exposedports": []}))
    assert links.shapes[H1][0] == 2 * 10**6
    status, doc, _ = await docker.call("/pynet/v1/limits", {"NetworkID": ID_A, "EndpointID": EP_1,
                                                             "limits": {"ingress_rate": "4mbit"}})
    assert status == 200 and doc["limits"]["ingress_rate"] == "4mbit" and links.shapes[H1][0] == 4 * 10**6
    status, doc, _ = await docker.call("/pynet/v1/limits", {"NetworkID": ID_A, "EndpointID": EP_1, "limits": {}})
    assert status == 400 and "non-empty object" in doc["Err"]
    listing = await docker.get(f"/pynet/v1/limits?network={ID_A}")
    assert [d["limits"]["egress_rate"] for d in listing] == ["10mbit"]
    detail = await docker.get(f"/pynet/v1/networks/{ID_A}")
    assert detail["limits"] == {"egress_rate": "10mbit", "egress_burst": "64kb"}
    assert detail["endpoints"][0]["limits"]["ingress_rate"] == "4mbit"


def _saved(cfg) -> dict:
    return statedb.network(cfg.state_dir, ID_A)

