"""Policing with nftables: what arrives on a host device beyond a rate is dropped.

Traffic a host device *receives* cannot be queued (Linux shapes only what a device
sends), and this kernel has no tc actions (act_police, act_mirred: no tc policer, no
ifb redirect), so the receive side is policed in nftables' netdev family, at the
device's ingress hook, the first place a frame is seen:

  table netdev <table>
    chain dev_<dev>     hook ingress device <dev>: `limit rate over R bytes/second burst B
                        bytes counter drop` (everything arriving on dev: nat/l2bridge, the
                        host side of a container's veth = the container's egress)
    chain dst_<dev>     hook ingress device <dev>: `limit name ether daddr map @macs_<dev>
    map   macs_<dev>    counter drop`: one named limit per destination MAC, looked up in a
    limit l_<dev>_<mac> map (transparent: frames for a container's macvlan arrive on its parent)

A chain exists only while something on its device is policed (an unlimited endpoint pays
nothing: no hook on its device), and the table only while some chain does. The kernel's
nftables `limit` in bytes keeps a bucket of one second at the rate plus the burst
(nft_limit_init: tokens_max = unit * (rate + burst) / rate): after an idle second a
policed sender may send one second's worth at full speed before the rate holds.
Scripts are nft's text syntax, as kernel/nft.py runs them, one transaction per change.
"""

from __future__ import annotations

import asyncio

from ..errors import KernelError

FAMILY = "netdev"


def _dev_chain(dev: str) -> str:
    return f"dev_{dev}"


def _dst_chain(dev: str) -> str:
    return f"dst_{dev}"


def _map(dev: str) -> str:
    return f"macs_{dev}"


def _obj(dev: str, mac: str) -> str:
    return f"l_{dev}_{mac.replace(':', '')}"


def _limit(rate: int, burst: int) -> str:
    return f"rate over {rate // 8} bytes/second burst {burst} bytes"


_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024**2}


def _amounts(lim: dict) -> tuple[int, int]:
    """(bits/s, burst bytes) of a limit as nft's JSON shows it (it picks kbytes/mbytes when they divide)."""
    rate = int(lim.get("rate", 0)) * _UNITS.get(lim.get("rate_unit", "bytes"), 1)
    burst = int(lim.get("burst", 0)) * _UNITS.get(lim.get("burst_unit", "bytes"), 1)
    return rate * 8, burst


def _hook(dev: str) -> str:
    return f'{{ type filter hook ingress device "{dev}" priority 0; policy accept; }}'


class Police:
    """Policers in pynet's netdev table (its name is pynet's table name, like its bridge table)."""

    def __init__(self, nft, table: str):
        self.nft = nft
        self.table = table
        self.t = f"{FAMILY} {table}"
        self._lock = asyncio.Lock()

    async def _read(self) -> dict:
        """{"chains": {name: (device, [rule exprs])}, "maps": {name: {mac: object}}, "limits": {name: (bits/s, burst)}}."""
        out: dict = {"chains": {}, "maps": {}, "limits": {}}
        items = await self.nft.list(f"table {self.t}")
        for item in items or []:
            if "chain" in item:
                c = item["chain"]
                out["chains"].setdefault(c["name"], (c.get("dev", ""), []))
                out["chains"][c["name"]] = (c.get("dev", ""), out["chains"][c["name"]][1])
            elif "rule" in item:
                r = item["rule"]
                dev, rules = out["chains"].setdefault(r["chain"], ("", []))
                rules.append(r.get("expr", []))
            elif "map" in item:
                m = item["map"]
                out["maps"][m["name"]] = {str(k): str(v) for k, v in m.get("elem", [])}
            elif "limit" in item:
                lim = item["limit"]
                out["limits"][lim["name"]] = _amounts(lim)
        return out

    def _drop_table_if_empty(self, state: dict, lines: list[str], chains: set[str], maps: set[str],
                             objs: set[str]) -> None:
        if set(state["chains"]) <= chains and set(state["maps"]) <= maps and set(state["limits"]) <= objs:
            lines.append(f"delete table {self.t}")

    # ------------------------------------------------------------ everything arriving on a device
    async def police(self, dev: str, rate: int, burst: int) -> None:
        """Frames arriving on dev beyond `rate` bits/s (bursts of `burst` bytes) are dropped."""
        chain = _dev_chain(dev)
        async with self._lock:
            await self.nft.run([f"add table {self.t}", f"add chain {self.t} {chain} {_hook(dev)}",
                                f"flush chain {self.t} {chain}",
                                f"add rule {self.t} {chain} limit {_limit(rate, burst)} counter drop"])

    async def unpolice(self, dev: str) -> None:
        """dev's policer off (none: nothing to do); the table goes with its last chain."""
        chain = _dev_chain(dev)

        def plan(state: dict) -> list[str]:
            if chain not in state["chains"]:
                return []
            lines = [f"flush chain {self.t} {chain}", f"delete chain {self.t} {chain}"]
            self._drop_table_if_empty(state, lines, {chain}, set(), set())
            return lines
        await self._remove(plan)

    async def _remove(self, plan) -> None:
        """Run plan(what the table holds now), a removal. Older kernels delete a device's
        netdev chains when the device goes (a container's veth with its namespace, in the
        background), which can happen between the read and the change: then read and plan again."""
        async with self._lock:
            lines = plan(await self._read())
            if not lines:
                return
            try:
                await self.nft.run(lines)
            except KernelError:
                lines = plan(await self._read())
                if lines:
                    await self.nft.run(lines)

    # ------------------------------------------------------------ frames for one MAC arriving on a device
    async def police_dest(self, dev: str, mac: str, rate: int, burst: int) -> None:
        """Frames for `mac` arriving on dev beyond `rate` bits/s (bursts of `burst` bytes) are dropped."""
        chain, mapname, obj = _dst_chain(dev), _map(dev), _obj(dev, mac)
        async with self._lock:
            state = await self._read()
            lines = [f"add table {self.t}", f"add map {self.t} {mapname} {{ type ether_addr : limit; }}",
                     f"add chain {self.t} {chain} {_hook(dev)}"]
            if not state["chains"].get(chain, ("", []))[1]:
                lines.append(f"add rule {self.t} {chain} limit name ether daddr map @{mapname} counter drop")
            if mac in state["maps"].get(mapname, {}):
                lines.append(f"delete element {self.t} {mapname} {{ {mac} }}")
            if obj in state["limits"]:
                lines.append(f"delete limit {self.t} {obj}")
            lines += [f"add limit {self.t} {obj} {{ {_limit(rate, burst)} }}",
                      f'add element {self.t} {mapname} {{ {mac} : "{obj}" }}']
            await self.nft.run(lines)

    async def unpolice_dest(self, dev: str, mac: str) -> None:
        """mac's policer on dev off; the chain and map go with the device's last one."""
        chain, mapname, obj = _dst_chain(dev), _map(dev), _obj(dev, mac)

        def plan(state: dict) -> list[str]:
            lines = []
            elems = state["maps"].get(mapname, {})
            if mac in elems:
                lines.append(f"delete element {self.t} {mapname} {{ {mac} }}")
            if obj in state["limits"]:
                lines.append(f"delete limit {self.t} {obj}")
            gone_chains, gone_maps = set(), set()
            if mapname in state["maps"] and set(elems) <= {mac}:
                if chain in state["chains"]:
                    lines += [f"flush chain {self.t} {chain}", f"delete chain {self.t} {chain}"]
                    gone_chains.add(chain)
                lines.append(f"delete map {self.t} {mapname}")
                gone_maps.add(mapname)
            if lines:
                self._drop_table_if_empty(state, lines, gone_chains, gone_maps, {obj})
            return lines
        await self._remove(plan)

    # ------------------------------------------------------------ what is there (reconcile, views)
    async def policed(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(device, destination MAC or "" for the whole device) -> (bits/s, burst bytes)."""
        async with self._lock:
            state = await self._read()
        out = {}
        for name, (dev, rules) in state["chains"].items():
            if name.startswith("dev_"):
                for expr in rules:
                    lim = next((e["limit"] for e in expr if "limit" in e and "rate" in e["limit"]), None)
                    if lim is not None:
                        out[(dev or name[4:], "")] = _amounts(lim)
        for mapname, elems in state["maps"].items():
            if mapname.startswith("macs_"):
                for mac, obj in elems.items():
                    out[(mapname[5:], mac)] = state["limits"].get(obj, (0, 0))
        return out

    async def sweep(self, keep: set[tuple[str, str]]) -> list[str]:
        """Everything in the table but the policers in `keep` ((device, MAC or "")) goes: leftovers of
        endpoints that went while pynet was down, of a crash between a change and its save, or made
        by hand. One transaction; the table goes when nothing is kept. Returns what went."""
        chains = {_dev_chain(d) for d, m in keep if not m} | {_dst_chain(d) for d, m in keep if m}
        maps = {_map(d): {m for d2, m in keep if m and d2 == d} for d, m in keep if m}
        objs = {_obj(d, m) for d, m in keep if m}
        async with self._lock:
            state = await self._read()
            if not (state["chains"] or state["maps"] or state["limits"]):
                if await self.nft.list(f"table {self.t}") is not None and not keep:
                    await self.nft.run([f"delete table {self.t}"])
                return []
            lines, removed = [], []
            for mapname, elems in state["maps"].items():
                for mac in sorted(set(elems) - maps.get(mapname, set())):
                    removed.append(f"policer for {mac} on {mapname[len('macs_'):]}")
                    if mapname in maps:
                        lines.append(f"delete element {self.t} {mapname} {{ {mac} }}")
            for name in sorted(set(state["chains"]) - chains):
                if name.startswith("dev_"):
                    removed.append(f"policer on {state['chains'][name][0] or name[4:]}")
                lines += [f"flush chain {self.t} {name}", f"delete chain {self.t} {name}"]
            lines += [f"delete map {self.t} {name}" for name in sorted(set(state["maps"]) - set(maps))]
            lines += [f"delete limit {self.t} {name}" for name in sorted(set(state["limits"]) - objs)]
            if not keep:
                lines = [f"delete table {self.t}"]
            if lines:
                await self.nft.run(lines)
            return removed
