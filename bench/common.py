"""What every section of the runner uses: the names the bench gives what it makes, and the
shell, docker and /proc helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import shared

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import engine  # noqa: E402  (tests/engine.py: the engine under test, PYNET_ENGINE=20|28, and its restarts)
DOCKER = "/usr/bin/docker"
PYNET = str(ROOT / ".venv" / "bin" / "pynet")
IMAGE = "busybox:latest"

# Everything the bench makes carries its own names, so cleanup finds it (and nothing else).
DRIVER = "pynet-bench"
SOCK = f"/run/docker/plugins/{DRIVER}.sock"
PREFIX = "pn-bb-"
TABLE = "pynet_bench"
STATE_DIR = "/var/lib/pynet-bench"  # on disk, like /var/lib/pynet: fsync costs are real
LABEL_KEY = "pynet-bench"
LABEL = f"{LABEL_KEY}=1"
NAME = shared.NAME  # Docker networks/containers and namespaces: pnbb-*

# the two networks most sections share (Bench.ensure_networks)
NAT_NET, BR_NET = f"{NAME}-nat", f"{NAME}-br"
NAT_SUBNET, BR_SUBNET = "10.251.1.0/24", "10.251.2.0/24"


# tests/stale.py: a test session, when it starts, removes the links, DOCKER-USER rules, ... of every
# tag pn-<tag>-* without a live registered session, the bench's pn-bb-* too: the bench registers "bb".
SESSIONS = Path("/run/pynet-test/sessions")
SESSION_TAG = PREFIX.split("-")[1]


def register_session() -> None:
    SESSIONS.mkdir(parents=True, exist_ok=True)
    (SESSIONS / SESSION_TAG).write_text(str(os.getpid()))


def unregister_session() -> None:
    try:
        if (SESSIONS / SESSION_TAG).read_text().strip() == str(os.getpid()):
            (SESSIONS / SESSION_TAG).unlink()
    except OSError:
        pass


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


def rotated(keys: list, r: int) -> list:
    """keys in round r's order: the order rotates each round, so none always goes first."""
    return keys[r % len(keys):] + keys[:r % len(keys)]


def in_netns(ns: str) -> list[str]:
    """The command prefix that runs a command in the named network namespace ns."""
    return ["nsenter", f"--net=/run/netns/{ns}"]


def in_pid_netns(pid: str) -> list[str]:
    """The command prefix that runs a command in the network namespace of process pid (a container)."""
    return ["nsenter", "-t", pid, "-n"]


def fresh_netns(*names: str) -> None:
    """Network namespaces made anew (an earlier attempt's removed first), loopback up."""
    for ns in names:
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def del_netns(*names: str) -> None:
    for ns in names:
        sh("ip", "netns", "del", ns, check=False)


def netns_switch(sw: str, others: tuple[str, ...], uplink: str, peer: str) -> None:
    """Namespaces sw and others made anew; in sw a Linux bridge br0 (no firewall on that path); the
    host's veth uplink into sw, its end there named peer (not yet on br0)."""
    fresh_netns(sw, *others)
    sh("ip", "link", "del", uplink, check=False)
    sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", sw, "link", "set", "br0", "up")
    sh("ip", "link", "add", uplink, "type", "veth", "peer", "name", peer, "netns", sw)


# ---------------------------------------------------------------- docker
def docker_down(p: subprocess.CompletedProcess) -> bool:
    err = p.stderr or ""
    return "Cannot connect to the Docker daemon" in err or "docker.sock: connect" in err


def _docker_failed(args: tuple[str, ...], p: subprocess.CompletedProcess) -> BenchError:
    if docker_down(p):
        return DockerDown(p.stderr.strip())
    return BenchError(f"docker {' '.join(args[:10])} -> {p.returncode}: {p.stderr.strip()[-600:]}")


def wait_docker(timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if subprocess.run([DOCKER, "info"], capture_output=True, timeout=60).returncode == 0:
                return
        except subprocess.TimeoutExpired:  # a dockerd still starting (or busy) may not answer in time
            continue
        time.sleep(2)
    raise BenchError("dockerd does not answer")


def docker(*args: str, check: bool = True, timeout: float = 600, retry: bool = True) -> subprocess.CompletedProcess:
    """A docker command; when dockerd is down (restarted by someone else) wait for it and retry."""
    for attempt in range(3):
        p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
        if p.returncode == 0 or not docker_down(p):
            break
        if not retry:
            raise DockerDown(p.stderr.strip())
        log("dockerd is not answering (restarted by someone?): waiting")
        wait_docker()
    if check and p.returncode != 0:
        raise _docker_failed(args, p)
    return p


def timed_docker(*args: str, timeout: float = 900) -> float:
    """Seconds a docker command takes; DockerDown if dockerd was away (the sample is void)."""
    t0 = time.perf_counter()
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise _docker_failed(args, p)
    return dt


def sleeper(name: str, net: str, *args: str) -> list[str]:
    """`docker run -d` arguments of the bench's containers: a labelled busybox that sleeps; args go
    before the image (-p, --ip)."""
    return ["run", "-d", "--name", name, "--label", LABEL, "--net", net, *args, IMAGE, "sleep", "1000000"]


ENGINE_SOCK = ""  # bench.py --engine-sock: the bench's own engine (scripts/bench-engine.sh), its pidfile beside it


def dockerd_pid() -> str:
    """The measured engine's dockerd (its pidfile: tests/engine.py's, or --engine-sock's); '' when it is not running."""
    if ENGINE_SOCK:  # others' restarts of the system dockerd do not touch it
        try:
            return (Path(ENGINE_SOCK).parent / "docker.pid").read_text().strip()
        except OSError:
            return ""
    return str(engine.pid() or "")


# ---------------------------------------------------------------- /proc
def proc_field(path: str, key: str) -> str:
    """The value after the colon of the first line of a /proc file that starts with key ("" if none)."""
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return ""


def proc_kb(path: str, key: str) -> int:
    """A /proc figure in kB (the first word of proc_field); 0 if none."""
    value = proc_field(path, key).split()
    return int(value[0]) if value else 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them."""
    return proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def rss_kb(pid: int) -> int:
    return proc_kb(f"/proc/{pid}/status", "VmRSS:")
