"""Defects a review found (issue 13), each reproduced against the real daemon and kernel.

Every test here failed before its fix; the names say the user's symptom.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import statedb
from lib import TAG, sh
from nslib import UPLINK_CLIENT, UPLINK_HOST, fetch, new_id, portmap, until


def pec(host, ctr, maps: list[dict]):
    return host.call("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": ctr.net_id, "EndpointID": ctr.ep_id, "Options": {"com.docker.network.portmap": maps}})


def status(host) -> dict:
    return host.get("/pynet/v1/status")


def docker_user(host) -> str:
    return host.nft("list", "chain", "ip", "filter", "DOCKER-USER", check=False).stdout


def restart(host) -> None:
    host.daemon.kill9()
    host.daemon.start()


def _fake_docker_firewall(host) -> None:
    """Docker's ip filter DOCKER-USER chain, as dockerd makes it, in the host namespace."""
    host.nft("add", "table", "ip", "filter")
    host.nft("add", "chain", "ip", "filter", "DOCKER-USER")


# ---------------------------------------------------------------- 1. a damaged state file

def test_damaged_state_file_never_costs_the_network_and_stays_reported(host):
    _fake_docker_firewall(host)
    lan = host.lan_client()
    net = host.create_network(91)
    web = host.run_container(net, 2)
    web.serve(8000)
    assert pec(host, web, portmap((8000, 18910)))[0] == 200
    assert fetch(f"http://{UPLINK_HOST}:18910/", lan.name) == UPLINK_CLIENT
    good = host.get(f"/pynet/v1/state/{net.id}")  # `pynet state export`: the operator's backup
    statedb.damage(host.daemon.state_dir, net.id, "endpoints", "truncate")
    before = host.links()

    def intact():
        assert host.links() == before  # bridge and veths kept: not "leftovers"
        assert {e for e in host.nft_elements("bridges")} == {net.bridge}
        assert [e for e in host.nft_elements("pubany4")], "the published port was dropped"
        assert fetch(f"http://{UPLINK_HOST}:18910/", lan.name) == UPLINK_CLIENT  # masquerade, DNAT, accepts
        assert '"pn-' in docker_user(host) or f'"{host.daemon.env()["PYNET_LINK_PREFIX"]}*"' in docker_user(host)
        problems = status(host)["state_problems"]
        assert len(problems) == 1 and net.id[:12] in problems[0] and "kept aside" in problems[0]

    for _start in (1, 2):  # the first start and the one after it (where it once went silent)
        restart(host)
        intact()
    # Docker's calls for it say what is wrong.
    status_code, doc = host.call("/NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": new_id(), "Interface": {"Address": "10.91.0.9/24"}, "Options": {}})
    assert status_code != 200 and "damaged" in doc["Err"] and "pynet doctor" in doc["Err"]
    assert host.call("/pynet/v1/reconcile", {})[0] == 200  # what doctor recommends: still harmless
    intact()
    # The operator restores it (README: "A damaged state record", `pynet state restore`): the network is back.
    assert [n for n, _why in statedb.aside(host.daemon.state_dir)] == [net.id]
    assert "damaged" in host.get(f"/pynet/v1/state/{net.id[:12]}")  # `pynet state export` of the damaged records
    code, doc = host.call("/pynet/v1/state/restore", dict(good, sha256="0" * 64))
    assert code != 200 and "checksum" in doc["Err"]
    code, doc = host.call("/pynet/v1/state/restore", good)
    assert code == 200 and doc["network"] == net.id and not doc["reconcile"]["errors"], doc
    assert net.id in host.networks() and status(host)["state_problems"] == []
    assert statedb.aside(host.daemon.state_dir) == []
    assert [b["host_port"] for b in host.get("/pynet/v1/ports")] == [18910]
    assert fetch(f"http://{UPLINK_HOST}:18910/", lan.name) == UPLINK_CLIENT


def test_damaged_state_file_removed_by_the_operator_cleans_up(host):
    _fake_docker_firewall(host)
    net = host.create_network(92)
    host.run_container(net, 2)
    statedb.damage(host.daemon.state_dir, net.id, "networks", "garbage")
    restart(host)
    assert host.links() and status(host)["state_problems"]
    # The operator gives the network up: `docker network rm` (pynet answers it as already gone)...
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net.id}) == {}
    assert host.links()  # ...nothing is touched while its records are kept aside
    code, doc = host.call("/pynet/v1/state/forget", {"network": net.id[:12]})  # `pynet state forget`
    assert code == 200 and doc["network"] == net.id, doc
    assert host.call("/pynet/v1/reconcile", {})[0] == 200
    assert host.links() == [] and status(host)["state_problems"] == []
    assert host.nft_elements("bridges") == []
    assert '*"' not in docker_user(host)  # no pynet network left: its accepts go


# ---------------------------------------------------------------- 2. short writes

def test_full_disk_fails_the_call_and_keeps_the_last_good_state(host):
    """A nearly full disk once turned a state file into half a file, saved as success."""
    mnt = tempfile.mkdtemp(prefix=f"pynet-{TAG}-tiny-")
    sh("mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", mnt)
    try:
        host.daemon.kill9()
        host.daemon.state_dir = mnt
        host.daemon.log_path = Path(tempfile.mkdtemp(prefix=f"pynet-{TAG}-log-")) / "daemon.log"
        host.daemon.start()
        lan = host.lan_client()
        net = host.create_network(93)
        web = host.run_container(net, 2)
        web.serve(8000)
        good = statedb.network(mnt, net.id)
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        with open(Path(mnt) / "filler", "wb") as fh:
            fh.write(b"\0" * (free - 8192))  # ~8 KiB left: less than the state with 200 more ports
        maps = [{"Proto": 6, "IP": "", "Port": 8000, "HostIP": "", "HostPort": 19000 + i, "HostPortEnd": 19000 + i}
                for i in range(200)]
        code, doc = pec(host, web, maps)
        assert code != 200 and "free space" in doc["Err"], doc
        assert statedb.network(mnt, net.id) == good  # the last good state, whole
        assert host.nft_elements("pubany4") == [] and host.get("/pynet/v1/ports") == []
        assert fetch(f"http://{UPLINK_HOST}:19000/", lan.name, timeout=1) is None
        restart(host)
        assert net.id in host.networks() and status(host)["state_problems"] == []
        os.unlink(Path(mnt) / "filler")
        code, doc = pec(host, web, maps)
        assert code == 200, doc
        assert fetch(f"http://{UPLINK_HOST}:19199/", lan.name) == UPLINK_CLIENT
    finally:
        host.daemon.kill9()
        shutil.copytree(mnt, mnt + "-copy", dirs_exist_ok=True)  # Host.close removes the state dir
        sh("umount", "-l", mnt, check=False)
        shutil.rmtree(mnt, ignore_errors=True)
        host.daemon.state_dir = mnt + "-copy"


# ---------------------------------------------------------------- 3. --mac-address reuse

def test_mac_reuse_never_evicts_a_live_container_the_plugin_cannot_see(host):
    """Under the managed plugin Docker's netns paths are invisible: a second container given the
    first one's MAC once took its place (veth deleted, ports gone)."""
    lan = host.lan_client()
    net = host.create_network(94)
    mac = "02:00:00:00:94:02"
    first = host.run_container(net, 2, mac=mac, sandbox="/var/run/docker/netns/invisible1")
    first.serve(8000)
    assert pec(host, first, portmap((8000, 18940)))[0] == 200
    before = host.links()
    code, doc = host.call("/NetworkDriver.CreateEndpoint", {
        "NetworkID": net.id, "EndpointID": new_id(), "Interface": {"Address": "10.94.0.3/24", "MacAddress": mac},
        "Options": {}})
    assert code != 200 and "MAC address" in doc["Err"] and "already used" in doc["Err"]
    assert host.links() == before
    assert fetch(f"http://{UPLINK_HOST}:18940/", lan.name) == UPLINK_CLIENT
    # Once its container is gone (namespace deleted, DeleteEndpoint lost), the MAC may be reused.
    first.close()
    host.containers.remove(first)
    until(lambda: f"{host.daemon.env()['PYNET_LINK_PREFIX']}h{first.ep_id[:15 - len(host.daemon.env()['PYNET_LINK_PREFIX']) - 1]}"
          not in host.links(), what="veth gone with the namespace")
    second = host.run_container(net, 3, mac=mac, sandbox="/var/run/docker/netns/invisible2")
    assert second.ping(net.gateway)
    assert host.get("/pynet/v1/ports") == []  # the ghost's port went with it


def test_mac_reuse_on_transparent_never_evicts_a_joined_macvlan(host):
    host.lan_client()  # up0 is the parent
    body = {"NetworkID": new_id(), "Options": {"com.docker.network.generic": {
        "mode": "transparent", "parent": "up0", "host_shim": "false"}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "192.0.2.0/24", "Gateway": "192.0.2.2/24"}]}
    host.ok("/NetworkDriver.CreateNetwork", body)
    from lib import Netns
    ns = Netns("trmac")
    host.others.append(ns)
    mac = "02:00:00:00:95:10"
    ep1 = new_id()
    host.ok("/NetworkDriver.CreateEndpoint", {"NetworkID": body["NetworkID"], "EndpointID": ep1,
                                              "Interface": {"Address": "192.0.2.10/24", "MacAddress": mac},
                                              "Options": {}})
    join = host.ok("/NetworkDriver.Join", {"NetworkID": body["NetworkID"], "EndpointID": ep1,
                                           "SandboxKey": "/var/run/docker/netns/invisible", "Options": {}})
    src = join["InterfaceName"]["SrcName"]
    host.ns.run("ip", "link", "set", src, "netns", ns.name)
    ns.run("ip", "link", "set", src, "up")
    code, doc = host.call("/NetworkDriver.CreateEndpoint", {
        "NetworkID": body["NetworkID"], "EndpointID": new_id(),
        "Interface": {"Address": "192.0.2.11/24", "MacAddress": mac}, "Options": {}})
    assert code != 200 and "already used" in doc["Err"], doc
    assert ns.run("ip", "link", "show", src, check=False).returncode == 0


# ---------------------------------------------------------------- 4. rebuilds racing port changes

def test_reconcile_during_port_changes_never_wipes_a_published_port(host):
    """`POST /pynet/v1/reconcile` (what doctor recommends) rebuilt the table from a snapshot taken
    outside the network locks: a port published meanwhile was listed but gone from nftables."""
    net = host.create_network(95)
    web = host.run_container(net, 2)
    others = [host.run_container(net, 10 + i) for i in range(3)]
    stop = threading.Event()
    errors: list[str] = []

    def reconcile_loop():
        while not stop.is_set():
            code, doc = host.call("/pynet/v1/reconcile", {})
            if code != 200:
                errors.append(f"reconcile: {doc}")

    t = threading.Thread(target=reconcile_loop, daemon=True)
    t.start()
    lost = []
    try:
        for i in range(30):
            # Large batches keep each nft transaction in flight long enough to meet a rebuild.
            lo = 20000 + (i % 2) * 1000
            maps = [{"Proto": 6, "IP": "", "Port": 8000, "HostIP": "", "HostPort": lo, "HostPortEnd": lo + 399}]
            maps = [dict(maps[0], HostPort=lo + k, HostPortEnd=lo + k) for k in range(400)]
            assert pec(host, web, maps)[0] == 200
            other = others[i % 3]
            assert pec(host, other, portmap((8000, 19500 + i)))[0] == 200
            listed = {b["host_port"] for b in host.get("/pynet/v1/ports")}
            in_kernel = {e[0]["concat"][1] for e in host.nft_elements("pubany4")}
            if listed != in_kernel:
                lost.append((i, len(listed), len(in_kernel), sorted(listed ^ in_kernel)[:3]))
    finally:
        stop.set()
        t.join(60)
    assert not errors and not lost, (errors, lost[:5])


# ---------------------------------------------------------------- 8. unbounded lock table

def test_refused_calls_for_unknown_networks_grow_nothing(host):
    host.create_network(96)
    for _ in range(3000):
        body = {"NetworkID": new_id(), "EndpointID": new_id(), "SandboxKey": "", "Options": {},
                "Interface": {"Address": "10.96.0.5/24"}}
        for call in ("CreateEndpoint", "Join", "ProgramExternalConnectivity"):
            code, _doc = host.call(f"/NetworkDriver.{call}", body)
            assert code != 200
        for call in ("Leave", "DeleteEndpoint", "RevokeExternalConnectivity"):
            assert host.call(f"/NetworkDriver.{call}", body)[0] == 200  # already gone: fine
    assert status(host)["locks"] <= 1


# ---------------------------------------------------------------- 10. TIME_WAIT is not "in use"

def test_host_port_in_time_wait_can_be_published(host):
    """A host program served on the port a minute ago (its TIME_WAIT entries remain): -p on it
    was refused with "a host process already uses"."""
    net = host.create_network(97)
    web = host.run_container(net, 2)
    server = ("import socket\n"
              "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "s.bind(('0.0.0.0', 18970)); s.listen(); print('up', flush=True)\n"
              "c, _ = s.accept(); c.close(); s.close()\n")  # the server closes first: TIME_WAIT here
    p = subprocess.Popen(["ip", "netns", "exec", host.ns.name, "python3", "-c", server], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        host.ns.run("python3", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 18970)); "
                                     "s.recv(1); s.close()")
        p.wait(10)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    tw = host.ns.run("ss", "-tanH", "state", "time-wait", "sport", "= :18970").stdout
    assert tw.strip(), "no TIME_WAIT entry was made: the test proves nothing"
    code, doc = pec(host, web, portmap((8000, 18970)))
    assert code == 200, doc
    # A port a process really listens on is still refused.
    listener = subprocess.Popen(["ip", "netns", "exec", host.ns.name, "python3", "-c",
                                 "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 18971)); s.listen(); "
                                 "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "up"
        code, doc = pec(host, web, portmap((8000, 18971)))
        assert code != 200 and "host process" in doc["Err"]
    finally:
        listener.kill()
        listener.wait()
        listener.stdout.close()
