"""pynet's nftables ruleset as data: pure functions from model to libnftables JSON.

The rules are fixed; what grows with networks lives in sets, so a call adds or
removes set elements in one transaction and never rewrites rules.

  table inet <table>
    set bridges   ifname            every pynet bridge
    set intra     ifname . ifname   (bridge, bridge): traffic inside one network
    set internal  ifname            bridges of --internal networks
    set masq      ifname            bridges whose traffic is masqueraded outward
    chain forward   filter/forward: isolation, --internal, no entry from outside
    chain postrouting nat/srcnat: masquerade

Docker's own `ip filter` FORWARD chain has policy DROP; a packet it drops is
gone whatever this table says. So pynet also keeps two plain rules in Docker's
DOCKER-USER chain (`iifname "pn-*" accept`, `oifname "pn-*" accept`), which
iptables-nft can read back, and keeps all real policy here, where drops are final.
"""

from __future__ import annotations

from .model import Network

FAMILY = "inet"
SETS = {
    "bridges": "ifname",
    "intra": ["ifname", "ifname"],
    "internal": "ifname",
    "masq": "ifname",
}
# Interface names of Docker's own bridges: pynet networks are isolated from them
# both ways, as Docker isolates its bridges from each other.
DOCKER_BRIDGES = ("docker*", "br-*")


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _match(left, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule(table: str, chain: str, *expr) -> dict:
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": list(expr)}}}


def skeleton(table: str) -> list[dict]:
    """Commands that (re)create the table empty of elements, atomically replacing any old one."""
    t = {"family": FAMILY, "name": table}
    cmds: list[dict] = [{"add": {"table": dict(t)}}, {"delete": {"table": dict(t)}}, {"add": {"table": dict(t)}}]
    for name, typ in SETS.items():
        cmds.append({"add": {"set": {"family": FAMILY, "table": table, "name": name, "type": typ}}})
    cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": "forward", "type": "filter",
                                   "hook": "forward", "prio": 0, "policy": "accept"}}})
    cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": "postrouting", "type": "nat",
                                   "hook": "postrouting", "prio": 100, "policy": "accept"}}})
    iif, oif = _meta("iifname"), _meta("oifname")
    fwd = "forward"
    cmds += [
        # Inside one network (seen here when br_netfilter passes bridged frames to inet hooks).
        _rule(table, fwd, _match({"concat": [iif, oif]}, "@intra", "in"), {"accept": None}),
        _rule(table, fwd, _match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}),
        # Published ports: DNATed connections may enter non-internal networks.
        _rule(table, fwd, _match(oif, "@bridges", "in"), _match(oif, "@internal", "!="),
              _match({"ct": {"key": "status"}}, "dnat", "in"), {"accept": None}),
        # Nothing else enters a pynet network: not other pynet networks, Docker's bridges or the outside.
        _rule(table, fwd, _match(oif, "@bridges", "in"), {"counter": None}, {"drop": None}),
        # --internal: no way out.
        _rule(table, fwd, _match(iif, "@internal", "in"), {"counter": None}, {"drop": None}),
    ]
    for pattern in DOCKER_BRIDGES:
        cmds.append(_rule(table, fwd, _match(iif, "@bridges", "in"), _match(oif, pattern), {"drop": None}))
    cmds.append(_rule(table, "postrouting", _match(iif, "@masq", "in"), _match(oif, "@bridges", "!="),
                      {"masquerade": None}))
    return cmds


def elements(net: Network) -> dict[str, list]:
    """Set elements a network contributes."""
    out: dict[str, list] = {name: [] for name in SETS}
    out["bridges"].append(net.bridge)
    out["intra"].append({"concat": [net.bridge, net.bridge]})
    if net.internal:
        out["internal"].append(net.bridge)
    elif net.masquerade:
        out["masq"].append(net.bridge)
    return out


def element_cmds(table: str, op: str, elems: dict[str, list]) -> list[dict]:
    """op = add | delete."""
    return [
        {op: {"element": {"family": FAMILY, "table": table, "name": name, "elem": items}}}
        for name, items in elems.items()
        if items
    ]


def full(table: str, networks: list[Network]) -> list[dict]:
    """The whole table for these networks, as one transaction."""
    merged: dict[str, list] = {name: [] for name in SETS}
    for net in networks:
        for name, items in elements(net).items():
            merged[name] += items
    return skeleton(table) + element_cmds(table, "add", merged)


# --- DOCKER-USER (Docker's chain in `ip filter`; only plain rules it can decode) ---

def docker_user_rule(family: str, key: str, pattern: str) -> list[dict]:
    """Expression list of one accept rule, as libnftables lists it back."""
    return [_match(_meta(key), pattern), {"accept": None}]


def docker_user_wanted(prefix: str, networks: list[Network]) -> list[tuple[str, str]]:
    """(meta key, name pattern) pairs that must be accepted in DOCKER-USER."""
    if not networks:
        return []
    patterns = [prefix + "*"] + sorted({n.bridge for n in networks if n.custom_bridge})
    return [(key, p) for p in patterns for key in ("iifname", "oifname")]
