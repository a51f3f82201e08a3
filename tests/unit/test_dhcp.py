"""pynet.dhcp (codec, lease, timers, client): DHCPv4 messages as a server sees them, the lease timers, hostile replies, and the client's exchanges
over a socketpair standing in for the AF_PACKET socket (pyroute2's own socket class does the framing; no root)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket

from pynet import dhcp

MAC = "02:42:c0:a8:01:14"
MAC_B = "02:42:c0:a8:01:15"
SERVER_MAC = "52:54:00:aa:bb:cc"
SUBNET = "192.168.1.0/24"


# ---------------------------------------------------------------- a server's view, written independently

def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


def options(p: bytes, start: int = 240) -> dict:
    opts, i = {}, start
    while i < len(p) and p[i] != 255:
        if p[i] == 0:
            i += 1
            continue
        opts[p[i]] = p[i + 2:i + 2 + p[i + 1]]
        i += 2 + p[i + 1]
    return opts


def decode_request(frame: bytes) -> dict:
    """What a DHCP server sees in a client frame (Ethernet/IPv4/UDP 68->67/BOOTP request)."""
    eth_dst, eth_src, ethertype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:34]
    ver_ihl, _tos, total, _id, _frag, ttl, proto, _csum, src, dst = struct.unpack("!BBHHHBBH4s4s", ip)
    udp = frame[34:42]
    sport, dport, ulen, ucsum = struct.unpack("!HHHH", udp)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
    p = frame[42:]
    op, htype, hlen, _hops, xid, secs, flags = struct.unpack("!BBBBIHH", p[:12])
    return {"eth_dst": eth_dst.hex(":"), "eth_src": eth_src.hex(":"), "ethertype": ethertype, "ver_ihl": ver_ihl,
            "total": total, "ttl": ttl, "proto": proto, "src": socket.inet_ntoa(src), "dst": socket.inet_ntoa(dst),
            "ip_csum_ok": inet_csum(ip) == 0, "udp_csum_ok": ucsum == 0 or inet_csum(pseudo + frame[34:]) == 0,
            "sport": sport, "dport": dport, "ulen": ulen, "frame_len": len(frame), "op": op, "htype": htype,
            "hlen": hlen, "xid": xid, "secs": secs, "flags": flags, "ciaddr": socket.inet_ntoa(p[12:16]),
            "chaddr": p[28:28 + 16], "magic": p[236:240], "opts": options(p), "ends": p.rstrip(b"\0").endswith(b"\xff")}


def reply_frame(xid: int, yiaddr: str, chaddr: str, msg_type: int | None, opts=(), server_ip: str = "192.168.1.1",
                server_mac: str = SERVER_MAC, sport: int = 67, dport: int = 68, op: int = 2, pad: bool = False,
                raw_opts: bytes = b"", end: bool = True) -> bytes:
    """A server's reply frame, built without pynet.dhcp or pyroute2."""
    body = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0, b"\0" * 4, socket.inet_aton(yiaddr),
                       b"\0" * 4, b"\0" * 4, bytes.fromhex(chaddr.replace(":", "")).ljust(16, b"\0"), b"", b"")
    o = bytes([53, 1, msg_type]) if msg_type is not None else b""
    if pad:
        o += b"\0\0"
    for code, value in opts:
        o += bytes([code, len(value)]) + value
    payload = body + b"\x63\x82\x53\x63" + o + raw_opts + (b"\xff" if end else b"")
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(server_ip),
                     socket.inet_aton(yiaddr if yiaddr != "0.0.0.0" else "255.255.255.255"))
    return (bytes.fromhex(chaddr.replace(":", "")) + bytes.fromhex(server_mac.replace(":", "")) + b"\x08\x00"
            + ip + udp)


def u32(v: int) -> bytes:
    return struct.pack("!I", v & 0xFFFFFFFF)


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


LEASE_OPTS = [(1, ip4("255.255.255.0")), (3, ip4("192.168.1.1")), (54, ip4("192.168.1.1")), (51, u32(600)),
              (58, u32(300)), (59, u32(525)), (12, b"web-1")]


# ---------------------------------------------------------------- the client over a socketpair

class PairSocket(AsyncDHCP4Socket):
    """pyroute2's DHCP socket (its put/get: framing, checksums, decoding) on one end of a datagram socketpair."""

    def __init__(self, fd: int):
        AsyncDHCP4Socket.__init__(self, "fake0")
        socket.socket.__init__(self, fileno=fd)
        self.setblocking(False)


class FakeLan:
    """Replaces Client._socket: each tap is a socketpair; a server task answers what it sees."""

    def __init__(self, answer):
        self.answer = answer  # decoded request -> reply frame, list of frames, or None
        self.seen: list[dict] = []
        self.taps: list[tuple[str, str]] = []
        self.tasks: list[asyncio.Task] = []

    @contextlib.asynccontextmanager
    async def socket_for(self, ifname: str, mac: str):
        self.taps.append((ifname, mac))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        sock = PairSocket(ours.detach())
        task = asyncio.get_running_loop().create_task(self._serve(theirs))
        self.tasks.append(task)
        try:
            yield sock
        finally:
            sock.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            while True:  # what was sent just before the tap closed (a RELEASE) is still seen
                try:
                    self.seen.append(decode_request(theirs.recv(4096)))
                except (BlockingIOError, ConnectionRefusedError):
                    break
            theirs.close()

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
            frames = out if isinstance(out, list) else [out] if out else []
            try:
                # Noise first: another client's reply (other xid), and one for our xid but another MAC.
                await loop.sock_sendall(s, reply_frame(req["xid"] ^ 1, "192.168.1.99", MAC, dhcp.ACK, LEASE_OPTS))
                await loop.sock_sendall(s, reply_frame(req["xid"], "192.168.1.98", "02:00:00:00:00:01", dhcp.ACK,
                                                       LEASE_OPTS))
                for f in frames:
                    await loop.sock_sendall(s, f)
            except OSError:
                return


@pytest.fixture
def lan(monkeypatch):
    def make(answer, client: dhcp.Client) -> FakeLan:
        fake = FakeLan(answer)
        monkeypatch.setattr(client, "_socket", fake.socket_for)
        return fake

    return make


def req_mac(req: dict) -> str:
    return req["chaddr"][:6].hex(":")


def server(yiaddr: str = "192.168.1.20", opts=LEASE_OPTS, nak: bool = False, offer_opts=None, **kw):
    """A dnsmasq-like answer function: OFFER to DISCOVER, ACK (or NAK) to REQUEST."""
    def answer(req: dict):
        kind = req["opts"][53][0]
        if kind == dhcp.DISCOVER:
            return reply_frame(req["xid"], yiaddr, req_mac(req), dhcp.OFFER, offer_opts or opts, **kw)
        if kind == dhcp.REQUEST:
            return reply_frame(req["xid"], yiaddr, req_mac(req), dhcp.NAK if nak else dhcp.ACK, opts, **kw)
        return None
    return answer


def held(**kw) -> dhcp.Lease:
    base = dict(mac=MAC, ip="192.168.1.20", prefixlen=24, server="192.168.1.1", server_mac=SERVER_MAC,
                lease_time=600, t1=300, t2=525, acquired=1000.0, hostname="web-1")
    base.update(kw)
    return dhcp.Lease(**base)


# ---------------------------------------------------------------- what goes on the wire

async def test_acquire_discover_offer_request_ack(lan):
    client = dhcp.Client(retries=2, timeout=1.0)
    fake = lan(server(), client)
    lease = await client.acquire("eth0", MAC, hostname="web-1", subnet=SUBNET, identity="web-1")
    assert (lease.ip, lease.prefixlen, lease.server, lease.server_mac, lease.router) == (
        "192.168.1.20", 24, "192.168.1.1", SERVER_MAC, "192.168.1.1")
    assert (lease.lease_time, lease.t1, lease.t2, lease.notes) == (600, 300, 525, [])
    assert (lease.identity, lease.client_id) == ("web-1", "00" + b"web-1".hex())
    assert fake.taps == [("eth0", MAC)]  # one tap for DISCOVER..ACK, passing unicast to the container's MAC
    discover, request = fake.seen
    for req in (discover, request):
        assert req["eth_dst"] == "ff:ff:ff:ff:ff:ff" and req["eth_src"] == MAC  # the container's MAC on the wire
        assert (req["ethertype"], req["ver_ihl"], req["proto"]) == (0x0800, 0x45, 17)
        assert (req["src"], req["dst"]) == ("0.0.0.0", "255.255.255.255")
        assert req["ip_csum_ok"] and req["udp_csum_ok"]
        assert req["total"] == req["frame_len"] - 14 and req["ulen"] == req["frame_len"] - 34
        assert (req["sport"], req["dport"], req["op"], req["htype"], req["hlen"]) == (68, 67, 1, 1, 6)
        assert req["flags"] == 0x8000  # broadcast: the container's macvlan does not exist yet
        assert req["chaddr"] == bytes.fromhex(MAC.replace(":", "")) + b"\0" * 10
        assert req["magic"] == b"\x63\x82\x53\x63" and req["ends"]
        assert req["opts"][61] == b"\x00web-1"  # client id: type 0 + the stable identity, not the MAC
        assert req["opts"][12] == b"web-1" and 81 not in req["opts"]
        assert set(req["opts"][55]) >= {1, 3, 51, 58, 59}
    assert discover["opts"][53] == bytes([dhcp.DISCOVER]) and 50 not in discover["opts"] and 54 not in discover["opts"]
    assert request["opts"][53] == bytes([dhcp.REQUEST]) and discover["xid"] == request["xid"]
    assert request["opts"][50] == ip4("192.168.1.20") and request["opts"][54] == ip4("192.168.1.1")


async def test_legacy_client_id_is_the_mac_without_identity(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    lease = await client.acquire("eth0", MAC)
    assert fake.seen[0]["opts"][61] == b"\x01" + bytes.fromhex(MAC.replace(":", ""))
    assert 12 not in fake.seen[0]["opts"]  # no hostname given, none sent
    assert lease.client_id == "" and lease.client_id_bytes() == b"\x01" + bytes.fromhex(MAC.replace(":", ""))


async def test_fqdn_instead_of_hostname_when_a_domain_is_given(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    lease = await client.acquire("eth0", MAC, hostname="web1", identity="web1", domain="lan.example")
    for req in fake.seen:
        assert 12 not in req["opts"]  # RFC 4702 3.1: not both
        assert req["opts"][81] == b"\x05\x00\x00" + b"\x04web1\x03lan\x07example\x00"  # S|E, wire format
    assert (lease.domain, lease.fqdn) == ("lan.example", "web1.lan.example")


def test_identity_and_fqdn_limits():
    assert dhcp.client_id_for("é") == b"\x00\xc3\xa9"
    assert len(dhcp.client_id_for("x" * 254)) == 255
    for bad in ("", "x" * 255):
        with pytest.raises(dhcp.DhcpError, match="1 to 254 bytes"):
            dhcp.client_id_for(bad)
    with pytest.raises(dhcp.DhcpError, match="1 to 63 bytes"):
        dhcp.fqdn_option("web", "a..b")
    with pytest.raises(dhcp.DhcpError, match="too long"):
        dhcp.fqdn_option("web", ".".join(["x" * 60] * 5))


async def test_long_hostname_truncated_to_63_bytes(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    await client.acquire("eth0", MAC, hostname="h" * 100)
    assert fake.seen[0]["opts"][12] == b"h" * 63


async def test_renew_unicast_with_the_same_client_id_and_new_hostname(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    old = held(renewals=2, identity="web-1", client_id="00" + b"web-1".hex())
    old.hostname = "renamed"
    new = await client.renew("eth0", old)
    assert new.renewals == 3 and new.acquired > old.acquired and new.hostname == "renamed"
    assert (new.identity, new.client_id) == (old.identity, old.client_id)
    (req,) = fake.seen
    assert (req["src"], req["dst"], req["ciaddr"], req["flags"]) == ("192.168.1.20", "192.168.1.1", "192.168.1.20", 0)
    assert req["eth_dst"] == SERVER_MAC and req["eth_src"] == MAC and req["udp_csum_ok"]
    assert req["opts"][61] == b"\x00web-1" and req["opts"][12] == b"renamed"
    assert 50 not in req["opts"] and 54 not in req["opts"]  # RENEWING: ciaddr, no server id
    await client.renew("eth0", old, rebind=True)
    assert (fake.seen[1]["dst"], fake.seen[1]["eth_dst"]) == ("255.255.255.255", "ff:ff:ff:ff:ff:ff")  # REBINDING


async def test_renew_of_a_lease_from_an_old_state_file(lan):
    """A lease saved before issue 14 (no client_id field) renews with the MAC client-id it was acquired with."""
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    old = {"mac": MAC, "ip": "192.168.1.20", "prefixlen": 24, "server": "192.168.1.1", "server_mac": SERVER_MAC,
           "lease_time": 600, "t1": 300, "t2": 525, "acquired": 1000.0, "router": "", "hostname": "",
           "renewals": 0, "extra": {}}
    new = await client.renew("eth0", dhcp.Lease(**old))
    assert fake.seen[0]["opts"][61] == b"\x01" + bytes.fromhex(MAC.replace(":", ""))
    assert dhcp.Lease(**new.to_dict()) == new  # how the store keeps it


async def test_release_carries_the_client_id(lan):
    client = dhcp.Client()
    fake = lan(lambda req: None, client)
    await client.release("eth0", held(identity="web-1", client_id="00" + b"web-1".hex()))
    (req,) = fake.seen
    assert req["opts"][53] == bytes([dhcp.RELEASE]) and req["ciaddr"] == "192.168.1.20"
    assert req["opts"][61] == b"\x00web-1" and req["opts"][54] == ip4("192.168.1.1") and 55 not in req["opts"]
    assert (req["dst"], req["eth_dst"]) == ("192.168.1.1", SERVER_MAC)


async def test_decline_broadcasts_the_address_in_use(lan):
    client = dhcp.Client()
    fake = lan(lambda req: None, client)
    await client.decline("eth0", held(identity="web-1", client_id="00" + b"web-1".hex()))
    (req,) = fake.seen
    assert req["opts"][53] == bytes([dhcp.DECLINE]) and req["ciaddr"] == "0.0.0.0"
    assert req["opts"][50] == ip4("192.168.1.20") and req["opts"][54] == ip4("192.168.1.1")
    assert req["opts"][61] == b"\x00web-1" and 12 not in req["opts"] and 55 not in req["opts"]
    assert (req["dst"], req["eth_dst"], req["eth_src"]) == ("255.255.255.255", "ff:ff:ff:ff:ff:ff", MAC)


async def test_reboot_asks_for_a_lost_address_by_broadcast(lan):
    """INIT-REBOOT: the container no longer has the address (ciaddr 0), so the server answers by broadcast."""
    client = dhcp.Client(retries=1, timeout=1.0)
    fake = lan(server(), client)
    lost = held(lost_at=5000.0, lost_why="expired", renewals=4)
    new = await client.reboot("eth0", lost)
    assert (new.ip, new.lost_at, new.lost_why, new.renewals) == ("192.168.1.20", 0.0, "", 5)
    (req,) = fake.seen
    assert req["opts"][53] == bytes([dhcp.REQUEST]) and req["ciaddr"] == "0.0.0.0" and req["flags"] == 0x8000
    assert req["opts"][50] == ip4("192.168.1.20") and 54 not in req["opts"] and req["opts"][12] == b"web-1"
    client2 = dhcp.Client(retries=1, timeout=1.0)
    lan(server(nak=True), client2)
    with pytest.raises(dhcp.DhcpNak, match=r"refused to get back 192.168.1.20"):
        await client2.reboot("eth0", lost)


async def test_release_without_server_sends_nothing(lan):
    client = dhcp.Client()
    fake = lan(lambda req: None, client)
    await client.release("eth0", held(server="", server_mac=""))
    assert fake.taps == []


# ---------------------------------------------------------------- timers: clamps and the next action

@pytest.mark.parametrize("given_, want", [
    ((600, 300, 525), (600, 300, 525)),
    ((0, 0, 0), (60, 30, 52)),                         # lease 0, T1 0: no renewal storm
    ((3600, 1, 2), (3600, 1800, 3150)),                # T1 of 1 s ignored
    ((3600, None, None), (3600, 1800, 3150)),          # RFC 2131 defaults
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (dhcp.MAX_LEASE, dhcp.MAX_LEASE // 2, dhcp.MAX_LEASE * 7 // 8)),
    ((-1, -1, -1), (dhcp.MAX_LEASE, dhcp.MAX_LEASE // 2, dhcp.MAX_LEASE * 7 // 8)),  # pyroute2 decodes signed
    ((100, 5000, 10), (100, 50, 87)),                  # T1 beyond the lease, T2 before T1
    ((1000, 900, 800), (1000, 900, 901)),              # T2 <= T1 moved after T1
    ((1000, 999, None), (1000, 500, 875)),             # no room after T1: both defaults
])
def test_clamp_times(given_, want):
    notes: list[str] = []
    got = dhcp.clamp_times(*given_, notes)
    assert got == want
    lease, t1, t2 = got
    assert dhcp.MIN_LEASE <= lease <= dhcp.MAX_LEASE and dhcp.MIN_T1 <= t1 < t2 < lease
    changed = any(v is not None and v & 0xFFFFFFFF != g for v, g in zip(given_, got))
    assert bool(notes) == changed


def test_next_action_walks_renew_rebind_expired():
    lease = held(acquired=1000.0, lease_time=600, t1=300, t2=525)
    assert (lease.renew_at, lease.rebind_at, lease.expires) == (1300, 1525, 1600)
    assert dhcp.next_action(lease, 1000) == ("renew", 1300)
    assert dhcp.next_action(lease, 1400) == ("renew", 1300)  # due: do it now
    assert dhcp.next_action(lease, 1310, last_attempt=1300) == ("renew", 1412.5)  # half the way to T2
    assert dhcp.next_action(lease, 1520, last_attempt=1510) == ("renew", 1520)  # at least MIN_RETRY apart
    assert dhcp.next_action(lease, 1520, last_attempt=1518) == ("rebind", 1528)  # T2, not right after a try
    assert dhcp.next_action(lease, 1530) == ("rebind", 1530)
    assert dhcp.next_action(lease, 1530, last_attempt=1525) == ("rebind", 1562.5)
    assert dhcp.next_action(lease, 1595, last_attempt=1590) == ("expired", 1600)
    assert dhcp.next_action(lease, 1600) == ("expired", 1600)
    assert not lease.expired(1599.9) and lease.expired(1600)


def test_a_stored_lease_with_t1_zero_is_clamped_when_scheduled():
    lease = held(acquired=1000.0, lease_time=0, t1=0, t2=0)  # e.g. saved before the clamps existed
    assert dhcp.next_action(lease, 1000) == ("renew", 1030)
    assert lease.expires == 1060


@settings(max_examples=300, deadline=None)
@given(st.integers(-2**31, 2**32 - 1), st.one_of(st.none(), st.integers(-2**31, 2**32 - 1)),
       st.one_of(st.none(), st.integers(-2**31, 2**32 - 1)))
def test_dead_server_costs_a_bounded_number_of_tries(lease_time, t1, t2):
    """Whatever a server said, a renewal loop against a dead server tries a few times, spaced, then expires."""
    lease = held(acquired=0.0, lease_time=lease_time, t1=t1, t2=t2)
    now, last, tries = 0.0, None, []
    while True:
        action, at = dhcp.next_action(lease, now, last)
        assert at >= now - 1e-6 or action in ("renew", "rebind") and last is None
        now = max(now, at)
        if action == "expired":
            break
        tries.append(now)
        last = now
    assert now == lease.expires and lease.expires - lease.acquired >= dhcp.MIN_LEASE
    assert tries[0] >= dhcp.MIN_T1
    assert all(b - a >= min(dhcp.MIN_RETRY, lease.expires - a) - 1e-6 for a, b in zip(tries, tries[1:]))
    assert len(tries) <= 60


# ---------------------------------------------------------------- a hostile or broken server

async def test_zero_times_and_a_non_contiguous_mask_are_overridden(lan, caplog):
    client = dhcp.Client(retries=1, timeout=1.0)
    opts = [(1, ip4("255.0.255.0")), (54, ip4("192.168.1.1")), (51, u32(0)), (58, u32(0)), (59, u32(0))]
    lan(server(opts=opts), client)
    lease = await client.acquire("eth0", MAC, subnet=SUBNET)
    assert (lease.lease_time, lease.t1, lease.t2, lease.prefixlen) == (60, 30, 52, 24)
    assert any("255.0.255.0 ignored" in n for n in lease.notes) and any("lease time 0 s" in n for n in lease.notes)
    assert "adjusted" in caplog.text


async def test_mask_zero_and_infinite_lease(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    lan(server(opts=[(1, ip4("0.0.0.0")), (54, ip4("192.168.1.1")), (51, u32(0xFFFFFFFF))]), client)
    lease = await client.acquire("eth0", MAC, prefix_default=24)  # the old keyword: the prefix still wins
    assert (lease.prefixlen, lease.lease_time) == (24, dhcp.MAX_LEASE)
    assert lease.t1 < lease.t2 < lease.lease_time


async def test_no_options_but_the_type(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    lan(server(opts=[]), client)
    lease = await client.acquire("eth0", MAC, subnet=SUBNET)
    assert (lease.server, lease.router, lease.lease_time, lease.t1, lease.t2) == ("", "", 3600, 1800, 3150)


@pytest.mark.parametrize("yiaddr, why", [
    ("0.0.0.0", "0.0.0.0 is not a host address"),
    ("255.255.255.255", "255.255.255.255 is not a host address"),
    ("224.0.0.9", "224.0.0.9 is a multicast address"),
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("169.254.3.4", "169.254.3.4 is a link-local address"),
    ("10.9.9.9", "10.9.9.9 is outside the network's subnet 192.168.1.0/24"),
    ("192.168.1.255", "192.168.1.255 is the network or broadcast address of 192.168.1.0/24"),
    ("192.168.1.0", "192.168.1.0 is the network or broadcast address"),
])
async def test_unusable_offers_are_refused_at_once(lan, yiaddr, why):
    client = dhcp.Client(retries=3, timeout=0.3)
    fake = lan(server(yiaddr=yiaddr), client)
    with pytest.raises(dhcp.DhcpError, match="unusable address: " + why.replace(".", r"\.")) as ei:
        await client.acquire("eth0", MAC, subnet=SUBNET)
    assert f"for {MAC}" in str(ei.value)
    assert len(fake.seen) == 1  # the server answered: no second DISCOVER


async def test_a_good_offer_after_a_bad_one_is_taken(lan):
    client = dhcp.Client(retries=1, timeout=1.0)

    def two_servers(req):
        good = server()(req)
        if req["opts"][53][0] == dhcp.DISCOVER:
            bad = reply_frame(req["xid"], "0.0.0.0", req_mac(req), dhcp.OFFER, LEASE_OPTS,
                              server_mac="66:66:66:66:66:66")
            return [bad, good]
        return good

    lan(two_servers, client)
    assert (await client.acquire("eth0", MAC, subnet=SUBNET)).ip == "192.168.1.20"


async def test_ack_from_another_server_than_the_offerer_is_ignored(lan):
    client = dhcp.Client(retries=1, timeout=0.3)

    def rogue(req):
        if req["opts"][53][0] == dhcp.REQUEST:
            opts = [o for o in LEASE_OPTS if o[0] != 54] + [(54, ip4("192.168.1.66"))]
            return reply_frame(req["xid"], "192.168.1.20", req_mac(req), dhcp.ACK, opts)
        return server()(req)

    lan(rogue, client)
    with pytest.raises(dhcp.DhcpError, match="not from 192.168.1.1 which made the offer"):
        await client.acquire("eth0", MAC)


@pytest.mark.parametrize("raw, end, why", [
    (bytes([1, 3, 255, 255, 255]) + bytes([51, 4]) + u32(600), True, "option 1 is malformed"),  # mask of 3 bytes
    (bytes([51, 4, 0, 0]), False, "option 51 is malformed"),                                   # truncated, no END
    (bytes([51, 2, 0, 60]), True, "option 51 is malformed"),
    (bytes([58, 5]) + bytes(5), True, "option 58 is malformed"),
    (bytes([54, 3, 1, 2, 3]), True, "option 54 is malformed"),
    (bytes([61, 0]), True, "undecodable DHCP frame"),                                          # pyroute2 IndexError
])
async def test_malformed_options_are_a_clean_error(lan, raw, end, why):
    client = dhcp.Client(retries=2, timeout=0.3)

    def answer(req):
        if req["opts"][53][0] == dhcp.DISCOVER:
            return reply_frame(req["xid"], "192.168.1.20", req_mac(req), dhcp.OFFER, raw_opts=raw, end=end)
        return None

    fake = lan(answer, client)
    with pytest.raises(dhcp.DhcpError, match=why):
        await client.acquire("eth0", MAC)
    assert len(fake.seen) == 1


async def test_unknown_message_type_and_garbage_frames(lan):
    client = dhcp.Client(retries=1, timeout=0.3)

    def answer(req):
        frame = reply_frame(req["xid"], "192.168.1.20", req_mac(req), 99, LEASE_OPTS)
        return [frame[:60], frame[:300], reply_frame(req["xid"], "192.168.1.20", req_mac(req), None, LEASE_OPTS), frame]

    lan(answer, client)
    with pytest.raises(dhcp.DhcpError, match="no usable DHCP answer on eth0") as ei:
        await client.acquire("eth0", MAC)
    assert "option 53 is malformed" in str(ei.value)


async def test_acquire_nak(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    lan(server(nak=True, opts=[(56, b"address in use")]), client)
    with pytest.raises(dhcp.DhcpNak, match=r"refused the offered address 192.168.1.20 \(NAK: address in use\)"):
        await client.acquire("eth0", MAC)


async def test_renew_nak_and_renew_with_another_address_lose_the_lease(lan):
    client = dhcp.Client(retries=1, timeout=1.0)
    lan(server(nak=True), client)
    with pytest.raises(dhcp.DhcpNak, match=r"refused to renew 192.168.1.20"):
        await client.renew("eth0", held())
    client2 = dhcp.Client(retries=1, timeout=1.0)
    lan(server(yiaddr="192.168.1.21"), client2)
    with pytest.raises(dhcp.DhcpNak, match=r"with another address \(192.168.1.21\)"):
        await client2.renew("eth0", held())


async def test_no_server_answers(lan):
    client = dhcp.Client(retries=2, timeout=0.05)
    fake = lan(lambda req: None, client)
    with pytest.raises(dhcp.DhcpError, match=r"no DHCP server answered on eth0 \(2 tries") as ei:
        await client.acquire("eth0", MAC)
    assert "-o parent=eth0" in str(ei.value) and not isinstance(ei.value, dhcp.DhcpNak)
    assert len(fake.seen) == 2  # one DISCOVER per try
    assert fake.seen[1]["secs"] >= fake.seen[0]["secs"]


def mutate(frame: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(frame)
    for pos, val in edits:
        b[42 + 236 + pos % max(1, len(b) - 42 - 236)] = val  # anywhere in the options
    return bytes(b[:cut] if cut else b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(14, 400)))
def test_fuzzed_replies_give_a_sane_lease_or_a_dhcp_error(monkeypatch, edits, cut):
    async def run():
        client = dhcp.Client(retries=1, timeout=0.02)
        fake = FakeLan(lambda req: mutate(server()(req), edits, cut))
        monkeypatch.setattr(client, "_socket", fake.socket_for)
        try:
            lease = await client.acquire("eth0", MAC, subnet=SUBNET)
        except dhcp.DhcpError:
            return
        assert not dhcp.check_address(lease.ip, __import__("ipaddress").ip_network(SUBNET))
        assert lease.prefixlen == 24
        assert dhcp.MIN_LEASE <= lease.lease_time <= dhcp.MAX_LEASE
        assert dhcp.MIN_T1 <= lease.t1 < lease.t2 < lease.lease_time

    asyncio.run(run())

