"""A dockerd of the test's own, in a network namespace of its own: one a test may stop and restart.

The system dockerd serves every session on this machine and Docker 28 of scripts/engine.sh is
shared too, so neither is restarted for a test that needs a dockerd restart. This one runs the
way engine.sh runs Docker 28 (`nsenter --net`: mounts, PIDs and cgroups are the host's, so
/run/docker/plugins is the host's and a test daemon's socket there serves it): its own socket,
data root, exec root (its own containerd), containerd namespaces, cgroup parent and firewall.
Docker 28 (engine.sh's download) when it is there, else Debian's dockerd. Images come from the
system dockerd (`docker save | docker load`). Everything goes at close().
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import engine
from lib import DOCKER, TAG, Netns, sh, wait_for

D28 = Path("/var/cache/pynet/engines/docker28")


class PrivateEngine:
    def __init__(self, label: str = "pe"):
        self.label = label
        self.ns = Netns(label)
        self.run_dir = Path(f"/run/pynet-{TAG}-{label}")
        self.var_dir = Path(f"/var/lib/pynet-{TAG}-{label}")
        self.sock = self.run_dir / "docker.sock"
        self.pidfile = self.run_dir / "docker.pid"
        self.log = self.var_dir / "dockerd.log"
        self.cgroup = f"pynet-{TAG}-{label}"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")
        if (D28 / "dockerd28").exists() and sh(str(D28 / "dockerd28"), "--version", check=False).returncode == 0:
            self.dockerd, self.extra = str(D28 / "dockerd28"), ["--userland-proxy-path", str(D28 / "docker-proxy")]
        else:
            self.dockerd, self.extra = "/usr/sbin/dockerd", []
        self.version = sh(self.dockerd, "--version").stdout.strip()
        self.ns.run("sysctl", "-qw", "net.ipv4.ip_forward=0")  # as on a fresh host: Docker turns it on
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------ the engine
    def start(self, *flags: str) -> "PrivateEngine":
        for d in (self.run_dir / "exec", self.var_dir / "data"):
            d.mkdir(parents=True, exist_ok=True)
        # In the host's mount namespace: a session on Docker 28 has its own /sys, without the cgroup
        # mounts runc needs (tests/engine.py). nsenter opens the netns path before it switches.
        cmd, fds = engine.with_host_mounts(
            ["nsenter", f"--net=/run/netns/{self.ns.name}", "--", self.dockerd, "-H", f"unix://{self.sock}",
             "--pidfile", str(self.pidfile), "--data-root", str(self.var_dir / "data"),
             "--exec-root", str(self.run_dir / "exec"), "--containerd-namespace", self.cgroup,
             "--containerd-plugins-namespace", f"{self.cgroup}-plugins", "--cgroup-parent", f"/{self.cgroup}",
             "--shutdown-timeout", "1", *self.extra, *flags])
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True, pass_fds=fds)
        wait_for(lambda: self.docker("info", check=False).returncode == 0, timeout=60, interval=0.25,
                 what=f"private dockerd on {self.sock} ({self.log})")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nsenter exec'd dockerd: the process is dockerd itself
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def restart(self, *flags: str) -> None:
        self.stop()
        self.start(*flags)

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        p = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def load_image(self, image: str = "busybox:latest") -> None:
        save = subprocess.Popen([DOCKER, "save", image], stdout=subprocess.PIPE)
        load = subprocess.run([DOCKER, "load"], stdin=save.stdout, env=self.env, capture_output=True, text=True,
                              timeout=120)
        save.stdout.close()
        save.wait(60)
        assert load.returncode == 0, load.stderr

    # ------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.proc is not None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            for net in self.docker("network", "ls", "-q", "--filter", "type=custom", check=False).stdout.split():
                self.docker("network", "rm", net, check=False)
        self.stop()
        engine.remove_private_engine(self.cgroup)  # its roots and cgroup are all named so
        self.ns.close()
