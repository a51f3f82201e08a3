"""nat: a Linux bridge per network holding the gateway address, a veth per endpoint.

Containers sit on a private subnet behind the host: masquerade outward, published
ports inward (core/published.py), isolation between networks (firewall/ruleset.py),
anti-spoofing per bridge port (bridge-family set elements below).
"""

from __future__ import annotations

import ipaddress

from ..errors import Conflict, InvalidOption
from ..model import Endpoint, Network, link_local, link_name
from ..options import parse_bool, valid_ifname
from ..limits import Rates
from .base import Limiter, Mode, quoted, veth_limiters


class NatMode(Mode):
    NAME = "nat"
    OPTIONS = frozenset({"bridge_name", "icc", "masquerade", "host_binding_ipv4"})
    ALIASES = {
        "com.docker.network.bridge.name": "bridge_name",
        "com.docker.network.bridge.enable_icc": "icc",
        "com.docker.network.bridge.enable_ip_masquerade": "masquerade",
        "com.docker.network.bridge.host_binding_ipv4": "host_binding_ipv4",
    }
    publishes = True
    forwards = True
    host_side = True
    kernel_needs = ("bridge", "veth")

    # ------------------------------------------------------------ options
    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        net.custom_bridge = "bridge_name" in user
        net.bridge = valid_ifname("bridge_name", user["bridge_name"]) if net.custom_bridge \
            else link_name(prefix, "n", net.id)
        net.icc = parse_bool("icc", user.get("icc", True))
        net.masquerade = parse_bool("masquerade", user.get("masquerade", True))
        if user.get("host_binding_ipv4"):
            try:
                net.host_binding_ipv4 = str(ipaddress.ip_address(user["host_binding_ipv4"]))
            except ValueError:
                raise InvalidOption(f"option host_binding_ipv4 must be an IP address, got "
                                    f"{user['host_binding_ipv4']!r}") from None

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

    # ------------------------------------------------------------ kernel
    def link_names(self, net: Network) -> set[str]:
        names = {net.bridge}
        for ep in net.endpoints.values():
            names.update((ep.host_if, ep.peer_if))
        return names

    def network_links(self, net: Network) -> list[str]:
        return [net.bridge]

    async def ensure_network(self, net: Network, undo) -> None:
        self.sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if net.ipv6:
            self.sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
        if await self.links.ensure_bridge(net.bridge, self.alias(net.id), net.mtu, net.gateways(), net.ipv6,
                                          net.gw_mac):
            undo.push("delete bridge", self.links.delete, net.bridge)
        # Lets 127.0.0.1 -> published port be routed to the bridge (then masqueraded);
        # the firewall's raw_pre drops 127.0.0.0/8 arriving from anywhere else.
        self.sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        return await self._retire_bridge(net)

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        if await self.links.ensure_veth(ep.host_if, ep.peer_if, ep.mac, net.mtu, net.bridge, self.alias(ep.id),
                                        not net.icc):
            undo.push("delete veth", self.links.delete, ep.host_if)

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        await self.links.ensure_veth(ep.host_if, ep.peer_if, ep.mac, net.mtu, net.bridge, self.alias(ep.id),
                                     not net.icc)

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        # The TBF goes with the veth; the nftables policer on its name does not.
        return await self.unlimit(net, ep) + await self._retire([ep.host_if], peer=ep.peer_if)

    def limiters(self, net: Network, ep: Endpoint, rates: Rates) -> list[Limiter]:
        """Into the container: a TBF on the veth's host side (every path in: the bridge forwards
        LAN, host and other containers' traffic out of it). Out: policed where it arrives."""
        return veth_limiters(ep, rates)

    # ------------------------------------------------------------ firewall
    def network_elements(self, net: Network) -> dict[str, list[str]]:
        br = quoted(net.bridge)
        out: dict[str, list[str]] = {
            "bridges": [br], "intra": [f"{br} . {br}"],
            "subnets4": [f"{br} . {s.pool}" for s in net.v4], "subnets6": [f"{br} . {s.pool}" for s in net.v6],
        }
        if net.internal:
            out["internal"] = [br]
            out["internal_gw4"] = [f"{br} . {s.gateway.split('/')[0]}" for s in net.v4]
            out["internal_gw6"] = [f"{br} . {s.gateway.split('/')[0]}" for s in net.v6]
        elif net.masquerade:
            out["masq"] = [br]
        return out

    def endpoint_elements(self, net: Network, ep: Endpoint) -> dict[str, list[str]]:
        """Its bridge port, and the only source MAC/addresses it may send with (bridge family)."""
        if not ep.host_if:
            return {}
        port = quoted(ep.host_if)
        ip = ep.ipv4.split("/")[0] if ep.ipv4 else ""
        own6 = [a for a in (ep.ipv6.split("/")[0] if ep.ipv6 else "", link_local(ep.mac)) if a]
        return {"nat_ports": [port], "nat_mac": [f"{port} . {ep.mac}"],
                "nat_src4": [f"{port} . {ip}"] if ip else [],
                "nat_src6": [f"{port} . {a}" for a in own6],
                "nat_nd6": [f"{port} . {int(ipaddress.IPv6Address(a)):#034x}" for a in own6]}

    def docker_user_names(self, net: Network) -> list[str]:
        return [net.bridge] if net.custom_bridge else []
