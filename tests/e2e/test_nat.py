"""nat mode with a real dockerd: names, masquerade, isolation, options."""

from __future__ import annotations

import json

from conftest import IMAGE, OUT4, OUT4_HOST, OUT6, OUT6_HOST
from lib import PREFIX, PYNET, TABLE, docker, links_with_prefix, sh


def bounded(cmd: str, seconds: int = 5) -> str:
    """busybox `timeout` as PID 1 cannot stop its child, and sh execs a last command
    in place: keep the shell alive as PID 1 (tests/testing.md)."""
    return f"timeout {seconds} {cmd}; exit $?"


def wget(ctrs, net: str, url: str, check: bool = True, extra=()):
    return ctrs.run("wget", "--net", net, *extra, IMAGE, "sh", "-c", bounded(f"wget -qO- {url}"), check=check)


def ping_ok(ctrs, net: str, target: str, extra=()) -> bool:
    p = ctrs.run("ping", "--net", net, *extra, IMAGE, "ping", "-c1", "-W2", target, check=False)
    return p.returncode == 0


def network_id(name: str) -> str:
    return docker("network", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def test_name_resolution_and_http_between_containers(nets, ctrs):
    net = nets.create("dns")
    web = ctrs.start("web", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    page = wget(ctrs, net, f"http://{web}/").stdout
    assert "pynet test page" in page
    # The container's interface is the veth pynet made, with pynet's MAC (02:42 + IPv4).
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", web).stdout.strip()
    mac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    assert mac == "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def test_outbound_masquerade_v4(nets, ctrs, outside):
    net = nets.create("masq")
    # The outside host has no route to the container subnet: an answer proves masquerade.
    assert wget(ctrs, net, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST
    assert ping_ok(ctrs, net, OUT4)


def test_masquerade_off_keeps_source(nets, ctrs, outside):
    net = nets.create("nomasq", "-o", "masquerade=false", "--subnet", "10.213.0.0/24")
    # Without masquerade the outside sees the container address and cannot answer (no route back).
    sh("ip", "netns", "exec", outside.name, "ip", "route", "add", "10.213.0.0/24", "via", OUT4_HOST)
    try:
        got = wget(ctrs, net, f"http://{OUT4}:8000/").stdout.strip()
        assert got.startswith("10.213.0."), got
    finally:
        sh("ip", "netns", "exec", outside.name, "ip", "route", "del", "10.213.0.0/24", check=False)


def test_isolation_between_pynet_networks_and_docker_bridge(nets, ctrs):
    a = nets.create("isoa")
    b = nets.create("isob")
    web_b = ctrs.start("webb", "--net", b, IMAGE, "httpd", "-f", "-p", "80")
    ip_b = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", web_b).stdout.strip()
    assert ping_ok(ctrs, b, ip_b)  # reachable inside its own network
    assert not ping_ok(ctrs, a, ip_b)
    assert wget(ctrs, a, f"http://{ip_b}/", check=False).returncode != 0
    # Docker's default bridge cannot reach into pynet, and pynet cannot reach into it.
    web_d = ctrs.start("webd", "--net", "bridge", IMAGE, "httpd", "-f", "-p", "80")
    ip_d = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", web_d).stdout.strip()
    assert not ping_ok(ctrs, a, ip_d)
    assert not ping_ok(ctrs, "bridge", ip_b)


def test_internal_network_has_no_way_out(nets, ctrs, outside):
    net = nets.create("internal", "--internal")
    web = ctrs.start("iweb", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    assert "pynet test page" in wget(ctrs, net, f"http://{web}/").stdout
    assert not ping_ok(ctrs, net, OUT4)
    routes = ctrs.run("routes", "--net", net, IMAGE, "ip", "route").stdout
    assert "default" not in routes
    # Even with a default route added by hand, forwarding out is dropped.
    p = ctrs.run("escape", "--net", net, "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c",
                 "gw=$(ip -4 addr show eth0 | sed -n 's/.*inet \\([0-9.]*\\)\\.[0-9]*\\/.*/\\1.1/p'); "
                 "ip route add default via $gw && " + bounded(f"wget -qO- http://{OUT4}:8000/"), check=False)
    assert p.returncode != 0 and OUT4_HOST not in p.stdout


def test_icc_false_blocks_container_to_container(nets, ctrs):
    net = nets.create("noicc", "-o", "icc=false")
    web = ctrs.start("nweb", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", web).stdout.strip()
    gw = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", net).stdout.strip()
    assert not ping_ok(ctrs, net, ip)
    assert ping_ok(ctrs, net, gw)  # the host (gateway) is still reachable


def test_ipv6_between_containers_and_out(nets, ctrs, outside):
    net = nets.create("v6", "--ipv6", "--subnet", "10.214.0.0/24", "--subnet", "fd00:214::/64")
    web = ctrs.start("v6web", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    ip6 = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}", web).stdout.strip()
    assert ip6.startswith("fd00:214::")
    assert "pynet test page" in wget(ctrs, net, f"http://[{ip6}]/").stdout
    assert ping_ok(ctrs, net, "fd00:214::1")
    assert wget(ctrs, net, f"http://[{OUT6}]:8000/").stdout.strip() == OUT6_HOST


def test_connect_disconnect_and_several_networks(nets, ctrs):
    a = nets.create("cona")
    b = nets.create("conb")
    web = ctrs.start("cweb", "--net", b, IMAGE, "httpd", "-f", "-p", "80")
    client = ctrs.start("client", "--net", a, IMAGE, "sleep", "600")
    assert ctrs.sh(client, f"timeout 5 wget -qO- http://{web}/", check=False).returncode != 0
    docker("network", "connect", b, client)
    assert "pynet test page" in ctrs.sh(client, f"timeout 5 wget -qO- http://{web}/").stdout
    assert ctrs.sh(client, "ls /sys/class/net").stdout.split() == ["eth0", "eth1", "lo"]
    docker("network", "disconnect", b, client)
    assert ctrs.sh(client, f"timeout 5 wget -qO- http://{web}/", check=False).returncode != 0
    assert ctrs.sh(client, "ls /sys/class/net").stdout.split() == ["eth0", "lo"]
    # The endpoint's veth is gone from the host after disconnect.
    ep_links = [n for n in links_with_prefix() if n.startswith(PREFIX + "h")]
    assert len(ep_links) == 2, ep_links  # web and client's eth0


def test_net_container_shares_the_namespace(nets, ctrs):
    net = nets.create("share")
    web = ctrs.start("sweb", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    out = ctrs.run("side", "--net", f"container:{web}", IMAGE, "sh", "-c", "timeout 5 wget -qO- http://127.0.0.1/")
    assert "pynet test page" in out.stdout


def test_static_ip_mac_and_mtu(nets, ctrs):
    net = nets.create("static", "--subnet", "10.215.0.0/24", "-o", "mtu=1400")
    c = ctrs.start("static", "--net", net, "--ip", "10.215.0.77", "--mac-address", "02:aa:bb:cc:dd:ee",
                   IMAGE, "sleep", "600")
    assert "inet 10.215.0.77/24" in ctrs.sh(c, "ip -4 addr show eth0").stdout
    assert ctrs.sh(c, "cat /sys/class/net/eth0/address").stdout.strip() == "02:aa:bb:cc:dd:ee"
    assert ctrs.sh(c, "cat /sys/class/net/eth0/mtu").stdout.strip() == "1400"
    assert ping_ok(ctrs, net, "10.215.0.77")


def test_cli_ls_and_inspect(nets, ctrs, daemon):
    net = nets.create("cli", "--subnet", "10.216.0.0/24")
    ctrs.start("clic", "--net", net, "--ip", "10.216.0.9", IMAGE, "sleep", "600")
    ls = sh(PYNET, "--socket", daemon.socket, "ls").stdout
    assert net in ls and "10.216.0.0/24" in ls
    doc = json.loads(sh(PYNET, "--socket", daemon.socket, "inspect", net).stdout)
    assert doc["name"] == net and doc["mode"] == "nat"
    assert [e["ipv4"] for e in doc["endpoints"]] == ["10.216.0.9/24"]
    assert doc["endpoints"][0]["mac"] == "02:42:0a:d8:00:09"


def test_firewall_shape(nets, daemon):
    nets.create("fw")
    table = sh("nft", "list", "table", "inet", TABLE).stdout
    assert "chain forward" in table and "masquerade" in table
    chain = sh("nft", "list", "chain", "ip", "filter", "DOCKER-USER").stdout
    assert f'iifname "{PREFIX}*" accept' in chain and f'oifname "{PREFIX}*" accept' in chain
    # iptables-nft still reads Docker's chain (no "incompatible" table).
    ipt = sh("iptables", "-S", "DOCKER-USER").stdout
    assert f"-i {PREFIX}+ -j ACCEPT" in ipt and f"-o {PREFIX}+ -j ACCEPT" in ipt
