"""The managed plugin, for real: built from the Dockerfile (scripts/plugin.sh),
created and enabled in the running dockerd, used by containers, disabled and
re-enabled, removed.

The plugin gets names no user's `pynet` plugin and no other test daemon uses:
plugin `pynet-t<tag>-plugin` (driver `pynet-t<tag>-plugin:latest` on Docker
20.10), link prefix `pn-<tag>-p` (so the session leak check's `pn-<tag>-*`
covers its links, while the session daemon's own link patterns do not match
them), nft table `pynet_t<tag>p`, and a state dir of its own (the `state`
mount's source). The first build of the rootfs takes a minute or two (debootstrap
of the base, apt, wheels); later runs reuse the image and build/plugin.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import engine
import statedb
from conftest import IMAGE
from lib import DOCKER, DRIVER, NS_PREFIX, PREFIX, PYNET, TABLE, TAG, UnixHTTPConnection, docker, sh, wait_for

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = f"{DRIVER}-plugin"
PDRIVER = f"{PLUGIN}:latest"  # Docker 20.10 wants the tag in -d
PPREFIX = PREFIX + "p"
PTABLE = TABLE + "p"
NET = f"{NS_PREFIX}-plugnet"
WEB = f"{NS_PREFIX}-plugweb"
WEB2 = f"{NS_PREFIX}-plugweb2"


def bounded(cmd: str, seconds: int = 5) -> str:
    """Keep sh alive as PID 1 so busybox `timeout` can stop wget (tests/testing.md)."""
    return f"timeout {seconds} {cmd}; exit $?"


def activated(sock: str) -> bool:
    """The plugin answers /Plugin.Activate as a network driver on its socket."""
    conn = UnixHTTPConnection(sock, timeout=2)
    try:
        conn.request("POST", "/Plugin.Activate", body=b"")
        resp = conn.getresponse()
        doc = json.loads(resp.read() or b"{}")
    except (OSError, ValueError):
        return False
    finally:
        conn.close()
    return resp.status == 200 and "NetworkDriver" in doc.get("Implements", [])


def enable_timed(sock: str) -> tuple[float, float]:
    """docker plugin enable; returns (seconds until the socket answered /Plugin.Activate,
    seconds until `docker plugin enable` returned)."""
    ready: list[float] = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            if activated(sock):
                ready.append(time.monotonic())
                return
            time.sleep(0.01)

    t0 = time.monotonic()
    th = threading.Thread(target=probe, daemon=True)
    th.start()
    try:
        docker("plugin", "enable", PLUGIN, timeout=60)
        returned = time.monotonic() - t0
        th.join(15)
    finally:
        stop.set()
    assert ready, f"plugin {PLUGIN} enabled but {sock} never answered /Plugin.Activate\n{plugin_log()}"
    return ready[0] - t0, returned


def plugin_log(lines: int = 40) -> str:
    """The plugin's stdout/stderr end up in dockerd's log, tagged plugin=<id>."""
    pid = sh(DOCKER, "plugin", "inspect", "-f", "{{.Id}}", PLUGIN, check=False).stdout.strip()
    for path in (engine.LOG, "/var/log/docker.log"):
        if pid and os.path.exists(path):
            with open(path, errors="replace") as fh:
                return "".join([line for line in fh if pid in line][-lines:])
    return ""


def host_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return r.read().decode()


def cli(sock: str | None, *args: str, env: dict | None = None) -> str:
    """The `pynet` CLI of the test venv, against SOCK (or by its own socket discovery)."""
    cmd = [PYNET] + (["--socket", sock] if sock else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def run_client(*args: str, check: bool = True):
    return docker("run", "--rm", "--label", f"pynet-test={TAG}", "--net", NET, *args, check=check)


def nothing_left(state_dir: str) -> list[str]:
    left = [f"link {n}" for n in sh("ip", "-o", "link", "show").stdout.split("\n")
            if n and n.split(":", 2)[1].strip().startswith(PPREFIX)]
    if any(line.split()[-1:] == [PTABLE] for line in sh("nft", "list", "tables").stdout.splitlines()):
        left.append(f"nft table inet {PTABLE}")
    for fam in ("ip", "ip6"):
        if f'"{PPREFIX}*"' in sh("nft", "list", "chain", fam, "filter", "DOCKER-USER", check=False).stdout:
            left.append(f"DOCKER-USER ({fam}) rule for {PPREFIX}*")
    if sh(DOCKER, "network", "inspect", NET, check=False).returncode == 0:
        left.append(f"docker network {NET}")
    if sh(DOCKER, "plugin", "inspect", PLUGIN, check=False).returncode == 0:
        left.append(f"plugin {PLUGIN}")
    try:
        left += [f"state of network {n}" for n in statedb.network_ids(state_dir)]
    except Exception as e:  # noqa: BLE001 -- a leftover report, never a reason to stop cleaning up
        left.append(f"state database {state_dir} unreadable: {e}")
    return left


def cleanup() -> None:
    """Best effort, in dependency order; only what this test made."""
    ids = sh(DOCKER, "ps", "-aq", "--filter", f"label=pynet-test={TAG}", "--filter", f"network={NET}",
             check=False).stdout.split()
    if ids:
        sh(DOCKER, "rm", "-f", *ids, check=False, timeout=120)
    sh(DOCKER, "rm", "-f", WEB, WEB2, check=False)
    sh(DOCKER, "network", "rm", NET, check=False)
    sh("bash", str(ROOT / "scripts/plugin.sh"), "rm", PLUGIN, check=False, timeout=120)


@pytest.fixture
def plugin(dockerd):
    """The plugin, created (not enabled) with test names; everything it made goes afterwards."""
    if len(PPREFIX) > 7:
        pytest.skip(f"test tag {TAG!r} too long for a plugin link prefix")
    state_dir = tempfile.mkdtemp(prefix=f"pynet-{TAG}-plugin-state-")
    cleanup()
    try:
        t0 = time.monotonic()
        sh("bash", str(ROOT / "scripts/plugin.sh"), "create", PLUGIN, timeout=1800)
        print(f"\nplugin build + create: {time.monotonic() - t0:.1f}s")
        docker("plugin", "set", PLUGIN, f"PYNET_LINK_PREFIX={PPREFIX}", f"PYNET_TABLE={PTABLE}",
               "PYNET_LOG_LEVEL=debug", "PYNET_FIREWALL_CHECK_INTERVAL=1", f"state.source={state_dir}")
        yield state_dir
    finally:
        cleanup()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_managed_plugin_lifecycle(plugin):
    state_dir = plugin
    pid = docker("plugin", "inspect", "-f", "{{.Id}}", PLUGIN).stdout.strip()
    sock = f"/run/docker/plugins/{pid}/pynet.sock"
    cfg = json.loads(docker("plugin", "inspect", "-f", "{{json .Config}}", PLUGIN).stdout)
    assert cfg["Interface"]["Socket"] == "pynet.sock"
    assert set(cfg["Interface"]["Types"]) == {"docker.networkdriver/1.0", "docker.ipamdriver/1.0"}
    rootfs = Path(ROOT / "build/plugin/rootfs")
    size = sh("du", "-sm", str(rootfs)).stdout.split()[0] if rootfs.is_dir() else "?"

    ready, returned = enable_timed(sock)
    print(f"rootfs {size} MB; enable -> /Plugin.Activate answered {ready:.2f}s, `docker plugin enable` "
          f"returned {returned:.2f}s")
    assert ready < 12.5, "Docker gives a managed plugin 12.5 s to listen"

    # A nat network of the plugin; name resolution between containers; a published port from the host.
    docker("network", "create", "-d", PDRIVER, NET)
    net_id = docker("network", "inspect", "-f", "{{.Id}}", NET).stdout.strip()
    docker("run", "-d", "--name", WEB, "--label", f"pynet-test={TAG}", "--net", NET, "-p", "80",
           IMAGE, "httpd", "-f", "-p", "80")
    assert "pynet test page" in run_client(IMAGE, "sh", "-c", bounded(f"wget -qO- http://{WEB}/")).stdout
    assert any(n.startswith(PPREFIX) for n in sh("ip", "-o", "link").stdout.split()), "no link with the set prefix"
    assert sh("nft", "list", "table", "inet", PTABLE, check=False).returncode == 0

    # The CLI reaches the managed plugin's socket; `pynet ports` tells the host port pynet chose.
    nets = json.loads(cli(sock, "ls", "--json"))
    assert [(n["id"], n["endpoints"]) for n in nets] == [(net_id, 1)]
    bindings = json.loads(cli(sock, "ports", WEB, "--json"))
    assert [(b["container_port"], b["proto"]) for b in bindings if b["family"] == 4] == [(80, "tcp")]
    port = next(b["host_port"] for b in bindings if b["family"] == 4)
    assert "pynet test page" in wait_for(lambda: host_get(port), timeout=10, what=f"host -> 127.0.0.1:{port}")
    assert WEB in cli(sock, "ports")
    # Without --socket: found by discovery when this plugin's socket is the only one around.
    env = {k: v for k, v in os.environ.items() if k != "PYNET_SOCKET"}
    if glob.glob("/run/docker/plugins/*/pynet.sock") == [sock] and not os.path.exists("/run/docker/plugins/pynet.sock"):
        assert json.loads(cli(None, "ls", "--json", env=env))[0]["id"] == net_id
    assert net_id in statedb.network_ids(state_dir), "state not in the `state` mount"

    # Disable (forced: the network is in use) and enable: state comes back from the state dir.
    assert docker("plugin", "disable", PLUGIN, check=False).returncode != 0, "disable of a plugin in use"
    docker("plugin", "disable", "-f", PLUGIN)
    assert "pynet test page" in host_get(port), "the kernel keeps forwarding while the plugin is down"
    ready2, returned2 = enable_timed(sock)
    print(f"re-enable with 1 network: /Plugin.Activate {ready2:.2f}s, `docker plugin enable` {returned2:.2f}s")
    nets = json.loads(cli(sock, "ls", "--json"))
    assert [(n["id"], n["endpoints"]) for n in nets] == [(net_id, 1)]
    assert [b["host_port"] for b in json.loads(cli(sock, "ports", WEB, "--json")) if b["family"] == 4] == [port]
    assert "pynet test page" in run_client(IMAGE, "sh", "-c", bounded(f"wget -qO- http://{WEB}/")).stdout
    assert "pynet test page" in host_get(port)

    # A dockerd restart: Docker starts the plugin before it restores containers, and a container with
    # a restart policy comes back networked, its published port included (state from the mount).
    docker("run", "-d", "--name", WEB2, "--restart", "always", "--label", f"pynet-test={TAG}", "--net", NET,
           "-p", "80", IMAGE, "httpd", "-f", "-p", "80")
    engine.restart()
    wait_for(lambda: docker("inspect", "-f", "{{.State.Running}}", WEB2).stdout.strip() == "true", timeout=60,
             what=f"{WEB2} running again after the dockerd restart")
    port2 = wait_for(lambda: next((b["host_port"] for b in json.loads(cli(sock, "ports", WEB2, "--json"))
                                   if b["family"] == 4), None), timeout=30, what="WEB2's port after restart")
    assert "pynet test page" in wait_for(lambda: host_get(port2), timeout=15, what=f"127.0.0.1:{port2}")
    assert "pynet test page" in run_client(IMAGE, "sh", "-c", bounded(f"wget -qO- http://{WEB2}/")).stdout

    # Remove everything: nothing of the plugin is left in the kernel, Docker or its state.
    docker("rm", "-f", WEB, WEB2)
    docker("network", "rm", NET)
    assert json.loads(cli(sock, "ls", "--json")) == []
    docker("plugin", "disable", PLUGIN)
    docker("plugin", "rm", PLUGIN)
    for _ in range(50):  # the plugin's clean stop drops its table and DOCKER-USER rules
        left = nothing_left(state_dir)
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"the plugin left: {', '.join(left)}"
