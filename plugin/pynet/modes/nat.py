"""nat: a Linux bridge per network holding the gateway address, a veth per endpoint."""

from __future__ import annotations

import ipaddress

from ..errors import Conflict
from ..model import Endpoint, Network
from . import Mode


class NatMode(Mode):
    uses_firewall = True

    def link_names(self, net: Network) -> set[str]:
        names = {net.bridge}
        for ep in net.endpoints.values():
            names.update((ep.host_if, ep.peer_if))
        return names

    async def check(self, net: Network, others: list[Network]) -> None:
        for other in others:
            if other.bridge == net.bridge:
                raise Conflict(f"bridge_name {net.bridge} is already used by pynet network {other.id[:12]}; "
                               f"pick another -o bridge_name")
        own = {n.bridge for n in others if n.bridge}
        mine = [ipaddress.ip_network(s.pool) for s in net.v4 + net.v6]
        for ifname, cidr in await self.links.addresses():
            if ifname in own or ifname == net.bridge:
                continue
            iface = ipaddress.ip_interface(cidr)
            if iface.ip.is_link_local or iface.ip.is_loopback:
                continue
            for m in mine:
                if m.version == iface.version and m.overlaps(iface.network):
                    raise Conflict(f"subnet {m} overlaps {cidr} on host interface {ifname}; pick another --subnet")
        link = await self.links.get(net.bridge)
        if link is not None and not link.alias.startswith(self.owner_tag):
            raise Conflict(f"interface {net.bridge} already exists and is not pynet's; pick another -o bridge_name")

    async def ensure_network(self, net: Network, undo) -> None:
        if await self.links.ensure_bridge(net.bridge, self.alias(net.id), net.mtu, net.gateways(), net.ipv6):
            undo.push("delete bridge", self.links.delete, net.bridge)
        # Lets 127.0.0.1 -> published port be routed to the bridge (then masqueraded);
        # the firewall's raw_pre drops 127.0.0.0/8 arriving from anywhere else.
        self.sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        return await self._delete_links([net.bridge])

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        if await self.links.ensure_veth(ep.host_if, ep.peer_if, ep.mac, net.mtu, net.bridge, self.alias(ep.id),
                                        not net.icc):
            undo.push("delete veth", self.links.delete, ep.host_if)

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        await self.links.ensure_veth(ep.host_if, ep.peer_if, ep.mac, net.mtu, net.bridge, self.alias(ep.id),
                                     not net.icc)

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        return await self._delete_links([ep.host_if, ep.peer_if])
