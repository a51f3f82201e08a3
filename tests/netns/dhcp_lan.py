"""A namespace LAN for the DHCP client tests (tests/netns/test_ns_dhcp*.py), no pynet daemon.

  [host ns] up0 (the parent) ─┐
  [router ns] r0 ─────────────┤ br0 in [switch ns]
  [ctr ns] eth0: a macvlan of the host's up0 with the container's MAC (made when a test needs it)

The router holds 10.77.0.1/24, fd77::1/64 (DHCPv6) and fd78::1/64 (SLAAC only) and runs dnsmasq (or a
fake server). The client under test runs in the host namespace without a subprocess: `in_host()` runs a
coroutine in a thread that entered that namespace (setns affects only the calling thread), so every
socket pyroute2 or pynet opens there belongs to the host namespace. Every namespace is named with the
session's NS_PREFIX (the leak check covers them); processes are ours and killed by handle in close().
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from lib import TAG, Netns, sh, wait_for

SUBNET, ROUTER = "10.77.0.0/24", "10.77.0.1"
DHCP_RANGE = ("10.77.0.100", "10.77.0.150")
V6_DHCP, ROUTER6 = "fd77::/64", "fd77::1"
V6_SLAAC = "fd78::/64"
PARENT = "up0"
FAKE_SERVER = str(Path(__file__).resolve().parent / "dhcp_fake_server.py")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def run_in_netns(ns: str, make_coro, timeout: float = 60):
    """Run `make_coro()` to completion in a thread inside network namespace `ns`; its result or its error."""
    out: dict = {}

    def target() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                out["error"] = OSError(ctypes.get_errno(), f"setns {ns}")
                return
        finally:
            os.close(fd)
        try:
            out["value"] = asyncio.run(make_coro())
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=target, name=f"in-{ns}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"coroutine in {ns} still running after {timeout} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


class DhcpLan:
    def __init__(self, label: str):
        self.label = label
        self.switch = self.router = self.host = None
        self.ctrs: list[Netns] = []
        self.procs: list[subprocess.Popen] = []
        self.leases = Path(f"/tmp/pynet-{TAG}-{label}.leases")
        self.log = Path(f"/tmp/pynet-{TAG}-{label}-dnsmasq.log")
        try:
            self.switch = Netns(f"{label}sw")
            self.router = Netns(f"{label}rt")
            self.host = Netns(f"{label}h")
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.switch, self.router, self.host):
            # No DAD: addresses (and link-locals) are usable at once, so dnsmasq can send RAs right away.
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
        self.switch.run("ip", "link", "add", "br0", "type", "bridge")
        self.switch.run("ip", "link", "set", "br0", "up")
        for ns, ifname, port in ((self.host, PARENT, "hp"), (self.router, "r0", "rp")):
            sh("ip", "-n", ns.name, "link", "add", ifname, "type", "veth", "peer", "name", port,
               "netns", self.switch.name)
            self.switch.run("ip", "link", "set", port, "master", "br0", "up")
            ns.run("ip", "link", "set", ifname, "up")
        self.router.run("ip", "addr", "add", f"{ROUTER}/24", "dev", "r0")
        self.router.run("ip", "addr", "add", f"{ROUTER6}/64", "dev", "r0", "nodad")
        self.router.run("ip", "addr", "add", "fd78::1/64", "dev", "r0", "nodad")
        self.router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    # ------------------------------------------------------------ servers in the router namespace
    def dnsmasq(self, *extra: str) -> subprocess.Popen:
        """dnsmasq as the LAN's DHCPv4/DHCPv6/RA server on r0 (foreground, killed in close())."""
        self.leases.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.router.name, "dnsmasq", "--keep-in-foreground", "--no-daemon",
             "--port=0", "--interface=r0", "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-ping",
             f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,2m",
             "--dhcp-range=fd77::100,fd77::1ff,64,2m", "--dhcp-range=fd78::,ra-only,64,10m", "--enable-ra",
             f"--dhcp-option=option:router,{ROUTER}", f"--dhcp-leasefile={self.leases}",
             "--dhcp-authoritative", "--log-dhcp", f"--log-facility={self.log}",
             f"--pid-file=/tmp/pynet-{TAG}-{self.label}-dnsmasq.pid", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        time.sleep(0.3)
        assert p.poll() is None, p.stderr.read()
        return p

    def fake_server(self, scenario: dict) -> subprocess.Popen:
        """tests/netns/dhcp_fake_server.py (a hostile DHCPv4 server) on r0; prints "ready" when bound."""
        import json

        p = subprocess.Popen(["ip", "netns", "exec", self.router.name, sys.executable, FAKE_SERVER, "r0",
                              json.dumps(scenario)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline().strip()
        assert line == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        return p

    def lease_lines(self) -> list[str]:
        try:
            return [line for line in self.leases.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def wait_leases(self, pred, what: str, timeout: float = 10) -> list[str]:
        return wait_for(lambda: pred(self.lease_lines()) and self.lease_lines(), timeout=timeout,
                        interval=0.1, what=f"{what}; lease file: {self.lease_lines()}")

    # ------------------------------------------------------------ host and containers
    def in_host(self, make_coro, timeout: float = 60):
        return run_in_netns(self.host.name, make_coro, timeout)

    def container(self, mac: str, ipv4: str = "", ipv6_auto: bool = False) -> Netns:
        """A "container": a macvlan (bridge mode) of the parent with `mac`, moved into its own namespace."""
        ns = Netns(f"{self.label}c{len(self.ctrs)}")
        self.ctrs.append(ns)
        self.host.run("ip", "link", "add", "ctr0", "link", PARENT, "address", mac, "type", "macvlan",
                      "mode", "bridge")
        self.host.run("ip", "link", "set", "ctr0", "netns", ns.name)
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.ctr0.accept_dad=0")
        if ipv6_auto:
            ns.run("sysctl", "-qw", "net.ipv6.conf.ctr0.accept_ra=2", "net.ipv6.conf.ctr0.autoconf=1")
            ns.run("ip", "link", "set", "ctr0", "addrgenmode", "eui64")
        ns.run("ip", "link", "set", "ctr0", "name", "eth0")
        if ipv4:
            ns.run("ip", "addr", "add", ipv4, "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        return ns

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        self.leases.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        Path(f"/tmp/pynet-{TAG}-{self.label}-dnsmasq.pid").unlink(missing_ok=True)
        for ns in [*self.ctrs, self.host, self.router, self.switch]:
            if ns is not None:
                ns.close()

    def dnsmasq_log(self) -> str:
        try:
            return self.log.read_text()
        except FileNotFoundError:
            return ""
