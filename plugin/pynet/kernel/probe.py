"""Is an address in use on the LAN? An ARP probe (RFC 5227) or a duplicate address detection NS (RFC 4862).

    mac = await Prober().probe(ifname, ip, count=2, wait=0.2)   # "" = nobody answered, else who did

IPv4: ARP requests "who has IP?" with sender IP 0.0.0.0 (an ARP probe: nobody's ARP cache changes),
sender MAC = the parent's own (l2bridge's upstream port may accept nothing else). IPv6: a Neighbor
Solicitation from :: to the address's solicited-node group, as duplicate address detection sends it
(the owner answers with an NA to all-nodes). `count` probes are sent at 0, wait/count, 2*wait/count, ...
and answers are awaited until `wait` seconds; the first answer ends the probe at once.

In use = (RFC 5227 2.1.1, RFC 4862 5.4.3) any ARP packet whose sender IP is the address, or another
host's ARP probe for it; any NA for the address, or another host's DAD NS for it. What pynet itself
sends (PACKET_OUTGOING) is ignored.

What a probe cannot see: the host's own addresses (the host's stack never receives its own frames:
the core checks those first) and macvlan children of the same parent on this host (a lower device's
own transmissions do not reach its macvlans: pynet's endpoints are checked from its state instead).
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import socket
import struct

from ..errors import KernelError

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_MULTICAST = 263, 1, 0
SO_ATTACH_FILTER = 26
ICMP6, NS, NA = 58, 135, 136
# Classic BPF: untagged IPv6 frames carrying ICMPv6 (no extension headers) of type NS or NA.
_BPF_ND = [
    (0x28, 0, 0, 12), (0x15, 0, 6, ETH_P_IPV6),  # ldh ethertype; jeq IPv6 else drop
    (0x30, 0, 0, 20), (0x15, 0, 4, ICMP6),  # ldb next header; jeq ICMPv6 else drop
    (0x30, 0, 0, 54), (0x15, 1, 0, NS), (0x15, 0, 1, NA),  # ldb ICMPv6 type; NS or NA
    (0x06, 0, 0, 65535), (0x06, 0, 0, 0),  # accept; drop
]


def _mac(raw: bytes) -> str:
    return raw.hex(":")


# ---------------------------------------------------------------- IPv4: ARP (pure)

def arp_probe(ip: str, mac: bytes) -> bytes:
    """An ARP probe for `ip` from `mac`: request, sender IP 0.0.0.0, target MAC zero; padded to 60 bytes."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes(4) + bytes(6) + socket.inet_aton(ip)
    return b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP) + arp + bytes(18)


def arp_conflict(frame: bytes, ip: str, mac: bytes) -> str:
    """The MAC that claims (or probes for) `ip` in an ARP frame, or ""."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return ""
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4) or op not in (1, 2):
        return ""
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if sha == mac:
        return ""
    target = socket.inet_aton(ip)
    if spa == target or (op == 1 and spa == bytes(4) and tpa == target):
        return _mac(sha)
    return ""


# ---------------------------------------------------------------- IPv6: DAD (pure)

def _solicited(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + ip.packed[13:])


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def dad_probe(ip: str, mac: bytes) -> bytes:
    """A DAD Neighbor Solicitation for `ip`: from ::, to its solicited-node group, no options."""
    target = ipaddress.IPv6Address(ip)
    dst = _solicited(target)
    msg = struct.pack("!BBHI", NS, 0, 0, 0) + target.packed
    pseudo = bytes(16) + dst.packed + struct.pack("!I3xB", len(msg), ICMP6)
    msg = msg[:2] + struct.pack("!H", _csum(pseudo + msg)) + msg[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(msg), ICMP6, 255) + bytes(16) + dst.packed
    return b"\x33\x33" + dst.packed[12:] + mac + struct.pack("!H", ETH_P_IPV6) + ip6 + msg


def nd_conflict(frame: bytes, ip: str, mac: bytes) -> str:
    """The MAC that owns (NA) or probes for (DAD NS) `ip` in an IPv6 frame, or ""."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != ICMP6 or frame[21] != 255:
        return ""
    icmp = frame[54:]
    if icmp[0] not in (NS, NA) or icmp[1] != 0 or icmp[8:24] != ipaddress.IPv6Address(ip).packed:
        return ""
    src_mac = frame[6:12]
    if src_mac == mac:
        return ""
    if icmp[0] == NS and frame[22:38] != bytes(16):
        return ""  # an ordinary solicitation (someone resolving the address) says nothing about its owner
    opts, i = icmp[24:], 0
    while i + 8 <= len(opts) and opts[i + 1]:
        if opts[i] == 2:  # target link-layer address: the owner's MAC (the sender may be a proxy)
            return _mac(opts[i + 2:i + 8])
        i += opts[i + 1] * 8
    return _mac(src_mac)


# ---------------------------------------------------------------- the socket

class Prober:
    """Implements kernel/api.ProbeAPI. One packet socket per probe, closed at once (a few ms to open)."""

    async def probe(self, ifname: str, ip: str, count: int = 2, wait: float = 0.2) -> str:
        v6 = ipaddress.ip_address(ip).version == 6
        proto = ETH_P_IPV6 if v6 else ETH_P_ARP
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
        except OSError as e:
            raise KernelError(f"cannot open a packet socket to probe {ip}: {e.strerror or e}") from None
        with sock:
            try:
                sock.bind((ifname, proto))
                mac = sock.getsockname()[4]
                if v6:
                    _v6_socket(sock)
                sock.setblocking(False)
            except OSError as e:
                raise KernelError(f"cannot probe {ip} on {ifname}: {e.strerror or e}") from None
            frame = dad_probe(ip, mac) if v6 else arp_probe(ip, mac)
            check = nd_conflict if v6 else arp_conflict
            return await _run(sock, ifname, ip, frame, lambda f: check(f, ip, mac), max(1, count), wait)


def _v6_socket(sock: socket.socket) -> None:
    """Only NS/NA frames reach the socket; all-nodes (where an owner's NA goes) passes a NIC's filter."""
    prog = b"".join(struct.pack("HBBI", *ins) for ins in _BPF_ND)
    buf = ctypes.create_string_buffer(prog, len(prog))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}: the kernel copies the program.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(_BPF_ND), ctypes.addressof(buf)))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                        struct.pack("iHH8s", socket.if_nametoindex(sock.getsockname()[0]), PACKET_MR_MULTICAST, 6,
                                    b"\x33\x33\x00\x00\x00\x01"))
    except OSError:
        pass  # only matters on NICs that filter multicast in hardware


async def _run(sock, ifname: str, ip: str, frame: bytes, conflict, count: int, wait: float) -> str:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sends = [start + i * wait / count for i in range(count)]
    end = start + wait
    # Frames queued before the first probe went out say nothing about this probe: drop them.
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            break
    while True:
        now = loop.time()
        while sends and sends[0] <= now:
            sends.pop(0)
            try:
                await loop.sock_sendall(sock, frame)
            except OSError as e:
                raise KernelError(f"cannot probe {ip} on {ifname}: {e.strerror or e}") from None
        until = min([end] + sends[:1])
        if now >= end:
            return ""
        try:
            raw, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 4096), until - now)
        except asyncio.TimeoutError:
            continue
        except OSError as e:
            raise KernelError(f"cannot probe {ip} on {ifname}: {e.strerror or e}") from None
        if addr[2] == PACKET_OUTGOING:
            continue
        who = conflict(raw)
        if who:
            return who
