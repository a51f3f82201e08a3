"""Security: the socket, spoofing on a nat network, --internal reaching the host's other networks."""

from __future__ import annotations

import os
import stat

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
