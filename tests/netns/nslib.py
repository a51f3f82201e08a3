"""netns tier helpers: a pynet daemon alone in a fresh namespace, driven like dockerd drives it.

No dockerd here. A `Host` is a network namespace standing in for the Docker
host: the daemon runs inside it (`ip netns exec`), so its bridges, veths,
sysctls and nftables table live there and vanish with it. The test plays the
engine: it POSTs the libnetwork remote-driver calls (bodies shaped as
/work/shared/docs/protocol.md describes Docker 20.10 sending them) and then does
what the engine does after Join: move SrcName into a "container" namespace,
rename it, give it the address and the default route.

Only addresses inside namespaces the test made are used: container subnets
10.<n>.0.0/24, the uplink 192.0.2.0/24 (TEST-NET-1) between the host namespace
and a "LAN client" namespace.
(Module name is unique on purpose: test files of all tiers share one import
namespace, so `conftest` or `test_restart` would clash with tests/e2e.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import statedb  # noqa: F401 -- also puts plugin/ on sys.path
from lib import PREFIX, PYNET, TABLE, TAG, Daemon, Netns, links_with_prefix, reaped, sh, wait_for

PEER_SERVER = str(Path(__file__).resolve().parents[1] / "peer_server.py")
UPLINK_HOST = "192.0.2.1"  # the host namespace's "LAN" address
UPLINK_CLIENT = "192.0.2.2"  # a LAN client; it has no route to container subnets
UPLINK_IF = "up0"


def new_id() -> str:
    return secrets.token_hex(32)


def subnet(n: int) -> tuple[str, str]:
    """(pool, gateway CIDR) as Docker's IPAM sends them."""
    return f"10.{n}.0.0/24", f"10.{n}.0.1/24"


def addr(n: int, host: int) -> str:
    return f"10.{n}.0.{host}/24"


def network_body(net_id: str, n: int | None = None, pool: str | None = None, gateway: str | None = None,
                 generic: dict | None = None, internal: bool = False, v6: str | None = None) -> dict:
    """A CreateNetwork body as Docker 20.10 sends it for `docker network create -d ... -o k=v`."""
    if n is not None:
        pool, gateway = subnet(n)
    opts: dict = {"com.docker.network.enable_ipv6": bool(v6), "com.docker.network.generic": generic or {}}
    if internal:
        opts["com.docker.network.internal"] = True
    body = {
        "NetworkID": net_id,
        "Options": opts,
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool, "Gateway": gateway, "AuxAddresses": {}}],
        "IPv6Data": [],
    }
    if v6:
        net6 = ipaddress.ip_network(v6)
        body["IPv6Data"] = [{"AddressSpace": "LocalDefault", "Pool": v6,
                             "Gateway": f"{net6[1]}/{net6.prefixlen}", "AuxAddresses": {}}]
    return body


def portmap(*maps: tuple) -> list[dict]:
    """(container port, host port[, host ip[, proto]]) -> Docker's com.docker.network.portmap."""
    out = []
    for m in maps:
        cport, hport = m[0], m[1]
        hip = m[2] if len(m) > 2 else ""
        proto = {"tcp": 6, "udp": 17}[m[3] if len(m) > 3 else "tcp"]
        out.append({"Proto": proto, "IP": "", "Port": cport, "HostIP": hip, "HostPort": hport,
                    "HostPortEnd": hport})
    return out


@dataclass
class Net:
    id: str
    n: int
    bridge: str
    gateway: str  # plain IP


@dataclass
class Container:
    """A namespace holding one endpoint's interface, configured the way the engine does it."""

    ns: Netns
    net_id: str
    ep_id: str
    ip: str  # plain IPv4
    cidr: str
    mac: str
    join: dict
    ifname: str = "eth0"
    procs: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ns.name

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.ns.run(*args, check=check, timeout=timeout)

    def ping(self, ip: str, wait: int = 2) -> bool:
        cmd = ["busybox", "ping6" if ":" in ip else "ping", "-c", "1", "-W", str(wait), ip]
        return self.run(*cmd, check=False, timeout=wait + 5).returncode == 0

    def serve(self, port: int) -> None:
        self.procs.append(peer_server(self.name, port))

    def fetch(self, url: str, timeout: float = 3) -> str | None:
        return fetch(url, self.name, timeout)

    def close(self) -> None:
        for p in self.procs:
            stop_proc(p)
        self.procs.clear()
        self.ns.close()


def peer_server(netns: str, port: int) -> subprocess.Popen:
    """tests/peer_server.py in a namespace: answers each request with the client's address."""
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, PEER_SERVER, str(port), "60"],
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = p.stdout.readline().strip()
    if line != "listening":
        stop_proc(p)
        raise AssertionError(f"peer server in {netns} did not start: {line!r}")
    return p


def stop_proc(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(10)
    if p.stdout:
        p.stdout.close()


def fetch(url: str, netns: str, timeout: float = 3) -> str | None:
    """Body of an HTTP GET made inside `netns`, or None when it fails (refused, timed out)."""
    p = sh("ip", "netns", "exec", netns, "curl", "-s", "--max-time", str(timeout), url,
           check=False, timeout=timeout + 10)
    return p.stdout.strip() if p.returncode == 0 else None


class Host:
    """The daemon's namespace (the "Docker host") and everything a test makes around it."""

    def __init__(self, label: str = "h"):
        self.label = label
        self.ns = Netns(label)
        self.sock_dir = tempfile.mkdtemp(prefix=f"pynet-{TAG}-sock-")
        self.daemon = Daemon(netns=self.ns.name, sock_dir=self.sock_dir, extra_env={"PYNET_LOG_LEVEL": "info"})
        self.containers: list[Container] = []
        self.others: list[Netns] = []
        self.procs: list[subprocess.Popen] = []
        self.client: Netns | None = None
        self._count = 0

    # ------------------------------------------------------------ daemon and protocol
    def start(self) -> "Host":
        self.daemon.start()
        return self

    def call(self, path: str, body=None, method: str = "POST", raw: bytes | None = None) -> tuple[int, object]:
        return self.daemon.call(path, body, raw=raw, method=method)

    def ok(self, path: str, body=None):
        return self.daemon.ok(path, body)

    def err(self, path: str, body=None, raw: bytes | None = None) -> str:
        """The call must fail as the protocol says: non-200 and {"Err": "<message>"}."""
        status, doc = self.call(path, body, raw=raw)
        assert status != 200, f"{path} unexpectedly succeeded: {doc}"
        assert isinstance(doc, dict) and isinstance(doc.get("Err"), str) and doc["Err"], doc
        return doc["Err"]

    def get(self, path: str):
        status, doc = self.call(path, method="GET")
        assert status == 200, f"GET {path} -> {status} {doc}"
        return doc

    def networks(self) -> dict[str, dict]:
        return {n["id"]: n for n in self.get("/pynet/v1/networks")}

    def create_network(self, n: int, **kw) -> Net:
        net_id = new_id()
        assert self.ok("/NetworkDriver.CreateNetwork", network_body(net_id, n, **kw)) == {}
        bridge = self.networks()[net_id]["bridge"]
        return Net(net_id, n, bridge, f"10.{n}.0.1")

    def delete_network(self, net: Net) -> None:
        assert self.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net.id}) == {}

    def create_endpoint(self, net: Net, host: int, options: dict | None = None, ep_id: str | None = None,
                        mac: str = "") -> tuple[str, dict]:
        ep_id = ep_id or new_id()
        body = {"NetworkID": net.id, "EndpointID": ep_id,
                "Interface": {"Address": addr(net.n, host), "AddressIPv6": "", "MacAddress": mac},
                "Options": options or {}}
        return ep_id, self.ok("/NetworkDriver.CreateEndpoint", body)

    def join(self, net: Net, ep_id: str, sandbox: str = "", options: dict | None = None) -> dict:
        return self.ok("/NetworkDriver.Join", {"NetworkID": net.id, "EndpointID": ep_id,
                                               "SandboxKey": sandbox, "Options": options or {}})

    def run_container(self, net: Net, host: int, label: str | None = None, options: dict | None = None,
                      v6: str = "", mac: str = "", sandbox: str = "") -> Container:
        """CreateEndpoint + Join + what the engine does with the reply, in a new namespace.
        `sandbox`: the SandboxKey to send (default: the namespace's path; a managed plugin sees
        Docker's paths not at all)."""
        self._count += 1
        ns = Netns(label or f"c{self._count}")
        try:
            ep_id, reply = self.create_endpoint(net, host, options, mac=mac)
            mac = reply.get("Interface", {}).get("MacAddress") or mac
            join = self.join(net, ep_id, sandbox=sandbox or f"/run/netns/{ns.name}", options=options)
            ctr = Container(ns, net.id, ep_id, addr(net.n, host).split("/")[0], addr(net.n, host), mac, join)
            self.containers.append(ctr)
            self.plug(ctr)
            return ctr
        except BaseException:
            ns.close()
            raise

    def plug(self, ctr: Container) -> None:
        """Move SrcName into the container, rename it, address it, route via the gateway (engine's job)."""
        src = ctr.join["InterfaceName"]["SrcName"]
        ctr.ifname = ctr.join["InterfaceName"]["DstPrefix"] + "0"
        self.ns.run("ip", "link", "set", src, "netns", ctr.ns.name)
        ctr.run("ip", "link", "set", src, "name", ctr.ifname)
        ctr.run("ip", "addr", "add", ctr.cidr, "dev", ctr.ifname)
        ctr.run("ip", "link", "set", ctr.ifname, "up")
        if ctr.join.get("Gateway"):
            ctr.run("ip", "route", "add", "default", "via", ctr.join["Gateway"])

    def unplug(self, ctr: Container) -> None:
        """What the engine does when a sandbox goes: the interface back to the host under its SrcName."""
        src = ctr.join["InterfaceName"]["SrcName"]
        ctr.run("ip", "link", "set", ctr.ifname, "down")
        ctr.run("ip", "link", "set", ctr.ifname, "netns", self.ns.name)
        self.ns.run("ip", "link", "set", ctr.ifname, "name", src)

    def remove_container(self, ctr: Container) -> None:
        """Leave + DeleteEndpoint after the container namespace is gone (a container that exited)."""
        ctr.close()
        self.containers.remove(ctr)
        assert self.ok("/NetworkDriver.Leave", {"NetworkID": ctr.net_id, "EndpointID": ctr.ep_id}) == {}
        assert self.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": ctr.net_id, "EndpointID": ctr.ep_id}) == {}

    # ------------------------------------------------------------ kernel views (inside the host namespace)
    def links(self) -> list[str]:
        return sorted(links_with_prefix(PREFIX, self.ns.name))

    def link(self, name: str) -> dict | None:
        reaped(PREFIX, self.ns.name)  # a retired link is unregistered within MAX_WAIT (kernel/reaper.py)
        p = sh("ip", "-n", self.ns.name, "-j", "-d", "link", "show", "dev", name, check=False)
        return json.loads(p.stdout)[0] if p.returncode == 0 else None

    def addrs(self, name: str) -> list[str]:
        p = sh("ip", "-n", self.ns.name, "-j", "addr", "show", "dev", name)
        return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(p.stdout) for a in i.get("addr_info", [])]

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.ns.run("nft", *args, check=check)

    def table_present(self) -> bool:
        return self.nft("list", "table", "inet", TABLE, check=False).returncode == 0

    def nft_elements(self, name: str) -> list:
        """Elements of a set or map of the daemon's table, as nft's JSON gives them (a port map's
        counted key `{"elem": {"val": KEY, "counter": ...}}` given as its KEY)."""
        p = self.nft("-j", "list", "set" if not name.startswith("pub") else "map", "inet", TABLE, name)
        for item in json.loads(p.stdout)["nftables"]:
            body = item.get("set") or item.get("map")
            if body:
                return [[_key(e[0]), *e[1:]] if isinstance(e, list) else _key(e) for e in body.get("elem", [])]
        return []

    def forward_drops(self, key: str, set_name: str) -> int:
        """Packets counted by the forward chain's `<key> @<set_name> counter drop` rule."""
        p = self.nft("-j", "list", "chain", "inet", TABLE, "forward")
        for item in json.loads(p.stdout)["nftables"]:
            expr = (item.get("rule") or {}).get("expr", [])
            if len(expr) == 3 and "counter" in expr[1] and "drop" in expr[2]:
                m = expr[0].get("match", {})
                if m.get("left") == {"meta": {"key": key}} and m.get("right") == f"@{set_name}":
                    return expr[1]["counter"]["packets"]
        raise AssertionError(f"no `{key} @{set_name} counter drop` rule in the forward chain")

    def sysctl(self, key: str) -> str:
        return self.ns.run("cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()

    def state_ids(self) -> list[str]:
        """The networks in the daemon's state database (read from outside, as an operator would); after
        the deferred deletes of a DeleteNetwork/DeleteEndpoint (core/state.py: PURGE_DELAY) went."""
        time.sleep(0.3)
        return statedb.network_ids(self.daemon.state_dir)

    # ------------------------------------------------------------ a LAN client over a veth
    def lan_client(self) -> Netns:
        """A namespace on the host's "LAN": veth up0 (192.0.2.1) <-> (192.0.2.2), no route back to containers."""
        if self.client is None:
            self.client = Netns("lan")
            self.ns.run("ip", "link", "add", UPLINK_IF, "type", "veth", "peer", "name", "eth0",
                        "netns", self.client.name)
            self.ns.run("ip", "addr", "add", f"{UPLINK_HOST}/24", "dev", UPLINK_IF)
            self.ns.run("ip", "link", "set", UPLINK_IF, "up")
            self.client.run("ip", "addr", "add", f"{UPLINK_CLIENT}/24", "dev", "eth0")
            self.client.run("ip", "link", "set", "eth0", "up")
        return self.client

    def netns(self, label: str) -> Netns:
        ns = Netns(label)
        self.others.append(ns)
        return ns

    # ------------------------------------------------------------ teardown (always runs)
    def pynet_log(self) -> str:
        lines = self.daemon.log().splitlines()
        return "\n".join(line for line in lines if '"logger": "pyroute2' not in line)

    def close(self) -> None:
        errors = []
        for ctr in self.containers:
            ctr.close()
        for p in self.procs:
            stop_proc(p)
        if self.daemon.proc and self.daemon.proc.poll() is None:
            self.daemon.kill9()  # the namespace dies only when no process holds it
        for ns in self.others + ([self.client] if self.client else []):
            ns.close()
        self.ns.close()
        self.daemon.cleanup_state()
        shutil.rmtree(self.sock_dir, ignore_errors=True)
        # Namespace teardown is asynchronous in the kernel; nothing of ours may remain named.
        try:
            wait_for(lambda: self.ns.name not in sh("ip", "netns", "list").stdout, timeout=5,
                     what=f"netns {self.ns.name} gone")
        except AssertionError as e:
            errors.append(str(e))
        assert not errors, errors


def _key(elem):
    return elem["elem"]["val"] if isinstance(elem, dict) and "elem" in elem else elem


def pynet_cli(host: Host, *args: str) -> subprocess.CompletedProcess:
    """The `pynet` CLI against the test daemon's socket (PYNET_SOCKET), run outside the namespace."""
    env = dict(os.environ, PYNET_SOCKET=host.daemon.socket)
    return subprocess.run([PYNET, *args], env=env, capture_output=True, text=True, timeout=30)


def until(fn, timeout: float = 5, what: str = "condition"):
    return wait_for(fn, timeout=timeout, interval=0.05, what=what)
