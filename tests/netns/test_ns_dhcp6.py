"""client6.Client6 (DHCPv6 IA_NA) and ra.learn (SLAAC) for a container's MAC against dnsmasq on a namespace LAN.

dnsmasq serves DHCPv6 on fd77::/64 (M flag) and advertises fd78::/64 for SLAAC only (A flag). Its lease
file has one line per IPv6 lease: "<expiry> <iaid> <address> <hostname> <client DUID>".
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from dhcp_lan import PARENT, V6_DHCP, V6_SLAAC, DhcpLan
from lib import wait_for
from pynet import dhcp
from pynet.dhcp import client6, codec6, link6, ra

MAC_A, MAC_B = "02:42:0a:4d:00:1a", "02:42:0a:4d:00:1b"


@pytest.fixture
def lan(request):
    lan = DhcpLan("d6")
    try:
        yield lan
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print("--- dnsmasq log ---\n" + lan.dnsmasq_log()[-4000:])
        lan.close()


def client() -> client6.Client6:
    return client6.Client6(retries=2, timeout=1.5)


def v6_lines(lines: list[str], ip: str) -> list[list[str]]:
    return [line.split() for line in lines if f" {ip} " in line]


def duid_text(identity: str) -> str:
    return codec6.duid_for(identity).hex(":")


def router_neigh(lan: DhcpLan, addr: str) -> dict:
    found = json.loads(lan.router.run("ip", "-j", "-6", "neigh", "show", "dev", "r0").stdout)
    return next((n for n in found if n.get("dst") == addr), {})


def test_dhcpv6_lease_renew_rebind_release(lan):
    lan.dnsmasq("--domain=lan.test")
    c = client()
    lease = lan.in_host(lambda: c.acquire(PARENT, MAC_A, "web6", hostname="web6", domain="lan.test", prefix=V6_DHCP))
    assert ipaddress.IPv6Address(lease.ip) in ipaddress.IPv6Network(V6_DHCP) and lease.prefixlen == 64
    assert (lease.duid, lease.iaid) == (codec6.duid_for("web6").hex(), codec6.iaid_for("web6"))
    assert (lease.valid, lease.preferred, lease.t1, lease.t2, lease.notes) == (120, 120, 60, 105, [])
    assert lease.server_ip.startswith("fe80::") and lease.server_duid
    lan.wait_leases(lambda ls: v6_lines(ls, lease.ip), "the IPv6 lease")
    (line,) = v6_lines(lan.lease_lines(), lease.ip)
    assert line[1:] == [str(lease.iaid), lease.ip, "web6", duid_text("web6")]
    # No container interface existed: the router resolved our link-local through the tap's NA (an entry
    # is REACHABLE only after an NA answered the router's own solicitation).
    neigh = router_neigh(lan, str(link6.link_local(MAC_A)))
    assert neigh.get("lladdr") == MAC_A and "REACHABLE" in neigh.get("state", []), neigh

    # The container comes up (its macvlan now claims frames to its MAC and has the link-local itself).
    lan.container(MAC_A)
    time.sleep(1.1)  # the lease file's expiry has 1 s resolution
    renewed = lan.in_host(lambda: c.renew(PARENT, lease))
    assert (renewed.ip, renewed.duid, renewed.renewals) == (lease.ip, lease.duid, 1)
    lan.wait_leases(lambda ls: v6_lines(ls, lease.ip)[0][0] != line[0], "expiry moved by RENEW")
    rebound = lan.in_host(lambda: c.renew(PARENT, renewed, rebind=True))
    assert (rebound.ip, rebound.renewals) == (lease.ip, 2)
    assert client6.next_action(rebound, rebound.acquired) == ("renew", rebound.acquired + rebound.t1)
    assert dhcp.MIN_T1 <= rebound.t1 < rebound.t2 < rebound.valid

    lan.in_host(lambda: c.release(PARENT, rebound))
    lan.wait_leases(lambda ls: not v6_lines(ls, lease.ip), "the IPv6 lease released")
    with pytest.raises(dhcp.DhcpNak, match="NoBinding|no longer leases"):
        lan.in_host(lambda: c.renew(PARENT, rebound))


def test_dhcpv6_reservation_by_duid_follows_the_identity(lan):
    lan.dnsmasq(f"--dhcp-host=id:{duid_text('db')},[fd77::50]")
    c = client()
    a = lan.in_host(lambda: c.acquire(PARENT, MAC_A, "db", prefix=V6_DHCP))
    b = lan.in_host(lambda: c.acquire(PARENT, MAC_B, "db", prefix=V6_DHCP))
    assert a.ip == b.ip == "fd77::50"
    lan.in_host(lambda: c.release(PARENT, b))
    lan.wait_leases(lambda ls: not v6_lines(ls, "fd77::50"), "the reserved lease released")


def test_slaac_address_is_the_one_the_kernel_forms(lan):
    lan.dnsmasq()
    found = lan.in_host(lambda: ra.learn(PARENT, MAC_A, timeout=2.0))
    assert (found.prefix, found.prefixlen) == (V6_SLAAC, 64)
    assert found.address == str(link6.slaac_address(V6_SLAAC, MAC_A))
    assert found.managed and found.router_lifetime > 0 and found.valid > 0 and found.preferred <= found.valid
    out = json.loads(lan.router.run("ip", "-j", "-6", "addr", "show", "dev", "r0").stdout)
    router_ll = [a["local"] for link in out for a in link["addr_info"] if a.get("local", "").startswith("fe80:")]
    assert [found.router] == router_ll

    ctr = lan.container(MAC_A, ipv6_auto=True)  # the container's kernel does SLAAC from the same router
    ctr.run("ip", "link", "set", "eth0", "down")
    ctr.run("ip", "link", "set", "eth0", "up")  # sends its own RS

    def kernel_address() -> str:
        out = json.loads(ctr.run("ip", "-j", "-6", "addr", "show", "dev", "eth0").stdout)
        addrs = [a["local"] for link in out for a in link["addr_info"]  # (filtered entries come as {})
                 if "local" in a and ipaddress.IPv6Address(a["local"]) in ipaddress.IPv6Network(V6_SLAAC)]
        return addrs[0] if addrs else ""

    assert wait_for(kernel_address, timeout=15, what="the kernel's SLAAC address") == found.address
    assert ctr.run("ip", "-6", "route", "show", "default").stdout.split()[2] == found.router


def test_slaac_without_a_router_is_a_clear_error(lan):
    t = time.monotonic()
    with pytest.raises(ra.RaError, match=r"no IPv6 router advertised on up0 within 0.3 s \(2 solicitations\)"):
        lan.in_host(lambda: ra.learn(PARENT, MAC_A, timeout=0.3, tries=2))
    assert time.monotonic() - t < 5
