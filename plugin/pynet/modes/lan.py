"""What both LAN modes (transparent, l2bridge) share: the parent interface on the LAN.

The parent may be a VLAN sub-interface pynet creates (eth0.50) and deletes with the
last network using it; the LAN's router is the containers' gateway (without --gateway:
the parent's default router); no --internal (the containers are on the LAN); the
router's address never goes to a container.
"""

from __future__ import annotations

import ipaddress
import re

from ..errors import Conflict, InvalidOption
from ..model import Endpoint, Network
from ..options import parse_bool, valid_ifname
from .base import Mode

LAN_OPTIONS = frozenset({"parent", "probe"})


class LanMode(Mode):
    lan = True  # also: addresses are checked against the host's and probed on the LAN (core/guard.py)

    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        if net.internal:
            raise InvalidOption(f"--internal is not possible with mode={self.NAME}: its containers are on the LAN; "
                                "use mode=nat for an internal network")
        if not user.get("parent"):
            raise InvalidOption(f"mode={self.NAME} needs -o parent=<host interface on the LAN> (e.g. eth0 or eth0.50)")
        net.parent = valid_ifname("parent", user["parent"])
        net.probe = parse_bool("probe", user.get("probe", True))
        net.bridge = ""
        m = re.fullmatch(r"(.+)\.(\d+)", net.parent)
        if m:
            vlan = int(m.group(2))
            if not 1 <= vlan <= 4094:
                raise InvalidOption(f"VLAN id {vlan} of parent {net.parent} must be 1-4094")
            net.vlan_base, net.vlan = m.group(1), vlan

    async def prepare(self, net: Network) -> None:
        """A subnet without a gateway (Docker 28+ reserves none for LAN modes, see GwAllocCheck):
        the LAN's router is the parent's default router, when it is inside the subnet."""
        missing = [s for s in net.v4 + net.v6 if not s.gateway]
        if not missing:
            return
        await self._parent_exists(net)  # else the error would be about its router, not about it
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

    async def _parent_exists(self, net: Network) -> None:
        if net.vlan:
            if await self.links.get(net.vlan_base) is None:
                raise InvalidOption(f"parent {net.parent}: its base interface {net.vlan_base} does not exist; "
                                    f"check -o parent")
        elif await self.links.get(net.parent) is None:
            raise InvalidOption(f"parent interface {net.parent} does not exist; give an existing interface "
                                f"on the LAN with -o parent=IFACE")

    async def check(self, net: Network, others: list[Network]) -> None:
        await self._parent_exists(net)
        parent = await self.links.get(net.parent)
        if parent is not None and parent.alias.startswith(self.owner_tag) and not net.vlan:
            raise InvalidOption(f"parent {net.parent} is an interface pynet made; give a physical LAN interface")
        for other in others:
            if other.bridge and other.bridge == net.parent:
                raise InvalidOption(f"parent {net.parent} is the bridge of pynet network {other.id[:12]}")
            if other.parent == net.parent and net.macvlan_mode == "passthru":
                raise Conflict(f"macvlan_mode=passthru needs parent {net.parent} for itself, but network "
                               f"{other.id[:12]} uses it")

    def check_endpoint(self, net: Network, ep: Endpoint) -> None:
        """Docker 28+ reserves no address for the LAN router (GwAllocCheck): never hand it out."""
        gateways = {ipaddress.ip_interface(s.gateway).ip for s in net.v4 + net.v6 if s.gateway}
        for value in (ep.ipv4, ep.ipv6):
            ip = ipaddress.ip_interface(value).ip if value else None
            if ip in gateways:
                raise InvalidOption(f"address {ip} is the LAN router's (the network's gateway) and cannot go to a "
                                    f"container: recreate the network with --aux-address router={ip} or an "
                                    f"--ip-range without it, or give the container another --ip")

    def network_links(self, net: Network) -> list[str]:
        return [net.parent]

    async def route_src(self, net: Network) -> str:
        """The host's IPv4 address on the parent, preferably inside the network's subnet.

        Routes to containers carry it as source, so a container answers the host on the
        LAN side (where the host picks the answer up), not via some other host address.
        """
        pool = ipaddress.ip_network(net.v4[0].pool) if net.v4 else None
        candidates = [ipaddress.ip_interface(c) for name, c in await self.links.addresses()
                      if name == net.parent and ":" not in c]
        inside = [c for c in candidates if pool is not None and c.ip in pool]
        best = (inside or candidates or [None])[0]
        return str(best.ip) if best is not None else ""

    async def ensure_parent(self, net: Network, undo) -> None:
        """The parent up; a VLAN parent (eth0.50) made when missing."""
        if net.vlan and await self.links.ensure_vlan(net.parent, net.vlan_base, net.vlan, self.alias(net.id)):
            undo.push("delete VLAN parent", self.links.delete, net.parent)
        await self.links.set_up(net.parent)

    async def parent_to_delete(self, net: Network, others: list[Network]) -> list[str]:
        """The VLAN parent goes with the last network using it, and only if pynet made it."""
        if not net.vlan:
            return []
        vlan = await self.links.get(net.parent)
        users = [o for o in others if o.parent == net.parent and o.id != net.id]
        if vlan is not None and vlan.alias.startswith(self.owner_tag) and not users:
            return [net.parent]
        return []

    def vlan_links(self, net: Network) -> set[str]:
        return {net.parent} if net.vlan else set()
