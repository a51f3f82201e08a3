"""firewall/ruleset.py and the modes' elements: the nft text pynet generates for a representative state."""

from __future__ import annotations

import re

import pytest

from fakes import EP_1, ID_A, ID_B, nid
from pynet.core.networks import Networks
from pynet.firewall import ruleset
from pynet.model import Binding, Endpoint, Network, Subnet
from pynet.modes import make_modes

MODES = make_modes(None, None, "pynet:unit:")
NAT = MODES["nat"]


class _Store:
    damaged: dict = {}


class _State:
    def __init__(self, nets):
        self.nets = {n.id: n for n in nets}
        self.store = _Store()

    def keep_all(self) -> bool:
        return bool(self.store.damaged)


def networks(nets=()) -> Networks:
    return Networks(_State(nets), MODES, None, None, None, "pn-", ipam=None)


def full(table: str, nets: list[Network]) -> list[str]:
    """What a rebuild sends: the skeleton, then every element of these networks."""
    elems: dict[str, list[str]] = {}
    for net in nets:
        for name, items in networks().elements(net).items():
            elems.setdefault(name, []).extend(items)
    return ruleset.skeleton(table) + ruleset.element_lines(table, "add", elems)

T = "pynet_unit"


def nat_net(net_id=ID_A, bridge=None, pool="172.30.0.0/24", v6=None, internal=False, masquerade=True,
            custom=False) -> Network:
    return Network(id=net_id, mode="nat", bridge=bridge or "pn-n" + net_id[:11], internal=internal,
                   masquerade=masquerade, ipv6=bool(v6), custom_bridge=custom,
                   v4=[Subnet(pool, pool.replace("0/24", "1/24"))], v6=[Subnet(*v6)] if v6 else [])


def with_bindings(net: Network, ep_id: str, bindings: list[Binding]) -> Network:
    net.endpoints[ep_id] = Endpoint(id=ep_id, network_id=net.id, host_if="h", peer_if="k", mac="02:00:00:00:00:01",
                                    ipv4="172.30.0.2/24", bindings=bindings)
    return net


@pytest.fixture
def state() -> list[Network]:
    a = nat_net(ID_A, v6=("fd00:30::/64", "fd00:30::1/64"))
    with_bindings(a, EP_1, [Binding("tcp", 4, "", 8080, "172.30.0.2", 80),
                            Binding("tcp", 6, "", 8080, "fd00:30::2", 80),
                            Binding("udp", 4, "127.0.0.1", 5353, "172.30.0.2", 53),
                            Binding("tcp", 6, "2001:db8::1", 8443, "fd00:30::2", 443)])
    b = nat_net(ID_B, bridge="mybr0", pool="172.31.0.0/24", internal=True, custom=True)
    c = nat_net(nid("c"), pool="172.29.0.0/24", masquerade=False)
    return [a, b, c]


def test_skeleton_replaces_table_in_one_batch():
    lines = ruleset.skeleton(T)
    # add+delete+add: the old table (if any) goes in the same transaction, and a missing one is no error.
    assert lines[:3] == [f"add table inet {T}", f"delete table inet {T}", f"add table inet {T}"]
    assert sum(1 for line in lines if line.startswith("delete ")) == 2  # inet table and bridge table
    b = lines.index(f"add table bridge {T}")
    assert lines[b:b + 3] == [f"add table bridge {T}", f"delete table bridge {T}", f"add table bridge {T}"]
    assert all(f" {T} " in line or line.endswith(f" {T}") for line in lines)
    assert all(("inet " if i < b else "bridge ") + T in line for i, line in enumerate(lines))


def test_bridge_table_drops_spoofed_sources_of_nat_containers():
    lines = ruleset.skeleton(T)
    spoof = [line for line in lines if line.startswith(f"add rule bridge {T} spoof ")]
    assert any("ether saddr != @nat_mac" in r and "drop" in r for r in spoof)
    assert any("ip saddr != @nat_src4" in r for r in spoof)
    assert any("arp saddr ip != @nat_src4" in r for r in spoof)
    assert any("ip6 saddr != @nat_src6" in r for r in spoof)


def test_sets_and_maps_declared():
    lines = ruleset.skeleton(T)
    for name, typ in {"bridges": "ifname", "intra": "ifname . ifname", "internal": "ifname", "masq": "ifname"}.items():
        assert f"add set inet {T} {name} {{ type {typ}; }}" in lines
    assert f"add set inet {T} subnets4 {{ type ifname . ipv4_addr; flags interval; }}" in lines
    assert f"add set inet {T} subnets6 {{ type ifname . ipv6_addr; flags interval; }}" in lines
    assert (f"add map inet {T} pub4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; counter; }}"
            in lines)
    assert (f"add map inet {T} pub6 {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; counter; }}"
            in lines)
    assert f"add map inet {T} pubany4 {{ type inet_proto . inet_service : ipv4_addr . inet_service; counter; }}" in lines
    assert f"add map inet {T} pubany6 {{ type inet_proto . inet_service : ipv6_addr . inet_service; counter; }}" in lines


def test_chains_and_hooks():
    lines = ruleset.skeleton(T)
    shape = re.compile(rf"add chain inet {T} (\S+) \{{ (.*) \}}$")
    chains = {m.group(1): m.group(2) for line in lines if (m := shape.match(line))}
    assert set(chains) == {"forward", "input", "raw_pre", "dnat_pre", "dnat_out", "postrouting",
                           "count_pre", "count_out", "count_post", "count_in"}
    assert "type filter hook input" in chains["input"]
    assert "hook forward" in chains["forward"] and "type filter" in chains["forward"]
    assert "hook prerouting priority -300" in chains["raw_pre"]  # before conntrack and DNAT
    assert "type nat hook prerouting" in chains["dnat_pre"]
    assert "type nat hook output" in chains["dnat_out"]
    assert "type nat hook postrouting" in chains["postrouting"]


def rules_of(chain: str, comments: bool = False) -> list[str]:
    """The chain's rules as text; without their `comment "..."` unless asked."""
    prefix = f"add rule inet {T} {chain} "
    rules = [line[len(prefix):] for line in ruleset.skeleton(T) if line.startswith(prefix)]
    return rules if comments else [re.sub(r' comment "[^"]*"$', "", r) for r in rules]


def test_isolation_rules():
    fwd = rules_of("forward")
    assert fwd.index("iifname . oifname @intra accept") < fwd.index("oifname @bridges counter drop")
    assert fwd.index("ct state established,related accept") < fwd.index("oifname @bridges counter drop")
    # DNATed traffic may enter a network, but never an --internal one
    assert "oifname @bridges oifname != @internal ct status dnat accept" in fwd
    assert fwd.index("oifname @bridges oifname != @internal ct status dnat accept") < fwd.index(
        "oifname @bridges counter drop")
    assert "iifname @internal counter drop" in fwd
    assert 'iifname @bridges oifname "docker*" drop' in fwd
    assert 'iifname @bridges oifname "br-*" drop' in fwd


def test_localhost_safety():
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 counter drop' in rules_of("raw_pre")  # moby#45610
    assert "oifname @bridges ip saddr 127.0.0.0/8 masquerade" in rules_of("postrouting")


def test_published_port_lookups_are_maps():
    for chain in ("dnat_pre", "dnat_out"):
        r = rules_of(chain)
        assert len(r) == 4  # one lookup per (family, kind), whatever the number of ports
        assert any(x.endswith("dnat ip to ip daddr . meta l4proto . th dport map @pub4") for x in r)
        assert any(x.endswith("dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6") for x in r)
        assert any(x.endswith("dnat ip to meta l4proto . th dport map @pubany4") for x in r)
        assert any(x.endswith("dnat ip6 to meta l4proto . th dport map @pubany6") for x in r)
        assert all("fib daddr type local" in x for x in r)
    assert all("ip6 daddr != ::1" in x for x in rules_of("dnat_out") if "ip6" in x)
    assert not any("::1" in x for x in rules_of("dnat_pre"))


def test_masquerade_and_hairpin():
    post = rules_of("postrouting")
    assert "iifname @masq oifname != @bridges masquerade" in post
    assert "ct status dnat oifname . ip saddr @subnets4 masquerade" in post
    assert "ct status dnat oifname . ip6 saddr @subnets6 masquerade" in post


def test_elements_of_networks(state):
    a, b, c = state
    ea = NAT.network_elements(a)
    assert ea["bridges"] == [f'"{a.bridge}"']
    assert ea["intra"] == [f'"{a.bridge}" . "{a.bridge}"']
    assert ea["subnets4"] == [f'"{a.bridge}" . 172.30.0.0/24']
    assert ea["subnets6"] == [f'"{a.bridge}" . fd00:30::/64']
    assert ea["masq"] == [f'"{a.bridge}"'] and "internal" not in ea
    eb = NAT.network_elements(b)
    assert eb["internal"] == ['"mybr0"'] and "masq" not in eb  # --internal: never masqueraded out
    ec = NAT.network_elements(c)
    assert "masq" not in ec and "internal" not in ec and ec["bridges"] == [f'"{c.bridge}"']


def test_binding_keys():
    assert ruleset.binding_key(Binding("tcp", 4, "", 80, "10.0.0.2", 8080)) == ("pubany4", "tcp . 80")
    assert ruleset.binding_key(Binding("udp", 4, "127.0.0.1", 53, "10.0.0.2", 53)) == ("pub4", "127.0.0.1 . udp . 53")
    assert ruleset.binding_key(Binding("sctp", 6, "2001:db8::1", 9, "fd00::2", 9)) == ("pub6",
                                                                                     "2001:db8::1 . sctp . 9")
    assert ruleset.binding_key(Binding("tcp", 6, "", 80, "fd00::2", 80)) == ("pubany6", "tcp . 80")


def test_full_ruleset_golden_lines(state):
    lines = full(T, state)
    a, b, c = state
    assert lines[: len(ruleset.skeleton(T))] == ruleset.skeleton(T)
    elems = lines[len(ruleset.skeleton(T)):]
    assert f'add element inet {T} bridges {{ "{a.bridge}", "mybr0", "{c.bridge}" }}' in elems
    assert f'add element inet {T} internal {{ "mybr0" }}' in elems
    assert f'add element inet {T} masq {{ "{a.bridge}" }}' in elems
    assert (f'add element inet {T} subnets4 {{ "{a.bridge}" . 172.30.0.0/24, "mybr0" . 172.31.0.0/24, '
            f'"{c.bridge}" . 172.29.0.0/24 }}') in elems
    assert f"add element inet {T} pubany4 {{ tcp . 8080 : 172.30.0.2 . 80 }}" in elems
    assert f"add element inet {T} pubany6 {{ tcp . 8080 : fd00:30::2 . 80 }}" in elems
    assert f"add element inet {T} pub4 {{ 127.0.0.1 . udp . 5353 : 172.30.0.2 . 53 }}" in elems
    assert f"add element inet {T} pub6 {{ 2001:db8::1 . tcp . 8443 : fd00:30::2 . 443 }}" in elems
    assert not any(line.endswith("{  }") for line in lines)  # empty sets get no element line
    assert not any(line.startswith("delete element") for line in lines)


def test_full_with_no_networks_is_skeleton():
    assert full(T, []) == ruleset.skeleton(T)


def test_binding_elements_for_delete_have_keys_only():
    out = ruleset.binding_elements([Binding("tcp", 4, "", 80, "10.0.0.2", 8080)], with_values=False)
    assert out["pubany4"] == ["tcp . 80"]


def test_large_maps_are_chunked_in_one_script():
    items = [f"tcp . {p} : 10.0.0.2 . {p}" for p in range(1, 4502)]
    lines = ruleset.element_lines(T, "add", {"pubany4": items}, chunk=2000)
    assert len(lines) == 3
    assert sum(line.count(" : ") for line in lines) == 4501


def test_docker_user_patterns():
    assert networks().docker_user_patterns()[0] == []  # no network: nothing in Docker's chain
    nets = [nat_net(ID_A), nat_net(ID_B, bridge="mybr0", custom=True)]
    wanted, ours = networks(nets).docker_user_patterns()
    assert wanted == ["pn-*", "mybr0"] and ours == {"pn-*", "mybr0"}


def test_drop_rules_say_what_they_stop():
    """Every counted drop carries a comment the metrics read it by: spoof:<mode>:<check> or drop:<reason>."""
    lines = ruleset.skeleton(T)
    drops = [line for line in lines if " counter drop" in line]
    assert drops
    for line in drops:
        m = re.search(r' comment "([^"]+)"$', line)
        assert m, line
        parts = m.group(1).split(":")
        assert parts[0] in ("spoof", "drop") and len(parts) == (3 if parts[0] == "spoof" else 2), line
    spoof = {re.search(r'comment "([^"]+)"', line).group(1) for line in drops if '"spoof:' in line}
    assert {"spoof:nat:mac", "spoof:nat:ipv4", "spoof:nat:arp-mac", "spoof:nat:ipv6", "spoof:l2bridge:ipv4",
            "spoof:l2bridge:ipv6"} <= spoof
    assert all(line.startswith(f"add rule bridge {T} spoof ") for line in drops if '"spoof:nat:' in line)
    assert all(line.startswith(f"add rule inet {T} raw_pre ") for line in drops if '"spoof:l2bridge:' in line)


def test_published_ports_counted_in_their_map_elements_without_a_rule_per_port():
    # Hooks after conntrack, around NAT: the original direction before DNAT rewrites it again,
    # replies after their source is rewritten back to the published address.
    shape = re.compile(rf"add chain inet {T} (\S+) \{{ (.*) \}}$")
    chains = {m.group(1): m.group(2) for line in ruleset.skeleton(T) if (m := shape.match(line))}
    assert "type filter hook prerouting priority -150" in chains["count_pre"]
    assert "type filter hook output priority -150" in chains["count_out"]
    assert "type filter hook postrouting priority 150" in chains["count_post"]
    assert "type filter hook input priority 150" in chains["count_in"]
    assert rules_of("count_pre") == rules_of("count_out") == ["ct status dnat ct direction original jump pub_orig"]
    assert rules_of("count_post") == rules_of("count_in") == ["ct status dnat ct direction reply jump pub_reply"]
    orig, reply = rules_of("pub_orig"), rules_of("pub_reply")
    assert "meta nfproto ipv4 ip daddr . meta l4proto . th dport @pub4 return" in orig
    assert "meta nfproto ipv6 meta l4proto . th dport @pubany6 return" in orig
    assert "meta nfproto ipv4 ip saddr . meta l4proto . th sport @pub4 return" in reply
    assert "meta nfproto ipv6 meta l4proto . th sport @pubany6 return" in reply
    # the address-specific map first: a packet is counted once
    assert orig.index("meta nfproto ipv4 ip daddr . meta l4proto . th dport @pub4 return") < \
        orig.index("meta nfproto ipv4 meta l4proto . th dport @pubany4 return")
    assert len(orig) == len(reply) == 4
    # many ports add elements, never rules
    assert full(T, []) == ruleset.skeleton(T)
