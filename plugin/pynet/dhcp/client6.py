"""A DHCPv6 client (IA_NA, RFC 8415) acting for a container's MAC from the host's parent interface.

Contract for the core (transparent mode, IPv6 from the LAN's DHCPv6 server)
---------------------------------------------------------------------------
    client = dhcp6.Client6(retries=3, timeout=2.0)
    lease = await client.acquire(parent, mac, identity, *, hostname="", domain="", prefix=None)
    lease = await client.renew(parent, lease, rebind=False)
    await client.release(parent, lease)
    action, at = dhcp6.next_action(lease, now, last_attempt=None)   # pure: "renew" | "rebind" | "expired"

- SOLICIT -> first usable ADVERTISE -> REQUEST -> REPLY. RENEW (with the server's id) / REBIND (without),
  RELEASE (waits briefly for the REPLY; a silent server is only logged). All go to ff02::1:2 from the
  container's link-local address (EUI-64 of `mac`) with the container's MAC as Ethernet source; see
  link6.py for how replies are heard and how the server's Neighbor Solicitation for that address is
  answered while the container's interface does not exist yet.
- `identity` (the same stable name as for DHCPv4: the container's or endpoint's name, not the MAC) gives
  the DUID: DUID-UUID (RFC 6355, type 4) = 00:04 + uuid5(IDENTITY_NAMESPACE, identity), and the IAID = the
  first 4 bytes of that UUID. A DUID-LL/LLT from the MAC would change with the MAC; DUID-EN needs an
  enterprise number pynet does not have. `duid_for(identity)` gives the bytes for an admin's reservation
  (dnsmasq: `dhcp-host=id:00:04:...,[fd00::50]`); the lease shows it as `duid`. Without an identity ("")
  the DUID is DUID-LL of the MAC (00:03:00:01 + MAC) and the IAID its last 4 bytes: what an admin can
  reserve for by MAC, and what changes with the MAC.
- `hostname` with `domain`: option 39 (client FQDN, flag S: the server updates AAAA); `hostname` alone is
  sent as a single-label (partial) name. DHCPv6 carries no prefix length: `prefix` (the network's IPv6
  subnet) gives `lease.prefixlen` (else 64) and the address must lie inside it.
- Checked before use: the reply's transaction id and client id; status codes (top level, IA_NA, IAADDR);
  the address (not ::, loopback, multicast, link-local, IPv4-mapped, or outside `prefix`); an IAADDR whose
  preferred lifetime exceeds its valid lifetime is discarded (RFC 8415 21.6). Malformed options are a
  DhcpError. Valid lifetime, T1, T2 are clamped as for DHCPv4 (dhcp.clamp_times over the valid lifetime;
  T1/T2 of 0 = "client's choice" = 0.5 / 0.875 of it); what changed is in `lease.notes`.
- Errors: dhcp.DhcpNak when the server says the binding is gone (NoBinding, a zero valid lifetime, another
  address, NoAddrsAvail on renewal): stop using the address. Other dhcp.DhcpError: retry per next_action().
- Persist `lease.to_dict()`; `Lease6(**d)` loads it.
"""


from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import struct
import time

from . import link6
from .codec import DhcpError, DhcpNak
from .codec6 import (ADVERTISE, DECLINE, NAMES, OPT_CLIENTID, OPT_DNS_SERVERS, OPT_ELAPSED_TIME, OPT_IA_NA,
                     OPT_ORO, OPT_SERVERID, OPT_STATUS_CODE, REBIND, RELEASE, RENEW, REPLY, REQUEST, SOLICIT, STATUS_NAMES,
                     SUCCESS, IaAddr, IaNa, Message, build, check_address6, duid_for, duid_ll, first, fqdn_option,
                     ia_na, iaid_for, iaid_ll, option, parse, parse_ia_na, status)
from .lease import Lease6, next_action6
from .timers import clamp_times

log = logging.getLogger("pynet.dhcp6")
next_action = next_action6  # client6.next_action(lease, now, last_attempt), as dhcp.next_action for v4

# ---------------------------------------------------------------- the lease

# ---------------------------------------------------------------- the client

class Client6:
    """Each call opens its own link6.Tap on the parent."""

    def __init__(self, retries: int = 3, timeout: float = 2.0):
        self.retries = retries
        self.timeout = timeout

    def _tap(self, ifname: str, mac: str) -> link6.Tap:
        return link6.Tap(ifname, mac)  # a seam for tests

    async def _exchange(self, tap, ifname: str, mac: str, make, txid: int, want: tuple[int, ...], duid: bytes,
                        check=None, retries: int | None = None) -> tuple[Message, link6.Frame6]:
        """Send `make(elapsed_cs)` up to `retries` times; the first valid answer of a wanted type.

        `check(msg) -> str` refuses an answer with a reason; if every answer of a try was refused or
        malformed, DhcpError says why at once.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        tries = retries or self.retries
        for _ in range(tries):
            refused: list[str] = []
            elapsed = min(int((loop.time() - start) * 100), 0xFFFF)
            await tap.send(make(elapsed))
            deadline = loop.time() + self.timeout
            while (left := deadline - loop.time()) > 0:
                frame = await tap.recv(left)
                if frame is None:
                    break
                udp = frame.udp
                if udp is None or udp[0] != link6.SERVER_PORT or udp[1] != link6.CLIENT_PORT:
                    continue
                if frame.dst != link6.link_local(mac) and frame.dst_mac != mac:
                    continue
                try:
                    msg = parse(udp[2])
                except DhcpError as e:
                    if len(udp[2]) >= 4 and int.from_bytes(udp[2][1:4], "big") == txid:
                        refused.append(f"{e} (from {frame.src_mac})")
                    continue
                if msg.txid != txid or msg.type not in want:
                    continue
                if msg.client_id != duid:
                    continue  # for another client (RFC 8415 16: MUST match)
                if not msg.server_id:
                    refused.append(f"{NAMES.get(msg.type, msg.type)} from {frame.src_mac} has no server id")
                    continue
                try:
                    why = check(msg) if check else ""
                except DhcpError as e:
                    why = str(e)
                if why:
                    refused.append(why)
                    continue
                return msg, frame
            if refused:
                raise DhcpError(f"no usable DHCPv6 answer on {ifname} for {mac}: " + "; ".join(dict.fromkeys(refused)))
        raise DhcpError(f"no DHCPv6 server answered on {ifname} ({tries} tries, {self.timeout:g} s each); "
                        f"is the LAN's DHCPv6 server reachable from -o parent={ifname}?")

    @staticmethod
    def _binding(msg: Message, iaid: int, prefix: ipaddress.IPv6Network | None,
                 want_ip: str = "") -> tuple[IaNa, IaAddr]:
        """The IA_NA and its usable address in `msg`; DhcpError (DhcpNak for a lost binding) otherwise."""
        code, text = status(first(msg.options, OPT_STATUS_CODE))
        lost = DhcpNak if want_ip else DhcpError
        if code != SUCCESS:
            raise lost(f"DHCPv6 server refused: {STATUS_NAMES.get(code, code)} {text}".strip())
        ias = [parse_ia_na(v) for c, v in msg.options if c == OPT_IA_NA]
        ia = next((i for i in ias if i.iaid == iaid), None)
        if ia is None:
            raise lost("DHCPv6 answer without our IA_NA")
        if ia.status[0] != SUCCESS:
            raise lost(f"DHCPv6 server refused: {STATUS_NAMES.get(ia.status[0], ia.status[0])} {ia.status[1]}".strip())
        usable, why = [], []
        for a in ia.addrs:
            if a.status[0] != SUCCESS:
                why.append(f"{a.ip}: {STATUS_NAMES.get(a.status[0], a.status[0])}")
            elif a.valid == 0:
                why.append(f"{a.ip}: valid lifetime 0")
            elif a.preferred > a.valid:
                why.append(f"{a.ip}: preferred lifetime {a.preferred} > valid {a.valid}")
            elif bad := check_address6(a.ip, prefix):
                why.append(bad)
            else:
                usable.append(a)
        if want_ip:
            kept = [a for a in usable if a.ip == want_ip]
            if not kept:
                raise DhcpNak(f"DHCPv6 server no longer leases {want_ip}" + (f" ({'; '.join(why)})" if why else ""))
            return ia, kept[0]
        if not usable:
            raise DhcpError("DHCPv6 answer with no usable address" + (f": {'; '.join(why)}" if why else ""))
        return ia, usable[0]

    @staticmethod
    def _lease(mac: str, ia: IaNa, addr: IaAddr, msg: Message, frame: link6.Frame6, sent: float, prefixlen: int,
               duid: bytes, identity: str, hostname: str, domain: str) -> Lease6:
        notes: list[str] = []
        valid, t1, t2 = clamp_times(addr.valid, ia.t1 or None, ia.t2 or None, notes)
        preferred = min(addr.preferred, valid)
        if notes:
            log.warning("DHCPv6 server's answer adjusted", extra={"fields": {
                "mac": mac, "ip": addr.ip, "server_mac": frame.src_mac, "notes": notes}})
        return Lease6(mac=mac, ip=addr.ip, prefixlen=prefixlen, iaid=ia.iaid, duid=duid.hex(),
                      server_duid=msg.server_id.hex(), server_ip=str(frame.src), server_mac=frame.src_mac,
                      t1=t1, t2=t2, preferred=preferred, valid=valid, acquired=sent, identity=identity,
                      hostname=hostname, domain=domain, notes=notes)

    def _frame(self, mac: str, msg: bytes) -> bytes:
        return link6.udp6_frame(mac, link6.multicast_mac(link6.ALL_DHCP), link6.link_local(mac), link6.ALL_DHCP,
                                link6.CLIENT_PORT, link6.SERVER_PORT, msg)

    @staticmethod
    def _common(duid: bytes, elapsed: int, hostname: str, domain: str) -> list[bytes]:
        opts = [option(OPT_CLIENTID, duid), option(OPT_ELAPSED_TIME, struct.pack("!H", elapsed)),
                option(OPT_ORO, struct.pack("!H", OPT_DNS_SERVERS))]
        if hostname:
            opts.append(fqdn_option(hostname, domain))
        return opts

    async def acquire(self, ifname: str, mac: str, identity: str, *, hostname: str = "", domain: str = "",
                      prefix: str | None = None) -> Lease6:
        mac = mac.lower()
        duid, iaid = (duid_for(identity), iaid_for(identity)) if identity else (duid_ll(mac), iaid_ll(mac))
        net = ipaddress.IPv6Network(prefix, strict=False) if prefix else None
        if hostname:
            fqdn_option(hostname, domain)  # refuse a bad name before anything is sent
        txid = int.from_bytes(os.urandom(3), "big")

        def usable(msg: Message) -> str:
            self._binding(msg, iaid, net)  # raises DhcpError with the reason
            return ""

        async with self._tap(ifname, mac) as tap:
            adv, _ = await self._exchange(
                tap, ifname, mac,
                lambda el: self._frame(mac, build(SOLICIT, txid, self._common(duid, el, hostname, domain)
                                                  + [ia_na(iaid)])),
                txid, (ADVERTISE,), duid, usable)
            _, offered = self._binding(adv, iaid, net)
            server_id = adv.server_id
            txid = int.from_bytes(os.urandom(3), "big")
            sent = time.time()
            reply, frame = await self._exchange(
                tap, ifname, mac,
                lambda el: self._frame(mac, build(REQUEST, txid, self._common(duid, el, hostname, domain)
                                                  + [option(OPT_SERVERID, server_id), ia_na(iaid, [offered.ip])])),
                txid, (REPLY,), duid)
        ia, addr = self._binding(reply, iaid, net)
        return self._lease(mac, ia, addr, reply, frame, sent, net.prefixlen if net else 64, duid, identity,
                           hostname, domain)

    async def renew(self, ifname: str, lease: Lease6, rebind: bool = False) -> Lease6:
        """RENEW (to the server that granted the lease) or REBIND (any server); the same DUID and IAID."""
        duid = bytes.fromhex(lease.duid)
        txid = int.from_bytes(os.urandom(3), "big")
        server = [] if rebind else [option(OPT_SERVERID, bytes.fromhex(lease.server_duid))]
        sent = time.time()
        async with self._tap(ifname, lease.mac) as tap:
            reply, frame = await self._exchange(
                tap, ifname, lease.mac,
                lambda el: self._frame(lease.mac, build(REBIND if rebind else RENEW, txid,
                                                        self._common(duid, el, lease.hostname, lease.domain) + server
                                                        + [ia_na(lease.iaid, [lease.ip])])),
                txid, (REPLY,), duid)
        ia, addr = self._binding(reply, lease.iaid, None, want_ip=lease.ip)
        new = self._lease(lease.mac, ia, addr, reply, frame, sent, lease.prefixlen, duid, lease.identity,
                          lease.hostname, lease.domain)
        new.renewals, new.extra = lease.renewals + 1, lease.extra
        return new

    async def release(self, ifname: str, lease: Lease6) -> None:
        """RELEASE to the server that granted the lease; its REPLY is awaited once, silence is only logged."""
        await self._give_back(ifname, lease, RELEASE)

    async def decline(self, ifname: str, lease: Lease6) -> None:
        """DECLINE (RFC 8415 18.2.8): the leased address is in use on the LAN; as release()."""
        await self._give_back(ifname, lease, DECLINE)

    async def _give_back(self, ifname: str, lease: Lease6, msg_type: int) -> None:
        duid = bytes.fromhex(lease.duid)
        txid = int.from_bytes(os.urandom(3), "big")
        async with self._tap(ifname, lease.mac) as tap:
            try:
                await self._exchange(
                    tap, ifname, lease.mac,
                    lambda el: self._frame(lease.mac, build(msg_type, txid, [
                        option(OPT_CLIENTID, duid), option(OPT_ELAPSED_TIME, struct.pack("!H", el)),
                        option(OPT_SERVERID, bytes.fromhex(lease.server_duid)), ia_na(lease.iaid, [lease.ip])])),
                    txid, (REPLY,), duid, retries=1)
            except DhcpError as e:
                log.warning(f"DHCPv6 {NAMES[msg_type]} not confirmed", extra={"fields": {"mac": lease.mac, "ip": lease.ip,
                                                                             "error": str(e)}})
