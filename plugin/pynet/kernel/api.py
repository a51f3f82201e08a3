"""The kernel boundary, as the core and the modes see it: what Links, Nft and the Prober must offer.

kernel/links.py (pyroute2), kernel/nft.py (libnftables) and kernel/probe.py (packet sockets)
implement these; the unit tests' fakes implement them too, and a test checks both against these
Protocols (same methods, same parameters), so a fake cannot drift from the real thing unseen.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LinkStats:
    """A link's counters as the host sees them (IFLA_STATS64): its own receive and transmit side."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0


@runtime_checkable
class LinksAPI(Protocol):
    async def list(self) -> list: ...

    async def get(self, name: str): ...

    async def delete(self, name: str) -> None: ...

    async def ensure_bridge(self, name: str, alias: str, mtu: int, addrs: list[str], ipv6: bool,
                            mac: str = "") -> bool: ...

    async def ensure_addr(self, index: int, name: str, cidr: str) -> None: ...

    async def ensure_veth(self, host: str, peer: str, mac: str, mtu: int, master: str, alias: str,
                          isolated: bool) -> bool: ...

    async def ensure_routed_veth(self, host: str, peer: str, mac: str, mtu: int, alias: str) -> bool: ...

    async def ensure_macvlan(self, name: str, parent: str, mac: str, mode: str, mtu: int, alias: str) -> bool: ...

    async def ensure_vlan(self, name: str, base: str, vlan_id: int, alias: str) -> bool: ...

    async def ensure_vxlan(self, name: str, vni: int, dev: str, local: str, group: str, port: int, mtu: int,
                           master: str, alias: str, isolated: bool) -> bool: ...

    async def set_up(self, name: str) -> None: ...

    async def ensure_route(self, cidr: str, dev: str, src: str = "", table: int = 0, gateway: str = "") -> None: ...

    async def delete_route(self, cidr: str, dev: str, table: int = 0) -> None: ...

    async def ensure_rule(self, iif: str, table: int, priority: int, family: int = socket.AF_INET) -> None: ...

    async def delete_rule(self, iif: str, table: int, priority: int, family: int = socket.AF_INET) -> None: ...

    async def rules(self, priority: int) -> list[tuple[int, str, int]]: ...

    async def ensure_proxy_neigh(self, ip: str, dev: str) -> None: ...

    async def delete_proxy_neigh(self, ip: str, dev: str) -> None: ...

    async def lower_macs(self, dev: str) -> set[str]: ...

    async def default_routers(self, dev: str) -> list[str]: ...

    async def default_route_dev(self) -> str: ...

    async def addresses(self) -> list[tuple[str, str]]: ...

    async def container_addr(self, sandbox: str, mac: str, cidr: str, present: bool) -> bool: ...

    async def link_stats(self) -> dict[str, LinkStats]: ...


@runtime_checkable
class ProbeAPI(Protocol):
    async def probe(self, ifname: str, ip: str, count: int = 2, wait: float = 0.2) -> str: ...


@runtime_checkable
class NftAPI(Protocol):
    async def run(self, lines: list[str]) -> None: ...

    async def list(self, what: str) -> list[dict] | None: ...


class SysctlAPI(Protocol):
    def __call__(self, path: str, value: str) -> None: ...
