"""DHCP that admins can reserve for, DHCPv6, SLAAC and a hostile server, on the namespace LAN (issue 14).

Docker 20.10 runs here; Docker 29's IPAM call sequence (the endpoint's name in RequestAddress) is driven
through the test daemon's socket, as dockerd 29 would send it. dnsmasq's lease file: IPv4 lines
"<expiry> <mac> <ip> <hostname> <client-id>", IPv6 lines "<expiry> <iaid> <ip> <hostname> <duid>".
"""

from __future__ import annotations

import ipaddress
import secrets
import time

import pytest

from conftest import IMAGE
from lan import DHCP6_RANGE, DHCP_RANGE, ROUTER, ROUTER6, SLAAC6, SUBNET
from lib import DRIVER, PREFIX, PYNET, docker, links_with_prefix, sh, wait_for
from pynet.dhcp import client_id_for
from test_transparent import daemon_leases, lan  # noqa: F401 - fixture

MAC_OPT, NAME_OPT = "com.docker.network.endpoint.macaddress", "com.docker.network.endpoint.name"
MAC_A, MAC_B = "02:42:0a:4d:00:a1", "02:42:0a:4d:00:b2"


def lines_with(lan, text: str) -> list[list[str]]:
    return [line.split() for line in lan.lease_lines() if f" {text} " in f"{line} "]


def inspect(name: str, field: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{." + field + "}}{{end}}", name).stdout.strip()


def in_range(ip: str, lo: str, hi: str) -> bool:
    return ipaddress.ip_address(lo) <= ipaddress.ip_address(ip) <= ipaddress.ip_address(hi)


class Engine29:
    """The IPAM + network calls dockerd 29 makes for `docker network create --ipam-driver pynet` and
    `docker run --name NAME`, sent to the test daemon's socket."""

    def __init__(self, daemon, lan):
        self.d, self.lan = daemon, lan
        self.net_id = secrets.token_hex(32)
        self.pool = self.d.ok("/IpamDriver.RequestPool", {"AddressSpace": "pynet-dhcp", "Pool": SUBNET,
                                                          "Options": {}, "V6": False})["PoolID"]
        self.d.ok("/IpamDriver.RequestAddress", {"PoolID": self.pool, "Address": ROUTER,
                                                 "Options": {"RequestAddressType": "com.docker.network.gateway"}})
        self.d.ok("/NetworkDriver.CreateNetwork", {
            "NetworkID": self.net_id, "Options": {"com.docker.network.enable_ipv6": False,
                                                  "com.docker.network.generic": {
                                                      "mode": "transparent", "parent": lan.parent,
                                                      "dhcp_domain": "lan.test"}},
            "IPv4Data": [{"AddressSpace": "pynet-dhcp", "Pool": SUBNET, "Gateway": f"{ROUTER}/24"}], "IPv6Data": []})

    def address(self, mac: str, name: str) -> str:
        return self.d.ok("/IpamDriver.RequestAddress", {"PoolID": self.pool, "Address": "",
                                                        "Options": {MAC_OPT: mac, NAME_OPT: name}})["Address"]

    def release(self, cidr: str) -> None:
        self.d.ok("/IpamDriver.ReleaseAddress", {"PoolID": self.pool, "Address": cidr})

    def close(self) -> None:
        self.d.call("/IpamDriver.ReleaseAddress", {"PoolID": self.pool, "Address": ROUTER})
        self.d.call("/IpamDriver.ReleasePool", {"PoolID": self.pool})
        self.d.call("/NetworkDriver.DeleteNetwork", {"NetworkID": self.net_id})


def test_reservation_by_client_id_follows_the_container_to_a_new_mac(daemon, lan):
    """Docker 29 names the container in RequestAddress: client-id 0 + name, hostname and FQDN from it."""
    lan.start_dhcp("--dhcp-host=id:web-res,10.77.0.210", "--domain=lan.test")
    e = Engine29(daemon, lan)
    try:
        first = e.address(MAC_A, "web-res")
        assert first == "10.77.0.210/24"
        cid = client_id_for("web-res").hex(":")
        wait_for(lambda: lines_with(lan, MAC_A), timeout=10, what="lease of MAC A")
        assert lines_with(lan, MAC_A)[0][2:] == ["10.77.0.210", "web-res", cid]  # hostname seen by the server
        # Re-created with another MAC, without a release (pynet or the host died): the same address.
        assert e.address(MAC_B, "web-res") == first
        wait_for(lambda: lines_with(lan, MAC_B), timeout=10, what="lease moved to MAC B")
        assert lines_with(lan, MAC_B)[0][2:4] == ["10.77.0.210", "web-res"] and not lines_with(lan, MAC_A)
        leases = daemon_leases(daemon)
        assert {(x["mac"], x["identity"], x["hostname"], x["domain"]) for x in leases} >= {
            (MAC_B, "web-res", "web-res", "lan.test")}
        e.release(first)
        e.release(first)  # MAC A's lease went with it too (pynet held both; both are given back)
        wait_for(lambda: not lines_with(lan, "10.77.0.210"), timeout=10, what="lease released")
        assert [x for x in daemon_leases(daemon) if x["network"] == e.net_id] == []
    finally:
        e.close()


def test_reservation_by_mac_with_docker_20(nets, ctrs, daemon, lan):
    """Engines before 29 name no container: the client-id is the MAC; --mac-address keeps it."""
    lan.start_dhcp("--dhcp-host=02:42:0a:4d:00:d3,10.77.0.211")
    net = nets.create("dm", "--ipam-driver", DRIVER, "-o", "mode=transparent", "-o", f"parent={lan.parent}",
                      "--subnet", SUBNET, "--gateway", ROUTER)
    for i in range(2):
        name = ctrs.start(f"dm{i}", "--net", net, "--mac-address", "02:42:0a:4d:00:d3", "--hostname", "mactest",
                          IMAGE, "sleep", "600")
        assert inspect(name, "IPAddress") == "10.77.0.211"
        wait_for(lambda: any(x[3] == "mactest" for x in lines_with(lan, "02:42:0a:4d:00:d3")), timeout=20,
                 what=f"hostname announced after Join: {lan.lease_lines()}")
        docker("rm", "-f", name)
        ctrs.made.remove(name)


def test_dhcpv6_lease_and_release(nets, ctrs, daemon, lan):
    lan.start_dhcp()
    net = nets.create("d6", "--ipam-driver", DRIVER, "--ipv6", "-o", "mode=transparent", "-o",
                      f"parent={lan.parent}", "--subnet", SUBNET, "--gateway", ROUTER, "--subnet", "fd77::/64",
                      "--gateway", ROUTER6)
    web = ctrs.start("d6web", "--net", net, IMAGE, "sleep", "600")
    ip6 = inspect(web, "GlobalIPv6Address")
    assert in_range(ip6, *DHCP6_RANGE), ip6
    assert in_range(inspect(web, "IPAddress"), *DHCP_RANGE)
    wait_for(lambda: lines_with(lan, ip6), timeout=10, what=f"the IPv6 lease in {lan.lease_lines()}")
    mac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    duid = "00:03:00:01:" + mac  # DUID-LL: Docker 20.10 names no container
    assert lines_with(lan, ip6)[0][4] == duid
    assert ctrs.sh(web, f"ping -6 -c1 -W2 {ROUTER6}", check=False).returncode == 0
    shown = [x for x in daemon_leases(daemon) if x["family"] == 6]
    assert [(x["ip"], x["state"]) for x in shown] == [(ip6, "bound")]
    wait_for(lambda: [x for x in daemon_leases(daemon) if x["family"] == 6][0]["renewals"] >= 1, timeout=20,
             what="a DHCPv6 renewal")
    out = sh(PYNET, "--socket", daemon.socket, "leases").stdout
    assert ip6 in out and "bound" in out, out
    docker("rm", "-f", web)
    ctrs.made.remove(web)
    wait_for(lambda: not lines_with(lan, ip6), timeout=10, what="the IPv6 lease released")
    assert daemon_leases(daemon) == []


def test_slaac_from_the_lan_router(nets, ctrs, daemon, lan):
    lan.start_dhcp()
    net = nets.create("sl", "--ipam-driver", DRIVER, "--ipam-opt", "mode=static", "--ipam-opt", "mode6=slaac",
                      "--ipv6", "-o", "mode=transparent", "-o", f"parent={lan.parent}", "--subnet", SUBNET,
                      "--gateway", ROUTER, "--ip-range", "10.77.0.64/28", "--subnet", SLAAC6, "--gateway", "fd78::1")
    web = ctrs.start("slweb", "--net", net, IMAGE, "sleep", "600")
    mac = ctrs.sh(web, "cat /sys/class/net/eth0/address").stdout.strip()
    assert inspect(web, "GlobalIPv6Address") == slaac(mac)  # Docker shows the address SLAAC gives the MAC
    assert inspect(web, "IPAddress") == "10.77.0.64"
    assert ctrs.sh(web, "ping -6 -c1 -W2 fd78::1", check=False).returncode == 0
    # A container whose SLAAC address a LAN host already uses is refused, naming the host's MAC.
    taken = "02:42:0a:4d:00:e5"
    lan.client.run("ip", "addr", "add", f"{slaac(taken)}/64", "dev", "c0", "nodad")
    p = docker("run", "--rm", "--net", net, "--mac-address", taken, IMAGE, "true", check=False)
    assert p.returncode != 0 and f"SLAAC address {slaac(taken)} of MAC {taken} is in use on the LAN: " \
        f"{lan.mac_of(lan.client, 'c0')} answered" in p.stderr, p.stderr


def slaac(mac: str) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    eui64 = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(ipaddress.IPv6Network(SLAAC6).network_address.packed[:8] + eui64))


def test_hostile_server_t1_zero_and_a_bad_mask(nets, ctrs, daemon, lan):
    lan.start_fake_dhcp({"yiaddr": "10.77.0.60", "options": [[51, "00000000"], [58, "00000000"], [59, "00000000"],
                                                              [1, "ff00ff00"], [3, "0a4d0001"]]})
    net = nets.create("dh", "--ipam-driver", DRIVER, "-o", "mode=transparent", "-o", f"parent={lan.parent}",
                      "--subnet", SUBNET, "--gateway", ROUTER)
    web = ctrs.start("dhweb", "--net", net, IMAGE, "sleep", "600")
    out = ctrs.sh(web, "ip -4 -o addr show eth0").stdout
    assert "inet 10.77.0.60/24" in out, out  # the network's prefix, not the server's 255.0.255.0
    (lease,) = daemon_leases(daemon)
    assert (lease["lease_time"], lease["t1"], lease["t2"]) == (60, 30, 52)  # clamped: no renewal storm
    assert any("255.0.255.0 ignored" in n for n in lease["notes"]), lease["notes"]
    docker("rm", "-f", web)
    ctrs.made.remove(web)
    assert [n for n in links_with_prefix() if not n.startswith(PREFIX + "s")] == []


@pytest.mark.slow
def test_a_lease_that_expires_is_taken_away_and_given_back(nets, ctrs, daemon, lan):
    """The server goes silent: at the lease's end (60 s, the shortest pynet accepts) the address leaves the
    container, `pynet leases` says lost; when the server is back, the address comes back (within 60 s)."""
    scenario = {"yiaddr": "10.77.0.61", "options": [[51, "0000003c"], [3, "0a4d0001"]]}
    lan.start_fake_dhcp(scenario)
    net = nets.create("dx", "--ipam-driver", DRIVER, "-o", "mode=transparent", "-o", f"parent={lan.parent}",
                      "--subnet", SUBNET, "--gateway", ROUTER)
    web = ctrs.start("dxweb", "--net", net, IMAGE, "sleep", "600")
    has = lambda: "10.77.0.61/24" in ctrs.sh(web, "ip -4 -o addr show eth0").stdout  # noqa: E731
    assert has()
    lan.stop_server()
    t = time.monotonic()
    wait_for(lambda: daemon_leases(daemon)[0]["state"] == "lost", timeout=90, interval=1, what="the lease lost")
    lost = daemon_leases(daemon)[0]
    assert "expired" in lost["lost_why"] and not has()
    print(f"lost after {time.monotonic() - t:.0f} s")
    out = sh(PYNET, "--socket", daemon.socket, "leases").stdout
    assert "lost (expired" in out, out
    lan.start_fake_dhcp(scenario)
    wait_for(lambda: daemon_leases(daemon)[0]["state"] == "bound", timeout=90, interval=1, what="bound again")
    wait_for(has, timeout=5, what="the address back in the container")
