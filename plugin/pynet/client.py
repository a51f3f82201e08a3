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


def find_socket(explicit: str | None = None) -> str:
    """--socket, then $PYNET_SOCKET, then the legacy socket, then a managed plugin's."""
    for candidate in (explicit, os.environ.get("PYNET_SOCKET")):
        if candidate:
            return candidate
    if os.path.exists(DEFAULT_SOCKET):
        return DEFAULT_SOCKET
    managed = sorted(glob.glob("/run/docker/plugins/*/pynet.sock"))
    if managed:
        return managed[0]
    raise SystemExit(f"pynet: no daemon socket found ({DEFAULT_SOCKET} or /run/docker/plugins/*/pynet.sock); "
                     "is pynet running? (`make run`, or `docker plugin ls`)")


def call(sock_path: str, method: str, path: str, body: dict | None = None, timeout: float = 30):
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as e:
        raise SystemExit(f"pynet: cannot reach the daemon on {sock_path}: {e}") from None
    finally:
        conn.close()
    doc = json.loads(raw) if raw else {}
    if resp.status != 200:
        raise SystemExit(f"pynet: {doc.get('Err') if isinstance(doc, dict) else raw!r}")
    return doc


def docker_network_names() -> dict[str, str]:
    """Network ID -> name, from Docker (best effort: the CLI may ask Docker, handlers never do)."""
    try:
        conn = UnixHTTPConnection("/var/run/docker.sock", timeout=5)
        conn.request("GET", "/v1.41/networks")
        resp = conn.getresponse()
        nets = json.loads(resp.read())
        conn.close()
        return {n["Id"]: n["Name"] for n in nets}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
