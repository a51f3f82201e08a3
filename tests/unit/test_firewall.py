"""firewall/ against a fake Nft: table upkeep with bookkeeping, and the DOCKER-USER accepts.

The firewall knows no network: the core hands it elements (computed by the modes, here
through core.networks.Networks) and DOCKER-USER patterns.
"""

from __future__ import annotations

import pytest

from fakes import EP_1, ID_A, ID_B, FakeNft, du_return, du_rule, nid
from pynet.errors import KernelError
from pynet.firewall import Firewall
from pynet.model import Binding, Endpoint, Network, Subnet
from test_ruleset import MODES, networks

T = "pynet_unit"


def nat(net_id=ID_A, bridge=None, custom=False, mode="nat") -> Network:
    return Network(id=net_id, mode=mode, bridge=bridge or "pn-n" + net_id[:11], custom_bridge=custom,
                   v4=[Subnet("172.30.0.0/24", "172.30.0.1/24")])


def fw(nft) -> Firewall:
    return Firewall(nft, T)


def elements(nets) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for net in nets:
        for name, items in networks().elements(net).items():
            out.setdefault(name, []).extend(items)
    return out


async def sync(f: Firewall, nets, forget=()) -> list[str]:
    """What the core does: patterns from its networks' modes, then the firewall syncs."""
    wanted, ours = networks(nets).docker_user_patterns()
    return await f.sync_docker_user(wanted, ours | set(forget))


B80 = Binding("tcp", 4, "", 8080, "172.30.0.2", 80)
B53 = Binding("udp", 4, "127.0.0.1", 5353, "172.30.0.2", 53)
B443 = Binding("tcp", 6, "", 8443, "fd00::2", 443)


async def test_rebuild_then_incremental_changes():
    nft = FakeNft()
    f = fw(nft)
    a = nat()
    a.endpoints[EP_1] = Endpoint(id=EP_1, network_id=ID_A, host_if="h", peer_if="k", mac="02:42:ac:11:00:02", bindings=[B80])
    await f.rebuild(elements([a, nat(ID_B, mode="transparent")]))
    assert len(nft.scripts) == 1  # one transaction
    assert nft.elements(T, "bridges") == {f'"{a.bridge}"': None}  # LAN-mode networks have no bridge here
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert await f.table_present()

    await f.change_ports(remove=[B80], add=[B53, B443])
    assert nft.elements(T, "pubany4") == {}
    assert nft.elements(T, "pub4") == {"127.0.0.1 . udp . 5353": "172.30.0.2 . 53"}
    assert nft.elements(T, "pubany6") == {"tcp . 8443": "fd00::2 . 443"}

    a.endpoints[EP_1].bindings = [B53, B443]  # as the service records them
    await f.remove(elements([a]))  # the network's own bindings with it
    assert nft.elements(T, "bridges") == {} and nft.elements(T, "masq") == {}
    assert nft.elements(T, "pub4") == {} and nft.elements(T, "pubany6") == {}


async def test_change_ports_keeps_unchanged_bindings_out_of_the_batch():
    nft = FakeNft()
    f = fw(nft)
    await f.rebuild(elements([]))
    await f.change_ports([], [B80, B53])
    await f.change_ports(remove=[B80, B53], add=[B80])  # a retry that drops one port
    assert nft.scripts[-1] == [f"delete element inet {T} pub4 {{ 127.0.0.1 . udp . 5353 }}"]
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    n = len(nft.scripts)
    await f.change_ports([B80], [B80])
    assert len(nft.scripts) == n  # nothing to do: no script at all


async def test_failed_change_changes_nothing():
    nft = FakeNft()
    f = fw(nft)
    await f.rebuild(elements([nat()]))
    real_run = nft.run

    async def refuse(lines):
        raise KernelError("nftables refused the change: boom")

    nft.run = refuse
    with pytest.raises(KernelError):
        await f.change_ports([], [B80])
    nft.run = real_run
    assert nft.elements(T, "pubany4") == {}
    assert not f.has("pubany4", "tcp . 8080")  # the bookkeeping did not follow


async def test_table_edited_by_hand_is_rewritten_from_the_bookkeeping():
    """Someone deleted an element (or flushed a set): the next change still succeeds, and the
    table ends up as pynet's bookkeeping says, ports published meanwhile included."""
    nft = FakeNft()
    f = fw(nft)
    await f.rebuild(elements([nat()]))
    await f.change_ports([], [B80, B53])
    del nft.tables[T]["pub4"]["127.0.0.1 . udp . 5353"]  # by hand
    await f.change_ports([B53], [B443])  # deleting what is gone fails once, then the table is rewritten
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert nft.elements(T, "pub4") == {}
    assert nft.elements(T, "pubany6") == {"tcp . 8443": "fd00::2 . 443"}
    del nft.tables[T]  # the whole table flushed: repair puts back exactly the bookkeeping
    await f.repair()
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}
    assert nft.elements(T, "bridges") == {f'"{nat().bridge}"': None}


async def test_lan_modes_put_nothing_in_the_table_for_the_network():
    nft = FakeNft()
    f = fw(nft)
    await f.rebuild(elements([]))
    await f.add(MODES["transparent"].network_elements(nat(ID_B, mode="transparent")))
    await f.remove(MODES["transparent"].network_elements(nat(ID_B, mode="transparent")))
    assert len(nft.scripts) == 1


async def test_delete_table_works_when_absent():
    nft = FakeNft()
    f = fw(nft)
    assert not await f.table_present()
    await f.delete_table()
    assert not await f.table_present()
    assert nft.scripts == [[f"add table inet {T}", f"delete table inet {T}",
                            f"add table bridge {T}", f"delete table bridge {T}"]]


# ---------------------------------------------------------------- DOCKER-USER

async def test_docker_user_accepts_added_in_both_families():
    nft = FakeNft(docker_user={"ip": [du_return("ip", 5)], "ip6": [du_return("ip6", 6)]})
    seen = await sync(fw(nft), [nat()])
    assert seen == ["ip", "ip6"]
    for fam in ("ip", "ip6"):
        assert sorted(nft.du_patterns(fam)) == [("iifname", "pn-*"), ("oifname", "pn-*")]
        assert nft.docker_user[fam][-1]["rule"]["handle"] in (5, 6)  # Docker's RETURN stays last
    assert 'insert rule ip filter DOCKER-USER iifname "pn-*" accept' in nft.scripts[0]


async def test_docker_user_missing_chain_is_skipped():
    nft = FakeNft(docker_user={"ip": [], "ip6": None})
    assert await sync(fw(nft), [nat()]) == ["ip"]
    assert all(line.startswith("insert rule ip filter") for s in nft.scripts for line in s)


async def test_docker_user_sync_is_idempotent():
    nft = FakeNft(docker_user={"ip": []})
    f = fw(nft)
    await sync(f, [nat()])
    n = len(nft.scripts)
    await sync(f, [nat()])
    assert len(nft.scripts) == n


async def test_docker_user_custom_bridges_added_and_forgotten():
    nft = FakeNft(docker_user={"ip": []})
    f = fw(nft)
    custom = nat(ID_B, bridge="mybr0", custom=True)
    await sync(f, [nat(), custom])
    assert sorted(nft.du_patterns("ip")) == [("iifname", "mybr0"), ("iifname", "pn-*"),
                                             ("oifname", "mybr0"), ("oifname", "pn-*")]
    await sync(f, [nat()], forget=("mybr0",))  # the custom network was deleted
    assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]


async def test_docker_user_removed_with_last_network_and_duplicates_pruned():
    nft = FakeNft(docker_user={"ip": [du_rule("ip", 7, "iifname", "pn-*"), du_rule("ip", 8, "iifname", "pn-*"),
                                      du_rule("ip", 9, "oifname", "pn-*")]})
    f = fw(nft)
    await sync(f, [nat()])
    assert sorted(nft.du_patterns("ip")) == [("iifname", "pn-*"), ("oifname", "pn-*")]  # one of each
    await sync(f, [])
    assert nft.du_patterns("ip") == []


async def test_docker_user_foreign_rules_untouched():
    foreign = [du_rule("ip", 20, "iifname", "docker0"),                     # someone else's accept
               du_rule("ip", 21, "iifname", "px-*"),                        # another pynet's prefix
               {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 22,
                         "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "pn-*"}},
                                  {"counter": None}, {"accept": None}]}},  # not exactly our shape
               {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 23,
                         "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "pn-*"}},
                                  {"accept": None}]}},
               du_return("ip", 24)]
    nft = FakeNft(docker_user={"ip": [dict(r) for r in foreign]})
    f = fw(nft)
    await sync(f, [nat()])
    await sync(f, [])
    assert [r["rule"]["handle"] for r in nft.docker_user["ip"]] == [20, 21, 22, 23, 24]


async def test_lan_networks_need_no_docker_user_rules():
    nft = FakeNft(docker_user={"ip": []})
    await sync(fw(nft), [nat(nid("c"), mode="transparent")])
    assert nft.du_patterns("ip") == [] and nft.scripts == []
