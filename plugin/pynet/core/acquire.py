"""Addresses from the LAN itself for a container's MAC: DHCPv4, DHCPv6 (IA_NA), SLAAC; each probed first.

Called by pynet's IPAM (core/ipam.py) from RequestAddress, outside any lock (a silent server must not
hold up anything else); the result is kept by core/leases.py. Identity: Docker 29 names the endpoint
in RequestAddress (com.docker.network.endpoint.name = the container's name). Then the DHCPv4
client-id is type 0 + that name and the DHCPv6 DUID a DUID-UUID of it, so a reservation follows the
container re-created with another MAC; the name is also the hostname (option 12, or 81/39 with the
network's dhcp_domain). Older engines send only the MAC: the client-id is then type 1 + MAC and the
DUID a DUID-LL of the MAC (reserve by MAC, and keep the MAC with --mac-address); the hostname goes
to the server in a renewal once the container runs (core/leases.py announce_hostname).
A leased address that answers a probe is declined (RFC 2131 3.1.5 / RFC 8415 18.2.8) and asked again.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from ..dhcp import DhcpError, ra
from ..errors import Conflict, InvalidOption
from ..model import Network

log = logging.getLogger("pynet.acquire")
TRIES = 2  # leases asked for when the first one answers a probe
RA_TIMEOUT, RA_TRIES = 1.5, 2


def identity(name: str) -> str:
    """The stable identity of a container: its endpoint name (Docker 29+), or "" (then the MAC)."""
    name = (name or "").strip()
    return name if 1 <= len(name.encode()) <= 254 else ""


def hostname(name: str) -> str:
    """A DNS label from a container name (Docker allows '_' and '.', which DHCP servers refuse)."""
    label = re.sub(r"[^a-z0-9-]+", "-", (name or "").lower()).strip("-")
    return label[:63].rstrip("-")


class Acquirer:
    def __init__(self, guard, leases, learn=ra.learn):
        self.guard = guard
        self.leases = leases  # its clients (leases.client, leases.client6) talk to the LAN
        self.learn = learn

    async def _vet(self, net: Network, ip: str) -> str:
        """Why a server's address cannot be used ("" when it can): the host's, or answered on the LAN."""
        owner = await self.guard.host_owner(ip)
        if owner:
            return f"it is the host's own address (on {owner})"
        mac = await self.guard.probe(net, ip)
        if mac:
            return f"{mac} answered a probe for it"
        self.guard.mark(net, ip)
        return ""

    async def dhcp4(self, net: Network, subnet, mac: str, name: str):
        client = self.leases.client
        return await self._vetted(net, mac, "DHCP", client.decline, lambda: client.acquire(
            net.parent, mac, hostname=hostname(name), identity=identity(name) or None,
            domain=net.dhcp_domain if hostname(name) else "", subnet=str(subnet)))

    async def dhcp6(self, net: Network, subnet, mac: str, name: str):
        client = self.leases.client6
        return await self._vetted(net, mac, "DHCPv6", client.decline, lambda: client.acquire(
            net.parent, mac, identity(name), hostname=hostname(name),
            domain=net.dhcp_domain if hostname(name) else "", prefix=str(subnet)))

    async def _vetted(self, net: Network, mac: str, kind: str, decline, acquire):
        """A lease whose address nobody on the LAN (or the host) already uses; others are declined."""
        why = []
        for _ in range(TRIES):
            lease = await acquire()
            bad = await self._vet(net, lease.ip)
            if not bad:
                return lease
            why.append(f"{lease.ip}: {bad}")
            log.warning(f"{kind} address declined", extra={"fields": {"mac": mac, "ip": lease.ip, "why": bad}})
            try:
                await decline(net.parent, lease)
            except DhcpError as e:
                log.warning(f"{kind} decline failed", extra={"fields": {"mac": mac, "error": str(e)}})
        raise Conflict(f"the {kind} server on {net.parent} offered only addresses in use: {'; '.join(why)}; "
                       f"fix the server's range (or reservations)")

    async def slaac(self, net: Network, subnet, mac: str) -> str:
        """The address `mac` gets by SLAAC from the LAN router's prefix (what the container's kernel would
        form itself), as CIDR: so Docker shows and configures the same address."""
        found = await self.learn(net.parent, mac, timeout=RA_TIMEOUT, tries=RA_TRIES)
        ip = ipaddress.ip_address(found.address)
        if ip not in subnet:
            raise InvalidOption(f"the router on {net.parent} advertises {found.prefix} for SLAAC, not --subnet "
                                f"{subnet}: give the network the advertised prefix")
        bad = await self._vet(net, str(ip))
        if bad:
            raise Conflict(f"the SLAAC address {ip} of MAC {mac} is in use on the LAN: {bad}; "
                           f"give the container another --mac-address")
        return f"{ip}/{found.prefixlen}"
