"""kernel/probe.py's frames (ARP probe, DAD NS) and what counts as an answer, without sockets."""

from __future__ import annotations

import ipaddress
import socket
import struct

from pynet.kernel import probe

OURS = bytes.fromhex("02aa00000001")
THEIRS = bytes.fromhex("525400123456")


def arp(op: int, sha: bytes, spa: str, tpa: str, tha: bytes = bytes(6)) -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + socket.inet_aton(spa) + tha + socket.inet_aton(tpa)
    return b"\xff" * 6 + sha + b"\x08\x06" + body


def test_arp_probe_is_rfc_5227():
    f = probe.arp_probe("192.168.1.20", OURS)
    assert len(f) == 60 and f[:6] == b"\xff" * 6 and f[6:12] == OURS and f[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", f[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert f[22:28] == OURS and f[28:32] == bytes(4)  # sender IP 0.0.0.0: nobody's ARP cache changes
    assert f[32:38] == bytes(6) and f[38:42] == socket.inet_aton("192.168.1.20")


def test_arp_answers_and_non_answers():
    ip = "192.168.1.20"
    assert probe.arp_conflict(arp(2, THEIRS, ip, "0.0.0.0", OURS), ip, OURS) == "52:54:00:12:34:56"  # the reply
    assert probe.arp_conflict(arp(1, THEIRS, ip, ip), ip, OURS) == "52:54:00:12:34:56"  # its gratuitous ARP
    assert probe.arp_conflict(arp(1, THEIRS, "0.0.0.0", ip), ip, OURS) == "52:54:00:12:34:56"  # it probes too
    assert probe.arp_conflict(arp(1, THEIRS, "192.168.1.5", ip), ip, OURS) == ""  # someone resolving it
    assert probe.arp_conflict(arp(2, THEIRS, "192.168.1.21", "0.0.0.0"), ip, OURS) == ""  # another address
    assert probe.arp_conflict(probe.arp_probe(ip, OURS), ip, OURS) == ""  # our own probe
    assert probe.arp_conflict(arp(2, THEIRS, ip, "0.0.0.0")[:30], ip, OURS) == ""  # truncated


def na(target: str, src_mac: bytes, tll: bytes | None = None, kind: int = probe.NA, src: str = "fe80::1") -> bytes:
    body = struct.pack("!BBHI", kind, 0, 0, 0x20000000) + ipaddress.IPv6Address(target).packed
    if tll is not None:
        body += bytes([2, 1]) + tll
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + ipaddress.IPv6Address(src).packed + \
        ipaddress.IPv6Address("ff02::1").packed
    return b"\x33\x33\x00\x00\x00\x01" + src_mac + b"\x86\xdd" + ip6 + body


def test_dad_probe_is_an_ns_from_unspecified_to_the_solicited_node_group():
    f = probe.dad_probe("fd77::20", OURS)
    assert f[:6] == bytes.fromhex("3333ff000020") and f[6:12] == OURS and f[12:14] == b"\x86\xdd"
    assert f[20] == 58 and f[21] == 255  # ICMPv6, hop limit 255
    assert f[22:38] == bytes(16) and ipaddress.IPv6Address(f[38:54]) == ipaddress.IPv6Address("ff02::1:ff00:20")
    assert f[54] == probe.NS and ipaddress.IPv6Address(f[62:78]) == ipaddress.IPv6Address("fd77::20")
    assert len(f) == 78  # no source link-layer address option (RFC 4862 5.4.2)
    # The ICMPv6 checksum over the pseudo-header comes out 0.
    pseudo = f[22:54] + struct.pack("!I3xB", len(f) - 54, 58)
    assert probe._csum(pseudo + f[54:]) == 0


def test_nd_answers_and_non_answers():
    ip = "fd77::20"
    assert probe.nd_conflict(na(ip, THEIRS, THEIRS), ip, OURS) == "52:54:00:12:34:56"
    assert probe.nd_conflict(na(ip, bytes.fromhex("02bbbbbbbbbb"), THEIRS), ip, OURS) == "52:54:00:12:34:56"  # TLL
    assert probe.nd_conflict(na(ip, THEIRS), ip, OURS) == "52:54:00:12:34:56"  # no option: the source MAC
    assert probe.nd_conflict(na("fd77::21", THEIRS, THEIRS), ip, OURS) == ""
    assert probe.nd_conflict(na(ip, THEIRS, kind=probe.NS, src="::"), ip, OURS) == "52:54:00:12:34:56"  # its DAD
    assert probe.nd_conflict(na(ip, THEIRS, kind=probe.NS), ip, OURS) == ""  # someone resolving it
    assert probe.nd_conflict(probe.dad_probe(ip, OURS), ip, OURS) == ""  # our own
