"""store.py: atomic, checksummed state files; corrupt ones are reported and kept aside."""

from __future__ import annotations

import json
import os
import stat

import pytest

from fakes import EP_1, EP_2, ID_A, ID_B
from pynet.model import Binding, Endpoint, Network, PortMapping, Subnet
from pynet.store import VERSION, Store, _digest


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
def store(tmp_path) -> Store:
    s = Store(str(tmp_path / "state"))
    s.ensure()
    return s


def test_round_trip(store, tmp_path):
    a, b = sample(ID_A), sample(ID_B)
    store.save(a)
    store.save(b)
    loaded = Store(str(tmp_path / "state")).load_all()
    assert loaded == {ID_A: a, ID_B: b}
    ep = loaded[ID_A].endpoints[EP_1]
    assert isinstance(ep.bindings[0], Binding) and isinstance(ep.ports[0], PortMapping)
    assert isinstance(loaded[ID_A].v4[0], Subnet)


def test_file_format_and_permissions(store):
    store.save(sample())
    path = store.dir / f"{ID_A}.json"
    doc = json.loads(path.read_text())
    assert doc["version"] == VERSION
    assert doc["sha256"] == _digest(doc["network"])
    assert doc["network"]["id"] == ID_A
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in store.dir.iterdir()) == [f"{ID_A}.json"]  # no temp file left behind


def test_save_replaces(store):
    net = sample()
    store.save(net)
    net.mtu = 9000
    del net.endpoints[EP_2]
    store.save(net)
    assert store.load_all()[ID_A] == net


def test_delete_is_idempotent(store):
    store.save(sample())
    store.delete(ID_A)
    store.delete(ID_A)
    assert store.load_all() == {}


def test_interrupted_write_leaves_old_file(store):
    """kill -9 between write and rename: the temp file is dropped at load, the old state stays."""
    net = sample()
    store.save(net)
    (store.dir / f"{ID_A}.tmp4242").write_bytes(b'{"version": 1, "network": {"id": "trunc')
    assert store.load_all() == {ID_A: net}
    assert store.problems == []
    assert not (store.dir / f"{ID_A}.tmp4242").exists()


def test_other_files_ignored(store):
    store.save(sample())
    (store.dir / "README").write_text("not state")
    assert list(store.load_all()) == [ID_A]
    assert (store.dir / "README").exists()


def _corrupt_cases():
    good = json.dumps({"version": VERSION, "sha256": "", "network": {}})
    return {
        "truncated": (lambda raw: raw[: len(raw) // 2], "unreadable or truncated"),
        "empty": (lambda raw: b"", "unreadable or truncated"),
        "bitflip": (lambda raw: raw.replace(b'"mtu": 1400', b'"mtu": 1401'), "fails its checksum"),
        "version": (lambda raw: raw.replace(b'"version": 1', b'"version": 99'), "unknown version 99"),
        "not-object": (lambda raw: b"[1, 2]", "unknown version None"),
        "no-checksum": (lambda raw: good.encode(), "fails its checksum"),
    }


@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_corrupt_file_reported_and_kept_aside(store, case):
    """The network is not loaded; the file is kept as *.corrupt-<time> and reported at every start."""
    mangle, why = _corrupt_cases()[case]
    store.save(sample(ID_A))
    store.save(sample(ID_B))
    path = store.dir / f"{ID_A}.json"
    original = path.read_bytes()
    path.write_bytes(mangle(original))
    loaded = store.load_all()
    assert list(loaded) == [ID_B]  # the healthy network still loads
    assert len(store.problems) == 1
    problem = store.problems[0]
    assert str(path) in problem and why in problem
    aside = [p for p in store.dir.iterdir() if p.name.startswith(f"{ID_A}.json.corrupt-")]
    assert len(aside) == 1 and str(aside[0]) in problem
    assert aside[0].read_bytes() == mangle(original)  # kept byte for byte, for a human to look at
    assert not path.exists()
    # A second start still reports it (it once went silent, and the network's links were then
    # removed as leftovers), until an operator removes the file or puts a good one back.
    assert list(store.load_all()) == [ID_B] and store.problems == [problem]
    assert list(store.damaged) == [ID_A]
    aside[0].unlink()
    assert list(store.load_all()) == [ID_B] and store.problems == [] and store.damaged == {}


def test_checksum_valid_but_not_a_network(store):
    payload = {"id": ID_A, "mode": "nat", "bridge": "x", "colour": "blue"}
    doc = {"version": VERSION, "sha256": _digest(payload), "network": payload}
    (store.dir / f"{ID_A}.json").write_text(json.dumps(doc))
    assert store.load_all() == {}
    assert "does not describe a network" in store.problems[0]


@pytest.mark.parametrize("endpoints", [[], {EP_1: "x"}])
def test_wrong_typed_payload_kept_aside(store, endpoints):
    payload = {"id": ID_A, "mode": "nat", "bridge": "x", "endpoints": endpoints}
    doc = {"version": VERSION, "sha256": _digest(payload), "network": payload}
    (store.dir / f"{ID_A}.json").write_text(json.dumps(doc))
    assert store.load_all() == {}
    assert "does not describe a network" in store.problems[0]


def test_state_dir_created_private(tmp_path):
    s = Store(str(tmp_path / "deep" / "state"))
    assert s.load_all() == {}
    assert stat.S_IMODE(os.stat(tmp_path / "deep" / "state" / "networks").st_mode) == 0o700
