"""transparent mode on a namespace LAN, with a real dockerd."""

from __future__ import annotations

import pytest

from conftest import IMAGE
from lan import BEYOND, CLIENT, HOST, ROUTER, SUBNET, Lan
from lib import PREFIX, docker, links_with_prefix, sh, wait_for
from test_nat import bounded
from test_ports import PAGE, fetch


@pytest.fixture
def lan():
    lan = Lan()
    yield lan
    lan.close()


def lan_net(nets, lan, label, *extra):
    return nets.create(label, "-o", "mode=transparent", "-o", f"parent={lan.parent}", "--subnet", SUBNET,
                       "--gateway", ROUTER, "--ip-range", "10.77.0.128/26", *extra)


def test_container_is_a_lan_member(nets, ctrs, daemon, lan):
    net = lan_net(nets, lan, "tr")
    web = ctrs.start("trweb", "--net", net, "--ip", "10.77.0.130", IMAGE, "httpd", "-f", "-p", "80")
    mac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    # A LAN host reaches it at its LAN address and learns the container's own MAC.
    assert lan.client.run("busybox", "ping", "-c1", "-W2", "10.77.0.130", check=False).returncode == 0
    assert PAGE in (fetch("http://10.77.0.130/", lan.client.name) or "")
    neigh = lan.client.run("ip", "neigh", "show", "10.77.0.130").stdout
    assert mac in neigh, (mac, neigh)
    # The container reaches the LAN router, and beyond it.
    assert ctrs.sh(web, f"ping -c1 -W2 {ROUTER}", check=False).returncode == 0
    assert ctrs.sh(web, f"ping -c1 -W2 {BEYOND}", check=False).returncode == 0
    assert ctrs.sh(web, f"ping -c1 -W2 {CLIENT}", check=False).returncode == 0
    # Host <-> container through the shim.
    assert PAGE in (fetch("http://10.77.0.130/") or "")
    assert ctrs.sh(web, f"ping -c1 -W2 {HOST}", check=False).returncode == 0
    # Two containers on the network talk to each other; IPAM range respected.
    other = ctrs.run("tro", "--net", net, IMAGE, "sh", "-c", bounded(f"wget -qO- http://{web}/"))
    assert PAGE in other.stdout
    ip = ctrs.run("trip", "--net", net, IMAGE, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "inet 10.77.0.1" in ip and "/24" in ip  # from --ip-range 10.77.0.128/26


def test_ports_refused_and_overlap_on_one_parent(nets, ctrs, daemon, lan):
    net = lan_net(nets, lan, "trp")
    p = docker("run", "--rm", "--net", net, "-p", "8080:80", IMAGE, "true", check=False)
    assert p.returncode != 0 and "mode=nat" in p.stderr, p.stderr
    before = sorted(links_with_prefix())
    p = nets.create("trp2", "-o", "mode=transparent", "-o", f"parent={lan.parent}", "--subnet", "10.77.0.0/25",
                    check=False)
    assert p.returncode != 0 and "overlaps" in p.stderr, p.stderr
    assert sorted(links_with_prefix()) == before


def test_kill9_and_reconcile_keep_lan_networking(nets, ctrs, daemon, lan):
    net = lan_net(nets, lan, "trk")
    web = ctrs.start("trkweb", "--net", net, "--ip", "10.77.0.131", IMAGE, "httpd", "-f", "-p", "80")
    daemon.kill9()
    assert PAGE in (fetch("http://10.77.0.131/", lan.client.name) or "")
    shims = [n for n in links_with_prefix() if n.startswith(PREFIX + "s")]
    assert len(shims) == 1
    sh("ip", "link", "del", shims[0])  # lost while pynet was down
    assert fetch("http://10.77.0.131/", timeout=3) is None
    daemon.start()
    wait_for(lambda: PAGE in (fetch("http://10.77.0.131/", timeout=3) or ""), what="host reaches container")
    assert PAGE in (fetch("http://10.77.0.131/", lan.client.name) or "")
    docker("rm", "-f", web)
    assert [n for n in links_with_prefix() if not n.startswith(PREFIX + "s")] == []


def test_two_vlans_on_one_parent(nets, ctrs, daemon, lan):
    probe = f"{lan.parent}.4000"
    p = sh("ip", "link", "add", "link", lan.parent, "name", probe, "type", "vlan", "id", "4000", check=False)
    if p.returncode != 0:
        pytest.skip(f"kernel without 802.1q VLAN devices ({p.stderr.strip()}): VLAN parents untestable here")
    sh("ip", "link", "del", probe)
    a = nets.create("trv1", "-o", "mode=transparent", "-o", f"parent={lan.parent}.51", "--subnet", "10.78.51.0/24")
    b = nets.create("trv2", "-o", "mode=transparent", "-o", f"parent={lan.parent}.52", "--subnet", "10.78.52.0/24")
    assert sh("ip", "-d", "link", "show", f"{lan.parent}.51").stdout.count("vlan protocol 802.1Q id 51") == 1
    ctrs.start("v1", "--net", a, IMAGE, "sleep", "600")
    ctrs.start("v2", "--net", b, IMAGE, "sleep", "600")
    docker("rm", "-f", *ctrs.made)
    ctrs.made.clear()
    docker("network", "rm", a, b)
    nets.made.clear()
    assert sh("ip", "link", "show", f"{lan.parent}.51", check=False).returncode != 0  # removed with its network
