"""The pynet daemon under test (its own socket, state dir, link prefix and table) and the bodies of
the protocol calls Docker would send it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import PREFIX, PYNET, ROOT, SOCK, STATE_DIR, TABLE, BenchError, rss_kb

sys.path.insert(0, str(ROOT / "plugin"))
from pynet.client import UnixHTTPConnection, request  # noqa: E402


class Pynetd:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(STATE_DIR + ".log")

    @staticmethod
    def someone_answers() -> bool:
        """Does a daemon already answer on the bench's socket (another `make bench`)?"""
        try:
            conn = UnixHTTPConnection(SOCK, 2)
            conn.request("POST", "/Plugin.Activate", body=b"")
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

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

    def status(self) -> dict:
        return self.ok("/pynet/v1/status", method="GET")

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


def _port_options(host_port: int) -> dict:
    """Container port 80/tcp, published on host_port."""
    return {"com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
            "com.docker.network.portmap": [{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": host_port,
                                            "HostPortEnd": host_port}]}


def ep_body(net_id: str, ep_id: str, address: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id,
            "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
            "Options": _port_options(host_port)}


def join_body(net_id: str, ep_id: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id, "SandboxKey": f"/var/run/docker/netns/{ep_id[:12]}",
            "Options": _port_options(host_port)}


def ext_body(net_id: str, ep_id: str, host_port: int) -> dict:
    return {"NetworkID": net_id, "EndpointID": ep_id, "Options": _port_options(host_port)}


def ep_ids(net_id: str, ep_id: str) -> dict:
    """The body of the calls that name only the endpoint (Leave, DeleteEndpoint, Revoke...)."""
    return {"NetworkID": net_id, "EndpointID": ep_id}


def attach(d: Pynetd, net_id: str, ep_id: str, address: str, host_port: int) -> None:
    """What Docker asks for `docker run -p host_port:80` on a pynet network: endpoint, join, ports."""
    d.ok("/NetworkDriver.CreateEndpoint", ep_body(net_id, ep_id, address, host_port))
    d.ok("/NetworkDriver.Join", join_body(net_id, ep_id, host_port))
    d.ok("/NetworkDriver.ProgramExternalConnectivity", ext_body(net_id, ep_id, host_port))
