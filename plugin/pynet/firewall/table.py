"""pynet's nftables table: one lock, one transaction per change, bookkeeping of what the kernel took.

The core hands it small things (set elements a mode computed, published-port bindings);
it knows no network, endpoint or mode.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import KernelError
from ..model import Binding
from . import counters, docker_user, ruleset

log = logging.getLogger("pynet.firewall")


class Firewall:
    """pynet's table, with bookkeeping of every element the kernel accepted (as firewalld does).

    All changes go through one lock, one nft transaction each, and the bookkeeping is
    updated only after the kernel took the batch; a repair (table flushed by someone)
    re-applies exactly the bookkeeping, so it can never drop a port published meanwhile.
    """

    def __init__(self, nft, table: str):
        self.nft = nft
        self.table = table
        self._lock = asyncio.Lock()
        self._elems: dict[str, dict[str, str | None]] = {}  # set/map name -> {key: map value or None}
        # Set while a state file is damaged: the table then holds elements of a network pynet
        # cannot read, so it is never replaced wholesale (only added to) until an operator acts.
        self.preserve = False
        nft.declare(ruleset.FAMILY, table, ruleset.declared(ruleset.FAMILY))
        nft.declare("bridge", table, ruleset.declared("bridge"))

    async def rebuild(self, elems: dict[str, list[str]]) -> None:
        """The whole table from these elements (start-up, reconcile: the caller holds every lock).
        Published ports keep what their elements counted (a pynet restart resets no port's metrics)."""
        wanted = _parse(elems)
        async with self._lock:
            if self.preserve and await self._present():
                await self.nft.run(ruleset.element_lines(self.table, "add", _lines(wanted)))
            else:
                kept = await self._port_counts()
                await self.nft.run(ruleset.skeleton(self.table) + ruleset.element_lines(self.table, "add",
                                                                                        _lines(wanted, kept)))
            self._elems = wanted

    async def _port_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """The port maps' element counters now (none when the table is missing or unreadable)."""
        listing = await self.nft.list(f"table {ruleset.FAMILY} {self.table}")
        found = counters.Counters()
        if listing:
            counters.parse(listing, found)
        return found.ports

    async def repair(self) -> None:
        """The table again, from the bookkeeping (after something outside pynet removed it)."""
        async with self._lock:
            await self.nft.run(ruleset.skeleton(self.table) + ruleset.element_lines(self.table, "add",
                                                                                    _lines(self._elems)))

    async def _change(self, remove: dict[str, list[str]], add: dict[str, list[str]]) -> None:
        """One transaction; the bookkeeping follows only when the kernel took it."""
        rm, ad = _parse(remove), _parse(add)
        async with self._lock:
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
                    new = _apply({name: dict(items) for name, items in self._elems.items()}, rm, ad)
                    kept = await self._port_counts()
                    await self.nft.run(ruleset.skeleton(self.table)
                                       + ruleset.element_lines(self.table, "add", _lines(new, kept)))
            _apply(self._elems, rm, ad)  # in place: a copy of every set per change grew with the endpoints

    def has(self, name: str, element: str) -> bool:
        key = element.split(" : ", 1)[0]
        return key in self._elems.get(name, {})

    async def add(self, elems: dict[str, list[str]]) -> None:
        """Add what is not there yet (a repeated Join re-adds its endpoint's elements: no-op)."""
        missing = {name: [e for e in items if not self.has(name, e)] for name, items in elems.items()}
        if any(missing.values()):
            await self._change({}, missing)

    async def remove(self, elems: dict[str, list[str]]) -> None:
        """Remove what is there (removing twice is fine)."""
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

    async def counters(self) -> counters.Counters:
        """Published ports' and drop rules' counters: one listing per table, no lock (it changes
        nothing; libnftables calls are serialised by kernel/nft.py)."""
        return await counters.read(self.nft, self.table)

    async def docker_backend(self) -> str:
        """Docker's firewall, read from nftables (handlers never call Docker's API): "iptables"
        (its DOCKER-USER chain: pynet adds two accepts), "nftables" (Docker 29's `ip docker-bridges`:
        it drops nothing of pynet's, so nothing to add) or "none" (--iptables=false, or no Docker)."""
        if await self.nft.list("chain ip filter DOCKER-USER") is not None:
            return "iptables"
        if await self.nft.list("table ip docker-bridges") is not None:
            return "nftables"
        return "none"

    async def sync_docker_user(self, patterns: list[str], ours: set[str], keep: bool = False) -> list[str]:
        async with self._lock:
            return await docker_user.sync(self.nft, patterns, ours, keep)

    async def delete_table(self) -> None:
        if self.preserve:
            return  # a damaged state file's network may still use it
        lines = []
        for t in (f"{ruleset.FAMILY} {self.table}", f"bridge {self.table}"):
            lines += [f"add table {t}", f"delete table {t}"]
        async with self._lock:
            await self.nft.run(lines)
            self._elems = {}


def _apply(elems: dict[str, dict[str, str | None]], rm: dict, ad: dict) -> dict[str, dict[str, str | None]]:
    """The bookkeeping `elems` with the keys of `rm` gone and the items of `ad` in (changed in place)."""
    for name, keys in rm.items():
        for key in keys:
            elems.get(name, {}).pop(key, None)
    for name, items in ad.items():
        elems.setdefault(name, {}).update(items)
    return elems


def _parse(elems: dict[str, list[str]]) -> dict[str, dict[str, str | None]]:
    """nft element texts ("key" or "key : value") -> {name: {key: value}}."""
    out: dict[str, dict[str, str | None]] = {}
    for name, items in elems.items():
        for item in items:
            key, _sep, value = item.partition(" : ")
            out.setdefault(name, {})[key] = value or None
    return out


def _lines(elems: dict[str, dict[str, str | None]], counts: dict[tuple[str, str], tuple[int, int]] | None = None
           ) -> dict[str, list[str]]:
    """Element texts; `counts`: (map, key) -> (packets, bytes) to start a port map's element counter at."""
    counts = counts or {}

    def text(name: str, key: str, value: str | None) -> str:
        if (name, key) in counts:
            key = f"{key} counter packets {counts[name, key][0]} bytes {counts[name, key][1]}"
        return key if value is None else f"{key} : {value}"
    return {name: [text(name, k, v) for k, v in items.items()] for name, items in elems.items()}
