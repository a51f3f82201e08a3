"""Docker Compose 2.x (Debian unstable's, scripts/engine.sh fetch 28) with pynet networks, on the engine
under test: the compose files a user would write, with the test daemon's driver (lib.DRIVER).

Every project is named pnt<tag>-<label> and its services carry the pynet-test=<tag> label, so the
session leak check sees whatever a failed test leaves; each test's fixture runs `compose down` and
then removes what is left by the project's labels.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

import engine
from conftest import IMAGE, OUT4, OUT4_HOST, OUT6, OUT6_HOST
from lan import CLIENT, ROUTER, SUBNET
from lib import DOCKER, DRIVER, NS_PREFIX, PYNET, TAG, docker, links_with_prefix, sh, wait_for
from test_l2bridge import parent_mac
from test_nat import bounded
from test_ports import PAGE, fetch
from test_transparent import lan  # noqa: F401 - fixture

HTTPD = "httpd -f -p 80"


class Project:
    """One compose project: its file, `compose` commands, and cleanup by its labels."""

    def __init__(self, label: str, doc: dict, workdir):
        self.name = f"{NS_PREFIX}-{label}"
        for svc in doc.get("services", {}).values():
            svc.setdefault("image", IMAGE)
            svc.setdefault("stop_grace_period", "1s")  # busybox as PID 1 ignores SIGTERM
            svc.setdefault("labels", {})["pynet-test"] = TAG
        self.text = yaml.safe_dump(doc, sort_keys=False)
        self.file = workdir / f"{self.name}.yaml"
        self.file.write_text(self.text)

    def compose(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        cmd = [engine.compose_binary(), "-p", self.name, "-f", str(self.file), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} -> {p.returncode} on Docker {engine.ENGINE}\n"
                                 f"stderr: {p.stderr}\nstdout: {p.stdout}\ncompose file:\n{self.text}")
        return p

    def up(self, *args: str) -> None:
        self.compose("up", "-d", *args)

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.name}-{service}-{index}"

    def network(self, net: str) -> str:
        return f"{self.name}_{net}"

    def containers(self, service: str | None = None) -> list[str]:
        flt = ["--filter", f"label=com.docker.compose.project={self.name}"]
        if service:
            flt += ["--filter", f"label=com.docker.compose.service={service}"]
        return sorted(sh(DOCKER, "ps", "-a", "--format", "{{.Names}}", *flt).stdout.split())

    def networks(self) -> list[str]:
        return sh(DOCKER, "network", "ls", "--format", "{{.Name}}",
                  "--filter", f"label=com.docker.compose.project={self.name}").stdout.split()

    def cleanup(self) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "1", check=False)
        left = sh(DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}",
                  check=False).stdout.split()
        if left:
            sh(DOCKER, "rm", "-f", *left, check=False, timeout=120)
        for net in self.networks():
            sh(DOCKER, "network", "rm", net, check=False)


@pytest.fixture
def project(daemon, tmp_path):
    made: list[Project] = []

    def make(label: str, doc: dict) -> Project:
        p = Project(label, doc, tmp_path)
        made.append(p)
        return p

    yield make
    for p in reversed(made):
        p.cleanup()


def pynet_net(**extra) -> dict:
    return {"driver": DRIVER, **extra}


def sh_in(container: str, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return docker("exec", container, "sh", "-c", script, check=check, timeout=timeout)


def get(container: str, url: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh_in(container, bounded(f"wget -qO- {url}"), check=check)


def host_addresses() -> list[str]:
    """The (engine's) host's own IPv4 addresses a client would use: the default route's source address,
    and its address toward the `outside` namespace."""
    route = json.loads(sh("ip", "-j", "-4", "route", "get", "192.0.2.200").stdout)[0]
    return sorted({route.get("prefsrc", OUT4_HOST), OUT4_HOST})


def addresses(container: str) -> dict[str, dict]:
    """network name -> {IPAddress, GlobalIPv6Address, Gateway, MacAddress, ...} from docker inspect."""
    return json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout)


def nothing_of(p: Project, links_before: list[str], net_ids: list[str], sock: str) -> list[str]:
    """What is left of project p after `compose down`: containers, networks, pynet's networks, links."""
    left = [f"container {c}" for c in p.containers()]
    left += [f"network {n}" for n in p.networks()]
    left += [f"docker network {n}" for n in sh(DOCKER, "network", "ls", "--format", "{{.Name}}",
                                               "--filter", f"driver={DRIVER}").stdout.split()
             if n.startswith(p.name)]
    left += [f"link {n}" for n in sorted(set(links_with_prefix()) - set(links_before))]
    left += [f"pynet network {n['id'][:12]}" for n in json.loads(sh(PYNET, "--socket", sock, "ls", "--json").stdout)
             if n["id"] in net_ids]
    return left


# ---------------------------------------------------------------- (a) front/back stack

def test_front_back_stack(project, daemon, outside):
    """web publishes a port on `front` and also sits on `back` (internal: true); db only on back;
    client only on front. The stack a user copies from Compose's documentation."""
    p = project("fb", {
        "services": {
            "web": {"command": HTTPD, "ports": ["18201:80"], "networks": ["front", "back"]},
            "db": {"command": "httpd -f -p 5432", "networks": ["back"]},
            "client": {"command": "sleep 600", "networks": ["front"]},
        },
        "networks": {"front": pynet_net(), "back": pynet_net(internal=True)},
    })
    links_before = links_with_prefix()
    p.up()
    web, db, client = p.container("web"), p.container("db"), p.container("client")
    assert p.containers() == sorted([web, db, client])
    assert sorted(addresses(web)) == sorted([p.network("front"), p.network("back")])
    net_ids = [docker("network", "inspect", "-f", "{{.Id}}", p.network(n)).stdout.strip() for n in ("front", "back")]

    # Names resolve across services, on the networks they share (service names and container names).
    assert PAGE in get(client, "http://web/").stdout
    assert PAGE in get(web, "http://db:5432/").stdout
    assert PAGE in get(db, "http://web/").stdout
    assert PAGE in get(client, f"http://{web}/").stdout
    # client and db share no network: db is neither resolved nor reached from client.
    assert get(client, "http://db:5432/", check=False).returncode != 0
    db_ip = addresses(db)[p.network("back")]["IPAddress"]
    assert get(client, f"http://{db_ip}:5432/", check=False).returncode != 0

    # The published port answers from the host's addresses and 127.0.0.1, and from outside.
    for addr in host_addresses() + ["127.0.0.1"]:
        assert PAGE in (fetch(f"http://{addr}:18201/") or ""), f"host -> {addr}:18201"
    assert PAGE in (fetch(f"http://{OUT4_HOST}:18201/", outside.name) or ""), "outside -> published port"

    # Only-internal services cannot get out; web (also on front) can: the check can fail.
    assert get(web, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST
    assert get(db, f"http://{OUT4}:8000/", check=False).returncode != 0
    assert sh_in(db, f"ping -c1 -W2 {OUT4}", check=False).returncode != 0

    p.compose("down", "--timeout", "1")
    left = nothing_of(p, links_before, net_ids, daemon.socket)
    assert not left, f"compose down left: {', '.join(left)}"


# ---------------------------------------------------------------- (b) replicas and --scale

def test_replicas_and_scale(project, daemon):
    p = project("rep", {
        "services": {
            "web": {"command": HTTPD, "deploy": {"replicas": 3}, "networks": ["net"]},
            "client": {"command": "sleep 600", "networks": ["net"]},
        },
        "networks": {"net": pynet_net()},
    })
    p.up()
    net = p.network("net")
    net_id = docker("network", "inspect", "-f", "{{.Id}}", net).stdout.strip()
    client = p.container("client")

    def check(n: int) -> None:
        webs = p.containers("web")
        assert len(webs) == n, webs
        ips = sorted(addresses(w)[net]["IPAddress"] for w in webs)
        assert len(set(ips)) == n and all(ips), ips
        for w in webs:  # each replica answers at its own address
            ip = addresses(w)[net]["IPAddress"]
            assert PAGE in get(client, f"http://{ip}/").stdout, w
        # The service name resolves to every replica (Docker's DNS round robin).
        got = sh_in(client, "nslookup web 127.0.0.11").stdout
        assert sorted(ip for ip in ips if ip in got) == ips, got
        assert PAGE in get(client, "http://web/").stdout
        # pynet has one endpoint per container on the network (`pynet inspect` asks Docker for the name).
        doc = json.loads(sh(PYNET, "--socket", daemon.socket, "inspect", net).stdout)
        assert doc["id"] == net_id
        assert len(doc["endpoints"]) == n + 1, doc["endpoints"]

    check(3)
    p.up("--scale", "web=5")
    check(5)
    p.up("--scale", "web=1")
    check(1)


# ---------------------------------------------------------------- (c) driver_opts, ipam, enable_ipv6

def test_nat_driver_opts_ipam_and_ipv6(project, daemon, outside):
    p = project("opts", {
        "services": {
            "web": {"command": HTTPD, "ports": ["18211:80"], "networks": ["n1"]},
            "peer": {"command": HTTPD, "networks": ["n1"]},
            "fixed": {"command": "sleep 600", "networks": {"n1": {"ipv4_address": "10.88.1.77",
                                                                   "ipv6_address": "fd88:1::77"}}},
        },
        "networks": {"n1": pynet_net(
            driver_opts={"mtu": "1400", "icc": "false", "host_binding_ipv4": "127.0.0.1"},
            enable_ipv6=True,
            ipam={"config": [{"subnet": "10.88.1.0/24", "gateway": "10.88.1.254", "ip_range": "10.88.1.128/25"},
                             {"subnet": "fd88:1::/64", "gateway": "fd88:1::1"}]},
        )},
    })
    p.up()
    net = p.network("n1")
    web, peer, fixed = p.container("web"), p.container("peer"), p.container("fixed")
    ipam = json.loads(docker("network", "inspect", "-f", "{{json .IPAM.Config}}", net).stdout)
    assert {"Subnet": "10.88.1.0/24", "IPRange": "10.88.1.128/25", "Gateway": "10.88.1.254"} in \
        [{k: c.get(k) for k in ("Subnet", "IPRange", "Gateway")} for c in ipam], ipam

    # ipam: addresses from ip_range, the given gateway, the static addresses; IPv6 too.
    for c in (web, peer):
        a = addresses(c)[net]
        assert a["IPAddress"].startswith("10.88.1.") and int(a["IPAddress"].split(".")[-1]) >= 128, a
        assert a["Gateway"] == "10.88.1.254", a
        assert a["GlobalIPv6Address"].startswith("fd88:1::"), a
    assert addresses(fixed)[net]["IPAddress"] == "10.88.1.77"
    assert addresses(fixed)[net]["GlobalIPv6Address"] == "fd88:1::77"
    assert "default via 10.88.1.254" in sh_in(fixed, "ip -4 route").stdout
    assert "default via fd88:1::1" in sh_in(fixed, "ip -6 route").stdout

    # mtu: the container's interface; icc=false: containers do not reach each other, the gateway yes.
    assert "mtu 1400" in sh_in(fixed, "ip link show eth0").stdout
    peer_ip = addresses(peer)[net]["IPAddress"]
    assert get(fixed, f"http://{peer_ip}/", check=False).returncode != 0
    assert sh_in(fixed, "ping -c1 -W2 10.88.1.254", check=False).returncode == 0

    # Out, both families (masquerade).
    assert get(fixed, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST
    assert get(fixed, f"http://[{OUT6}]:8000/").stdout.strip() == OUT6_HOST

    # host_binding_ipv4=127.0.0.1: "18211:80" is published on 127.0.0.1 only.
    assert PAGE in (fetch("http://127.0.0.1:18211/") or "")
    assert fetch(f"http://{OUT4_HOST}:18211/", outside.name, timeout=3) is None


def _lan_project(project, lan, mode: str, ip: str) -> tuple[Project, str]:
    p = project(mode[:2] + "lan", {
        "services": {"web": {"command": HTTPD, "networks": {"lan": {"ipv4_address": ip}}},
                     "other": {"command": "sleep 600", "networks": ["lan"]}},
        "networks": {"lan": pynet_net(
            driver_opts={"mode": mode, "parent": lan.parent},
            ipam={"config": [{"subnet": SUBNET, "gateway": ROUTER, "ip_range": "10.77.0.128/26"}]},
        )},
    })
    p.up()
    return p, p.container("web")


def test_transparent_driver_opts(project, daemon, lan):
    p, web = _lan_project(project, lan, "transparent", "10.77.0.150")
    mac = sh_in(web, "cat /sys/class/net/eth0/address").stdout.strip()
    # A LAN host reaches it at its LAN address and sees the container's own MAC.
    assert PAGE in (fetch("http://10.77.0.150/", lan.client.name) or "")
    assert mac in lan.client.run("ip", "neigh", "show", "10.77.0.150").stdout
    assert sh_in(web, f"ping -c1 -W2 {CLIENT}", check=False).returncode == 0
    other = addresses(p.container("other"))[p.network("lan")]["IPAddress"]
    assert int(other.split(".")[-1]) in range(128, 192), other  # from ip_range
    assert PAGE in get(p.container("other"), "http://web/").stdout


def test_l2bridge_driver_opts(project, daemon, lan):
    hostmac = parent_mac(lan)
    p, web = _lan_project(project, lan, "l2bridge", "10.77.0.160")
    assert PAGE in (fetch("http://10.77.0.160/", lan.client.name) or "")
    # Only the host's MAC is on the wire for the container's address.
    assert hostmac in lan.client.run("ip", "neigh", "show", "10.77.0.160").stdout
    assert sh_in(web, f"ping -c1 -W2 {CLIENT}", check=False).returncode == 0
    assert PAGE in get(p.container("other"), "http://web/").stdout


# ---------------------------------------------------------------- (d) connect/disconnect with ports

def test_connect_disconnect_with_published_ports(project, daemon, outside):
    """A compose service publishing a port, then `docker network connect`/`disconnect` of other pynet
    networks: the port keeps answering, names resolve on each network it is on."""
    p = project("cd", {
        "services": {
            "web": {"command": HTTPD, "ports": ["18221:80"], "networks": ["a"]},
            "cb": {"command": "sleep 600", "networks": ["b"]},
            "cc": {"command": "sleep 600", "networks": ["c"]},
        },
        "networks": {"a": pynet_net(), "b": pynet_net(), "c": pynet_net()},
    })
    p.up()
    web, cb, cc = p.container("web"), p.container("cb"), p.container("cc")
    a, b, c = p.network("a"), p.network("b"), p.network("c")

    def port_answers(what: str) -> None:
        wait_for(lambda: PAGE in (fetch(f"http://{OUT4_HOST}:18221/", outside.name) or ""), timeout=10,
                 what=f"outside -> published port {what}")
        assert PAGE in (fetch("http://127.0.0.1:18221/") or ""), f"127.0.0.1 -> published port {what}"

    port_answers("after up")
    assert get(cb, f"http://{web}/", check=False).returncode != 0

    docker("network", "connect", b, web)
    docker("network", "connect", c, web)
    assert sorted(addresses(web)) == sorted([a, b, c])
    assert PAGE in get(cb, f"http://{web}/").stdout
    assert PAGE in get(cc, f"http://{web}/").stdout
    port_answers("with web on three networks")

    docker("network", "disconnect", b, web)
    assert get(cb, f"http://{web}/", check=False).returncode != 0
    assert PAGE in get(cc, f"http://{web}/").stdout
    port_answers("after disconnecting b")

    # Leave the network the port was first published on: Docker moves the container's gateway to c.
    docker("network", "disconnect", a, web)
    assert sorted(addresses(web)) == [c]
    port_answers("after disconnecting a (the first network)")
    assert get(web, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST

    docker("network", "connect", a, web)
    port_answers("after connecting a again")
    assert PAGE in get(cc, f"http://{web}/").stdout


# ---------------------------------------------------------------- Docker 27+: generic enable_ipv6

def test_enable_ipv6_as_driver_opt(project, daemon):
    """Docker 27+ reads com.docker.network.enable_ipv6 from the network's options (-o, driver_opts,
    daemon.json default-network-opts) and leaves it in the driver's generic options too."""
    if engine.ENGINE == "20":
        pytest.skip("Docker 20.10 does not read com.docker.network.enable_ipv6 from -o/driver_opts (27+ does)")
    p = project("v6opt", {
        "services": {"web": {"command": HTTPD, "networks": ["n"]},
                     "client": {"command": "sleep 600", "networks": ["n"]}},
        "networks": {"n": pynet_net(
            driver_opts={"com.docker.network.enable_ipv6": "true"},
            ipam={"config": [{"subnet": "10.88.2.0/24"}, {"subnet": "fd88:2::/64"}]},
        )},
    })
    p.up()
    ip6 = addresses(p.container("web"))[p.network("n")]["GlobalIPv6Address"]
    assert ip6.startswith("fd88:2::"), ip6
    assert PAGE in get(p.container("client"), f"http://[{ip6}]/").stdout
