"""How frames get to and from the LAN (why a packet socket)
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

from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket
from pyroute2.dhcp.messages import ReceivedDHCPMessage, SentDHCPMessage

from ..errors import KernelError
from .codec import (ACK, BROADCAST_MAC, DECLINE, DISCOVER, NAK, OFFER, RELEASE, REQUEST, DhcpError, DhcpNak, _mac_bytes,
                    _mask_prefix, _unicast, check_address, client_id_for, decode_reply, fqdn_option, request)
from .lease import Lease
from .link6 import open_raw
from .timers import clamp_times

log = logging.getLogger("pynet.dhcp")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_MR_UNICAST = 3

# ---------------------------------------------------------------- the client

class Client:
    """Each call opens its own tap on the parent; acquire's DISCOVER..ACK share one."""

    def __init__(self, retries: int = 3, timeout: float = 2.0):
        self.retries = retries
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def _socket(self, ifname: str, mac: str):
        """pyroute2's DHCP socket on `ifname`, also passing unicast frames to `mac` (a seam for tests)."""
        sock = await open_raw(AsyncDHCP4Socket(ifname), ifname, "DHCP")
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
        return await self._confirm(ifname, lease, msg, "renew")

    async def reboot(self, ifname: str, lease: Lease) -> Lease:
        """INIT-REBOOT (RFC 2131 3.2): a broadcast REQUEST for the address of a lease that ran out (the
        container no longer has it, so ciaddr is 0 and the answer comes by broadcast)."""
        xid = int.from_bytes(os.urandom(4), "big")
        payload = request(REQUEST, xid, lease.mac, lease.client_id_bytes(), requested=lease.ip,
                          hostname=lease.hostname, domain=lease.domain)
        return await self._confirm(ifname, lease, SentDHCPMessage(dhcp=payload, eth_src=lease.mac), "get back")

    async def _confirm(self, ifname: str, lease: Lease, msg: SentDHCPMessage, what: str) -> Lease:
        """Send a REQUEST for `lease.ip`; the renewed lease, or DhcpNak when the server says it is gone."""
        cid = lease.client_id_bytes()
        sent = time.time()
        async with self._socket(ifname, lease.mac) as sock:
            ack = await self._exchange(sock, ifname, msg, lease.mac, (ACK, NAK))
        if ack.dhcp["options"]["message_type"] == NAK:
            raise DhcpNak(f"the DHCP server refused to {what} {lease.ip} for {lease.mac} (NAK)")
        if ack.dhcp["yiaddr"] != lease.ip:
            raise DhcpNak(f"the DHCP server answered the request for {lease.ip} for {lease.mac} with another "
                          f"address ({ack.dhcp['yiaddr']}): {lease.ip} is no longer leased")
        new = self._lease(ack, lease.mac, lease.prefixlen, sent, hostname=lease.hostname, identity=lease.identity,
                          client_id=cid, domain=lease.domain)
        new.client_id, new.renewals, new.extra = lease.client_id, lease.renewals + 1, lease.extra
        if not new.server:
            new.server, new.server_mac = lease.server, lease.server_mac
        if not new.router:
            new.router = lease.router
        return new

    async def decline(self, ifname: str, lease: Lease) -> None:
        """DHCPDECLINE (broadcast, RFC 2131 3.1.5): the leased address is in use on the LAN; no answer expected."""
        xid = int.from_bytes(os.urandom(4), "big")
        payload = request(DECLINE, xid, lease.mac, lease.client_id_bytes(), requested=lease.ip, server=lease.server)
        async with self._socket(ifname, lease.mac) as sock:
            try:
                await sock.put(SentDHCPMessage(dhcp=payload, eth_src=lease.mac))
            except OSError as e:
                raise KernelError(f"cannot send DHCP on {ifname}: {e.strerror or e}") from None

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
