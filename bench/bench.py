#!/usr/bin/env python3
"""pynet benchmark suite (`make bench`, `make bench QUICK=1`): writes report.md and PNG charts.

Sections (issue 8), each measured in interleaved rounds against a baseline
taken in the same run:
  1. protocol call latency per call type (the daemon's socket driven directly) and daemon RSS
  2. `docker run --rm busybox true`: pynet nat vs a user-defined Docker bridge vs --net none;
     10 containers started in parallel
  3. published ports: new-connection rate through one port with 0 / 1,000 / 10,000 other
     ports published, and the time to publish/unpublish N ports (pynet vs Docker's bridge
     with its default userland proxy)
  4. iperf3 throughput: container<->host, container<->container (pynet vs Docker bridge vs a
     hand-built veth+bridge in namespaces)
  5. recovery: kill -9 of pynet -> first successful /Plugin.Activate, with 100 endpoints in state

Everything it makes carries its own names (driver pynet-bench, links pn-bb-*, nft
table pynet_bench, namespaces pnbb-*, Docker objects labelled pynet-bench=1) and is
removed on exit, Ctrl-C and errors included. This is a report, not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugin"))
from pynet.client import UnixHTTPConnection, request  # noqa: E402
from shared import LAN_PAIRS  # noqa: E402

import report  # noqa: E402  bench/report/: report.md and the charts (never imports the runner)

DOCKER = "/usr/bin/docker"
PYNET = str(ROOT / ".venv" / "bin" / "pynet")
HOST_PY = "/usr/bin/python3"  # the connection-rate server runs in a container's netns: stdlib only
CONNRATE = str(Path(__file__).resolve().parent / "connrate.py")
IMAGE = "busybox:latest"

DRIVER = "pynet-bench"
SOCK = f"/run/docker/plugins/{DRIVER}.sock"
PREFIX = "pn-bb-"
TABLE = "pynet_bench"
STATE_DIR = "/var/lib/pynet-bench"  # on disk, like /var/lib/pynet: fsync costs are real
LABEL_KEY = "pynet-bench"
LABEL = f"{LABEL_KEY}=1"
NAME = "pnbb"  # Docker networks/containers and namespaces: pnbb-*

NAT_NET, BR_NET = f"{NAME}-nat", f"{NAME}-br"
NAT_SUBNET, BR_SUBNET, HAND_SUBNET = "10.251.1.0/24", "10.251.2.0/24", "10.251.3"
PROTO_SUBNET, REC_SUBNET = "10.251.100", "10.251.101"
SRV_PORT_PYNET, SRV_PORT_DOCKER, CPORT = 17080, 17081, 8080
# section 6 (lan): a LAN of namespaces like tests/e2e/lan.py; the host's side of its uplink is PARENT
LAN_NET, PARENT = "10.251.50", "pnbbpar"  # PARENT is not under PREFIX: cleanup removes it by name
LAN_ROUTER, LAN_CLIENT, LAN_HOST = f"{LAN_NET}.1", f"{LAN_NET}.20", f"{LAN_NET}.10"
LAN_IPS = {"pynet transparent": f"{LAN_NET}.130", "pynet l2bridge": f"{LAN_NET}.140",
           "hand-built macvlan": f"{LAN_NET}.150", "hand-built routed veth": f"{LAN_NET}.160"}
TR_NET, L2_NET = f"{NAME}-tr", f"{NAME}-l2"
HAND_RV = "pnbbrv0"  # the hand-built routed veth's host side (own DOCKER-USER accepts, removed by cleanup)
PROXY_OFF_FLAG = "--userland-proxy=false"
CI_DONE = Path("/tmp/ci-done")  # the shared test suite is done: dockerd may be restarted


class BenchError(Exception):
    pass


class DockerDown(BenchError):
    """dockerd did not answer (other people's tests on this machine restart it)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(args[:8])}{' ...' if len(args) > 8 else ''} -> {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()[-600:]}")
    return p


def _docker_down(p: subprocess.CompletedProcess) -> bool:
    err = p.stderr or ""
    return "Cannot connect to the Docker daemon" in err or "docker.sock: connect" in err


def wait_docker(timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([DOCKER, "info"], capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(2)
    raise BenchError("dockerd does not answer")


def docker(*args: str, check: bool = True, timeout: float = 600, retry: bool = True) -> subprocess.CompletedProcess:
    """A docker command; when dockerd is down (restarted by someone else) wait for it and retry."""
    for attempt in range(3):
        p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0 or not _docker_down(p):
            break
        if not retry:
            raise DockerDown(p.stderr.strip())
        log("dockerd is not answering (restarted by someone?): waiting")
        wait_docker()
    if check and p.returncode != 0:
        if _docker_down(p):
            raise DockerDown(p.stderr.strip())
        raise BenchError(f"docker {' '.join(args[:10])} -> {p.returncode}: {p.stderr.strip()[-600:]}")
    return p


def timed_docker(*args: str, timeout: float = 900) -> float:
    """Seconds a docker command takes; DockerDown if dockerd was away (the sample is void)."""
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        if _docker_down(p):
            raise DockerDown(p.stderr.strip())
        raise BenchError(f"docker {' '.join(args[:10])} -> {p.returncode}: {p.stderr.strip()[-600:]}")
    return dt


def dockerd_pid() -> str:
    return sh("pgrep", "-x", "-o", "dockerd", check=False).stdout.strip()


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- the daemon under test
class Pynetd:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(STATE_DIR + ".log")

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"PYNET_SOCKET": SOCK, "PYNET_STATE_DIR": STATE_DIR, "PYNET_LINK_PREFIX": PREFIX,
                    "PYNET_TABLE": TABLE})
        for k in ("PYNET_LOG_LEVEL", "PYNET_CONFIG", "PYNET_MAX_BODY", "PYNET_PORT_RANGE"):
            env.pop(k, None)  # the defaults a user gets
        return env

    def spawn(self) -> None:
        log_f = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PYNET, "serve"], env=self.env(), stdout=log_f, stderr=log_f,
                                     start_new_session=True)
        log_f.close()

    def wait_ready(self, timeout: float = 60, poll: float = 0.002) -> float:
        """Seconds until /Plugin.Activate answers 200."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"pynet exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self.call("/Plugin.Activate", timeout=5)
                if status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(poll)
        raise BenchError(f"pynet did not answer on {SOCK}:\n{self.log_tail()}")

    def start(self) -> "Pynetd":
        self.spawn()
        self.wait_ready()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""

    def call(self, path: str, body=None, timeout: float = 120, method: str = "POST") -> tuple[int, object]:
        return request(SOCK, method, path, json.dumps(body).encode() if body is not None else b"", timeout=timeout)

    def ok(self, path: str, body=None, method: str = "POST"):
        status, doc = self.call(path, body, method=method)
        if status != 200:
            raise BenchError(f"{path} -> {status} {doc}")
        return doc

    def timed(self, path: str, body) -> float:
        t0 = time.perf_counter()
        status, doc = self.call(path, body)
        dt = time.perf_counter() - t0
        if status != 200:
            raise BenchError(f"{path} -> {status} {doc}")
        return dt

    def rss(self) -> int:
        return rss_kb(self.proc.pid)

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


# ---------------------------------------------------------------- protocol bodies
def new_id() -> str:
    return os.urandom(32).hex()


def net_body(net_id: str, prefix3: str) -> dict:
    return {"NetworkID": net_id,
            "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": f"{prefix3}.0/24",
                          "Gateway": f"{prefix3}.1/24", "AuxAddresses": {}}],
            "IPv6Data": []}


def portmap(host_port: int) -> list[dict]:
    return [{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": host_port, "HostPortEnd": host_port}]


def ep_body(net_id: str, ep_id: str, address: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id,
            "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
                        "com.docker.network.portmap": portmap(host_port)}}


def join_body(net_id: str, ep_id: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id, "SandboxKey": f"/var/run/docker/netns/{ep_id[:12]}",
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
                        "com.docker.network.portmap": portmap(host_port)}}


def ext_body(net_id: str, ep_id: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id,
            "Options": {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
                        "com.docker.network.portmap": portmap(host_port)}}


# ---------------------------------------------------------------- the run
class Bench:
    def __init__(self, quick: bool, out: Path):
        self.quick = quick
        self.out = out
        self.d = Pynetd()
        self.children: list[subprocess.Popen] = []
        self.only: set[str] = set()
        self.res: dict = {"sections": {}, "notes": [], "errors": {}, "rss_timeline": []}
        self.durations: dict[str, float] = {}
        self.host_ip = ""
        self.proxy_off = False  # --proxy-off: section ports_proxy_off (restarts dockerd)
        self.dockerd_orig: dict | None = None  # set while dockerd runs with --userland-proxy=false
        q = quick
        self.p = {
            "proto_cycles": 200 if q else 1000,
            "rss_every": 50 if q else 100,
            "run_rounds": 5 if q else 20,
            "par_rounds": 2 if q else 5,
            "par_n": 10,
            "rate_secs": 1.0 if q else 3.0,
            "rate_rounds0": 4 if q else 5,
            "publish_reps": 1 if q else 2,
            "iperf_secs": 1 if q else 3,
            "iperf_rounds": 2 if q else 3,
            "rec_endpoints": 100,
            "rec_rounds": 3 if q else 5,
        }

    # ------------------------------------------------------------ helpers
    def spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.children.append(p)
        return p

    def kill_child(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
        if p in self.children:
            self.children.remove(p)

    def rss_mark(self, what: str) -> None:
        if self.d.alive():
            self.res["rss_timeline"].append((what, self.d.rss()))

    def container(self, name: str, net: str, *args: str) -> str:
        full = f"{NAME}-{name}"
        docker("rm", "-f", full, check=False)
        docker("run", "-d", "--name", full, "--label", LABEL, "--net", net, *args, IMAGE, "sleep", "1000000")
        return full

    def cpid(self, name: str) -> str:
        pid = docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        if not pid or pid == "0":
            raise BenchError(f"container {name} is not running")
        return pid

    def cip(self, name: str, net: str) -> str:
        return docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
                      name).stdout.strip()

    def status(self) -> dict:
        return self.d.ok("/pynet/v1/status", method="GET")

    # ------------------------------------------------------------ set-up / tear-down
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("bench: must run as root (it drives dockerd, netns and nftables)")
        try:
            conn = UnixHTTPConnection(SOCK, 2)
            conn.request("POST", "/Plugin.Activate", body=b"")
            conn.getresponse().read()
            conn.close()
            raise SystemExit(f"bench: a daemon already answers on {SOCK}: is another `make bench` running?")
        except OSError:
            pass
        wait_docker(60)
        if docker("image", "inspect", IMAGE, check=False).returncode != 0:
            raise SystemExit(f"bench: image {IMAGE} is missing: run scripts/images.sh (make bench does)")
        for tool in ("iperf3", "nsenter", "ss"):
            if not shutil.which(tool):
                raise SystemExit(f"bench: {tool} not found (scripts/bench-deps.sh installs iperf3)")
        route = sh("ip", "-4", "route", "get", "1.1.1.1", check=False).stdout.split()
        self.host_ip = route[route.index("src") + 1] if "src" in route else ""
        if not self.host_ip:
            for line in sh("ip", "-4", "-o", "addr", "show", "scope", "global").stdout.splitlines():
                self.host_ip = line.split()[3].split("/")[0]
                break
        if not self.host_ip:
            raise SystemExit("bench: the host has no global IPv4 address to publish ports on")

    def cleanup(self, final: bool = True) -> list[str]:
        """Remove everything the bench makes; never raises. Returns what was found."""
        found = []
        for p in list(self.children):
            self.kill_child(p)
        try:
            ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False, timeout=120).stdout.split()
            if ids:
                found.append(f"{len(ids)} containers")
                docker("rm", "-f", *ids, check=False, timeout=900)
            nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
            nets += docker("network", "ls", "-q", "--filter", f"driver={DRIVER}", check=False).stdout.split()
            nets = sorted(set(nets))
            if nets and not self.d.alive() and os.path.isdir(STATE_DIR):
                self.d.start()  # Docker asks the driver to delete its networks
            for n in nets:
                found.append(f"network {n[:12]}")
                docker("network", "rm", n, check=False, timeout=120)
        except Exception as e:  # noqa: BLE001 - cleanup goes on
            log(f"cleanup (docker): {e}")
        try:
            if not self.d.alive() and os.path.isdir(os.path.join(STATE_DIR, "networks")) and \
                    os.listdir(os.path.join(STATE_DIR, "networks")):
                self.d.start()
            if self.d.alive():
                for n in self.d.ok("/pynet/v1/networks", method="GET"):
                    found.append(f"pynet network {n['id'][:12]}")
                    self.d.call("/NetworkDriver.DeleteNetwork", {"NetworkID": n["id"]})
        except Exception as e:  # noqa: BLE001
            log(f"cleanup (daemon networks): {e}")
        self.d.stop()
        found += self.lan_cleanup()
        for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(f"{NAME}-"):
                found.append(f"netns {name}")
                sh("ip", "netns", "del", name, check=False)
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":", 2)[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                found.append(f"link {name}")
                sh("ip", "link", "del", name, check=False)
        for family in ("inet", "bridge", "ip", "ip6"):
            if sh("nft", "list", "table", family, TABLE, check=False).returncode == 0:
                found.append(f"nft table {family} {TABLE}")
                sh("nft", "delete", "table", family, TABLE, check=False)
        for family in ("ip", "ip6"):
            listing = sh("nft", "-a", "list", "chain", family, "filter", "DOCKER-USER", check=False).stdout
            for line in listing.splitlines():
                if f'"{PREFIX}*"' in line and "# handle" in line:
                    found.append(f"DOCKER-USER rule {line.strip()}")
                    handle = line.rsplit("# handle", 1)[1].strip()
                    sh("nft", "delete", "rule", family, "filter", "DOCKER-USER", "handle", handle, check=False)
        if final or found:
            shutil.rmtree(STATE_DIR, ignore_errors=True)
            if final:
                try:
                    if self.res["errors"]:  # kept for the post-mortem (bench/.gitignore)
                        shutil.move(str(self.d.log_path), str(self.out / "daemon.log"))
                    else:
                        self.d.log_path.unlink()
                except (FileNotFoundError, OSError):
                    pass
        try:
            os.unlink(SOCK)
        except FileNotFoundError:
            pass
        return found

    def ensure_networks(self) -> None:
        have = set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())
        if NAT_NET not in have:
            docker("network", "create", "-d", DRIVER, "--label", LABEL, "--subnet", NAT_SUBNET, NAT_NET)
        if BR_NET not in have:
            docker("network", "create", "-d", "bridge", "--label", LABEL, "--subnet", BR_SUBNET, BR_NET)

    def section(self, key: str, fn, restarts_dockerd: bool = False) -> None:
        """Run one section. Someone else restarting dockerd voids it: it runs again (3 attempts in all).

        A run that finished while dockerd was restarted at some point is kept as a fallback,
        in case every new attempt is disturbed too.
        """
        if self.only and key not in self.only:
            return
        t0 = time.monotonic()
        fallback = None
        attempts = 1 if restarts_dockerd else 3
        for attempt in range(1, attempts + 1):
            pid = dockerd_pid()
            again = attempt < attempts
            try:
                log(f"section {key}" + (f" (attempt {attempt}: dockerd was restarted meanwhile)" if attempt > 1
                                        else ""))
                result = fn()
                if dockerd_pid() != pid and again:
                    fallback = result
                    self.res["notes"].append(f"{key}: dockerd was restarted (not by the bench) during attempt "
                                             f"{attempt}; measured again")
                    wait_docker()
                    continue
                self.res["sections"][key] = result
                self.res["errors"].pop(key, None)
                break
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - report it and go on with the next section
                log(f"section {key} failed: {e}")
                traceback.print_exc()
                restarted = not restarts_dockerd and (isinstance(e, DockerDown) or dockerd_pid() != pid)
                if restarted:
                    wait_docker()
                    if again:
                        self.res["notes"].append(f"{key}: dockerd was restarted (not by the bench) during attempt "
                                                 f"{attempt}, which failed ({str(e)[:160]}); measured again")
                        continue
                if fallback is not None:
                    self.res["sections"][key] = fallback
                    self.res["notes"].append(f"{key}: every later attempt failed ({str(e)[:160]}); the figures are "
                                             "from an earlier complete attempt during which dockerd was restarted")
                else:
                    self.res["errors"][key] = f"{e.__class__.__name__}: {e}"
                break
            finally:
                self.section_cleanup()
        self.durations[key] = time.monotonic() - t0
        self.write_report()

    def section_cleanup(self) -> None:
        for p in list(self.children):
            self.kill_child(p)
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False, timeout=900)

    # ------------------------------------------------------------ 1. protocol
    def s1_protocol(self) -> dict:
        n = self.p["proto_cycles"]
        every = self.p["rss_every"]
        names = ["Plugin.Activate", "CreateNetwork", "CreateEndpoint", "Join", "ProgramExternalConnectivity",
                 "RevokeExternalConnectivity", "Leave", "DeleteEndpoint", "DeleteNetwork"]
        lat: dict[str, list[float]] = {k: [] for k in names}
        rss = [(0, self.d.rss())]
        t0 = time.monotonic()
        for i in range(n):
            net_id, ep_id, hp = new_id(), new_id(), 17300
            calls = [
                ("Plugin.Activate", "/Plugin.Activate", {}),
                ("CreateNetwork", "/NetworkDriver.CreateNetwork", net_body(net_id, PROTO_SUBNET)),
                ("CreateEndpoint", "/NetworkDriver.CreateEndpoint",
                 ep_body(net_id, ep_id, f"{PROTO_SUBNET}.2/24", hp)),
                ("Join", "/NetworkDriver.Join", join_body(net_id, ep_id, hp)),
                ("ProgramExternalConnectivity", "/NetworkDriver.ProgramExternalConnectivity",
                 ext_body(net_id, ep_id, hp)),
                ("RevokeExternalConnectivity", "/NetworkDriver.RevokeExternalConnectivity",
                 {"NetworkID": net_id, "EndpointID": ep_id}),
                ("Leave", "/NetworkDriver.Leave", {"NetworkID": net_id, "EndpointID": ep_id}),
                ("DeleteEndpoint", "/NetworkDriver.DeleteEndpoint", {"NetworkID": net_id, "EndpointID": ep_id}),
                ("DeleteNetwork", "/NetworkDriver.DeleteNetwork", {"NetworkID": net_id}),
            ]
            for key, path, body in calls:
                lat[key].append(self.d.timed(path, body) * 1000)
            if (i + 1) % every == 0:
                rss.append((i + 1, self.d.rss()))
        wall = time.monotonic() - t0
        time.sleep(1)
        rss_after = self.d.rss()
        self.rss_mark(f"after {n} protocol cycles")
        leftovers = self.status().get("leftovers_now")
        return {"cycles": n, "latency_ms": lat, "rss": rss, "rss_after_settle": rss_after, "wall_s": wall,
                "leftovers": leftovers}

    # ------------------------------------------------------------ 5. recovery
    def s5_recovery(self) -> dict:
        n_ep = self.p["rec_endpoints"]
        rounds = self.p["rec_rounds"]
        net_id = new_id()
        floor = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            sh(PYNET, "--help")
            floor.append(time.perf_counter() - t0)

        def restart_rounds() -> tuple[list[float], list[dict]]:
            times, checks = [], []
            for _ in range(rounds):
                self.d.kill9()
                t0 = time.perf_counter()
                self.d.spawn()
                self.d.wait_ready(poll=0.002)
                times.append(time.perf_counter() - t0)
                st = self.status()
                checks.append({"endpoints": st["endpoints"], "ports": st["published_ports"],
                               "leftovers": len(st["leftovers_now"]), "problems": len(st["state_problems"])})
                time.sleep(0.3)
            return times, checks

        self.d.ok("/NetworkDriver.CreateNetwork", net_body(net_id, REC_SUBNET))
        empty, empty_checks = restart_rounds()
        t0 = time.perf_counter()
        for i in range(n_ep):
            ep_id, hp = new_id(), 17400 + i
            self.d.ok("/NetworkDriver.CreateEndpoint", ep_body(net_id, ep_id, f"{REC_SUBNET}.{i + 2}/24", hp))
            self.d.ok("/NetworkDriver.Join", join_body(net_id, ep_id, hp))
            self.d.ok("/NetworkDriver.ProgramExternalConnectivity", ext_body(net_id, ep_id, hp))
        fill_s = time.perf_counter() - t0
        self.rss_mark(f"{n_ep} endpoints, {n_ep} ports")
        full, full_checks = restart_rounds()
        self.rss_mark(f"{n_ep} endpoints after kill -9 + restart")
        t0 = time.perf_counter()
        self.d.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
        del_s = time.perf_counter() - t0
        return {"endpoints": n_ep, "floor_s": floor, "empty_s": empty, "full_s": full, "fill_s": fill_s,
                "delete_network_s": del_s, "checks_empty": empty_checks, "checks_full": full_checks}

    # ------------------------------------------------------------ 2. docker run
    def s2_run(self) -> dict:
        self.ensure_networks()
        nets = {"pynet nat": NAT_NET, "docker bridge": BR_NET, "none": "none"}
        run = ["run", "--rm", "--label", LABEL, "--net"]
        for net in nets.values():  # warm-up (image, network first use)
            timed_docker(*run, net, IMAGE, "true")
        seq: dict[str, list[float]] = {k: [] for k in nets}
        keys = list(nets)
        for r in range(self.p["run_rounds"]):
            order = keys[r % 3:] + keys[:r % 3]
            for k in order:
                for attempt in range(3):
                    try:
                        seq[k].append(timed_docker(*run, nets[k], IMAGE, "true"))
                        break
                    except DockerDown:
                        wait_docker()
        par: dict[str, list[float]] = {k: [] for k in nets}
        n = self.p["par_n"]
        for r in range(self.p["par_rounds"]):
            order = keys[r % 3:] + keys[:r % 3]
            for k in order:
                t0 = time.perf_counter()
                procs = [subprocess.Popen([DOCKER, *run, nets[k], IMAGE, "true"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True) for _ in range(n)]
                errs = []
                for p in procs:
                    _, err = p.communicate(timeout=600)
                    if p.returncode != 0:
                        errs.append(err.strip())
                dt = time.perf_counter() - t0
                if errs:
                    raise BenchError(f"parallel docker run on {k}: {len(errs)} of {n} failed: {errs[0][-400:]}")
                par[k].append(dt)
        return {"sequential_s": seq, "parallel_s": par, "parallel_n": n}

    # ------------------------------------------------------------ 3. published ports
    def start_server(self, cname: str) -> subprocess.Popen:
        pid = self.cpid(cname)
        p = self.spawn(["nsenter", "-t", pid, "-n", HOST_PY, CONNRATE, "serve", str(CPORT)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline().strip()
        if line != "ready":
            raise BenchError(f"connection server in {cname} did not start: {line} {p.stderr.read()[-500:]}")
        return p

    def rate(self, host: str, port: int) -> dict:
        out = sh(HOST_PY, CONNRATE, "client", host, str(port), str(self.p["rate_secs"]),
                 timeout=self.p["rate_secs"] + 60).stdout
        return json.loads(out)

    def wait_port(self, host: str, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = sh(HOST_PY, CONNRATE, "client", host, str(port), "0.05", timeout=30)
            last = json.loads(r.stdout)
            if last["ok"]:
                return
            time.sleep(0.2)
        raise BenchError(f"{host}:{port} does not answer: {last}")

    def proxy_mem_mb(self, lo: int, hi: int) -> tuple[int, float]:
        """(count, summed PSS MiB) of docker-proxy processes for host ports lo..hi."""
        count, kb = 0, 0
        for pid in sh("pgrep", "-x", "docker-proxy", check=False).stdout.split():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"-host-port" in args:
                    port = int(args[args.index(b"-host-port") + 1])
                    if lo <= port <= hi:
                        count += 1
                        kb += pss_kb(int(pid))
            except (OSError, ValueError, IndexError):
                continue
        return count, kb / 1024

    def s3_ports(self) -> dict:
        self.ensure_networks()
        publish: dict = {}  # publish["how|N"] -> {"add": [...], "rm": [...]}

        def rec(how: str, n: int, what: str, dt: float) -> None:
            publish.setdefault(f"{how}|{n}", {"add": [], "rm": []})[what].append(dt)

        # the servers' own containers: `docker run -d -p 1 port` (and `docker rm -f` at the end)
        srv_p, srv_d = f"{NAME}-srvp", f"{NAME}-srvd"
        for c in (srv_p, srv_d):
            docker("rm", "-f", c, check=False)
        rec("pynet docker run -p", 1, "add", timed_docker(
            "run", "-d", "--name", srv_p, "--label", LABEL, "--net", NAT_NET, "-p", f"{SRV_PORT_PYNET}:{CPORT}",
            IMAGE, "sleep", "1000000"))
        rec("docker bridge docker run -p", 1, "add", timed_docker(
            "run", "-d", "--name", srv_d, "--label", LABEL, "--net", BR_NET, "-p", f"{SRV_PORT_DOCKER}:{CPORT}",
            IMAGE, "sleep", "1000000"))
        proc_p = self.start_server(srv_p)
        proc_d = self.start_server(srv_d)
        targets = {"host IP": self.host_ip, "127.0.0.1": "127.0.0.1"}
        ports = {"pynet": SRV_PORT_PYNET, "docker": SRV_PORT_DOCKER}
        for drv in ports:
            for t in targets.values():
                self.wait_port(t, ports[drv])
        # rate[level][driver][target] -> list of conn/s
        rate: dict = {}
        errors: list[str] = []

        servers = {"pynet": (srv_p, proc_p), "docker": (srv_d, proc_d)}

        def alive(drv: str) -> None:
            """A sample with failed connects counts only if its server and container still run."""
            cname, proc = servers[drv]
            running = docker("inspect", "-f", "{{.State.Running}}", cname, check=False).stdout.strip()
            if proc.poll() is not None or running != "true":
                raise DockerDown(f"the {drv} connection server (container {cname}) is gone: dockerd restarted?")

        def measure(level: str, drv: str) -> None:
            for tname, t in targets.items():
                r = self.rate(t, ports[drv])
                if r["errors"]:
                    alive(drv)
                rate.setdefault(level, {}).setdefault(drv, {}).setdefault(tname, []).append(r["rate"])
                if r["errors"]:
                    errors.append(f"{level} {drv} {tname}: {r['errors']} failed connects ({r['first_error']})")

        direct = {"pynet": self.cip(srv_p, NAT_NET), "docker": self.cip(srv_d, BR_NET)}
        for r in range(self.p["rate_rounds0"]):
            for drv in (("pynet", "docker") if r % 2 == 0 else ("docker", "pynet")):
                measure("0", drv)
                # floor: the container's own address and port, no NAT (routed over its bridge)
                rr = self.rate(direct[drv], CPORT)
                if rr["errors"]:
                    alive(drv)
                rate["0"][drv].setdefault("container IP, no NAT", []).append(rr["rate"])

        memory: dict = {}
        blocked: list[float] = []  # Activate round trips sent while `pynet port rm` of 10,000 ports runs
        notes: list[str] = []
        reps = self.p["publish_reps"]
        base = self.status()["published_ports"]
        for rep in range(reps):
            # 1,000 other ports: pynet (docker run -p range), then Docker's bridge (userland proxy on)
            for drv in (("pynet", "docker") if rep % 2 == 0 else ("docker", "pynet")):
                if drv == "pynet":
                    rss0 = self.d.rss()
                    dt = timed_docker("run", "-d", "--name", f"{NAME}-fill", "--label", LABEL, "--net", NAT_NET,
                                      "-p", "20000-20999:20000-20999", IMAGE, "sleep", "1000000")
                    rec("pynet docker run -p", 1000, "add", dt)
                    got = self.status()["published_ports"] - base
                    if got != 1000:
                        raise BenchError(f"pynet shows {got} published ports, expected 1000")
                    self.wait_port(self.host_ip, SRV_PORT_PYNET)
                    memory["pynet daemon memory growth, 1,000 ports (RSS, MiB)"] = (self.d.rss() - rss0) / 1024
                    measure("1000", "pynet")
                    rec("pynet docker run -p", 1000, "rm", timed_docker("rm", "-f", f"{NAME}-fill"))
                else:
                    dt = timed_docker("run", "-d", "--name", f"{NAME}-fill", "--label", LABEL, "--net", BR_NET,
                                      "-p", "30000-30999:30000-30999", IMAGE, "sleep", "1000000")
                    rec("docker bridge docker run -p", 1000, "add", dt)
                    count, mb = self.proxy_mem_mb(30000, 30999)
                    memory["docker-proxy processes, 1,000 ports"] = count
                    memory["docker-proxy memory, 1,000 ports (summed PSS, MiB)"] = mb
                    self.wait_port(self.host_ip, SRV_PORT_DOCKER)
                    measure("1000", "docker")
                    rec("docker bridge docker run -p", 1000, "rm", timed_docker("rm", "-f", f"{NAME}-fill"))
            # 10,000 other ports: pynet only (Docker: 20,000 docker-proxy processes; see the report)
            rss0 = self.d.rss()
            t0 = time.perf_counter()
            p = docker("run", "-d", "--name", f"{NAME}-fill", "--label", LABEL, "--net", NAT_NET,
                       "-p", "20000-29999:20000-29999", IMAGE, "sleep", "1000000", check=False, retry=False)
            one_run_s = time.perf_counter() - t0
            if p.returncode != 0:
                if _docker_down(p):
                    raise DockerDown(p.stderr.strip())
                docker("rm", "-f", f"{NAME}-fill", check=False)
                msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
                note = (f"`docker run -p 20000-29999:20000-29999` (10,000 ports) on pynet fails: {msg} "
                        "(Docker sends the whole port map in one CreateEndpoint body, ~105 bytes a port; pynet's "
                        "default max_body is 1 MiB). The 10,000-port level is published as 2 containers × 5,000.")
                if note not in notes:
                    notes.append(note)
                dt = 0.0
                for i, rng in enumerate(("20000-24999", "25000-29999")):
                    dt += timed_docker("run", "-d", "--name", f"{NAME}-fill{i}", "--label", LABEL, "--net",
                                       NAT_NET, "-p", f"{rng}:{rng}", IMAGE, "sleep", "1000000")
                rec("pynet docker run -p (2×5,000)", 10000, "add", dt)
                fill = [f"{NAME}-fill0", f"{NAME}-fill1"]
                how = "pynet docker run -p (2×5,000)"
            else:
                fill = [f"{NAME}-fill"]
                how = "pynet docker run -p"
                rec(how, 10000, "add", one_run_s)
            got = self.status()["published_ports"] - base
            if got != 10000:
                raise BenchError(f"pynet shows {got} published ports, expected 10000")
            memory["pynet daemon memory growth, 10,000 ports (RSS, MiB)"] = (self.d.rss() - rss0) / 1024
            self.rss_mark(f"10,000 published ports (round {rep + 1})")
            self.wait_port(self.host_ip, SRV_PORT_PYNET)
            measure("10000", "pynet")
            t0 = time.perf_counter()
            for c in fill:
                timed_docker("rm", "-f", c)
            rec(how, 10000, "rm", time.perf_counter() - t0)
            # pynet port add/rm on a running container (CLI -> control API, one call)
            pa = self.container("pa", NAT_NET)
            for n in (1000, 10000):
                specs = [f"{20000 + i}:{20000 + i}" for i in range(n)]
                t0 = time.perf_counter()
                sh(PYNET, "--socket", SOCK, "port", "add", pa, *specs, timeout=900)
                rec("pynet port add", n, "add", time.perf_counter() - t0)
                got = self.status()["published_ports"] - base
                if got != n:
                    raise BenchError(f"pynet shows {got} published ports after port add, expected {n}")
                t0 = time.perf_counter()
                rm = subprocess.Popen([PYNET, "--socket", SOCK, "port", "rm", pa, *specs],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if n == 10000:
                    # does the daemon answer anything else meanwhile? (Docker's calls for other containers)
                    time.sleep(0.3)
                    if rm.poll() is None:
                        a0 = time.perf_counter()
                        self.d.ok("/Plugin.Activate", {})
                        blocked.append(time.perf_counter() - a0)
                _, err = rm.communicate(timeout=900)
                if rm.returncode != 0:
                    raise BenchError(f"pynet port rm: {err.strip()[-400:]}")
                rec("pynet port add", n, "rm", time.perf_counter() - t0)
            docker("rm", "-f", pa)
        for p in list(self.children):  # the connection servers, before their containers go
            self.kill_child(p)
        rec("pynet docker run -p", 1, "rm", timed_docker("rm", "-f", srv_p))
        rec("docker bridge docker run -p", 1, "rm", timed_docker("rm", "-f", srv_d))
        return {"rate": rate, "publish": publish, "activate_during_rm_s": blocked, "memory": memory, "notes": notes, "errors": errors,
                "targets": targets, "rate_secs": self.p["rate_secs"]}

    # ------------------------------------------------------------ 4. iperf3
    def hand_netns(self) -> dict:
        """pnbb-sw: a bridge in its own netns (no firewall there); pnbb-a, pnbb-b and the host hang off it."""
        sw, a, b = f"{NAME}-sw", f"{NAME}-a", f"{NAME}-b"
        for ns in (sw, a, b):
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "del", f"{PREFIX}x0", check=False)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        sh("ip", "link", "add", f"{PREFIX}x0", "type", "veth", "peer", "name", "p0", "netns", sw)
        sh("ip", "addr", "add", f"{HAND_SUBNET}.1/24", "dev", f"{PREFIX}x0")
        sh("ip", "link", "set", f"{PREFIX}x0", "up")
        for i, ns in ((1, a), (2, b)):
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", sw)
            sh("ip", "-n", ns, "addr", "add", f"{HAND_SUBNET}.{i + 1}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{HAND_SUBNET}.1")
        for i in range(3):
            sh("ip", "-n", sw, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", sw, "link", "set", f"p{i}", "up")
        return {"a": (["nsenter", f"--net=/run/netns/{a}"], f"{HAND_SUBNET}.2"),
                "b": (["nsenter", f"--net=/run/netns/{b}"], f"{HAND_SUBNET}.3")}

    def iperf_server(self, prefix: list[str]) -> None:
        self.spawn(prefix + ["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sh(*prefix, "ss", "-Hltn", "sport = :5201", check=False).stdout.strip():
                return
            time.sleep(0.05)
        raise BenchError(f"iperf3 server did not start in {prefix}")

    def iperf(self, prefix: list[str], ip: str, reverse: bool) -> float:
        secs = self.p["iperf_secs"]
        args = prefix + ["iperf3", "-c", ip, "-p", "5201", "-t", str(secs), "-O", "0", "-J",
                         "--connect-timeout", "3000"]
        if reverse:
            args.append("-R")
        for attempt in range(3):
            try:
                p = sh(*args, check=False, timeout=secs + 20)
            except subprocess.TimeoutExpired:
                raise BenchError(f"iperf3 to {ip} hung (was dockerd restarted?)") from None
            if p.returncode == 0:
                return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
            time.sleep(0.5)  # the one-test-at-a-time server may still be finishing the last test
        raise BenchError(f"iperf3 {' '.join(args)}: {p.stdout[-300:]} {p.stderr[-300:]}")

    def s4_iperf(self) -> dict:
        self.ensure_networks()
        setups = {}
        for key, net in (("pynet nat", NAT_NET), ("docker bridge", BR_NET)):
            tag = "p" if key.startswith("pynet") else "d"
            ca, cb = self.container(f"ip{tag}a", net), self.container(f"ip{tag}b", net)
            setups[key] = {"a": (["nsenter", "-t", self.cpid(ca), "-n"], self.cip(ca, net)),
                           "b": (["nsenter", "-t", self.cpid(cb), "-n"], self.cip(cb, net))}
        setups["hand-built veth+bridge"] = self.hand_netns()
        for s in setups.values():
            self.iperf_server(s["a"][0])
        paths = {"host → container": ([], False), "container → host": ([], True),
                 "container → container": ("b", False)}
        res: dict = {}
        keys = list(setups)
        for r in range(self.p["iperf_rounds"]):
            for path, (client, reverse) in paths.items():
                for k in keys[r % 3:] + keys[:r % 3]:
                    s = setups[k]
                    prefix = s["b"][0] if client == "b" else []
                    res.setdefault(path, {}).setdefault(k, []).append(self.iperf(prefix, s["a"][1], reverse))
        for ns in ("sw", "a", "b"):
            sh("ip", "netns", "del", f"{NAME}-{ns}", check=False)
        sh("ip", "link", "del", f"{PREFIX}x0", check=False)
        return {"gbps": res, "secs": self.p["iperf_secs"]}

    # ------------------------------------------------------------ 6. container <-> LAN (iperf3)
    def lan_build(self) -> None:
        """pnbb-sw (br0), pnbb-cl (the LAN client), pnbb-rt (the LAN router); PARENT is the host's uplink."""
        sw, cl, rt = f"{NAME}-sw", f"{NAME}-cl", f"{NAME}-rt"
        for ns in (sw, cl, rt):
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "del", PARENT, check=False)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        sh("ip", "link", "add", PARENT, "type", "veth", "peer", "name", "uplink", "netns", sw)
        for ns, ifname in ((cl, "c0"), (rt, "r0")):
            port = ifname[0] + "p"
            sh("ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", sw)
            sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        sh("ip", "-n", sw, "link", "set", "uplink", "master", "br0", "up")
        sh("ip", "addr", "add", f"{LAN_HOST}/24", "dev", PARENT)
        sh("ip", "link", "set", PARENT, "up")
        sh("ip", "-n", cl, "addr", "add", f"{LAN_CLIENT}/24", "dev", "c0")
        sh("ip", "-n", rt, "addr", "add", f"{LAN_ROUTER}/24", "dev", "r0")
        sh("ip", "netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", cl, "route", "add", "default", "via", LAN_ROUTER)

    def hand_macvlan(self) -> list[str]:
        """A bridge-mode macvlan on PARENT moved into pnbb-mv (what transparent makes, by hand)."""
        ns = f"{NAME}-mv"
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{PREFIX}mv0", "link", PARENT, "type", "macvlan", "mode", "bridge")
        sh("ip", "link", "set", f"{PREFIX}mv0", "netns", ns, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{LAN_IPS['hand-built macvlan']}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", LAN_ROUTER)
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def hand_routed(self) -> list[str]:
        """pnbb-rv behind a routed veth: /32 route, proxy_arp on the veth, a proxy neighbour on PARENT
        (what l2bridge makes, by hand: no policy routing table, no nftables source check). Docker's
        FORWARD policy is drop, so two accepts go first in DOCKER-USER (as pynet's own do)."""
        ns, ip = f"{NAME}-rv", LAN_IPS["hand-built routed veth"]
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", HAND_RV, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", HAND_RV, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("sysctl", "-qw", f"net.ipv4.conf.{HAND_RV}.proxy_arp=1")
        sh("ip", "link", "set", HAND_RV, "up")
        sh("ip", "route", "add", f"{ip}/32", "dev", HAND_RV)
        sh("ip", "neigh", "add", "proxy", ip, "dev", PARENT)
        for d in ("-i", "-o"):
            sh("iptables", "-I", "DOCKER-USER", "1", d, HAND_RV, "-j", "ACCEPT")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", LAN_ROUTER)
        return ["nsenter", f"--net=/run/netns/{ns}"]

    @staticmethod
    def lan_cleanup() -> list[str]:
        found = []
        for d in ("-i", "-o"):
            while sh("iptables", "-D", "DOCKER-USER", d, HAND_RV, "-j", "ACCEPT", check=False).returncode == 0:
                found.append(f"DOCKER-USER {d} {HAND_RV}")
        for link in (HAND_RV, PARENT):
            if sh("ip", "link", "del", link, check=False).returncode == 0:
                found.append(f"link {link}")
        return found

    def lan_reach(self, key: str, prefix: list[str]) -> None:
        """The setup reaches the LAN client before it is measured (ARP, proxy entries, gratuitous ARP)."""
        deadline = time.monotonic() + 10
        while sh(*prefix, "busybox", "ping", "-c1", "-W1", LAN_CLIENT, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise BenchError(f"{key}: {LAN_CLIENT} (the LAN client) does not answer ping")

    def s6_lan(self) -> dict:
        """iperf3 between a container (or a hand-built namespace) and the LAN client pnbb-cl.

        The transparent and l2bridge networks share the LAN's subnet, which Docker's default IPAM
        refuses twice: each is made (network + container) for its turn in a round and removed after.
        """
        self.ensure_networks()
        self.lan_cleanup()  # an earlier attempt's (a dockerd restart by someone else voids an attempt)
        self.lan_build()
        for net in (TR_NET, L2_NET):
            docker("network", "rm", net, check=False)
        fixed: dict[str, list[str]] = {}
        for key, net, tag in (("pynet nat", NAT_NET, "ln"), ("docker bridge", BR_NET, "ld")):
            c = self.container(tag, net)
            fixed[key] = ["nsenter", "-t", self.cpid(c), "-n"]
        fixed["hand-built macvlan"] = self.hand_macvlan()
        fixed["hand-built routed veth"] = self.hand_routed()
        lan_modes = {"pynet transparent": (TR_NET, "lt", ["-o", "mode=transparent"]),
                     "pynet l2bridge": (L2_NET, "ll", ["-o", "mode=l2bridge", "--gateway", LAN_ROUTER])}
        self.iperf_server(["nsenter", f"--net=/run/netns/{NAME}-cl"])
        for k, prefix in fixed.items():
            self.lan_reach(k, prefix)
        keys = [k for pair in LAN_PAIRS for k in pair]
        paths = {"container → LAN": False, "LAN → container": True}
        res: dict = {path: {k: [] for k in keys} for path in paths}
        for r in range(self.p["iperf_rounds"]):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                if k in lan_modes:
                    net, tag, opts = lan_modes[k]
                    docker("network", "create", "-d", DRIVER, "--label", LABEL, *opts, "-o", f"parent={PARENT}",
                           "--subnet", f"{LAN_NET}.0/24", net)
                    c = self.container(tag, net, "--ip", LAN_IPS[k])
                    prefix = ["nsenter", "-t", self.cpid(c), "-n"]
                    self.lan_reach(k, prefix)
                else:
                    prefix = fixed[k]
                for path, reverse in paths.items():
                    res[path][k].append(self.iperf(prefix, LAN_CLIENT, reverse))
                if k in lan_modes:
                    docker("rm", "-f", c)
                    docker("network", "rm", net)
        for p in list(self.children):
            self.kill_child(p)
        self.section_cleanup()
        for ns in ("mv", "rv", "cl", "rt", "sw"):
            sh("ip", "netns", "del", f"{NAME}-{ns}", check=False)
        self.lan_cleanup()
        return {"gbps": res, "secs": self.p["iperf_secs"], "subnet": f"{LAN_NET}.0/24", "client": LAN_CLIENT,
                "ips": LAN_IPS}

    # ------------------------------------------------------------ 7. Docker with --userland-proxy=false
    def dockerd_info(self) -> dict:
        pid = dockerd_pid()
        if not pid:
            raise BenchError("no dockerd process")
        cmd = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        systemd = (shutil.which("systemctl") is not None
                   and sh("systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded")
                   and sh("systemctl", "is-active", "docker", check=False).stdout.strip() == "active")
        return {"pid": pid, "cmd": cmd, "systemd": systemd}

    @staticmethod
    def dockerd_stop(pid: str, systemd: bool) -> None:
        if systemd:
            sh("systemctl", "stop", "docker.socket", "docker", check=False, timeout=300)
        else:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 120  # it stops every container first (busybox: 10 s stop timeout)
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if Path(f"/proc/{pid}").exists():
            os.kill(int(pid), signal.SIGKILL)
            time.sleep(2)

    @staticmethod
    def dockerd_spawn(cmd: list[str]) -> None:
        with open("/var/log/pynet-dockerd.log", "ab") as f:  # where scripts/dockerd.sh logs
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)

    def dockerd_with_flag(self) -> None:
        """Restart dockerd with --userland-proxy=false; self.dockerd_orig says how to restore it."""
        info = self.dockerd_info()
        if any(a.startswith("--userland-proxy") for a in info["cmd"]):
            raise BenchError(f"dockerd already runs with {info['cmd']}: not touching it")
        self.dockerd_orig = info
        log(f"restarting dockerd ({' '.join(info['cmd'])}{', systemd' if info['systemd'] else ''}) "
            f"with {PROXY_OFF_FLAG}")
        self.dockerd_stop(info["pid"], info["systemd"])
        # under systemd its unit's arguments (-H fd://) do not work outside it: plain /usr/sbin/dockerd
        cmd = ["/usr/sbin/dockerd"] if info["systemd"] else list(info["cmd"])
        self.dockerd_spawn(cmd + [PROXY_OFF_FLAG])
        wait_docker(120)
        flags = Path(f"/proc/{dockerd_pid()}/cmdline").read_bytes().decode(errors="replace")
        if PROXY_OFF_FLAG not in flags:
            raise BenchError("dockerd did not come back with the flag")

    def dockerd_restore(self) -> None:
        """Put the original dockerd back (idempotent; signals are ignored meanwhile)."""
        info = self.dockerd_orig
        if not info:
            return
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            pid = dockerd_pid()
            if pid and PROXY_OFF_FLAG.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                log("restoring the original dockerd")
                self.dockerd_stop(pid, False)
                pid = ""
            if not pid:
                if info["systemd"]:
                    sh("systemctl", "start", "docker", check=False, timeout=300)
                else:
                    self.dockerd_spawn(info["cmd"])
            wait_docker(240)
            self.dockerd_orig = None
            log(f"dockerd restored: {' '.join(self.dockerd_info()['cmd'])}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def wait_ci_done(self, timeout: float = 1800) -> None:
        deadline = time.monotonic() + timeout
        said = 0.0
        while not CI_DONE.exists():
            if time.monotonic() > deadline:
                raise BenchError(f"{CI_DONE} did not appear in {timeout:.0f} s: dockerd not restarted")
            if time.monotonic() - said > 60:
                log(f"waiting for {CI_DONE} (a test suite shares this dockerd) before restarting dockerd")
                said = time.monotonic()
            time.sleep(2)

    def s7_proxy_off(self) -> dict:
        """Section 3's connection rate (0 and 1,000 other ports) and 1,000-port publish time, with dockerd
        restarted with --userland-proxy=false (pynet measured again, interleaved, on that dockerd)."""
        self.wait_ci_done()
        self.section_cleanup()
        self.dockerd_with_flag()
        try:
            return self._proxy_off_measure()
        finally:
            for p in list(self.children):
                self.kill_child(p)
            self.section_cleanup()
            self.dockerd_restore()

    def _proxy_off_measure(self) -> dict:
        self.ensure_networks()
        publish: dict = {}
        srv = {"pynet": (f"{NAME}-srvp", NAT_NET, SRV_PORT_PYNET), "docker": (f"{NAME}-srvd", BR_NET, SRV_PORT_DOCKER)}
        for drv, (cname, net, port) in srv.items():
            docker("rm", "-f", cname, check=False)
            dt = timed_docker("run", "-d", "--name", cname, "--label", LABEL, "--net", net, "-p", f"{port}:{CPORT}",
                              IMAGE, "sleep", "1000000")
            publish.setdefault(f"{drv}|1", {"add": [], "rm": []})["add"].append(dt)
            self.start_server(cname)
        targets = {"host IP": self.host_ip, "127.0.0.1": "127.0.0.1"}
        for drv, (_, _, port) in srv.items():
            for t in targets.values():
                self.wait_port(t, port)
        proxies = {"docker-proxy processes, 1 port": self.proxy_mem_mb(SRV_PORT_DOCKER, SRV_PORT_DOCKER)[0]}
        rate: dict = {}
        errors: list[str] = []

        def measure(level: str, drv: str) -> None:
            for tname, t in targets.items():
                r = self.rate(t, srv[drv][2])
                rate.setdefault(level, {}).setdefault(drv, {}).setdefault(tname, []).append(r["rate"])
                if r["errors"]:
                    errors.append(f"{level} {drv} {tname}: {r['errors']} failed connects ({r['first_error']})")

        for r in range(self.p["rate_rounds0"]):
            for drv in (("pynet", "docker") if r % 2 == 0 else ("docker", "pynet")):
                measure("0", drv)
        fill = {"pynet": (NAT_NET, "20000-20999"), "docker": (BR_NET, "30000-30999")}
        for rep in range(self.p["publish_reps"]):
            for drv in (("pynet", "docker") if rep % 2 == 0 else ("docker", "pynet")):
                net, rng = fill[drv]
                rec = publish.setdefault(f"{drv}|1000", {"add": [], "rm": []})
                rec["add"].append(timed_docker("run", "-d", "--name", f"{NAME}-fill", "--label", LABEL, "--net",
                                               net, "-p", f"{rng}:{rng}", IMAGE, "sleep", "1000000"))
                if drv == "docker":
                    proxies["docker-proxy processes, 1,000 ports"] = self.proxy_mem_mb(30000, 30999)[0]
                self.wait_port(self.host_ip, srv[drv][2])
                measure("1000", drv)
                rec["rm"].append(timed_docker("rm", "-f", f"{NAME}-fill"))
        for p in list(self.children):
            self.kill_child(p)
        for drv, (cname, _, _) in srv.items():
            publish[f"{drv}|1"]["rm"].append(timed_docker("rm", "-f", cname))
        return {"rate": rate, "publish": publish, "proxies": proxies, "errors": errors, "targets": targets,
                "rate_secs": self.p["rate_secs"], "flag": PROXY_OFF_FLAG}

    # ------------------------------------------------------------ report
    def machine(self) -> dict:
        mem_kb = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
        cpu = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD", check=False).stdout.strip()
        dirty = sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "plugin",
                   check=False).stdout.strip()
        return {"nproc": os.cpu_count(), "ram_gib": mem_kb / 1024 / 1024, "cpu": cpu,
                "kernel": platform.release(),
                "docker": docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip(),
                "python": platform.python_version(), "iperf3": sh("iperf3", "--version", check=False)
                .stdout.splitlines()[0] if shutil.which("iperf3") else "",
                "pynet": f"{commit}{' + uncommitted changes under plugin/' if dirty else ''}",
                "host_ip": self.host_ip}

    def write_report(self) -> None:
        results = {"params": self.p, "quick": self.quick, "machine": self.res.get("machine"),
                   "durations_s": self.durations, **self.res}
        try:
            report.write(self.out, results, self.proxy_off)
        except Exception:  # noqa: BLE001 - the numbers are in results.json anyway
            traceback.print_exc()
        (self.out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    # ------------------------------------------------------------ main
    def run(self) -> int:
        self.preflight()
        found = self.cleanup(final=False)
        if found:
            log(f"removed leftovers of an earlier run: {', '.join(found)}")
            self.res["notes"].append(f"leftovers of an earlier bench run removed first: {', '.join(found)}")
        self.res["machine"] = self.machine()
        self.res["started"] = datetime.datetime.now().isoformat(timespec="seconds")
        self.res["load_start"] = os.getloadavg()
        t0 = time.monotonic()
        self.d.start()
        time.sleep(1)
        self.res["rss_idle_kb"] = self.d.rss()
        self.rss_mark("idle, just started")
        self.section("protocol", self.s1_protocol)
        self.section("recovery", self.s5_recovery)
        self.section("docker_run", self.s2_run)
        self.section("iperf3", self.s4_iperf)
        self.section("ports", self.s3_ports)
        self.section("lan", self.s6_lan)
        if self.proxy_off or "ports_proxy_off" in self.only:
            self.section("ports_proxy_off", self.s7_proxy_off, restarts_dockerd=True)
        self.rss_mark("end of run")
        self.res["load_end"] = os.getloadavg()
        self.res["total_s"] = time.monotonic() - t0
        self.write_report()
        return 1 if self.res["errors"] else 0


def report_only(results: Path, out: Path) -> int:
    """report.md and the charts from a results.json, as the run that wrote it made them (no root, no dockerd)."""
    data = json.loads(results.read_text())
    # --proxy-off is not in results.json: a run that had it has the section, its error or its duration
    proxy_off = ("ports_proxy_off" in data.get("sections", {}) or "ports_proxy_off" in data.get("errors", {})
                 or any(k.startswith("ports_proxy_off") for k in data.get("durations_s", {})))
    report.write(out, data, proxy_off)
    log(f"report rebuilt from {results}: {out / 'report.md'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (a few minutes)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where report.md and PNGs go")
    ap.add_argument("--only", default="", help="comma-separated sections to run (protocol,recovery,docker_run,"
                    "iperf3,ports,lan,ports_proxy_off); default all but ports_proxy_off")
    ap.add_argument("--proxy-off", action="store_true", help="also section ports_proxy_off: restarts dockerd "
                    f"with {PROXY_OFF_FLAG} (after {CI_DONE} exists), measures, restores it (`make bench` full)")
    ap.add_argument("--report-only", action="store_true", help="measure nothing: rebuild report.md and the charts "
                    "in --out from results.json (`make bench-report`)")
    ap.add_argument("--results", default="", help="with --report-only: the results.json to read (default: the "
                    "one in --out)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report_only(Path(args.results) if args.results else out / "results.json", out)

    def to_interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, to_interrupt)
    signal.signal(signal.SIGHUP, to_interrupt)
    b = Bench(args.quick, out)
    b.only = {x.strip() for x in args.only.split(",") if x.strip()}
    b.proxy_off = args.proxy_off
    rc = 1
    try:
        rc = b.run()
        log(f"done in {b.res.get('total_s', 0):.0f} s: {out / 'report.md'}")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        rc = 130
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        try:
            b.dockerd_restore()  # normally done by its section already
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        left = b.cleanup(final=True)
        if left:
            log(f"cleaned up: {', '.join(left)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
