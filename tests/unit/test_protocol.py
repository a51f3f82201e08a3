"""The protocol edge (api/protocol.py, app.make_app) through aiohttp's test server, over a Driver
whose kernel parts are fakes. Bodies are sent the way dockerd sends them: often no Content-Type."""

from __future__ import annotations

import asyncio

import dataclasses
import json
import warnings

import pytest
import statedb
from aiohttp.test_utils import TestClient, TestServer

from fakes import EP_1, ID_A, Docker, build_app, ep_body, net_body, pm
from pynet.api.protocol import CONTENT_TYPE
from pynet.app import make_app


def test_make_app_emits_no_warning(cfg, driver):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_app(cfg, driver)
    assert [str(w.message) for w in caught] == []


async def test_protocol_call_emits_no_warning(cfg, driver, monkeypatch):
    from aiohttp.web_request import BaseRequest

    monkeypatch.setattr(BaseRequest, "_seen_str_keys", set())  # aiohttp warns once per key and process
    async with TestClient(TestServer(build_app(cfg, driver))) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status, _, _ = await Docker(client).call("/Plugin.Activate")
    assert status == 200
    assert [str(w.message) for w in caught] == []


# ---------------------------------------------------------------- handshake

async def test_activate_with_empty_body_and_no_content_type(docker):
    status, doc, ctype = await docker.call("/Plugin.Activate")
    assert status == 200
    assert doc == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert ctype.startswith(CONTENT_TYPE)


async def test_activate_whitespace_body(docker):
    status, doc, _ = await docker.call("/Plugin.Activate", raw=b" \r\n ")
    assert (status, doc) == (200, {"Implements": ["NetworkDriver", "IpamDriver"]})


async def test_get_capabilities(docker):
    caps = {"Scope": "local", "ConnectivityScope": "local", "GwAllocChecker": True}
    assert await docker.ok("/NetworkDriver.GetCapabilities") == caps
    status, doc, _ = await docker.call("/NetworkDriver.GetCapabilities", raw=b"{}",
                                       content_type="application/vnd.docker.plugins.v1.2+json")
    assert (status, doc) == (200, caps)


async def test_ipam_capabilities_and_spaces(docker):
    assert await docker.ok("/IpamDriver.GetCapabilities") == {"RequiresMACAddress": True,
                                                               "RequiresRequestReplay": False}
    assert await docker.ok("/IpamDriver.GetDefaultAddressSpaces") == {
        "LocalDefaultAddressSpace": "pynet-dhcp", "GlobalDefaultAddressSpace": "pynet-dhcp"}


async def test_discover_calls_answer_empty(docker):
    assert await docker.ok("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {}}) == {}
    assert await docker.ok("/NetworkDriver.DiscoverDelete") == {}


# ---------------------------------------------------------------- bad requests -> {"Err": ...}

@pytest.mark.parametrize("raw, why", [
    (b"{not json", "is not valid JSON"),
    (b'{"NetworkID": ', "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
])
async def test_garbage_body(docker, driver, raw, why):
    status, doc, ctype = await docker.call("/NetworkDriver.CreateNetwork", raw=raw)
    assert status == 400
    assert doc == {"Err": f"request body of /NetworkDriver.CreateNetwork {why}"}
    assert ctype.startswith(CONTENT_TYPE)
    assert driver.state.nets == {}


async def test_empty_body_where_ids_are_needed(docker):
    status, doc, _ = await docker.call("/NetworkDriver.CreateNetwork")
    assert status == 400 and doc == {"Err": "NetworkID must be a Docker ID (8-64 hex digits, or a swarm ID of lowercase letters and digits), got None"}
    status, doc, _ = await docker.call("/NetworkDriver.Join", {"NetworkID": ID_A})
    assert status == 400 and "EndpointID must be a Docker ID" in doc["Err"]


async def test_garbage_with_json_content_type(docker):
    status, doc, _ = await docker.call("/NetworkDriver.DeleteNetwork", raw=b"}{", content_type="application/json")
    assert status == 400 and "not valid JSON" in doc["Err"]


async def test_invalid_option_is_500_with_message(docker, driver):
    status, doc, _ = await docker.call("/NetworkDriver.CreateNetwork", net_body(generic={"mtu": "10"}))
    assert status == 500
    assert doc == {"Err": "option mtu must be between 68 and 65535, got 10"}
    assert driver.state.nets == {}


async def test_unknown_call_is_404_json(docker):
    status, doc, ctype = await docker.call("/NetworkDriver.Frobnicate", {})
    assert (status, doc) == (404, {"Err": "unknown call /NetworkDriver.Frobnicate"})
    assert ctype.startswith(CONTENT_TYPE)


async def test_get_is_405_json(docker):
    status, doc, _ = await docker.call("/Plugin.Activate", method="GET")
    assert status == 405 and "use POST" in doc["Err"]


async def test_body_too_large(cfg, driver):
    small = dataclasses.replace(cfg, max_body=64)
    async with TestClient(TestServer(build_app(small, driver))) as client:
        status, doc, _ = await Docker(client).call("/NetworkDriver.CreateNetwork", raw=b"{" + b" " * 200 + b"}")
    assert (status, doc) == (413, {"Err": "request body too large (limit 64 bytes)"})


async def test_global_scope_calls_refused(docker):
    status, doc, _ = await docker.call("/NetworkDriver.AllocateNetwork", {"NetworkID": ID_A})
    assert status == 500 and "local-scope" in doc["Err"]


async def test_ipam_errors_carry_error_in_band(docker):
    status, doc, _ = await docker.call("/IpamDriver.RequestPool", {"AddressSpace": "pynet-dhcp", "V6": True,
                                                                   "Pool": "10.0.0.0/24"})
    assert status == 500
    assert doc["Err"] == doc["Error"] and "is not IPv6" in doc["Err"]
    status, doc, _ = await docker.call("/IpamDriver.RequestPool", {"AddressSpace": "pynet-dhcp"})
    assert status == 500 and "needs --subnet" in doc["Error"]


async def test_network_errors_have_no_error_field(docker):
    _, doc, _ = await docker.call("/NetworkDriver.CreateNetwork", net_body(generic={"colour": "x"}))
    assert set(doc) == {"Err"}


async def test_unexpected_exception_still_answers_json(cfg, driver, monkeypatch):
    def boom(_ref):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(driver.endpoints, "oper_info", boom)
    async with TestClient(TestServer(build_app(cfg, driver))) as client:
        status, doc, _ = await Docker(client).call("/NetworkDriver.EndpointOperInfo", {"NetworkID": ID_A,
                                                                                    "EndpointID": EP_1})
    assert (status, doc) == (500, {"Err": "pynet internal error: ZeroDivisionError: oops"})


async def test_unknown_network_and_endpoint(docker):
    status, doc, _ = await docker.call("/NetworkDriver.CreateEndpoint", ep_body())
    assert status == 404 and "network aaaaaaaaaaaa is not known to pynet" in doc["Err"]
    assert "docker network rm" in doc["Err"]
    await docker.ok("/NetworkDriver.CreateNetwork", net_body())
    status, doc, _ = await docker.call("/NetworkDriver.EndpointOperInfo", {"NetworkID": ID_A, "EndpointID": EP_1})
    assert status == 404 and "endpoint 111111111111" in doc["Err"]


T = "pynet_unit"
BR_A = "pn-n" + ID_A[:11]
H1, K1 = "pn-h" + EP_1[:11], "pn-k" + EP_1[:11]


def ids(net=ID_A, ep=EP_1) -> dict:
    return {"NetworkID": net, "EndpointID": ep}


def saved(cfg, net_id=ID_A) -> dict | None:
    return statedb.network(cfg.state_dir, net_id)


async def test_a_container_lifecycle_through_the_socket(docker, driver, cfg, links, nft, sysctls):
    """The whole protocol over HTTP as dockerd speaks it: bodies decoded, replies encoded."""
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
    driver.networks.docker_user_linger = 0.05
    for _ in range(2):
        await docker.ok("/NetworkDriver.RevokeExternalConnectivity", ids())
        assert nft.elements(T, "pubany4") == {}
        await docker.ok("/NetworkDriver.Leave", ids())
        await docker.ok("/NetworkDriver.DeleteEndpoint", ids())
        assert H1 not in links.links and K1 not in links.links
        await docker.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": ID_A})
        assert BR_A not in links.links
        driver.state.store.flush()  # the deferred deletes (written PURGE_DELAY after the call)
        assert saved(cfg) is None
        assert nft.elements(T, "bridges") == {} and nft.elements(T, "masq") == {}
        await asyncio.sleep(0.2)  # the last network's Docker-side accepts linger, then go
        assert nft.du_patterns("ip") == []
    assert len(driver.published.index) == 0
