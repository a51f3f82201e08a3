"""Addresses, routes, policy rules and neighbour entries through pyroute2 (a mixin of Links).

ensure_* and delete_* are idempotent: "already there" and "already gone" succeed.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from ..errors import KernelError
from .linkinfo import GONE

NTF_PROXY = 0x08
RTNH_F_ONLINK = 0x04


class RouteOps:
    """Needs `get(name)`, `_nl` (kernel/rawlink.py), `_kernel(what, fn, ...)` and `_call(what, method, ...)`
    from the class it is mixed into."""

    async def ensure_route(self, cidr: str, dev: str, src: str = "", table: int = 0, gateway: str = "") -> None:
        link = await self.get(dev)
        if link is None:
            raise KernelError(f"interface {dev} for route {cidr} does not exist")
        kw: dict = {"prefsrc": src} if src else {}
        if table:
            kw["table"] = table
        if gateway:
            kw.update(gateway=gateway, flags=RTNH_F_ONLINK)
        await self._call(f"route {cidr} via {gateway or dev}" + (f" (table {table})" if table else ""),
                         "route", "replace", dst=cidr, oif=link.index, **kw)

    async def delete_route(self, cidr: str, dev: str, table: int = 0) -> None:
        link = await self.get(dev)
        if link is None:
            return
        kw = {"table": table} if table else {}
        await self._call(f"delete route {cidr}", "route", "del", dst=cidr, oif=link.index,
                         ok_errnos=(errno.ESRCH, errno.ENOENT) + GONE, **kw)

    async def ensure_rule(self, iif: str, table: int, priority: int, family: int = socket.AF_INET) -> None:
        """`ip rule add iif IIF lookup TABLE priority P` (already there is fine)."""
        await self._call(f"rule iif {iif} lookup {table}", "rule", "add", iifname=iif, table=table,
                         priority=priority, family=family, ok_errnos=(errno.EEXIST,))

    async def delete_rule(self, iif: str, table: int, priority: int, family: int = socket.AF_INET) -> None:
        await self._call(f"delete rule iif {iif}", "rule", "del", iifname=iif, table=table, priority=priority,
                         family=family, ok_errnos=(errno.ENOENT, errno.ESRCH))

    async def rules(self, priority: int) -> list[tuple[int, str, int]]:
        """(family, iif name, table) of the policy rules at `priority`, both families."""
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in await self._call("list rules", "rule", "dump", family=family) or []:
                if msg.get("FRA_PRIORITY") == priority and msg.get("FRA_IIFNAME"):
                    out.append((family, msg.get("FRA_IIFNAME"), msg.get("FRA_TABLE") or msg["table"]))
        return out

    async def ensure_proxy_neigh(self, ip: str, dev: str) -> None:
        """`ip neigh add proxy IP dev DEV`: the host answers ARP/NS for IP on DEV with its own MAC."""
        link = await self.get(dev)
        if link is None:
            raise KernelError(f"interface {dev} for proxy neighbour {ip} does not exist")
        await self._call(f"proxy neighbour {ip} on {dev}", "neigh", "replace", dst=ip, ifindex=link.index,
                         flags=NTF_PROXY, state=0)

    async def delete_proxy_neigh(self, ip: str, dev: str) -> None:
        link = await self.get(dev)
        if link is None:
            return
        await self._call(f"delete proxy neighbour {ip}", "neigh", "del", dst=ip, ifindex=link.index,
                         flags=NTF_PROXY, state=0, ok_errnos=(errno.ENOENT, errno.ESRCH) + GONE)

    async def lower_macs(self, dev: str) -> set[str]:
        """MACs in `dev`'s unicast filter (`bridge fdb show dev DEV` "self" entries): an up macvlan
        on `dev` puts its MAC there, in whatever network namespace it lives."""
        link = await self.get(dev)
        if link is None:
            return set()
        msgs = await self._call(f"list addresses of {dev}", "fdb", "dump", ifindex=link.index) or []
        return {(m.get("NDA_LLADDR") or "").lower() for m in msgs if m.get("ifindex") == link.index}

    async def default_routers(self, dev: str) -> list[str]:
        """Gateways of the main table's default routes through `dev` (IPv4 first)."""
        link = await self.get(dev)
        if link is None:
            return []
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in await self._call("list routes", "route", "dump", family=family) or []:
                if msg.get("dst_len") == 0 and msg.get("RTA_OIF") == link.index and msg.get("RTA_GATEWAY") \
                        and (msg.get("RTA_TABLE") or msg.get("table")) == 254:
                    out.append(msg.get("RTA_GATEWAY"))
        return out

    async def default_route_dev(self) -> str:
        """The interface of the main table's IPv4 default route ("" when there is none, or it is
        unreachable/blackhole: no interface)."""
        for msg in await self._call("list routes", "route", "dump", family=socket.AF_INET) or []:
            if msg.get("dst_len") == 0 and msg.get("RTA_OIF") and (msg.get("RTA_TABLE") or msg.get("table")) == 254:
                return await self._name_of(msg.get("RTA_OIF"))
        return ""

    async def addresses(self) -> list[tuple[str, str]]:
        """Every (interface name, CIDR) on the host, for overlap checks and the host's own addresses;
        IPv6 link-local ones left out (per link: they never conflict, and every veth has one). From one
        address dump read without pyroute2's decoder (kernel/rawlink.py): an IPv4 address names its
        interface (its label); an IPv6 one's is looked up by index, once each (no link dump: it grows
        with the host's links, 1,000 veths at 1,000 containers)."""
        out, names = [], {}
        for family, index, addr, prefixlen, label in await self._kernel("list addresses", self._nl.addresses):
            if family == socket.AF_INET6 and ipaddress.ip_address(addr).is_link_local:
                continue
            if index not in names:
                label = label if family == socket.AF_INET else ""
                names[index] = label.split(":")[0] if label else await self._name_of(index)
            out.append((names[index], f"{addr}/{prefixlen}"))
        return out

    async def _name_of(self, index: int) -> str:
        link = await self._kernel(f"look up interface {index}", self._nl.by_index, index)
        return (link.name if link else None) or str(index)
