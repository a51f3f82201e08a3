"""api/wire.py: Docker's JSON bodies -> typed requests (shape and type errors only), replies -> JSON."""

from __future__ import annotations

import base64

import pytest

from fakes import EP_1, ID_A, ep_body, net_body, pm
from pynet.api import wire
from pynet.errors import InvalidOption, InvalidRequest
from pynet.model import JoinInfo, PortMapping, Route


@pytest.mark.parametrize("net_id", [None, "", "xyz", "abc", "G" * 64, "a" * 65, 12345678, "abc/def12", "../../etc",
                                    "abcdefgh\n", "ab cd ef gh", "ABCDEFGHJ"])
def test_bad_network_id(net_id):
    with pytest.raises(InvalidRequest, match="NetworkID must be a Docker ID"):
        wire.create_network(net_body(net_id=net_id))


def test_ids_lowercased_and_swarm_ids_accepted():
    assert wire.create_network(net_body(net_id="ABCDEF12")).network_id == "abcdef12"
    assert wire.create_network(net_body(net_id="275a88pvcb1w4rqsfolj7m0pd")).network_id == "275a88pvcb1w4rqsfolj7m0pd"


def test_create_network_decoded():
    req = wire.create_network(net_body(generic={"mode": "nat", "mtu": "1400"}, v6=("fd00::/64", "fd00::1/64"),
                                       internal=True))
    assert req.network_id == ID_A and req.generic == {"mode": "nat", "mtu": "1400"}
    assert req.options == {"com.docker.network.enable_ipv6": True, "com.docker.network.internal": True}
    assert req.v4 == [wire.IpData("172.30.0.0/24", "172.30.0.1/24", "LocalDefault")]
    assert req.v6 == [wire.IpData("fd00::/64", "fd00::1/64", "LocalDefault")]


def test_options_not_an_object():
    body = net_body()
    body["Options"] = ["x"]
    with pytest.raises(InvalidRequest, match="Options must be an object"):
        wire.create_network(body)
    body["Options"] = {wire.GENERIC: "mode=nat"}
    with pytest.raises(InvalidRequest, match="must be an object"):
        wire.create_network(body)


def test_ipv4data_shapes():
    body = net_body()
    body["IPv4Data"] = {"Pool": "10.0.0.0/8"}
    with pytest.raises(InvalidRequest, match="IPv4Data must be a list"):
        wire.create_network(body)
    body["IPv4Data"] = [{"Pool": "10.0.0.0/8", "Gateway": 7}]
    with pytest.raises(InvalidRequest, match="Gateway must be a string"):
        wire.create_network(body)
    body["IPv4Data"] = [{"Pool": None}]
    with pytest.raises(InvalidOption, match="not a valid IP prefix"):
        wire.create_network(body)


def test_gw_alloc_check_carries_the_options_only():
    req = wire.gw_alloc_check({"Options": {wire.GENERIC: {"mode": "l2bridge"}, "com.docker.network.enable_ipv4": True}})
    assert req.generic == {"mode": "l2bridge"} and req.options == {"com.docker.network.enable_ipv4": True}
    assert wire.gw_alloc_reply(True, False) == {"SkipIPv4": True, "SkipIPv6": False}


def test_create_endpoint_decoded():
    raw = base64.b64encode(bytes([2, 1, 2, 3, 4, 5])).decode()
    opts = {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
            "com.docker.network.endpoint.ifname": "eth7",  # newer engines add keys of their own
            "com.docker.network.endpoint.macaddress": raw,
            "com.docker.network.portmap": [pm(80, 8080)], "speed": "fast"}
    req = wire.create_endpoint(ep_body(options=opts, mac="02:aa:bb:cc:dd:ee"))
    assert (req.network_id, req.endpoint_id, req.address, req.mac) == (ID_A, EP_1, "172.30.0.2/24",
                                                                         "02:aa:bb:cc:dd:ee")
    assert req.mac_option == "02:01:02:03:04:05"
    assert req.driver_opts == {"speed": "fast"}  # Docker's own keys are not driver options
    assert req.portmap == [PortMapping("tcp", 80, "", 8080, 8080)]


def test_create_endpoint_bad_shapes():
    with pytest.raises(InvalidOption, match="not base64"):
        wire.create_endpoint(ep_body(options={"com.docker.network.endpoint.macaddress": "!!"}))
    with pytest.raises(InvalidRequest, match="EndpointID"):
        wire.create_endpoint(ep_body(ep_id="nothex!"))
    with pytest.raises(InvalidOption, match="--mac-address must be a string"):
        wire.create_endpoint(ep_body(mac=7))


def test_join_and_connectivity():
    body = {"NetworkID": ID_A, "EndpointID": EP_1, "SandboxKey": "/var/run/docker/netns/x",
            "Options": {"com.docker.network.portmap": [pm(80, 8080)]}}
    j = wire.join(body)
    assert (j.sandbox, j.portmap) == ("/var/run/docker/netns/x", [PortMapping("tcp", 80, "", 8080, 8080)])
    with pytest.raises(InvalidRequest, match="SandboxKey"):
        wire.join(dict(body, SandboxKey=5))
    assert wire.connectivity({"NetworkID": ID_A, "EndpointID": EP_1}).portmap is None  # not sent: not emptied
    assert wire.connectivity(body).portmap == [PortMapping("tcp", 80, "", 8080, 8080)]


def test_replies_carry_only_what_docker_did_not_supply():
    assert wire.create_endpoint_reply(None) == {}
    assert wire.create_endpoint_reply("02:42:ac:1e:00:02") == {"Interface": {"MacAddress": "02:42:ac:1e:00:02"}}
    assert wire.join_reply(JoinInfo("pn-k1", "eth")) == {"InterfaceName": {"SrcName": "pn-k1", "DstPrefix": "eth"}}
    doc = wire.join_reply(JoinInfo("pn-k1", "eth", gateway="10.0.0.1", gateway6="fe80::1",
                                   routes=[Route("fd77::/65", "fe80::1"), Route("10.9.0.0/16")]))
    assert doc["Gateway"] == "10.0.0.1" and doc["GatewayIPv6"] == "fe80::1"
    assert doc["StaticRoutes"] == [{"Destination": "fd77::/65", "RouteType": 0, "NextHop": "fe80::1"},
                                   {"Destination": "10.9.0.0/16", "RouteType": 1}]
