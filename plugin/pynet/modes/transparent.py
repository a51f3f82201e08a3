"""transparent: containers on the LAN with their own MAC — a macvlan (bridge mode) per endpoint.

macvlan hides a parent's children from the parent itself, so the host gets a
shim: one more macvlan on the parent, without an address of its own, and a
/32 (/128) route per container through it. Container replies to the host's
address are answered by the shim (Linux answers ARP for any local address on
any interface), so traffic flows both ways.
"""

from __future__ import annotations

import ipaddress

from ..errors import Conflict, InvalidOption
from ..model import Endpoint, Network, id_hex
from . import CREATED, GONE, IN_CONTAINER, Mode


def host_routes(ep: Endpoint) -> list[str]:
    out = []
    if ep.ipv4:
        out.append(f"{ipaddress.ip_interface(ep.ipv4).ip}/32")
    if ep.ipv6:
        out.append(f"{ipaddress.ip_interface(ep.ipv6).ip}/128")
    return out


class TransparentMode(Mode):
    def link_names(self, net: Network) -> set[str]:
        names = {net.shim} | {ep.peer_if for ep in net.endpoints.values()}
        if net.vlan:
            names.add(net.parent)
        return names - {""}

    async def prepare(self, net: Network) -> None:
        """A subnet without a gateway (Docker 28+ reserves none for LAN modes, see GwAllocCheck):
        the LAN's router is the parent's default router, when it is inside the subnet."""
        missing = [s for s in net.v4 + net.v6 if not s.gateway]
        if not missing:
            return
        routers = [ipaddress.ip_address(r) for r in await self.links.default_routers(net.parent)]
        for sub in missing:
            pool = ipaddress.ip_network(sub.pool)
            fits = [r for r in routers if r.version == pool.version and (r in pool or r.is_link_local)]
            fits.sort(key=lambda r: r.is_link_local)  # a router inside the subnet first
            if not fits:
                seen = ", ".join(str(r) for r in routers if r.version == pool.version) or "none"
                raise InvalidOption(f"subnet {pool} has no --gateway, and the default router of parent "
                                    f"{net.parent} ({seen}) is not inside it: give the LAN's router with "
                                    f"--gateway")
            sub.gateway = f"{fits[0]}/{pool.prefixlen}"

    async def check(self, net: Network, others: list[Network]) -> None:
        if net.vlan:
            if await self.links.get(net.vlan_base) is None:
                raise InvalidOption(f"parent {net.parent}: its base interface {net.vlan_base} does not exist; "
                                    f"check -o parent")
        elif await self.links.get(net.parent) is None:
            raise InvalidOption(f"parent interface {net.parent} does not exist; give an existing interface "
                                f"on the LAN with -o parent=IFACE")
        parent = await self.links.get(net.parent)
        if parent is not None and parent.alias.startswith(self.owner_tag) and not net.vlan:
            raise InvalidOption(f"parent {net.parent} is an interface pynet made; give a physical LAN interface")
        for other in others:
            if other.mode == "nat" and other.bridge == net.parent:
                raise InvalidOption(f"parent {net.parent} is the bridge of pynet network {other.id[:12]}")
            if other.lan and other.parent == net.parent and net.macvlan_mode == "passthru":
                raise Conflict(f"macvlan_mode=passthru needs parent {net.parent} for itself, but network "
                               f"{other.id[:12]} uses it")

    async def _parent_users(self, net: Network, others: list[Network]) -> list[Network]:
        return [o for o in others if o.lan and o.parent == net.parent and o.id != net.id]

    async def _route_src(self, net: Network) -> str:
        """The host's IPv4 address on the parent, preferably inside the network's subnet.

        Routes to containers through the shim carry it as source, so a container
        answers the host on the LAN (where the shim picks the answer up), not via
        its default gateway with some other host address.
        """
        pool = ipaddress.ip_network(net.v4[0].pool) if net.v4 else None
        candidates = [ipaddress.ip_interface(c) for name, c in await self.links.addresses()
                      if name == net.parent and ":" not in c]
        inside = [c for c in candidates if pool is not None and c.ip in pool]
        best = (inside or candidates or [None])[0]
        return str(best.ip) if best is not None else ""

    async def _ensure_routes(self, net: Network, eps) -> None:
        src = await self._route_src(net)
        for ep in eps:
            for cidr in host_routes(ep):
                await self.links.ensure_route(cidr, net.shim, src if ":" not in cidr else "")

    async def _ensure_parent(self, net: Network, undo) -> None:
        """The parent up; a VLAN parent (eth0.50) made when missing."""
        if net.vlan and await self.links.ensure_vlan(net.parent, net.vlan_base, net.vlan, self.alias(net.id)):
            undo.push("delete VLAN parent", self.links.delete, net.parent)
        await self.links.set_up(net.parent)

    async def _parent_to_delete(self, net: Network, others: list[Network]) -> list[str]:
        """The VLAN parent goes with the last network using it, and only if pynet made it."""
        if not net.vlan:
            return []
        vlan = await self.links.get(net.parent)
        if vlan is not None and vlan.alias.startswith(self.owner_tag) and not await self._parent_users(net, others):
            return [net.parent]
        return []

    async def ensure_network(self, net: Network, undo) -> None:
        await self._ensure_parent(net, undo)
        if net.shim:
            mac = _shim_mac(net.id)
            if await self.links.ensure_macvlan(net.shim, net.parent, mac, "bridge", net.mtu, self.alias(net.id)):
                undo.push("delete shim", self.links.delete, net.shim)
            self.sysctl(f"/proc/sys/net/ipv6/conf/{net.shim}/disable_ipv6", "0") if net.ipv6 else None
            await self.links.set_up(net.shim)
            await self._ensure_routes(net, net.endpoints.values())

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        return await self._delete_links([net.shim] + await self._parent_to_delete(net, others))

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        if await self.links.ensure_macvlan(ep.peer_if, net.parent, ep.mac, net.macvlan_mode, net.mtu,
                                           self.alias(ep.id)):
            undo.push("delete macvlan", self.links.delete, ep.peer_if)
        if net.shim:
            await self._ensure_routes(net, [ep])
            for cidr in host_routes(ep):
                undo.push("delete host route", self.links.delete_route, cidr, net.shim)

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        if net.shim:
            await self._ensure_routes(net, [ep])

    async def endpoint_state(self, net: Network, ep: Endpoint) -> str:
        # Before Join the macvlan is here by name; once in the container's namespace (up), its MAC
        # is in the parent's unicast filter, which the host sees; both go when the container does.
        if await self.links.get(ep.peer_if) is not None:
            return CREATED
        return IN_CONTAINER if ep.mac in await self.links.lower_macs(net.parent) else GONE

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        errors = []
        if net.shim:
            for cidr in host_routes(ep):
                try:
                    await self.links.delete_route(cidr, net.shim)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"route {cidr}: {e}")
        return errors + await self._delete_links([ep.peer_if])


def _shim_mac(net_id: str) -> str:
    raw = bytes.fromhex(id_hex(net_id, 10))
    return ":".join(f"{b:02x}" for b in b"\x02" + raw)
