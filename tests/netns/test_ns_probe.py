"""kernel/probe.py (ARP probe, DAD NS) and kernel/sandbox.py (an address in a container's namespace) on a
namespace LAN (dhcp_lan.py), no pynet daemon: the real kernel answers, timings are printed."""

from __future__ import annotations

import json
import time

import pytest

from dhcp_lan import PARENT, ROUTER, ROUTER6, DhcpLan
from pynet.errors import KernelError
from pynet.kernel.links import Links
from pynet.kernel.probe import Prober

MAC_C = "02:42:0a:4d:00:2c"


@pytest.fixture
def lan():
    lan = DhcpLan("pr")
    try:
        yield lan
    finally:
        lan.close()


def router_mac(lan: DhcpLan) -> str:
    return json.loads(lan.router.run("ip", "-j", "link", "show", "r0").stdout)[0]["address"]


def timed(lan: DhcpLan, ip: str, count: int = 2, wait: float = 0.2) -> tuple[str, float]:
    async def go():
        t = time.perf_counter()
        mac = await Prober().probe(PARENT, ip, count, wait)
        return mac, time.perf_counter() - t
    return lan.in_host(go)


def test_probe_names_the_owner_and_costs_its_wait_when_nobody_answers(lan):
    mac = router_mac(lan)
    times: dict[str, list[float]] = {}
    for ip, want in ((ROUTER, mac), ("10.77.0.99", ""), (ROUTER6, mac), ("fd77::99", "")):
        for _ in range(3):
            got, dt = timed(lan, ip)
            assert got == want, (ip, got)
            times.setdefault(ip, []).append(dt)
    print("probe times (s):", {ip: [round(t, 3) for t in ts] for ip, ts in times.items()})
    for ip in ("10.77.0.99", "fd77::99"):  # a free address costs the wait, and not much more
        assert all(0.19 <= t < 0.6 for t in times[ip]), times[ip]
    assert min(times[ROUTER]) < 0.1  # an owner answers at once (the first answer ends the probe)


def test_what_the_probe_cannot_see_and_a_missing_parent(lan):
    """A macvlan child of the parent never sees what its lower device sends: pynet's own containers are
    checked from its state instead (and the host's own addresses from the host)."""
    lan.container(MAC_C, ipv4="10.77.0.44/24")
    assert timed(lan, "10.77.0.44", wait=0.1)[0] == ""
    with pytest.raises(KernelError, match="cannot probe 10.77.0.1 on nosuch0"):
        lan.in_host(lambda: Prober().probe("nosuch0", "10.77.0.1"))


def test_an_address_is_taken_from_a_container_and_given_back(lan):
    ctr = lan.container(MAC_C, ipv4="10.77.0.45/24")
    sandbox = f"/run/netns/{ctr.name}"

    def addrs() -> list[str]:
        out = json.loads(ctr.run("ip", "-j", "addr", "show", "eth0").stdout)
        return [f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"] if a["family"] == "inet"]

    async def change(present: bool) -> bool:
        return await Links().container_addr(sandbox, MAC_C.upper(), "10.77.0.45/24", present)

    assert lan.in_host(lambda: change(False)) is True and addrs() == []
    assert lan.in_host(lambda: change(False)) is False  # already gone
    assert lan.in_host(lambda: change(True)) is True and addrs() == ["10.77.0.45/24"]
    with pytest.raises(KernelError, match="not visible to pynet"):
        lan.in_host(lambda: Links().container_addr("/run/netns/nosuch", MAC_C, "10.77.0.45/24", True))
