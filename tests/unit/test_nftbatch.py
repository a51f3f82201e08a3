"""kernel/nftbatch.py's choice: which scripts it encodes and which go to libnftables (the netns
test checks the bytes against nft's own)."""

from __future__ import annotations

import pytest

from pynet.firewall import ruleset
from pynet.kernel.nftbatch import MAX_BATCH, NFT_MSG_DELSETELEM, NFT_MSG_NEWSETELEM, Batch, SetType


@pytest.fixture
def batch():
    b = Batch()
    for family in ("inet", "bridge"):
        b.declare(family, "t", {n: SetType(spec, iv) for n, (spec, iv) in ruleset.declared(family).items()})
    return b


def test_element_changes_of_declared_sets_are_encoded_in_order(batch):
    msgs = batch.encode(['delete element inet t bridges { "pn-a" }',
                         'add element bridge t nat_mac { "pn-v" . 02:42:ac:11:00:02, "pn-w" . 02:42:ac:11:00:03 }',
                         'add element inet t pubany4 { tcp . 8080 : 10.0.0.2 . 80 }'])
    assert [(m[0], m[1]) for m in msgs] == [(NFT_MSG_DELSETELEM, 1), (NFT_MSG_NEWSETELEM, 7), (NFT_MSG_NEWSETELEM, 1)]


@pytest.mark.parametrize("line", [
    "add table inet t",  # not an element change
    'add element inet other bridges { "pn-a" }',  # a table nobody declared
    'add element inet t nosuchset { "pn-a" }',
    'add element inet t pubany4 { tcp . 8080 counter packets 5 bytes 300 : 10.0.0.2 . 80 }',  # rebuild's counters
    'add element inet t bridges { "pn-*" }',  # a wildcard
    'add element inet t bridges { "a,b" }',  # a separator inside a name
    'add element inet t bridges { "this-name-is-too-long" }',
    'add element inet t subnets4 { "pn-a" . 10.0.0.1/24 }',  # host bits: nft's own error, not ours
    'add element inet t subnets4 { "pn-a" . fd00::/64 }',  # the wrong family
    'add element inet t pubany4 { tcp . 8080 }',  # a map element without its value
    'add element inet t bridges { "pn-a" : 1 }',  # a set element with one
    'add element inet t pubany4 { tcp . 70000 : 10.0.0.2 . 80 }',
    'add element bridge t nat_mac { "pn-v" . 02:42:ac:11:00 }',
    'add element bridge t nat_nd6 { "pn-v" . fd00::1 }',
])
def test_anything_else_goes_to_libnftables(batch, line):
    assert batch.encode(['add element inet t bridges { "pn-ok" }', line]) is None


def test_a_large_change_goes_to_libnftables_in_a_thread(batch):
    ports = ", ".join(f"tcp . {p} : 10.0.0.2 . 80" for p in range(1, 3000))
    assert batch.encode([f"add element inet t pubany4 {{ {ports} }}"]) is None
    assert MAX_BATCH < 3000 * 40


def test_unknown_types_are_refused_when_declared():
    with pytest.raises(ValueError, match="mark"):
        SetType("ifname . mark")
