"""dhcp.py: DHCPv4 messages built and parsed without the network, and the client's exchanges over a
socketpair standing in for the AF_PACKET socket (no root needed)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from pynet import dhcp

MAC = "02:42:c0:a8:01:14"
SERVER_MAC = "52:54:00:aa:bb:cc"


# ---------------------------------------------------------------- a server's view, written independently

def decode_request(frame: bytes) -> dict:
    """What a DHCP server sees in a client frame (Ethernet/IPv4/UDP 68->67/BOOTP request)."""
    eth_dst, eth_src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:34]
    ver_ihl, _tos, total, _id, _frag, ttl, proto, _csum, src, dst = struct.unpack("!BBHHHBBH4s4s", ip)
    udp = frame[34:42]
    sport, dport, ulen, _ucsum = struct.unpack("!HHHH", udp)
    p = frame[42:]
    op, htype, hlen, _hops, xid, _secs, flags = struct.unpack("!BBBBIHH", p[:12])
    opts, i = {}, 240
    while i < len(p) and p[i] != 255:
        if p[i] == 0:
            i += 1
            continue
        opts[p[i]] = p[i + 2:i + 2 + p[i + 1]]
        i += 2 + p[i + 1]
    return {"eth_dst": eth_dst, "eth_src": eth_src, "ethertype": ethertype, "ver_ihl": ver_ihl, "total": total,
            "ttl": ttl, "proto": proto, "src": socket.inet_ntoa(src), "dst": socket.inet_ntoa(dst),
            "ip_csum_ok": dhcp._checksum(ip) == 0, "sport": sport, "dport": dport, "ulen": ulen,
            "frame_len": len(frame), "op": op, "htype": htype, "hlen": hlen, "xid": xid, "flags": flags,
            "ciaddr": socket.inet_ntoa(p[12:16]), "chaddr": p[28:28 + 16], "magic": p[236:240],
            "opts": opts, "end": p[i:i + 1]}


def reply_frame(xid: int, yiaddr: str, chaddr: str, msg_type: int, opts: list[tuple[int, bytes]] = (),
                server_ip: str = "192.168.1.1", server_mac: str = SERVER_MAC, sport: int = 67, dport: int = 68,
                op: int = 2, pad: bool = False) -> bytes:
    """A server's reply frame, built without dhcp.py's helpers."""
    body = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0, b"\0" * 4, socket.inet_aton(yiaddr),
                       b"\0" * 4, b"\0" * 4, bytes.fromhex(chaddr.replace(":", "")).ljust(16, b"\0"), b"", b"")
    o = bytes([53, 1, msg_type])
    if pad:
        o += b"\0\0"
    for code, value in opts:
        o += bytes([code, len(value)]) + value
    payload = body + dhcp.MAGIC + o + b"\xff"
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(server_ip),
                     socket.inet_aton(yiaddr))
    return (bytes.fromhex(chaddr.replace(":", "")) + bytes.fromhex(server_mac.replace(":", "")) + b"\x08\x00"
            + ip + udp)


LEASE_OPTS = [(1, socket.inet_aton("255.255.255.0")), (3, socket.inet_aton("192.168.1.1")),
              (54, socket.inet_aton("192.168.1.1")), (51, struct.pack("!I", 600)), (58, struct.pack("!I", 300)),
              (59, struct.pack("!I", 525)), (12, b"web-1")]


# ---------------------------------------------------------------- build + frame

def test_discover_frame():
    req = decode_request(dhcp.frame(dhcp.build(dhcp.DISCOVER, 0xDEADBEEF, MAC, hostname="web-1"), MAC))
    assert req["eth_dst"] == b"\xff" * 6 and req["eth_src"] == bytes.fromhex(MAC.replace(":", ""))
    assert req["ethertype"] == 0x0800 and req["ver_ihl"] == 0x45 and req["proto"] == 17
    assert (req["src"], req["dst"]) == ("0.0.0.0", "255.255.255.255")
    assert req["ip_csum_ok"] and req["total"] == req["frame_len"] - 14 and req["ulen"] == req["frame_len"] - 34
    assert (req["sport"], req["dport"]) == (68, 67)
    assert (req["op"], req["htype"], req["hlen"], req["xid"]) == (1, 1, 6, 0xDEADBEEF)
    assert req["flags"] == 0x8000  # broadcast: the container's macvlan does not exist yet
    assert req["chaddr"] == bytes.fromhex(MAC.replace(":", "")) + b"\0" * 10
    assert req["magic"] == dhcp.MAGIC and req["end"] == b"\xff"
    o = req["opts"]
    assert o[53] == bytes([dhcp.DISCOVER])
    assert o[61] == b"\x01" + bytes.fromhex(MAC.replace(":", ""))  # client id: type 1 + MAC
    assert o[12] == b"web-1"
    assert set(o[55]) >= {1, 3, 51, 58, 59}  # mask, router, lease time, T1, T2
    assert 50 not in o and 54 not in o


def test_request_carries_requested_address_and_server():
    req = decode_request(dhcp.frame(dhcp.build(dhcp.REQUEST, 7, MAC, requested="192.168.1.20",
                                               server="192.168.1.1"), MAC))
    assert req["opts"][53] == bytes([dhcp.REQUEST])
    assert req["opts"][50] == socket.inet_aton("192.168.1.20")
    assert req["opts"][54] == socket.inet_aton("192.168.1.1")
    assert 12 not in req["opts"]  # no hostname given, none sent


def test_renew_is_unicast_from_the_lease():
    payload = dhcp.build(dhcp.REQUEST, 9, MAC, ciaddr="192.168.1.20", broadcast=False)
    req = decode_request(dhcp.frame(payload, MAC, src_ip="192.168.1.20", dst_ip="192.168.1.1",
                                    dst_mac=bytes.fromhex(SERVER_MAC.replace(":", ""))))
    assert req["flags"] == 0 and req["ciaddr"] == "192.168.1.20"
    assert (req["src"], req["dst"]) == ("192.168.1.20", "192.168.1.1") and req["ip_csum_ok"]
    assert req["eth_dst"] == bytes.fromhex(SERVER_MAC.replace(":", ""))


def test_release_has_no_parameter_list():
    req = decode_request(dhcp.frame(dhcp.build(dhcp.RELEASE, 1, MAC, ciaddr="192.168.1.20", server="192.168.1.1",
                                               broadcast=False), MAC))
    assert req["opts"][53] == bytes([dhcp.RELEASE]) and 55 not in req["opts"]
    assert req["opts"][54] == socket.inet_aton("192.168.1.1")


def test_long_hostname_truncated_to_63_bytes():
    req = decode_request(dhcp.frame(dhcp.build(dhcp.DISCOVER, 1, MAC, hostname="h" * 100), MAC))
    assert req["opts"][12] == b"h" * 63


def test_checksum_known_value():
    # The IPv4 header example from RFC 1071 / Wikipedia: checksum 0xb861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert dhcp._checksum(header) == 0xB861
    assert dhcp._checksum(b"\x01") == dhcp._checksum(b"\x01\x00")  # odd length padded


# ---------------------------------------------------------------- parse

def test_parse_reply_round_trip():
    frame = reply_frame(0x01020304, "192.168.1.20", MAC, dhcp.ACK, LEASE_OPTS, pad=True)
    r = dhcp.parse(frame)
    assert r is not None
    assert (r["xid"], r["yiaddr"], r["chaddr"], r["src_mac"], r["type"]) == (
        0x01020304, "192.168.1.20", MAC, SERVER_MAC, dhcp.ACK)
    assert r["opts"][12] == b"web-1"
    assert r["opts"][1] == socket.inet_aton("255.255.255.0")


def test_lease_from_reply():
    r = dhcp.parse(reply_frame(1, "192.168.1.20", MAC, dhcp.ACK, LEASE_OPTS))
    lease = dhcp.Client._lease(r, MAC, "web-1", prefix_default=16)
    assert (lease.mac, lease.ip, lease.prefixlen, lease.router) == (MAC, "192.168.1.20", 24, "192.168.1.1")
    assert (lease.server, lease.server_mac) == ("192.168.1.1", SERVER_MAC)
    assert (lease.lease_time, lease.t1, lease.t2, lease.hostname) == (600, 300, 525, "web-1")
    assert lease.expires == lease.acquired + 600
    assert dhcp.Lease(**lease.to_dict()) == lease  # how the store keeps it


def test_lease_defaults_when_options_missing():
    r = dhcp.parse(reply_frame(1, "10.0.0.9", MAC, dhcp.ACK, [(51, struct.pack("!I", 800))]))
    lease = dhcp.Client._lease(r, MAC, "", prefix_default=20)
    assert (lease.prefixlen, lease.t1, lease.t2, lease.server, lease.router) == (20, 400, 700, "", "")


@pytest.mark.parametrize("mangle", [
    lambda f: f[:200],                                   # too short
    lambda f: f[:12] + b"\x86\xdd" + f[14:],             # not IPv4
    lambda f: f[:23] + b"\x06" + f[24:],                 # TCP, not UDP
])
def test_parse_ignores_other_frames(mangle):
    assert dhcp.parse(mangle(reply_frame(1, "192.168.1.20", MAC, dhcp.OFFER, LEASE_OPTS))) is None


def test_parse_ignores_wrong_ports_requests_and_bad_magic():
    assert dhcp.parse(reply_frame(1, "192.168.1.20", MAC, dhcp.OFFER, sport=68, dport=67)) is None
    assert dhcp.parse(reply_frame(1, "192.168.1.20", MAC, dhcp.OFFER, op=1)) is None  # another client's request
    good = reply_frame(1, "192.168.1.20", MAC, dhcp.OFFER)
    magic_at = 42 + 236
    assert dhcp.parse(good[:magic_at] + b"\0\0\0\0" + good[magic_at + 4:]) is None
    # Our own DISCOVER as seen on the wire is not a reply either.
    assert dhcp.parse(dhcp.frame(dhcp.build(dhcp.DISCOVER, 1, MAC), MAC)) is None


def test_parse_truncated_options_do_not_crash():
    frame = reply_frame(1, "192.168.1.20", MAC, dhcp.OFFER)
    cut = frame[:-1] + bytes([51])  # option code as the last byte, no length
    r = dhcp.parse(cut)
    assert r is not None and r["type"] == dhcp.OFFER and 51 not in r["opts"]


# ---------------------------------------------------------------- the client over a socketpair

class FakeLan:
    """Replaces Client._socket: each call gets one end of a datagram socketpair; a server task answers."""

    def __init__(self, answer):
        self.answer = answer  # decoded request -> reply frame or None
        self.seen: list[dict] = []
        self.socks: list[socket.socket] = []
        self.tasks: list[asyncio.Task] = []
        self.ifnames: list[str] = []

    def socket_for(self, ifname: str) -> socket.socket:
        self.ifnames.append(ifname)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        self.socks += [ours, theirs]
        self.tasks.append(asyncio.get_running_loop().create_task(self._serve(theirs)))
        return ours

    async def _serve(self, s: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(s, 4096)
            except OSError:
                return
            req = decode_request(data)
            self.seen.append(req)
            out = self.answer(req)
            if out is None:
                continue
            try:
                # Noise first: another client's reply with another xid must be skipped.
                await loop.sock_sendall(s, reply_frame(req["xid"] ^ 1, "192.168.1.99", MAC, dhcp.ACK))
                await loop.sock_sendall(s, out)
            except OSError:
                return

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for s in self.socks:
            s.close()


@pytest.fixture
async def lan(monkeypatch):
    lans = []

    def make(answer, client: dhcp.Client):
        fake = FakeLan(answer)
        monkeypatch.setattr(client, "_socket", fake.socket_for)
        lans.append(fake)
        return fake

    yield make
    for fake in lans:
        await fake.close()


def dnsmasq_like(req: dict, nak: bool = False) -> bytes:
    chaddr = ":".join(f"{b:02x}" for b in req["chaddr"][:6])
    kind = req["opts"][53][0]
    if kind == dhcp.DISCOVER:
        return reply_frame(req["xid"], "192.168.1.20", chaddr, dhcp.OFFER, LEASE_OPTS)
    return reply_frame(req["xid"], "192.168.1.20", chaddr, dhcp.NAK if nak else dhcp.ACK, LEASE_OPTS)


async def test_acquire_discover_offer_request_ack(lan):
    client = dhcp.Client(retries=2, timeout=1.0)
    fake = lan(dnsmasq_like, client)
    lease = await client.acquire("eth0", MAC, hostname="web-1", prefix_default=16)
    assert (lease.ip, lease.prefixlen, lease.server, lease.server_mac) == ("192.168.1.20", 24, "192.168.1.1",
                                                                           SERVER_MAC)
    discover, request = fake.seen
    assert discover["opts"][53] == bytes([dhcp.DISCOVER]) and request["opts"][53] == bytes([dhcp.REQUEST])
    assert discover["xid"] == request["xid"]
    assert request["opts"][50] == socket.inet_aton("192.168.1.20")  # the offered address
    assert request["opts"][54] == socket.inet_aton("192.168.1.1")   # from that server
    assert request["opts"][12] == b"web-1"
    assert fake.ifnames == ["eth0", "eth0"]


async def test_acquire_nak(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    lan(lambda req: dnsmasq_like(req, nak=True), client)
    with pytest.raises(dhcp.DhcpError, match=r"refused the offered address 192.168.1.20 \(NAK\)"):
        await client.acquire("eth0", MAC)


async def test_no_server_answers(lan):
    client = dhcp.Client(retries=2, timeout=0.05)
    fake = lan(lambda req: None, client)
    with pytest.raises(dhcp.DhcpError, match=r"no DHCP server answered on eth0 \(2 tries") as ei:
        await client.acquire("eth0", MAC)
    assert "-o parent=eth0" in str(ei.value)
    assert len(fake.seen) == 2  # one DISCOVER per try


async def test_renew_unicast_and_counts(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(dnsmasq_like, client)
    old = dhcp.Lease(mac=MAC, ip="192.168.1.20", prefixlen=24, server="192.168.1.1", server_mac=SERVER_MAC,
                     lease_time=600, t1=300, t2=525, acquired=0.0, hostname="web-1", renewals=2)
    new = await client.renew("eth0", old)
    assert new.renewals == 3 and new.acquired > old.acquired and new.hostname == "web-1"
    (req,) = fake.seen
    assert (req["src"], req["dst"], req["ciaddr"], req["flags"]) == ("192.168.1.20", "192.168.1.1",
                                                                     "192.168.1.20", 0)
    await client.renew("eth0", old, rebind=True)
    assert fake.seen[1]["dst"] == "255.255.255.255"  # REBINDING: broadcast


async def test_release_without_server_sends_nothing(lan):
    client = dhcp.Client()
    fake = lan(lambda req: None, client)
    await client.release("eth0", dhcp.Lease(mac=MAC, ip="1.2.3.4", prefixlen=24, server="", server_mac="",
                                            lease_time=1, t1=1, t2=1, acquired=0))
    assert fake.ifnames == []


async def test_release_unicast_to_server(lan):
    client = dhcp.Client()
    fake = lan(lambda req: None, client)
    await client.release("eth0", dhcp.Lease(mac=MAC, ip="192.168.1.20", prefixlen=24, server="192.168.1.1",
                                            server_mac=SERVER_MAC, lease_time=1, t1=1, t2=1, acquired=0))
    for _ in range(100):
        if fake.seen:
            break
        await asyncio.sleep(0.01)
    (req,) = fake.seen
    assert req["opts"][53] == bytes([dhcp.RELEASE]) and req["ciaddr"] == "192.168.1.20"
    assert (req["dst"], req["eth_dst"]) == ("192.168.1.1", bytes.fromhex(SERVER_MAC.replace(":", "")))
