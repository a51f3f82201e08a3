"""pynet across a Docker swarm: three Docker 28 nodes on a namespace LAN (scripts/swarm.sh).

The bed (SWARM_NAME pnt<tag>sw, so the session leak check covers its namespaces):

  [rt] 10.88.0.1 router + registry :5000 ─┐
  [cl] 10.88.0.20 LAN client ─────────────┤ bridge in [sw]
  [n1] lan0 10.88.0.11 manager ───────────┤
  [n2] lan0 10.88.0.12 worker ────────────┤
  [n3] lan0 10.88.0.13 worker ────────────┘

The test image and the pynet managed plugin reach the nodes as users distribute them: pushed to
the bed's registry from node 1, pulled / `docker plugin install`ed on every node, twice: alias
`pynet` (local scope) and alias `pynet-overlay` (PYNET_SCOPE=global), each with its own state dir
per node. Docker's macvlan and overlay are the baselines: the same checks pass with them on the
same bed, so a failure with pynet is pynet's.

LAN networks across a swarm, as with macvlan: a `--config-only` network per node (mode, parent =
the node's LAN interface, the node's own --ip-range) and one `--scope swarm --config-from` network
on the manager. nat across the nodes: mode=overlay on the global-scope alias (VXLAN between the
nodes, each node its tasks' gateway and NAT). No IPVS here: `--endpoint-mode dnsrr`, `--publish
mode=host`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lib import DOCKER, NS_PREFIX, PYNET, sh, wait_for
from pynet.client import call
from test_ports import PAGE

ROOT = Path(__file__).resolve().parents[2]
SWARM = str(ROOT / "scripts/swarm.sh")
NAME = f"{NS_PREFIX}sw"
RUN, VAR = f"/run/{NAME}", f"/var/lib/{NAME}"
NODES = (1, 2, 3)  # three: a plugin upgraded on one node while the other two talk
EACH = {n: 1 for n in NODES}
IMAGE = "10.88.0.1:5000/busybox:latest"
SUBNET, ROUTER = "10.88.0.0/24", "10.88.0.1"
DRIVER = "pynet:latest"  # swarm networks need the tag even on Docker 28 ("could not resolve driver pynet in registry")
OVERLAY = "pynet-overlay"  # the global-scope alias of the same plugin (PYNET_SCOPE=global): mode=overlay
PARENT = "lan0"


def ip_range(node: int) -> str:
    return f"10.88.0.{64 + 32 * (node - 1)}/27"


def in_range(ip: str, node: int) -> bool:
    return 64 + 32 * (node - 1) <= int(ip.rsplit(".", 1)[1]) < 96 + 32 * (node - 1)


class Bed:
    env = dict(os.environ, SWARM_NAME=NAME)

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        p = subprocess.run(["bash", SWARM, *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"swarm.sh {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def docker(self, node: int, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{RUN}/n{node}/docker.sock")
        p = subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and p.returncode != 0:
            raise AssertionError(f"node {node}: docker {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def ns(self, which: str | int) -> str:
        return f"{NAME}-{which if isinstance(which, str) else f'n{which}'}"

    def netns(self, which: str | int, *args: str, check: bool = False, timeout: float = 30):
        return sh("ip", "netns", "exec", self.ns(which), *args, check=check, timeout=timeout)

    def client_fetch(self, ip: str, port: int = 80) -> str:
        p = self.netns("cl", "busybox", "wget", "-qO-", f"http://{ip}:{port}/", timeout=10)
        return p.stdout if p.returncode == 0 else ""

    def client_ping(self, ip: str) -> bool:
        return self.netns("cl", "busybox", "ping", "-c1", "-W2", ip).returncode == 0

    # ---- services

    def tasks(self, svc: str, net: str | None = None) -> list[tuple[int, str, str]]:
        """(node, container id, address on NET) of every running task container of SVC."""
        out = []
        for n in NODES:
            ids = self.docker(n, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={svc}").stdout.split()
            for cid in ids:
                ip = ""
                if net:
                    ip = self.docker(n, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
                                     cid).stdout.strip()
                out.append((n, cid, ip))
        return out

    def converge(self, svc: str, per_node, net: str | None = None, timeout: float = 60):
        """Wait until SVC runs exactly per_node[n] task containers on node n (or until per_node(counts)
        says yes, when it is a function); returns tasks()."""
        def ok():
            t = self.tasks(svc, net)
            counts = {n: sum(1 for x in t if x[0] == n) for n in NODES}
            fits = per_node(counts) if callable(per_node) else counts == {n: per_node.get(n, 0) for n in NODES}
            return t if fits and all(x[2] or not net for x in t) else None
        try:
            return wait_for(ok, timeout=timeout, interval=0.5, what=f"{svc}: tasks {per_node}")
        except AssertionError as e:
            ps = self.docker(1, "service", "ps", "--no-trunc", svc, check=False)
            raise AssertionError(f"{e}\n{ps.stdout}{ps.stderr}\n{self.plugin_logs()}") from None

    def texec(self, node: int, cid: str, script: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.docker(node, "exec", cid, "sh", "-c", script, check=False, timeout=timeout)

    def remove(self, *, services=(), swarm_nets=(), config_nets=()):
        """Best effort, in dependency order; a config-only network can go once no node uses it."""
        for s in services:
            self.docker(1, "service", "rm", s, check=False)
        for s in services:
            wait_for(lambda: not self.tasks(s), timeout=60, interval=0.5, what=f"{s}'s containers gone")
        for n in swarm_nets:
            wait_for(lambda: self.docker(1, "network", "rm", n, check=False).returncode == 0
                     or "not found" in self.docker(1, "network", "inspect", n, check=False).stderr.lower(),
                     timeout=30, interval=0.5, what=f"docker network rm {n}")
        for c in config_nets:
            for node in NODES:
                wait_for(lambda: self.docker(node, "network", "rm", c, check=False).returncode == 0
                         or self.docker(node, "network", "inspect", c, check=False).returncode != 0,
                         timeout=30, interval=0.5, what=f"node {node}: docker network rm {c}")

    def rejoin(self, node: int) -> None:
        """NODE back in the swarm after `docker swarm leave` (its old entry removed on the manager)."""
        name = f"{NAME}-n{node}"
        if self.docker(node, "info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() != "active":
            token = self.docker(1, "swarm", "join-token", "-q", "worker").stdout.strip()
            self.docker(node, "swarm", "join", "--token", token, "--advertise-addr", f"10.88.0.1{node}",
                        "--listen-addr", f"10.88.0.1{node}:2377", "10.88.0.11:2377", timeout=60)
        for line in self.docker(1, "node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Status}}").stdout.splitlines():
            nid, host, status = line.split()
            if host == name and status == "Down":
                self.docker(1, "node", "rm", "--force", nid, check=False)

    # ---- pynet on the nodes

    def plugin_sock(self, node: int, alias: str = "pynet") -> str:
        pid = self.docker(node, "plugin", "inspect", "-f", "{{.Id}}", alias).stdout.strip()
        return f"{RUN}/n{node}/plugins/{pid}/pynet.sock"  # the node's /run/docker/plugins, seen from the host

    def pynet(self, node: int, *args: str, alias: str = "pynet", check: bool = True):
        """The pynet CLI against NODE's plugin ALIAS (Docker names from that node)."""
        env = dict(os.environ, DOCKER_HOST=f"unix://{RUN}/n{node}/docker.sock")
        p = subprocess.run([PYNET, "--socket", self.plugin_sock(node, alias), *args], capture_output=True,
                           text=True, timeout=60, env=env)
        assert not check or p.returncode == 0, f"node {node}: pynet {' '.join(args)} -> {p.returncode}\n" \
                                               f"{p.stdout}{p.stderr}"
        return p

    def pynet_ls(self, node: int, alias: str = "pynet") -> list[dict]:
        return json.loads(self.pynet(node, "ls", "--json", alias=alias).stdout)

    def pynet_left(self, node: int, alias: str = "pynet", prefix: str = "pn-") -> list[str]:
        """What pynet still has on NODE: networks in its state, its links, policy rules, proxy neighbours."""
        left = [f"network {n['id']} ({n.get('endpoints')} endpoints)" for n in self.pynet_ls(node, alias)]
        links = [line.split(":", 2)[1].strip() for line in
                 sh("ip", "-n", self.ns(node), "-o", "link", "show").stdout.splitlines()]
        left += [f"link {name}" for name in links if name.startswith(prefix)]
        rules = sh("ip", "-n", self.ns(node), "rule").stdout
        left += [f"rule {r.strip()}" for r in rules.splitlines() if "iif pn-" in r]
        proxy = sh("ip", "-n", self.ns(node), "neigh", "show", "proxy").stdout
        left += [f"proxy neighbour {p.strip()}" for p in proxy.splitlines() if p.strip()]
        return left

    def plugin_logs(self, lines: int = 25, alias: str = "pynet") -> str:
        out = []
        for n in NODES:
            pid = self.docker(n, "plugin", "inspect", "-f", "{{.Id}}", alias, check=False).stdout.strip()
            try:
                log = Path(f"{VAR}/n{n}/dockerd.log").read_text(errors="replace").splitlines()
            except OSError:
                continue
            mine = [line for line in log if pid and pid in line][-lines:]
            errs = [line for line in log if "level=error" in line and "kernel parameter" not in line][-8:]
            out.append(f"--- node {n} pynet plugin log:\n" + "\n".join(mine) + f"\n--- node {n} dockerd errors:\n"
                       + "\n".join(errs))
        return "\n".join(out)


def build_plugin() -> None:
    """scripts/plugin.sh build, on the system dockerd; other test sessions restart that dockerd now and
    then (tests/e2e/test_restart.py), so a build that could not reach it is tried again once it answers."""
    for attempt in range(3):
        wait_for(lambda: sh(DOCKER, "info", check=False, timeout=30).returncode == 0, timeout=120, interval=1,
                 what="the system dockerd (to build the plugin)")
        p = sh("bash", str(ROOT / "scripts/plugin.sh"), "build", "build/plugin", check=False, timeout=1800)
        if p.returncode == 0:
            return
        if "Cannot connect to the Docker daemon" not in p.stderr or attempt == 2:
            raise AssertionError(f"scripts/plugin.sh build failed:\n{p.stderr}")


@pytest.fixture(scope="module")
def bed(dockerd):
    b = Bed()
    b.run("down", check=False)  # a bed of this name left by a killed run
    fetched = sh("bash", str(ROOT / "scripts/engine.sh"), "fetch", "28", check=False, timeout=900)
    assert fetched.returncode == 0, f"Docker 28 cannot be fetched, so there is no swarm bed:\n{fetched.stderr}"
    t0 = time.monotonic()
    build_plugin()
    built = time.monotonic() - t0
    try:
        t0 = time.monotonic()
        up = b.run("up", str(len(NODES)))
        took_up = time.monotonic() - t0
        t0 = time.monotonic()
        # One plugin in the registry, installed twice on every node as users do: `pynet` (local scope:
        # LAN modes) and `pynet-overlay` (PYNET_SCOPE=global: mode=overlay).
        b.run("push", "pynet", "build/plugin")
        b.run("install", "pynet", "10.88.0.1:5000/pynet:latest", "PYNET_LOG_LEVEL=debug")
        b.run("install", OVERLAY, "10.88.0.1:5000/pynet:latest", "PYNET_SCOPE=global", "PYNET_LOG_LEVEL=debug")
        b.run("plugin-wait", "pynet", OVERLAY)
        took_plugin = time.monotonic() - t0
        print(f"\nplugin build {built:.1f}s; bed up {took_up:.1f}s; plugin push + install (pynet, {OVERLAY}) on "
              f"{len(NODES)} nodes {took_plugin:.1f}s\n{up.stderr}")
        b.up_seconds = took_up
        yield b
    finally:
        t0 = time.monotonic()
        down = b.run("down", check=False)
        print(f"bed down {time.monotonic() - t0:.1f}s: {down.stderr.strip()}")
        assert down.returncode == 0, f"swarm.sh down left something:\n{down.stderr}"


def test_bed(bed):
    """Three Docker 28 nodes in one swarm, up in under a minute; image and plugin came from the registry."""
    assert bed.up_seconds < 60, f"the bed took {bed.up_seconds:.0f}s to come up"
    nodes = bed.docker(1, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.EngineVersion}}").stdout.split("\n")
    nodes = sorted(line.split() for line in nodes if line)
    assert [n[0] for n in nodes] == [f"{NAME}-n{i}" for i in NODES], nodes
    assert all(n[1] == "Ready" and n[2].startswith("28.") for n in nodes), nodes
    for n in NODES:
        for alias in ("pynet", OVERLAY):
            ref = bed.docker(n, "plugin", "inspect", "-f", "{{.PluginReference}} {{.Enabled}}", alias).stdout.split()
            assert ref == ["10.88.0.1:5000/pynet:latest", "true"], ref
            mounts = bed.docker(n, "plugin", "inspect", "-f", "{{json .Settings.Mounts}}", alias).stdout
            assert f"{VAR}/n{n}/state-{alias}" in mounts, mounts
        assert bed.docker(n, "image", "inspect", IMAGE, check=False).returncode == 0


def check_cross_node(bed, tasks, dns_name: str | None = None, via_lan: bool = True, port: int = 80, nodes=NODES):
    """Every task pings and fetches every task on the other nodes; the LAN client reaches each task;
    DNS_NAME (tasks.<svc>) resolves to every task's address."""
    assert {t[0] for t in tasks} == set(nodes), tasks
    for n, cid, ip in tasks:
        for m, _, other in tasks:
            if m == n:
                continue
            assert bed.texec(n, cid, f"ping -c1 -W2 {other}").returncode == 0, \
                f"node {n} task {ip} cannot ping node {m} task {other}\n{bed.plugin_logs()}"
            got = bed.texec(n, cid, f"timeout 5 wget -qO- http://{other}/").stdout
            assert PAGE in got, f"node {n} task {ip}: no page from node {m} task {other} over TCP"
        if via_lan:
            assert bed.client_ping(ip), f"LAN client cannot ping the task on node {n} at {ip}"
            assert PAGE in bed.client_fetch(ip, port), f"LAN client: no page from the task on node {n} at {ip}"
    if dns_name:
        want = sorted(t[2] for t in tasks)
        for n, cid, _ in tasks:
            out = bed.texec(n, cid, f"nslookup {dns_name} 127.0.0.11").stdout
            got = sorted(line.split()[-1] for line in out.splitlines()[2:] if line.startswith("Address"))
            assert got == want, f"node {n}: {dns_name} -> {got}, want {want}\n{out}"


def service(bed, name: str, net: str, *extra: str) -> None:
    bed.docker(1, "service", "create", "-d", "--name", name, "--network", net, "--endpoint-mode", "dnsrr",
               "--no-resolve-image", "--stop-grace-period", "1s", *extra, IMAGE, "httpd", "-f", "-p", "80")


def config_only(bed, name: str, *opts: str) -> None:
    for n in NODES:
        bed.docker(n, "network", "create", "--config-only", "--subnet", SUBNET, "--gateway", ROUTER,
                   "--ip-range", ip_range(n), *opts, name)


def test_macvlan_baseline(bed):
    """Docker's own macvlan, swarm-wide through --config-only/--config-from: what pynet must match."""
    cfg, net, svc = "mvcfg", "mvnet", "mvsvc"
    try:
        config_only(bed, cfg, "-o", f"parent={PARENT}")
        bed.docker(1, "network", "create", "-d", "macvlan", "--scope", "swarm", "--config-from", cfg, net)
        service(bed, svc, net, "--mode", "global")
        tasks = bed.converge(svc, EACH, net)
        assert all(in_range(ip, n) for n, _, ip in tasks), tasks
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}")
    finally:
        bed.remove(services=[svc], swarm_nets=[net], config_nets=[cfg])


def test_overlay_baseline(bed):
    """Docker's overlay (VXLAN between the nodes), ports published per node (no routing mesh here)."""
    net, svc = "ovnet", "ovsvc"
    try:
        bed.docker(1, "network", "create", "-d", "overlay", "--subnet", "10.89.0.0/24", net)
        service(bed, svc, net, "--mode", "global", "--publish", "mode=host,target=80,published=8080")
        tasks = bed.converge(svc, EACH, net)
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}", via_lan=False)
        for n in NODES:
            assert PAGE in bed.client_fetch(f"10.88.0.1{n}", 8080), f"LAN client: no page from node {n}:8080"
    finally:
        bed.remove(services=[svc], swarm_nets=[net])


@pytest.mark.parametrize("mode", ["l2bridge", "transparent"])
def test_pynet_lan_mode_across_nodes(bed, mode):
    """A replicated service on a pynet LAN network spanning the swarm: tasks on every node reach each
    other (ping, TCP) and the LAN client reaches each; scale up and down, drain a node and remove
    everything: nothing of pynet is left on any node."""
    n = len(NODES)
    cfg, net, svc = f"{mode[:2]}cfg", f"{mode[:2]}net", f"{mode[:2]}svc"
    try:
        config_only(bed, cfg, "-o", f"mode={mode}", "-o", f"parent={PARENT}")
        p = bed.docker(1, "network", "create", "-d", DRIVER, "--scope", "swarm", "--config-from", cfg, net, check=False)
        assert p.returncode == 0, p.stderr
        service(bed, svc, net, "--replicas", str(n), "--replicas-max-per-node", "1")
        tasks = bed.converge(svc, EACH, net)
        assert all(in_range(ip, node) for node, _, ip in tasks), f"addresses outside each node's --ip-range: {tasks}"
        check_cross_node(bed, tasks)

        # Scale up: two tasks per node, all reachable from the LAN and from the other node.
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "2", "--replicas", str(2 * n), svc)
        tasks = bed.converge(svc, {node: 2 for node in NODES}, net)
        assert len({ip for _, _, ip in tasks}) == 2 * n, tasks
        check_cross_node(bed, tasks)
        for node in NODES:
            assert [e["endpoints"] for e in bed.pynet_ls(node)] == [2], bed.pynet_ls(node)

        # Scale down to one task on each node: the others' endpoints are gone from pynet.
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "1", "--replicas", str(n), svc)
        tasks = bed.converge(svc, EACH, net)
        for node in NODES:
            wait_for(lambda: [e["endpoints"] for e in bed.pynet_ls(node)] == [1], timeout=20,
                     what=f"node {node}: pynet has 1 endpoint after the scale-down")
        check_cross_node(bed, tasks)

        # Drain node 2: its task moves to another node; node 2 keeps nothing (Docker deletes the
        # network on a node with no task on it).
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "2", svc)
        bed.docker(1, "node", "update", "--availability", "drain", f"{NAME}-n2")
        tasks = bed.converge(svc, lambda c: c[2] == 0 and sum(c.values()) == n, net)
        wait_for(lambda: empty(bed.pynet_left(2)), timeout=30, what="node 2 drained: nothing of pynet left")
        for _, cid, ip in tasks:
            assert bed.client_ping(ip) and PAGE in bed.client_fetch(ip)
        bed.docker(1, "node", "update", "--availability", "active", f"{NAME}-n2")
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "1", "--force", svc)
        tasks = bed.converge(svc, EACH, net)
        check_cross_node(bed, tasks)
    finally:
        bed.docker(1, "node", "update", "--availability", "active", f"{NAME}-n2", check=False)
        bed.remove(services=[svc], swarm_nets=[net], config_nets=[cfg])
    for node in NODES:
        wait_for(lambda: empty(bed.pynet_left(node)), timeout=30, what=f"node {node}: nothing of pynet left")


def test_pynet_service_discovery_across_nodes(bed):
    """Swarm DNS (`tasks.<svc>`, `<svc>`) answers with every node's tasks, as with macvlan. Docker gives
    it only to drivers whose GetCapabilities says ConnectivityScope "global" (research/swarm-global.md);
    pynet makes that a plugin setting, PYNET_CONNECTIVITY_SCOPE (default local), set on every node."""
    cfg, net, svc = "sdcfg", "sdnet", "sdsvc"

    def set_scope(value: str, check: bool = True) -> None:
        for n in NODES:
            bed.docker(n, "plugin", "disable", "pynet", check=check)
            try:
                bed.docker(n, "plugin", "set", "pynet", f"PYNET_CONNECTIVITY_SCOPE={value}", check=check)
            finally:
                bed.docker(n, "plugin", "enable", "pynet", check=check)

    set_scope("global")
    try:
        config_only(bed, cfg, "-o", "mode=l2bridge", "-o", f"parent={PARENT}")
        bed.docker(1, "network", "create", "-d", DRIVER, "--scope", "swarm", "--config-from", cfg, net)
        service(bed, svc, net, "--replicas", str(len(NODES)), "--replicas-max-per-node", "1")
        tasks = bed.converge(svc, EACH, net)
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}")
        check_cross_node(bed, tasks, dns_name=svc, via_lan=False)  # dnsrr: the name gives every task
    finally:
        bed.remove(services=[svc], swarm_nets=[net], config_nets=[cfg])
        set_scope("local", check=False)


# ---------------------------------------------------------------- mode=overlay (the global-scope alias)

OV_DRIVER = f"{OVERLAY}:latest"
OV_SUBNET, OV_GW = "10.90.0.0/24", "10.90.0.1"
PEER_SERVER = str(ROOT / "tests/peer_server.py")
REGISTRY = "10.88.0.1:5000"


def overlay_network(bed, name: str, *opts: str) -> None:
    p = bed.docker(1, "network", "create", "-d", OV_DRIVER, "--scope", "swarm", "--attachable", "--subnet", OV_SUBNET,
                   *opts, name, check=False)
    assert p.returncode == 0, p.stderr


def empty(left: list) -> bool:
    """For wait_for: True when nothing is left; otherwise what is left becomes the timeout's message."""
    if left:
        raise AssertionError(f"left: {left}")
    return True


def overlay_left(bed, node: int, allocations: bool = True) -> list[str]:
    """What the global-scope pynet still has on NODE: networks in its state (and their files), po-*
    links (bridges, vxlan ports, veths), elements in its nft sets, its DOCKER-USER accepts, and on
    the manager the allocations of swarm networks (unless not ALLOCATIONS: a network that still
    exists in the swarm keeps its allocation on the manager, tasks there or not)."""
    left = bed.pynet_left(node, OVERLAY, "po-")
    for family in ("inet", "bridge"):
        out = bed.netns(node, "nft", "-j", "list", "table", family, "pynet_global").stdout or "{}"
        for item in json.loads(out).get("nftables", []):
            if "set" in item and item["set"].get("elem"):
                left.append(f"nft {family} set {item['set']['name']}: {item['set']['elem']}")
            if "map" in item and item["map"].get("elem"):
                left.append(f"nft {family} map {item['map']['name']}: {item['map']['elem']}")
    chain = bed.netns(node, "nft", "list", "chain", "ip", "filter", "DOCKER-USER").stdout
    if '"po-*"' in chain:
        left.append("DOCKER-USER accepts po-*")
    files = list(Path(f"{VAR}/n{node}/state-{OVERLAY}/global/networks").glob("*.json"))
    left += [f"state file {f.name}" for f in files]
    if allocations:
        left += [f"allocation of {net_id}" for net_id in overlay_status(bed, node)["cluster"]["allocations"]]
    return left


def overlay_status(bed, node: int) -> dict:
    return call(bed.plugin_sock(node, OVERLAY), "GET", "/pynet/v1/status")


def peer_server(bed, port: int = 7000, seconds: int = 120) -> subprocess.Popen:
    """On the LAN router: answers each TCP request with the client's address as the router sees it."""
    proc = subprocess.Popen(["ip", "netns", "exec", bed.ns("rt"), "python3", PEER_SERVER, str(port), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "listening"
    return proc


def check_overlay(bed, tasks, svc: str) -> None:
    """Tasks on different nodes reach each other over the overlay (ping, TCP, a full-MTU packet),
    resolve tasks.<svc> to all, and reach the LAN through their own node's NAT."""
    check_cross_node(bed, tasks, dns_name=f"tasks.{svc}", via_lan=False)
    for n, cid, ip in tasks:
        assert bed.texec(n, cid, "cat /sys/class/net/eth0/mtu").stdout.strip() == "1450", "MTU: VXLAN takes 50"
        other = next(o for m, _, o in tasks if m != n)
        assert bed.texec(n, cid, f"ping -c1 -W2 -s 1422 {other}").returncode == 0, \
            f"node {n}: a 1450-byte packet does not cross to {other}"
        seen = bed.texec(n, cid, f"timeout 5 wget -qO- http://{ROUTER}:7000/").stdout.strip()
        assert seen == f"10.88.0.1{n}", f"node {n}'s task reaches the LAN router as {seen!r}, not as its node"


def test_pynet_overlay_across_nodes(bed):
    """mode=overlay on the global-scope alias, as a user types it: `docker network create -d
    pynet-overlay:latest --scope swarm` on the manager, a global service with a host-mode port.
    Tasks on different nodes ping and TCP each other over VXLAN, tasks.<svc> resolves all of them,
    each reaches the LAN through its own node's NAT (the router sees the node's address), and the
    published port answers on every node from the LAN client. Then a replicated service scales up
    and down on the same network, and removing it all leaves nothing on any node."""
    net, svc, rsvc = "pov", "povsvc", "povrep"
    server = peer_server(bed)
    try:
        overlay_network(bed, net)
        service(bed, svc, net, "--mode", "global", "--publish", "mode=host,target=80,published=8080")
        tasks = bed.converge(svc, EACH, net)
        check_overlay(bed, tasks, svc)
        for n in NODES:
            assert PAGE in bed.client_fetch(f"10.88.0.1{n}", 8080), f"LAN client: no page from node {n}:8080"
        segments = {(x["vni"], x["subnets"][0], x["gateways"][0]) for n in NODES for x in bed.pynet_ls(n, OVERLAY)}
        assert len(segments) == 1, f"one VXLAN segment, one gateway everywhere: {segments}"

        # A replicated service beside it: two tasks per node, then one task in all; a node whose last
        # task goes keeps nothing of the network (Docker deletes it there).
        service(bed, rsvc, net, "--replicas", str(2 * len(NODES)), "--replicas-max-per-node", "2")
        rtasks = bed.converge(rsvc, {n: 2 for n in NODES}, net)
        check_cross_node(bed, rtasks, dns_name=f"tasks.{rsvc}", via_lan=False)
        bed.docker(1, "service", "rm", svc)
        bed.docker(1, "service", "update", "-d", "--replicas", "1", rsvc)
        (node, cid, ip), = bed.converge(rsvc, lambda c: sum(c.values()) == 1, net)
        for n in NODES:
            if n != node:
                wait_for(lambda: empty(overlay_left(bed, n, allocations=False)), timeout=30, interval=1,
                         what=f"node {n} without tasks: nothing of the overlay left")
        assert bed.texec(node, cid, f"ping -c1 -W2 {ROUTER}").returncode == 0
    finally:
        server.kill()
        server.communicate()
        bed.remove(services=[svc, rsvc], swarm_nets=[net])
    for n in NODES:
        wait_for(lambda: empty(overlay_left(bed, n)), timeout=30, interval=1, what=f"node {n}: nothing of pynet left")


def test_pynet_overlay_refusals(bed):
    """What cannot be done says so: the local alias refuses mode=overlay at create; the global alias
    refuses LAN modes in AllocateNetwork, which Docker shows to nobody (the create "succeeds"), so
    `pynet ls` and `pynet doctor` on the manager show it; and the engine itself rejects the tasks of
    a global-scope driver's --config-from network."""
    p = bed.docker(1, "network", "create", "-d", DRIVER, "-o", "mode=overlay", "povlocal", check=False)
    assert p.returncode != 0 and "mode=overlay needs the global-scope pynet plugin" in p.stderr, p.stderr
    p = bed.docker(1, "network", "create", "-d", OV_DRIVER, "--scope", "local", "povscope", check=False)
    assert p.returncode != 0 and f"cannot downgrade network scope for {OV_DRIVER} networks" in p.stderr, p.stderr
    cfg, bad, svc = "povcfg", "povbad", "povcfgsvc"
    try:
        bed.docker(1, "network", "create", "-d", OV_DRIVER, "-o", "mode=l2bridge", "-o", "parent=lan0", bad)
        ls = wait_for(lambda: (lambda p: p if "REFUSED" in p.stderr else None)(bed.pynet(1, "ls", alias=OVERLAY)),
                      timeout=30, interval=1, what="pynet ls on the manager shows the refusal")
        assert "mode=l2bridge is for the local-scope pynet plugin" in ls.stderr and bad in ls.stderr, ls.stderr
        doctor = bed.pynet(1, "doctor", alias=OVERLAY, check=False)
        assert doctor.returncode == 1 and "[FAIL] swarm allocation" in doctor.stdout, doctor.stdout
        config_only(bed, cfg, "-o", "mode=l2bridge", "-o", f"parent={PARENT}")
        bed.docker(1, "network", "create", "-d", OV_DRIVER, "--scope", "swarm", "--config-from", cfg, "povfrom")
        service(bed, svc, "povfrom", "--replicas", "1")
        want = "user specified configurations are not supported if the network depends on a configuration network"
        wait_for(lambda: want in bed.docker(1, "service", "ps", "--no-trunc", svc).stdout, timeout=30, interval=1,
                 what=f"the engine's own error for a global driver's --config-from network: {want}")
    finally:
        bed.remove(services=[svc], swarm_nets=[bad, "povfrom"], config_nets=[cfg])
    # Docker sends no FreeNetwork for a network it never allocated: the CLI asks Docker what still exists.
    assert "REFUSED" not in bed.pynet(1, "ls", alias=OVERLAY).stderr


def plugin_v2() -> Path:
    """build/plugin with one file more: a new version's content (Docker 28's `plugin create` of a
    rootfs whose blob is already in the node's content store fails: "content sha256:...: already
    exists")."""
    out = ROOT / "build/plugin-v2"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(ROOT / "build/plugin/rootfs"), str(out / "rootfs")], check=True)
    (out / "rootfs/etc/pynet-plugin-version").write_text("v2\n")  # a new file: the hard links stay untouched
    shutil.copy(ROOT / "build/plugin/config.json", out / "config.json")
    return out


def ping_stats(out: str) -> tuple[int, int]:
    """(transmitted, received) from busybox ping's summary."""
    for line in out.splitlines():
        if "packets transmitted" in line:
            parts = line.split()
            return int(parts[0]), int(parts[3])
    raise AssertionError(f"no ping summary in {out!r}")


def test_pynet_overlay_plugin_upgrade_one_node(bed):
    """The plugin upgraded on one node (disable, `docker plugin upgrade`, enable) while tasks on the
    other nodes talk over the overlay: not one packet between them is lost (nor to the upgraded
    node's task: the kernel keeps forwarding while pynet is away); afterwards the upgraded node's
    pynet has its network back from state, every task reaches every other, and new tasks on the
    upgraded node work."""
    net, svc = "poup", "poupsvc"
    ref = f"{REGISTRY}/pynet:latest"  # a new version pushed under the same name, as users publish one
    try:
        overlay_network(bed, net)
        service(bed, svc, net, "--mode", "global")
        tasks = bed.converge(svc, EACH, net)
        by_node = {n: (cid, ip) for n, cid, ip in tasks}
        t0 = time.monotonic()
        bed.docker(1, "plugin", "create", ref, str(plugin_v2()))
        bed.docker(1, "plugin", "push", ref, timeout=300)
        bed.docker(1, "plugin", "rm", ref)
        pushed = time.monotonic() - t0
        # 5 pings a second from node 1's task to node 2's and node 3's, for 40 s.
        pings = {m: subprocess.Popen(["/usr/bin/docker", "exec", by_node[1][0], "ping", "-q", "-i", "0.2", "-w", "40",
                                      by_node[m][1]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, DOCKER_HOST=f"unix://{RUN}/n1/docker.sock"))
                 for m in (2, 3)}
        time.sleep(2)
        t0 = time.monotonic()
        bed.docker(3, "plugin", "disable", "-f", OVERLAY)
        bed.docker(3, "plugin", "upgrade", "--grant-all-permissions", OVERLAY, timeout=300)
        # Docker 28 keeps a `plugin set` mount source in the plugin's config, which the upgrade
        # replaces: state.source is back at config.json's /var/lib/pynet. Set it again (README).
        src = f"{VAR}/n3/state-{OVERLAY}"
        reset = src not in bed.docker(3, "plugin", "inspect", "-f", "{{json .Config.Mounts}}", OVERLAY).stdout
        bed.docker(3, "plugin", "set", OVERLAY, f"state.source={src}")
        bed.docker(3, "plugin", "enable", OVERLAY)
        upgraded = time.monotonic() - t0
        results = {m: ping_stats(p.communicate(timeout=90)[0]) for m, p in pings.items()}
        print(f"\nplugin v2 pushed in {pushed:.1f}s; node 3 disable/upgrade/enable {upgraded:.1f}s (the upgrade "
              f"reset state.source: {reset}); pings node 1 -> node 2, node 3 during it (sent, received): {results}")
        assert upgraded < 36, f"the upgrade took {upgraded:.0f}s: longer than the pings covered"
        assert results[2][0] >= 150 and results[2][1] == results[2][0], f"node 1 <-> node 2 lost packets: {results}"
        assert results[3][1] == results[3][0], f"node 1 <-> node 3 (upgraded) lost packets: {results}"
        pid, enabled = bed.docker(3, "plugin", "inspect", "-f", "{{.Id}} {{.Enabled}}", OVERLAY).stdout.split()
        assert enabled == "true" and Path(f"{VAR}/n3/data/plugins/{pid}/rootfs/etc/pynet-plugin-version").exists(), \
            "node 3 runs the new version"
        assert [x["endpoints"] for x in bed.pynet_ls(3, OVERLAY)] == [1], "node 3's network back from state"
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}", via_lan=False)
        # New tasks everywhere, node 3's made by the upgraded plugin.
        bed.docker(1, "service", "update", "-d", "--force", svc)
        fresh = bed.converge(svc, lambda c: c == EACH and {t[1] for t in bed.tasks(svc)}.isdisjoint(
            {cid for _, cid, _ in tasks}), net, timeout=90)
        check_cross_node(bed, fresh, dns_name=f"tasks.{svc}", via_lan=False)
    finally:
        shutil.rmtree(ROOT / "build/plugin-v2", ignore_errors=True)
        bed.remove(services=[svc], swarm_nets=[net])
    for n in NODES:
        wait_for(lambda: empty(overlay_left(bed, n)), timeout=30, interval=1, what=f"node {n}: nothing of pynet left")


def test_swarm_leave_leaves_nothing(bed):
    """`docker swarm leave` of a worker: Docker stops its tasks and drops the swarm networks there;
    nothing of either pynet alias is left on it, and the other nodes' tasks keep working. (Last in
    this module: node 3 joins again afterwards.)"""
    net, svc = "polv", "polvsvc"
    try:
        overlay_network(bed, net)
        service(bed, svc, net, "--mode", "global")
        bed.converge(svc, EACH, net)
        assert overlay_left(bed, 3), "node 3 has the network before it leaves"
        bed.docker(3, "swarm", "leave", timeout=120)
        wait_for(lambda: empty(overlay_left(bed, 3) + bed.pynet_left(3)), timeout=60, interval=1,
                 what="node 3 left the swarm: nothing of pynet (either alias) left on it")
        left = [line for line in sh("ip", "-n", bed.ns(3), "-d", "link", "show").stdout.splitlines() if "vxlan" in line]
        assert not left, left
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}", via_lan=False, nodes=(1, 2))
    finally:
        bed.remove(services=[svc], swarm_nets=[net])
        bed.rejoin(3)
    for n in NODES:
        wait_for(lambda: empty(overlay_left(bed, n)), timeout=30, interval=1, what=f"node {n}: nothing of pynet left")
