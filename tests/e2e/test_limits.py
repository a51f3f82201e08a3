"""Bandwidth limits with real Docker: a limited network measured with iperf3, `docker network connect
--driver-opt`, driver options at container create (what `docker run --network name=N,driver-opt=k=v`
sends), `pynet limit` at run time, kill -9 of pynet, dockerd restarts, and nothing left after removal.

iperf3 is the host's, run in a container's network namespace (nsenter), against a server on the
Docker host bound to the network's gateway address.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import iperf
from engine import SOCKET as ENGINE_SOCKET
from conftest import IMAGE
from lib import DOCKER, DRIVER, NS_PREFIX, PREFIX, PYNET, TABLE, Daemon, docker, request, sh, wait_for
from private_engine import PrivateEngine

RATE = 40  # Mbit/s


def cpid(name: str, env=None) -> str:
    return subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True,
                          env=env, check=True).stdout.strip()


def gateway(net: str, env=None) -> str:
    out = subprocess.run([DOCKER, "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", net],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    return out.split("/")[0]


def measure(ctr: str, server_ip: str, env=None, port: int = 5291) -> tuple[float, float]:
    """(into the container, out of it) in Mbit/s."""
    client = ["nsenter", "-t", cpid(ctr, env), "-n"]
    return iperf.mbits(client, server_ip, reverse=True, port=port), iperf.mbits(client, server_ip, port=port)


def assert_within(got: tuple[float, float], want: tuple[float, float]) -> None:
    print(f"measured {got[0]:.1f} in, {got[1]:.1f} out (set {want})")
    for direction, g, w in zip(("ingress", "egress"), got, want):
        if w is None:
            assert g > 3 * RATE, f"{direction}: {g:.1f} Mbit/s, expected no limit"
        else:
            assert iperf.within(g, w), f"{direction}: {g:.1f} Mbit/s measured, {w} set (±10%)"


def cli(*args: str, socket: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYNET_SOCKET=socket or f"/run/docker/plugins/{DRIVER}.sock")
    return subprocess.run([PYNET, *args], env=env, capture_output=True, text=True, timeout=60)


def our_qdiscs(netns: str = "") -> list[str]:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + ["tc", "qdisc", "show"]
    return [line for line in sh(*cmd).stdout.splitlines() if " 706e: " in line and f" {PREFIX}" in line]


def netdev_table(netns: str = "", table: str = TABLE) -> bool:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + ["nft", "list", "table", "netdev", table]
    return sh(*cmd, check=False).returncode == 0


PORT = 5291  # the host's namespace is shared with other users of this machine: not iperf3's default


@pytest.fixture
def iperf_on():
    """start(ip): an iperf3 server on the host bound to ip (a network's gateway); gone after the test."""
    servers = []

    def start(ip: str) -> str:
        servers.append(iperf.server([], port=PORT, bind=ip))
        return ip
    yield start
    for p in servers:
        p.kill()
        p.wait(10)


def test_limited_network_override_runtime_and_removal(nets, ctrs, iperf_on):
    net = nets.create("lim", "-o", f"ingress_rate={RATE}mbit", "-o", f"egress_rate={RATE}mbit")
    gw = iperf_on(gateway(net))
    a = ctrs.start("lima", "--net", net, IMAGE, "sleep", "600")
    assert_within(measure(a, gw), (RATE, RATE))

    # docker network connect --driver-opt: this endpoint's own limits over the network's.
    b = ctrs.start("limb", "--net", net, IMAGE, "sleep", "600")
    docker("network", "disconnect", net, b)
    docker("network", "connect", "--driver-opt", "ingress_rate=20mbit", "--driver-opt", "egress_rate=none", net, b)
    assert_within(measure(b, gw), (20, None))
    # A bad value is refused by name at connect, and nothing is made.
    c = ctrs.start("limc", "--net", net, IMAGE, "sleep", "600")
    docker("network", "disconnect", net, c)
    p = docker("network", "connect", "--driver-opt", "egress_rate=fast", net, c, check=False)
    assert p.returncode != 0 and "egress_rate (--driver-opt egress_rate=...) must be a rate like" in p.stderr

    # pynet limit at run time: egress down to 10 Mbit/s, ingress off; `pynet limit` lists it.
    p = cli("limit", a, "egress_rate=10mbit", "ingress_rate=none")
    assert p.returncode == 0 and "10mbit (burst 64kb)" in p.stdout, p.stderr
    assert_within(measure(a, gw), (None, 10))
    listing = json.loads(cli("limit", "--json").stdout)
    assert sorted(d["limits"].get("egress_rate", "-") for d in listing) == ["-", "10mbit"]
    p = cli("limit", a, "egress_rate=lots")
    assert p.returncode != 0 and "option egress_rate (pynet limit egress_rate=...) must be a rate like" in p.stderr

    # Removal leaves no qdisc and no rule.
    docker("rm", "-f", a, b)
    assert our_qdiscs() == [] and not netdev_table()


def test_driver_opts_at_container_create(nets, ctrs, daemon):
    """`docker run --network name=N,driver-opt=k=v` (CLI 25+) sends EndpointsConfig.DriverOpts at create;
    the 20.10 CLI has no such syntax, but the 20.10 engine honours the API field (and re-sends the
    options at every start)."""
    net = nets.create("limapi")
    name = f"{NS_PREFIX}-limapi"
    body = {"Image": IMAGE, "Cmd": ["sleep", "600"], "Labels": {"pynet-test": os.environ["PYNET_TEST_TAG"]},
            "HostConfig": {"NetworkMode": net},
            "NetworkingConfig": {"EndpointsConfig": {net: {"DriverOpts": {"egress_rate": "5mbit"}}}}}
    status, doc = request(ENGINE_SOCKET, "POST", f"/v1.41/containers/create?name={name}",
                          json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 201, doc
    ctrs.made.append(name)
    docker("start", name)
    limits = json.loads(cli("limit", name, "--json").stdout)[0]
    assert limits["limits"]["egress_rate"] == "5mbit" and limits["overrides"] == {"egress_rate": "5mbit"}
    docker("restart", "-t", "0", name)  # a new endpoint: Docker sends the options again
    assert json.loads(cli("limit", name, "--json").stdout)[0]["limits"]["egress_rate"] == "5mbit"


def test_limits_survive_kill9(nets, ctrs, daemon, iperf_on):
    net = nets.create("limk9", "-o", "ingress_rate=30mbit")
    gw = iperf_on(gateway(net))
    a = ctrs.start("limk9", "--net", net, IMAGE, "sleep", "600")
    assert cli("limit", a, "egress_rate=15mbit").returncode == 0
    before = our_qdiscs()
    daemon.kill9()
    assert our_qdiscs() == before and netdev_table()  # the kernel keeps them without pynet
    daemon.start()
    assert our_qdiscs() == before
    assert json.loads(cli("limit", a, "--json").stdout)[0]["overrides"] == {"egress_rate": "15mbit"}
    assert_within(measure(a, gw), (30, 15))


@pytest.fixture
def engine(dockerd):
    """A private dockerd (restartable) and a pynet test daemon in its network namespace."""
    eng = PrivateEngine("limeng")
    pyd = None
    try:
        eng.start()
        eng.load_image()
        pyd = Daemon(name=f"{DRIVER}e", netns=eng.ns.name).start()
        yield eng, pyd
    finally:
        print(f"private engine: {eng.version}")
        eng.close()  # containers and networks first, while pynet still answers
        if pyd is not None:
            pyd.stop()
            pyd.cleanup_state()


def test_limits_survive_dockerd_restarts(engine):
    eng, pyd = engine
    env, ns = eng.env, eng.ns.name
    eng.docker("network", "create", "-d", pyd.name, "-o", "ingress_rate=30mbit", "limnet")
    gw = gateway("limnet", env)
    server = iperf.server(["ip", "netns", "exec", ns], port=5291)
    try:
        # A container with its own driver option (what `docker run --network name=N,driver-opt=...` sends).
        body = {"Image": IMAGE, "Cmd": ["sleep", "3600"], "HostConfig": {"NetworkMode": "limnet",
                                                                          "RestartPolicy": {"Name": "always"}},
                "NetworkingConfig": {"EndpointsConfig": {"limnet": {"DriverOpts": {"egress_rate": "15mbit"}}}}}
        status, doc = request(str(eng.sock), "POST", "/containers/create?name=limr", json.dumps(body).encode(),
                              {"Content-Type": "application/json"})
        assert status == 201, doc
        eng.docker("start", "limr")
        assert_within(measure("limr", gw, env), (30, 15))

        # A plain restart: Docker stops the container and starts it again with a new endpoint; the
        # network's and the driver option's limits come with it (Docker sends them again).
        eng.restart()
        wait_for(lambda: eng.docker("inspect", "-f", "{{.State.Running}}", "limr").stdout.strip() == "true",
                 timeout=60, what="container back after the dockerd restart")
        assert_within(measure("limr", gw, env), (30, 15))

        # With --live-restore the container and its endpoint live on: a `pynet limit` change too.
        eng.restart("--live-restore")
        # (`pynet limit NAME` asks the system dockerd for names: this engine's endpoint goes by ID.)
        net_id = eng.docker("network", "inspect", "-f", "{{.Id}}", "limnet").stdout.strip()
        ep_id = eng.docker("inspect", "-f", "{{.NetworkSettings.Networks.limnet.EndpointID}}", "limr").stdout.strip()
        assert pyd.ok("/pynet/v1/limits", {"NetworkID": net_id, "EndpointID": ep_id,
                                           "limits": {"ingress_rate": "10mbit"}})["limits"]["ingress_rate"] == "10mbit"
        pid = cpid("limr", env)
        eng.restart("--live-restore")
        assert cpid("limr", env) == pid  # the same container, not restarted
        assert_within(measure("limr", gw, env), (10, 15))
        eng.restart()  # back to normal: the container restarts, its override ends with its endpoint
        wait_for(lambda: eng.docker("inspect", "-f", "{{.State.Running}}", "limr").stdout.strip() == "true",
                 timeout=60, what="container back")
        doc = pyd.call("/pynet/v1/limits", method="GET")[1]
        assert [d["limits"]["ingress_rate"] for d in doc] == ["30mbit"]
        eng.docker("rm", "-f", "limr")
        assert our_qdiscs(ns) == [] and not netdev_table(ns)
    finally:
        server.kill()
        server.wait(10)
