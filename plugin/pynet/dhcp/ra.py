"""SLAAC for a container's MAC: learn the LAN router's prefix from the parent and compute the address.

Contract for the core (transparent mode, IPv6 by SLAAC)
-------------------------------------------------------
    s = await ra.learn(parent, mac, timeout=3.0, solicit=True, tries=3) -> ra.Slaac
        s.address ("fd00::42:aff:fe00:5"), s.prefix ("fd00::/64"), s.prefixlen (64), s.valid, s.preferred
        (seconds, ra.INFINITY = never), s.router (the router's link-local, for GatewayIPv6), s.router_mac,
        s.router_lifetime (0: not a default router), s.managed / s.other (M/O flags: is DHCPv6 expected),
        s.mtu, s.acquired; s.expires, s.expired(now)
    ra.slaac_from(advert, mac) -> Slaac | None           pure: the address from a parsed RA
    ra.parse_ra(frame) -> RouterAdvert                   pure: RaError when malformed
    link6.slaac_address(prefix, mac)                     pure: EUI-64 of mac in a /64

- learn() sends a Router Solicitation from the container's link-local address (EUI-64 of `mac`, with
  `mac` as source link-layer address) and waits up to `timeout` for an RA offering a prefix to
  autoconfigure (A flag, /64, valid lifetime > 0, preferred <= valid); it sends up to `tries` RS
  (solicit=False only listens for the router's periodic RAs). Routers may answer an RS by unicast to
  that link-local address: the link6.Tap answers their Neighbor Solicitation for it. An RA with no
  usable prefix (e.g. only M=1 for DHCPv6) is remembered: the RaError then says what the router offered.
- The address is what the container's kernel forms itself (addr_gen_mode eui64, the default) from the
  same RA, once its macvlan is up with accept_ra. Lifetimes are the router's (not clamped: they are
  advisory and the kernel follows the RA), except that a prefix whose preferred lifetime exceeds its
  valid lifetime, or a link-local prefix, is ignored (RFC 4862 5.5.3). Persist `asdict(s)` if needed.
- Validated (RFC 4861 6.1.2): IP hop limit 255, ICMP code 0, source link-local, at least 16 bytes,
  no option of length 0; otherwise RaError (and learn() keeps listening).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from dataclasses import dataclass, field

from . import link6
from ..errors import PynetError

INFINITY = 0xFFFFFFFF


class RaError(PynetError):
    pass


@dataclass
class PrefixInfo:
    prefix: str  # "fd00::/64"
    on_link: bool
    autonomous: bool
    valid: int
    preferred: int


@dataclass
class RouterAdvert:
    router: str  # link-local source address
    router_mac: str
    hop_limit: int
    managed: bool
    other: bool
    router_lifetime: int
    reachable_ms: int
    retrans_ms: int
    prefixes: list = field(default_factory=list)
    mtu: int = 0
    source_mac: str = ""  # from the source link-layer address option


@dataclass
class Slaac:
    mac: str
    address: str
    prefix: str
    prefixlen: int
    valid: int
    preferred: int
    router: str
    router_mac: str
    router_lifetime: int
    managed: bool
    other: bool
    mtu: int
    acquired: float

    @property
    def expires(self) -> float:
        return float("inf") if self.valid == INFINITY else self.acquired + self.valid

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires


def parse_ra(frame: link6.Frame6) -> RouterAdvert:
    p = frame.payload
    if frame.next_header != link6.ICMP6 or not p or p[0] != link6.RA:
        raise RaError("not a Router Advertisement")
    if frame.hop_limit != 255:
        raise RaError(f"RA from {frame.src} with hop limit {frame.hop_limit}, not 255: ignored")
    if not frame.src.is_link_local:
        raise RaError(f"RA from {frame.src}, not a link-local address: ignored")
    if len(p) < 16 or p[1] != 0:
        raise RaError(f"malformed RA from {frame.src} ({len(p)} bytes, code {p[1]})")
    hop, flags, lifetime, reachable, retrans = struct.unpack("!BBHII", p[4:16])
    opts = link6.nd_options(p[16:])
    if opts is None:
        raise RaError(f"malformed RA from {frame.src}: an option has length 0 or runs past the end")
    ra = RouterAdvert(str(frame.src), frame.src_mac, hop, bool(flags & 0x80), bool(flags & 0x40), lifetime,
                      reachable, retrans)
    for kind, opt in opts:
        if kind == 1 and len(opt) >= 8:
            ra.source_mac = opt[2:8].hex(":")
        elif kind == 5 and len(opt) >= 8:
            ra.mtu = struct.unpack("!I", opt[4:8])[0]
        elif kind == 3:
            if len(opt) != 32:
                raise RaError(f"malformed RA from {frame.src}: prefix option of {len(opt)} bytes")
            plen, pflags, valid, preferred = struct.unpack("!BBII", opt[2:12])
            if plen > 128:
                raise RaError(f"malformed RA from {frame.src}: prefix length {plen}")
            net = ipaddress.IPv6Network((opt[16:32], plen), strict=False)
            ra.prefixes.append(PrefixInfo(str(net), bool(pflags & 0x80), bool(pflags & 0x40), valid, preferred))
    return ra


def usable_prefixes(ra: RouterAdvert) -> list[PrefixInfo]:
    out = []
    for p in ra.prefixes:
        net = ipaddress.IPv6Network(p.prefix)
        if (p.autonomous and net.prefixlen == 64 and p.valid > 0 and p.preferred <= p.valid
                and not net.is_link_local and not net.is_multicast):
            out.append(p)
    return out


def slaac_from(ra: RouterAdvert, mac: str, now: float | None = None) -> Slaac | None:
    """The SLAAC address of `mac` from the first prefix of `ra` that allows autoconfiguration, or None."""
    usable = usable_prefixes(ra)
    if not usable:
        return None
    p = usable[0]
    return Slaac(mac=mac.lower(), address=str(link6.slaac_address(p.prefix, mac)), prefix=p.prefix, prefixlen=64,
                 valid=p.valid, preferred=p.preferred, router=ra.router, router_mac=ra.source_mac or ra.router_mac,
                 router_lifetime=ra.router_lifetime, managed=ra.managed, other=ra.other, mtu=ra.mtu,
                 acquired=time.time() if now is None else now)


def _describe(ra: RouterAdvert) -> str:
    prefixes = ", ".join(f"{p.prefix}{' A' if p.autonomous else ''}{' L' if p.on_link else ''} "
                         f"valid {p.valid} preferred {p.preferred}" for p in ra.prefixes) or "no prefix"
    return f"{ra.router} (M={int(ra.managed)} O={int(ra.other)}): {prefixes}"


async def learn(ifname: str, mac: str, timeout: float = 3.0, solicit: bool = True, tries: int = 3,
                _tap=link6.Tap) -> Slaac:
    """Solicit (or wait for) a Router Advertisement on `ifname` and return `mac`'s SLAAC address."""
    mac = mac.lower()
    seen: list[str] = []
    async with _tap(ifname, mac) as tap:
        for _ in range(tries if solicit else 1):
            if solicit:
                await tap.send(link6.router_solicitation(mac))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                frame = await tap.recv(left)
                if frame is None:
                    break
                if frame.icmp_type != link6.RA:
                    continue
                try:
                    advert = parse_ra(frame)
                except RaError as e:
                    seen.append(str(e))
                    continue
                found = slaac_from(advert, mac)
                if found:
                    return found
                seen.append(f"RA from {_describe(advert)}")
    if seen:
        raise RaError(f"no prefix for SLAAC on {ifname}: " + "; ".join(dict.fromkeys(seen)))
    sent = f" ({tries} solicitations)" if solicit else ""
    raise RaError(f"no IPv6 router advertised on {ifname} within {timeout:g} s{sent}; "
                  f"is the LAN's router reachable from -o parent={ifname}?")
