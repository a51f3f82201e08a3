"""transparent: containers on the LAN with their own MAC — a macvlan (bridge mode) per endpoint.

macvlan hides a parent's children from the parent itself, so the host gets a
shim: one more macvlan on the parent, without an address of its own, and a
/32 (/128) route per container through it. Container replies to the host's
address are answered by the shim (Linux answers ARP for any local address on
any interface), so traffic flows both ways.
"""

from __future__ import annotations

import ipaddress
import re

from ..errors import InvalidOption
from ..model import Endpoint, Network, id_hex, link_name
from ..options import parse_bool
from ..limits import Rates
from .base import CREATED, GONE, IN_CONTAINER, POLICE_DEST, SHAPE_SOURCE, Limiter
from .lan import LAN_OPTIONS, LanMode

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def host_routes(ep: Endpoint) -> list[str]:
    out = []
    if ep.ipv4:
        out.append(f"{ipaddress.ip_interface(ep.ipv4).ip}/32")
    if ep.ipv6:
        out.append(f"{ipaddress.ip_interface(ep.ipv6).ip}/128")
    return out


def shim_mac(net_id: str) -> str:
    raw = bytes.fromhex(id_hex(net_id, 10))
    return ":".join(f"{b:02x}" for b in b"\x02" + raw)


class TransparentMode(LanMode):
    NAME = "transparent"
    OPTIONS = LAN_OPTIONS | {"host_shim", "macvlan_mode", "dhcp_domain"}
    ALIASES = {"macvlan_mode": "macvlan_mode"}
    dhcp = True
    kernel_needs = ("macvlan",)

    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        super().configure(net, user, prefix)
        net.host_shim = parse_bool("host_shim", user.get("host_shim", True))
        net.shim = link_name(prefix, "s", net.id) if net.host_shim else ""
        net.macvlan_mode = user.get("macvlan_mode", "bridge")
        if net.macvlan_mode not in MACVLAN_MODES:
            raise InvalidOption(f"option macvlan_mode must be {', '.join(MACVLAN_MODES[:-1])} or passthru, "
                                f"got {net.macvlan_mode!r}")
        domain = user.get("dhcp_domain", "").strip().lower().rstrip(".")
        if domain and (len(domain) > 200 or not all(_LABEL.fullmatch(x) for x in domain.split("."))):
            raise InvalidOption(f"option dhcp_domain must be a DNS domain (labels of a-z, 0-9 and '-'), "
                                f"got {user['dhcp_domain']!r}")
        net.dhcp_domain = domain

    async def check(self, net: Network, others: list[Network]) -> None:
        await super().check(net, others)
        if net.dhcp_domain and "dhcp" not in (net.ipam, net.ipam6):
            raise InvalidOption("option dhcp_domain names the domain sent to the LAN's DHCP server: it needs "
                                "--ipam-driver pynet (DHCP)")

    def link_names(self, net: Network) -> set[str]:
        names = {net.shim} | {ep.peer_if for ep in net.endpoints.values()} | self.vlan_links(net)
        return names - {""}

    def network_links(self, net: Network) -> list[str]:
        return [n for n in (net.parent, net.shim) if n]

    async def _ensure_routes(self, net: Network, eps) -> None:
        src = await self.route_src(net)
        for ep in eps:
            for cidr in host_routes(ep):
                await self.links.ensure_route(cidr, net.shim, src if ":" not in cidr else "")

    async def ensure_network(self, net: Network, undo) -> None:
        await self.ensure_parent(net, undo)
        if net.shim:
            if await self.links.ensure_macvlan(net.shim, net.parent, shim_mac(net.id), "bridge", net.mtu,
                                               self.alias(net.id)):
                undo.push("delete shim", self.links.delete, net.shim)
            if net.ipv6:
                self.sysctl(f"/proc/sys/net/ipv6/conf/{net.shim}/disable_ipv6", "0")
            await self.links.set_up(net.shim)
            await self._ensure_routes(net, net.endpoints.values())

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        return await self._retire([net.shim] + await self.parent_to_delete(net, others))

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

    def limiters(self, net: Network, ep: Endpoint, rates: Rates) -> list[Limiter]:
        """A macvlan's frames to the LAN leave through its parent, so they are shaped there: an HTB
        class for its source MAC on the parent (the HTB exists while some endpoint of the parent is
        limited; other traffic takes its direct queue). Frames from the LAN for it arrive on the
        parent: policed there by destination MAC. Traffic between the container and the host (the
        shim) or other macvlans of the parent never crosses the parent: it is not limited."""
        out = []
        if rates.egress:
            out.append(Limiter(SHAPE_SOURCE, net.parent, ep.mac, rates.egress.rate, rates.egress.burst_or_default()))
        if rates.ingress:
            out.append(Limiter(POLICE_DEST, net.parent, ep.mac, rates.ingress.rate,
                               rates.ingress.burst_or_default()))
        return out

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        errors = await self.unlimit(net, ep)
        if net.shim:
            for cidr in host_routes(ep):
                try:
                    await self.links.delete_route(cidr, net.shim)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"route {cidr}: {e}")
        return errors + await self._retire([ep.peer_if])
