"""Shared helpers for the netns and e2e tiers: a test daemon, commands, namespaces.

Every test daemon gets names no user daemon uses (tests/testing.md): driver
`pynet-t<tag>` (socket /run/docker/plugins/pynet-t<tag>.sock), link prefix
`pn-<tag>-`, nft table `pynet_t<tag>`, its own state dir. TAG is fixed for a
test session, so the leak check knows what to look for.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from pynet.client import UnixHTTPConnection, request  # noqa: E402

TAG = os.environ.get("PYNET_TEST_TAG") or "".join(random.choices(string.ascii_lowercase, k=1)) + "".join(
    random.choices(string.ascii_lowercase + string.digits, k=1))
os.environ["PYNET_TEST_TAG"] = TAG  # subprocesses (and xdist workers) share it
PREFIX = f"pn-{TAG}-"
TABLE = f"pynet_t{TAG}"
DRIVER = f"pynet-t{TAG}"
NS_PREFIX = f"pnt{TAG}"
PYNET = str(Path(sys.executable).parent / "pynet")
DOCKER = "/usr/bin/docker"


def sh(*args: str, check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command (never through a shell); raise with its output when it fails."""
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return sh(DOCKER, *args, check=check, timeout=timeout)


def ns_name(label: str) -> str:
    return f"{NS_PREFIX}-{label}"


class Netns:
    """A network namespace the test made; removed (with its links) on close."""

    def __init__(self, label: str):
        self.name = ns_name(label)
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "netns", "add", self.name)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.name, *args, check=check, timeout=timeout)

    def close(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)


class Daemon:
    """A pynet daemon run as a subprocess, optionally inside a netns."""

    def __init__(self, name: str = DRIVER, netns: str | None = None, state_dir: str | None = None,
                 sock_dir: str = "/run/docker/plugins", extra_env: dict | None = None):
        self.name = name
        self.netns = netns
        self.socket = f"{sock_dir}/{name}.sock"
        self.state_dir = state_dir or tempfile.mkdtemp(prefix=f"pynet-{TAG}-state-")
        self.log_path = Path(self.state_dir) / "daemon.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "PYNET_SOCKET": self.socket,
            "PYNET_STATE_DIR": self.state_dir,
            "PYNET_LINK_PREFIX": PREFIX,
            "PYNET_TABLE": TABLE,
            "PYNET_LOG_LEVEL": "debug",
            "PYNET_FIREWALL_CHECK_INTERVAL": "1",
            "PYNET_DHCP_RENEW_AFTER": "3",  # renew DHCP leases every 3 s, so tests see renewals
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20) -> "Daemon":
        cmd = [PYNET, "serve"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pynet exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.call("/Plugin.Activate", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"pynet did not answer on {self.socket}:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def call(self, path: str, body=None, raw: bytes | None = None, timeout: float = 30,
             method: str = "POST", headers: dict | None = None) -> tuple[int, object]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        return request(self.socket, method, path, data, headers, timeout)

    def ok(self, path: str, body=None):
        status, doc = self.call(path, body)
        assert status == 200, f"{path} -> {status} {doc}\n{self.log()}"
        return doc

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def cleanup_state(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)


def wait_for(fn, timeout: float = 15, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, OSError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def free_socket_path() -> str:
    return f"/run/docker/plugins/{DRIVER}.sock"


def retired_groups(prefix: str) -> tuple[int, int]:
    """The netdev groups of the links (and bridges) that the daemon with link prefix `prefix` retired
    (plugin/pynet/kernel/reaper.py: retired_group; the same formula, not imported: tests see the wire)."""
    g = 0x50000000 | (zlib.crc32(prefix.encode()) & 0x0FFFFFFE)
    return g, g + 1


def _named(out: str, prefix: str) -> list[str]:
    return [n for n in (line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()) if n.startswith(prefix)]


def reaped(prefix: str = PREFIX, netns: str | None = None, timeout: float = 6.0) -> None:
    """Waits (at most `timeout`) for this daemon's retired links (down, in its retired groups) to be
    unregistered: its reaper does that in the background, within MAX_WAIT (2 s) of the call, bridges one
    at a time. Other sessions' are in other groups; a killed daemon's stay (until its next start), and are
    then listed like any link."""
    cmds = [["ip", "-o", "link", "show", "group", str(g)] for g in retired_groups(prefix)]
    if netns is not None:
        for cmd in cmds:
            cmd[1:1] = ["-n", netns]
    deadline = time.monotonic() + timeout
    while True:
        left = [n for cmd in cmds for n in _named(sh(*cmd, check=False).stdout, prefix)]
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def links_with_prefix(prefix: str = PREFIX, netns: str | None = None) -> list[str]:
    """After the reaper: a link retired by a delete is gone for every check (it carries nothing meanwhile)."""
    reaped(prefix, netns)
    cmd = ["ip", "-o", "link", "show"] if netns is None else ["ip", "-n", netns, "-o", "link", "show"]
    out = sh(*cmd, check=False).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(prefix):
            names.append(name)
    return names


def tcp_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
