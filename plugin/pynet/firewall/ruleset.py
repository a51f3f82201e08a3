"""pynet's nftables ruleset as data: the fixed chains and rules, and nft script helpers.

The rules are fixed; what grows with networks and published ports lives in sets
and maps, so a call adds or removes elements in one transaction and the packet
path does one lookup per kind, whatever the number of ports. Which elements a
network or an endpoint puts in the sets is its mode's business (modes/*.py:
network_elements, endpoint_elements); published ports' are binding_elements here.

  table inet <table>
    set bridges   ifname            every pynet bridge
    set intra     ifname . ifname   (bridge, bridge): traffic inside one network
    set internal  ifname            bridges of --internal networks
    set masq      ifname            bridges whose traffic is masqueraded outward
    set subnets4/6  ifname . addr   (bridge, its subnet): hairpin source NAT
    set l2b_ifs   ifname            host sides of l2bridge containers' veths
    set l2b_src4/6 ifname . addr    (veth, the container's address): the only source it may send
    map pub4      ipv4 . proto . port : ipv4 . port   ports bound to one host IPv4 address
    map pub6      ipv6 . proto . port : ipv6 . port   ... one host IPv6 address
    map pubany4   proto . port : ipv4 . port          ports bound to every host IPv4 address
    map pubany6   proto . port : ipv6 . port          ... every host IPv6 address
                  (the four maps count packets and bytes per element: `counter` in their declaration)
    chain forward      isolation, --internal, nothing enters a network but DNAT
    chain input        --internal networks reach the host only at their own gateway address
    chain raw_pre      127.0.0.0/8 arriving from outside dropped before DNAT (moby#45610);
                       spoofed sources from l2bridge containers dropped
    chain dnat_pre     published ports, for traffic arriving at the host
    chain dnat_out     the same for the host itself (localhost, its own addresses)
    chain postrouting  masquerade out; hairpin and localhost sources
    chain count_pre/count_out, count_post/count_in, pub_orig, pub_reply
                       traffic of published ports, counted in the pub* maps' elements (below)

  table bridge <table>   (same name; bridged frames, before anything routes them)
    set nat_ports ifname                nat containers' bridge ports (veth host sides)
    set nat_mac   ifname . ether        (port, the container's MAC)
    set nat_src4/6 ifname . addr        (port, the container's address; IPv6: and its EUI-64 link-local)
    set nat_nd6   iifname . @th,64,128  (port, an address it may claim in a neighbour advertisement)
    chain spoof   a container sends with its own MAC and addresses only (IPv4, ARP and
                  IPv6), advertises no router and claims no other neighbour's address
    set ov_gwmac  ifname . ether        (overlay's vxlan port, the gateway MAC every node's bridge has)
    set ov_gw4    ifname . addr         (vxlan port, the gateway address every node's bridge has)
    chain spoof, ov_fwd, ov_out         (prerouting, forward, output) no frame to or from the gateway
                  MAC and no ARP for or from the gateway address crosses a vxlan port: each node
                  is its own containers' gateway (modes/overlay.py)

Counting published ports: a nat chain sees only the first packet of a connection, so the dnat
lookups alone would count connections, not traffic. The count_* chains look the same maps up for
every later packet of a DNATed connection: the original direction before the destination is
rewritten again (prerouting/output at -150, keyed like the dnat lookup), replies after their source
is rewritten back to the published address (postrouting/input at 150, keyed by source). A lookup
bumps the element's counter, so each packet of a published port is counted once, both ways, with
no rule per port; `ct status dnat` first keeps the cost for other traffic to one comparison.

Drop rules carry a comment saying what they stop ("spoof:<mode>:<check>" for anti-spoofing,
"drop:<reason>" otherwise): the metrics read their counters by it (firewall/counters.py).

Scripts are nft's text syntax, not JSON: libnftables 1.0.6 (Debian 12) crashes
parsing a JSON `dnat ... map` with a concatenated key. Every value interpolated
here was validated before (interface names, normalised IPs, integers).

Docker's own `ip filter` FORWARD chain has policy DROP; a packet it drops is
gone whatever this table says. So pynet also keeps two plain rules in Docker's
DOCKER-USER chain (`iifname "pn-*" accept`, `oifname "pn-*" accept`), which
iptables-nft can read back, and keeps all real policy here, where drops are final.
"""

from __future__ import annotations

from ..model import Binding

FAMILY = "inet"
SETS = {
    "bridges": "ifname",
    "intra": "ifname . ifname",
    "internal": "ifname",
    "masq": "ifname",
    "internal_gw4": "ifname . ipv4_addr",
    "internal_gw6": "ifname . ipv6_addr",
    "l2b_ifs": "ifname",
    "l2b_src4": "ifname . ipv4_addr",
    "l2b_src6": "ifname . ipv6_addr",
}
# Interval sets: (bridge, subnet) pairs.
INTERVAL_SETS = {
    "subnets4": "ifname . ipv4_addr",
    "subnets6": "ifname . ipv6_addr",
}
MAPS = {
    "pub4": "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
    "pub6": "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service",
    "pubany4": "inet_proto . inet_service : ipv4_addr . inet_service",
    "pubany6": "inet_proto . inet_service : ipv6_addr . inet_service",
}
# Interface names of Docker's own bridges: pynet networks are isolated from them
# both ways, as Docker isolates its bridges from each other.
DOCKER_BRIDGES = ("docker*", "br-*")

CHAINS = {
    "forward": "type filter hook forward priority 0; policy accept;",
    "input": "type filter hook input priority 0; policy accept;",
    "raw_pre": "type filter hook prerouting priority -300; policy accept;",
    "dnat_pre": "type nat hook prerouting priority -100; policy accept;",
    "dnat_out": "type nat hook output priority -100; policy accept;",
    "postrouting": "type nat hook postrouting priority 100; policy accept;",
    # Published ports' traffic, counted in the maps' elements (see the module's docstring).
    "count_pre": "type filter hook prerouting priority -150; policy accept;",
    "count_out": "type filter hook output priority -150; policy accept;",
    "count_post": "type filter hook postrouting priority 150; policy accept;",
    "count_in": "type filter hook input priority 150; policy accept;",
    "pub_orig": "",  # regular chains, jumped to by the count_* chains
    "pub_reply": "",
}


BRIDGE_SETS = {
    "nat_ports": "ifname",
    "nat_mac": "ifname . ether_addr",
    "nat_src4": "ifname . ipv4_addr",
    "nat_src6": "ifname . ipv6_addr",
    "ov_gwmac": "ifname . ether_addr",
    "ov_gw4": "ifname . ipv4_addr",
}
# Sets declared with `typeof` (nft 1.0.6 has no keyword for a neighbour advertisement's target
# address: it is the raw 128 bits after the ICMPv6 header and flags); elements are integers.
BRIDGE_TYPEOF_SETS = {
    "nat_nd6": "iifname . @th,64,128",
}
BRIDGE_CHAINS = {"spoof": "type filter hook prerouting priority -300; policy accept;",
                 "ov_fwd": "type filter hook forward priority -300; policy accept;",
                 "ov_out": "type filter hook output priority -300; policy accept;"}
BRIDGE_RULES = [  # (rule, the comment the metrics read its counter by)
    ("iifname @nat_ports iifname . ether saddr != @nat_mac counter drop", "spoof:nat:mac"),
    ("iifname @nat_ports ether type ip iifname . ip saddr != @nat_src4 counter drop", "spoof:nat:ipv4"),
    ("iifname @nat_ports ether type arp iifname . arp saddr ether != @nat_mac counter drop", "spoof:nat:arp-mac"),
    ("iifname @nat_ports ether type arp iifname . arp saddr ip != @nat_src4 counter drop", "spoof:nat:arp-ipv4"),
    # IPv6: its own global and link-local (EUI-64 of its MAC) sources, :: for duplicate address
    # detection; no router advertisements or redirects; a neighbour advertisement may only claim
    # one of its own addresses (else a container could take another's or the gateway's traffic).
    ("iifname @nat_ports ether type ip6 ip6 saddr != :: iifname . ip6 saddr != @nat_src6 counter drop",
     "spoof:nat:ipv6"),
    ("iifname @nat_ports icmpv6 type { nd-router-advert, nd-redirect } counter drop", "spoof:nat:router"),
    ("iifname @nat_ports icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @nat_nd6 counter drop",
     "spoof:nat:nd-target"),
    # overlay: every node answers for the gateway itself. Nothing from or to the gateway's MAC, and no
    # ARP for or from the gateway's address, crosses a vxlan port, either way.
    ("iifname . ether saddr @ov_gwmac counter drop", "drop:overlay-gateway"),
    ("iifname . ether daddr @ov_gwmac counter drop", "drop:overlay-gateway"),
    ("ether type arp iifname . arp saddr ip @ov_gw4 counter drop", "drop:overlay-gateway"),
    ("ether type arp iifname . arp daddr ip @ov_gw4 counter drop", "drop:overlay-gateway"),
]
# The same on the way out: frames bridged from a container (forward) or sent by the host (output).
OV_EGRESS_RULES = [
    "oifname . ether saddr @ov_gwmac counter drop",
    "oifname . ether daddr @ov_gwmac counter drop",
    "ether type arp oifname . arp saddr ip @ov_gw4 counter drop",
    "ether type arp oifname . arp daddr ip @ov_gw4 counter drop",
]


def commented(rule: str, comment: str) -> str:
    return f'{rule} comment "{comment}"'


def rules() -> dict[str, list[str]]:
    r: dict[str, list[str]] = {name: [] for name in CHAINS}
    r["forward"] += [
        # Inside one network (seen here when br_netfilter passes bridged frames to inet hooks).
        "iifname . oifname @intra accept",
        "ct state established,related accept",
        # Published ports: DNATed connections may enter non-internal networks.
        "oifname @bridges oifname != @internal ct status dnat accept",
        # Nothing else enters a pynet network: not other pynet networks, Docker's bridges, the outside.
        commented("oifname @bridges counter drop", "drop:isolation"),
        # --internal: no way out.
        commented("iifname @internal counter drop", "drop:internal"),
    ]
    r["forward"] += [f'iifname @bridges oifname "{p}" drop' for p in DOCKER_BRIDGES]
    # --internal reaches the host at its own gateway only, not at the host's other addresses.
    r["input"] += [
        commented("iifname @internal fib daddr type local iifname . ip daddr != @internal_gw4 counter drop",
                  "drop:internal-host"),
        commented("iifname @internal fib daddr type local ip6 daddr != fe80::/10 iifname . ip6 daddr "
                  "!= @internal_gw6 counter drop", "drop:internal-host"),
    ]
    # Packets for 127.0.0.0/8 arriving on any other interface are martians; dropping them
    # before DNAT keeps ports bound to 127.0.0.1 local (Docker's moby#45610).
    r["raw_pre"].append(commented('iifname != "lo" ip daddr 127.0.0.0/8 counter drop', "drop:localhost"))
    # l2bridge: a container sends with its own address only (IPv6: and its link-local ones).
    r["raw_pre"] += [commented(rule, comment) for rule, comment in (
        ("iifname @l2b_ifs iifname . ip saddr != @l2b_src4 counter drop", "spoof:l2bridge:ipv4"),
        ("iifname @l2b_ifs ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @l2b_src6 counter drop",
         "spoof:l2bridge:ipv6"),
        ("iifname @l2b_ifs icmpv6 type { nd-router-advert, nd-redirect } counter drop", "spoof:l2bridge:router"),
    )]
    for chain in ("dnat_pre", "dnat_out"):
        for fam, nfproto in (("ip", "ipv4"), ("ip6", "ipv6")):
            n = "4" if fam == "ip" else "6"
            # ::1 cannot be a source off the loopback (IPv6 has no route_localnet): leave [::1]
            # alone so that clients get "refused" at once and fall back to 127.0.0.1.
            not_lo6 = "ip6 daddr != ::1 " if fam == "ip6" and chain == "dnat_out" else ""
            head = f"meta nfproto {nfproto} {not_lo6}fib daddr type local dnat {fam} to"
            r[chain].append(f"{head} {fam} daddr . meta l4proto . th dport map @pub{n}")
            r[chain].append(f"{head} meta l4proto . th dport map @pubany{n}")
    r["postrouting"] += [
        "iifname @masq oifname != @bridges masquerade",
        # Hairpin: a container reaching a published port of its own network through a host
        # address must get the answer through the host, so its source is rewritten too.
        # Matched on (bridge, source subnet), not on iifname: with br_netfilter a bridged
        # frame reaches postrouting without an input interface.
        "ct status dnat oifname . ip saddr @subnets4 masquerade",
        "ct status dnat oifname . ip6 saddr @subnets6 masquerade",
        # localhost -> published port: 127.0.0.1 cannot be a source on the bridge.
        "oifname @bridges ip saddr 127.0.0.0/8 masquerade",
    ]
    return count_rules(r)


def count_rules(r: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every later packet of a published port's connection bumps its map element's counter."""
    for chain, direction, target in (("count_pre", "original", "pub_orig"), ("count_out", "original", "pub_orig"),
                                     ("count_post", "reply", "pub_reply"), ("count_in", "reply", "pub_reply")):
        r[chain].append(f"ct status dnat ct direction {direction} jump {target}")
    for fam, n, nfproto in (("ip", "4", "ipv4"), ("ip6", "6", "ipv6")):
        # Original direction: addressed to the published address and port (not rewritten yet).
        r["pub_orig"].append(f"meta nfproto {nfproto} {fam} daddr . meta l4proto . th dport @pub{n} return")
        r["pub_orig"].append(f"meta nfproto {nfproto} meta l4proto . th dport @pubany{n} return")
        # Replies: from the published address and port (their source already rewritten back).
        r["pub_reply"].append(f"meta nfproto {nfproto} {fam} saddr . meta l4proto . th sport @pub{n} return")
        r["pub_reply"].append(f"meta nfproto {nfproto} meta l4proto . th sport @pubany{n} return")
    return r


def skeleton(table: str) -> list[str]:
    """Lines that (re)create the table without elements, replacing any old one in the same batch."""
    t = f"{FAMILY} {table}"
    lines = [f"add table {t}", f"delete table {t}", f"add table {t}"]
    lines += [f"add set {t} {name} {{ type {typ}; }}" for name, typ in SETS.items()]
    lines += [f"add set {t} {name} {{ type {typ}; flags interval; }}" for name, typ in INTERVAL_SETS.items()]
    lines += [f"add map {t} {name} {{ type {typ}; counter; }}" for name, typ in MAPS.items()]
    lines += [f"add chain {t} {name} {{ {spec} }}" if spec else f"add chain {t} {name}"
              for name, spec in CHAINS.items()]
    for chain, items in rules().items():
        lines += [f"add rule {t} {chain} {rule}" for rule in items]
    b = f"bridge {table}"
    lines += [f"add table {b}", f"delete table {b}", f"add table {b}"]
    lines += [f"add set {b} {name} {{ type {typ}; }}" for name, typ in BRIDGE_SETS.items()]
    lines += [f"add set {b} {name} {{ typeof {typ}; }}" for name, typ in BRIDGE_TYPEOF_SETS.items()]
    lines += [f"add chain {b} {name} {{ {spec} }}" for name, spec in BRIDGE_CHAINS.items()]
    lines += [f"add rule {b} spoof {commented(rule, comment)}" for rule, comment in BRIDGE_RULES]
    lines += [f"add rule {b} {chain} {commented(rule, 'drop:overlay-gateway')}" for chain in ("ov_fwd", "ov_out")
              for rule in OV_EGRESS_RULES]
    return lines


def declared(family: str) -> dict[str, tuple[str, bool]]:
    """The sets and maps of the table of `family`: name -> (nft type, is an interval set)."""
    if family == "bridge":
        return {name: (typ, False) for name, typ in {**BRIDGE_SETS, **BRIDGE_TYPEOF_SETS}.items()}
    return ({name: (typ, False) for name, typ in {**SETS, **MAPS}.items()}
            | {name: (typ, True) for name, typ in INTERVAL_SETS.items()})


def binding_key(b: Binding) -> tuple[str, str]:
    """(map, key) of a published port."""
    if b.host_ip:
        return f"pub{b.family}", f"{b.host_ip} . {b.proto} . {b.host_port}"
    return f"pubany{b.family}", f"{b.proto} . {b.host_port}"


def binding_elements(bindings: list[Binding], with_values: bool = True) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in MAPS}
    for b in bindings:
        name, key = binding_key(b)
        out[name].append(f"{key} : {b.container_ip} . {b.container_port}" if with_values else key)
    return out


def element_lines(table: str, op: str, elems: dict[str, list[str]], chunk: int = 2000) -> list[str]:
    """op = add | delete. Large maps go in chunks (one transaction all the same)."""
    lines = []
    for name, items in elems.items():
        for i in range(0, len(items), chunk):
            family = "bridge" if name in BRIDGE_SETS or name in BRIDGE_TYPEOF_SETS else FAMILY
            lines.append(f"{op} element {family} {table} {name} {{ {', '.join(items[i:i + chunk])} }}")
    return lines
