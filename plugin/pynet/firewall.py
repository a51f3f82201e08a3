"""Keeps pynet's nftables table and its DOCKER-USER accepts in step with the model."""

from __future__ import annotations

import logging

from . import ruleset
from .model import Binding, Network

log = logging.getLogger("pynet.firewall")


class Firewall:
    def __init__(self, nft, table: str, prefix: str):
        self.nft = nft
        self.table = table
        self.prefix = prefix

    async def rebuild(self, networks: list[Network]) -> None:
        await self.nft.run(ruleset.full(self.table, [n for n in networks if n.mode in ruleset.MODES]))

    async def add_network(self, net: Network) -> None:
        if net.mode != "nat":
            return  # transparent: containers are not behind the host; l2bridge: per endpoint
        await self.nft.run(ruleset.element_lines(self.table, "add", ruleset.elements(net)))

    async def add_endpoint(self, net: Network, ep) -> None:
        """Anti-spoofing elements of one endpoint (nat: bridge table; l2bridge: inet table)."""
        elems = ruleset.endpoint_elements(ep, net.mode)
        if elems:
            await self.nft.run(ruleset.element_lines(self.table, "add", elems))

    async def remove_endpoint(self, net: Network, ep) -> None:
        elems = ruleset.endpoint_elements(ep, net.mode)
        if elems:
            await self.nft.run(ruleset.element_lines(self.table, "delete", elems))

    async def remove_network(self, net: Network) -> None:
        if net.mode == "l2bridge":
            await self.nft.run(ruleset.element_lines(self.table, "delete", ruleset.elements(net)))
        if net.mode != "nat":
            return
        bindings = [b for ep in net.endpoints.values() for b in ep.bindings]
        await self.nft.run(ruleset.element_lines(self.table, "delete", ruleset.binding_elements(bindings, False))
                           + ruleset.element_lines(self.table, "delete", ruleset.elements(net)))

    async def change_ports(self, remove: list[Binding], add: list[Binding]) -> None:
        """Published ports out and in, as one transaction (a failure changes nothing)."""
        keep = set(remove) & set(add)
        remove = [b for b in remove if b not in keep]
        add = [b for b in add if b not in keep]
        await self.nft.run(ruleset.element_lines(self.table, "delete", ruleset.binding_elements(remove, False))
                           + ruleset.element_lines(self.table, "add", ruleset.binding_elements(add)))

    async def table_present(self) -> bool:
        return await self.nft.list(f"table {ruleset.FAMILY} {self.table}") is not None and \
            await self.nft.list(f"table bridge {self.table}") is not None

    async def delete_table(self) -> None:
        lines = []
        for t in (f"{ruleset.FAMILY} {self.table}", f"bridge {self.table}"):
            lines += [f"add table {t}", f"delete table {t}"]
        await self.nft.run(lines)

    async def sync_docker_user(self, networks: list[Network], forget: tuple[str, ...] = ()) -> list[str]:
        """Make DOCKER-USER (ip and ip6 `filter`, where Docker made it) accept pynet's interfaces.

        Only rules of the exact shape pynet writes are touched: the prefix pattern
        and custom bridge names of pynet networks (`forget` = names of networks
        just deleted). Returns the families where the chain exists.
        """
        networks = [n for n in networks if n.mode in ruleset.MODES]
        wanted = ruleset.docker_user_wanted(self.prefix, networks)
        ours = {self.prefix + "*", *forget, *(n.bridge for n in networks if n.custom_bridge)}
        seen = []
        for family in ("ip", "ip6"):
            listing = await self.nft.list(f"chain {family} filter DOCKER-USER")
            if listing is None:
                continue
            seen.append(family)
            present: dict[tuple[str, str], list[int]] = {}
            for item in listing:
                rule = item.get("rule")
                if not rule:
                    continue
                key_pat = _our_shape(rule.get("expr", []))
                if key_pat and key_pat[1] in ours:
                    present.setdefault(key_pat, []).append(rule["handle"])
            lines = []
            for key, pattern in wanted:
                if (key, pattern) not in present:
                    lines.append(f'insert rule {family} filter DOCKER-USER {key} "{pattern}" accept')
            for key_pat, handles in present.items():
                extra = handles if key_pat not in wanted else handles[1:]
                lines += [f"delete rule {family} filter DOCKER-USER handle {h}" for h in extra]
            if lines:
                log.info("docker-user sync", extra={"fields": {"family": family, "changes": len(lines)}})
                await self.nft.run(lines)
        return seen


def _our_shape(expr: list) -> tuple[str, str] | None:
    """(key, pattern) when a rule is exactly `<iif|oif>name == "<pattern>" accept`."""
    if len(expr) != 2 or expr[1] != {"accept": None}:
        return None
    m = expr[0].get("match") if isinstance(expr[0], dict) else None
    if not m or m.get("op") != "==" or not isinstance(m.get("right"), str):
        return None
    key = (m.get("left") or {}).get("meta", {}).get("key")
    if key not in ("iifname", "oifname"):
        return None
    return key, m["right"]
