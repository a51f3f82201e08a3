"""Published ports with a real dockerd: every form, every path, conflicts, restarts."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from conftest import IMAGE, OUT4, OUT4_HOST, OUT6, OUT6_HOST, PEER_SERVER
from lib import PYNET, TABLE, docker, sh, wait_for
from test_nat import bounded

UDP_ASK = str(Path(__file__).resolve().parents[1] / "udp_ask.py")
PAGE = "pynet test page"


def fetch(url: str, netns: str | None = None, timeout: float = 5) -> str | None:
    """HTTP GET from the host or from a test namespace; None when it fails."""
    cmd = ["busybox", "wget", "-qO-", url]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return p.stdout if p.returncode == 0 else None


def udp_ask(host: str, port: int, netns: str | None = None) -> str | None:
    cmd = [sys.executable, UDP_ASK, host, str(port)]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    return p.stdout.strip() if p.returncode == 0 else None


@contextlib.contextmanager
def peer_server(container: str, port: int):
    """The peer-echo server inside a container's network namespace (nsenter)."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
    proc = subprocess.Popen(["nsenter", "-t", pid, "-n", sys.executable, PEER_SERVER, str(port), "300"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        yield
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def bindings(daemon, container: str | None = None) -> list[dict]:
    args = [PYNET, "--socket", daemon.socket, "ports", "--json"] + ([container] if container else [])
    return json.loads(sh(*args).stdout)


def host_port(daemon, container: str, cport: int, proto: str = "tcp", family: int = 4) -> int:
    found = [b["host_port"] for b in bindings(daemon, container)
             if b["container_port"] == cport and b["proto"] == proto and b["family"] == family]
    assert len(found) == 1, bindings(daemon, container)
    return found[0]


def test_every_form_and_path(nets, ctrs, daemon, outside):
    net = nets.create("pforms", "--ipv6", "--subnet", "10.221.0.0/24", "--subnet", "fd00:221::/64")
    web = ctrs.start("pweb", "--net", net,
                     "-p", "18080:80",                       # n:N
                     "-p", "80",                             # N (host port chosen)
                     "-p", f"{OUT4_HOST}::81",               # ip::N
                     "-p", f"{OUT4_HOST}:18081:81",          # ip:n:N
                     "-p", "18090-18092:80-82",              # ranges
                     "-p", "18053:5353/udp",                 # udp
                     "-p", "18132:80/sctp",                  # sctp
                     "-p", f"[{OUT6_HOST}]:18086:80",        # IPv6 host address
                     IMAGE, "sh", "-c", "httpd -p 80; httpd -p 81; httpd -p 82; exec sleep 600")
    got = bindings(daemon, web)
    auto = [b["host_port"] for b in got if b["container_port"] == 80 and b["proto"] == "tcp" and b["family"] == 4
            and b["host_port"] not in (18080, 18090)]
    assert len(auto) == 1 and 32768 <= auto[0] <= 60999, got  # default range: ip_local_port_range
    chosen = auto[0]
    ip81 = sorted(b["host_port"] for b in got if b["host_ip"] == OUT4_HOST and b["container_port"] == 81)
    assert len(ip81) == 2 and ip81[0] == 18081 and 32768 <= ip81[1] <= 60999, got
    # -p N on a dual-stack container: 0.0.0.0 and ::, same port
    assert {(b["family"], b["host_ip"]) for b in got if b["host_port"] == 18080} == {(4, ""), (6, "")}
    assert [b["host_ip"] for b in got if b["host_port"] == 18081] == [OUT4_HOST]
    assert [b["host_ip"] for b in got if b["host_port"] == 18086] == [OUT6_HOST]
    assert {b["container_port"] for b in got if 18090 <= b["host_port"] <= 18092} == {80, 81, 82}
    assert [b["proto"] for b in got if b["host_port"] == 18132] == ["sctp", "sctp"]
    assert "sctp . 18132" in sh("nft", "list", "map", "inet", TABLE, "pubany4").stdout

    # From a LAN host (a namespace beyond the host's uplink).
    for port in (18080, chosen, 18081, ip81[1], 18090, 18091, 18092):
        assert PAGE in (fetch(f"http://{OUT4_HOST}:{port}/", outside.name) or ""), port
    assert PAGE in (fetch(f"http://[{OUT6_HOST}]:18080/", outside.name) or "")
    assert PAGE in (fetch(f"http://[{OUT6_HOST}]:18086/", outside.name) or "")
    # ip-bound ports answer only on that address.
    assert fetch(f"http://127.0.0.1:18081/") is None
    # From the host: its own addresses and localhost, without any proxy process.
    assert PAGE in fetch(f"http://{OUT4_HOST}:18080/")
    assert PAGE in fetch("http://127.0.0.1:18080/")
    assert PAGE in fetch(f"http://[{OUT6_HOST}]:18080/")
    # No process listens on the host port (no docker-proxy or the like): the kernel forwards it.
    listening = sh("ss", "-Hltn", "sport", "= :18080").stdout
    assert listening.strip() == "", listening
    # From another container (hairpin through the host address) and from the container itself.
    assert PAGE in ctrs.run("hp", "--net", net, IMAGE, "sh", "-c",
                            bounded(f"wget -qO- http://{OUT4_HOST}:18080/")).stdout
    assert PAGE in ctrs.sh(web, bounded(f"wget -qO- http://{OUT4_HOST}:18080/")).stdout
    assert PAGE in ctrs.sh(web, bounded("wget -qO- http://10.221.0.1:18080/")).stdout
    # Another pynet network reaches it through the host too.
    other = nets.create("pother")
    assert PAGE in ctrs.run("hp2", "--net", other, IMAGE, "sh", "-c",
                            bounded(f"wget -qO- http://{OUT4_HOST}:18080/")).stdout


def test_lan_client_source_is_preserved_tcp_and_udp(nets, ctrs, daemon, outside):
    net = nets.create("psrc", "--ipv6", "--subnet", "10.222.0.0/24", "--subnet", "fd00:222::/64")
    c = ctrs.start("psrc", "--net", net, "-p", "18100:8000", "-p", "18100:8000/udp", IMAGE, "sleep", "600")
    with peer_server(c, 8000):
        assert fetch(f"http://{OUT4_HOST}:18100/", outside.name).strip() == OUT4
        assert fetch(f"http://[{OUT6_HOST}]:18100/", outside.name).strip() == OUT6
        assert udp_ask(OUT4_HOST, 18100, outside.name) == OUT4
        assert udp_ask(OUT6_HOST, 18100, outside.name) == OUT6
        assert udp_ask("127.0.0.1", 18100) is not None  # UDP from localhost too


def test_sctp_traffic_where_the_kernel_has_it(nets, ctrs, daemon, outside):
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close()
    except OSError as e:
        pytest.skip(f"kernel without SCTP ({e.strerror}): the sctp mapping is checked in the nft map only")
    net = nets.create("psctp")
    c = ctrs.start("psctp", "--net", net, "-p", "18133:9/sctp", IMAGE, "sleep", "600")
    assert host_port(daemon, c, 9, "sctp") == 18133


def test_publish_all_uses_exposed_ports(nets, ctrs, daemon, outside):
    net = nets.create("pall")
    c = ctrs.start("pall", "--net", net, "-P", "busybox:expose", "httpd", "-f", "-p", "80")
    tcp = host_port(daemon, c, 80)
    udp = host_port(daemon, c, 5353, "udp")
    assert 32768 <= tcp <= 60999 and 32768 <= udp <= 60999
    assert PAGE in fetch(f"http://{OUT4_HOST}:{tcp}/", outside.name)


def test_localhost_binding_is_not_reachable_from_the_lan(nets, ctrs, daemon, outside):
    """moby#45610, staged: a LAN host that routes 127.0.0.1 to us must not reach a 127.0.0.1 port."""
    net = nets.create("plo")
    ctrs.start("plo", "--net", net, "-p", "127.0.0.1:18110:80", IMAGE, "httpd", "-f", "-p", "80")
    # httpd may not listen yet when `docker run -d` returns (seen on a loaded machine)
    wait_for(lambda: PAGE in (fetch("http://127.0.0.1:18110/") or ""), timeout=10, what="127.0.0.1:18110 answers")
    ns = outside.name
    ifname = sh("ip", "-n", ns, "-o", "link", "show", "type", "veth").stdout.split(":")[1].strip().split("@")[0]
    for cmd in (["sysctl", "-qw", f"net.ipv4.conf.{ifname}.route_localnet=1"],
                ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
                ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
                ["ip", "rule", "add", "pref", "10", "to", "127.0.0.1", "lookup", "100"],
                ["ip", "rule", "add", "pref", "20", "lookup", "local"],
                ["ip", "rule", "del", "pref", "0"],
                # src pinned: with 127.0.0.1 as source the namespace cannot even ARP for the host (flaky)
                ["ip", "route", "add", "127.0.0.1/32", "via", OUT4_HOST, "dev", ifname, "src", OUT4, "table", "100"],
                ["nft", "add", "table", "ip", "stage"],
                ["nft", "add", "chain", "ip", "stage", "out", "{ type filter hook postrouting priority 0; }"],
                ["nft", "add", "rule", "ip", "stage", "out", "ip", "daddr", "127.0.0.1", "tcp", "dport", "18110",
                 "counter"]):
        sh("ip", "netns", "exec", ns, *cmd)
    try:
        assert fetch("http://127.0.0.1:18110/", ns, timeout=4) is None
        counter = sh("ip", "netns", "exec", ns, "nft", "list", "chain", "ip", "stage", "out").stdout
        assert "packets 0 " not in counter, counter  # the SYNs did leave towards the host
        dropped = sh("nft", "list", "chain", "inet", TABLE, "raw_pre").stdout
        rule = next(line for line in dropped.splitlines() if "127.0.0.0/8" in line)
        assert "packets 0 " not in rule, dropped  # ...and pynet dropped them
    finally:
        for cmd in (["nft", "delete", "table", "ip", "stage"],
                    ["ip", "rule", "add", "pref", "0", "lookup", "local"],
                    ["ip", "rule", "del", "pref", "20"], ["ip", "rule", "del", "pref", "10"]):
            sh("ip", "netns", "exec", ns, *cmd, check=False)


def test_conflicts_name_the_port_and_leave_nothing(nets, ctrs, daemon):
    net = nets.create("pconf")
    a = ctrs.start("pconfa", "--net", net, "-p", "18120:80", IMAGE, "httpd", "-f", "-p", "80")
    before = bindings(daemon)
    maps = sh("nft", "list", "map", "inet", TABLE, "pubany4").stdout
    p = docker("run", "-d", "--name", "pynet-conf-b", "--label", f"pynet-test={daemon.name[7:]}", "--net", net,
               "-p", "18121:80", "-p", "18120:80", IMAGE, "httpd", "-f", "-p", "80", check=False)
    sh("/usr/bin/docker", "rm", "-f", "pynet-conf-b", check=False)
    assert p.returncode != 0
    assert "0.0.0.0:18120/tcp is already published" in p.stderr and a[:0] == "" and "endpoint" in p.stderr, p.stderr
    assert bindings(daemon) == before  # 18121 was not left half-applied
    assert sh("nft", "list", "map", "inet", TABLE, "pubany4").stdout == maps
    # A host process holding the port: refused too, by name.
    with socket.socket() as s:
        s.bind(("0.0.0.0", 18122))
        s.listen()
        p = docker("run", "--rm", "--net", net, "-p", "18122:80", IMAGE, "true", check=False)
    assert p.returncode != 0 and "18122" in p.stderr and "host process" in p.stderr, p.stderr
    # An address that is not the host's.
    p = docker("run", "--rm", "--net", net, "-p", "203.0.113.77:18123:80", IMAGE, "true", check=False)
    assert p.returncode != 0 and "203.0.113.77" in p.stderr, p.stderr
    assert bindings(daemon) == before


def test_ports_with_an_internal_network_too(nets, ctrs, daemon, outside):
    """The compose front/back shape: -p on a nat network, then connected to an --internal one.

    Docker sends the container's whole port map with every Join; the internal Join must take
    it (it once failed with "this network is --internal ... -p/-P cannot publish ports")."""
    front = nets.create("pfront")
    back = nets.create("pback", "--internal")
    web = ctrs.start("pfb", "--net", front, "-p", "18130:80", IMAGE, "httpd", "-f", "-p", "80")
    docker("network", "connect", back, web)
    assert PAGE in fetch(f"http://{OUT4_HOST}:18130/", outside.name)
    db = ctrs.start("pfbdb", "--net", back, IMAGE, "sleep", "600")
    assert PAGE in ctrs.sh(db, bounded(f"wget -qO- http://{web}/")).stdout  # by name, on the internal network
    # -p on an internal network alone: the container runs (as with Docker's bridge), nothing is published.
    alone = ctrs.start("pfbalone", "--net", back, "-p", "18131:80", IMAGE, "httpd", "-f", "-p", "80")
    assert docker("inspect", "-f", "{{.State.Running}}", alone).stdout.strip() == "true"
    assert all(b["host_port"] != 18131 for b in bindings(daemon))
    docker("network", "disconnect", back, web)
    assert PAGE in fetch(f"http://{OUT4_HOST}:18130/", outside.name)


def test_ports_follow_the_gateway_network(nets, ctrs, daemon, outside):
    """A container on two nat networks keeps one set of ports; they move with Docker's gateway
    network (the first by name), and `pynet port add` ports move with them."""
    b = nets.create("pgwb")
    web = ctrs.start("pgw", "--net", b, "-p", "18132:80", IMAGE, "httpd", "-f", "-p", "80")
    sh(PYNET, "--socket", daemon.socket, "port", "add", web, "18133:80")
    ip_b = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{b}").IPAddress}}}}', web).stdout.strip()
    assert {(x["host_port"], x["container_ip"]) for x in bindings(daemon)} == {(18132, ip_b), (18133, ip_b)}
    a = nets.create("pgwa")  # sorts first: Docker makes it the gateway when connected
    docker("network", "connect", a, web)
    ip_a = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{a}").IPAddress}}}}', web).stdout.strip()
    assert {(x["host_port"], x["container_ip"]) for x in bindings(daemon)} == {(18132, ip_a), (18133, ip_a)}
    for port in (18132, 18133):
        assert PAGE in fetch(f"http://{OUT4_HOST}:{port}/", outside.name)
    docker("network", "disconnect", a, web)
    assert {(x["host_port"], x["container_ip"]) for x in bindings(daemon)} == {(18132, ip_b), (18133, ip_b)}
    for port in (18132, 18133):
        assert PAGE in fetch(f"http://{OUT4_HOST}:{port}/", outside.name)
    docker("rm", "-f", web)
    assert bindings(daemon) == []


def test_port_add_and_rm_on_a_running_container(nets, ctrs, daemon, outside):
    net = nets.create("padd")
    c = ctrs.start("padd", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    assert fetch(f"http://{OUT4_HOST}:18140/", outside.name) is None
    out = sh(PYNET, "--socket", daemon.socket, "port", "add", c, "18140:80", "127.0.0.1:18141:80/tcp").stdout
    assert "published 0.0.0.0:18140 -> " in out
    assert PAGE in fetch(f"http://{OUT4_HOST}:18140/", outside.name)
    assert PAGE in fetch("http://127.0.0.1:18141/")
    listing = sh(PYNET, "--socket", daemon.socket, "ports", c).stdout
    assert "0.0.0.0:18140" in listing and c in listing and "cli" in listing
    # Survives a restart of pynet.
    daemon.kill9()
    daemon.start()
    assert PAGE in fetch(f"http://{OUT4_HOST}:18140/", outside.name)
    sh(PYNET, "--socket", daemon.socket, "port", "rm", c, "18140:80")
    assert fetch(f"http://{OUT4_HOST}:18140/", outside.name, timeout=3) is None
    assert PAGE in fetch("http://127.0.0.1:18141/")
    p = sh(PYNET, "--socket", daemon.socket, "port", "rm", c, "18140:80", check=False)
    assert p.returncode != 0 and "no published port" in p.stderr


def test_ports_survive_kill9_and_dockerd_restart(nets, ctrs, daemon, outside):
    net = nets.create("prst")
    c = ctrs.start("prst", "--restart", "always", "--net", net, "-p", "18150:80", IMAGE, "httpd", "-f", "-p", "80")
    daemon.kill9()
    assert PAGE in fetch(f"http://{OUT4_HOST}:18150/", outside.name)  # the kernel keeps serving
    daemon.start()
    assert PAGE in fetch(f"http://{OUT4_HOST}:18150/", outside.name)
    engine.restart()
    wait_for(lambda: docker("inspect", "-f", "{{.State.Running}}", c, check=False).stdout.strip() == "true",
             timeout=60, what="container back")
    wait_for(lambda: PAGE in (fetch(f"http://{OUT4_HOST}:18150/", outside.name) or ""), timeout=20,
             what="port back after dockerd restart")
    assert len([b for b in bindings(daemon) if b["host_port"] == 18150]) == 1


def test_ten_thousand_ports_in_one_docker_run(nets, ctrs, daemon):
    """`-p 22000-31999:22000-31999`: Docker sends the whole map in one body (~1 MB); one nft transaction."""
    net = nets.create("p10k")
    web = ctrs.start("p10k", "--net", net, "-p", "22000-31999:22000-31999", "-p", "18199:80",
                     IMAGE, "httpd", "-f", "-p", "80")
    listing = json.loads(sh("nft", "-j", "list", "map", "inet", TABLE, "pubany4").stdout)
    elems = [e for item in listing["nftables"] if "map" in item for e in item["map"].get("elem", [])]
    assert len(elems) == 10_001, len(elems)
    assert PAGE in (fetch("http://127.0.0.1:18199/") or "")
    rows = json.loads(sh(PYNET, "--socket", daemon.socket, "ports", web, "--json").stdout)
    assert len(rows) == 10_001
    docker("rm", "-f", web)
    ctrs.made.remove(web)
    listing = json.loads(sh("nft", "-j", "list", "map", "inet", TABLE, "pubany4").stdout)
    assert [e for item in listing["nftables"] if "map" in item for e in item["map"].get("elem", [])] == []
