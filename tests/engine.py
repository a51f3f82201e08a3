"""The Docker engine under test, and the only place tests (and the bench) control it.

PYNET_ENGINE selects it (the Makefile sets it; default 20):
  20  the system dockerd, Docker 20.10 from Debian 12, /var/run/docker.sock, host network namespace
  28  Docker 28 from Debian unstable, run side by side by scripts/engine.sh: its own socket and
      its own network namespace (why: scripts/engine.sh's header)

activate() makes every later `docker` command of this process and its children talk to that
engine (DOCKER_HOST) and, for 28, moves the process into the engine's network namespace, where
its containers, docker0 and firewall are: links, nft tables, DOCKER-USER and published ports are
then checked where that engine's host would see them. Start/stop/restart go through
scripts/engine.sh, the same commands a person would type.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_SH = str(ROOT / "scripts" / "engine.sh")
DOCKER = "/usr/bin/docker"

ENGINE = os.environ.get("PYNET_ENGINE") or "20"
if ENGINE not in ("20", "28"):
    raise SystemExit(f"PYNET_ENGINE={ENGINE!r}: use 20 (system Docker 20.10) or 28 (Docker 28, scripts/engine.sh)")

_SOCKETS = {"20": "/var/run/docker.sock", "28": "/run/pynet-engine/docker28.sock"}
SOCKET = _SOCKETS[ENGINE]
DOCKER_HOST = f"unix://{SOCKET}"
NETNS = "pynet-engine28" if ENGINE == "28" else None
LOG = "/var/log/pynet-engine-docker28.log" if ENGINE == "28" else "/var/log/pynet-dockerd.log"
COMPOSE = "/var/cache/pynet/engines/docker28/docker-compose"  # Compose 2.x from Debian unstable (fetch 28)

_host_ns: tuple[int, int] | None = None  # fds of the host's net and mount namespaces once activate() left them
_changed = False  # this process restarted the engine with extra flags and has not put it back yet


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def in_engine_netns() -> bool:
    if NETNS is None:
        return True
    try:
        return _netns_inode("/proc/self/ns/net") == _netns_inode(f"/run/netns/{NETNS}")
    except OSError:
        return False


def activate() -> None:
    """DOCKER_HOST for this process and its children; for 28, enter its network namespace.

    Call it before any thread is started (pytest_configure): setns() and unshare() act on the
    calling thread only, and unshare(CLONE_NEWNS) refuses a process with threads.
    """
    os.environ["PYNET_ENGINE"] = ENGINE
    os.environ["DOCKER_HOST"] = DOCKER_HOST
    if NETNS is None or in_engine_netns():
        return
    path = f"/run/netns/{NETNS}"
    if not os.path.exists(path):
        raise SystemExit(f"Docker {ENGINE}'s network namespace {NETNS} does not exist: "
                         f"run `bash scripts/engine.sh start {ENGINE}` (make test ENGINE={ENGINE} does)")
    if threading.active_count() != 1:
        raise SystemExit("tests/engine.py: activate() must run before any thread starts (setns is per thread)")
    global _host_ns
    # The host's namespaces stay reachable: scripts/engine.sh (restarts) must run there.
    _host_ns = (os.open("/proc/self/ns/net", os.O_RDONLY), os.open("/proc/self/ns/mnt", os.O_RDONLY))
    fd = os.open(path, os.O_RDONLY)
    try:
        _libc_call("setns", fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    assert in_engine_netns()
    _own_sysfs()


CLONE_NEWNET, CLONE_NEWNS, MNT_DETACH = 0x40000000, 0x00020000, 2
_libc = ctypes.CDLL(None, use_errno=True)


def _libc_call(name: str, *args) -> None:
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"tests/engine.py: {name}{args}: {os.strerror(err)}")


def _own_sysfs() -> None:
    """A mount namespace whose /sys shows the engine's network namespace, as `ip netns exec` gives.

    /sys/class/net (read by tests, and by anything pynet may read there) is per network namespace
    only as of the sysfs mount, so the process gets its own mount namespace with a fresh sysfs. The
    rest stays the host's: Docker 28's netns files are under a shared mount (scripts/engine.sh), so
    the ones it makes later appear here too. The copies of other private netns mounts (Docker 20.10's
    /run/docker/netns/*) are dropped at once: kept here, they would keep those namespaces, and the
    links in them, alive after their containers are gone.
    """
    _libc_call("unshare", CLONE_NEWNS)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if tail.split()[0] == "nsfs" and not any(f.startswith("shared:") for f in fields[6:]):
            target = fields[4].encode().decode("unicode_escape").encode()
            _libc.umount2(target, MNT_DETACH)  # best effort: one that is already gone is fine
    _libc_call("mount", b"sysfs", b"/sys", b"sysfs", 0, None)


def engine_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """scripts/engine.sh, in the host's namespaces; raises with its output when it fails."""
    p = in_host("bash", ENGINE_SH, *args, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"scripts/engine.sh {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def in_host(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a command in the host's network and mount namespaces (where the system dockerd is)."""
    fds: tuple[int, ...] = ()
    if _host_ns:
        fds = _host_ns
        cmd = ("nsenter", f"--net=/proc/self/fd/{fds[0]}", f"--mount=/proc/self/fd/{fds[1]}", "--") + cmd
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, pass_fds=fds)


def with_host_mounts(cmd: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """CMD (and the fds to pass) run in the host's mount namespace, in this process's network namespace:
    for a dockerd started from a test (tests/e2e/private_engine.py), which needs the host's /sys/fs/cgroup,
    hidden in this process's own /sys (_own_sysfs)."""
    if not _host_ns:
        return cmd, ()
    return ["nsenter", f"--mount=/proc/self/fd/{_host_ns[1]}", "--"] + cmd, (_host_ns[1],)


def remove_private_engine(name: str) -> None:
    """What a test's own dockerd (tests/e2e/private_engine.py) leaves once stopped, by its NAME (its roots
    /run/NAME and /var/lib/NAME, its cgroup NAME): the mounts below its roots (overlay, shm, netns files)
    first, then its empty cgroups (v2, and v1 hierarchies), where dockerd ran: in the host's mount
    namespace, as a session on Docker 28 has its own /sys (no cgroups) and mounts. Then the roots."""
    roots = (Path("/var/lib") / name, Path("/run") / name)
    script = (f"for root in {roots[0]} {roots[1]}; do"
              " findmnt -rno TARGET | grep \"^$root/\" | sort -r | xargs -r -n1 umount -l; done;"
              f" for base in /sys/fs/cgroup/{name} /sys/fs/cgroup/*/{name}; do"
              " [ -d \"$base\" ] && find \"$base\" -depth -type d -exec rmdir {} + 2>/dev/null; done; true")
    cmd, fds = with_host_mounts(["sh", "-c", script])
    subprocess.run(cmd, pass_fds=fds, capture_output=True, timeout=60)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def answers() -> bool:
    env = dict(os.environ, DOCKER_HOST=DOCKER_HOST)
    return subprocess.run([DOCKER, "info"], capture_output=True, env=env, timeout=60).returncode == 0


def version() -> str:
    """'28.5.2+dfsg4 (API 1.51)', or why not."""
    env = dict(os.environ, DOCKER_HOST=DOCKER_HOST)
    p = subprocess.run([DOCKER, "version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
                       capture_output=True, text=True, env=env, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else f"not answering on {SOCKET}"


def describe() -> str:
    where = f", netns {NETNS}" if NETNS else ", host netns"
    return f"Docker engine {ENGINE}: {version()} on {DOCKER_HOST}{where}"


def compose_version() -> str:
    p = subprocess.run([COMPOSE, "version", "--short"], capture_output=True, text=True, timeout=30) \
        if os.path.exists(COMPOSE) else None
    return p.stdout.strip() if p and p.returncode == 0 else "not fetched (scripts/engine.sh fetch 28)"


def compose_binary() -> str:
    """The docker-compose binary; fetched from Debian unstable (with Docker 28) when missing."""
    if not os.path.exists(COMPOSE):
        engine_sh("compose", timeout=600)
    return COMPOSE


def pid() -> int | None:
    pidfile = "/run/pynet-engine/docker28.pid" if ENGINE == "28" else "/var/run/docker.pid"
    try:
        p = int(Path(pidfile).read_text().strip())
        os.kill(p, 0)
        return p
    except (OSError, ValueError):
        return None


def start(*flags: str) -> None:
    engine_sh("start", ENGINE, *flags)


def stop() -> None:
    """Stops the engine under test. Start it again (start(), or the session guard does)."""
    engine_sh("stop", ENGINE)


def restart(*flags: str) -> None:
    """Restart the engine under test with extra dockerd flags; no flags = back to normal.

    If it does not come up with the flags, engine.sh starts it normally again and this raises.
    """
    global _changed
    try:
        engine_sh("restart", ENGINE, *flags)
    finally:
        _changed = bool(flags)


@contextlib.contextmanager
def flags(*extra: str):
    """with engine.flags("--live-restore"): ...  (normal again afterwards, even when the body fails)"""
    restart(*extra)
    try:
        yield
    finally:
        restart()


def ensure_normal() -> None:
    """Session guard: the engine runs, with the flags it had before this session changed them."""
    if _changed or not answers():
        restart()
