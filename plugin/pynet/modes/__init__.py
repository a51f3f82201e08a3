"""Kernel shape of each network mode. Modes never parse HTTP; kernel/ knows nothing of Docker.

A mode turns a validated Network/Endpoint into links (idempotently) and back.
The service keeps state, locks, undo and ports; a mode only builds and removes.
"""

from __future__ import annotations

import ipaddress

from ..model import Endpoint, Network


GONE, CREATED, IN_CONTAINER = "gone", "created", "in_container"


class Mode:
    uses_firewall = False

    def __init__(self, links, sysctl, owner_tag: str):
        self.links = links
        self.sysctl = sysctl
        self.owner_tag = owner_tag

    def alias(self, object_id: str) -> str:
        return self.owner_tag + object_id

    def link_names(self, net: Network) -> set[str]:
        raise NotImplementedError

    async def prepare(self, net: Network) -> None:
        """Fill in what the request left to the driver (read-only kernel lookups), before any check."""

    async def check(self, net: Network, others: list[Network]) -> None:
        """Mode-specific conflicts, before anything is touched."""

    async def ensure_network(self, net: Network, undo) -> None:
        raise NotImplementedError

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        raise NotImplementedError

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        raise NotImplementedError

    async def endpoint_state(self, net: Network, ep: Endpoint) -> str:
        """GONE (nothing of it left), CREATED (its interface still on the host: never joined) or
        IN_CONTAINER, judged by what the HOST network namespace shows (a managed plugin cannot
        see Docker's netns paths: never judge by SandboxKey)."""
        if await self.links.get(ep.host_if) is None:
            return GONE
        return CREATED if await self.links.get(ep.peer_if) is not None else IN_CONTAINER

    async def endpoint_alive(self, net: Network, ep: Endpoint) -> bool:
        return await self.endpoint_state(net, ep) != GONE

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        """At start, for a live endpoint: put back what belongs to it on the host side."""

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        raise NotImplementedError

    async def announce(self, net: Network, ep: Endpoint) -> None:
        """After Join: tell the LAN where the container's address lives (l2bridge)."""

    def join_reply(self, net: Network, ep: Endpoint) -> dict:
        reply: dict = {"InterfaceName": {"SrcName": ep.peer_if,
                                         "DstPrefix": net.options.get("container_iface_prefix", "eth")}}
        if not net.internal:
            # A Gateway keeps Docker from adding docker_gwbridge (and Docker 26.1+ forwards DNS
            # only for containers with one); --internal has no way out.
            if net.v4 and ep.ipv4:
                reply["Gateway"] = str(ipaddress.ip_interface(net.v4[0].gateway).ip)
            if net.v6 and ep.ipv6:
                reply["GatewayIPv6"] = str(ipaddress.ip_interface(net.v6[0].gateway).ip)
        return reply

    async def _delete_links(self, names) -> list[str]:
        errors = []
        for name in names:
            if not name:
                continue
            try:
                await self.links.delete(name)
            except Exception as e:  # noqa: BLE001 - teardown keeps going and reports all
                errors.append(f"{name}: {e}")
        return errors
