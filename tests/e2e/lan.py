"""A LAN made of namespaces (design.md "Test topology").

  [host] parent veth ──┐
  [client ns] c0 ──────┤ br0 in [switch ns]
  [router ns] r0 ──────┘        router: 10.77.0.1 / fd77::1 / fd78::1, "beyond" 198.18.0.1 on its lo,
                                optional dnsmasq as the LAN's DHCP server (DHCPv4 .200-.250;
                                DHCPv6 fd77::100-1ff; router advertisements: fd78::/64 for SLAAC)
                                or a hostile DHCPv4 server (tests/netns/dhcp_fake_server.py)
The host side of the first veth is the `parent` given to pynet (it ignores router advertisements:
the host's own IPv6 routes stay as they are).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from lib import TAG, Netns, sh

SUBNET, SUBNET6 = "10.77.0.0/24", "fd77::/64"
ROUTER, ROUTER6 = "10.77.0.1", "fd77::1"
CLIENT, CLIENT6 = "10.77.0.20", "fd77::20"
HOST, HOST6 = "10.77.0.10", "fd77::10"
BEYOND = "198.18.0.1"  # an address behind the router
DHCP_RANGE = ("10.77.0.200", "10.77.0.250")
DHCP6_RANGE = ("fd77::100", "fd77::1ff")
SLAAC6 = "fd78::/64"
FAKE_SERVER = str(Path(__file__).resolve().parents[1] / "netns" / "dhcp_fake_server.py")


class Lan:
    def __init__(self, label: str = "lan"):
        self.switch = self.client = self.router = None
        self.switch = Netns(f"{label}sw")
        self.client = Netns(f"{label}cl")
        self.router = Netns(f"{label}rt")
        self.parent = f"pnt{TAG}{label[:3]}"
        self.dnsmasq: subprocess.Popen | None = None
        self.leases = Path(f"/tmp/pynet-{TAG}-{label}.leases")
        self.dnsmasq_log = Path(f"/tmp/pynet-{TAG}-{label}-dnsmasq.log")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        s = self.switch.name
        sh("ip", "link", "del", self.parent, check=False)
        self.switch.run("ip", "link", "add", "br0", "type", "bridge")
        self.switch.run("ip", "link", "set", "br0", "up")
        sh("ip", "link", "add", self.parent, "type", "veth", "peer", "name", "uplink", "netns", s)
        for ns, ifname in ((self.client, "c0"), (self.router, "r0")):
            port = ifname[0] + "p"
            sh("ip", "-n", ns.name, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", s)
            self.switch.run("ip", "link", "set", port, "master", "br0", "up")
            ns.run("ip", "link", "set", ifname, "up")
        self.switch.run("ip", "link", "set", "uplink", "master", "br0", "up")
        sh("sysctl", "-qw", f"net.ipv6.conf.{self.parent}.accept_ra=0")
        sh("ip", "addr", "add", f"{HOST}/24", "dev", self.parent)
        sh("ip", "addr", "add", f"{HOST6}/64", "dev", self.parent, "nodad")
        sh("ip", "link", "set", self.parent, "up")
        self.client.run("ip", "addr", "add", f"{CLIENT}/24", "dev", "c0")
        self.client.run("ip", "addr", "add", f"{CLIENT6}/64", "dev", "c0", "nodad")
        self.router.run("ip", "addr", "add", f"{ROUTER}/24", "dev", "r0")
        self.router.run("ip", "addr", "add", f"{ROUTER6}/64", "dev", "r0", "nodad")
        self.router.run("ip", "addr", "add", "fd78::1/64", "dev", "r0", "nodad")
        self.router.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.router.run("ip", "addr", "add", f"{BEYOND}/32", "dev", "lo")
        self.router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.client.run("ip", "route", "add", "default", "via", ROUTER)

    def start_dhcp(self, *extra: str) -> None:
        """dnsmasq: DHCPv4, DHCPv6 (M flag on fd77::/64) and RAs (fd78::/64 for SLAAC); `extra` args."""
        self.stop_server()
        self.leases.unlink(missing_ok=True)
        self.dnsmasq_log.unlink(missing_ok=True)
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.router.name, "dnsmasq", "--keep-in-foreground", "--no-daemon",
             "--port=0", "--interface=r0", "--bind-interfaces", "--no-resolv", "--no-hosts",
             f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,2m",
             f"--dhcp-range={DHCP6_RANGE[0]},{DHCP6_RANGE[1]},64,2m", f"--dhcp-range={SLAAC6.split('/')[0]},ra-only,64,10m",
             "--enable-ra", f"--dhcp-option=option:router,{ROUTER}", f"--dhcp-leasefile={self.leases}",
             "--dhcp-authoritative", "--log-dhcp", f"--log-facility={self.dnsmasq_log}",
             f"--pid-file=/tmp/pynet-{TAG}-dnsmasq.pid", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        assert self.dnsmasq.poll() is None, self.dnsmasq.stderr.read()

    def start_fake_dhcp(self, scenario: dict) -> None:
        """A hostile DHCPv4 server (tests/netns/dhcp_fake_server.py) on r0 instead of dnsmasq."""
        self.stop_server()
        self.dnsmasq = subprocess.Popen(["ip", "netns", "exec", self.router.name, sys.executable, FAKE_SERVER, "r0",
                                         json.dumps(scenario)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        line = self.dnsmasq.stdout.readline().strip()
        assert line == "ready", (line, self.dnsmasq.stderr.read() if self.dnsmasq.poll() is not None else "")

    def stop_server(self) -> None:
        """The LAN's DHCP server (dnsmasq or the fake one) goes away."""
        if self.dnsmasq:
            self.dnsmasq.kill()
            self.dnsmasq.wait()
            for f in (self.dnsmasq.stdout, self.dnsmasq.stderr):
                if f:
                    f.close()
            self.dnsmasq = None

    def mac_of(self, ns: Netns, ifname: str) -> str:
        return json.loads(ns.run("ip", "-j", "link", "show", ifname).stdout)[0]["address"]

    def lock_uplink(self, mac: str) -> None:
        """Port security on the switch port facing the host: only `mac` may send (a counted drop)."""
        self.switch.run("nft", "add", "table", "bridge", "portsec")
        self.switch.run("nft", "add", "chain", "bridge", "portsec", "pfwd",
                        "{ type filter hook forward priority 0; policy accept; }")
        self.switch.run("nft", "add", "chain", "bridge", "portsec", "pinp",
                        "{ type filter hook input priority 0; policy accept; }")
        for chain in ("pfwd", "pinp"):
            self.switch.run("nft", "add", "rule", "bridge", "portsec", chain, "iifname", "uplink",
                            "ether", "saddr", "!=", mac, "counter", "drop")

    def uplink_drops(self) -> int:
        out = self.switch.run("nft", "list", "table", "bridge", "portsec").stdout
        return sum(int(line.split("packets ")[1].split()[0]) for line in out.splitlines() if "packets " in line)

    def lease_lines(self) -> list[str]:
        try:
            return [line for line in self.leases.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def close(self) -> None:
        self.stop_server()
        self.leases.unlink(missing_ok=True)
        self.dnsmasq_log.unlink(missing_ok=True)
        sh("ip", "link", "del", self.parent, check=False)
        for ns in (self.client, self.router, self.switch):
            if ns is not None:
                ns.close()
