"""dhcp.Client (DHCPv4 for a container's MAC) against dnsmasq and a hostile server on a namespace LAN.

The client runs in the "host" namespace on its parent up0, as the daemon would; containers are macvlans
of up0 with their own MAC in their own namespace, as transparent mode makes them (dhcp_lan.py).
dnsmasq's lease file lines read "<expiry> <mac> <ip> <hostname> <client-id>".
"""

from __future__ import annotations

import struct
import time

import pytest

from dhcp_lan import DHCP_RANGE, PARENT, SUBNET, DhcpLan
from pynet import dhcp
from pynet.errors import KernelError

MAC_A, MAC_B, MAC_C = "02:42:0a:4d:00:0a", "02:42:0a:4d:00:0b", "02:42:0a:4d:00:0c"
CID_HEX = ":".join(f"{b:02x}" for b in dhcp.client_id_for("web-reserved"))


@pytest.fixture
def lan(request):
    lan = DhcpLan("d4")
    try:
        yield lan
    finally:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print("--- dnsmasq log ---\n" + lan.dnsmasq_log()[-4000:])
        lan.close()


def client() -> dhcp.Client:
    return dhcp.Client(retries=2, timeout=1.5)


def line_for(lines: list[str], mac: str) -> list[str]:
    return [line.split() for line in lines if f" {mac} " in line]


def test_reservation_by_client_id_follows_the_identity_to_a_new_mac(lan):
    lan.dnsmasq("--dhcp-host=id:web-reserved,10.77.0.50")
    c = client()
    first = lan.in_host(lambda: c.acquire(PARENT, MAC_A, hostname="web1", subnet=SUBNET, identity="web-reserved"))
    assert (first.ip, first.prefixlen, first.server, first.router) == ("10.77.0.50", 24, "10.77.0.1", "10.77.0.1")
    assert (first.lease_time, first.t1, first.t2, first.notes) == (120, 60, 105, [])  # dnsmasq's 2m lease
    assert first.client_id == CID_HEX.replace(":", "")
    lan.wait_leases(lambda ls: line_for(ls, MAC_A), "lease of MAC A")
    (line,) = line_for(lan.lease_lines(), MAC_A)
    assert line[2:] == ["10.77.0.50", "web1", CID_HEX]  # the hostname, and the client-id the server keyed on

    # The container is re-created with another MAC (no release: pynet may have crashed): same address.
    second = lan.in_host(lambda: c.acquire(PARENT, MAC_B, hostname="web1", subnet=SUBNET, identity="web-reserved"))
    assert second.ip == "10.77.0.50"
    lan.wait_leases(lambda ls: line_for(ls, MAC_B), "lease moved to MAC B")
    (line,) = line_for(lan.lease_lines(), MAC_B)
    assert line[2:] == ["10.77.0.50", "web1", CID_HEX] and not line_for(lan.lease_lines(), MAC_A)

    # Without an identity the client-id is the MAC (legacy): a dynamic address from the range.
    other = lan.in_host(lambda: c.acquire(PARENT, MAC_C, subnet=SUBNET))
    lo, hi = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
    assert lo <= int(other.ip.rsplit(".", 1)[1]) <= hi
    lan.wait_leases(lambda ls: line_for(ls, MAC_C), "lease of MAC C")
    (line,) = line_for(lan.lease_lines(), MAC_C)
    assert line[4] == "01:" + MAC_C

    lan.in_host(lambda: c.release(PARENT, second))
    lan.wait_leases(lambda ls: not line_for(ls, MAC_B), "lease of MAC B released")


def test_renew_rebind_and_release_for_a_running_container(lan):
    """Renewal ACKs are unicast to the container's address, i.e. its MAC, whose macvlan exists by then:
    the tap on the parent still sees them. The FQDN (option 81) names the host in the lease."""
    lan.dnsmasq("--domain=lan.test")
    c = client()
    lease = lan.in_host(lambda: c.acquire(PARENT, MAC_A, hostname="web2", domain="lan.test", subnet=SUBNET,
                                          identity="web2"))
    lan.wait_leases(lambda ls: any(line[3] == "web2" for line in line_for(ls, MAC_A)), "FQDN's host name in the lease")
    lan.container(MAC_A, ipv4=f"{lease.ip}/24")
    before = line_for(lan.lease_lines(), MAC_A)[0]
    time.sleep(1.1)  # the lease file's expiry has 1 s resolution
    renewed = lan.in_host(lambda: c.renew(PARENT, lease))
    assert (renewed.ip, renewed.renewals, renewed.client_id) == (lease.ip, 1, lease.client_id)
    assert renewed.acquired > lease.acquired
    after = lan.wait_leases(lambda ls: line_for(ls, MAC_A)[0][0] != before[0], "expiry moved by the renewal")
    renewed.hostname = "web2b"  # the core announces a new name with a renewal
    rebound = lan.in_host(lambda: c.renew(PARENT, renewed, rebind=True))
    assert rebound.renewals == 2
    lan.wait_leases(lambda ls: line_for(ls, MAC_A)[0][3] == "web2b", f"new name in the lease (was {after})")
    lan.in_host(lambda: c.release(PARENT, rebound))
    lan.wait_leases(lambda ls: not line_for(ls, MAC_A), "lease released")


def u32(v: int) -> str:
    return struct.pack("!I", v & 0xFFFFFFFF).hex()


def test_hostile_server_gives_clamped_sane_leases_or_clear_errors(lan):
    c = dhcp.Client(retries=2, timeout=1.0)

    def run(scenario: dict, **kw):
        p = lan.fake_server(scenario)
        try:
            return lan.in_host(lambda: c.acquire(PARENT, MAC_A, subnet=SUBNET, identity="victim", **kw))
        finally:
            p.kill()
            p.wait(10)

    zero = run({"options": [[51, u32(0)], [58, u32(0)], [59, u32(0)], [1, "ff00ff00"], [3, "0a4d0001"]]})
    assert (zero.ip, zero.prefixlen, zero.lease_time, zero.t1, zero.t2) == ("10.77.0.60", 24, 60, 30, 52)
    assert zero.router == "10.77.0.1" and any("255.0.255.0 ignored" in n for n in zero.notes)
    assert dhcp.next_action(zero, zero.acquired) == ("renew", zero.acquired + 30)  # no renewal storm

    forever = run({"options": [[51, u32(0xFFFFFFFF)], [58, u32(5000)], [59, u32(10)], [1, "00000000"]]})
    assert (forever.prefixlen, forever.lease_time) == (24, dhcp.MAX_LEASE)
    assert dhcp.MIN_T1 <= forever.t1 < forever.t2 < forever.lease_time

    with pytest.raises(dhcp.DhcpError, match=r"unusable address: 0\.0\.0\.0 is not a host address"):
        run({"yiaddr": "0.0.0.0", "options": [[51, u32(600)]]})
    with pytest.raises(dhcp.DhcpError, match=r"10\.99\.0\.5 is outside the network's subnet 10\.77\.0\.0/24"):
        run({"yiaddr": "10.99.0.5", "options": [[51, u32(600)]]})
    with pytest.raises(dhcp.DhcpError, match=r"option 51 is malformed"):
        run({"options": [[51, "0000"]]})
    with pytest.raises(dhcp.DhcpNak, match=r"refused the offered address 10\.77\.0\.60 \(NAK"):
        run({"nak": True, "options": [[51, u32(600)]]})


def test_no_server_and_a_missing_parent_are_clear_errors(lan):
    c = dhcp.Client(retries=1, timeout=0.3)
    with pytest.raises(dhcp.DhcpError, match=r"no DHCP server answered on up0 \(1 tries"):
        lan.in_host(lambda: c.acquire(PARENT, MAC_A, identity="x"))
    with pytest.raises(KernelError, match="cannot open a packet socket on nosuch0 for DHCP"):
        lan.in_host(lambda: c.acquire("nosuch0", MAC_A, identity="x"))
