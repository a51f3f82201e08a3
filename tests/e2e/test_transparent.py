"""transparent mode on a namespace LAN, with a real dockerd."""

from __future__ import annotations

import pytest

from conftest import IMAGE
from lan import BEYOND, CLIENT, HOST, ROUTER, SUBNET, Lan
from lib import PREFIX, PYNET, docker, links_with_prefix, sh, wait_for
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


def daemon_leases(daemon) -> list[dict]:
    status, doc = daemon.call("/pynet/v1/leases", method="GET")
    assert status == 200
    return doc


def test_dhcp_from_the_lan_server(nets, ctrs, daemon, lan):
    from lan import DHCP_RANGE
    from lib import DRIVER

    lan.start_dhcp()
    net = nets.create("trd", "--ipam-driver", DRIVER, "-o", "mode=transparent", "-o", f"parent={lan.parent}",
                      "--subnet", SUBNET, "--gateway", ROUTER)
    web = ctrs.start("trdweb", "--net", net, "--hostname", "dhcpweb", IMAGE, "httpd", "-f", "-p", "80")
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", web).stdout.strip()
    mac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    lo, hi = (int(x.rsplit(".", 1)[1]) for x in DHCP_RANGE)
    assert ip.startswith("10.77.0.") and lo <= int(ip.rsplit(".", 1)[1]) <= hi, ip
    # dnsmasq's lease file: "<expiry> <mac> <ip> <hostname> <client-id>"
    wait_for(lambda: any(f" {mac} {ip} dhcpweb " in line for line in lan.lease_lines()), timeout=20,
             what=f"lease of {mac} {ip} with hostname in {lan.lease_lines()}")
    assert PAGE in (fetch(f"http://{ip}/", lan.client.name) or "")
    assert ctrs.sh(web, f"ping -c1 -W2 {BEYOND}", check=False).returncode == 0
    cli = sh(PYNET, "--socket", daemon.socket, "leases").stdout
    assert mac in cli and ip in cli and net in cli, cli
    # Renewals go on (every 3 s in tests), and survive kill -9 of pynet.
    wait_for(lambda: daemon_leases(daemon)[0]["renewals"] >= 1, timeout=20, what="a renewal")
    daemon.kill9()
    daemon.start()
    before = daemon_leases(daemon)[0]["renewals"]
    wait_for(lambda: daemon_leases(daemon)[0]["renewals"] > before, timeout=20, what="renewal after restart")
    assert PAGE in (fetch(f"http://{ip}/", lan.client.name) or "")
    # docker rm releases the lease at the server.
    docker("rm", "-f", web)
    wait_for(lambda: not any(mac in line for line in lan.lease_lines()), timeout=10, what="lease released")
    assert daemon_leases(daemon) == []


def test_dhcp_without_server_is_a_clear_error(nets, ctrs, daemon, lan):
    from lib import DRIVER

    net = nets.create("trn", "--ipam-driver", DRIVER, "-o", "mode=transparent", "-o", f"parent={lan.parent}",
                      "--subnet", SUBNET, "--gateway", ROUTER)
    p = docker("run", "--rm", "--net", net, IMAGE, "true", check=False, timeout=60)
    assert p.returncode != 0 and "no DHCP server answered" in p.stderr, p.stderr
    assert [n for n in links_with_prefix() if not n.startswith(PREFIX + "s")] == []
    assert daemon_leases(daemon) == []
