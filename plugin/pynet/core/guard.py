"""Addresses a LAN-mode container may take: never one of the host's, never one in use on the LAN.

Two checks, both before anything is touched:
  - the host's own addresses, on every interface (a probe cannot see them: the host's stack never
    receives the frames it sends itself);
  - a probe on the network's parent (kernel/probe.py: an ARP probe, or a DAD neighbour solicitation),
    unless the network has -o probe=false or the config probe_wait 0.
CreateEndpoint calls admit() before it takes the network's lock (no network I/O under a lock), and
before the container's macvlan or veth exists. pynet's IPAM probes the addresses it hands out itself
(DHCP, SLAAC, static pools) and marks them: the CreateEndpoint that follows (within FRESH seconds)
takes the mark instead of probing again, so a `docker run` pays for one probe per address. A mark
serves once: a later container given the same address is probed again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

from ..errors import Conflict, KernelError
from ..model import Endpoint, Network

log = logging.getLogger("pynet.guard")
FRESH = 30.0


class AddressGuard:
    def __init__(self, links, prober, wait: float, count: int):
        self.links = links
        self.prober = prober
        self.wait = wait
        self.count = count
        self.probed: dict[tuple[str, str], float] = {}  # (network ID, IP) -> when the IPAM handed it out, probed

    async def host_owner(self, ip: str) -> str:
        """The host interface that has `ip`, or ""."""
        want = ipaddress.ip_address(ip)
        for name, cidr in await self.links.addresses():
            if ipaddress.ip_interface(cidr).ip == want:
                return name
        return ""

    async def host_addresses(self) -> set[str]:
        return {str(ipaddress.ip_interface(cidr).ip) for _name, cidr in await self.links.addresses()}

    def probing(self, net: Network) -> bool:
        return net.probe and self.wait > 0

    async def probe(self, net: Network, ip: str) -> str:
        """The MAC that answered a probe for `ip` on the network's parent, or "" (nobody, or not probing)."""
        if not self.probing(net):
            return ""
        t0 = time.monotonic()
        try:
            mac = await self.prober.probe(net.parent, ip, self.count, self.wait)
        except KernelError as e:  # the parent down or gone: nobody on the LAN can see the container either
            log.warning("address not probed", extra={"fields": {"network": net.id[:12], "ip": ip, "error": str(e)}})
            return ""
        log.debug("probed", extra={"fields": {"network": net.id[:12], "ip": ip, "answer": mac,
                                               "ms": round((time.monotonic() - t0) * 1000, 1)}})
        return mac

    def mark(self, net: Network, ip: str) -> None:
        """pynet's IPAM hands out `ip`, probed just now: its CreateEndpoint need not probe again."""
        now = time.monotonic()
        self.probed = {k: t for k, t in self.probed.items() if now - t < FRESH}
        self.probed[(net.id, ip)] = now

    def take_mark(self, net: Network, ip: str) -> bool:
        t = self.probed.pop((net.id, ip), None)
        return t is not None and time.monotonic() - t < FRESH

    async def admit(self, net: Network, ep: Endpoint) -> None:
        """Refuse (Conflict) an endpoint address that is the host's or answers a probe; probes run at once."""
        ips = [str(ipaddress.ip_interface(a).ip) for a in (ep.ipv4, ep.ipv6) if a]
        host = await self.host_addresses()
        for ip in ips:
            if ip in host:
                raise Conflict(f"address {ip} is configured on this host ({await self.host_owner(ip)}): a container "
                               f"cannot have it; give the container another --ip, or recreate the network with an "
                               f"--ip-range that leaves it out, or reserve it with --aux-address host={ip}")
        todo = [ip for ip in ips if not self.take_mark(net, ip)]
        answers = await asyncio.gather(*(self.probe(net, ip) for ip in todo))
        for ip, mac in zip(todo, answers):
            if mac:
                how = "neighbour solicitation (DAD)" if ":" in ip else "ARP probe"
                raise Conflict(f"address {ip} is in use on the LAN: {mac} answered pynet's {how} on {net.parent}; "
                               f"give the container another --ip, or keep {ip} out of the network's --ip-range "
                               f"(or reserve it with --aux-address), or let pynet choose free addresses "
                               f"(--ipam-driver pynet --ipam-opt mode=static)")
