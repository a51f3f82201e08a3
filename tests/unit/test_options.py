"""options.py: typed CreateNetwork / CreateEndpoint requests -> model, or an error naming what to change.

(How Docker's JSON becomes these requests is api/wire.py's, tested in test_wire.py.)"""

from __future__ import annotations

import pytest

from fakes import EP_1, ID_A, ep_req, net_req, port
from pynet import options
from pynet.api.wire import IpData
from pynet.errors import InvalidOption
from pynet.model import Network, PortMapping, link_name
from pynet.modes import make_modes

P = "pn-"
MODES = make_modes(None, None, "pynet:unit:")


def build(req) -> Network:
    return options.build_network(req, P, MODES)


def build_ep(req, net: Network):
    return options.build_endpoint(req, net, P, MODES[net.mode])


def parse(**kw) -> Network:
    return build(net_req(**kw))


def refused(match: str, exc=InvalidOption, **kw) -> str:
    with pytest.raises(exc, match=match) as ei:
        parse(**kw)
    return str(ei.value)


# ---------------------------------------------------------------- nat (default)

def test_nat_defaults():
    net = parse()
    assert net.mode == "nat"
    assert net.id == ID_A
    assert net.bridge == "pn-n" + ID_A[:11] and len(net.bridge) == 15
    assert not net.custom_bridge
    assert (net.mtu, net.icc, net.masquerade, net.internal, net.ipv6) == (0, True, True, False, False)
    assert net.host_binding_ipv4 == ""
    assert [(s.pool, s.gateway) for s in net.v4] == [("172.30.0.0/24", "172.30.0.1/24")]
    assert net.v6 == [] and net.parent == "" and net.shim == ""


def test_nat_every_option():
    net = parse(generic={"mode": "NAT", "bridge_name": "mybr0", "mtu": "1400", "icc": "false",
                         "masquerade": "no", "host_binding_ipv4": "127.0.0.1", "container_iface_prefix": "net"})
    assert net.mode == "nat"
    assert net.bridge == "mybr0" and net.custom_bridge
    assert net.mtu == 1400 and net.icc is False and net.masquerade is False
    assert net.host_binding_ipv4 == "127.0.0.1"
    assert net.options["container_iface_prefix"] == "net"


def test_docker_bridge_driver_aliases():
    net = parse(generic={"com.docker.network.bridge.name": "br-alias",
                         "com.docker.network.driver.mtu": "9000",
                         "com.docker.network.bridge.enable_icc": "0",
                         "com.docker.network.bridge.enable_ip_masquerade": "off",
                         "com.docker.network.bridge.host_binding_ipv4": "10.1.2.3",
                         "com.docker.network.container_iface_prefix": "ens"})
    assert (net.bridge, net.mtu, net.icc, net.masquerade, net.host_binding_ipv4) == ("br-alias", 9000, False, False,
                                                                                     "10.1.2.3")
    assert net.options["container_iface_prefix"] == "ens"


@pytest.mark.parametrize("text, value", [("1", True), ("TRUE", True), ("yes", True), ("on", True),
                                         ("0", False), ("False", False), ("no", False), (" off ", False)])
def test_bool_spellings(text, value):
    assert parse(generic={"icc": text}).icc is value


def test_bool_json_values():
    assert parse(generic={"icc": False}).icc is False
    assert parse(generic={"masquerade": True}).masquerade is True


def test_internal_and_ipv6_flags():
    net = parse(internal=True, v6=("fd00:30::/64", "fd00:30::1/64"))
    assert net.internal and net.ipv6
    assert [(s.pool, s.gateway) for s in net.v6] == [("fd00:30::/64", "fd00:30::1/64")]


def test_gateway_missing_takes_first_host():
    net = build(net_req(pool="10.9.0.0/16", gateway=""))
    assert net.v4[0].gateway == "10.9.0.1/16"


def test_gateway_plain_ip_gets_pool_prefix():
    assert parse(pool="10.9.0.0/16", gateway="10.9.3.4").v4[0].gateway == "10.9.3.4/16"


@pytest.mark.parametrize("mtu", ["67", "65536", "0", "-1"])
def test_mtu_out_of_range(mtu):
    msg = refused("mtu", generic={"mtu": mtu})
    assert "between 68 and 65535" in msg and mtu in msg


@pytest.mark.parametrize("mtu", ["68", "65535"])
def test_mtu_bounds_accepted(mtu):
    assert parse(generic={"mtu": mtu}).mtu == int(mtu)


def test_mtu_not_a_number():
    assert "mtu must be an integer" in refused("mtu", generic={"mtu": "big"})


def test_mtu_too_small_for_ipv6():
    msg = refused("1280", generic={"mtu": "1279"}, v6=("fd00:30::/64", "fd00:30::1/64"))
    assert "--ipv6" in msg


@pytest.mark.parametrize("name", ["", "this-name-is-too-long", "bad/name", "bad name", "..", "é"])
def test_bad_bridge_name(name):
    msg = refused("bridge_name", generic={"bridge_name": name})
    assert "1-15" in msg


def test_unknown_option_is_named_with_known_ones():
    msg = refused("colour", generic={"colour": "blue"})
    assert "-o colour=" in msg
    for known in ("mode", "bridge_name", "mtu", "icc", "masquerade"):
        assert known in msg


def test_option_value_must_be_plain():
    assert "plain value" in refused("mtu", generic={"mtu": {"a": 1}})


def test_bad_bool():
    msg = refused("icc", generic={"icc": "maybe"})
    assert "true or false" in msg and "'maybe'" in msg


def test_bad_mode_lists_modes():
    msg = refused("mode", generic={"mode": "routed"})
    assert "nat" in msg and "transparent" in msg and "'routed'" in msg


def test_l2bridge():
    net = parse(generic={"mode": "l2bridge", "parent": "eth0.7"}, pool="192.168.1.0/24", gateway="192.168.1.1/24")
    assert (net.mode, net.parent, net.vlan_base, net.vlan, net.bridge) == ("l2bridge", "eth0.7", "eth0", 7, "")
    assert MODES[net.mode].lan and net.shim == "" and not net.host_shim  # no macvlan, no shim: the host routes


@pytest.mark.parametrize("key", ["host_shim", "macvlan_mode"])
def test_transparent_only_keys_refused_on_l2bridge(key):
    msg = refused(key, generic={"mode": "l2bridge", "parent": "eth0", key: "bridge" if key == "macvlan_mode"
                                else "true"})
    assert "only for mode=transparent" in msg and "mode=l2bridge" in msg


def test_l2bridge_missing_parent():
    assert "mode=l2bridge needs -o parent=" in refused("parent", generic={"mode": "l2bridge"})


@pytest.mark.parametrize("key", ["parent", "host_shim", "macvlan_mode"])
def test_lan_only_keys_refused_on_nat(key):
    msg = refused(key, generic={key: "eth0" if key == "parent" else "true" if key == "host_shim" else "bridge"})
    assert "only for mode=transparent" in msg and "mode=nat" in msg


def test_bad_host_binding():
    assert "host_binding_ipv4 must be an IP address" in refused("host_binding", generic={"host_binding_ipv4": "lan"})


@pytest.mark.parametrize("prefix", ["Eth", "1eth", "toolongprefix", "e-th"])
def test_bad_iface_prefix(prefix):
    assert "container_iface_prefix" in refused("container_iface_prefix", generic={"container_iface_prefix": prefix})


def test_subnet_not_a_prefix():
    assert "not a valid IP prefix" in refused("subnet", pool="300.1.1.0/24", gateway="")


def test_gateway_outside_subnet():
    msg = refused("gateway", pool="10.1.0.0/24", gateway="10.2.0.1/24")
    assert "10.2.0.1" in msg and "10.1.0.0/24" in msg


def test_gateway_not_an_ip():
    assert "not a valid IP address" in refused("gateway", gateway="gw/24")


def test_ipv6_subnet_in_ipv4_data():
    assert "not IPv4" in refused("IPv4", pool="fd00::/64", gateway="")


def test_no_ipv4_subnet():
    req = net_req()
    req.v4 = []
    with pytest.raises(InvalidOption, match="IPv4 subnet"):
        build(req)


def test_ipv6_flag_without_v6_subnet():
    req = net_req()
    req.options["com.docker.network.enable_ipv6"] = True
    with pytest.raises(InvalidOption, match="--ipv6 needs an IPv6 subnet"):
        build(req)


def test_stray_v6_data_without_flag_is_ignored():
    req = net_req(v6=("fd00:30::/64", "fd00:30::1/64"))
    req.options["com.docker.network.enable_ipv6"] = False
    net = build(req)
    assert not net.ipv6 and net.v6 == []


def test_overlapping_subnets():
    req = net_req()
    req.v4.append(IpData("172.30.0.128/25", "172.30.0.129/25"))
    with pytest.raises(InvalidOption, match="overlap"):
        build(req)


def test_swarm_network_id_accepted_and_names_derive_from_it():
    """Swarm networks have 25-character base-36 IDs (moby identity.NewID)."""
    net = build(net_req(net_id="275a88pvcb1w4rqsfolj7m0pd"))
    assert net.id == "275a88pvcb1w4rqsfolj7m0pd" and net.bridge == "pn-n275a88pvcb1"
    from pynet.model import id_hex
    assert id_hex(net.id, 7) == id_hex(net.id, 7) and all(c in "0123456789abcdef" for c in id_hex(net.id, 10))
    assert id_hex("abcdef1234", 7) == "abcdef1"  # hex IDs keep the digits earlier versions used


# ---------------------------------------------------------------- transparent

def lan(**generic) -> Network:
    return parse(generic={"mode": "transparent", **generic}, pool="192.168.1.0/24", gateway="192.168.1.1/24")


def test_transparent_defaults():
    net = lan(parent="eth0")
    assert net.mode == "transparent" and MODES[net.mode].lan
    assert net.parent == "eth0" and net.bridge == ""
    assert net.host_shim is True and net.shim == "pn-s" + ID_A[:11]
    assert net.macvlan_mode == "bridge"
    assert (net.vlan, net.vlan_base) == (0, "")


def test_transparent_every_option():
    net = lan(parent="eth1", host_shim="false", macvlan_mode="private", mtu="1500", container_iface_prefix="lan")
    assert net.host_shim is False and net.shim == ""
    assert net.macvlan_mode == "private" and net.mtu == 1500
    assert net.options["container_iface_prefix"] == "lan"


def test_transparent_vlan_parent():
    net = lan(parent="eth0.50")
    assert (net.parent, net.vlan_base, net.vlan) == ("eth0.50", "eth0", 50)


@pytest.mark.parametrize("parent, vlan", [("eth0.0", 0), ("eth0.4095", 4095)])
def test_transparent_vlan_out_of_range(parent, vlan):
    with pytest.raises(InvalidOption, match="1-4094") as ei:
        lan(parent=parent)
    assert f"VLAN id {vlan}" in str(ei.value)


def test_transparent_missing_parent():
    with pytest.raises(InvalidOption, match="needs -o parent=") as ei:
        lan()
    assert "mode=transparent" in str(ei.value)


def test_transparent_bad_parent_name():
    with pytest.raises(InvalidOption, match="option parent"):
        lan(parent="eth0; rm -rf")


@pytest.mark.parametrize("key, value", [("bridge_name", "br0"), ("icc", "false"), ("masquerade", "false"),
                                        ("host_binding_ipv4", "1.2.3.4"),
                                        ("com.docker.network.bridge.name", "br0")])
def test_nat_only_keys_refused_on_transparent(key, value):
    with pytest.raises(InvalidOption, match="only for mode=nat") as ei:
        lan(parent="eth0", **{key: value})
    assert "mode=transparent" in str(ei.value)


def test_transparent_bad_macvlan_mode():
    with pytest.raises(InvalidOption, match="macvlan_mode must be bridge, private, vepa or passthru"):
        lan(parent="eth0", macvlan_mode="source")


def test_transparent_internal_refused():
    with pytest.raises(InvalidOption, match="--internal is not possible with mode=transparent"):
        build(net_req(generic={"mode": "transparent", "parent": "eth0"}, internal=True))


def test_dhcp_ipam_space():
    """pynet's address space marks the families pynet's IPAM serves (DHCP until its pools say otherwise:
    core/ipam.py claims the network, and refuses modes that cannot have it: tests/unit/test_ipam.py)."""
    net = build(net_req(generic={"mode": "transparent", "parent": "eth0"}, space=options.DHCP_SPACE))
    assert (net.ipam, net.ipam6) == ("dhcp", "")
    assert build(net_req(space="LocalDefault")).ipam == ""


# ---------------------------------------------------------------- endpoints

def nat_net() -> Network:
    return parse()


def test_endpoint_defaults():
    ep = build_ep(ep_req(), nat_net())
    assert ep.id == EP_1 and ep.network_id == ID_A
    assert ep.host_if == "pn-h" + EP_1[:11] and ep.peer_if == "pn-k" + EP_1[:11]
    assert ep.mac == "02:42:ac:1e:00:02"  # 02:42 + 172.30.0.2, as Docker's bridge
    assert not ep.mac_from_docker and ep.ports == []


def test_endpoint_mac_from_interface():
    ep = build_ep(ep_req(mac="02-AA-bb-cc-dd-ee"), nat_net())
    assert ep.mac == "02:aa:bb:cc:dd:ee" and ep.mac_from_docker


def test_endpoint_mac_from_docker_option():
    from pynet.api.wire import CreateEndpoint

    req = CreateEndpoint(network_id=ID_A, endpoint_id=EP_1, address="172.30.0.2/24", mac_option="02:01:02:03:04:05")
    ep = build_ep(req, nat_net())
    assert ep.mac == "02:01:02:03:04:05" and not ep.mac_from_docker  # pynet still tells Docker the MAC


@pytest.mark.parametrize("mac, why", [("01:00:5e:00:00:01", "multicast"), ("00:00:00:00:00:00", "not usable"),
                                      ("zz:00:00:00:00:01", "must look like")])
def test_endpoint_bad_mac(mac, why):
    with pytest.raises(InvalidOption, match=why):
        build_ep(ep_req(mac=mac), nat_net())


def test_endpoint_unknown_driver_opt():
    with pytest.raises(InvalidOption, match="unknown endpoint option 'speed'") as ei:
        build_ep(ep_req(driver_opts={"speed": "fast"}), nat_net())
    assert "--driver-opt speed=" in str(ei.value)


def test_endpoint_ports_kept_as_requested():
    ep = build_ep(ep_req(ports=[port(80, 8080)]), nat_net())
    assert ep.options == {}
    assert ep.ports == [PortMapping("tcp", 80, "", 8080, 8080)]


def test_endpoint_needs_ipv4():
    with pytest.raises(InvalidOption, match="needs an IPv4 address"):
        build_ep(ep_req(address=""), nat_net())


@pytest.mark.parametrize("field, value, why", [("address", "172.30.0.300/24", "not an IP address with prefix"),
                                               ("address", "fd00::2/64", "not IPv4"),
                                               ("address6", "172.30.0.2/24", "not IPv6")])
def test_endpoint_bad_addresses(field, value, why):
    with pytest.raises(InvalidOption, match=why):
        build_ep(ep_req(**{field: value}), nat_net())


def test_transparent_endpoint_has_no_host_side():
    ep = build_ep(ep_req(address="192.168.1.20/24"), lan(parent="eth0"))
    assert ep.host_if == "" and ep.peer_if == "pn-k" + EP_1[:11]


def test_link_names_fit_ifnamsiz():
    for prefix in ("pn-", "pn-ab-", "pynet-"):
        assert len(link_name(prefix, "h", "f" * 64)) == 15
