"""Talks to a running pynet daemon (plain or managed plugin) over its unix socket."""

from __future__ import annotations

import glob
import http.client
import json
import os
import socket

from .config import DEFAULT_SOCKET


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


MANAGED_GLOB = "/run/docker/plugins/*/pynet.sock"


def find_socket(explicit: str | None = None) -> str:
    """--socket, then $PYNET_SOCKET, then the legacy socket, then a managed plugin's.

    A managed plugin's socket is /run/docker/plugins/<plugin id>/pynet.sock (Docker
    mounts that directory at the plugin's /run/docker/plugins). One such socket is
    used as is; when there are several (another pynet plugin next to `pynet`, e.g.
    a test's), Docker is asked which plugin ID is `pynet:latest`, and that one wins.
    """
    for candidate in (explicit, os.environ.get("PYNET_SOCKET")):
        if candidate:
            return candidate
    if os.path.exists(DEFAULT_SOCKET):
        return DEFAULT_SOCKET
    managed = sorted(glob.glob(MANAGED_GLOB))
    if len(managed) == 1:
        return managed[0]
    if managed:
        by_id = {p.get("Id"): p.get("Name", "") for p in docker_get("/plugins") or [] if isinstance(p, dict)}
        named = [s for s in managed if by_id.get(os.path.basename(os.path.dirname(s))) == "pynet:latest"]
        if named:
            return named[0]
        raise SystemExit("pynet: several managed plugin sockets and none is plugin `pynet:latest`: "
                         + ", ".join(managed) + "; choose one with --socket")
    raise SystemExit(f"pynet: no daemon socket found ({DEFAULT_SOCKET} or {MANAGED_GLOB}); "
                     "is pynet running? (`make run`, or `make plugin` and `docker plugin ls`)")


def plugin_socket(name: str) -> str:
    """The socket of managed plugin NAME (`pynet-overlay`, or with its tag), asked of Docker."""
    ref = name if ":" in name else f"{name}:latest"
    for p in docker_get("/plugins") or []:
        if isinstance(p, dict) and p.get("Name") == ref and p.get("Id"):
            path = MANAGED_GLOB.replace("*", p["Id"])
            if os.path.exists(path):
                return path
            raise SystemExit(f"pynet: plugin {ref} has no socket at {path}; is it enabled?")
    raise SystemExit(f"pynet: Docker knows no plugin {ref} (docker plugin ls)")


def request(sock_path: str, method: str, path: str, data: bytes = b"", headers: dict | None = None,
            timeout: float = 30) -> tuple[int, object]:
    """One HTTP request on the daemon's socket: (status, JSON document, or the raw bytes if not JSON,
    or None if empty). OSError when the socket cannot be reached."""
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw


def call(sock_path: str, method: str, path: str, body: dict | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    try:
        status, doc = request(sock_path, method, path, data,
                              {"Content-Type": "application/json"} if data else {}, timeout)
    except OSError as e:
        raise SystemExit(f"pynet: cannot reach the daemon on {sock_path}: {e}") from None
    if doc is None:
        doc = {}
    if status != 200:
        msg = doc.get("Err") if isinstance(doc, dict) else \
            (doc.decode(errors="replace") if isinstance(doc, bytes) else str(doc))
        raise SystemExit(f"pynet: {msg}")
    if isinstance(doc, bytes):
        json.loads(doc)  # not JSON: fails as it always did
    return doc


def docker_socket() -> str:
    """Docker's API socket: $DOCKER_HOST when it is unix://PATH (as the docker CLI), else the default."""
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://"):] if host.startswith("unix://") else "/var/run/docker.sock"


def docker_get(path: str):
    """GET on Docker's API (API 1.41, Docker 20.10+); None when Docker cannot answer."""
    try:
        conn = UnixHTTPConnection(docker_socket(), timeout=10)
        conn.request("GET", "/v1.41" + path)
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        conn.close()
    except (OSError, ValueError):
        return None
    return doc if resp.status == 200 else None


def docker_endpoint_names(network_ids) -> dict[str, str]:
    """Endpoint ID -> container name, for the given networks."""
    out = {}
    for net_id in network_ids:
        doc = docker_get(f"/networks/{net_id}") or {}
        for info in (doc.get("Containers") or {}).values():
            out[info.get("EndpointID", "")] = info.get("Name", "")
    return out


def docker_network_names() -> dict[str, str]:
    """Network ID -> name, from Docker (best effort: the CLI may ask Docker, handlers never do)."""
    try:
        conn = UnixHTTPConnection(docker_socket(), timeout=5)
        conn.request("GET", "/v1.41/networks")
        resp = conn.getresponse()
        nets = json.loads(resp.read())
        conn.close()
        return {n["Id"]: n["Name"] for n in nets}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def live_refusals(status: dict, names: dict[str, str]) -> list[dict]:
    """AllocateNetwork refusals of swarm networks that still exist: Docker sends no FreeNetwork for
    a network it never allocated, so only Docker can tell that one was removed since (when it can
    be asked; else all are shown)."""
    refusals = status.get("cluster", {}).get("refusals", [])
    return [r for r in refusals if not names or r["network"] in names]
