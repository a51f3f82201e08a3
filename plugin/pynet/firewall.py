"""Keeps pynet's nftables table and its DOCKER-USER accepts in step with the model."""

from __future__ import annotations

import asyncio
import logging

from . import ruleset
from .errors import KernelError
from .model import Binding, Network

log = logging.getLogger("pynet.firewall")


class Firewall:
    """pynet's table, with bookkeeping of every element the kernel accepted (as firewalld does).

    All changes go through one lock, one nft transaction each, and the bookkeeping is
    updated only after the kernel took the batch; a repair (table flushed by someone)
    re-applies exactly the bookkeeping, so it can never drop a port published meanwhile.
    """

    def __init__(self, nft, table: str, prefix: str):
        self.nft = nft
        self.table = table
        self.prefix = prefix
        self._lock = asyncio.Lock()
        self._elems: dict[str, dict[str, str | None]] = {}  # set/map name -> {key: map value or None}
        # Set while a state file is damaged: the table then holds elements of a network pynet
        # cannot read, so it is never replaced wholesale (only added to) until an operator acts.
        self.preserve = False

    async def rebuild(self, networks: list[Network]) -> None:
        """The table from the model (start-up, reconcile: the caller holds every lock)."""
        elems = _parse(ruleset.full_elements([n for n in networks if n.mode in ruleset.MODES]))
        async with self._lock:
            if self.preserve and await self._present():
                await self.nft.run(ruleset.element_lines(self.table, "add", _lines(elems)))
            else:
                await self.nft.run(ruleset.skeleton(self.table) + ruleset.element_lines(self.table, "add",
                                                                                        _lines(elems)))
            self._elems = elems

    async def repair(self) -> None:
        """The table again, from the bookkeeping (after something outside pynet removed it)."""
        async with self._lock:
            await self.nft.run(ruleset.skeleton(self.table) + ruleset.element_lines(self.table, "add",
                                                                                    _lines(self._elems)))

    async def _change(self, remove: dict[str, list[str]], add: dict[str, list[str]]) -> None:
        """One transaction; the bookkeeping follows only when the kernel took it."""
        rm, ad = _parse(remove), _parse(add)
        async with self._lock:
            new = {name: dict(items) for name, items in self._elems.items()}
            for name, keys in rm.items():
                for key in keys:
                    new.get(name, {}).pop(key, None)
            for name, items in ad.items():
                new.setdefault(name, {}).update(items)
            deletes = ruleset.element_lines(self.table, "delete", {k: list(v) for k, v in rm.items()})
            adds = ruleset.element_lines(self.table, "add", _lines(ad))
            try:
                await self.nft.run(deletes + adds)
            except KernelError as e:
                # The kernel is not what the bookkeeping says (someone edited the table): put the
                # whole wanted state in place instead, still in one transaction.
                log.warning("nftables out of step, rewriting the table", extra={"fields": {"why": str(e)}})
                if self.preserve and await self._present():
                    for line in deletes:
                        try:
                            await self.nft.run([line])
                        except KernelError:
                            pass  # already gone
                    await self.nft.run(adds)
                else:
                    await self.nft.run(ruleset.skeleton(self.table)
                                       + ruleset.element_lines(self.table, "add", _lines(new)))
            self._elems = new

    def has(self, name: str, element: str) -> bool:
        key = element.split(" : ", 1)[0]
        return key in self._elems.get(name, {})

    async def add_network(self, net: Network) -> None:
        if net.mode != "nat":
            return  # transparent: containers are not behind the host; l2bridge: per endpoint
        await self._change({}, ruleset.elements(net))

    async def add_endpoint(self, net: Network, ep) -> None:
        """Anti-spoofing elements of one endpoint (nat: bridge table; l2bridge: inet table)."""
        elems = ruleset.endpoint_elements(ep, net.mode)
        # Join repeats this for an endpoint already in place: only what is missing goes in.
        missing = {name: [e for e in items if not self.has(name, e)] for name, items in elems.items()}
        if any(missing.values()):
            await self._change({}, missing)

    async def remove_endpoint(self, net: Network, ep) -> None:
        elems = ruleset.endpoint_elements(ep, net.mode)
        present = {name: [e for e in items if self.has(name, e)] for name, items in elems.items()}
        if any(present.values()):
            await self._change(present, {})

    async def remove_network(self, net: Network) -> None:
        if net.mode not in ruleset.MODES:
            return
        elems = ruleset.elements(net)
        bindings = [b for ep in net.endpoints.values() for b in ep.bindings]
        for name, items in ruleset.binding_elements(bindings).items():
            elems[name] = elems.get(name, []) + items
        present = {name: [e for e in items if self.has(name, e)] for name, items in elems.items()}
        if any(present.values()):
            await self._change(present, {})

    async def change_ports(self, remove: list[Binding], add: list[Binding]) -> None:
        """Published ports out and in, as one transaction (a failure changes nothing)."""
        keep = set(remove) & set(add)
        remove = [b for b in remove if b not in keep]
        add = [b for b in add if b not in keep]
        if remove or add:
            await self._change(ruleset.binding_elements(remove), ruleset.binding_elements(add))

    async def _present(self) -> bool:
        return await self.nft.list(f"table {ruleset.FAMILY} {self.table}") is not None and \
            await self.nft.list(f"table bridge {self.table}") is not None

    async def table_present(self) -> bool:
        return await self._present()

    async def docker_backend(self) -> str:
        """Docker's firewall, read from nftables (handlers never call Docker's API): "iptables"
        (its DOCKER-USER chain: pynet adds two accepts), "nftables" (Docker 29's `ip docker-bridges`:
        it drops nothing of pynet's, so nothing to add) or "none" (--iptables=false, or no Docker)."""
        if await self.nft.list("chain ip filter DOCKER-USER") is not None:
            return "iptables"
        if await self.nft.list("table ip docker-bridges") is not None:
            return "nftables"
        return "none"

    async def delete_table(self) -> None:
        if self.preserve:
            return  # a damaged state file's network may still use it
        lines = []
        for t in (f"{ruleset.FAMILY} {self.table}", f"bridge {self.table}"):
            lines += [f"add table {t}", f"delete table {t}"]
        async with self._lock:
            await self.nft.run(lines)
            self._elems = {}

    async def sync_docker_user(self, networks: list[Network], forget: tuple[str, ...] = (),
                               keep: bool = False) -> list[str]:
        """Make DOCKER-USER (ip and ip6 `filter`, where Docker made it) accept pynet's interfaces.

        Only rules of the exact shape pynet writes are touched: the prefix pattern
        and custom bridge names of pynet networks (`forget` = names of networks
        just deleted). Returns the families where the chain exists.
        """
        networks = [n for n in networks if n.mode in ruleset.MODES]
        wanted = ruleset.docker_user_wanted(self.prefix, networks, always=keep)
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
                # keep: a damaged state file's network may need any of them: only add.
                extra = [] if keep else (handles if key_pat not in wanted else handles[1:])
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


def _parse(elems: dict[str, list[str]]) -> dict[str, dict[str, str | None]]:
    """nft element texts ("key" or "key : value") -> {name: {key: value}}."""
    out: dict[str, dict[str, str | None]] = {}
    for name, items in elems.items():
        for item in items:
            key, _sep, value = item.partition(" : ")
            out.setdefault(name, {})[key] = value or None
    return out


def _lines(elems: dict[str, dict[str, str | None]]) -> dict[str, list[str]]:
    return {name: [k if v is None else f"{k} : {v}" for k, v in items.items()] for name, items in elems.items()}
