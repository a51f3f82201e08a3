"""l2bridge on a namespace LAN whose switch admits only the host's MAC on the host's port."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import IMAGE, PEER_SERVER
from lan import BEYOND, CLIENT, CLIENT6, HOST, ROUTER, ROUTER6, SUBNET, SUBNET6
from lib import DOCKER, NS_PREFIX, PREFIX, TABLE, TAG, docker, links_with_prefix, sh, wait_for
from test_nat import bounded
from test_ports import PAGE, fetch
from test_transparent import lan  # noqa: F401 - fixture

WEB, OTHER = "10.77.0.140", "10.77.0.141"


def l2_net(nets, lan, label, *extra):
    return nets.create(label, "-o", "mode=l2bridge", "-o", f"parent={lan.parent}", "--subnet", SUBNET,
                       "--gateway", ROUTER, "--ip-range", "10.77.0.128/26", *extra)


def parent_mac(lan) -> str:
    with open(f"/sys/class/net/{lan.parent}/address") as fh:
        return fh.read().strip()


@pytest.fixture
def router_server(lan):
    """peer_server.py in the router namespace: answers with the address it sees."""
    p = subprocess.Popen(["ip", "netns", "exec", lan.router.name, sys.executable, PEER_SERVER, "8000", "600"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "listening"
        yield p
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_lan_sees_only_the_hosts_mac(nets, ctrs, daemon, lan, router_server):
    hostmac = parent_mac(lan)
    lan.lock_uplink(hostmac)
    lan.client.run("sysctl", "-qw", "net.ipv4.conf.c0.arp_accept=1")  # learn from gratuitous ARP
    net = l2_net(nets, lan, "l2")
    web = ctrs.start("l2web", "--net", net, "--ip", WEB, IMAGE, "httpd", "-f", "-p", "80")
    cmac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    assert cmac != hostmac
    # The join's gratuitous ARP already told the client: container address -> host MAC.
    wait_for(lambda: hostmac in lan.client.run("ip", "neigh", "show", WEB).stdout, timeout=5,
             what=f"client learns {WEB} at {hostmac} from the gratuitous ARP")
    # LAN client -> container: ping and TCP; the container's address resolves to the host's MAC.
    assert lan.client.run("busybox", "ping", "-c1", "-W2", WEB, check=False).returncode == 0
    assert PAGE in (fetch(f"http://{WEB}/", lan.client.name) or "")
    neigh = lan.client.run("ip", "neigh", "show", WEB).stdout
    assert hostmac in neigh and cmac not in neigh, neigh
    # Container -> LAN router (TCP: the router sees the container's own address, no NAT), and beyond.
    seen = ctrs.sh(web, bounded(f"wget -qO- http://{ROUTER}:8000/")).stdout
    assert seen.strip().startswith(WEB), seen
    assert ctrs.sh(web, f"ping -c1 -W2 {ROUTER}", check=False).returncode == 0
    assert ctrs.sh(web, f"ping -c1 -W2 {BEYOND}", check=False).returncode == 0
    # Container -> LAN client, TCP the other way round.
    assert ctrs.sh(web, f"ping -c1 -W2 {CLIENT}", check=False).returncode == 0
    # Container <-> container on the same network.
    other = ctrs.run("l2o", "--net", net, "--ip", OTHER, IMAGE, "sh", "-c", bounded(f"wget -qO- http://{WEB}/"))
    assert PAGE in other.stdout
    # Host <-> container.
    assert PAGE in (fetch(f"http://{WEB}/") or "")
    assert ctrs.sh(web, f"ping -c1 -W2 {HOST}", check=False).returncode == 0
    # Nothing with another MAC left the host's port...
    assert lan.uplink_drops() == 0
    # ...and the port filter does work: a frame from another MAC is counted and dropped.
    probe = f"pnt{lan.parent[3:]}x"
    sh("ip", "link", "add", "link", lan.parent, "name", probe, "type", "macvlan", "mode", "bridge")
    try:
        sh("ip", "link", "set", probe, "up")
        sh("busybox", "arping", "-c1", "-w1", "-I", probe, ROUTER, check=False)
    finally:
        sh("ip", "link", "del", probe, check=False)
    assert lan.uplink_drops() > 0


def test_spoofed_source_is_dropped(nets, ctrs, daemon, lan):
    net = l2_net(nets, lan, "l2s")
    lan.router.run("nft", "add", "table", "inet", "seen")
    lan.router.run("nft", "add", "chain", "inet", "seen", "pre", "{ type filter hook prerouting priority 0; }")
    for src in (WEB, "10.77.0.99"):
        lan.router.run("nft", "add", "rule", "inet", "seen", "pre", "ip", "saddr", src, "icmp", "type",
                       "echo-request", "counter")
    c = ctrs.start("l2sp", "--net", net, "--ip", WEB, "--cap-add", "NET_ADMIN", IMAGE, "sleep", "600")
    assert ctrs.sh(c, f"ping -c1 -W2 {ROUTER}", check=False).returncode == 0
    ctrs.sh(c, "ip addr add 10.77.0.99/24 dev eth0")
    assert ctrs.sh(c, f"ping -c2 -W1 -I 10.77.0.99 {ROUTER}", check=False).returncode != 0
    seen = lan.router.run("nft", "list", "chain", "inet", "seen", "pre").stdout
    lines = {src: line for line in seen.splitlines() for src in (WEB, "10.77.0.99") if f"saddr {src} " in line}
    assert "packets 0 " not in lines[WEB] and "packets 0 " in lines["10.77.0.99"], seen
    dropped = sh("nft", "list", "chain", "inet", TABLE, "raw_pre").stdout
    assert "packets 0 " not in next(line for line in dropped.splitlines() if "@l2b_src4" in line), dropped


def test_ports_refused_restart_and_cleanup(nets, ctrs, daemon, lan):
    net = l2_net(nets, lan, "l2r")
    p = docker("run", "--rm", "--net", net, "-p", "8080:80", IMAGE, "true", check=False)
    assert p.returncode != 0 and "mode=nat" in p.stderr, p.stderr
    web = ctrs.start("l2rweb", "--net", net, "--ip", WEB, IMAGE, "httpd", "-f", "-p", "80")
    # kill -9, and the proxy entry and rule lost while pynet was down: restart puts them back.
    daemon.kill9()
    sh("ip", "neigh", "del", "proxy", WEB, "dev", lan.parent)
    lan.client.run("ip", "neigh", "flush", "all")
    assert fetch(f"http://{WEB}/", lan.client.name, timeout=3) is None
    daemon.start()
    wait_for(lambda: PAGE in (fetch(f"http://{WEB}/", lan.client.name, timeout=3) or ""), what="LAN reaches it")
    assert ctrs.sh(web, f"ping -c1 -W2 {BEYOND}", check=False).returncode == 0
    docker("rm", "-f", web)
    ctrs.made.remove(web)
    # Nothing of the container is left: no link, no proxy entry, no rule, no firewall element.
    assert links_with_prefix() == []
    assert WEB not in sh("ip", "neigh", "show", "proxy").stdout
    assert f"iif {PREFIX}" not in sh("ip", "rule").stdout
    assert WEB not in sh("nft", "list", "set", "inet", TABLE, "l2b_src4").stdout
    docker("network", "rm", net)
    nets.made.remove(net)
    routes = sh("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    assert [r for r in routes if f"dev {lan.parent} table" in r and "table local" not in r] == [], routes


def test_ipv6_lan_sees_only_the_hosts_mac(nets, ctrs, daemon, lan, router_server):
    hostmac = parent_mac(lan)
    lan.lock_uplink(hostmac)
    net = nets.create("l26", "-o", "mode=l2bridge", "-o", f"parent={lan.parent}", "--ipv6",
                      "--subnet", SUBNET, "--gateway", ROUTER, "--subnet", SUBNET6, "--gateway", ROUTER6)
    web6 = "fd77::140"
    # The LAN router learns from unsolicited NAs (RFC 9131: routers only, and only when told to).
    lan.router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    lan.router.run("sysctl", "-qw", "net.ipv6.conf.r0.accept_untracked_na=1")
    web = ctrs.start("l26web", "--net", net, "--ip", WEB, "--ip6", web6, "--cap-add", "NET_ADMIN",
                     IMAGE, "httpd", "-f", "-p", "80")
    # The join's unsolicited NA already told the router: container address -> host MAC.
    wait_for(lambda: hostmac in lan.router.run("ip", "-6", "neigh", "show", web6).stdout, timeout=5,
             what=f"router learns {web6} at {hostmac} from the unsolicited NA")
    # LAN client -> container over IPv6: the host answers neighbour solicitations with its own MAC.
    assert lan.client.run("busybox", "ping", "-6", "-c1", "-W2", web6, check=False).returncode == 0
    assert PAGE in (fetch(f"http://[{web6}]/", lan.client.name) or "")
    neigh = lan.client.run("ip", "-6", "neigh", "show", web6).stdout
    assert hostmac in neigh, neigh
    # Container -> router (its own source address, no NAT), -> LAN client, -> host.
    seen = ctrs.sh(web, bounded(f"wget -qO- http://[{ROUTER6}]:8000/")).stdout
    assert seen.strip().startswith(web6), seen
    assert ctrs.sh(web, f"ping -6 -c1 -W2 {CLIENT6}", check=False).returncode == 0
    assert PAGE in (fetch(f"http://[{web6}]/") or "")
    # Nothing but the host's MAC left its port.
    assert lan.uplink_drops() == 0
    # A spoofed IPv6 source is dropped by pynet.
    ctrs.sh(web, "ip -6 addr add fd77::99/128 dev eth0; sleep 2")  # busybox ip: no nodad; wait for DAD
    assert ctrs.sh(web, f"ping -6 -c2 -W1 -I fd77::99 {ROUTER6}", check=False).returncode != 0
    dropped = sh("nft", "list", "chain", "inet", TABLE, "raw_pre").stdout
    assert "packets 0 " not in next(line for line in dropped.splitlines() if "@l2b_src6" in line), dropped


def test_l2bridge_bad_options(nets, daemon, lan):
    base = ("-o", "mode=l2bridge", "-o", f"parent={lan.parent}", "--subnet", SUBNET)
    for args, words in ((("-o", "host_shim=false"), "only for mode=transparent"),
                        (("-o", "icc=false"), "only for mode=nat"),
                        (("-o", "parent=nosuchif0"), "does not exist")):
        p = nets.create("l2b", *base, *args, check=False)
        assert p.returncode != 0 and words in p.stderr, (args, p.stderr)
    assert links_with_prefix() == []


def test_crash_mid_create_endpoint_leaves_no_rule(nets, ctrs, daemon, lan):
    """kill -9 after the kernel part of CreateEndpoint (veth, rule, proxy entry) but before the state save:
    at restart the veth goes as a leftover link and the policy rule, kept by name, is swept too."""
    from test_crash import crash_during

    net = l2_net(nets, lan, "l2c")
    name = f"{NS_PREFIX}-l2cweb"
    ctrs.made.append(name)
    args = ("run", "-d", "--name", name, "--label", f"pynet-test={TAG}", "--net", net, "--ip", WEB,
            IMAGE, "httpd", "-f", "-p", "80")
    ok, _err = crash_during(daemon, "create_endpoint:kernel", *args)
    assert not ok
    assert f"iif {PREFIX}" not in sh("ip", "rule").stdout, sh("ip", "rule").stdout
    assert links_with_prefix() == []
    sh(DOCKER, "rm", "-f", name, check=False)
    docker(*args)  # the user's retry
    assert PAGE in (fetch(f"http://{WEB}/", lan.client.name) or "")
    assert sh("ip", "rule").stdout.count(f"iif {PREFIX}") == 1
