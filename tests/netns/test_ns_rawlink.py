"""kernel/rawlink.py, the daemon's hand-built netlink requests, against the real kernel: its look-ups
read what pyroute2 reads, on links of every kind pynet makes (with and without alias, master, MTU),
and its changes are what `ip` shows."""

from __future__ import annotations

import asyncio
import errno
import json

import pytest
from pyroute2 import AsyncIPRoute

from dhcp_lan import run_in_netns
from lib import Netns
from pynet.errors import KernelError
from pynet.kernel.rawlink import RawLink
from pynet.kernel.linkinfo import info
from pynet.kernel.links import Links


@pytest.fixture
def ns():
    ns = Netns("lg")
    try:
        yield ns
    finally:
        ns.close()


def show(ns, name: str) -> dict:
    return json.loads(ns.run("ip", "-d", "-j", "link", "show", "dev", name).stdout)[0]


def with_raw(ns, fn):
    """fn(a RawLink) run inside ns."""
    async def go():
        raw = RawLink()
        try:
            return fn(raw)
        finally:
            raw.close()
    return run_in_netns(ns.name, go)


def with_links(ns, fn):
    """await fn(an open Links) inside ns."""
    async def go():
        links = Links("pn-")
        await links.open()
        try:
            return await fn(links)
        finally:
            await links.close()
    return run_in_netns(ns.name, go)


def test_the_raw_look_up_reads_what_pyroute2_reads(ns):
    ns.run("ip", "link", "add", "br0", "mtu", "1400", "type", "bridge")
    ns.run("ip", "link", "set", "br0", "alias", "pynet:network/abc", "up")
    ns.run("ip", "link", "add", "vh0", "mtu", "1400", "type", "veth", "peer", "name", "vc0")
    ns.run("ip", "link", "set", "vh0", "master", "br0", "alias", "pynet:endpoint/def", "up")
    ns.run("ip", "link", "add", "mv0", "link", "vc0", "address", "02:42:0a:00:00:09", "type", "macvlan",
           "mode", "bridge")
    ns.run("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", "127.0.0.1")
    names = ["lo", "br0", "vh0", "vc0", "mv0", "vx0"]

    async def both():
        out, ipr, getter = {}, AsyncIPRoute(), RawLink()
        try:
            for name in names:
                msgs = await ipr.link("get", ifname=name)
                out[name] = (info(msgs[0]), getter.get(name))
        finally:
            ipr.close()
            getter.close()
        return out
    found = run_in_netns(ns.name, both)
    for name in names:
        want, got = found[name]
        assert got == want, name
    assert found["vh0"][1].master == found["br0"][1].index and found["vh0"][1].alias == "pynet:endpoint/def"
    assert found["mv0"][1].kind == "macvlan" and found["mv0"][1].mac == "02:42:0a:00:00:09"
    assert found["br0"][1].mtu == 1400 and found["br0"][1].up and not found["vc0"][1].up


def test_a_missing_or_impossible_name_is_none_through_links(ns):
    async def names(links):
        return [await links.get(n) for n in ("nosuch0", "a" * 16, "lo")]
    missing, too_long, lo = with_links(ns, names)
    assert missing is None and too_long is None and lo.name == "lo" and lo.index == 1


def test_a_refusal_other_than_no_such_device_is_an_error(monkeypatch):
    getter = RawLink()

    def refuse(name):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(getter, "get", refuse)

    async def go():
        links = Links("pn-")
        links._nl = getter
        await links.get("x")
    with pytest.raises(KernelError, match="look up x: Operation not permitted"):
        asyncio.run(go())


def test_addresses_name_every_interface_and_leave_out_ipv6_link_local(ns):
    """Links.addresses (the subnet-overlap check) reads one raw address dump: IPv4 names come from the
    label (an alias label `br0:1` is br0's), IPv6 ones by index. Compared with what `ip` shows."""
    ns.run("ip", "link", "add", "br0", "type", "bridge")
    ns.run("ip", "link", "add", "vh0", "type", "veth", "peer", "name", "vc0")
    ns.run("ip", "addr", "add", "10.91.0.1/24", "dev", "br0")
    ns.run("ip", "addr", "add", "10.91.1.1/24", "dev", "br0", "label", "br0:1")
    ns.run("ip", "addr", "add", "fd91::1/64", "dev", "vh0", "nodad")
    ns.run("ip", "link", "set", "vh0", "up")  # up: it gets an IPv6 link-local address too
    want = set()
    for link in json.loads(ns.run("ip", "-j", "addr", "show").stdout):
        for a in link.get("addr_info", []):
            if not (a["family"] == "inet6" and a["local"].startswith("fe80:")):
                want.add((link["ifname"], f'{a["local"]}/{a["prefixlen"]}'))
    assert any(name == "vh0" for name, _ in want) and ("br0", "10.91.1.1/24") in want

    got = with_links(ns, lambda links: links.addresses())
    assert sorted(got) == sorted(want) and len(got) == len(want)


def test_link_changes_written_by_hand_are_what_ip_shows(ns):
    """RawLink.set and .brport (the protocol calls' link changes without pyroute2), read back with
    `ip -d`: master, alias, up and down, group, MTU, MAC, a rename, a rename by name look-up, and a
    bridge port's hairpin and isolated flags, on and off; an unknown link is ENODEV."""
    ns.run("ip", "link", "add", "br0", "type", "bridge")
    ns.run("ip", "link", "add", "vh0", "type", "veth", "peer", "name", "vc0")

    def run(fn):
        return with_raw(ns, fn)

    br = show(ns, "br0")["ifindex"]
    vh = show(ns, "vh0")["ifindex"]
    run(lambda g: g.set(index=vh, master=br, alias="pynet:endpoint/x", up=True, mtu=1400))
    d = show(ns, "vh0")
    assert (d["master"], d["ifalias"], "UP" in d["flags"], d["mtu"]) == ("br0", "pynet:endpoint/x", True, 1400)
    run(lambda g: g.brport(vh, isolated=True, hairpin=True))
    info = show(ns, "vh0")["linkinfo"]["info_slave_data"]
    assert info["hairpin"] is True and info["isolated"] is True
    run(lambda g: g.brport(vh, isolated=False, hairpin=False))
    info = show(ns, "vh0")["linkinfo"]["info_slave_data"]
    assert info["hairpin"] is False and info["isolated"] is False
    run(lambda g: g.set(name="vh0", up=False, group=0x5000002))  # by name: no index
    d = show(ns, "vh0")
    assert "UP" not in d["flags"] and d["group"] == "83886082"  # 0x5000002, as ip -j shows it
    run(lambda g: g.set(index=br, ifname="br9", group=0, mac="02:42:0a:00:00:07"))
    d = show(ns, "br9")
    assert d["address"] == "02:42:0a:00:00:07" and d["group"] == "default"
    with pytest.raises(OSError) as e:
        run(lambda g: g.set(name="nosuch0", up=True))
    assert e.value.errno == errno.ENODEV


def test_links_and_addresses_made_by_hand_are_what_ip_shows(ns):
    """RawLink.create_bridge, .create_veth and .address (CreateNetwork's and CreateEndpoint's requests
    without pyroute2), read back with `ip -d`: no STP and no forward delay, MTU, the veth's peer name,
    MAC and MTU, its master and up flag; addresses of both families added, refused twice, removed."""
    def run(fn):
        return with_raw(ns, fn)

    echo = run(lambda g: g.create_bridge("br0", 1450))
    br = show(ns, "br0")
    data = br["linkinfo"]["info_data"]
    assert br["mtu"] == 1450 and data["stp_state"] == 0 and data["forward_delay"] == 0
    # 6.3 and later echo the new link (its index without a look-up); older kernels: None
    assert echo is None or (echo.index, echo.name, echo.kind) == (br["ifindex"], "br0", "bridge")

    def veth_then_get(g):  # the echo and the ACK both read: the next request on the socket gets its own answer
        return g.create_veth("vh0", "vc0", "02:42:0a:00:00:05", 1450, master=br["ifindex"], up=True), g.get("br0")
    echo, again = run(veth_then_get)
    vh, vc = show(ns, "vh0"), show(ns, "vc0")
    assert echo is None or (echo.index, echo.name, echo.kind) == (vh["ifindex"], "vh0", "veth")
    assert (again.index, again.name) == (br["ifindex"], "br0")
    assert (vh["master"], "UP" in vh["flags"], vh["mtu"]) == ("br0", True, 1450)
    assert (vc["address"], vc["mtu"], "UP" in vc["flags"]) == ("02:42:0a:00:00:05", 1450, False)
    run(lambda g: g.create_veth("vh1", "vc1", "02:42:0a:00:00:06"))
    assert "master" not in show(ns, "vh1") and show(ns, "vc1")["address"] == "02:42:0a:00:00:06"
    with pytest.raises(OSError) as e:
        run(lambda g: g.create_bridge("br0"))
    assert e.value.errno == errno.EEXIST

    run(lambda g: g.address(True, br["ifindex"], "10.92.0.1", 24))
    run(lambda g: g.address(True, br["ifindex"], "fd92::1", 64, 0x02))  # IFA_F_NODAD
    got = ns.run("ip", "addr", "show", "dev", "br0").stdout
    assert "inet 10.92.0.1/24" in got and "inet6 fd92::1/64" in got and "tentative" not in got
    with pytest.raises(OSError) as e:
        run(lambda g: g.address(True, br["ifindex"], "10.92.0.1", 24))
    assert e.value.errno == errno.EEXIST
    run(lambda g: g.address(False, br["ifindex"], "10.92.0.1", 24))
    run(lambda g: g.address(False, br["ifindex"], "fd92::1", 64))
    got = ns.run("ip", "addr", "show", "dev", "br0").stdout
    assert "10.92.0.1" not in got and "fd92::1" not in got
    with pytest.raises(OSError) as e:
        run(lambda g: g.address(False, br["ifindex"], "10.92.0.1", 24))
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_a_veth_is_made_once_and_a_taken_name_is_refused_by_name(ns):
    """Links makes a veth without looking it up first (create; EEXIST: look up): made again, it is the
    same link and not reported as made; a host name held by a bridge, or a peer name that is taken, is
    refused with what is wrong, and nothing is left half made."""
    ns.run("ip", "link", "add", "br0", "type", "bridge")
    ns.run("ip", "link", "add", "pn-busy", "type", "bridge")

    async def twice(links):
        first = await links._veth("pn-h1", "pn-c1", "02:42:0a:00:00:09", 0, "pynet:endpoint/e1")
        await links._set("alias", index=first[0].index, alias="pynet:endpoint/e1")
        second = await links._veth("pn-h1", "pn-c1", "02:42:0a:00:00:09", 0, "pynet:endpoint/e1")
        return first, second
    (made, created), (again, created_again) = with_links(ns, twice)
    assert (created, created_again) == (True, False)
    assert made.index == again.index == show(ns, "pn-h1")["ifindex"] and again.kind == "veth"

    async def host_is_a_bridge(links):
        return await links._veth("pn-busy", "pn-c2", "02:42:0a:00:00:0a", 0, "pynet:endpoint/e2")
    with pytest.raises(KernelError, match="pn-busy exists and is not a veth"):
        with_links(ns, host_is_a_bridge)

    async def peer_taken(links):
        return await links._veth("pn-h3", "pn-busy", "02:42:0a:00:00:0b", 0, "pynet:endpoint/e3")
    with pytest.raises(KernelError, match="create veth pn-h3: its peer's name pn-busy is taken"):
        with_links(ns, peer_taken)
    names = {link["ifname"] for link in json.loads(ns.run("ip", "-j", "link", "show").stdout)}
    assert "pn-h3" not in names and "pn-c2" not in names
