"""A DHCPv4 client that acts for a container's MAC from the host's parent interface.

Contract for the core (transparent mode, `--ipam-driver pynet`)
----------------------------------------------------------------
    client = dhcp.Client(retries=3, timeout=2.0)
    lease = await client.acquire(parent, mac, hostname="", prefix_default=24, *,
                                 identity=None, domain="", subnet=None)
    lease = await client.renew(parent, lease, rebind=False)
    await client.release(parent, lease)
    action, at = dhcp.next_action(lease, now, last_attempt=None)   # pure: "renew" | "rebind" | "expired"

- `identity`: a stable name for the container (its name, or the endpoint's), NOT the MAC. It becomes the
  client identifier (option 61) = type 0 + the identity's UTF-8 bytes (1..254 bytes), so a reservation by
  client-id (dnsmasq `dhcp-host=id:web1,192.168.1.50`; Kea/ISC: hex `00:77:65:62:31`) follows a container
  re-created with another MAC. Without it the client-id is the legacy type 1 + MAC (what pynet sent before).
  `client_id_for(identity)` gives the bytes. Renewals and the release repeat `lease.client_id`.
- `hostname`: option 12 (cut at 63 bytes). With `domain`, option 81 (client FQDN, RFC 4702) carries
  `hostname.domain` in wire format with flags S|E ("server, update the A record") INSTEAD of option 12,
  as RFC 4702 3.1 requires. To announce a new hostname later, set `lease.hostname` and call renew().
- The network's own prefix wins over the server's subnet mask (option 1): pass `subnet` (e.g.
  "192.168.1.0/24"; then the offered address must also lie inside it) or at least `prefix_default`.
  A mask that disagrees (or is no mask at all, e.g. 255.0.255.0) is logged and noted in `lease.notes`.
- Replies are checked before use: an address that is 0.0.0.0, broadcast, multicast, loopback,
  link-local, reserved, or outside `subnet` (or its network/broadcast address) is refused with a
  DhcpError naming it; malformed options (wrong lengths, truncated, unknown message type) make that
  reply unusable; if every answer in a try was unusable the DhcpError says why, without further tries.
- Lease time, T1 and T2 are clamped (`clamp_times`): MIN_LEASE <= lease <= MAX_LEASE,
  MIN_T1 <= T1 < T2 < lease (a T1 of 0 cannot cause a renewal storm). What was changed is in `notes`.
- Errors: DhcpNak (a subclass of DhcpError) means the server refused: the lease is gone, stop using the
  address (acquire again). Any other DhcpError is "no usable answer": retry per next_action() until
  "expired". KernelError: the parent cannot be opened.
- renew() needs the container's interface up with the leased address: a server unicasts a renewal's
  ACK to ciaddr (RFC 2131 4.1), i.e. ARPs for it. acquire() works before the container exists.
- What to persist: `lease.to_dict()`; `Lease(**d)` loads it (fields added since are defaulted, so
  older state files load). The core's renewal loop:
        action, at = next_action(lease, time.time(), last_attempt)
        sleep until `at`; if action == "expired": the address is no longer ours;
        else renew(parent, lease, rebind=(action == "rebind")) -> new lease, last_attempt = None;
             on DhcpNak: lease lost; on DhcpError: last_attempt = now, loop.

How frames get to and from the LAN (why a packet socket)
--------------------------------------------------------
The container's macvlan does not exist yet when the address is needed, so frames go out on the parent
from the host namespace with the container's MAC as Ethernet source and chaddr (broadcast flag set).
Replies, even unicast ones to a container's MAC, are seen there too: a packet socket bound to ETH_P_ALL
on a macvlan's lower device is a tap that runs before macvlan's rx_handler claims the frame (an
ETH_P_IP socket runs after, and misses unicast replies to container MACs). The socket also adds the
container MAC to the parent's unicast filter (PACKET_MR_UNICAST membership, dropped with the socket),
so a NIC that filters unicast in hardware still passes a server's unicast OFFER before the macvlan exists.
A classic BPF filter keeps only untagged UDP to port 68, so a busy LAN costs nothing.

What of pyroute2.dhcp (0.9.7) is used, and what did not fit
-----------------------------------------------------------
Used: the message codec `dhcp4msg` (header and options; subclassed to add option 81, which it lacks),
`SentDHCPMessage`/`ReceivedDHCPMessage`, and the socket `AsyncDHCP4Socket`: ETH_P_ALL tap with its BPF
filter (which also drops VLAN-tagged frames) and buffer clearing; `put()` frames a message with a given
Ethernet source (`eth_src` = the container MAC) and computes the IPv4 and UDP checksums.
Not used, with evidence:
- `AsyncDHCPClient` (the state machine) acts for the interface's own MAC: `_send_message` never sets
  `eth_src`/`chaddr`, so `put()` fills both from `ifname`'s MAC. Tried on the namespace LAN of
  tests/netns (ClientConfig(interface="up0", client_id=b"web1", handle_signals=False) against dnsmasq):
  it got BOUND, and the ACK's chaddr was up0's own MAC, not a container's. It also runs forever per
  interface with its own socket, netlink watcher and timers, takes SIGUSR1/SIGUSR2/SIGHUP, stores
  leases as JSON files in the working directory, and arms timers straight from the server's values
  (`LeaseTimers.arm`: a T1 of 1 s renews every second, a T1 of 0 is "in the past" and skipped), while
  pynet keeps hundreds of leases on one parent in its own state and renews from the core (design.md:
  lease keeping is called from the core, never reaching back into it).
- `messages.request_for_offer` raises KeyError on an OFFER without option 54, and
  `request_for_lease`/`release` need pyroute2's ack-backed `Lease`; building the few fields here is simpler.
- `leases.Lease.prefixlen` trusts option 1 (`dqn2int`), which pynet must not.
- The decoder is lenient and incomplete against a hostile server, so this module checks what it left:
  an option with a wrong length (mask of 3 bytes, lease time truncated) or an unknown message type stops
  decoding silently with an error log, and the options after it are lost (`check_complete` detects the
  stop); an empty client-id option raises IndexError out of `decode()`; lease time and T1/T2 are decoded
  signed (0xffffffff = -1); a router list of 3 bytes decodes as []. `ReceivedDHCPMessage`'s IPv4 decoder
  assumes a 20-byte header.
- `AsyncRawSocket.__aenter__` dumps every link over netlink and starts a link watcher per socket; one
  socket per exchange (DISCOVER..ACK share it) keeps that bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import struct
import time
from dataclasses import asdict, dataclass, field

from pyroute2.dhcp.dhcp4msg import dhcp4msg
from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket
from pyroute2.dhcp.enums.dhcp import MessageType, Option
from pyroute2.dhcp.messages import ReceivedDHCPMessage, SentDHCPMessage

from .errors import KernelError, PynetError

log = logging.getLogger("pynet.dhcp")

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
FLAG_BROADCAST = 0x8000
PARAMETERS = [Option.SUBNET_MASK, Option.ROUTER, Option.LEASE_TIME, Option.RENEWAL_TIME, Option.REBINDING_TIME]

# Sane bounds for what a server says (seconds). A shorter lease is taken as MIN_LEASE (the server may
# consider it gone earlier: a server handing out sub-minute leases is broken, and renewing it faster
# would be a storm); "infinite" (0xffffffff) and anything longer is taken as MAX_LEASE, which only
# means pynet renews at least every MAX_LEASE/2.
MIN_LEASE = 60
MAX_LEASE = 30 * 86400
MIN_T1 = 30  # never renew sooner than this after an ACK (lease >= 60 gives lease // 2 >= 30)
MIN_RETRY = 10  # after a failed renewal, wait at least this long (RFC 2131 says 60 s; leases here are short)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_MR_UNICAST = 3


class DhcpError(PynetError):
    pass


class DhcpNak(DhcpError):
    """The server refused (DHCPNAK, or a renewal answered with another address): the lease is gone."""


@dataclass
class Lease:
    mac: str
    ip: str
    prefixlen: int
    server: str
    server_mac: str
    lease_time: int
    t1: int
    t2: int
    acquired: float  # epoch seconds when the REQUEST that got the last ACK was sent
    router: str = ""
    hostname: str = ""
    renewals: int = 0
    extra: dict = field(default_factory=dict)
    # Added for issue 14; defaults keep older state files loadable.
    identity: str = ""  # the stable identity the client-id was derived from ("" = legacy MAC client-id)
    client_id: str = ""  # option 61 as sent, hex; "" = legacy type 1 + MAC
    domain: str = ""  # with hostname: option 81 carries hostname.domain
    notes: list = field(default_factory=list)  # what pynet overrode in the server's last answer

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def expires(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[0]

    @property
    def renew_at(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[1]

    @property
    def rebind_at(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[2]

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}" if self.hostname and self.domain else ""

    def client_id_bytes(self) -> bytes:
        if self.client_id:
            try:
                return bytes.fromhex(self.client_id)
            except ValueError:
                pass
        return b"\x01" + _mac_bytes(self.mac)


# ---------------------------------------------------------------- pure helpers (timers, identity, checks)

def clamp_times(lease_time: int, t1: int | None, t2: int | None, notes: list | None = None) -> tuple[int, int, int]:
    """(lease, T1, T2) within MIN_LEASE <= lease <= MAX_LEASE and MIN_T1 <= T1 < T2 < lease.

    Values are read as unsigned 32-bit (0xffffffff = infinite). A missing or impossible T1/T2 becomes
    RFC 2131's default (lease/2, lease*7/8). `notes` collects what was changed.
    """
    def note(msg: str) -> None:
        if notes is not None:
            notes.append(msg)

    raw = int(lease_time) & 0xFFFFFFFF
    lease = min(max(raw, MIN_LEASE), MAX_LEASE)
    if lease != raw:
        note(f"lease time {raw} s taken as {lease} s")
    d1, d2 = lease // 2, lease * 7 // 8
    a = None if t1 is None else int(t1) & 0xFFFFFFFF
    b = None if t2 is None else int(t2) & 0xFFFFFFFF
    if a is None or not MIN_T1 <= a < lease:
        if a is not None:
            note(f"T1 {a} s taken as {d1} s")
        a = d1
    if b is None or not a < b < lease:
        if b is not None:
            note(f"T2 {b} s taken as {max(d2, a + 1)} s")
        b = max(d2, a + 1)
        if b >= lease:  # T1 close to the lease end: fall back to both defaults
            note(f"T1 {a} s leaves no room for T2: T1 {d1} s, T2 {d2} s")
            a, b = d1, d2
    return lease, a, b


def schedule(acquired: float, t1: float, t2: float, lifetime: float, now: float,
             last_attempt: float | None = None, min_retry: float = MIN_RETRY) -> tuple[str, float]:
    """The next step of a lease, as (action, at): "renew" / "rebind" at epoch `at`, or "expired".

    `t1`, `t2`, `lifetime` are seconds after `acquired` (already clamped). After a failed attempt
    (`last_attempt`), the next one comes after half the time left to the next deadline, at least
    `min_retry` later (RFC 2131 4.4.5 / RFC 8415 18.2.4), so a dead server costs a few packets per lease.
    """
    renew_at, rebind_at, expires = acquired + t1, acquired + t2, acquired + lifetime
    if now >= expires:
        return "expired", expires
    if last_attempt is None or last_attempt < renew_at:
        return ("renew", renew_at) if now < rebind_at else ("rebind", max(rebind_at, now))
    if last_attempt < rebind_at:
        at = last_attempt + max(min_retry, (rebind_at - last_attempt) / 2)
        if at < rebind_at:
            return "renew", at
        at = max(rebind_at, last_attempt + min_retry)  # REBINDING starts at T2, but not right after a try
    else:
        at = last_attempt + max(min_retry, (expires - last_attempt) / 2)
    return ("rebind", at) if at < expires else ("expired", expires)


def next_action(lease: Lease, now: float, last_attempt: float | None = None) -> tuple[str, float]:
    """What the core's renewal loop does next for `lease` at time `now`: see `schedule`."""
    lifetime, t1, t2 = clamp_times(lease.lease_time, lease.t1, lease.t2)
    return schedule(lease.acquired, t1, t2, lifetime, now, last_attempt)


def client_id_for(identity: str) -> bytes:
    """Option 61 for a stable identity: type 0 (not a hardware address, RFC 2132 9.14) + UTF-8 bytes."""
    raw = identity.encode() if isinstance(identity, str) else b""
    if not 1 <= len(raw) <= 254:
        raise DhcpError(f"DHCP identity {identity!r} must be 1 to 254 bytes (it becomes the client-id)")
    return b"\x00" + raw


def fqdn_option(hostname: str, domain: str) -> bytes:
    """Option 81 (RFC 4702): flags S|E (server updates A; canonical wire format), RCODEs 0, the name."""
    name = f"{hostname}.{domain}".strip(".")
    wire = b""
    for label in name.split("."):
        raw = label.encode()
        if not 1 <= len(raw) <= 63:
            raise DhcpError(f"DHCP FQDN {name!r}: each label must be 1 to 63 bytes")
        wire += bytes([len(raw)]) + raw
    wire += b"\0"
    if len(wire) > 255 - 3:
        raise DhcpError(f"DHCP FQDN {name!r} is too long")
    return bytes([0x05, 0, 0]) + wire


def check_address(ip: str, subnet: ipaddress.IPv4Network | None) -> str:
    """Why `ip` cannot be a container's address ("" when it can)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return f"{ip!r} is not an IPv4 address"
    if addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"{addr} is not a host address"
    for test, what in ((addr.is_multicast, "multicast"), (addr.is_loopback, "loopback"),
                       (addr.is_link_local, "link-local"), (addr.is_reserved, "reserved")):
        if test:
            return f"{addr} is a {what} address"
    if subnet is not None:
        if addr not in subnet:
            return f"{addr} is outside the network's subnet {subnet}"
        if subnet.prefixlen <= 30 and addr in (subnet.network_address, subnet.broadcast_address):
            return f"{addr} is the network or broadcast address of {subnet}"
    return ""


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _mask_prefix(mask: str) -> int | None:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None


def _unicast(value) -> str:
    return value if isinstance(value, str) and not check_address(value, None) else ""


# ---------------------------------------------------------------- the codec: pyroute2's, plus option 81

class Message(dhcp4msg):
    """pyroute2's DHCPv4 codec with the client FQDN option (81), which it does not define."""

    options = dhcp4msg.options + ((Option.CLIENT_FQDN, "array8"),)


def check_complete(msg: dhcp4msg) -> str:
    """Why pyroute2's decoder stopped before the end of the options ("" when it did not).

    dhcpmsg.decode() logs and breaks out of its loop on an option it cannot decode (wrong length,
    truncated, unknown message type): everything after it is silently lost. It leaves `offset` on the
    offending option, while a complete decode stops on END (255) or at the end of the buffer.
    """
    buf, off = msg.buf, msg.offset
    if off < len(buf) and buf[off] != Option.END:
        length = buf[off + 1] if off + 1 < len(buf) else None
        return f"option {buf[off]} is malformed (length {length}, {len(buf) - off - 2} bytes left)"
    return ""


def request(msg_type: int, xid: int, mac: str, client_id: bytes, *, ciaddr: str = "0.0.0.0",
            requested: str = "", server: str = "", hostname: str = "", domain: str = "",
            broadcast: bool = True) -> Message:
    """A client message (not yet encoded): what pynet sends for a container."""
    cid = {"type": client_id[0], "key": client_id[1:]}
    if client_id[0] == 1 and len(client_id) == 7:
        cid["key"] = ":".join(f"{b:02x}" for b in client_id[1:])  # pyroute2 wants a MAC string for type 1
    opts: dict = {"message_type": MessageType(msg_type), "client_id": cid}
    if requested:
        opts["requested_ip"] = requested
    if server:
        opts["server_id"] = server
    if msg_type != RELEASE:
        if hostname and domain:
            opts["client_fqdn"] = fqdn_option(hostname, domain)
        elif hostname:
            opts["host_name"] = hostname.encode()[:63].decode(errors="ignore")
    if msg_type in (DISCOVER, REQUEST):
        opts["parameter_list"] = list(PARAMETERS)
    return Message({"op": 1, "xid": xid, "flags": FLAG_BROADCAST if broadcast else 0, "ciaddr": ciaddr,
                    "chaddr": mac, "options": opts})


def decode_reply(raw: ReceivedDHCPMessage | bytes) -> ReceivedDHCPMessage:
    """A server's message from a frame (or as pyroute2's socket decoded it), checked; DhcpError if unusable."""
    try:
        msg = raw if isinstance(raw, ReceivedDHCPMessage) else AsyncDHCP4Socket._decode_msg(raw)
    except Exception as e:  # noqa: BLE001 - pyroute2 raises ValueError, IndexError, ... on hostile input
        raise DhcpError(f"undecodable DHCP frame ({type(e).__name__}: {e})") from None
    why = check_complete(msg.dhcp)
    if why:
        raise DhcpError(f"malformed DHCP reply from {msg.eth_src}: {why}")
    if msg.dhcp.get("op") != 2:
        raise DhcpError("not a BOOTREPLY")
    if "message_type" not in msg.dhcp["options"]:
        raise DhcpError(f"DHCP reply from {msg.eth_src} has no message type")
    return msg


# ---------------------------------------------------------------- the client

class Client:
    """Each call opens its own tap on the parent; acquire's DISCOVER..ACK share one."""

    def __init__(self, retries: int = 3, timeout: float = 2.0):
        self.retries = retries
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def _socket(self, ifname: str, mac: str):
        """pyroute2's DHCP socket on `ifname`, also passing unicast frames to `mac` (a seam for tests)."""
        sock = AsyncDHCP4Socket(ifname)
        try:
            await sock.__aenter__()
        except OSError as e:
            with contextlib.suppress(Exception):
                if sock._l2addr_watcher is not None:
                    await sock.__aexit__()
                else:
                    sock.close()
            raise KernelError(f"cannot open a packet socket on {ifname} for DHCP: "
                              f"{e.strerror or e}") from None
        try:
            mreq = struct.pack("iHH8s", sock.ifindex, PACKET_MR_UNICAST, 6, _mac_bytes(mac))
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as e:  # only matters on NICs that filter unicast before any macvlan exists
            log.debug("no unicast membership", extra={"fields": {"ifname": ifname, "mac": mac, "error": str(e)}})
        try:
            yield sock
        finally:
            await sock.__aexit__()

    async def _exchange(self, sock, ifname: str, msg: SentDHCPMessage, mac: str, want: tuple[int, ...],
                        check=None) -> ReceivedDHCPMessage:
        """Send `msg` up to `retries` times; the first valid reply of a wanted type for our xid and MAC.

        `check(reply) -> str` refuses a reply with a reason. If every answer in one try was refused
        or malformed, the DhcpError says why at once (the server did answer; asking again won't help).
        """
        loop = asyncio.get_running_loop()
        xid = msg.dhcp["xid"]
        for _ in range(self.retries):
            refused: list[str] = []
            try:
                await sock.put(msg)
            except OSError as e:
                raise KernelError(f"cannot send DHCP on {ifname}: {e.strerror or e}") from None
            deadline = loop.time() + self.timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    got = await asyncio.wait_for(sock.get(), left)
                except asyncio.TimeoutError:
                    break
                except OSError as e:
                    raise KernelError(f"cannot receive DHCP on {ifname}: {e.strerror or e}") from None
                except Exception as e:  # noqa: BLE001 - pyroute2's decoder on a hostile frame
                    refused.append(f"undecodable DHCP frame ({type(e).__name__}: {e})")
                    continue
                if got.sport != 67 or got.dport != 68 or got.dhcp.get("xid") != xid:
                    continue
                try:
                    reply = decode_reply(got)
                except DhcpError as e:
                    refused.append(str(e))
                    continue
                if reply.dhcp.get("chaddr") != mac:
                    continue
                if reply.dhcp["options"]["message_type"] not in want:
                    continue
                why = check(reply) if check else ""
                if why:
                    refused.append(why)
                    continue
                return reply
            if refused:
                raise DhcpError(f"no usable DHCP answer on {ifname} for {mac}: " + "; ".join(dict.fromkeys(refused)))
            msg.dhcp["secs"] = min(int(msg.dhcp.get("secs") or 0) + int(self.timeout), 0xFFFF)
        raise DhcpError(f"no DHCP server answered on {ifname} ({self.retries} tries, {self.timeout:g} s each); "
                        f"is the LAN's DHCP server reachable from -o parent={ifname}?")

    @staticmethod
    def _lease(reply: ReceivedDHCPMessage, mac: str, prefix: int, sent: float, *, hostname: str = "",
               identity: str = "", client_id: bytes = b"", domain: str = "",
               subnet: ipaddress.IPv4Network | None = None) -> Lease:
        o = reply.dhcp["options"]
        notes: list[str] = []
        lease_time, t1, t2 = clamp_times(o.get("lease_time", 3600), o.get("renewal_time"),
                                         o.get("rebinding_time"), notes)
        if "lease_time" not in o:
            notes.append("no lease time given: 3600 s assumed")
        mask = o.get("subnet_mask")
        if mask is not None:
            server_prefix = _mask_prefix(mask) if isinstance(mask, str) else None
            if server_prefix != prefix:
                notes.append(f"server's subnet mask {mask} ignored: the network's prefix is /{prefix}")
        routers = o.get("router") or []
        router = _unicast(routers[0]) if isinstance(routers, list) and routers else ""
        if router and subnet is not None and ipaddress.IPv4Address(router) not in subnet:
            notes.append(f"router {router} outside {subnet} ignored")
            router = ""
        if notes:
            log.warning("DHCP server's answer adjusted", extra={"fields": {
                "mac": mac, "ip": reply.dhcp["yiaddr"], "server_mac": reply.eth_src, "notes": notes}})
        return Lease(mac=mac, ip=reply.dhcp["yiaddr"], prefixlen=prefix, server=_unicast(o.get("server_id")),
                     server_mac=reply.eth_src, lease_time=lease_time, t1=t1, t2=t2, acquired=sent, router=router,
                     hostname=hostname, identity=identity, client_id=client_id.hex() if identity else "",
                     domain=domain, notes=notes)

    async def acquire(self, ifname: str, mac: str, hostname: str = "", prefix_default: int = 24, *,
                      identity: str | None = None, domain: str = "", subnet: str | None = None) -> Lease:
        """DISCOVER/OFFER/REQUEST/ACK for `mac` on `ifname`; see the module's contract."""
        net = ipaddress.IPv4Network(subnet, strict=False) if subnet else None
        prefix = net.prefixlen if net else prefix_default
        cid = client_id_for(identity) if identity else b"\x01" + _mac_bytes(mac)
        if hostname and domain:
            fqdn_option(hostname, domain)  # refuse a bad name before anything is sent
        xid = int.from_bytes(os.urandom(4), "big")
        mac = mac.lower()

        def usable(reply: ReceivedDHCPMessage) -> str:
            if reply.dhcp["options"]["message_type"] == NAK:
                return ""
            why = check_address(reply.dhcp["yiaddr"], net)
            return f"server {reply.eth_src} offered an unusable address: {why}" if why else ""

        async with self._socket(ifname, mac) as sock:
            disc = request(DISCOVER, xid, mac, cid, hostname=hostname, domain=domain)
            offer = await self._exchange(sock, ifname, SentDHCPMessage(dhcp=disc, eth_src=mac), mac, (OFFER,),
                                         usable)
            ip, server = offer.dhcp["yiaddr"], _unicast(offer.dhcp["options"].get("server_id"))

            def from_offerer(reply: ReceivedDHCPMessage) -> str:
                sid = _unicast(reply.dhcp["options"].get("server_id"))
                if server and sid and sid != server:
                    return f"answer from {sid}, not from {server} which made the offer"
                if reply.dhcp["options"]["message_type"] == ACK and reply.dhcp["yiaddr"] != ip:
                    return f"ACK for {reply.dhcp['yiaddr']}, not for the offered {ip}"
                return usable(reply)

            req = request(REQUEST, xid, mac, cid, requested=ip, server=server, hostname=hostname, domain=domain)
            sent = time.time()
            ack = await self._exchange(sock, ifname, SentDHCPMessage(dhcp=req, eth_src=mac), mac, (ACK, NAK),
                                       from_offerer)
        if ack.dhcp["options"]["message_type"] == NAK:
            why = ack.dhcp["options"].get("message")
            raise DhcpNak(f"the DHCP server on {ifname} refused the offered address {ip} "
                          f"(NAK{': ' + str(why) if why else ''})")
        return self._lease(ack, mac, prefix, sent, hostname=hostname, identity=identity or "", client_id=cid,
                           domain=domain, subnet=net)

    async def renew(self, ifname: str, lease: Lease, rebind: bool = False) -> Lease:
        """RENEWING (unicast to the server) or REBINDING (broadcast), with the lease's client-id and name."""
        xid = int.from_bytes(os.urandom(4), "big")
        cid = lease.client_id_bytes()
        payload = request(REQUEST, xid, lease.mac, cid, ciaddr=lease.ip, hostname=lease.hostname,
                          domain=lease.domain, broadcast=False)
        if rebind or not lease.server or not lease.server_mac:
            msg = SentDHCPMessage(dhcp=payload, eth_src=lease.mac, ip_src=lease.ip)
        else:
            msg = SentDHCPMessage(dhcp=payload, eth_src=lease.mac, ip_src=lease.ip, ip_dst=lease.server,
                                  eth_dst=lease.server_mac)
        sent = time.time()
        async with self._socket(ifname, lease.mac) as sock:
            ack = await self._exchange(sock, ifname, msg, lease.mac, (ACK, NAK))
        if ack.dhcp["options"]["message_type"] == NAK:
            raise DhcpNak(f"the DHCP server refused to renew {lease.ip} for {lease.mac} (NAK)")
        if ack.dhcp["yiaddr"] != lease.ip:
            raise DhcpNak(f"the DHCP server answered the renewal of {lease.ip} for {lease.mac} with another "
                          f"address ({ack.dhcp['yiaddr']}): {lease.ip} is no longer leased")
        new = self._lease(ack, lease.mac, lease.prefixlen, sent, hostname=lease.hostname, identity=lease.identity,
                          client_id=cid, domain=lease.domain)
        new.client_id, new.renewals, new.extra = lease.client_id, lease.renewals + 1, lease.extra
        if not new.server:
            new.server, new.server_mac = lease.server, lease.server_mac
        if not new.router:
            new.router = lease.router
        return new

    async def release(self, ifname: str, lease: Lease) -> None:
        """DHCPRELEASE, unicast to the server, with the lease's client-id; no answer is expected."""
        if not lease.server:
            return
        xid = int.from_bytes(os.urandom(4), "big")
        payload = request(RELEASE, xid, lease.mac, lease.client_id_bytes(), ciaddr=lease.ip, server=lease.server,
                          broadcast=False)
        msg = SentDHCPMessage(dhcp=payload, eth_src=lease.mac, ip_src=lease.ip, ip_dst=lease.server,
                              eth_dst=lease.server_mac or BROADCAST_MAC)
        async with self._socket(ifname, lease.mac) as sock:
            try:
                await sock.put(msg)
            except OSError as e:
                raise KernelError(f"cannot send DHCP on {ifname}: {e.strerror or e}") from None
