"""pynet across a Docker swarm: two Docker 28 nodes on a namespace LAN (scripts/swarm.sh).

The bed (SWARM_NAME pnt<tag>sw, so the session leak check covers its namespaces):

  [rt] 10.88.0.1 router + registry :5000 ─┐
  [cl] 10.88.0.20 LAN client ─────────────┤ bridge in [sw]
  [n1] lan0 10.88.0.11 manager ───────────┤
  [n2] lan0 10.88.0.12 worker ────────────┘

The test image and the pynet managed plugin reach the nodes as users distribute them: pushed to
the bed's registry from node 1, pulled / `docker plugin install`ed on every node (alias `pynet`,
its own state dir per node). Docker's macvlan and overlay are the baselines: the same checks pass
with them on the same bed, so a failure with pynet is pynet's.

LAN networks across a swarm, as with macvlan: a `--config-only` network per node (mode, parent =
the node's LAN interface, the node's own --ip-range) and one `--scope swarm --config-from` network
on the manager. No IPVS here: `--endpoint-mode dnsrr`, `--publish mode=host`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lib import DOCKER, NS_PREFIX, PYNET, sh, wait_for
from test_ports import PAGE

ROOT = Path(__file__).resolve().parents[2]
SWARM = str(ROOT / "scripts/swarm.sh")
NAME = f"{NS_PREFIX}sw"
RUN, VAR = f"/run/{NAME}", f"/var/lib/{NAME}"
NODES = (1, 2)
IMAGE = "10.88.0.1:5000/busybox:latest"
SUBNET, ROUTER = "10.88.0.0/24", "10.88.0.1"
DRIVER = "pynet:latest"  # swarm networks need the tag even on Docker 28 ("could not resolve driver pynet in registry")
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

    def converge(self, svc: str, per_node: dict[int, int], net: str | None = None, timeout: float = 60):
        """Wait until SVC runs exactly per_node[n] task containers on node n; returns tasks()."""
        def ok():
            t = self.tasks(svc, net)
            counts = {n: sum(1 for x in t if x[0] == n) for n in NODES}
            return t if counts == {n: per_node.get(n, 0) for n in NODES} and all(x[2] or not net for x in t) else None
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

    # ---- pynet on the nodes

    def plugin_sock(self, node: int) -> str:
        pid = self.docker(node, "plugin", "inspect", "-f", "{{.Id}}", "pynet").stdout.strip()
        return f"{RUN}/n{node}/plugins/{pid}/pynet.sock"  # the node's /run/docker/plugins, seen from the host

    def pynet_ls(self, node: int) -> list[dict]:
        p = sh(PYNET, "--socket", self.plugin_sock(node), "ls", "--json", check=False)
        assert p.returncode == 0, f"node {node}: pynet ls -> {p.returncode}\n{p.stdout}{p.stderr}"
        return json.loads(p.stdout)

    def pynet_left(self, node: int) -> list[str]:
        """What pynet still has on NODE: networks in its state, pn-* links, policy rules, proxy neighbours."""
        left = [f"network {n['id']} ({n.get('endpoints')} endpoints)" for n in self.pynet_ls(node)]
        links = [line.split(":", 2)[1].strip() for line in
                 sh("ip", "-n", self.ns(node), "-o", "link", "show").stdout.splitlines()]
        left += [f"link {name}" for name in links if name.startswith("pn-")]
        rules = sh("ip", "-n", self.ns(node), "rule").stdout
        left += [f"rule {r.strip()}" for r in rules.splitlines() if "iif pn-" in r]
        proxy = sh("ip", "-n", self.ns(node), "neigh", "show", "proxy").stdout
        left += [f"proxy neighbour {p.strip()}" for p in proxy.splitlines() if p.strip()]
        return left

    def plugin_logs(self, lines: int = 25) -> str:
        out = []
        for n in NODES:
            pid = self.docker(n, "plugin", "inspect", "-f", "{{.Id}}", "pynet", check=False).stdout.strip()
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
        b.run("plugin", "pynet", "build/plugin", "PYNET_LOG_LEVEL=debug")
        took_plugin = time.monotonic() - t0
        print(f"\nplugin build {built:.1f}s; bed up {took_up:.1f}s; plugin push + install on {len(NODES)} nodes "
              f"{took_plugin:.1f}s\n{up.stderr}")
        b.up_seconds = took_up
        yield b
    finally:
        t0 = time.monotonic()
        down = b.run("down", check=False)
        print(f"bed down {time.monotonic() - t0:.1f}s: {down.stderr.strip()}")
        assert down.returncode == 0, f"swarm.sh down left something:\n{down.stderr}"


def test_bed(bed):
    """Two Docker 28 nodes in one swarm, up in under a minute; image and plugin came from the registry."""
    assert bed.up_seconds < 60, f"the bed took {bed.up_seconds:.0f}s to come up"
    nodes = bed.docker(1, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.EngineVersion}}").stdout.split("\n")
    nodes = sorted(line.split() for line in nodes if line)
    assert [n[0] for n in nodes] == [f"{NAME}-n{i}" for i in NODES], nodes
    assert all(n[1] == "Ready" and n[2].startswith("28.") for n in nodes), nodes
    for n in NODES:
        ref = bed.docker(n, "plugin", "inspect", "-f", "{{.PluginReference}} {{.Enabled}}", "pynet").stdout.split()
        assert ref == ["10.88.0.1:5000/pynet:latest", "true"], ref
        assert bed.docker(n, "image", "inspect", IMAGE, check=False).returncode == 0
        mounts = bed.docker(n, "plugin", "inspect", "-f", "{{json .Settings.Mounts}}", "pynet").stdout
        assert f"{VAR}/n{n}/state-pynet" in mounts, mounts


def check_cross_node(bed, tasks, dns_name: str | None = None, via_lan: bool = True, port: int = 80):
    """Every task pings and fetches every task on the other node; the LAN client reaches each task;
    DNS_NAME (tasks.<svc>) resolves to every task's address."""
    assert {t[0] for t in tasks} == set(NODES), tasks
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
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
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
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}", via_lan=False)
        for n in NODES:
            assert PAGE in bed.client_fetch(f"10.88.0.1{n}", 8080), f"LAN client: no page from node {n}:8080"
    finally:
        bed.remove(services=[svc], swarm_nets=[net])


@pytest.mark.parametrize("mode", ["l2bridge", "transparent"])
def test_pynet_lan_mode_across_nodes(bed, mode):
    """A replicated service on a pynet LAN network spanning the swarm: tasks on both nodes reach each
    other (ping, TCP) and the LAN client reaches each; scale up and down, drain a node and remove
    everything: nothing of pynet is left on any node."""
    cfg, net, svc = f"{mode[:2]}cfg", f"{mode[:2]}net", f"{mode[:2]}svc"
    try:
        config_only(bed, cfg, "-o", f"mode={mode}", "-o", f"parent={PARENT}")
        p = bed.docker(1, "network", "create", "-d", DRIVER, "--scope", "swarm", "--config-from", cfg, net, check=False)
        assert p.returncode == 0, p.stderr
        service(bed, svc, net, "--replicas", "2", "--replicas-max-per-node", "1")
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        assert all(in_range(ip, n) for n, _, ip in tasks), f"addresses outside each node's --ip-range: {tasks}"
        check_cross_node(bed, tasks)

        # Scale up: two tasks per node, all reachable from the LAN and from the other node.
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "2", "--replicas", "4", svc)
        tasks = bed.converge(svc, {1: 2, 2: 2}, net)
        assert len({ip for _, _, ip in tasks}) == 4, tasks
        check_cross_node(bed, tasks)
        for n in NODES:
            assert [e["endpoints"] for e in bed.pynet_ls(n)] == [2], bed.pynet_ls(n)

        # Scale down to one task on each node: the others' endpoints are gone from pynet.
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "1", "--replicas", "2", svc)
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        for n in NODES:
            wait_for(lambda: [e["endpoints"] for e in bed.pynet_ls(n)] == [1], timeout=20,
                     what=f"node {n}: pynet has 1 endpoint after the scale-down")
        check_cross_node(bed, tasks)

        # Drain node 2: its task moves to node 1; node 2 keeps nothing (Docker deletes the network
        # on a node with no task on it).
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "2", svc)
        bed.docker(1, "node", "update", "--availability", "drain", f"{NAME}-n2")
        tasks = bed.converge(svc, {1: 2}, net)
        wait_for(lambda: not bed.pynet_left(2), timeout=30, what="node 2 drained: nothing of pynet left")
        for _, cid, ip in tasks:
            assert bed.client_ping(ip) and PAGE in bed.client_fetch(ip)
        bed.docker(1, "node", "update", "--availability", "active", f"{NAME}-n2")
        bed.docker(1, "service", "update", "-d", "--replicas-max-per-node", "1", "--force", svc)
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        check_cross_node(bed, tasks)
    finally:
        bed.docker(1, "node", "update", "--availability", "active", f"{NAME}-n2", check=False)
        bed.remove(services=[svc], swarm_nets=[net], config_nets=[cfg])
    for n in NODES:
        wait_for(lambda: not bed.pynet_left(n), timeout=30, what=f"node {n}: nothing of pynet left")


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
        service(bed, svc, net, "--replicas", "2", "--replicas-max-per-node", "1")
        tasks = bed.converge(svc, {1: 1, 2: 1}, net)
        check_cross_node(bed, tasks, dns_name=f"tasks.{svc}")
        check_cross_node(bed, tasks, dns_name=svc, via_lan=False)  # dnsrr: the name gives every task
    finally:
        bed.remove(services=[svc], swarm_nets=[net], config_nets=[cfg])
        set_scope("local", check=False)
