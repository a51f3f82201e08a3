"""pynet.dhcp.link6 (EUI-64, frames, answering Neighbor Solicitations) and ra (Router Advertisements, SLAAC), no root."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynet.dhcp import link6, ra

MAC = "02:42:0a:4d:00:1a"
LL = ipaddress.IPv6Address("fe80::42:aff:fe4d:1a")
ROUTER_MAC = "52:54:00:aa:bb:cc"
ROUTER_LL = ipaddress.IPv6Address("fe80::5054:ff:feaa:bbcc")


def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


def icmp_ok(frame: bytes) -> bool:
    plen = struct.unpack("!H", frame[18:20])[0]
    return inet_csum(frame[22:54] + struct.pack("!I3xB", plen, 58) + frame[54:54 + plen]) == 0


# ---------------------------------------------------------------- addresses

def test_eui64_link_local_and_slaac_addresses():
    assert link6.link_local("52:54:00:12:34:56") == ipaddress.IPv6Address("fe80::5054:ff:fe12:3456")  # RFC 4291 A
    assert link6.link_local(MAC) == LL  # 0x02 (locally administered) flips to 0x00
    assert link6.slaac_address("fd78::/64", MAC) == ipaddress.IPv6Address("fd78::42:aff:fe4d:1a")
    assert link6.slaac_address("2001:db8:1:2::5/64", MAC) == ipaddress.IPv6Address("2001:db8:1:2:42:aff:fe4d:1a")
    with pytest.raises(ValueError, match="needs a /64"):
        link6.slaac_address("fd78::/56", MAC)
    assert link6.solicited_node(LL) == ipaddress.IPv6Address("ff02::1:ff4d:1a")
    assert link6.multicast_mac(link6.solicited_node(LL)) == "33:33:ff:4d:00:1a"


# ---------------------------------------------------------------- neighbour solicitations

def ns_frame(target, src=ROUTER_LL, hop=255, sll: str | None = ROUTER_MAC, extra: bytes = b"",
             code: int = 0) -> link6.Frame6:
    body = struct.pack("!BBHI", 135, code, 0, 0) + ipaddress.IPv6Address(target).packed
    if sll:
        body += bytes([1, 1]) + bytes.fromhex(sll.replace(":", ""))
    body += extra
    return link6.Frame6("66:66:66:66:66:66", "33:33:ff:4d:00:1a", ipaddress.IPv6Address(src),
                        link6.solicited_node(LL), hop, 58, body)


def test_answer_ns_for_our_link_local():
    na = link6.answer_ns(ns_frame(LL), MAC, LL)
    assert na is not None and icmp_ok(na)
    assert na[:6].hex(":") == ROUTER_MAC and na[6:12].hex(":") == MAC  # to the solicitor's link-layer address
    f = link6.parse_frame(na)
    assert (f.src, f.dst, f.hop_limit, f.next_header) == (LL, ROUTER_LL, 255, 58)
    assert f.payload[0] == 136 and f.payload[4] == 0x60  # NA, solicited + override, not a router
    assert f.payload[8:24] == LL.packed and f.payload[24:32] == bytes([2, 1]) + bytes.fromhex(MAC.replace(":", ""))
    no_sll = link6.parse_frame(link6.answer_ns(ns_frame(LL, sll=None), MAC, LL))
    assert no_sll.dst_mac == "66:66:66:66:66:66"  # else to the frame's source


@pytest.mark.parametrize("frame", [
    ns_frame("fe80::1"),                                   # someone else's address
    ns_frame(LL, src="::"),                                # DAD probe: answering would break the container's DAD
    ns_frame(LL, hop=64),                                  # not from the link
    ns_frame(LL, code=1),
    ns_frame(LL, extra=bytes([14, 0])),                    # option of length 0
    ns_frame(LL, extra=bytes([14, 3, 0])),                 # option past the end
])
def test_answer_ns_refuses(frame):
    assert link6.answer_ns(frame, MAC, LL) is None


def test_router_solicitation_frame():
    f = link6.router_solicitation(MAC)
    assert icmp_ok(f) and f[:6].hex(":") == "33:33:00:00:00:02" and f[6:12].hex(":") == MAC
    p = link6.parse_frame(f)
    assert (p.src, p.dst, p.hop_limit, p.payload[0]) == (LL, ipaddress.IPv6Address("ff02::2"), 255, 133)
    assert p.payload[8:16] == bytes([1, 1]) + bytes.fromhex(MAC.replace(":", ""))


def test_parse_frame_and_udp_lengths():
    f = link6.udp6_frame(MAC, ROUTER_MAC, LL, ROUTER_LL, 546, 547, b"hello")
    p = link6.parse_frame(f)
    assert p.udp == (546, 547, b"hello")
    assert link6.parse_frame(f[:53]) is None and link6.parse_frame(f[:-1]) is None  # shorter than its header says
    assert link6.parse_frame(f[:12] + b"\x08\x00" + f[14:]) is None
    bad_len = bytearray(f)
    bad_len[58:60] = struct.pack("!H", 200)
    assert link6.parse_frame(bytes(bad_len)).udp is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_frame_never_raises(tail):
    f = link6.parse_frame(b"\x33\x33\x00\x00\x00\x01" + bytes(6) + b"\x86\xdd" + tail)
    if f is not None:
        f.udp, f.icmp_type  # noqa: B018
        link6.answer_ns(f, MAC, LL)
        try:
            ra.parse_ra(f)
        except ra.RaError:
            pass


# ---------------------------------------------------------------- router advertisements

def prefix_opt(prefix: str, a: bool = True, valid: int = 1800, pref: int = 900, plen: int | None = None) -> bytes:
    net = ipaddress.IPv6Network(prefix)
    flags = 0x80 | (0x40 if a else 0)
    plen = net.prefixlen if plen is None else plen
    return struct.pack("!BBBBIII", 3, 4, plen, flags, valid, pref, 0) + net.network_address.packed


def ra_frame(*opts: bytes, src=ROUTER_LL, hop=255, flags=0, lifetime=1800, code=0) -> link6.Frame6:
    body = struct.pack("!BBHBBHII", 134, code, 0, 64, flags, lifetime, 0, 0) + b"".join(opts)
    return link6.Frame6(ROUTER_MAC, "33:33:00:00:00:01", ipaddress.IPv6Address(src), ipaddress.IPv6Address("ff02::1"),
                        hop, 58, body)


SLL = bytes([1, 1]) + bytes.fromhex(ROUTER_MAC.replace(":", ""))
MTU = struct.pack("!BBHI", 5, 1, 0, 1400)


def test_parse_ra_and_slaac_from():
    advert = ra.parse_ra(ra_frame(SLL, MTU, prefix_opt("fd77::/64", a=False), prefix_opt("fd78::/64"), flags=0xC0))
    assert (advert.router, advert.router_mac, advert.managed, advert.other, advert.mtu) == (
        str(ROUTER_LL), ROUTER_MAC, True, True, 1400)
    assert [(p.prefix, p.autonomous) for p in advert.prefixes] == [("fd77::/64", False), ("fd78::/64", True)]
    s = ra.slaac_from(advert, MAC, now=100.0)
    assert (s.address, s.prefix, s.valid, s.preferred, s.router, s.router_lifetime) == (
        "fd78::42:aff:fe4d:1a", "fd78::/64", 1800, 900, str(ROUTER_LL), 1800)
    assert s.expires == 1900 and not s.expired(1899) and s.expired(1900)
    forever = ra.slaac_from(ra.parse_ra(ra_frame(prefix_opt("fd78::/64", valid=ra.INFINITY, pref=ra.INFINITY))), MAC)
    assert forever.expires == float("inf")


@pytest.mark.parametrize("opt", [
    prefix_opt("fd78::/64", a=False),             # on-link only (DHCPv6 network)
    prefix_opt("fd78::/56"),                       # EUI-64 needs a /64
    prefix_opt("fe80::/64"),                       # link-local prefix
    prefix_opt("fd78::/64", valid=0, pref=0),      # withdrawn
    prefix_opt("fd78::/64", valid=100, pref=200),  # preferred > valid: ignored (RFC 4862 5.5.3 c)
])
def test_prefixes_not_for_slaac(opt):
    assert ra.slaac_from(ra.parse_ra(ra_frame(opt)), MAC) is None


@pytest.mark.parametrize("frame, why", [
    (ra_frame(hop=64), "hop limit 64"),
    (ra_frame(src="fd77::1"), "not a link-local address"),
    (ra_frame(code=1), "malformed RA"),
    (ra_frame(bytes([3, 0]) + bytes(6)), "option has length 0"),
    (ra_frame(prefix_opt("fd78::/64")[:24]), "runs past the end"),
    (ra_frame(bytes([3, 2]) + bytes(14)), "prefix option of 16 bytes"),
    (ra_frame(prefix_opt("fd78::/64", plen=200)), "prefix length 200"),
])
def test_hostile_ras_are_refused(frame, why):
    with pytest.raises(ra.RaError, match=why):
        ra.parse_ra(frame)


class FakeTap:
    def __init__(self, answer):
        self.answer, self.sent = answer, []
        self.q: asyncio.Queue = asyncio.Queue()

    def __call__(self, ifname, mac):
        self.ifname, self.mac = ifname, mac
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        return None

    async def send(self, frame):
        self.sent.append(link6.parse_frame(frame))
        for f in self.answer(len(self.sent)):
            self.q.put_nowait(f)

    async def recv(self, timeout):
        try:
            return await asyncio.wait_for(self.q.get(), timeout)
        except asyncio.TimeoutError:
            return None


async def test_learn_solicits_and_skips_what_is_not_for_slaac():
    tap = FakeTap(lambda n: [ra_frame(hop=1), ra_frame(prefix_opt("fd77::/64", a=False)),
                             link6.parse_frame(link6.udp6_frame(ROUTER_MAC, MAC, ROUTER_LL, LL, 547, 546, b"x")),
                             ra_frame(SLL, prefix_opt("fd78::/64"))])
    s = await ra.learn("eth0", MAC.upper(), timeout=0.5, _tap=tap)
    assert s.address == "fd78::42:aff:fe4d:1a" and s.mac == MAC and tap.mac == MAC
    (rs,) = tap.sent
    assert rs.payload[0] == 133 and rs.src == LL


async def test_learn_reports_what_the_router_offered():
    tap = FakeTap(lambda n: [ra_frame(prefix_opt("fd77::/64", a=False), flags=0x80)])
    with pytest.raises(ra.RaError, match=r"no prefix for SLAAC on eth0: RA from fe80::5054:ff:feaa:bbcc \(M=1 O=0\): "
                                         r"fd77::/64 L valid 1800 preferred 900"):
        await ra.learn("eth0", MAC, timeout=0.05, tries=2, _tap=tap)
    assert len(tap.sent) == 2


async def test_learn_listen_only_sends_nothing():
    tap = FakeTap(lambda n: [])
    tap.q.put_nowait(ra_frame(prefix_opt("fd78::/64")))
    assert (await ra.learn("eth0", MAC, timeout=0.2, solicit=False, _tap=tap)).prefix == "fd78::/64"
    assert tap.sent == []
    with pytest.raises(ra.RaError, match=r"no IPv6 router advertised on eth0 within 0.05 s;"):
        await ra.learn("eth0", MAC, timeout=0.05, solicit=False, _tap=tap)
