"""Security: the socket, spoofing on a nat network, --internal reaching the host's other networks."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

from conftest import IMAGE, OUT4_HOST
from lib import TABLE, docker, sh
from test_nat import bounded, ping_ok


def ip_of(ctr: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", ctr).stdout.strip()


def mac_of(ctr: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", ctr).stdout.strip()


def spoof_drops() -> int:
    out = sh("nft", "list", "chain", "bridge", TABLE, "spoof").stdout
    return sum(int(line.split("packets ")[1].split()[0]) for line in out.splitlines() if "packets " in line)


def test_socket_is_root_only(daemon):
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    # Another user cannot talk to it.
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('CONNECTED')\n"
             "except PermissionError: print('DENIED')")
    p = sh("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", probe,
           daemon.socket, check=False, timeout=10)
    assert p.stdout.strip() == "DENIED", p.stdout + p.stderr


def test_nat_container_cannot_spoof_another_ip_or_mac(nets, ctrs, daemon):
    net = nets.create("spf", "--subnet", "10.216.0.0/24")
    victim = ctrs.start("spfv", "--net", net, IMAGE, "sleep", "600")
    target = ctrs.start("spft", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    evil = ctrs.start("spfe", "--net", net, "--cap-add", "NET_ADMIN", IMAGE, "sleep", "600")
    v_ip, v_mac, t_ip = ip_of(victim), mac_of(victim), ip_of(target)
    assert ctrs.sh(evil, f"ping -c1 -W2 {t_ip}", check=False).returncode == 0  # honest traffic flows
    before = spoof_drops()
    # 1. IPv4 source of another container.
    ctrs.sh(evil, f"ip addr add {v_ip}/32 dev eth0")
    assert ctrs.sh(evil, f"ping -c2 -W1 -I {v_ip} {t_ip}", check=False).returncode != 0
    after_ip = spoof_drops()
    assert after_ip > before
    # 2. ARP claiming the victim's address (cache poisoning): dropped, the host keeps the victim's MAC.
    ctrs.sh(evil, f"arping -U -c2 -I eth0 -s {v_ip} {v_ip}", check=False)
    assert spoof_drops() > after_ip
    gw_neigh = sh("ip", "neigh", "show", v_ip).stdout
    assert gw_neigh == "" or v_mac in gw_neigh, gw_neigh
    ctrs.sh(evil, f"ip addr del {v_ip}/32 dev eth0")
    # 3. The victim's MAC: nothing gets through with it.
    after_arp = spoof_drops()
    ctrs.sh(evil, f"ip link set eth0 down; ip link set eth0 address {v_mac}; ip link set eth0 up; "
                  f"ip route add default via {t_ip.rsplit('.', 1)[0]}.1 2>/dev/null; true")
    assert ctrs.sh(evil, bounded(f"wget -qO- http://{t_ip}/"), check=False).returncode != 0
    assert spoof_drops() > after_arp
    # The victim itself is unharmed.
    assert "pynet test page" in ctrs.sh(victim, bounded(f"wget -qO- http://{t_ip}/")).stdout


def test_internal_network_cannot_reach_the_hosts_other_networks(nets, ctrs, outside):
    other = nets.create("intoth")
    web = ctrs.start("intweb", "--net", other, IMAGE, "httpd", "-f", "-p", "80")
    web_ip = ip_of(web)
    net = nets.create("intl", "--internal")
    p = ctrs.run("intesc", "--net", net, "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c",
                 "gw=$(ip -4 addr show eth0 | sed -n 's/.*inet \\([0-9.]*\\)\\.[0-9]*\\/.*/\\1.1/p'); "
                 f"ip route add default via $gw; ping -c1 -W2 {web_ip} && echo REACHED-NET; "
                 f"ping -c1 -W2 {OUT4_HOST} && echo REACHED-HOST-NET; exit 0", check=False)
    assert "REACHED" not in p.stdout, p.stdout
    assert ping_ok(ctrs, other, web_ip)  # control: the target is up


ND_SPOOF = str(Path(__file__).resolve().parents[1] / "nd_spoof.py")


def spoof_rule_drops(match: str) -> int:
    """Packets dropped by the spoof chain's rules whose text contains `match`."""
    out = sh("nft", "list", "chain", "bridge", TABLE, "spoof").stdout
    return sum(int(line.split("packets ")[1].split()[0]) for line in out.splitlines()
               if match in line and "packets " in line)


def in_netns_of(ctr: str, *cmd: str, check: bool = True):
    """A command in the container's network namespace (as a process inside it with CAP_NET_RAW,
    Docker's default, could run it): raw frames leave through the container's eth0."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", ctr).stdout.strip()
    return sh("nsenter", "-t", pid, "-n", *cmd, check=check)


def test_nat_container_cannot_spoof_ipv6_neighbours_or_routers(nets, ctrs, daemon):
    """Link-local sources were allowed and neighbour/router advertisements unchecked: a container
    could claim another container's or the gateway's IPv6 address, or advertise itself as router."""
    net = nets.create("spf6", "--ipv6", "--subnet", "10.217.0.0/24", "--subnet", "fd00:217::/64")
    victim = ctrs.start("spf6v", "--net", net, IMAGE, "sleep", "600")
    evil = ctrs.start("spf6e", "--net", net, IMAGE, "sleep", "600")
    bridge = next(line.split(":")[1].strip() for line in sh("ip", "-o", "link", "show").stdout.splitlines()
                  if "fd00:217::1" in sh("ip", "-6", "addr", "show", "dev", line.split(":")[1].strip().split("@")[0],
                                         check=False).stdout)
    v6 = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}",
                victim).stdout.strip()
    v_mac = mac_of(victim)
    # Honest traffic first: the host and the victim learn each other (neighbour entries).
    assert sh("busybox", "ping6", "-c1", "-W2", v6, check=False).returncode == 0
    assert ctrs.sh(victim, "ping6 -c1 -W2 fd00:217::1", check=False).returncode == 0
    bridge_mac = sh("cat", f"/sys/class/net/{bridge}/address").stdout.strip()
    before = {k: spoof_rule_drops(k) for k in ("nd-neighbor-advert", "nd-router-advert", "ip6 saddr")}
    # 1. "victim's address is at my MAC" to every node.
    in_netns_of(evil, sys.executable, ND_SPOOF, "eth0", "na", v6)
    # 2. "the gateway is at my MAC".
    in_netns_of(evil, sys.executable, ND_SPOOF, "eth0", "na", "fd00:217::1")
    # 3. "I am a router, here is a prefix".
    in_netns_of(evil, sys.executable, ND_SPOOF, "eth0", "ra", "2001:db8:bad::/64")
    # 4. A packet with the victim's link-local address as source.
    from pynet.model import link_local
    in_netns_of(evil, sys.executable, ND_SPOOF, "eth0", "echo", link_local(v_mac), "fd00:217::1")
    time.sleep(0.5)
    host_view = sh("ip", "-6", "neigh", "show", v6, "dev", bridge).stdout
    assert v_mac in host_view, f"the host's entry for {v6} moved: {host_view}"
    victim_view = ctrs.sh(victim, "ip -6 neigh show fd00:217::1").stdout
    assert bridge_mac in victim_view or "lladdr" not in victim_view, victim_view
    routes = ctrs.sh(victim, "ip -6 route").stdout
    assert "2001:db8:bad" not in routes, routes
    after = {k: spoof_rule_drops(k) for k in before}
    chain = sh("nft", "list", "chain", "bridge", TABLE, "spoof").stdout
    assert after["nd-neighbor-advert"] >= before["nd-neighbor-advert"] + 6, chain  # 2 claims x 3 frames
    assert after["nd-router-advert"] >= before["nd-router-advert"] + 3
    assert after["ip6 saddr"] >= before["ip6 saddr"] + 3
    # Honest IPv6 still flows both ways.
    assert ctrs.sh(evil, f"ping6 -c1 -W2 {v6}", check=False).returncode == 0
