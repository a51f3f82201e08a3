"""Fakes for kernel/ (links, nftables, sysctl) so the service runs without root.

They are strict where the kernel is strict (an nft batch is all or nothing;
deleting an element that is not there fails; elements go only into sets and
maps the table declared), so a bug in what pynet asks for shows up here too.
"""

from __future__ import annotations

import copy
import ipaddress
import socket
import json
import re
from dataclasses import dataclass, field

from aiohttp.test_utils import TestClient

from pynet.errors import KernelError
from pynet.kernel.api import LinkStats

ID_A = "a" * 64
ID_B = "b" * 64
EP_1 = "1" * 64
EP_2 = "2" * 64
EP_3 = "3" * 64


def nid(ch: str) -> str:
    return ch * 64


# ---------------------------------------------------------------- links

@dataclass
class Link:
    name: str
    alias: str = ""
    kind: str = ""
    master: str = ""
    mac: str = ""
    mtu: int = 0
    up: bool = False
    peer: str = ""
    parent: str = ""
    addrs: list[str] = field(default_factory=list)
    vni: int = 0
    group: str = ""
    isolated: bool = False
    stats: LinkStats = field(default_factory=LinkStats)  # tests set traffic here


class FakeLinks:
    """In-memory links with the same idempotent contract as kernel/links.py."""

    def __init__(self, host_addrs: list[tuple[str, str]] = ()):
        self.links: dict[str, Link] = {}
        self.host_addrs = list(host_addrs)  # addresses on host interfaces that are not links of ours
        self.routes: dict[str, tuple[str, str]] = {}  # cidr -> (dev, src)
        self.calls: list[tuple] = []
        self.fail: dict[str, Exception] = {}  # method name -> error raised on its next call
        self.in_containers: set[tuple[str, str]] = set()  # (parent, MAC) of macvlans moved into containers
        self.table_routes: dict[tuple[int, str], tuple[str, str]] = {}  # (table, cidr) -> (dev, gateway)
        self.rule_set: set[tuple[int, str, int, int]] = set()  # (family, iif, table, priority)
        self.proxy_neighs: set[tuple[str, str]] = set()  # (ip, dev)
        self.routers: dict[str, list[str]] = {}  # dev -> default routers through it
        self.container_addrs: dict[tuple[str, str], set[str]] = {}  # (sandbox, MAC) -> CIDRs in the container
        self.default_dev = ""  # interface of the IPv4 default route
        self.shapes: dict[str, tuple[int, int]] = {}  # dev -> (bits/s, burst) of pynet's TBF
        self.sources: dict[str, dict[str, tuple[int, int]]] = {}  # dev -> {MAC: (bits/s, burst)} of pynet's HTB
        self.foreign_qdisc: set[str] = set()  # devices whose root qdisc is someone else's

    def _maybe_fail(self, method: str) -> None:
        err = self.fail.pop(method, None)
        if err is not None:
            raise err

    def add_foreign(self, name: str, kind: str = "", alias: str = "") -> None:
        self.links[name] = Link(name=name, kind=kind, alias=alias)

    async def list(self):
        return list(self.links.values())

    async def get(self, name: str):
        return self.links.get(name)

    def move_to_container(self, name: str) -> None:
        """What the engine does after Join: the interface leaves the host's view (a macvlan keeps
        its MAC in its parent's unicast filter)."""
        link = self.links.pop(name)
        if link.kind == "macvlan":
            self.in_containers.add((link.parent, link.mac))

    async def lower_macs(self, dev: str) -> set[str]:
        """MACs of (up) macvlans on `dev`; `gone_into_containers` holds those moved out of sight."""
        return {link.mac for link in self.links.values() if link.parent == dev and link.kind == "macvlan"} | \
            {mac for parent, mac in self.in_containers if parent == dev}

    async def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        self._maybe_fail("delete")
        link = self.links.pop(name, None)
        if link is not None and link.peer:
            self.links.pop(link.peer, None)  # a veth goes as a pair
        for dev in (name, link.peer if link else ""):
            self.shapes.pop(dev, None)  # qdiscs go with their device
            self.sources.pop(dev, None)

    async def retire(self, name: str, peer: str = "") -> None:
        """Out of service and, in the fake, gone at once (the real one unregisters it later)."""
        self.calls.append(("retire", name))
        self._maybe_fail("retire")
        await self.delete(name)
        if peer:
            await self.delete(peer)

    async def retire_bridge(self, name: str, addrs: list[str]) -> None:
        self.calls.append(("retire_bridge", name))
        self._maybe_fail("retire_bridge")
        await self.delete(name)

    def retiring(self) -> set[str]:
        return set()

    async def settle(self) -> None:
        self.calls.append(("settle",))

    async def ensure_bridge(self, name, alias, mtu, addrs, ipv6, mac="") -> bool:
        self.calls.append(("ensure_bridge", name))
        self._maybe_fail("ensure_bridge")
        link = self.links.get(name)
        created = link is None
        if created:
            link = self.links[name] = Link(name=name, kind="bridge")
        elif link.kind != "bridge":
            raise KernelError(f"{name} exists and is a {link.kind or 'non-bridge'} link, not a bridge")
        link.alias, link.up = alias, True
        if mtu:
            link.mtu = mtu
        if mac:
            link.mac = mac
        for a in addrs:
            if a not in link.addrs:
                link.addrs.append(a)
        return created

    async def ensure_veth(self, host, peer, mac, mtu, master, alias, isolated) -> bool:
        self.calls.append(("ensure_veth", host, peer, mac))
        self._maybe_fail("ensure_veth")
        created = host not in self.links
        if created:
            self.links[host] = Link(name=host, kind="veth", peer=peer, mtu=mtu)
            self.links[peer] = Link(name=peer, kind="veth", peer=host, mac=mac, mtu=mtu)
        if master not in self.links:
            raise KernelError(f"bridge {master} is missing")
        h = self.links[host]
        h.master, h.alias, h.up = master, alias, True
        return created

    async def ensure_macvlan(self, name, parent, mac, mode, mtu, alias) -> bool:
        self.calls.append(("ensure_macvlan", name, parent, mac, mode))
        self._maybe_fail("ensure_macvlan")
        if name in self.links:
            return False
        self.links[name] = Link(name=name, kind="macvlan", parent=parent, mac=mac, alias=alias, mtu=mtu)
        return True

    async def ensure_vlan(self, name, base, vlan_id, alias) -> bool:
        self.calls.append(("ensure_vlan", name, base, vlan_id))
        if name in self.links:
            return False
        self.links[name] = Link(name=name, kind="vlan", parent=base, alias=alias)
        return True

    async def ensure_vxlan(self, name, vni, dev, local, group, port, mtu, master, alias, isolated) -> bool:
        self.calls.append(("ensure_vxlan", name, vni, dev, local, group, port))
        self._maybe_fail("ensure_vxlan")
        link = self.links.get(name)
        created = link is None
        if created:
            if dev not in self.links and not any(n == dev for n, _a in self.host_addrs):
                raise KernelError(f"underlay interface {dev} of {name} does not exist")
            others = [x for x in self.links.values() if x.kind == "vxlan" and x.vni == vni]
            if others:
                raise KernelError(f"create vxlan {name}: A VXLAN device with the specified VNI already exists")
            link = self.links[name] = Link(name=name, kind="vxlan", parent=dev, mtu=mtu, vni=vni, group=group)
        elif link.kind != "vxlan":
            raise KernelError(f"{name} exists and is not a vxlan device")
        if master not in self.links:
            if created:
                del self.links[name]
            raise KernelError(f"bridge {master} is missing")
        link.master, link.alias, link.up, link.isolated = master, alias, True, isolated
        return created

    async def set_up(self, name) -> None:
        if name not in self.links:
            raise KernelError(f"set up {name}: no such device")
        self.links[name].up = True

    async def ensure_routed_veth(self, host, peer, mac, mtu, alias) -> bool:
        self.calls.append(("ensure_routed_veth", host, peer, mac))
        self._maybe_fail("ensure_routed_veth")
        created = host not in self.links
        if created:
            self.links[host] = Link(name=host, kind="veth", peer=peer, mtu=mtu)
            self.links[peer] = Link(name=peer, kind="veth", peer=host, mac=mac, mtu=mtu)
        self.links[host].alias, self.links[host].up = alias, True
        return created

    async def ensure_addr(self, index, name, cidr) -> None:
        if name not in self.links:
            raise KernelError(f"add address {cidr} to {name}: no such device")
        if cidr not in self.links[name].addrs:
            self.links[name].addrs.append(cidr)

    async def ensure_route(self, cidr, dev, src="", table=0, gateway="") -> None:
        if dev not in self.links and not any(name == dev for name, _a in self.host_addrs):
            raise KernelError(f"interface {dev} for route {cidr} does not exist")
        if table:
            self.table_routes[(table, cidr)] = (dev, gateway)
        else:
            self.routes[cidr] = (dev, src)

    async def delete_route(self, cidr, dev, table=0) -> None:
        if table:
            self.table_routes.pop((table, cidr), None)
        else:
            self.routes.pop(cidr, None)

    async def ensure_rule(self, iif, table, priority, family=socket.AF_INET) -> None:
        self.rule_set.add((family, iif, table, priority))

    async def delete_rule(self, iif, table, priority, family=socket.AF_INET) -> None:
        self.rule_set.discard((family, iif, table, priority))

    async def rules(self, priority: int) -> list[tuple[int, str, int]]:
        return [(fam, iif, table) for fam, iif, table, prio in sorted(self.rule_set) if prio == priority]

    async def ensure_proxy_neigh(self, ip, dev) -> None:
        self.proxy_neighs.add((ip, dev))

    async def delete_proxy_neigh(self, ip, dev) -> None:
        self.proxy_neighs.discard((ip, dev))

    async def default_routers(self, dev) -> list[str]:
        return list(self.routers.get(dev, []))

    async def container_addr(self, sandbox, mac, cidr, present) -> bool:
        self.calls.append(("container_addr", sandbox, mac, cidr, present))
        self._maybe_fail("container_addr")
        addrs = self.container_addrs.setdefault((sandbox, mac), set())
        changed = (cidr not in addrs) if present else (cidr in addrs)
        (addrs.add if present else addrs.discard)(cidr)
        return changed

    async def default_route_dev(self) -> str:
        return self.default_dev

    async def link_stats(self) -> dict[str, LinkStats]:
        self.calls.append(("link_stats",))
        self._maybe_fail("link_stats")
        return {name: link.stats for name, link in self.links.items()}

    # -- tc (kernel/tc.py)
    def _tc_dev(self, dev: str, kind: str) -> None:
        if dev not in self.links and not any(name == dev for name, _a in self.host_addrs):
            raise KernelError(f"interface {dev} does not exist")
        if dev in self.foreign_qdisc:
            raise KernelError(f"{dev} has a root qdisc (fq 8001:) that pynet did not make")
        if (kind == "tbf" and dev in self.sources) or (kind == "htb" and dev in self.shapes):
            raise KernelError(f"{dev} already carries pynet's other qdisc")

    async def shape(self, dev, rate, burst) -> None:
        self.calls.append(("shape", dev, rate, burst))
        self._maybe_fail("shape")
        self._tc_dev(dev, "tbf")
        self.shapes[dev] = (rate, burst)

    async def unshape(self, dev) -> None:
        self.calls.append(("unshape", dev))
        self.shapes.pop(dev, None)

    async def shaped(self, dev):
        return self.shapes.get(dev)

    async def shaped_devices(self) -> dict[str, str]:
        return {**{d: "tbf" for d in self.shapes}, **{d: "htb" for d in self.sources}}

    async def shape_source(self, dev, mac, rate, burst) -> None:
        self.calls.append(("shape_source", dev, mac, rate, burst))
        self._maybe_fail("shape_source")
        self._tc_dev(dev, "htb")
        self.sources.setdefault(dev, {})[mac] = (rate, burst)

    async def unshape_source(self, dev, mac) -> None:
        self.calls.append(("unshape_source", dev, mac))
        self.sources.get(dev, {}).pop(mac, None)
        if not self.sources.get(dev, True):
            del self.sources[dev]  # the HTB goes with its last class

    async def shaped_sources(self, dev) -> set[str]:
        return set(self.sources.get(dev, {}))

    async def addresses(self) -> list[tuple[str, str]]:
        out = list(self.host_addrs)
        for link in self.links.values():
            out += [(link.name, a) for a in link.addrs]
        return out


# ---------------------------------------------------------------- probes on the LAN

class FakeProber:
    """Same interface as kernel/probe.Prober: `answers` maps an IP to the MAC that answers its probe."""

    def __init__(self, answers: dict[str, str] | None = None):
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, str, int, float]] = []

    async def probe(self, ifname: str, ip: str, count: int = 2, wait: float = 0.2) -> str:
        self.calls.append((ifname, ip, count, wait))
        return self.answers.get(ip, "")


# ---------------------------------------------------------------- nftables

# Tables are keyed by name for family inet and "bridge <name>" for family bridge.
_ELEM = re.compile(r"^(add|delete) element (inet|bridge) (\S+) (\S+) \{ (.*) \}$")
_DECL = re.compile(r"^add (set|map) (inet|bridge) (\S+) (\S+) \{")
_TABLE = re.compile(r"^(add|delete) table (inet|bridge) (\S+)$")


def _key(family: str, table: str) -> str:
    return table if family == "inet" else f"{family} {table}"
_DU_INSERT = re.compile(r'^insert rule (ip6?) filter DOCKER-USER (iifname|oifname) "([^"]+)" accept$')
_DU_DELETE = re.compile(r"^delete rule (ip6?) filter DOCKER-USER handle (\d+)$")


def du_rule(family: str, handle: int, key: str, pattern: str) -> dict:
    """A DOCKER-USER rule as `nft -j list chain` shows `<key> "<pattern>" accept`."""
    return {"rule": {"family": family, "table": "filter", "chain": "DOCKER-USER", "handle": handle,
                     "expr": [{"match": {"op": "==", "left": {"meta": {"key": key}}, "right": pattern}},
                              {"accept": None}]}}


def du_return(family: str, handle: int) -> dict:
    """Docker's own `-j RETURN` at the end of DOCKER-USER."""
    return {"rule": {"family": family, "table": "filter", "chain": "DOCKER-USER", "handle": handle,
                     "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"return": None}]}}


class FakeNft:
    """Same interface as kernel/nft.Nft: run(text lines) as one transaction, list(what) as JSON or None."""

    def __init__(self, docker_user: dict[str, list[dict]] | None = None):
        # table name -> {set/map name -> {key: value-or-None}}
        self.tables: dict[str, dict[str, dict[str, str | None]]] = {}
        # family -> rules of DOCKER-USER (None: Docker made no such chain)
        self.docker_user: dict[str, list[dict] | None] = {"ip": None, "ip6": None}
        self.docker_user.update(docker_user or {})
        self.scripts: list[list[str]] = []
        self.fail_next: Exception | None = None
        self.fail_count = 1  # how many transactions in a row fail_next refuses
        self.docker_bridges = False  # Docker 29's nftables backend table
        self._handle = 100
        self.rules: dict[str, list[tuple[str, str]]] = {}  # table -> (chain, comment) of each rule added
        # Traffic the tests make up: (table, map, key) -> (packets, bytes); (table, comment) -> (packets, bytes)
        self.element_counters: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.rule_counters: dict[tuple[str, str], tuple[int, int]] = {}

    # -- the interface
    def declare(self, family: str, table: str, sets: dict[str, tuple[str, bool]]) -> None:
        """Set types for kernel/nftbatch.py's encoding; the fake reads the script's text."""

    async def run(self, lines: list[str]) -> None:
        if not lines:
            return  # kernel/nft.py sends nothing for an empty script
        if self.fail_next is not None:
            err = self.fail_next
            self.fail_count -= 1
            if self.fail_count <= 0:
                self.fail_next, self.fail_count = None, 1
            raise err
        tables = copy.deepcopy(self.tables)
        du = copy.deepcopy(self.docker_user)
        rules = copy.deepcopy(self.rules)
        for line in lines:
            self._apply(line, tables, du, rules)
        # All or nothing, as one nft transaction.
        self.tables, self.docker_user, self.rules = tables, du, rules
        self.scripts.append(list(lines))

    async def list(self, what: str):
        m = re.fullmatch(r"table (inet|bridge) (\S+)", what)
        if m:
            return self._list_table(m.group(1), m.group(2))
        m = re.fullmatch(r"chain (ip6?) filter DOCKER-USER", what)
        if m:
            rules = self.docker_user.get(m.group(1))
            if rules is None:
                return None
            return [{"metainfo": {"json_schema_version": 1}},
                    {"chain": {"family": m.group(1), "table": "filter", "name": "DOCKER-USER"}}] + copy.deepcopy(rules)
        if what == "table ip docker-bridges":
            return [{"table": {"family": "ip", "name": "docker-bridges"}}] if self.docker_bridges else None
        raise AssertionError(f"unexpected nft list {what!r}")

    def _list_table(self, family: str, name: str):
        """The table as `nft -j list table` shows it: maps with their elements' counters, rules with
        their comments and counters (what the tests put in element_counters and rule_counters)."""
        table = _key(family, name)
        if table not in self.tables:
            return None
        out: list[dict] = [{"metainfo": {"json_schema_version": 1}}, {"table": {"family": family, "name": name}}]
        for set_name, elems in self.tables[table].items():
            items = []
            for key, value in elems.items():
                parts = [int(p) if p.isdigit() else p.strip('"') for p in key.split(" . ")]
                p, b = self.element_counters.get((table, set_name, key), (0, 0))
                elem = {"val": {"concat": parts} if len(parts) > 1 else parts[0],
                        "counter": {"packets": p, "bytes": b}}
                items.append([{"elem": elem}, value] if value is not None else {"elem": elem})
            kind = "map" if set_name.startswith("pub") else "set"
            out.append({kind: {"family": family, "table": name, "name": set_name, "elem": items}})
        seen = set()
        for chain, comment in self.rules.get(table, []):
            p, b = self.rule_counters.get((table, comment), (0, 0)) if comment not in seen else (0, 0)
            seen.add(comment)
            out.append({"rule": {"family": family, "table": name, "chain": chain, "comment": comment,
                                 "expr": [{"counter": {"packets": p, "bytes": b}}, {"drop": None}]}})
        return out

    # -- helpers for tests
    def elements(self, table: str, name: str) -> dict[str, str | None]:
        return dict(self.tables[table][name])

    def du_patterns(self, family: str) -> list[tuple[str, str]]:
        out = []
        for item in self.docker_user.get(family) or []:
            expr = item["rule"]["expr"]
            if len(expr) == 2 and "match" in expr[0]:
                out.append((expr[0]["match"]["left"]["meta"]["key"], expr[0]["match"]["right"]))
        return out

    def _apply(self, line: str, tables, du, rules) -> None:
        if m := _TABLE.match(line):
            op, family, table = m.groups()
            table = _key(family, table)
            if op == "add":
                tables.setdefault(table, {})
            else:
                if table not in tables:
                    raise KernelError(f"nftables refused the change: delete of missing table {table}")
                del tables[table]
                rules.pop(table, None)
            return
        if m := _DECL.match(line):
            _kind, family, table, name = m.groups()
            tables[_key(family, table)].setdefault(name, {})
            return
        if line.startswith(("add chain inet ", "add rule inet ", "add chain bridge ", "add rule bridge ")):
            table = _key(line.split()[2], line.split()[3])
            if table not in tables:
                raise KernelError(f"nftables refused the change: no table {table}")
            if line.startswith("add rule "):
                comment = re.search(r' comment "([^"]*)"$', line)
                rules.setdefault(table, []).append((line.split()[4], comment.group(1) if comment else ""))
            return
        if m := _ELEM.match(line):
            op, family, table, name, body = m.groups()
            table = _key(family, table)
            if table not in tables or name not in tables[table]:
                raise KernelError(f"nftables refused the change: no set {name} in table {table}")
            elems = tables[table][name]
            for item in body.split(", "):
                key, _, value = item.partition(" : ")
                if m := re.fullmatch(r"(.*) counter packets (\d+) bytes (\d+)", key):  # a counter's start
                    key = m.group(1)
                    self.element_counters[(table, name, key)] = (int(m.group(2)), int(m.group(3)))
                if op == "add":
                    if key in elems and elems[key] != (value or None):
                        raise KernelError(f"nftables refused the change: {key} in {name} exists with another value")
                    elems[key] = value or None
                else:
                    if key not in elems:
                        raise KernelError(f"nftables refused the change: {key} not in {name}")
                    del elems[key]
            return
        if m := _DU_INSERT.match(line):
            family, key, pattern = m.groups()
            if du.get(family) is None:
                raise KernelError(f"nftables refused the change: no chain {family} filter DOCKER-USER")
            self._handle += 1
            du[family].insert(0, du_rule(family, self._handle, key, pattern))
            return
        if m := _DU_DELETE.match(line):
            family, handle = m.group(1), int(m.group(2))
            rules = du.get(family) or []
            kept = [r for r in rules if r["rule"]["handle"] != handle]
            if len(kept) == len(rules):
                raise KernelError(f"nftables refused the change: no rule with handle {handle}")
            du[family] = kept
            return
        raise AssertionError(f"fake nft does not understand {line!r}")


# ---------------------------------------------------------------- policers (kernel/police.py)

class FakePolice:
    """Policers by (device, destination MAC or ""); like the kernel here, they outlive their device."""

    def __init__(self) -> None:
        self.policers: dict[tuple[str, str], tuple[int, int]] = {}
        self.calls: list[tuple] = []
        self.fail: dict[str, Exception] = {}

    def _maybe_fail(self, method: str) -> None:
        err = self.fail.pop(method, None)
        if err is not None:
            raise err

    async def police(self, dev, rate, burst) -> None:
        self.calls.append(("police", dev, rate, burst))
        self._maybe_fail("police")
        self.policers[(dev, "")] = (rate, burst)

    async def unpolice(self, dev) -> None:
        self.calls.append(("unpolice", dev))
        self.policers.pop((dev, ""), None)

    async def police_dest(self, dev, mac, rate, burst) -> None:
        self.calls.append(("police_dest", dev, mac, rate, burst))
        self._maybe_fail("police_dest")
        self.policers[(dev, mac)] = (rate, burst)

    async def unpolice_dest(self, dev, mac) -> None:
        self.calls.append(("unpolice_dest", dev, mac))
        self.policers.pop((dev, mac), None)

    async def policed(self) -> dict[tuple[str, str], tuple[int, int]]:
        return dict(self.policers)

    async def sweep(self, keep: set[tuple[str, str]]) -> list[str]:
        gone = sorted(set(self.policers) - keep)
        for key in gone:
            del self.policers[key]
        return [f"policer {dev} {mac}".strip() for dev, mac in gone]


# ---------------------------------------------------------------- sysctl

class FakeSysctl:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.fail: Exception | None = None

    def __call__(self, path: str, value: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.values[path] = value


# ---------------------------------------------------------------- protocol bodies

def net_body(net_id: str = ID_A, pool: str = "172.30.0.0/24", gateway: str = "172.30.0.1/24",
             generic: dict | None = None, v6: tuple[str, str] | None = None, internal: bool = False,
             space: str = "LocalDefault") -> dict:
    opts: dict = {"com.docker.network.generic": dict(generic or {}),
                  "com.docker.network.enable_ipv6": bool(v6)}
    if internal:
        opts["com.docker.network.internal"] = True
    body = {"NetworkID": net_id, "Options": opts,
            "IPv4Data": [{"AddressSpace": space, "Pool": pool, "Gateway": gateway, "AuxAddresses": None}],
            "IPv6Data": []}
    if v6:
        body["IPv6Data"] = [{"AddressSpace": space, "Pool": v6[0], "Gateway": v6[1]}]
    return body


def ep_body(net_id: str = ID_A, ep_id: str = EP_1, address: str = "172.30.0.2/24", address6: str = "",
            mac: str = "", options: dict | None = None) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id,
            "Interface": {"Address": address, "AddressIPv6": address6, "MacAddress": mac},
            "Options": dict(options or {})}


def pm(port: int, host_port: int = 0, proto: int = 6, host_ip: str = "", end: int | None = None) -> dict:
    """One item of com.docker.network.portmap as Docker sends it."""
    return {"Proto": proto, "IP": "", "Port": port, "HostIP": host_ip, "HostPort": host_port,
            "HostPortEnd": host_port if end is None else end}


# ---------------------------------------------------------------- typed requests (what the core takes)

def net_req(net_id: str = ID_A, pool: str = "172.30.0.0/24", gateway: str = "172.30.0.1/24",
            generic: dict | None = None, v6: tuple[str, str] | None = None, internal: bool = False,
            space: str = "LocalDefault", v4: bool = True):
    """A CreateNetwork as the wire layer hands it to the core."""
    from pynet.api.wire import CreateNetwork, IpData

    opts: dict = {"com.docker.network.enable_ipv6": bool(v6), "com.docker.network.enable_ipv4": v4}
    if internal:
        opts["com.docker.network.internal"] = True
    return CreateNetwork(network_id=net_id, generic=dict(generic or {}), options=opts,
                         v4=[IpData(pool, gateway, space)] if pool else [],
                         v6=[IpData(v6[0], v6[1], space)] if v6 else [])


def ep_req(net_id: str = ID_A, ep_id: str = EP_1, address: str = "172.30.0.2/24", address6: str = "",
           mac: str = "", ports: list | None = None, driver_opts: dict | None = None):
    from pynet.api.wire import CreateEndpoint

    return CreateEndpoint(network_id=net_id, endpoint_id=ep_id, address=address, address6=address6, mac=mac,
                          driver_opts=dict(driver_opts or {}), portmap=list(ports or []))


def port(port: int, host_port: int = 0, proto: str = "tcp", host_ip: str = "", end: int | None = None):
    """One -p mapping as the wire layer decodes it."""
    from pynet.model import PortMapping

    return PortMapping(proto=proto, container_port=port, host_ip=host_ip, host_port=host_port,
                       host_port_end=host_port if end is None else end)


def ref(net_id: str = ID_A, ep_id: str | None = EP_1):
    from pynet.api.wire import EndpointRef, NetworkRef

    return NetworkRef(net_id) if ep_id is None else EndpointRef(net_id, ep_id)


def join_req(net_id: str = ID_A, ep_id: str = EP_1, sandbox: str = "/x", ports: list | None = None):
    from pynet.api.wire import Join

    return Join(net_id, ep_id, sandbox, list(ports or []))


def pec_req(net_id: str = ID_A, ep_id: str = EP_1, ports: list | None = None):
    from pynet.api.wire import Connectivity

    return Connectivity(net_id, ep_id, None if ports is None else list(ports))


def ip_of(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


# ---------------------------------------------------------------- the service

def make_driver(cfg, links, nft, sysctls, dhcp_client=None, prober=None, police=None):
    """A Driver on fake kernel parts; host ports are never probed with real sockets, LAN addresses never
    with real packets."""
    from pynet.core.driver import Driver
    from pynet.store import Store

    drv = Driver(cfg, Store(cfg.state_dir, verify=True), links, nft, sysctl_ensure=sysctls, dhcp_client=dhcp_client,
                 prober=prober or FakeProber(), police=police if police is not None else FakePolice())
    drv.published.probe = lambda family, host_ip, proto, port: None
    return drv


# ---------------------------------------------------------------- the HTTP side

def build_app(cfg, driver):
    from pynet.app import make_app

    return make_app(cfg, driver)


DOCKER_HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}


class Docker:
    """Talks to the app like dockerd: POST, usually no Content-Type, the body as raw bytes."""

    def __init__(self, client: TestClient):
        self.client = client

    async def call(self, path: str, body=None, raw: bytes | None = None, method: str = "POST",
                   content_type: str | None = None) -> tuple[int, object, str]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        headers = dict(DOCKER_HEADERS)
        if content_type:
            headers["Content-Type"] = content_type
        async with self.client.request(method, path, data=data, headers=headers,
                                       skip_auto_headers=() if content_type else ("Content-Type",)) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None, resp.headers.get("Content-Type", "")

    async def ok(self, path: str, body=None) -> dict:
        status, doc, _ = await self.call(path, body)
        assert status == 200, f"{path} -> {status} {doc}"
        return doc

    async def err(self, path: str, body=None, status: int = 500) -> str:
        got, doc, _ = await self.call(path, body)
        assert got == status and isinstance(doc, dict) and set(doc) >= {"Err"}, f"{path} -> {got} {doc}"
        return doc["Err"]

    async def get(self, path: str):
        async with self.client.get(path) as resp:
            assert resp.status == 200, f"GET {path} -> {resp.status} {await resp.text()}"
            return await resp.json()
