"""kill -9 at every step of every call (fault points), with a real dockerd.

pynet is started with PYNET_FAULT=<call>:<step> and SIGKILLs itself there,
between two of the call's effects (kernel, firewall, state). The test restarts
it at once, as a supervisor (or Docker, for a managed plugin) would. Docker's
plugin client does retry a failed request, but with an EMPTY body (its request
reader is already consumed), so the retry is an error; create calls then fail
and the user's next command is the retry, while delete calls succeed anyway
(Docker only logs a driver's error on DeleteNetwork/DeleteEndpoint). Either
way, after the restart the state and the kernel must agree, and the next
command must leave a working network.
"""

from __future__ import annotations

import json
import threading

import pytest

from conftest import IMAGE
from lib import DOCKER, NS_PREFIX, PREFIX, TABLE, TAG, docker, links_with_prefix, sh, wait_for
from test_ports import PAGE, fetch

import pynet.faults as faults

SUBNET, GATEWAY = "10.213.0.0/24", "10.213.0.1"
OUTCOMES: dict[str, str] = {}


def restart_with_fault(daemon, point: str | None) -> None:
    daemon.stop()
    if point:
        daemon.extra_env["PYNET_FAULT"] = point
    else:
        daemon.extra_env.pop("PYNET_FAULT", None)
    daemon.start()


def crash_during(daemon, point: str, *cmd: str) -> tuple[bool, str]:
    """Run a docker command that hits the fault; restart pynet when it dies. -> (command ok, stderr)."""
    restart_with_fault(daemon, point)
    result: dict = {}

    def run():
        result["p"] = sh(DOCKER, *cmd, check=False, timeout=150)

    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: daemon.proc.poll() is not None or not t.is_alive(), timeout=60, what=f"pynet to die at {point}")
    assert daemon.proc.poll() is not None, f"docker {' '.join(cmd)} ended without reaching {point}: {result['p']}"
    assert daemon.proc.returncode == -9, daemon.log()
    assert f'"point": "{point}"' in daemon.log()
    daemon.extra_env.pop("PYNET_FAULT", None)
    daemon.start()
    t.join(180)
    assert not t.is_alive(), f"docker {' '.join(cmd)} hangs after the crash at {point}"
    p = result["p"]
    # Docker ignores a driver's error on deletes (and retries with an empty body): its command
    # then succeeds, and pynet must finish the delete itself at start (saved intent).
    OUTCOMES[point] = "docker command succeeded" if p.returncode == 0 else "docker command failed; user retried"
    print(f"crash at {point}: {OUTCOMES[point]}")
    return p.returncode == 0, p.stderr


def agree(daemon) -> None:
    """State and kernel agree: no leftovers, every network's links and ports in place, no extra ports."""
    status, st = daemon.call("/pynet/v1/status", method="GET")
    assert status == 200, st
    assert st["leftovers_now"] == [] and st["state_problems"] == [], st
    _, nets = daemon.call("/pynet/v1/networks", method="GET")
    for n in nets:
        if n["bridge"]:
            assert sh("ip", "link", "show", n["bridge"], check=False).returncode == 0, n
    _, ports = daemon.call("/pynet/v1/ports", method="GET")
    elements = 0
    if nets:
        for name in ("pub4", "pub6", "pubany4", "pubany6"):
            doc = json.loads(sh("nft", "-j", "list", "map", "inet", TABLE, name).stdout)
            for item in doc["nftables"]:
                if "map" in item:
                    elements += len(item["map"].get("elem", []))
    assert elements == len(ports), (ports, elements)
    assert set(links_with_prefix()) <= set(expected_links(daemon)), (links_with_prefix(), expected_links(daemon))


def expected_links(daemon) -> list[str]:
    _, nets = daemon.call("/pynet/v1/networks", method="GET")
    names = []
    for n in nets:
        _, doc = daemon.call(f"/pynet/v1/networks/{n['id']}", method="GET")
        names.append(doc["bridge"])
        for ep in doc["endpoints"]:
            names += [ep.get("host_if", ""), ep.get("peer_if", "")]
    return [x for x in names if x]


def net_name(label: str) -> str:
    return f"{NS_PREFIX}-{label}"


def create_args(name: str) -> tuple[str, ...]:
    from lib import DRIVER
    return ("network", "create", "-d", DRIVER, "--subnet", SUBNET, "--gateway", GATEWAY, name)


def run_args(name: str, net: str, port: int) -> tuple[str, ...]:
    return ("run", "-d", "--name", name, "--label", f"pynet-test={TAG}", "--net", net, "-p", f"{port}:80",
            IMAGE, "httpd", "-f", "-p", "80")


def by_call(call: str) -> list[str]:
    return [p for p in faults.POINTS if p.startswith(call + ":")]


@pytest.mark.parametrize("point", by_call("create_network"))
def test_crash_in_create_network(point, nets, ctrs, daemon):
    name = net_name("crn")
    ok, err = crash_during(daemon, point, *create_args(name))
    agree(daemon)
    if not ok:
        docker(*create_args(name))  # the user's retry
    nets.made.append(name)
    agree(daemon)
    out = ctrs.run("crnc", "--net", name, IMAGE, "ping", "-c1", "-W2", GATEWAY, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("point", by_call("delete_network"))
def test_crash_in_delete_network(point, nets, daemon):
    name = nets.create("crd", "--subnet", SUBNET, "--gateway", GATEWAY)
    bridge = [n for n in links_with_prefix() if n.startswith(PREFIX + "n")]
    assert len(bridge) == 1
    ok, err = crash_during(daemon, point, "network", "rm", name)
    agree(daemon)
    if not ok:
        docker("network", "rm", name)
    nets.made.remove(name)
    agree(daemon)
    assert links_with_prefix() == [], daemon.log()
    _, state = daemon.call("/pynet/v1/networks", method="GET")
    assert state == []


@pytest.mark.parametrize("point", by_call("create_endpoint") + by_call("join") + by_call("program_external"))
def test_crash_in_container_start(point, nets, ctrs, daemon):
    net = nets.create("crc", "--subnet", SUBNET, "--gateway", GATEWAY)
    name = f"{NS_PREFIX}-crcweb"
    ctrs.made.append(name)
    ok, err = crash_during(daemon, point, *run_args(name, net, 18601))
    agree(daemon)
    if not ok:
        sh(DOCKER, "rm", "-f", name, check=False)
        docker(*run_args(name, net, 18601))
    agree(daemon)
    wait_for(lambda: PAGE in (fetch("http://127.0.0.1:18601/") or ""), timeout=10, what="published port answers")
    docker("rm", "-f", name)
    agree(daemon)
    _, ports = daemon.call("/pynet/v1/ports", method="GET")
    assert ports == []


@pytest.mark.parametrize("point", by_call("delete_endpoint") + by_call("revoke_external"))
def test_crash_in_container_removal(point, nets, ctrs, daemon):
    net = nets.create("crr", "--subnet", SUBNET, "--gateway", GATEWAY)
    name = ctrs.start("crrweb", "--net", net, "-p", "18602:80", IMAGE, "httpd", "-f", "-p", "80")
    # httpd may not listen yet when `docker run -d` returns (seen on a loaded machine)
    wait_for(lambda: PAGE in (fetch("http://127.0.0.1:18602/") or ""), timeout=10, what="published port answers")
    ok, err = crash_during(daemon, point, "rm", "-f", name)
    if not ok:
        docker("rm", "-f", name)
    ctrs.made.remove(name)
    agree(daemon)
    # The port and the address are free again: a new container takes both.
    ip = "10.213.0.2"
    again = ctrs.start("crrweb2", "--net", net, "--ip", ip, "-p", "18602:80", IMAGE, "httpd", "-f", "-p", "80")
    wait_for(lambda: PAGE in (fetch("http://127.0.0.1:18602/") or ""), timeout=10, what="port answers again")
    docker("rm", "-f", again)
    ctrs.made.remove(again)
    agree(daemon)
    _, doc = daemon.call("/pynet/v1/networks", method="GET")
    assert all(n["endpoints"] == 0 for n in doc), doc
