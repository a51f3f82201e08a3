"""codec6.py: DUIDs, the DHCPv6 codec, frames as a server sees them, and the client against a fake tap
(scripted DHCPv6 servers, friendly and hostile; no root)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynet import dhcp
from pynet.dhcp import client6, codec6, link6

MAC = "02:42:0a:4d:00:1a"
LL = "fe80::42:aff:fe4d:1a"
SERVER_DUID = bytes.fromhex("000100013a2b3c4d525400aabbcc")
SERVER_MAC = "52:54:00:aa:bb:cc"
SERVER_LL = "fe80::5054:ff:feaa:bbcc"
PREFIX = "fd77::/64"


# ---------------------------------------------------------------- a server's view, written independently

def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


def tlv(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(data):
        code, n = struct.unpack("!HH", data[i:i + 4])
        out.append((code, data[i + 4:i + 4 + n]))
        i += 4 + n
    return out


def decode_client_frame(frame: bytes) -> dict:
    """What a DHCPv6 server sees: Ethernet, IPv6, UDP 546->547 and the message's options."""
    ver_tc_fl, plen, nh, hop = struct.unpack("!IHBB", frame[14:22])
    src, dst = frame[22:38], frame[38:54]
    udp = frame[54:54 + plen]
    sport, dport, ulen, _ = struct.unpack("!HHHH", udp[:8])
    pseudo = src + dst + struct.pack("!I3xB", ulen, 17)
    msg = udp[8:ulen]
    opts = dict(tlv(msg[4:]))
    ia = opts.get(3)
    return {"eth_dst": frame[:6].hex(":"), "eth_src": frame[6:12].hex(":"), "ethertype": frame[12:14].hex(),
            "version": ver_tc_fl >> 28, "plen": plen, "nh": nh, "hop": hop, "frame_len": len(frame),
            "src": str(ipaddress.IPv6Address(src)), "dst": str(ipaddress.IPv6Address(dst)), "sport": sport,
            "dport": dport, "ulen": ulen, "csum_ok": inet_csum(pseudo + udp) == 0, "type": msg[0],
            "txid": int.from_bytes(msg[1:4], "big"), "opts": opts,
            "iaid": struct.unpack("!I", ia[:4])[0] if ia else None,
            "ia_addrs": [str(ipaddress.IPv6Address(v[:16])) for c, v in tlv(ia[12:]) if c == 5] if ia else []}


def o(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def iaaddr(ip: str, pref: int, valid: int, sub: bytes = b"") -> bytes:
    return o(5, ipaddress.IPv6Address(ip).packed + struct.pack("!II", pref, valid) + sub)


def ia(iaid: int, t1: int, t2: int, *subs: bytes) -> bytes:
    return o(3, struct.pack("!III", iaid, t1, t2) + b"".join(subs))


def status(code: int, text: str = "") -> bytes:
    return o(13, struct.pack("!H", code) + text.encode())


class FakeTap:
    """Stands in for link6.Tap: frames sent are decoded and handed to `serve`, whose answers are received."""

    def __init__(self, serve, mac: str):
        self.serve, self.mac = serve, mac
        self.sent: list[dict] = []
        self.q: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        return None

    async def send(self, frame: bytes) -> None:
        req = decode_client_frame(frame)
        self.sent.append(req)
        for payload in self.serve(req) or []:
            udp = struct.pack("!HHHH", 547, 546, 8 + len(payload), 0) + payload
            self.q.put_nowait(link6.Frame6(SERVER_MAC, self.mac, ipaddress.IPv6Address(SERVER_LL),
                                           ipaddress.IPv6Address(req["src"]), 64, 17, udp))

    async def recv(self, timeout: float):
        try:
            return await asyncio.wait_for(self.q.get(), timeout)
        except asyncio.TimeoutError:
            return None


@pytest.fixture
def taps(monkeypatch):
    made: list[FakeTap] = []

    def use(client: client6.Client6, serve) -> list[FakeTap]:
        def tap(ifname, mac):
            made.append(FakeTap(serve, mac))
            return made[-1]
        monkeypatch.setattr(client, "_tap", tap)
        return made

    return use


def sent_by(taps: list[FakeTap]) -> list[dict]:
    return [req for t in taps for req in t.sent]


def server(addr: str = "fd77::123", t1: int = 300, t2: int = 480, pref: int = 500, valid: int = 600,
           adv_extra: bytes = b"", reply_extra: bytes = b"", reply_ia: bytes | None = None, client_id=None):
    """A DHCPv6 server: ADVERTISE to SOLICIT, REPLY to REQUEST/RENEW/REBIND/RELEASE."""
    def serve(req: dict):
        cid = o(1, client_id if client_id is not None else req["opts"][1])
        head = lambda t: bytes([t]) + req["txid"].to_bytes(3, "big") + cid + o(2, SERVER_DUID)  # noqa: E731
        the_ia = ia(req["iaid"], t1, t2, iaaddr(addr, pref, valid)) if req["iaid"] is not None else b""
        if req["type"] == 1:
            return [head(2) + the_ia + adv_extra]
        if req["type"] == 8:
            return [head(7) + status(0, "released")]
        return [head(7) + (reply_ia if reply_ia is not None else the_ia) + reply_extra]
    return serve


def client() -> client6.Client6:
    return client6.Client6(retries=2, timeout=0.2)


def held(**kw) -> client6.Lease6:
    base = dict(mac=MAC, ip="fd77::123", prefixlen=64, iaid=codec6.iaid_for("web6"), duid=codec6.duid_for("web6").hex(),
                server_duid=SERVER_DUID.hex(), server_ip=SERVER_LL, server_mac=SERVER_MAC, t1=300, t2=480,
                preferred=500, valid=600, acquired=1000.0, identity="web6", hostname="web6")
    base.update(kw)
    return client6.Lease6(**base)


# ---------------------------------------------------------------- identity and codec

def test_duid_is_a_uuid_of_the_identity_not_of_the_mac():
    duid = codec6.duid_for("web6")
    assert duid[:2] == b"\x00\x04" and len(duid) == 18  # DUID-UUID, RFC 6355
    assert duid == codec6.duid_for("web6") != codec6.duid_for("web7")
    assert duid.hex() == "0004faf5ea9695ca5344beee24f87b1cb7d2"  # pinned: admins write it into reservations
    assert codec6.iaid_for("web6") == int.from_bytes(duid[2:6], "big")
    with pytest.raises(dhcp.DhcpError, match="stable identity"):
        codec6.duid_for("")


def test_codec_round_trip_and_malformed_options():
    msg = codec6.parse(codec6.build(codec6.REPLY, 0xABCDEF, [o(1, b"x"), o(2, b"yz"), o(14)]))
    assert (msg.type, msg.txid, msg.client_id, msg.server_id) == (7, 0xABCDEF, b"x", b"yz")
    assert msg.options[2] == (14, b"")
    for bad, why in [(b"\x07\x00\x00", "shorter than its header"),
                     (b"\x07\x00\x00\x01" + o(1, b"abc")[:-1], "option 1 says 3 bytes, 2 left"),
                     (b"\x07\x00\x00\x01\x00\x01\x00", "stray bytes")]:
        with pytest.raises(dhcp.DhcpError, match=why):
            codec6.parse(bad)
    with pytest.raises(dhcp.DhcpError, match="IA_NA"):
        codec6.parse_ia_na(b"\0" * 11)
    with pytest.raises(dhcp.DhcpError, match="IAADDR"):
        codec6.parse_ia_na(struct.pack("!III", 1, 0, 0) + o(5, b"\0" * 20))
    with pytest.raises(dhcp.DhcpError, match="status"):
        codec6.status(b"\0")
    got = codec6.parse_ia_na(struct.pack("!III", 7, 1, 2)[:12] + iaaddr("fd77::1", 5, 6, status(3, "gone")))
    assert (got.iaid, got.t1, got.t2, got.addrs[0].ip, got.addrs[0].status) == (7, 1, 2, "fd77::1", (3, "gone"))


def test_fqdn_option():
    assert codec6.fqdn_option("web6", "lan.test") == o(39, b"\x01\x04web6\x03lan\x04test\x00")
    assert codec6.fqdn_option("web6") == o(39, b"\x01\x04web6")  # partial name: the server adds its domain
    with pytest.raises(dhcp.DhcpError, match="1 to 63 bytes"):
        codec6.fqdn_option("x" * 64)


# ---------------------------------------------------------------- the client

async def test_without_identity_the_duid_is_the_macs(taps):
    """An engine that names no container (before Docker 29): DUID-LL of the MAC, IAID its last 4 bytes."""
    assert codec6.duid_ll(MAC) == b"\x00\x03\x00\x01" + bytes.fromhex(MAC.replace(":", ""))
    assert codec6.iaid_ll(MAC) == int.from_bytes(bytes.fromhex(MAC.replace(":", ""))[2:], "big")
    c = client()
    made = taps(c, server())
    lease = await c.acquire("eth0", MAC, "", prefix=PREFIX)
    assert (lease.duid, lease.iaid, lease.identity) == (codec6.duid_ll(MAC).hex(), codec6.iaid_ll(MAC), "")
    assert sent_by(made)[0]["opts"][1] == codec6.duid_ll(MAC)
    await c.decline("eth0", lease)
    assert sent_by(made)[-1]["type"] == codec6.DECLINE and sent_by(made)[-1]["opts"][1] == codec6.duid_ll(MAC)


async def test_acquire_solicit_advertise_request_reply(taps):
    c = client()
    made = taps(c, server())
    lease = await c.acquire("eth0", MAC, "web6", hostname="web6", domain="lan.test", prefix=PREFIX)
    assert (lease.ip, lease.prefixlen, lease.t1, lease.t2, lease.preferred, lease.valid, lease.notes) == (
        "fd77::123", 64, 300, 480, 500, 600, [])
    assert (lease.duid, lease.iaid, lease.server_duid) == (codec6.duid_for("web6").hex(), codec6.iaid_for("web6"),
                                                          SERVER_DUID.hex())
    assert (lease.server_ip, lease.server_mac, lease.identity) == (SERVER_LL, SERVER_MAC, "web6")
    assert len(made) == 1  # one tap for the whole exchange
    solicit, request = sent_by(made)
    for req in (solicit, request):
        assert (req["eth_dst"], req["eth_src"], req["ethertype"]) == ("33:33:00:01:00:02", MAC, "86dd")
        assert (req["version"], req["nh"], req["src"], req["dst"]) == (6, 17, LL, "ff02::1:2")
        assert (req["sport"], req["dport"], req["ulen"], req["plen"]) == (546, 547, req["plen"], req["frame_len"] - 54)
        assert req["csum_ok"]
        assert req["opts"][1] == codec6.duid_for("web6") and req["iaid"] == codec6.iaid_for("web6")
        assert req["opts"][39] == b"\x01\x04web6\x03lan\x04test\x00" and 8 in req["opts"]
    assert solicit["type"] == codec6.SOLICIT and 2 not in solicit["opts"] and solicit["ia_addrs"] == []
    assert request["type"] == codec6.REQUEST and request["opts"][2] == SERVER_DUID
    assert request["ia_addrs"] == ["fd77::123"]


async def test_renew_goes_to_the_server_rebind_to_any(taps):
    c = client()
    made = taps(c, server(t1=200, t2=300))
    old = held(renewals=4)
    new = await c.renew("eth0", old)
    assert (new.ip, new.renewals, new.t1, new.t2) == ("fd77::123", 5, 200, 300)
    assert (new.duid, new.identity) == (old.duid, "web6")
    await c.renew("eth0", old, rebind=True)
    renew, rebind = sent_by(made)
    assert renew["type"] == codec6.RENEW and renew["opts"][2] == SERVER_DUID and renew["ia_addrs"] == [old.ip]
    assert rebind["type"] == codec6.REBIND and 2 not in rebind["opts"] and rebind["ia_addrs"] == [old.ip]
    assert renew["opts"][1] == rebind["opts"][1] == bytes.fromhex(old.duid)


async def test_release_with_server_id_and_a_silent_server_is_only_logged(taps, caplog):
    c = client()
    made = taps(c, server())
    await c.release("eth0", held())
    (rel,) = sent_by(made)
    assert rel["type"] == codec6.RELEASE and rel["opts"][2] == SERVER_DUID and rel["ia_addrs"] == ["fd77::123"]
    c2 = client()
    silent = taps(c2, lambda req: [])
    await c2.release("eth0", held())
    assert len(sent_by(silent[1:])) == 1 and "RELEASE not confirmed" in caplog.text  # one try, no retries


# ---------------------------------------------------------------- hostile or broken servers

@pytest.mark.parametrize("kw, want", [
    (dict(t1=0, t2=0, pref=0xFFFFFFFF, valid=0xFFFFFFFF),
     (dhcp.MAX_LEASE // 2, dhcp.MAX_LEASE * 7 // 8, dhcp.MAX_LEASE)),
    (dict(t1=0, t2=0, pref=5, valid=10), (30, 52, 60)),        # tiny lifetimes: no renewal storm
    (dict(t1=900, t2=100, pref=500, valid=600), (300, 525, 600)),  # T1 > T2, T1 beyond valid
])
async def test_lifetimes_are_clamped(taps, kw, want):
    c = client()
    taps(c, server(**kw))
    lease = await c.acquire("eth0", MAC, "web6", prefix=PREFIX)
    assert (lease.t1, lease.t2, lease.valid) == want and lease.preferred <= lease.valid and lease.notes


@pytest.mark.parametrize("kw, why", [
    (dict(addr="fd99::1"), "fd99::1 is outside the network's subnet fd77::/64"),
    (dict(addr="fe80::1"), "fe80::1 is a link-local address"),
    (dict(addr="ff02::1"), "ff02::1 is a multicast address"),
    (dict(addr="::"), ":: is the unspecified address"),
    (dict(addr="::ffff:10.0.0.1"), "is an IPv4-mapped address"),
    (dict(pref=700, valid=600), "preferred lifetime 700 > valid 600"),
    (dict(valid=0, pref=0), "valid lifetime 0"),
    (dict(adv_extra=status(2, "pool full")), "NoAddrsAvail pool full"),
])
async def test_unusable_advertisements_are_refused_at_once(taps, kw, why):
    c = client()
    made = taps(c, server(**kw))
    with pytest.raises(dhcp.DhcpError, match=why.replace(".", r"\.")) as ei:
        await c.acquire("eth0", MAC, "web6", prefix=PREFIX)
    assert "no usable DHCPv6 answer on eth0" in str(ei.value) and len(sent_by(made)) == 1


async def test_answers_for_another_client_are_ignored(taps):
    c = client()
    made = taps(c, server(client_id=codec6.duid_for("someone else")))
    with pytest.raises(dhcp.DhcpError, match=r"no DHCPv6 server answered on eth0 \(2 tries"):
        await c.acquire("eth0", MAC, "web6")
    assert [r["type"] for r in sent_by(made)] == [codec6.SOLICIT, codec6.SOLICIT]
    elapsed = [struct.unpack("!H", r["opts"][8])[0] for r in sent_by(made)]
    assert elapsed[0] == 0 and elapsed[1] >= 15  # centiseconds since the first SOLICIT


async def test_malformed_answers_are_a_clean_error(taps):
    c = client()

    def serve(req):
        head = bytes([2]) + req["txid"].to_bytes(3, "big")
        return [head + o(1, req["opts"][1]) + o(2, SERVER_DUID)[:-3],  # truncated server id
                head + o(1, req["opts"][1]),                           # no server id
                head + o(1, req["opts"][1]) + o(2, SERVER_DUID) + o(3, b"\0" * 5)]  # IA_NA of 5 bytes
    taps(c, serve)
    with pytest.raises(dhcp.DhcpError) as ei:
        await c.acquire("eth0", MAC, "web6")
    msg = str(ei.value)
    assert "option 2 says 14 bytes, 11 left" in msg and "has no server id" in msg and "IA_NA: 5 bytes" in msg


@pytest.mark.parametrize("reply_ia, reply_extra, why", [
    (None, status(3, "unknown"), "NoBinding unknown"),
    (ia(codec6.iaid_for("web6"), 0, 0, status(3)), b"", "NoBinding"),
    (ia(codec6.iaid_for("web6"), 0, 0, iaaddr("fd77::123", 0, 0)), b"", "no longer leases fd77::123.*valid lifetime 0"),
    (ia(codec6.iaid_for("web6"), 0, 0, iaaddr("fd77::999", 500, 600)), b"", "no longer leases fd77::123"),
    (b"", b"", "without our IA_NA"),
])
async def test_renewal_refusals_lose_the_lease(taps, reply_ia, reply_extra, why):
    c = client()
    taps(c, server(reply_ia=reply_ia, reply_extra=reply_extra))
    with pytest.raises(dhcp.DhcpNak, match=why):
        await c.renew("eth0", held())


def test_next_action_for_a_v6_lease():
    lease = held(acquired=1000.0, t1=300, t2=480, valid=600)
    assert client6.next_action(lease, 1000) == ("renew", 1300)
    assert client6.next_action(lease, 1490) == ("rebind", 1490)
    assert client6.next_action(lease, 1600) == ("expired", 1600) and lease.expired(1600)
    stored = held(acquired=0.0, t1=0, t2=0, valid=0)
    assert client6.next_action(stored, 0) == ("renew", 30) and stored.expires == 60
    assert client6.Lease6(**lease.to_dict()) == lease


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6), st.integers(4, 200))
def test_fuzzed_replies_give_a_sane_lease_or_a_dhcp_error(edits, cut):
    def mangle(payloads):
        out = []
        for p in payloads:
            b = bytearray(p)
            for pos, val in edits:
                b[4 + pos % max(1, len(b) - 4)] = val  # leave type and txid alone, so it is "for us"
            out.append(bytes(b[:cut]))
        return out

    async def run():
        c = client6.Client6(retries=1, timeout=0.01)
        serve = server()
        c._tap = lambda ifname, mac: FakeTap(lambda req: mangle(serve(req)), mac)
        try:
            lease = await c.acquire("eth0", MAC, "web6", prefix=PREFIX)
        except dhcp.DhcpError:
            return
        assert not codec6.check_address6(lease.ip, ipaddress.IPv6Network(PREFIX))
        assert dhcp.MIN_LEASE <= lease.valid <= dhcp.MAX_LEASE and dhcp.MIN_T1 <= lease.t1 < lease.t2 < lease.valid
        assert lease.preferred <= lease.valid

    asyncio.run(run())
