"""e2e tier: a real dockerd, real `docker` commands, a test pynet daemon."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from lib import DOCKER, DRIVER, NS_PREFIX, TAG, Daemon, Netns, docker, sh

ROOT = Path(__file__).resolve().parents[2]
PEER_SERVER = str(Path(__file__).resolve().parents[1] / "peer_server.py")
OUT4, OUT4_HOST = "198.51.100.2", "198.51.100.1"
OUT6, OUT6_HOST = "2001:db8:51::2", "2001:db8:51::1"
IMAGE = "busybox:latest"


@pytest.fixture(scope="session")
def dockerd():
    """The engine under test (tests/engine.py) answers and has the local busybox images.

    Afterwards it runs with its normal flags again, whatever a test did to it."""
    if not engine.answers():
        pytest.fail(f"Docker {engine.ENGINE} does not answer on {engine.DOCKER_HOST}: "
                    f"`bash scripts/engine.sh start {engine.ENGINE}` (make test ENGINE={engine.ENGINE} does)")
    p = sh("bash", str(ROOT / "scripts/images.sh"), check=False, timeout=300)  # DOCKER_HOST: the engine's
    if p.returncode != 0 or sh(DOCKER, "image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} missing in Docker {engine.ENGINE} and scripts/images.sh failed:\n{p.stderr}")
    yield
    engine.ensure_normal()


def _purge_docker() -> None:
    ids = sh(DOCKER, "ps", "-aq", "--filter", f"label=pynet-test={TAG}", check=False).stdout.split()
    if ids:
        sh(DOCKER, "rm", "-f", *ids, check=False, timeout=120)
    nets = sh(DOCKER, "network", "ls", "-q", "--filter", f"driver={DRIVER}", check=False).stdout.split()
    for n in nets:
        sh(DOCKER, "network", "rm", n, check=False)


@pytest.fixture(scope="session")
def pynetd(dockerd):
    """The test daemon, on /run/docker/plugins/<DRIVER>.sock in the host namespace."""
    d = Daemon().start()
    yield d
    _purge_docker()
    d.stop()
    if d.proc and d.proc.returncode not in (0, -15):
        print(d.log(), file=sys.stderr)
    d.cleanup_state()


@pytest.fixture
def daemon(pynetd):
    """The session daemon, restarted if a test killed it."""
    if pynetd.proc.poll() is not None:
        pynetd.start()
    yield pynetd
    if pynetd.proc.poll() is not None:
        pynetd.start()


class Networks:
    def __init__(self):
        self.made: list[str] = []

    def create(self, label: str, *args: str, check: bool = True) -> str | subprocess.CompletedProcess:
        name = f"{NS_PREFIX}-{label}"
        p = docker("network", "create", "-d", DRIVER, *args, name, check=check)
        if p.returncode == 0:
            self.made.append(name)
        return name if check else p

    def cleanup(self) -> None:
        for name in reversed(self.made):
            ids = sh(DOCKER, "ps", "-aq", "--filter", f"network={name}", check=False).stdout.split()
            if ids:
                sh(DOCKER, "rm", "-f", *ids, check=False, timeout=120)
            sh(DOCKER, "network", "rm", name, check=False)


@pytest.fixture
def nets(daemon):
    n = Networks()
    yield n
    n.cleanup()


class Containers:
    def __init__(self):
        self.made: list[str] = []

    def run(self, name: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """docker run --rm ... (foreground)."""
        return docker("run", "--rm", "--label", f"pynet-test={TAG}", *args, check=check, timeout=timeout)

    def start(self, name: str, *args: str) -> str:
        """docker run -d --name NAME ..."""
        full = f"{NS_PREFIX}-{name}"
        sh(DOCKER, "rm", "-f", full, check=False)
        docker("run", "-d", "--name", full, "--label", f"pynet-test={TAG}", *args)
        self.made.append(full)
        return full

    def sh(self, name: str, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return docker("exec", name, "sh", "-c", script, check=check, timeout=timeout)

    def cleanup(self) -> None:
        if self.made:
            sh(DOCKER, "rm", "-f", *self.made, check=False, timeout=120)


@pytest.fixture
def ctrs(daemon):
    c = Containers()
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def outside(dockerd):
    """A host outside the Docker host: a namespace reached through a veth, with a peer-echo server.

    No route back to container subnets: answers reach containers only through masquerade.
    """
    ns = Netns("out")
    host_if, ns_if = f"pnt{TAG}o0", f"pnt{TAG}o1"
    sh("ip", "link", "del", host_if, check=False)
    server = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns.name)
        sh("ip", "addr", "add", f"{OUT4_HOST}/24", "dev", host_if)
        sh("ip", "addr", "add", f"{OUT6_HOST}/64", "dev", host_if, "nodad")
        sh("ip", "link", "set", host_if, "up")
        ns.run("ip", "addr", "add", f"{OUT4}/24", "dev", ns_if)
        ns.run("ip", "addr", "add", f"{OUT6}/64", "dev", ns_if, "nodad")
        ns.run("ip", "link", "set", ns_if, "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, PEER_SERVER, "8000", "1800"],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        time.sleep(0.2)
        yield ns
    finally:
        if server:
            server.kill()
            server.wait()
            server.stdout.close()
        sh("ip", "link", "del", host_if, check=False)
        ns.close()
