"""kernel/linkstats.py: the link dump decoded by hand (names and IFLA_STATS64 only)."""

from __future__ import annotations

import struct

from pynet.kernel import linkstats
from pynet.kernel.api import LinkStats


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def newlink(name: bytes, stats: tuple | None, extra: bytes = b"") -> bytes:
    attrs = nla(1, b"\x02\x42\xac\x1e\x00\x02") + nla(linkstats.IFLA_IFNAME, name + b"\0") + extra
    if stats is not None:
        attrs += nla(linkstats.IFLA_STATS64, struct.pack("=23Q", *stats, *([0] * (23 - len(stats)))))
    body = struct.pack("=BxHiII", 0, 1, 7, 0x1043, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), linkstats.RTM_NEWLINK, 2, 1, 0) + body


def test_name_and_counters_from_a_link_message():
    # rx/tx packets, rx/tx bytes, rx/tx errors, rx/tx dropped: the first eight u64 of rtnl_link_stats64
    msg = newlink(b"pn-h1234", (10, 20, 1000, 2000, 1, 2, 3, 4), extra=nla(0x8000 | 18, b"\0" * 12))
    assert linkstats.parse_link(msg) == ("pn-h1234", LinkStats(rx_bytes=1000, tx_bytes=2000, rx_packets=10,
                                                               tx_packets=20, rx_dropped=3, tx_dropped=4,
                                                               rx_errors=1, tx_errors=2))


def test_a_link_without_counters_is_left_out():
    assert linkstats.parse_link(newlink(b"x", None)) is None


def test_the_real_dump_sees_loopback():
    """RTM_GETLINK needs no privilege: this namespace's `lo` is there, with counters."""
    got = linkstats.dump()
    assert "lo" in got and isinstance(got["lo"], LinkStats)
