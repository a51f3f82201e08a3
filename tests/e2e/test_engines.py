"""The engine under test is the one PYNET_ENGINE names, and Docker 28 runs next to the system's
Docker 20.10 without either breaking the other (scripts/engine.sh, tests/engine.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

import engine
from conftest import IMAGE
from lib import DOCKER, sh, wait_for


def test_engine_under_test_is_the_selected_one(dockerd):
    version = engine.version()
    assert version.startswith({"20": "20.10.", "28": "28."}[engine.ENGINE]), version
    assert os.environ["DOCKER_HOST"] == engine.DOCKER_HOST
    if engine.ENGINE == "28":
        assert engine.in_engine_netns()
        # /sys is this namespace's (the run's own mount namespace): its docker0 and eth0, not the host's links
        names = set(os.listdir("/sys/class/net"))
        ip_names = {line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link").stdout.splitlines()}
        assert names == ip_names and {"docker0", "eth0"} <= names, (names, ip_names)


def docker_on(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = engine.in_host("env", f"DOCKER_HOST=unix://{sock}", DOCKER, *args, timeout=120)
    assert not check or p.returncode == 0, f"docker {' '.join(args)} on {sock}: {p.stderr}"
    return p


def forward_chain(host: bool) -> list[str]:
    p = engine.in_host("iptables", "-S", "FORWARD") if host else sh("iptables", "-S", "FORWARD")
    return p.stdout.splitlines()


def test_both_engines_side_by_side(dockerd):
    """Both answer; each has its own Docker firewall, intact; a container on each one's default bridge
    is networked and publishes a port there."""
    if engine.ENGINE != "28":
        pytest.skip("checked in the Docker 28 session (Docker 28 is started for it)")
    sys_sock = "/var/run/docker.sock"
    # (other sessions on this machine restart the system dockerd: give it a minute)
    wait_for(lambda: docker_on(sys_sock, "info", check=False).returncode == 0, timeout=60, what="system dockerd")
    assert docker_on(sys_sock, "version", "-f", "{{.Server.Version}}").stdout.startswith("20.10.")
    host = forward_chain(host=True)
    mine = forward_chain(host=False)
    # host: Docker 20.10's layout, untouched by Docker 28 (which would delete the isolation jump)
    assert host[0] == "-P FORWARD DROP" and host[1] == "-A FORWARD -j DOCKER-USER", host
    assert "-A FORWARD -j DOCKER-ISOLATION-STAGE-1" in host and not any("DOCKER-FORWARD" in r for r in host), host
    # Docker 28's namespace: its own layout
    assert mine[:3] == ["-P FORWARD DROP", "-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-FORWARD"], mine
    label = f"pynet-test={os.environ['PYNET_TEST_TAG']}"
    for sock, port in ((sys_sock, 18231), (engine.SOCKET, 18232)):
        name = f"pnt-engines-{port}"
        docker_on(sock, "rm", "-f", name, check=False)
        try:
            docker_on(sock, "run", "-d", "--name", name, "--label", label, "-p", f"{port}:80", IMAGE,
                      "httpd", "-f", "-p", "80")
            gw = docker_on(sock, "inspect", "-f", "{{.NetworkSettings.Gateway}}", name).stdout.strip()
            assert docker_on(sock, "exec", name, "ping", "-c1", "-W2", gw, check=False).returncode == 0, (sock, gw)
            # the published port, from that engine's host (127.0.0.1: docker-proxy; DNAT rules in its chain)
            where = engine.in_host if sock == sys_sock else (lambda *c, **k: sh(*c, check=False))
            page = ""
            for _ in range(20):
                page = where("busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/", timeout=10).stdout
                if "pynet test page" in page:
                    break
            assert "pynet test page" in page, (sock, port)
        finally:
            docker_on(sock, "rm", "-f", name, check=False)
