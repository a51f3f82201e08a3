"""LAN modes never give a container the host's address or one a LAN host uses (issue 14), real dockerd.

The namespace LAN (lan.py): the host is 10.77.0.10 on the parent, the LAN client 10.77.0.20 (and
10.77.0.12 here), the router 10.77.0.1.
"""

from __future__ import annotations

import time

import pytest

from conftest import IMAGE
from lan import CLIENT, HOST, ROUTER, SUBNET
from lib import DRIVER, PREFIX, docker, links_with_prefix
from test_transparent import lan  # noqa: F401 - fixture

CLIENT2 = "10.77.0.12"


def ip_of(name: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()


def ours_but_shims() -> list[str]:
    return [n for n in links_with_prefix() if not n.startswith(PREFIX + "s")]


@pytest.mark.parametrize("mode", ["transparent", "l2bridge"])
def test_host_and_lan_addresses_are_refused_naming_them(nets, ctrs, daemon, lan, mode):
    if mode == "l2bridge":
        with open(f"/sys/class/net/{lan.parent}/address") as fh:
            lan.lock_uplink(fh.read().strip())  # the probe goes out with the host's MAC: port security passes it
    net = nets.create(f"ad{mode[0]}", "-o", f"mode={mode}", "-o", f"parent={lan.parent}", "--subnet", SUBNET,
                      "--gateway", ROUTER)
    before = ours_but_shims()
    p = docker("run", "--rm", "--net", net, "--ip", HOST, IMAGE, "true", check=False)
    assert p.returncode != 0 and f"address {HOST} is configured on this host ({lan.parent})" in p.stderr, p.stderr
    assert "--ip-range" in p.stderr and f"--aux-address host={HOST}" in p.stderr
    client_mac = lan.mac_of(lan.client, "c0")
    t = time.monotonic()
    p = docker("run", "--rm", "--net", net, "--ip", CLIENT, IMAGE, "true", check=False)
    took = time.monotonic() - t
    assert p.returncode != 0, p.stdout
    assert f"address {CLIENT} is in use on the LAN: {client_mac} answered pynet's ARP probe on {lan.parent}" \
        in p.stderr, p.stderr
    assert ours_but_shims() == before  # nothing left behind
    out = ctrs.run("adfree", "--net", net, "--ip", "10.77.0.30", IMAGE, "ip", "-4", "-o", "addr", "show", "eth0")
    assert "inet 10.77.0.30/24" in out.stdout
    print(f"refused run took {took:.2f} s")
    if mode == "l2bridge":
        assert lan.uplink_drops() == 0


def test_auto_assigned_addresses_skip_the_host_and_lan_hosts(nets, ctrs, daemon, lan):
    """--ip-range 10.77.0.8/29 holds the host (.10) and a LAN host (.12): Docker's IPAM hands them out
    and pynet refuses them; pynet's static IPAM skips them."""
    lan.client.run("ip", "addr", "add", f"{CLIENT2}/24", "dev", "c0")
    net = nets.create("adp", "--ipam-driver", DRIVER, "--ipam-opt", "mode=static", "-o", "mode=transparent",
                      "-o", f"parent={lan.parent}", "--subnet", SUBNET, "--gateway", ROUTER,
                      "--ip-range", "10.77.0.8/29", "--aux-address", "printer=10.77.0.9")
    got = []
    for i in range(4):
        got.append(ip_of(ctrs.start(f"adp{i}", "--net", net, IMAGE, "sleep", "600")))
    assert got == ["10.77.0.8", "10.77.0.11", "10.77.0.13", "10.77.0.14"], got
    docker("rm", "-f", ctrs.made[1])  # its address goes back to the pool
    ctrs.made.pop(1)
    assert ip_of(ctrs.start("adp9", "--net", net, IMAGE, "sleep", "600")) == "10.77.0.11"


def test_docker_ipam_handing_out_the_hosts_address_is_refused(nets, ctrs, daemon, lan):
    net = nets.create("adh", "-o", "mode=l2bridge", "-o", f"parent={lan.parent}", "--subnet", SUBNET,
                      "--gateway", ROUTER, "--ip-range", "10.77.0.10/31")  # .10 (the host's) and .11
    results = [docker("run", "--rm", "--net", net, IMAGE, "ip", "-4", "-o", "addr", "show", "eth0", check=False)
               for _ in range(2)]
    refused = [r for r in results if r.returncode != 0]
    ran = [r for r in results if r.returncode == 0]
    assert all(f"address {HOST} is configured on this host" in r.stderr for r in refused), refused
    assert all(f"inet {HOST}/" not in r.stdout for r in ran)
    assert refused, "Docker's IPAM handed out the host's address at least once"
