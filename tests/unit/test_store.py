"""store/: the state database (one row per network, endpoint and lease), what a change writes, damaged
records and databases (kept aside, reported), a full disk, and the import of the old JSON layout."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest

import statedb
from fakes import EP_1, EP_2, ID_A, ID_B
from pynet.errors import Conflict, StateError
from pynet.model import Binding, Endpoint, Network, PortMapping, Subnet, to_dict
from pynet.store import VERSION, Store, _digest, export_network


def sample(net_id: str = ID_A) -> Network:
    net = Network(id=net_id, mode="nat", bridge="pn-n" + net_id[:11], mtu=1400, icc=False, ipv6=True,
                  host_binding_ipv4="127.0.0.1", v4=[Subnet("172.30.0.0/24", "172.30.0.1/24")],
                  v6=[Subnet("fd00:30::/64", "fd00:30::1/64")], options={"mtu": "1400", "icc": "false"},
                  leases={"02:00:00:00:00:01": {"ip": "192.168.1.5", "prefixlen": 24}})
    net.endpoints[EP_1] = Endpoint(
        id=EP_1, network_id=net_id, host_if="pn-h" + EP_1[:11], peer_if="pn-k" + EP_1[:11],
        mac="02:42:ac:1e:00:02", ipv4="172.30.0.2/24", ipv6="fd00:30::2/64", sandbox="/var/run/docker/netns/x",
        ports=[PortMapping("tcp", 80, "", 8080, 8080), PortMapping("udp", 53)],
        bindings=[Binding("tcp", 4, "", 8080, "172.30.0.2", 80), Binding("tcp", 6, "", 8080, "fd00:30::2", 80),
                  Binding("udp", 4, "127.0.0.1", 40001, "172.30.0.2", 53, source="cli")])
    net.endpoints[EP_2] = Endpoint(id=EP_2, network_id=net_id, host_if="pn-h" + EP_2[:11],
                                   peer_if="pn-k" + EP_2[:11], mac="02:42:ac:1e:00:03", ipv4="172.30.0.3/24")
    return net


@pytest.fixture
def state(tmp_path) -> str:
    return str(tmp_path / "state")


@pytest.fixture
def store(state) -> Store:
    return Store(state, verify=True)


def reopen(state) -> Store:
    return Store(state)


def problems(state) -> list[str]:
    s = Store(state)
    s.load_all()
    return s.problems


def test_round_trip(store, state):
    a, b = sample(ID_A), sample(ID_B)
    store.save(a)
    store.save(b)
    loaded = reopen(state).load_all()
    assert loaded == {ID_A: a, ID_B: b}
    ep = loaded[ID_A].endpoints[EP_1]
    assert isinstance(ep.bindings[0], Binding) and isinstance(ep.ports[0], PortMapping)
    assert isinstance(loaded[ID_A].v4[0], Subnet)


def test_database_and_permissions(store, state):
    store.save(sample())
    db = statedb.db_path(state)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(os.stat(state).st_mode) == 0o700
    with statedb.connect(state) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == "2"
    assert not [p for p in os.listdir(state) if ".tmp" in p]


def test_a_change_writes_what_changed(store):
    """O(1) per change: an endpoint changed, added or removed is one row, however many there are."""
    net = sample()
    for i in range(300):
        ep_id = f"{i:064x}"
        net.endpoints[ep_id] = Endpoint(id=ep_id, network_id=ID_A, host_if="h", peer_if="k", mac="02:00:00:00:00:01")
    store.save(net)
    ep = net.endpoints[EP_1]
    ep.sandbox = "/elsewhere"
    assert len(store._ops(net, store._known[ID_A], (ep,))[0]) == 1  # that endpoint's row, nothing else
    store.save(net, ep)
    del net.endpoints[EP_2]
    net.endpoints["f" * 64] = Endpoint(id="f" * 64, network_id=ID_A, host_if="h", peer_if="k", mac="02:00:00:00:00:02")
    assert len(store._ops(net, store._known[ID_A], ())[0]) == 2  # one gone, one new
    store.save(net)
    net.leases = dict(net.leases, **{"02:00:00:00:00:09": {"ip": "192.168.1.9", "prefixlen": 24}})
    assert len(store._ops(net, store._known[ID_A], ())[0]) == 1  # the new lease only
    store.save(net)
    net.mtu = 9000
    assert [op[0].split()[4] for op in store._ops(net, store._known[ID_A], ())[0]] == ["networks"]
    store.save(net)
    assert statedb.network(store.dir, ID_A) == to_dict(net)


def test_an_unnamed_change_is_caught_in_tests(store):
    """The test tiers run with verify on: a change in place that the call does not name fails loudly."""
    net = sample()
    store.save(net)
    net.endpoints[EP_1].sandbox = "/changed"
    with pytest.raises(AssertionError, match="out of step"):
        store.save(net)


def test_deletes_go_with_the_next_transaction(store, state):
    net = sample(ID_A)
    store.save(net)
    store.save(sample(ID_B))
    del net.endpoints[EP_2]  # what State.forget_endpoint does
    store.delete_endpoint(ID_A, EP_2)
    store.delete(ID_B)
    assert statedb.network_ids(state) == [ID_A, ID_B]  # deferred: the intent (`deleting`) is what is saved
    net.mtu = 1300
    store.save(net)  # one transaction: this change and both deletes
    assert statedb.network_ids(state) == [ID_A] and EP_2 not in statedb.network(state, ID_A)["endpoints"]
    store.delete(ID_A)
    store.delete(ID_A)  # deleting twice is fine
    store.flush()
    assert reopen(state).load_all() == {}


def test_a_migration_killed_half_way_starts_over(state):
    os.makedirs(state)
    with open(os.path.join(state, "state.db.tmp"), "wb") as fh:
        fh.write(b"half a database")
    store = Store(state)
    assert store.load_all() == {} and store.problems == []
    assert not os.path.exists(os.path.join(state, "state.db.tmp"))


# ---------------------------------------------------------------- damaged records

DAMAGE = {
    "network row truncated": ("networks", "truncate", "fails its checksum"),
    "endpoint row bit flip": ("endpoints", "bitflip", "fails its checksum"),
    "lease row garbage": ("leases", "garbage", "fails its checksum"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_record_sets_its_network_aside_and_stays_reported(store, state, case):
    table, how, why = DAMAGE[case]
    store.save(sample(ID_A))
    store.save(sample(ID_B))
    statedb.damage(state, ID_A, table, how)
    again = reopen(state)
    assert list(again.load_all()) == [ID_B]  # the healthy network still loads
    assert len(again.problems) == 1 and ID_A[:12] in again.problems[0] and why in again.problems[0]
    assert "kept aside" in again.problems[0] and list(again.damaged) == [ID_A]
    # Kept, not dropped: its rows, as they were, in the aside table (`pynet state export` shows them).
    exported = again.export_aside(ID_A)
    assert {r["table"] for r in exported["damaged"][0]["rows"]} >= {"networks", "endpoints", "leases"}
    # A second start still reports it (it once went silent, and the network's links were then removed
    # as leftovers), until an operator restores or forgets it.
    third = reopen(state)
    assert list(third.load_all()) == [ID_B] and third.problems == again.problems
    assert third.forget(ID_A) == 1
    fourth = reopen(state)
    assert list(fourth.load_all()) == [ID_B] and fourth.problems == [] and fourth.damaged == {}


def test_endpoint_rows_without_their_network_row(store, state):
    store.save(sample(ID_A))
    with statedb.connect(state) as conn:
        conn.execute("DELETE FROM networks WHERE id = ?", (ID_A,))
    again = reopen(state)
    assert again.load_all() == {} and "none of its own" in again.problems[0]


def test_restore_a_damaged_network_from_its_export(store, state):
    good = sample(ID_A)
    store.save(good)
    backup = export_network(good)  # `pynet state export` before the damage
    assert backup["sha256"] == _digest(backup["network"]) and backup["version"] == VERSION
    statedb.damage(state, ID_A, "endpoints", "truncate")
    again = reopen(state)
    assert again.load_all() == {}
    with pytest.raises(StateError, match="fails its checksum"):
        again.restore(dict(backup, sha256="0" * 64), live=set())
    again.restore(backup, live=set())
    assert again.problems == [] and [n.id for n in again.load_missing(set())] == [ID_A]
    assert reopen(state).load_all() == {ID_A: good}
    with pytest.raises(Conflict):
        again.restore(backup, live={ID_A})


def test_a_damaged_network_export_can_be_repaired_by_hand(store, state):
    """What still reads comes back assembled (no checksum): with the damaged endpoint removed, it restores."""
    store.save(sample(ID_A))
    statedb.damage(state, ID_A, "endpoints", "truncate")
    again = reopen(state)
    again.load_all()
    doc = again.export_aside(ID_A)
    assert "sha256" not in doc and len(doc["network"]["endpoints"]) == 1  # the damaged one left out
    doc["network"]["endpoints"] = {}
    net = again.restore(doc, live=set())
    assert net.endpoints == {} and reopen(state).load_all()[ID_A].bridge == "pn-n" + ID_A[:11]


# ---------------------------------------------------------------- a damaged database

def test_unreadable_database_is_set_aside_and_reported(store, state):
    store.save(sample())
    store.close()
    db = statedb.db_path(state)
    garbage = b"this is not an SQLite database" * 200
    db.write_bytes(garbage)
    again = reopen(state)
    assert again.load_all() == {}
    aside = [p for p in os.listdir(state) if p.startswith("state.db.corrupt-")]
    assert len(aside) == 1 and (statedb.db_path(state).parent / aside[0]).read_bytes() == garbage  # byte for byte
    assert len(again.problems) == 1 and "state database" in again.problems[0] and aside[0] in again.problems[0]
    assert len(problems(state)) == 1  # reported at every start
    os.unlink(os.path.join(state, aside[0]))  # the operator's decision
    assert problems(state) == []


def test_a_database_that_reads_whole_comes_back(store, state):
    """A file SQLite refuses by its check but whose tables all read: every network is recovered."""
    store.save(sample(ID_A))
    store.save(sample(ID_B))
    store.close()
    with statedb.connect(state) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    again = reopen(state)
    assert sorted(again.load_all()) == [ID_A, ID_B] and "state database" in again.problems[0]


# ---------------------------------------------------------------- a full disk

def test_full_disk_fails_the_save_and_changes_nothing(store, state):
    net = sample()
    store.save(net)
    with statedb.connect(state) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    store.db.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    ep = net.endpoints[EP_1]
    before = list(ep.bindings)
    ep.bindings = [Binding("tcp", 4, "", 20000 + i, "172.30.0.2", 80) for i in range(2000)]
    with pytest.raises(StateError, match="free space"):
        store.save(net, ep)
    assert reopen(state).load_all()[ID_A].endpoints[EP_1].bindings == before  # the last good state, whole
    store.db.conn.execute("PRAGMA max_page_count = 1073741823")
    store.save(net, ep)  # nothing half-remembered: the retry writes the change
    assert len(reopen(state).load_all()[ID_A].endpoints[EP_1].bindings) == 2000


# ---------------------------------------------------------------- the JSON files of earlier versions

def _legacy_file(path, payload: dict, name: str = "network") -> bytes:
    raw = json.dumps({"version": 1, "sha256": _digest(payload), name: payload}, sort_keys=True, indent=1).encode()
    path.write_bytes(raw)
    return raw


def test_old_state_is_imported_once_and_kept(tmp_path):
    state = tmp_path / "state"
    (state / "networks").mkdir(parents=True)
    a, b = sample(ID_A), sample(ID_B)
    files = {f"networks/{ID_A}.json": _legacy_file(state / "networks" / f"{ID_A}.json", to_dict(a)),
             f"networks/{ID_B}.json": _legacy_file(state / "networks" / f"{ID_B}.json", to_dict(b))}
    bad = "c" * 64
    (state / "networks" / f"{bad}.json").write_bytes(b'{"version": 1, "network": {"id": "trunc')
    (state / "networks" / f"{'d' * 64}.json.corrupt-1700000000").write_bytes(b"{}")
    (state / "networks" / f"{ID_A}.tmp4242").write_bytes(b"a write that never reached its rename")
    pools = {"pools": {"p1": {"id": "p1", "subnet": "10.1.0.0/24"}}}
    files["ipam.json"] = _legacy_file(state / "ipam.json", pools, "ipam")
    files["node.json"] = _legacy_file(state / "node.json", {"address": "10.88.0.11"}, "node")
    store = Store(str(state))
    assert store.load_all() == {ID_A: a, ID_B: b}
    assert store.load_doc("ipam") == pools and store.load_doc("node") == {"address": "10.88.0.11"}
    assert sorted(store.damaged) == [bad, "d" * 64] and not store.new
    assert any("unreadable or truncated" in p for p in store.problems)
    # The old files: moved aside untouched, never deleted; the database is what pynet reads now.
    moved = [p for p in os.listdir(state) if p.startswith("migrated-")]
    assert len(moved) == 1 and not (state / "networks").exists() and not (state / "ipam.json").exists()
    for rel, raw in files.items():
        assert (state / moved[0] / rel).read_bytes() == raw
    assert reopen(str(state)).load_all() == {ID_A: a, ID_B: b}  # a second start imports nothing again
    assert len([p for p in os.listdir(state) if p.startswith("migrated-")]) == 1
    # The damaged old file comes back with the operator's repair (`pynet state restore`).
    assert store.export_aside(bad)["damaged"][0]["rows"][0]["file"] == f"{bad}.json"


def test_a_migration_killed_before_moving_the_old_files(tmp_path):
    state = tmp_path / "state"
    (state / "networks").mkdir(parents=True)
    raw = _legacy_file(state / "networks" / f"{ID_A}.json", to_dict(sample()))
    Store(str(state)).load_all()
    moved = next(p for p in os.listdir(state) if p.startswith("migrated-"))
    os.replace(state / moved / "networks", state / "networks")  # as if killed before the move
    store = Store(str(state))
    assert list(store.load_all()) == [ID_A]
    kept = [state / m / "networks" / f"{ID_A}.json" for m in os.listdir(state) if m.startswith("migrated-")]
    assert [p.read_bytes() for p in kept if p.exists()] == [raw] and not (state / "networks").exists()


def test_state_dir_created_private(tmp_path):
    s = Store(str(tmp_path / "deep" / "state"))
    assert s.load_all() == {} and s.new
    assert stat.S_IMODE(os.stat(tmp_path / "deep" / "state").st_mode) == 0o700


def test_checkpoint_and_close(store, state):
    for i in range(5):
        store.save(dataclasses.replace(sample(), mtu=1400 + i))
    store.checkpoint()
    store.close()
    assert not os.path.exists(os.path.join(state, "state.db-wal")) or \
        os.path.getsize(os.path.join(state, "state.db-wal")) == 0
    assert reopen(state).load_all()[ID_A].mtu == 1404


# ---------------------------------------------------------------- kill -9 in the middle of saves

_SAVER = """
import sys
sys.path.insert(0, sys.argv[2])
from pynet.model import Binding
from pynet.store import Store
import test_store
store = Store(sys.argv[1])
net = test_store.sample()
store.save(net)
print("ready", flush=True)
i = 0
while True:  # every save rewrites endpoint 1 whole with n bindings, n = 1..400, and the MTU to match
    i = i % 400 + 1
    ep = net.endpoints[test_store.EP_1]
    ep.bindings = [Binding("tcp", 4, "", 20000 + k, "172.30.0.2", 80) for k in range(i)]
    net.mtu = 1000 + i
    store.save(net, ep)
"""


def test_kill_9_during_saves_keeps_a_whole_state(state):
    """A SIGKILL at any moment of a save leaves the last committed state, whole: never half a change."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for delay in (0.05, 0.13, 0.31):
        p = subprocess.Popen([sys.executable, "-c", _SAVER, state, str(here.parents[1] / "plugin")],
                             cwd=here, env=dict(os.environ, PYTHONPATH=f"{here}:{here.parent}"),
                             stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            p.stdout.close()
        again = reopen(state)
        nets = again.load_all()
        assert again.problems == [] and list(nets) == [ID_A]
        net = nets[ID_A]
        n = len(net.endpoints[EP_1].bindings)
        assert n == 2 and net.mtu == 1400 or net.mtu == 1000 + n  # one transaction: both or neither
        again.close()
