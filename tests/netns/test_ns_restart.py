"""kill -9 and restart with the same state dir: state kept, kernel reconciled from it."""

from __future__ import annotations

import json
import subprocess

import pytest

import statedb
from lib import PREFIX, PYNET, TABLE, Netns
from nslib import Container, addr, pynet_cli, until


def host_if(ep_id: str) -> str:
    return f"{PREFIX}h{ep_id[:15 - len(PREFIX) - 1]}"


def test_kill9_keeps_containers_connected_and_restart_keeps_state(host):
    net = host.create_network(51)
    other = host.create_network(52)
    host.delete_network(other)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    links = host.links()
    host.daemon.kill9()
    # The kernel forwards without the daemon.
    assert a.ping(b.ip) and a.ping(net.gateway)
    host.daemon.start()
    nets = host.networks()
    assert list(nets) == [net.id]  # the deleted network stays deleted
    assert nets[net.id]["endpoints"] == 2
    detail = host.get(f"/pynet/v1/networks/{net.id}")
    assert {e["id"]: e["sandbox"] for e in detail["endpoints"]} == {a.ep_id: f"/run/netns/{a.name}",
                                                                     b.ep_id: f"/run/netns/{b.name}"}
    p = pynet_cli(host, "ls", "--json")
    assert p.returncode == 0 and [n["id"] for n in json.loads(p.stdout)] == [net.id], p.stderr
    assert host.links() == links  # nothing live was removed or duplicated
    assert host.get("/pynet/v1/status")["leftovers_removed_at_start"] == []
    assert a.ping(b.ip)
    # The restarted daemon serves the old network: new containers join, old ones leave.
    c = host.run_container(net, 4)
    assert c.ping(a.ip)
    host.remove_container(b)
    assert b.ep_id not in {e["id"] for e in host.get(f"/pynet/v1/networks/{net.id}")["endpoints"]}


def test_bridge_deleted_while_down_is_recreated_and_veths_reattached(host):
    net = host.create_network(53)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    host.daemon.kill9()
    host.ns.run("ip", "link", "del", net.bridge)
    assert not a.ping(b.ip, wait=1)  # the veths are loose: no switch between them
    host.daemon.start()
    link = host.link(net.bridge)
    assert link is not None and link["linkinfo"]["info_kind"] == "bridge"
    assert "10.53.0.1/24" in host.addrs(net.bridge)
    assert host.sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet") == "1"
    for ctr in (a, b):
        assert host.link(host_if(ctr.ep_id))["master"] == net.bridge
    until(lambda: a.ping(b.ip), what="containers talk again")
    assert a.ping(net.gateway)


def test_leftovers_removed_at_start_foreign_links_kept(host):
    net = host.create_network(54)
    hexlen = 15 - len(PREFIX) - 1
    host.daemon.kill9()
    stale = f"{PREFIX}h{'0' * hexlen}"  # pynet's name shape, belongs to no endpoint
    tagged = f"{PREFIX}zz"  # any name, but pynet's owner tag in its alias
    foreign = f"{PREFIX}user"  # the prefix alone does not make a link pynet's
    host.ns.run("ip", "link", "add", stale, "type", "veth", "peer", "name", f"{PREFIX}peer0")
    host.ns.run("ip", "link", "add", tagged, "type", "bridge")
    host.ns.run("ip", "link", "set", tagged, "alias", f"pynet:{TABLE}:{'f' * 64}")
    host.ns.run("ip", "link", "add", foreign, "type", "bridge")
    host.daemon.start()
    assert sorted(host.get("/pynet/v1/status")["leftovers_removed_at_start"]) == sorted([stale, tagged])
    assert host.link(stale) is None and host.link(tagged) is None
    assert host.link(foreign) is not None  # nothing foreign is ever deleted
    assert host.link(net.bridge) is not None


def test_table_deleted_while_down_is_rebuilt_and_repaired_while_running(host):
    net = host.create_network(55)
    host.daemon.kill9()
    host.nft("delete", "table", "inet", TABLE)
    host.daemon.start()
    assert host.table_present()
    assert host.nft_elements("bridges") == [net.bridge]
    assert host.nft_elements("masq") == [net.bridge]
    # Flushed by someone while running: back within the check interval (1 s in tests).
    host.nft("delete", "table", "inet", TABLE)
    until(host.table_present, timeout=5, what="table rebuilt")
    assert host.nft_elements("bridges") == [net.bridge]


def test_simulated_reboot_endpoint_comes_back_on_rejoin(host):
    """Container namespaces and links gone, state kept: the engine re-creates and re-joins the endpoint."""
    net = host.create_network(56)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    host.daemon.kill9()
    host.containers.remove(a)
    a.close()  # the veth pair goes with the namespace
    host.ns.run("ip", "link", "del", net.bridge)
    host.daemon.start()
    assert host.link(host_if(a.ep_id)) is None
    assert host.networks()[net.id]["endpoints"] == 2  # kept until Docker deletes or re-joins it
    # Docker repeats CreateEndpoint (same ID) and Join for the restarted container.
    _, reply = host.create_endpoint(net, 2, ep_id=a.ep_id)
    assert reply == {"Interface": {"MacAddress": a.mac}}
    assert host.link(host_if(a.ep_id))["master"] == net.bridge
    ns = Netns("reboot")
    join = host.join(net, a.ep_id, sandbox=f"/run/netns/{ns.name}")
    again = Container(ns, net.id, a.ep_id, a.ip, addr(56, 2), a.mac, join)
    host.containers.append(again)
    host.plug(again)
    assert again.ping(net.gateway) and again.ping(b.ip)


def test_a_second_daemon_on_the_same_socket_is_refused(host):
    net = host.create_network(57)
    p = subprocess.run(["ip", "netns", "exec", host.ns.name, PYNET, "serve"], env=host.daemon.env(),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "another daemon already listens" in p.stderr
    assert host.networks()[net.id]["bridge"] == net.bridge  # the first one still serves


def test_corrupt_state_file_is_reported_and_kept_aside(host):
    good = host.create_network(58)
    bad = host.create_network(59)
    host.daemon.kill9()
    statedb.damage(host.daemon.state_dir, bad.id, "networks", "truncate")  # what a failing disk would do
    host.daemon.start()
    status = host.get("/pynet/v1/status")
    assert len(status["state_problems"]) == 1 and bad.id[:12] in status["state_problems"][0]
    assert [n for n, _why in statedb.aside(host.daemon.state_dir)] == [bad.id]  # never silently dropped
    assert list(host.networks()) == [good.id]
    assert host.link(good.bridge) is not None


# BUG (product, design level): a network whose state file is corrupt is set aside by store.py (l. 82-85),
# but its links still carry pynet's owner tag and name shape, so Service.reconcile (service.py l. 120) ->
# find_leftovers (l. 133-141) deletes its bridge and its containers' live veths at start. The README
# promises that a corrupt file is "never silently dropped" and that kill -9 "leaves every container
# connected"; here the containers of that network lose their network until it is re-created by hand,
# and the file kept aside can no longer be restored without rebuilding the kernel side.
def test_corrupt_state_file_does_not_cut_its_live_containers_off(host):
    bad = host.create_network(60)
    a = host.run_container(bad, 2)
    b = host.run_container(bad, 3)
    host.daemon.kill9()
    statedb.damage(host.daemon.state_dir, bad.id, "networks", "truncate")
    host.daemon.start()
    assert host.get("/pynet/v1/status")["state_problems"]
    assert host.get("/pynet/v1/status")["leftovers_removed_at_start"] == []
    assert a.ping(b.ip, wait=1)


def test_state_of_an_earlier_pynet_is_imported_and_its_containers_keep_running(host):
    """An upgrade: the JSON files of pynet before its database (networks/<id>.json, ipam.json) are imported
    at the first start, kernel and containers untouched, and the old files kept (moved, never deleted)."""
    import os
    from pathlib import Path

    net = host.create_network(61)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    doc = host.get(f"/pynet/v1/state/{net.id}")  # the old file format, checksum included
    links = host.links()
    host.daemon.kill9()
    state = Path(host.daemon.state_dir)
    for p in state.glob("state.db*"):
        p.unlink()
    (state / "networks").mkdir()
    (state / "networks" / f"{net.id}.json").write_text(json.dumps(doc, sort_keys=True, indent=1))
    (state / "networks" / f"{'e' * 64}.json").write_text('{"version": 1, "network": {"id": "tru')  # a damaged one
    host.daemon.start()
    assert list(host.networks()) == [net.id] and host.networks()[net.id]["endpoints"] == 2
    assert host.links() == links and host.get("/pynet/v1/status")["leftovers_removed_at_start"] == []
    assert a.ping(b.ip)
    problems = host.get("/pynet/v1/status")["state_problems"]
    assert len(problems) == 1 and "e" * 12 in problems[0]  # imported as damaged, reported, not dropped
    moved = [p for p in os.listdir(state) if p.startswith("migrated-")]
    assert len(moved) == 1 and (state / moved[0] / "networks" / f"{net.id}.json").exists()
    assert not (state / "networks").exists()
    assert host.call("/pynet/v1/state/forget", {"network": "e" * 64})[0] == 200
    c = host.run_container(net, 4)  # the imported network serves calls
    assert c.ping(a.ip)
    host.daemon.kill9()
    host.daemon.start()  # a second start imports nothing again
    assert list(host.networks()) == [net.id] and host.get("/pynet/v1/status")["state_problems"] == []
    assert len([p for p in os.listdir(state) if p.startswith("migrated-")]) == 1
