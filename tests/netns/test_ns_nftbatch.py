"""kernel/nftbatch.py, set elements as a hand-built nf_tables batch, against the real kernel: every
set and map of pynet's tables, elements of every key and value type. What it adds is what nft's
own text adds (the listings match, and nft deletes it by its text), what nft adds it deletes, and a
refused batch changes nothing."""

from __future__ import annotations

import json

import pytest

from dhcp_lan import run_in_netns
from lib import Netns
from pynet.errors import KernelError
from pynet.firewall import ruleset
from pynet.kernel.nft import Nft

T = "pnbatch"
# Two elements for each set and map, both families: every type a mode or a published port puts there.
ELEMENTS = {
    ("inet", "bridges"): ['"pn-n1"', '"pn-n2"'],
    ("inet", "intra"): ['"pn-n1" . "pn-n1"', '"pn-n2" . "pn-n2"'],
    ("inet", "internal"): ['"pn-n1"', '"br-custom0"'],
    ("inet", "masq"): ['"pn-n1"', '"pn-n2"'],
    ("inet", "internal_gw4"): ['"pn-n1" . 10.1.0.1', '"pn-n2" . 192.168.200.254'],
    ("inet", "internal_gw6"): ['"pn-n1" . fd00:1::1', '"pn-n2" . 2001:db8::ffff'],
    ("inet", "l2b_ifs"): ['"pn-v1"', '"pn-v2"'],
    ("inet", "l2b_src4"): ['"pn-v1" . 10.1.0.2', '"pn-v2" . 10.1.0.3'],
    ("inet", "l2b_src6"): ['"pn-v1" . fd00:1::2', '"pn-v2" . fe80::42:acff:fe11:2'],
    ("inet", "subnets4"): ['"pn-n1" . 10.1.0.0/24', '"pn-n2" . 172.20.16.0/20'],
    ("inet", "subnets6"): ['"pn-n1" . fd00:1::/64', '"pn-n2" . 2001:db8:aa::/48'],
    ("inet", "pub4"): ['10.0.0.1 . tcp . 8080 : 10.1.0.2 . 80', '127.0.0.1 . udp . 5353 : 10.1.0.3 . 53'],
    ("inet", "pub6"): ['fd00::1 . tcp . 443 : fd00:1::2 . 8443', '::1 . sctp . 9 : fd00:1::3 . 9'],
    ("inet", "pubany4"): ['tcp . 65535 : 10.1.0.2 . 1', 'udp . 1 : 10.1.0.3 . 65535'],
    ("inet", "pubany6"): ['tcp . 8080 : fd00:1::2 . 80', 'sctp . 2905 : fd00:1::3 . 2905'],
    ("bridge", "nat_ports"): ['"pn-v1"', '"pn-v2"'],
    ("bridge", "nat_mac"): ['"pn-v1" . 02:42:ac:11:00:02', '"pn-v2" . 02:42:ac:11:00:ff'],
    ("bridge", "nat_src4"): ['"pn-v1" . 10.1.0.2', '"pn-v2" . 10.1.0.3'],
    ("bridge", "nat_src6"): ['"pn-v1" . fd00:1::2', '"pn-v2" . fe80::42:acff:fe11:2'],
    ("bridge", "nat_nd6"): ['"pn-v1" . 0xfd000001000000000000000000000002',
                            '"pn-v2" . 0xfe800000000000000042acfffe110002'],
    ("bridge", "ov_gwmac"): ['"pn-x1" . 02:42:0a:00:00:01', '"pn-x1" . 02:42:0a:00:00:02'],
    ("bridge", "ov_gw4"): ['"pn-x1" . 10.2.0.1', '"pn-x1" . 10.3.0.1'],
}


@pytest.fixture
def ns():
    ns = Netns("nb")
    try:
        yield ns
    finally:
        ns.close()


def in_ns(ns, fn):
    """await fn(an Nft with pynet's sets declared) inside ns, on a fresh skeleton table."""
    async def go():
        nft = Nft()
        for family in (ruleset.FAMILY, "bridge"):
            nft.declare(family, T, ruleset.declared(family))
        try:
            await nft.run(ruleset.skeleton(T))
            return await fn(nft)
        finally:
            nft.close()
    return run_in_netns(ns.name, go)


def not_libnftables(lines):
    raise AssertionError(f"went to libnftables: {lines}")


def lines(op: str, which=ELEMENTS) -> list[str]:
    return [f"{op} element {family} {T} {name} {{ {', '.join(items)} }}" for (family, name), items in which.items()]


def elements(ns) -> dict:
    """Every set's and map's elements as `nft -j` shows them (counters included)."""
    out = {}
    for family in ("inet", "bridge"):
        for obj in json.loads(ns.run("nft", "-j", "list", "table", family, T).stdout)["nftables"]:
            for kind in ("set", "map"):
                if kind in obj:
                    out[family, obj[kind]["name"]] = sorted(json.dumps(e, sort_keys=True)
                                                            for e in obj[kind].get("elem", []))
    return out


def test_every_declared_set_and_type_is_encoded():
    declared = {(f, name) for f in ("inet", "bridge") for name in ruleset.declared(f)}
    assert declared == set(ELEMENTS)


def test_the_batch_adds_what_nft_adds_and_each_deletes_the_others(ns):
    async def by_text(nft):
        nft._run(lines("add"))  # libnftables, the reference
    in_ns(ns, by_text)
    want = elements(ns)
    assert all(len(v) == 2 for v in want.values())

    async def by_batch(nft):
        nft._run_locked = not_libnftables
        await nft.run(lines("add"))
        await nft.run(lines("add"))  # adding again changes nothing, as nft's `add` does
    in_ns(ns, by_batch)
    assert elements(ns) == want
    # nft's text finds every element the batch made (same bytes), and the batch finds nft's.
    for line in lines("delete"):
        ns.run("nft", line)
    assert all(v == [] for v in elements(ns).values())

    async def text_then_batch(nft):
        nft._run(lines("add"))
        nft._run_locked = not_libnftables
        await nft.run(lines("delete"))
    in_ns(ns, text_then_batch)
    assert all(v == [] for v in elements(ns).values())


def test_a_refused_batch_changes_nothing_and_names_the_line(ns):
    one = {("inet", "bridges"): ['"pn-n1"']}
    missing = {("bridge", "nat_ports"): ['"pn-gone"']}

    async def go(nft):
        nft._run_locked = not_libnftables
        with pytest.raises(KernelError) as e:
            await nft.run(lines("add", one) + lines("delete", missing))
        assert "No such file or directory" in str(e.value) and "pn-gone" in str(e.value)
        await nft.run(lines("add", one))  # the socket answers the next batch
        del nft._run_locked
    in_ns(ns, go)
    got = elements(ns)
    assert got["inet", "bridges"] == ['"pn-n1"']
    assert got["bridge", "nat_ports"] == []

    async def no_table(nft):
        await nft.run([f"delete table inet {T}"])
        with pytest.raises(KernelError, match="No such file or directory"):
            await nft.run(lines("add", one))
    in_ns(ns, no_table)
