"""Bad input: a clear error naming what to change, and nothing left behind."""

from __future__ import annotations

import pytest

from conftest import OUT4_HOST
from lib import DOCKER, DRIVER, links_with_prefix, sh

CALLS = ["CreateNetwork", "DeleteNetwork", "CreateEndpoint", "DeleteEndpoint", "EndpointOperInfo", "Join",
         "Leave", "ProgramExternalConnectivity", "RevokeExternalConnectivity"]


def nothing_left(daemon) -> None:
    status, nets = daemon.call("/pynet/v1/networks", method="GET")
    assert status == 200 and nets == []
    assert links_with_prefix() == []
    assert sh(DOCKER, "network", "ls", "-q", "--filter", f"driver={DRIVER}").stdout.split() == []


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b'{"NetworkID": 5}', b"\xff\xfe", b'"x"'])
def test_garbage_on_the_socket(daemon, call, raw):
    status, doc = daemon.call(f"/NetworkDriver.{call}", raw=raw)
    assert status != 200
    assert isinstance(doc, dict) and doc.get("Err"), doc
    assert daemon.proc.poll() is None
    nothing_left(daemon)


def test_empty_bodies_and_no_content_type(daemon):
    assert daemon.ok("/Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert daemon.ok("/NetworkDriver.GetCapabilities") == {"Scope": "local", "ConnectivityScope": "local",
                                                           "GwAllocChecker": True}
    status, doc = daemon.call("/NetworkDriver.CreateNetwork")
    assert status != 200 and "NetworkID" in doc["Err"]
    status, doc = daemon.call("/NetworkDriver.NoSuchCall", {})
    assert status == 404 and "NoSuchCall" in doc["Err"]


@pytest.mark.parametrize("args, words", [
    (["-o", "nosuch=1"], ["nosuch"]),
    (["-o", "mtu=abc"], ["mtu"]),
    (["-o", "mtu=20"], ["mtu", "68"]),
    (["-o", "icc=maybe"], ["icc"]),
    (["-o", "parent=nope0"], ["parent", "mode=transparent"]),
    (["-o", "mode=transparent", "-o", "parent=nope0"], ["parent", "nope0", "does not exist"]),
    (["-o", "mode=transparent", "-o", "parent=nope0.50"], ["nope0", "does not exist"]),
    (["-o", "mode=transparent"], ["parent"]),
    (["-o", "mode=transparent", "-o", "parent=lo", "-o", "icc=false"], ["icc", "mode=nat"]),
    (["-o", "mode=transparent", "-o", "parent=lo", "--internal"], ["--internal"]),
    (["-o", "mode=bogus"], ["mode"]),
    (["-o", "bridge_name=eth0"], ["eth0", "bridge_name"]),
    (["-o", "host_binding_ipv4=nothing"], ["host_binding_ipv4"]),
])
def test_bad_network_options(nets, daemon, args, words):
    p = nets.create("bad", *args, check=False)
    assert p.returncode != 0
    for w in words:
        assert w in p.stderr, p.stderr
    nothing_left(daemon)


def test_subnet_overlapping_a_host_interface(nets, daemon, outside):
    p = nets.create("ovl", "--subnet", "198.51.100.0/25", check=False)
    assert p.returncode != 0 and "overlaps" in p.stderr and OUT4_HOST in p.stderr, p.stderr
    nothing_left(daemon)


def test_overlapping_pynet_networks(nets, daemon):
    nets.create("ovla", "--subnet", "10.218.0.0/24")
    p = nets.create("ovlb", "--subnet", "10.218.0.0/25", check=False)
    assert p.returncode != 0 and "overlap" in p.stderr.lower(), p.stderr
    status, listed = daemon.call("/pynet/v1/networks", method="GET")
    assert len(listed) == 1


def test_overlap_refused_by_pynet_itself(daemon):
    """Docker's IPAM catches overlaps among its own pools; pynet checks too (another address space)."""
    base = {"Options": {}, "IPv6Data": []}
    a = dict(base, NetworkID="a" * 64, IPv4Data=[{"Pool": "10.219.0.0/24", "Gateway": "10.219.0.1/24"}])
    b = dict(base, NetworkID="b" * 64, IPv4Data=[{"Pool": "10.219.0.128/25", "Gateway": "10.219.0.129/25"}])
    daemon.ok("/NetworkDriver.CreateNetwork", a)
    try:
        status, doc = daemon.call("/NetworkDriver.CreateNetwork", b)
        assert status != 200 and "overlaps 10.219.0.0/24" in doc["Err"] and "a" * 12 in doc["Err"]
        assert len(links_with_prefix()) == 1
    finally:
        daemon.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": "a" * 64})
    daemon.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": "a" * 64})  # twice is fine
    nothing_left(daemon)
