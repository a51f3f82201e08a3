"""Containers started and removed in parallel with a real dockerd, and per-network locking.

dockerd starts containers in parallel (compose, swarm-less orchestrators, restarts at boot):
pynet's calls then arrive together. Checked here: every start succeeds, no IPv4 address is
handed out twice, every published port answers, nothing deadlocks (a generous deadline per
phase is a hang detector, not a performance assertion), and after parallel removal pynet holds
no endpoint and no published port.

Quick profile: 2 rounds of 20 containers on one network and 2 rounds of 20 over 4 networks.
PYNET_SLOW=1: more rounds. Busybox `httpd -f -p 80` serves the test page (tests/testing.md).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from conftest import IMAGE
from lib import DOCKER, NS_PREFIX, PYNET, TAG, docker, links_with_prefix, sh, wait_for

SLOW = os.environ.get("PYNET_SLOW") == "1"
ROUNDS = 6 if SLOW else 2
PER_ROUND = 20
HANG = 240  # seconds a whole phase (20 docker runs, or 20 removals) may take before we call it a hang
PAGE = "pynet test page"
STATS = {"parallel_starts": 0, "published_ports_checked": 0}


def parallel(fn, items, what: str, daemon) -> list:
    """fn over items in as many threads; fail as a hang if any call is still running after HANG s."""
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, x) for x in items]
        done, pending = wait(futures, timeout=HANG)
        if pending:
            status = daemon.call("/pynet/v1/status", method="GET", timeout=5)
            pytest.fail(f"hang: {len(pending)} of {len(items)} {what} still running after {HANG} s; "
                        f"pynet status {status}\n{daemon.log()}")
        return [f.result() for f in futures]


def start(name: str, net: str, publish: str) -> tuple[str, int, str]:
    p = sh(DOCKER, "run", "-d", "--name", name, "--label", f"pynet-test={TAG}", "--net", net, "-p", publish,
           IMAGE, "httpd", "-f", "-p", "80", check=False, timeout=HANG)
    return name, p.returncode, p.stderr.strip()


def remove(name: str) -> tuple[str, int, str]:
    p = sh(DOCKER, "rm", "-f", name, check=False, timeout=HANG)
    return name, p.returncode, p.stderr.strip()


def network_id(name: str) -> str:
    return docker("network", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def attachments(names: list[str]) -> dict[str, tuple[str, str, str]]:
    """container -> (network name, IPv4 address, endpoint ID), from docker inspect."""
    out = {}
    for doc in json.loads(docker("inspect", *names).stdout):
        (net, info), = doc["NetworkSettings"]["Networks"].items()
        out[doc["Name"].lstrip("/")] = (net, info["IPAddress"], info["EndpointID"])
    return out


def published(daemon) -> list[dict]:
    """`pynet ports --json` against the test daemon: every binding with its network and endpoint."""
    return json.loads(sh(PYNET, "--socket", daemon.socket, "ports", "--json").stdout)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def pynet_networks(daemon) -> dict[str, dict]:
    status, doc = daemon.call("/pynet/v1/networks", method="GET")
    assert status == 200, doc
    return {n["id"]: n for n in doc}


def run_rounds(daemon, ctrs, nets_: list[str], publish: str, label: str) -> list[float]:
    """ROUNDS x (PER_ROUND parallel starts spread over nets_, checks, parallel removal, checks)."""
    ids = {n: network_id(n) for n in nets_}
    times = []
    for rnd in range(ROUNDS):
        names = [f"{NS_PREFIX}-{label}{rnd}-{i:02d}" for i in range(PER_ROUND)]
        ctrs.made += names  # the fixture removes them whatever happens
        t0 = time.monotonic()
        results = parallel(lambda i: start(names[i], nets_[i % len(nets_)], publish), range(PER_ROUND),
                           "docker run -d", daemon)
        t_start = time.monotonic() - t0
        STATS["parallel_starts"] += PER_ROUND
        failed = [r for r in results if r[1] != 0]
        assert not failed, f"round {rnd}: {len(failed)} of {PER_ROUND} starts failed: {failed[:3]}\n{daemon.log()}"

        att = attachments(names)
        ips = [ip for _net, ip, _ep in att.values()]
        assert all(ips) and len(set(ips)) == len(ips), f"duplicate or missing IPv4 addresses: {sorted(ips)}"
        for n in nets_:  # pynet agrees with Docker: one endpoint per container, on the right network
            got = pynet_networks(daemon)[ids[n]]["endpoints"]
            assert got == sum(1 for a in att.values() if a[0] == n), (n, got)

        binds = published(daemon)
        by_ep = {}
        for b in binds:
            if b["container_port"] == 80 and b["proto"] == "tcp" and b["family"] == 4:
                by_ep.setdefault(b["endpoint"], []).append(b)
        host_ports = []
        for name, (net, ip, ep) in att.items():
            mine = by_ep.get(ep, [])
            assert len(mine) == 1 and mine[0]["network"] == ids[net] and mine[0]["container_ip"] == ip, \
                (name, mine)
            host_ports.append(mine[0]["host_port"])
        assert len(set(host_ports)) == len(host_ports), f"a host port given twice: {sorted(host_ports)}"
        for port in host_ports:  # httpd may need a moment after `docker run -d` returns
            page = wait_for(lambda: PAGE in get(f"http://127.0.0.1:{port}/"), timeout=20,
                            what=f"page on 127.0.0.1:{port}")
            assert page
            STATS["published_ports_checked"] += 1

        t0 = time.monotonic()
        results = parallel(remove, names, "docker rm -f", daemon)
        t_rm = time.monotonic() - t0
        assert all(r[1] == 0 for r in results), [r for r in results if r[1] != 0]
        for x in names:
            ctrs.made.remove(x)
        left = {n: pynet_networks(daemon)[ids[n]]["endpoints"] for n in nets_}
        assert all(v == 0 for v in left.values()), f"endpoints left after parallel removal: {left}"
        for n in nets_:
            status, doc = daemon.call(f"/pynet/v1/ports?network={ids[n]}", method="GET")
            assert status == 200 and doc == [], f"ports left on {n}: {doc}"
        times.append((t_start, t_rm))
        print(f"{label} round {rnd}: {PER_ROUND} parallel starts in {t_start:.1f} s, removals in {t_rm:.1f} s")
    return times


def test_parallel_starts_on_one_network(nets, ctrs, daemon):
    net = nets.create("par1", "--subnet", "10.237.0.0/24")
    run_rounds(daemon, ctrs, [net], "80", "p1-")
    print(f"total so far: {STATS}")


def test_parallel_starts_across_four_networks(nets, ctrs, daemon, capsys):
    names = [nets.create(f"par4{k}", "--subnet", f"10.237.{1 + k}.0/24") for k in range(4)]
    run_rounds(daemon, ctrs, names, "127.0.0.1::80", "p4-")
    print(f"total so far: {STATS}")
    with capsys.disabled():  # visible without -rP / -s too
        print(f"\nconcurrency: {STATS['parallel_starts']} parallel container starts, "
              f"{STATS['published_ports_checked']} published ports fetched")


# --------------------------------------------------------------------------- locks per network
def _veth_pair(name: str) -> None:
    sh("ip", "link", "del", name, check=False)
    sh("ip", "link", "add", name, "type", "veth", "peer", "name", name[:-1] + "y")
    sh("ip", "link", "set", name, "up")
    sh("ip", "link", "set", name[:-1] + "y", "up")


def test_a_busy_network_does_not_hold_up_other_networks(nets, ctrs, daemon):
    """Network A is busy with a naturally slow call: pynet's IPAM asking a DHCP server that never
    answers (3 tries x 2 s per request). Meanwhile every call for network B, a real `docker run` on
    network C, and even another call for A complete: the exchange holds no lock."""
    parent = f"pnt{TAG}dx"  # a veth in the host namespace, no DHCP server behind it
    a_id, b_id = secrets.token_hex(32), secrets.token_hex(32)
    _veth_pair(parent)
    c = nets.create("lockc", "--subnet", "10.237.9.0/24")
    try:
        daemon.ok("/NetworkDriver.CreateNetwork", {
            "NetworkID": a_id, "Options": {"com.docker.network.generic": {
                "mode": "transparent", "parent": parent, "host_shim": "false"}},
            "IPv4Data": [{"AddressSpace": "pynet-dhcp", "Pool": "198.18.77.0/24", "Gateway": "198.18.77.1/24"}],
            "IPv6Data": []})
        daemon.ok("/NetworkDriver.CreateNetwork", {
            "NetworkID": b_id, "Options": {}, "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.237.8.0/24",
                                                            "Gateway": "10.237.8.1/24"}], "IPv6Data": []})
        marks: dict[str, float] = {}
        answers: dict[str, tuple] = {}

        def dhcp(mac: str):
            answers[mac] = daemon.call("/IpamDriver.RequestAddress", {
                "PoolID": "pynet-dhcp/198.18.77.0/24", "Address": "",
                "Options": {"com.docker.network.endpoint.macaddress": mac}}, timeout=60)
            marks[mac] = time.monotonic()

        def a_endpoint():
            answers["a-ep"] = daemon.call("/NetworkDriver.CreateEndpoint", {
                "NetworkID": a_id, "EndpointID": "a" * 64,
                "Interface": {"Address": "198.18.77.10/24", "MacAddress": "02:42:c6:12:4d:0a"}, "Options": {}},
                timeout=60)
            marks["a-ep"] = time.monotonic()

        t0 = time.monotonic()
        holders = [threading.Thread(target=dhcp, args=(f"02:42:c6:12:4d:{i:02x}",)) for i in (1, 2)]
        for t in holders:
            t.start()
        time.sleep(0.5)
        waiter = threading.Thread(target=a_endpoint)
        waiter.start()
        time.sleep(0.2)

        # Network B, through the protocol: a container's whole life, each call well under the hold.
        ep = secrets.token_hex(32)
        ids = {"NetworkID": b_id, "EndpointID": ep}
        slowest = 0.0
        for path, body in (
            ("/NetworkDriver.CreateEndpoint", dict(ids, Interface={"Address": "10.237.8.2/24"}, Options={})),
            ("/NetworkDriver.Join", dict(ids, SandboxKey="", Options={})),
            ("/NetworkDriver.ProgramExternalConnectivity", dict(ids, Options={"com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "127.0.0.1", "HostPort": 0, "HostPortEnd": 0}]})),
            ("/NetworkDriver.EndpointOperInfo", ids),
            ("/NetworkDriver.RevokeExternalConnectivity", ids),
            ("/NetworkDriver.Leave", ids),
            ("/NetworkDriver.DeleteEndpoint", ids),
        ):
            t = time.monotonic()
            daemon.ok(path, body)
            slowest = max(slowest, time.monotonic() - t)
        b_done = time.monotonic() - t0
        # Network C, through dockerd: a whole `docker run` (CreateEndpoint, Join, ports, Leave, Delete).
        ctrs.run("lockrun", "--net", c, "-p", "80", IMAGE, "true", timeout=60)
        c_done = time.monotonic() - t0
        still_held = any(t.is_alive() for t in holders)

        for t in holders + [waiter]:
            t.join(60)
        assert not any(t.is_alive() for t in holders + [waiter]), "hang: calls for network A never returned"
        hold = max(marks[m] for m in marks if m != "a-ep") - t0
        print(f"network A held {hold:.1f} s by 2 DHCP requests; network B's 7 calls done at {b_done:.2f} s "
              f"(slowest {slowest * 1000:.0f} ms); docker run on C done at {c_done:.1f} s; "
              f"A's CreateEndpoint answered at {marks['a-ep'] - t0:.1f} s")
        for mac in ("02:42:c6:12:4d:01", "02:42:c6:12:4d:02"):
            status, doc = answers[mac]
            assert status != 200 and "no DHCP server answered" in doc["Err"], answers[mac]
        assert hold > 5, f"the DHCP requests did not wait out their server ({hold:.1f} s)"
        # The exchanges run outside network A's lock: even A's own CreateEndpoint is not held up.
        assert marks["a-ep"] - t0 < hold, "network A's other calls waited for its DHCP requests"
        assert slowest < 2 and b_done < hold, "calls for network B waited for network A"
        assert still_held, f"docker run on network C ({c_done:.1f} s) only finished after network A was free " \
                           f"({hold:.1f} s)"
        assert answers["a-ep"][0] == 200, answers["a-ep"]
    finally:
        for nid in (a_id, b_id):
            daemon.call("/NetworkDriver.DeleteNetwork", {"NetworkID": nid})
        sh("ip", "link", "del", parent, check=False)
    assert not [n for n in links_with_prefix() if a_id[:8] in n or b_id[:8] in n or "aaaaaaaa" in n]
