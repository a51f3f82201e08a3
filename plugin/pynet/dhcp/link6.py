"""IPv6 on the LAN for a MAC the host does not own: what dhcp6.py and ra.py send and hear from the parent.

Contract (leaf module; used by dhcp6.py and ra.py, nothing in the core needs it directly):
    link_local(mac) -> IPv6Address          fe80::/64 + modified EUI-64 of mac (RFC 4291 appendix A)
    slaac_address(prefix, mac) -> IPv6Address   the address the kernel forms by SLAAC (addrgenmode eui64)
    async with Tap(ifname, mac) as tap:     a packet socket on the parent acting for `mac`
        await tap.send(frame)               a whole Ethernet frame (built with udp6_frame / icmp6_frame)
        frame = await tap.recv(timeout)     the next UDP-to-546 or Router Advertisement frame, or None
    While a Tap is open it answers Neighbor Solicitations for link_local(mac) (never DAD probes, whose
    source is ::), since the container's interface, which would answer them, may not exist yet.

Why and how:
- The container's macvlan does not exist when its address is needed, so its IPv6 link-local address
  (the EUI-64 of its MAC, which the container's kernel will also form later) is the source of what
  pynet sends for it; frames are built by hand (Ethernet + IPv6 + UDP/ICMPv6, checksums over the
  pseudo-header) and sent from a packet socket on the parent, as the DHCPv4 client does.
- Servers and routers answer that link-local address by unicast, so they first resolve it by
  Neighbor Discovery: the tap answers their NS with an NA (solicited, override, target link-layer
  address = the container's MAC).
- Receiving: a packet socket bound to ETH_P_ALL on the parent is a tap that runs before macvlan's
  rx_handler claims a frame, so it sees unicast to the container's MAC even once the macvlan exists.
  A classic BPF filter keeps untagged IPv6 frames that are UDP to port 546 or ICMPv6 Router
  Advertisements (134) and Neighbor Solicitations (135); frames the host sends itself are ignored.
  Memberships on the socket (dropped with it) make a NIC with hardware filters pass the container's
  unicast MAC, its solicited-node multicast group and all-nodes.
- pyroute2 (0.9.7) has no DHCPv6, ICMPv6 or usable IPv6 header codec (`protocols.ip6msg` does not
  even encode: its field types 'uin16'/'ip6addr' are undefined, struct raises "bad char in struct
  format"), so frames are built here. Its `ext.rawsocket.AsyncRawSocket` (ETH_P_ALL packet socket with
  a BPF program attached after flushing what queued before it) and `ext.bpf` are used as they are.
- Checksums of received frames are not verified: frames captured on the sending host (and over veth)
  carry partial checksums (CHECKSUM_PARTIAL); lengths are checked instead.
- Not done: MLD reports for the solicited-node group (a switch doing MLD snooping without flooding
  unknown groups would not forward a server's NS to the parent; the server then cannot answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from dataclasses import dataclass

from pyroute2.ext.bpf import BPF
from pyroute2.ext.rawsocket import AsyncRawSocket

from ..errors import KernelError

log = logging.getLogger("pynet.link6")
ETH_P_IPV6 = 0x86DD
ALL_NODES, ALL_ROUTERS = ipaddress.IPv6Address("ff02::1"), ipaddress.IPv6Address("ff02::2")
ALL_DHCP = ipaddress.IPv6Address("ff02::1:2")  # All_DHCP_Relay_Agents_and_Servers
UNSPECIFIED = ipaddress.IPv6Address("::")
ICMP6, UDP = 58, 17
RS, RA, NS, NA = 133, 134, 135, 136
CLIENT_PORT, SERVER_PORT = 546, 547
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP = 263, 1
PACKET_MR_MULTICAST, PACKET_MR_UNICAST = 0, 3
SKF_AD_VLAN_TAG_PRESENT = -0x1000 + 48

_ACCEPT, _DROP = 12, 13
_JEQ = BPF.JMP + BPF.JEQ + BPF.K
# (code, jt, jf, k); jt/jf count instructions after the next one.
BPF_DHCP6_RA_NS = [
    [BPF.LD + BPF.B + BPF.ABS, 0, 0, SKF_AD_VLAN_TAG_PRESENT],  # 0  tagged frames belong to a VLAN device
    [_JEQ, 0, _DROP - 2, 0],                                    # 1
    [BPF.LD + BPF.H + BPF.ABS, 0, 0, 12],                       # 2  ethertype
    [_JEQ, 0, _DROP - 4, ETH_P_IPV6],                           # 3
    [BPF.LD + BPF.B + BPF.ABS, 0, 0, 20],                       # 4  IPv6 next header
    [_JEQ, 0, 2, UDP],                                          # 5  UDP -> 6, else -> 8
    [BPF.LD + BPF.H + BPF.ABS, 0, 0, 56],                       # 6  UDP destination port
    [_JEQ, _ACCEPT - 8, _DROP - 8, CLIENT_PORT],                # 7
    [_JEQ, 0, _DROP - 9, ICMP6],                                # 8
    [BPF.LD + BPF.B + BPF.ABS, 0, 0, 54],                       # 9  ICMPv6 type
    [_JEQ, _ACCEPT - 11, 0, RA],                                # 10
    [_JEQ, _ACCEPT - 12, _DROP - 12, NS],                       # 11
    [BPF.RET + BPF.K, 0, 0, 65535],                             # 12 accept
    [BPF.RET + BPF.K, 0, 0, 0],                                 # 13 drop
]


# ---------------------------------------------------------------- addresses

def mac_bytes(mac: str) -> bytes:
    raw = bytes(int(x, 16) for x in mac.split(":"))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return raw


def eui64(mac: str) -> bytes:
    m = mac_bytes(mac)
    return bytes([m[0] ^ 0x02]) + m[1:3] + b"\xff\xfe" + m[3:]


def link_local(mac: str) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui64(mac))


def slaac_address(prefix, mac: str) -> ipaddress.IPv6Address:
    net = ipaddress.IPv6Network(prefix, strict=False)
    if net.prefixlen != 64:
        raise ValueError(f"SLAAC with an EUI-64 interface identifier needs a /64, not {net}")
    return ipaddress.IPv6Address(net.network_address.packed[:8] + eui64(mac))


def multicast_mac(addr: ipaddress.IPv6Address) -> str:
    return "33:33:" + addr.packed[12:].hex(":")


def solicited_node(addr: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + addr.packed[13:])


# ---------------------------------------------------------------- frames

def _csum(data: bytes) -> int:
    return AsyncRawSocket.csum(data)


def _ip6(src, dst, next_header: int, payload: bytes, hop_limit: int) -> bytes:
    return (struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed)


def _pseudo(src, dst, length: int, next_header: int) -> bytes:
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!I3xB", length, next_header))


def _eth(src_mac: str, dst_mac: str) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IPV6)


def udp6_frame(src_mac: str, dst_mac: str, src, dst, sport: int, dport: int, payload: bytes,
               hop_limit: int = 1) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _csum(_pseudo(src, dst, len(udp), UDP) + udp) or 0xFFFF  # 0 means "no checksum", forbidden in IPv6
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return _eth(src_mac, dst_mac) + _ip6(src, dst, UDP, udp, hop_limit) + udp


def icmp6_frame(src_mac: str, dst_mac: str, src, dst, icmp_type: int, body: bytes, hop_limit: int = 255) -> bytes:
    msg = struct.pack("!BBH", icmp_type, 0, 0) + body
    c = _csum(_pseudo(src, dst, len(msg), ICMP6) + msg)
    msg = msg[:2] + struct.pack("!H", c) + msg[4:]
    return _eth(src_mac, dst_mac) + _ip6(src, dst, ICMP6, msg, hop_limit) + msg


@dataclass
class Frame6:
    src_mac: str
    dst_mac: str
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    hop_limit: int
    next_header: int
    payload: bytes  # the UDP datagram or ICMPv6 message, cut to the IPv6 payload length

    @property
    def icmp_type(self) -> int:
        return self.payload[0] if self.next_header == ICMP6 and self.payload else -1

    @property
    def udp(self) -> tuple[int, int, bytes] | None:
        """(source port, destination port, data) of a UDP frame whose lengths add up."""
        if self.next_header != UDP or len(self.payload) < 8:
            return None
        sport, dport, length = struct.unpack("!HHH", self.payload[:6])
        if not 8 <= length <= len(self.payload):
            return None
        return sport, dport, self.payload[8:length]


def parse_frame(raw: bytes) -> Frame6 | None:
    """An untagged Ethernet/IPv6 frame, or None (not IPv6, or lengths that do not add up)."""
    if len(raw) < 54 or raw[12:14] != b"\x86\xdd" or raw[14] >> 4 != 6:
        return None
    plen, nh, hop = struct.unpack("!HBB", raw[18:22])
    if 54 + plen > len(raw):
        return None
    return Frame6(raw[6:12].hex(":"), raw[0:6].hex(":"), ipaddress.IPv6Address(raw[22:38]),
                  ipaddress.IPv6Address(raw[38:54]), hop, nh, raw[54:54 + plen])


def nd_options(data: bytes) -> list[tuple[int, bytes]] | None:
    """ND options (type, whole option bytes), or None when malformed (RFC 4861 4.6: length 0 is invalid)."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data) or data[i + 1] == 0 or i + data[i + 1] * 8 > len(data):
            return None
        n = data[i + 1] * 8
        out.append((data[i], data[i:i + n]))
        i += n
    return out


def answer_ns(frame: Frame6, mac: str, ll: ipaddress.IPv6Address) -> bytes | None:
    """The NA that answers `frame` if it is a valid NS for `ll` from a resolving neighbour (not DAD)."""
    p = frame.payload
    if frame.icmp_type != NS or frame.hop_limit != 255 or len(p) < 24 or p[1] != 0:
        return None
    if ipaddress.IPv6Address(p[8:24]) != ll or frame.src == UNSPECIFIED or frame.src.is_multicast:
        return None
    opts = nd_options(p[24:])
    if opts is None:
        return None
    dst_mac = frame.src_mac
    for kind, opt in opts:
        if kind == 1 and len(opt) >= 8:  # source link-layer address
            dst_mac = opt[2:8].hex(":")
    body = struct.pack("!I", 0x60000000) + ll.packed + bytes([2, 1]) + mac_bytes(mac)  # S|O, target LL addr
    return icmp6_frame(mac, dst_mac, ll, frame.src, NA, body)


def router_solicitation(mac: str) -> bytes:
    """An RS from the container's link-local address, with its MAC as source link-layer address."""
    return icmp6_frame(mac, multicast_mac(ALL_ROUTERS), link_local(mac), ALL_ROUTERS, RS,
                       bytes(4) + bytes([1, 1]) + mac_bytes(mac))


# ---------------------------------------------------------------- the tap

async def open_raw(sock, ifname: str, what: str):
    """Enter one of pyroute2's raw packet sockets; on failure close what it opened and say which."""
    try:
        await sock.__aenter__()
    except OSError as e:
        with contextlib.suppress(Exception):
            if sock._l2addr_watcher is not None:
                await sock.__aexit__()
            else:
                sock.close()
        raise KernelError(f"cannot open a packet socket on {ifname} for {what}: {e.strerror or e}") from None
    return sock


class Tap:
    """A packet socket on `ifname` acting for `mac`: see the module docstring."""

    def __init__(self, ifname: str, mac: str):
        self.ifname, self.mac = ifname, mac.lower()
        self.ll = link_local(self.mac)
        self.sock: AsyncRawSocket | None = None
        self.answered_ns = 0

    async def __aenter__(self) -> "Tap":
        sock = await open_raw(AsyncRawSocket(self.ifname, BPF_DHCP6_RA_NS), self.ifname, "IPv6")
        for kind, addr in ((PACKET_MR_UNICAST, self.mac), (PACKET_MR_MULTICAST, multicast_mac(solicited_node(self.ll))),
                           (PACKET_MR_MULTICAST, multicast_mac(ALL_NODES))):
            try:  # only matters on NICs with hardware filters; best effort
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                                struct.pack("iHH8s", sock.ifindex, kind, 6, mac_bytes(addr)))
            except OSError as e:
                log.debug("no membership", extra={"fields": {"ifname": self.ifname, "addr": addr, "error": str(e)}})
        self.sock = sock
        return self

    async def __aexit__(self, *_exc) -> None:
        if self.sock is not None:
            await self.sock.__aexit__()
            self.sock = None

    async def send(self, frame: bytes) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, frame)
        except OSError as e:
            raise KernelError(f"cannot send on {self.ifname}: {e.strerror or e}") from None

    async def recv(self, timeout: float) -> Frame6 | None:
        """The next frame for dhcp6/ra within `timeout` seconds (None when none came); answers NS meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                raw, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 4096), left)
            except asyncio.TimeoutError:
                return None
            except OSError as e:
                raise KernelError(f"cannot receive on {self.ifname}: {e.strerror or e}") from None
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            frame = parse_frame(raw)
            if frame is None:
                continue
            if frame.icmp_type == NS:
                na = answer_ns(frame, self.mac, self.ll)
                if na is not None:
                    await self.send(na)
                    self.answered_ns += 1
                continue
            return frame
        return None

