"""A throwaway remote network driver that logs every call, to learn what a swarm sends a plugin.

    python3 tests/swarm_stub.py build DIR     a managed-plugin dir (DIR/rootfs + DIR/config.json):
                                             the rootfs of build/plugin (scripts/plugin.sh build),
                                             hard-linked, with this file as the entry point
    (in the plugin)  swarm_stub.py serve     answers on /run/docker/plugins/stub.sock

Settings (`docker plugin set`): STUB_SCOPE and STUB_CONNECTIVITY_SCOPE (GetCapabilities), and the
`state` mount's source: every request is appended there to calls.jsonl as one JSON line
{"t", "path", "body", "reply"}. The driver does the least that lets a task start: Join hands
Docker a veth it made (pyroute2 from pynet's venv), Leave/DeleteEndpoint delete it,
AllocateNetwork echoes the options it got; any call whose options (or -o options) hold `stub_fail`
is refused with an error, to see where the engine shows it. Not a product: evidence for research/swarm-global.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

SOCKET = "/run/docker/plugins/stub.sock"
LOG = Path("/log/calls.jsonl")
LOCK = threading.Lock()


def veth_names(eid: str) -> tuple[str, str]:
    return f"st{eid[:10]}", f"sc{eid[:10]}"


def handle(path: str, body: dict) -> dict:
    opts = body.get("Options") or {}
    if "stub_fail" in opts or "stub_fail" in (opts.get("com.docker.network.generic") or {}):
        raise RuntimeError(f"{path} refused: option stub_fail was given")
    if path == "/Plugin.Activate":
        return {"Implements": ["NetworkDriver"]}
    if path == "/NetworkDriver.GetCapabilities":
        return {"Scope": os.environ.get("STUB_SCOPE", "global"),
                "ConnectivityScope": os.environ.get("STUB_CONNECTIVITY_SCOPE", "global")}
    if path == "/NetworkDriver.AllocateNetwork":
        return {"Options": body.get("Options") or {}}
    if path == "/NetworkDriver.Join":
        from pyroute2 import IPRoute

        host, ctr = veth_names(body["EndpointID"])
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=host):
                ipr.link("add", ifname=host, kind="veth", peer=ctr)
            ipr.link("set", index=ipr.link_lookup(ifname=host)[0], state="up")
        return {"InterfaceName": {"SrcName": ctr, "DstPrefix": "eth"}}
    if path in ("/NetworkDriver.Leave", "/NetworkDriver.DeleteEndpoint"):
        from pyroute2 import IPRoute

        host, _ = veth_names(body["EndpointID"])
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=host)
            if idx:
                ipr.link("del", index=idx[0])
        return {}
    if path == "/NetworkDriver.EndpointOperInfo":
        return {"Value": {}}
    return {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        status = 200
        try:
            reply = handle(self.path, body)
        except Exception as e:  # noqa: BLE001 - a stub: report it to the engine and the log
            status, reply = 500, {"Err": f"stub: {e}"}
        with LOCK, LOG.open("a") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), "path": self.path, "body": body,
                                 "status": status, "reply": reply}) + "\n")
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("stub", 0)  # BaseHTTPRequestHandler wants a (host, port) client address


def serve() -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)
    Server(SOCKET, Handler).serve_forever()


CONFIG = {
    "Description": "swarm_stub: logs every remote-driver call (pynet research, not a product)",
    "Entrypoint": ["/opt/pynet/venv/bin/python", "/swarm_stub.py", "serve"],
    "WorkDir": "/",
    "Interface": {"Types": ["docker.networkdriver/1.0"], "Socket": "stub.sock"},
    "Network": {"Type": "host"},
    "Linux": {"Capabilities": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]},
    "Mounts": [{"Name": "state", "Description": "calls.jsonl goes here", "Source": "/var/tmp",
                "Destination": "/log", "Type": "bind", "Options": ["rbind", "rw"], "Settable": ["source"]}],
    "Env": [{"Name": "STUB_SCOPE", "Value": "global", "Settable": ["value"]},
            {"Name": "STUB_CONNECTIVITY_SCOPE", "Value": "global", "Settable": ["value"]}],
}


def build(out: str, src: str = "build/plugin/rootfs") -> None:
    if not Path(src, "opt/pynet/venv/bin/python").exists():
        sys.exit(f"no pynet plugin rootfs in {src}: run scripts/plugin.sh build first")
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    subprocess.run(["cp", "-al", src, f"{out}/rootfs"], check=True)
    dst = Path(out, "rootfs/swarm_stub.py")
    dst.unlink(missing_ok=True)
    shutil.copy(__file__, dst)
    Path(out, "config.json").write_text(json.dumps(CONFIG, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["build"] and len(sys.argv) == 3:
        build(sys.argv[2])
    else:
        sys.exit(__doc__)
