"""Gratuitous ARP: tell a LAN that an IPv4 address now lives behind a MAC.

Sent through an AF_PACKET socket on the LAN interface, as an ARP request
whose sender and target address are both the announced one (RFC 5227 style),
so switches and neighbours update their tables at once.
"""

from __future__ import annotations

import socket
import struct

from ..errors import KernelError

ETH_P_ARP = 0x0806


def garp_frame(ip: str, mac: str) -> bytes:
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = socket.inet_aton(ip)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr + b"\x00" * 6 + addr
    return b"\xff" * 6 + hw + struct.pack("!H", ETH_P_ARP) + arp + b"\x00" * 18  # padded to 60 bytes


def send_garp(ifname: str, ip: str, mac: str, count: int = 1) -> None:
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
            s.bind((ifname, ETH_P_ARP))
            for _ in range(count):
                s.send(garp_frame(ip, mac))
    except OSError as e:
        raise KernelError(f"cannot announce {ip} on {ifname}: {e.strerror}") from None


def send_unsolicited_na(ifname: str, ifindex: int, ip6: str, mac: str, count: int = 1) -> None:
    """RFC 4861 unsolicited neighbour advertisement (Override set) to all-nodes, from ifname.

    A raw ICMPv6 socket: the kernel picks the link-local source and fills the checksum.
    """
    msg = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, ip6) \
        + bytes([2, 1]) + bytes.fromhex(mac.replace(":", ""))
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            for _ in range(count):
                s.sendto(msg, ("ff02::1", 0, 0, ifindex))
    except OSError as e:
        raise KernelError(f"cannot announce {ip6} on {ifname}: {e.strerror}") from None
