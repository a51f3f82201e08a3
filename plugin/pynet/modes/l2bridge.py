"""l2bridge: containers with LAN addresses, but only the host's MAC on the wire.

Each container gets a routed veth (no bridge): the host routes between the
LAN interface (`parent`) and the container, so every frame leaving parent
carries parent's MAC whoever sent it, and frames for containers arrive at it.

  LAN -> container   a proxy neighbour entry per container address on parent:
                     the host answers ARP for it with parent's MAC, then
                     forwards by a /32 route to the container's veth
  container -> LAN   the container keeps its --subnet prefix and --gateway;
                     proxy_arp on its veth makes the host answer for every
                     address, and a policy rule (iif veth) sends its packets
                     to a table per network: the subnet on parent, the
                     containers' /32s, default via the LAN router. Sources
                     are not NATed.
  anti-spoofing      nftables drops packets from a container's veth whose
                     source is not that container's address (firewall).
  join               a gratuitous ARP (IPv6: an unsolicited NA) on parent announces it.
  IPv6               the same with proxy NDP on parent; Linux has no proxy-all for
                     neighbour discovery, so the container side uses routes instead:
                     each container veth's host side holds fe80::1, which is the
                     container's IPv6 gateway, and two static routes (the two halves
                     of the subnet, more specific than its on-link prefix) send LAN
                     traffic there too.
"""

from __future__ import annotations

import ipaddress
import socket

from ..kernel import announce
from ..model import Endpoint, Network, Route, id_hex
from ..limits import Rates
from .base import Limiter, quoted, veth_limiters
from .lan import LAN_OPTIONS, LanMode

RULE_PRIORITY = 20100
LINK_LOCAL_GW = "fe80::1"


def table_id(net: Network) -> int:
    """A routing table per network, derived from its ID (above the reserved 0-255)."""
    return 0x70000000 | int(id_hex(net.id, 7), 16)


class L2BridgeMode(LanMode):
    NAME = "l2bridge"
    OPTIONS = LAN_OPTIONS
    forwards = True
    host_side = True
    kernel_needs = ("veth",)

    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        super().configure(net, user, prefix)
        net.host_shim = False  # the host routes to its containers: no macvlan, no shim

    def link_names(self, net: Network) -> set[str]:
        names = set(self.vlan_links(net))
        for ep in net.endpoints.values():
            names.update((ep.host_if, ep.peer_if))
        return names - {""}

    async def ensure_network(self, net: Network, undo) -> None:
        await self.ensure_parent(net, undo)
        self.sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        # Proxy ARP answers at once, not after a random delay of up to 0.8 s.
        self.sysctl(f"/proc/sys/net/ipv4/neigh/{net.parent}/proxy_delay", "0")
        table = table_id(net)
        if net.v4:
            sub = net.v4[0]
            await self.links.ensure_route(sub.pool, net.parent, table=table)
            await self.links.ensure_route("0.0.0.0/0", net.parent, table=table,
                                          gateway=str(ipaddress.ip_interface(sub.gateway).ip))
        if net.v6:
            self.sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
            self.sysctl(f"/proc/sys/net/ipv6/conf/{net.parent}/proxy_ndp", "1")
            self.sysctl(f"/proc/sys/net/ipv6/neigh/{net.parent}/proxy_delay", "0")
            sub6 = net.v6[0]
            await self.links.ensure_route(sub6.pool, net.parent, table=table)
            await self.links.ensure_route("::/0", net.parent, table=table,
                                          gateway=str(ipaddress.ip_interface(sub6.gateway).ip))
        for ep in net.endpoints.values():
            if await self.links.get(ep.host_if) is not None:
                await self._ensure_host_side(net, ep)

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        errors = []
        table = table_id(net)
        for cidr in ([net.v4[0].pool, "0.0.0.0/0"] if net.v4 else []) + ([net.v6[0].pool, "::/0"] if net.v6 else []):
            try:
                await self.links.delete_route(cidr, net.parent, table=table)
            except Exception as e:  # noqa: BLE001
                errors.append(f"route {cidr} (table {table}): {e}")
        return errors + await self._retire(await self.parent_to_delete(net, others))

    async def _ensure_host_side(self, net: Network, ep: Endpoint) -> None:
        self.sysctl(f"/proc/sys/net/ipv4/conf/{ep.host_if}/proxy_arp", "1")
        self.sysctl(f"/proc/sys/net/ipv4/neigh/{ep.host_if}/proxy_delay", "0")
        self.sysctl(f"/proc/sys/net/ipv6/conf/{ep.host_if}/disable_ipv6", "0" if ep.ipv6 else "1")
        table = table_id(net)
        if ep.ipv4:
            ip = str(ipaddress.ip_interface(ep.ipv4).ip)
            await self.links.ensure_route(f"{ip}/32", ep.host_if, src=await self.route_src(net))
            await self.links.ensure_route(f"{ip}/32", ep.host_if, table=table)
            await self.links.ensure_rule(ep.host_if, table, RULE_PRIORITY)
            await self.links.ensure_proxy_neigh(ip, net.parent)
        if ep.ipv6:
            ip6 = str(ipaddress.ip_interface(ep.ipv6).ip)
            link = await self.links.get(ep.host_if)
            await self.links.ensure_addr(link.index, ep.host_if, f"{LINK_LOCAL_GW}/64")
            await self.links.ensure_route(f"{ip6}/128", ep.host_if)
            await self.links.ensure_route(f"{ip6}/128", ep.host_if, table=table)
            await self.links.ensure_rule(ep.host_if, table, RULE_PRIORITY, socket.AF_INET6)
            await self.links.ensure_proxy_neigh(ip6, net.parent)

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        if await self.links.ensure_routed_veth(ep.host_if, ep.peer_if, ep.mac, net.mtu, self.alias(ep.id)):
            undo.push("delete veth", self.links.delete, ep.host_if)
        undo.push("delete rule and proxy entry", self._forget_host_side, net, ep)
        await self._ensure_host_side(net, ep)

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        await self._ensure_host_side(net, ep)

    async def _forget_host_side(self, net: Network, ep: Endpoint) -> list[str]:
        errors = []
        steps = []
        for cidr, family in ((ep.ipv4, socket.AF_INET), (ep.ipv6, socket.AF_INET6)):
            if not cidr:
                continue
            ip = str(ipaddress.ip_interface(cidr).ip)
            steps += [(f"proxy neighbour {ip}", self.links.delete_proxy_neigh, (ip, net.parent)),
                      (f"rule for {ip}", self.links.delete_rule, (ep.host_if, table_id(net), RULE_PRIORITY, family))]
        for what, fn, args in steps:
            try:
                await fn(*args)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{what}: {e}")
        return errors

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        # The veth's routes go with it; the rule (by name) and the proxy entry (on parent) do not.
        errors = await self._forget_host_side(net, ep) + await self.unlimit(net, ep)
        return errors + await self._retire([ep.host_if], peer=ep.peer_if)

    def limiters(self, net: Network, ep: Endpoint, rates: Rates) -> list[Limiter]:
        """The routed veth is the container's only way in and out (LAN, host, other containers):
        shaped where the host sends into it, policed where it arrives from it."""
        return veth_limiters(ep, rates)

    def join_info(self, net: Network, ep: Endpoint):
        info = super().join_info(net, ep)
        if net.v6 and ep.ipv6:
            # The container's IPv6 neighbours are reached through the host (see the module doc).
            info.gateway6 = LINK_LOCAL_GW
            pool = ipaddress.ip_network(net.v6[0].pool)
            halves = list(pool.subnets(prefixlen_diff=1)) if pool.prefixlen < 128 else []
            info.routes = [Route(str(h), LINK_LOCAL_GW) for h in halves]
        return info

    def endpoint_elements(self, net: Network, ep: Endpoint) -> dict[str, list[str]]:
        """Its veth, and the only source addresses it may send with (inet raw_pre)."""
        port = quoted(ep.host_if)
        ip = ep.ipv4.split("/")[0] if ep.ipv4 else ""
        ip6 = ep.ipv6.split("/")[0] if ep.ipv6 else ""
        return {"l2b_ifs": [port], "l2b_src4": [f"{port} . {ip}"] if ip else [],
                "l2b_src6": [f"{port} . {ip6}"] if ip6 else []}

    async def sweep(self, nets: list[Network], prefix: str) -> list[str]:
        """Policy rules (iif <our veth> lookup <net table>) that belong to no endpoint: a crash
        between creating a container's rule and saving its endpoint leaves one (its veth goes
        as a leftover link; the rule, kept by name, goes here)."""
        expected = {(fam, ep.host_if) for net in nets for ep in net.endpoints.values()
                    for fam, addr in ((socket.AF_INET, ep.ipv4), (socket.AF_INET6, ep.ipv6)) if addr}
        removed = []
        for family, iif, table in await self.links.rules(RULE_PRIORITY):
            if iif.startswith(prefix) and (family, iif) not in expected:
                try:
                    await self.links.delete_rule(iif, table, RULE_PRIORITY, family)
                    removed.append(f"rule iif {iif} lookup {table}")
                except Exception:  # noqa: BLE001 - logged by the caller's report; tried again next start
                    continue
        return removed

    async def announce(self, net: Network, ep: Endpoint) -> None:
        parent = await self.links.get(net.parent)
        if parent is not None and ep.ipv4:
            announce.send_garp(net.parent, str(ipaddress.ip_interface(ep.ipv4).ip), parent.mac, count=2)
        if parent is not None and ep.ipv6:
            announce.send_unsolicited_na(net.parent, parent.index, str(ipaddress.ip_interface(ep.ipv6).ip),
                                         parent.mac, count=2)
