"""What earlier test sessions left behind when they were killed (kill -9, a timeout, a lost machine).

A test session cleans up after itself even when its tests fail; a session that is killed cannot.
What it made then stays: links, namespaces, nft tables, DOCKER-USER rules, containers and networks
of its driver `pynet-t<tag>`, a daemon. Left there, it breaks later sessions on the same machine:
an outside veth of a dead session carries the same address as the next one's (198.51.100.1/24),
so the next session's traffic to "outside" goes to a namespace that no longer exists.

Each session registers its tag with its pid (register()); sweep() removes everything of the tags
whose session is not alive any more, in the current network namespace and on the engine under
test, and says what it removed. Sessions running at the same time keep their things: only tags
without a live session are swept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from engine import remove_private_engine
from lib import DOCKER, sh

REGISTRY = Path("/run/pynet-test/sessions")
PLUGINS = Path("/run/docker/plugins")
_TAG = r"[a-z][a-z0-9]"
LINK = re.compile(rf"^(?:pn-({_TAG})-|pnt({_TAG}))")  # pynet links pn-<tag>-*, test veths pnt<tag>*
NETNS = re.compile(rf"^pnt({_TAG})")
TABLE = re.compile(rf"^pynet_t({_TAG})$")
DRIVER = re.compile(rf"^pynet-t({_TAG})(?::latest)?$")
STATE = re.compile(rf"^pynet-({_TAG})-state-")
PRIVATE = re.compile(rf"^pynet-({_TAG})-(?!state-)")
USER_RULE = re.compile(rf'"pn-({_TAG})-\*"')


def register(tag: str) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    (REGISTRY / tag).write_text(str(os.getpid()))


def unregister(tag: str) -> None:
    try:
        if (REGISTRY / tag).read_text().strip() == str(os.getpid()):
            (REGISTRY / tag).unlink()
    except OSError:
        pass


def alive_tags() -> set[str]:
    alive = set()
    for f in REGISTRY.glob("*") if REGISTRY.is_dir() else ():
        try:
            pid = int(f.read_text().strip())
            os.kill(pid, 0)
            alive.add(f.name)
        except (OSError, ValueError):
            f.unlink(missing_ok=True)
    return alive


def sweep(tag: str, engine: bool = True) -> list[str]:
    """Remove what dead sessions left; returns what was removed (printed by the caller)."""
    alive = alive_tags() | {tag}

    def stale(m: re.Match | None) -> bool:
        return m is not None and next(g for g in m.groups() if g) not in alive

    removed: list[str] = []
    removed += _kill_daemons(alive)
    if engine:
        removed += _docker(alive)
    for name in _links():
        if stale(LINK.match(name)):
            sh("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if stale(NETNS.match(name)):
            sh("ip", "netns", "del", name, check=False)
            removed.append(f"netns {name}")
    for line in sh("nft", "list", "tables", check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and stale(TABLE.match(parts[2])):
            sh("nft", "delete", "table", parts[1], parts[2], check=False)
            removed.append(f"nft table {parts[1]} {parts[2]}")
    for fam in ("ip", "ip6"):
        out = sh("nft", "-a", "list", "chain", fam, "filter", "DOCKER-USER", check=False).stdout
        for line in out.splitlines():
            m = USER_RULE.search(line)
            handle = re.search(r"# handle (\d+)", line)
            if m and m.group(1) not in alive and handle:
                sh("nft", "delete", "rule", fam, "filter", "DOCKER-USER", "handle", handle.group(1), check=False)
                removed.append(f"DOCKER-USER ({fam}) rule for pn-{m.group(1)}-*")
    for rule_fam in ("-4", "-6"):
        for line in sh("ip", rule_fam, "rule", check=False).stdout.splitlines():
            m = re.search(rf"iif (pn-({_TAG})-\S+)", line)
            if m and m.group(2) not in alive:
                sh("ip", rule_fam, "rule", "del", *line.split(":", 1)[1].split(), check=False)
                removed.append(f"rule {line.strip()}")
    for sock in PLUGINS.glob("pynet-t*.sock"):
        if stale(DRIVER.match(sock.name[:-len(".sock")])):
            sock.unlink(missing_ok=True)
            removed.append(f"socket {sock}")
    for d in Path("/tmp").glob("pynet-*-state-*"):
        if stale(STATE.match(d.name)):
            shutil.rmtree(d, ignore_errors=True)
    private = {d.name for d in [*Path("/run").glob("pynet-*-*"), *Path("/var/lib").glob("pynet-*-*")]
               if stale(PRIVATE.match(d.name))}
    for name in sorted(private):  # tests/e2e/private_engine.py's roots and cgroup, by name
        remove_private_engine(name)
        removed.append(f"private dockerd's /run/{name}, /var/lib/{name}")
    return removed


def _links() -> list[str]:
    out = sh("ip", "-o", "link", "show", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _kill_daemons(alive: set[str]) -> list[str]:
    """pynet daemons, DHCP servers, peer servers started by dead sessions: they carry PYNET_TEST_TAG.
    Never an engine (a dockerd the tests restarted inherits the variable too)."""
    removed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = proc.joinpath("environ").read_bytes().split(b"\0")
            engine_like = proc.joinpath("comm").read_text().startswith(("dockerd", "containerd", "docker", "runc"))
            cmdline = proc.joinpath("cmdline").read_bytes()
        except OSError:
            continue
        tags = [e[len(b"PYNET_TEST_TAG="):].decode() for e in env if e.startswith(b"PYNET_TEST_TAG=")]
        if engine_like and not (tags and f"/run/pynet-{tags[0]}-".encode() in cmdline):
            continue  # only a test's private dockerd (tests/e2e/private_engine.py), by its run dir
        if tags and tags[0] not in alive and int(proc.name) != os.getpid():
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                removed.append(f"process {proc.name} of session {tags[0]}")
            except OSError:
                pass
    return removed


def _docker(alive: set[str]) -> list[str]:
    """Containers labelled by dead sessions, and networks of their drivers (through a stand-in driver
    that says yes to everything, since Docker asks the driver before it deletes a network)."""
    if sh(DOCKER, "info", "--format", "{{.ID}}", check=False, timeout=20).returncode != 0:
        return []
    out = sh(DOCKER, "network", "ls", "--format", "{{.ID}} {{.Driver}}", check=False).stdout
    by_driver: dict[str, list[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        m = DRIVER.match(parts[1]) if len(parts) == 2 else None
        if m and m.group(1) not in alive:
            by_driver.setdefault(parts[1].split(":")[0], []).append(parts[0])
    out = sh(DOCKER, "ps", "-a", "--filter", "label=pynet-test", "--format", '{{.ID}} {{.Label "pynet-test"}}',
             check=False).stdout
    ids = [line.split()[0] for line in out.splitlines() if len(line.split()) == 2 and line.split()[1] not in alive]
    removed = []
    with contextlib.ExitStack() as stands:
        for driver in by_driver:  # a container's removal asks its networks' drivers too
            stands.enter_context(_StandIn(driver))
        if ids:
            sh(DOCKER, "rm", "-f", *ids, check=False, timeout=120)
            removed += [f"container {i}" for i in ids]
        for driver, nets in by_driver.items():
            for net in nets:
                for c in sh(DOCKER, "network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$k}} {{end}}",
                            net, check=False).stdout.split():
                    sh(DOCKER, "network", "disconnect", "-f", net, c, check=False)
                sh(DOCKER, "network", "rm", net, check=False, timeout=60)
                removed.append(f"docker network {net} ({driver})")
    return removed


class _Yes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: nothing holds a handler thread open

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = {"/Plugin.Activate": {"Implements": ["NetworkDriver"]},
                 "/NetworkDriver.GetCapabilities": {"Scope": "local", "ConnectivityScope": "local"}}
        body = json.dumps(reply.get(self.path, {})).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _StandIn:
    """A driver named like a dead session's that answers every call with success, while it lasts."""

    def __init__(self, driver: str):
        self.path = PLUGINS / f"{driver}.sock"

    def __enter__(self):
        PLUGINS.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.server = socketserver.ThreadingUnixStreamServer(str(self.path), _Yes)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)
