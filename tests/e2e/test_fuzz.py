"""Hostile input on the socket: every route, fuzzed with hypothesis against a real daemon.

The daemon is a real `pynet serve` (lib.Daemon) alone in a namespace of its own
(socket in a temp dir, never /run/docker/plugins, so dockerd never sees it): its
bridges, veths and nftables table live there, away from the session daemon
(same link prefix and table name) and from anything else on this machine.

Properties, for every request:
  * an HTTP status and a JSON body: 200 with a document, or non-200 with a
    non-empty "Err" string (what Docker shows the user);
  * the daemon process is still alive, and no request hangs.
After the run: every network that was created is deleted through the protocol,
then no link with lib.PREFIX and no element in the table lib.TABLE remains.

Profiles: quick (about 300 requests, well under a minute) by default; long
(about 5000) with PYNET_SLOW=1. The last test prints how many requests ran.
"""

from __future__ import annotations

import base64
import collections
import copy
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import statedb
from lib import PREFIX, TABLE, Daemon, Netns, links_with_prefix

SLOW = os.environ.get("PYNET_SLOW") == "1"
# Hypothesis' caches go to /tmp, not into the work tree (no example database: database=None below).
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "pynet-hypothesis"))
MAX_BODY = 1 << 20  # the fuzz daemon runs with this cap (PYNET_MAX_BODY), below the 16 MiB default, to stay quick

# Examples per hypothesis test; quick totals ~300 requests with the sweep below, long ~5000.
BUDGET = {
    "bytes": 30, "malformed": 30, "wrong_types": 30, "mutated": 130, "lifecycle": 40, "get_routes": 25,
    "methods": 15,
} if not SLOW else {
    "bytes": 400, "malformed": 400, "wrong_types": 600, "mutated": 2000, "lifecycle": 800, "get_routes": 300,
    "methods": 200,
}

POST_ROUTES = [
    "/Plugin.Activate",
    "/NetworkDriver.GetCapabilities",
    "/NetworkDriver.CreateNetwork",
    "/NetworkDriver.DeleteNetwork",
    "/NetworkDriver.CreateEndpoint",
    "/NetworkDriver.DeleteEndpoint",
    "/NetworkDriver.EndpointOperInfo",
    "/NetworkDriver.Join",
    "/NetworkDriver.Leave",
    "/NetworkDriver.ProgramExternalConnectivity",
    "/NetworkDriver.RevokeExternalConnectivity",
    "/NetworkDriver.DiscoverNew",
    "/NetworkDriver.DiscoverDelete",
    "/NetworkDriver.AllocateNetwork",
    "/NetworkDriver.FreeNetwork",
    "/IpamDriver.GetCapabilities",
    "/IpamDriver.GetDefaultAddressSpaces",
    "/IpamDriver.RequestPool",
    "/IpamDriver.ReleasePool",
    "/IpamDriver.RequestAddress",
    "/IpamDriver.ReleaseAddress",
    "/pynet/v1/ports/add",
    "/pynet/v1/ports/rm",
    "/pynet/v1/reconcile",
]
GET_ROUTES = ["/pynet/v1/leases", "/pynet/v1/ports", "/pynet/v1/networks", "/pynet/v1/networks/{ref}",
              "/pynet/v1/status"]
ALL_ROUTES = [(p, "POST") for p in POST_ROUTES] + [(p, "GET") for p in GET_ROUTES]

# A network and an endpoint that exist (re-made before each mutated example), so that
# mutated bodies naming them reach the deep paths: Join, ports, EndpointOperInfo, ...
BASE_NET = "b" * 8 + secrets.token_hex(28)
BASE_EP = "e" * 8 + secrets.token_hex(28)
BASE_SUBNET, BASE_GW, BASE_ADDR = "10.250.0.0/24", "10.250.0.1/24", "10.250.0.2/24"
UPLINK = "up0"  # a veth in the namespace: an existing parent for mode=transparent/l2bridge bodies
L2B_RULE_PRIORITY = 20100  # plugin/pynet/modes/l2bridge.py RULE_PRIORITY

CASES: collections.Counter = collections.Counter()  # route -> requests sent
STATUSES: collections.Counter = collections.Counter()
OK: collections.Counter = collections.Counter()  # route -> 200 answers
INTERNAL: list[str] = []  # answers that came from the catch-all (an unexpected exception in a handler)
CREATED: set[str] = set()  # network IDs a CreateNetwork succeeded for
RUN_START = [time.monotonic()]  # reset when the daemon starts


# ----------------------------------------------------------------------------- the daemon
@pytest.fixture(scope="module")
def fz():
    ns = Netns("fuzz")
    sock_dir = tempfile.mkdtemp(prefix="pynet-fuzz-sock-")
    d = Daemon(netns=ns.name, sock_dir=sock_dir, extra_env={"PYNET_LOG_LEVEL": "info", "PYNET_MAX_BODY": str(MAX_BODY)})
    try:
        ns.run("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "up1")
        ns.run("ip", "addr", "add", "192.0.2.1/24", "dev", UPLINK)
        ns.run("ip", "link", "set", UPLINK, "up")
        ns.run("ip", "link", "set", "up1", "up")
        d.start()
        RUN_START[0] = time.monotonic()
        fz = Fuzz(d, ns)
        yield fz
    finally:
        if d.proc and d.proc.poll() is None:
            d.kill9()
        ns.close()
        d.cleanup_state()
        shutil.rmtree(sock_dir, ignore_errors=True)


class Fuzz:
    def __init__(self, daemon: Daemon, ns: Netns):
        self.d = daemon
        self.ns = ns

    def send(self, path: str, body=None, raw: bytes | None = None, method: str = "POST",
             headers: dict | None = None, route: str | None = None) -> tuple[int, object]:
        """One request; checks the properties every answer must have."""
        CASES[route or path.split("?")[0]] += 1
        status, doc = self.d.call(path, body, raw=raw, method=method, headers=headers, timeout=20)
        STATUSES[status] += 1
        OK[route or path.split("?")[0]] += status == 200
        self.check(path, status, doc, body if raw is None else raw)
        if path == "/NetworkDriver.CreateNetwork" and status == 200 and isinstance(body, dict):
            CREATED.add(str(body.get("NetworkID")))
        return status, doc

    def check(self, path: str, status: int, doc, sent) -> None:
        assert self.d.proc.poll() is None, f"pynet died on {path} {_short(sent)}:\n{self.d.log()}"
        assert 200 <= status <= 599, (path, status, doc)
        if status == 200:
            assert isinstance(doc, (dict, list)), f"{path} -> 200 without a JSON document: {doc!r}"
        else:
            assert isinstance(doc, dict), f"{path} -> {status} without a JSON body: {_short(doc)} (sent {_short(sent)})"
            assert isinstance(doc.get("Err"), str) and doc["Err"].strip(), \
                f"{path} -> {status} without Err: {_short(doc)} (sent {_short(sent)})"
            if doc["Err"].startswith("pynet internal error"):
                INTERNAL.append(f"{path} {_short(sent, 200)} -> {doc['Err'][:200]}")

    def ensure_base(self) -> None:
        """The base network and endpoint exist (idempotent calls; a fuzzed Delete may have removed them).

        A fuzzed network or endpoint may hold the base's subnet, address or MAC: then start afresh.
        """
        for attempt in range(2):
            answers = [self.d.call(path, body, timeout=20) for path, body in
                       (("/NetworkDriver.CreateNetwork", base_network()),
                        ("/NetworkDriver.CreateEndpoint", base_endpoint()))]
            if all(status == 200 for status, _ in answers):
                return
            if attempt == 0:
                self.delete_all()
        raise AssertionError(f"base network/endpoint not re-created: {answers}\n{self.d.log()}")

    def networks(self) -> list[dict]:
        status, doc = self.d.call("/pynet/v1/networks", method="GET", timeout=20)
        assert status == 200, doc
        return doc

    def delete_all(self, keep: tuple[str, ...] = ()) -> None:
        """Delete every network through the protocol (as `docker network rm` would)."""
        for n in self.networks():
            if n["id"] in keep:
                continue
            status, doc = self.d.call("/NetworkDriver.DeleteNetwork", {"NetworkID": n["id"]}, timeout=30)
            assert status == 200, f"DeleteNetwork {n['id']!r} -> {status} {doc}"

    def nft_elements(self) -> list[str]:
        """Every element of every set and map of the daemon's tables (inet, and bridge for nat
        anti-spoofing): none may be left when no network exists."""
        out = []
        for family in ("inet", "bridge"):
            p = self.ns.run("nft", "-j", "list", "table", family, TABLE, check=False)
            if p.returncode != 0:
                continue  # no table at all: nothing stray either
            for item in json.loads(p.stdout)["nftables"]:
                body = item.get("set") or item.get("map")
                if body and body.get("elem"):
                    out += [f"{family} {body['name']}: {json.dumps(e)}" for e in body["elem"]]
        return out

    def link(self, name: str) -> dict | None:
        p = self.ns.run("ip", "-j", "-d", "link", "show", "dev", name, check=False)
        return json.loads(p.stdout)[0] if p.returncode == 0 else None


def _short(x, n: int = 300) -> str:
    text = x.decode("latin-1") if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x, default=str))
    return repr(text[:n]) + (f"... ({len(text)} chars)" if len(text) > n else "")


def base_network() -> dict:
    return {"NetworkID": BASE_NET, "Options": {"com.docker.network.enable_ipv6": False,
                                               "com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": BASE_SUBNET, "Gateway": BASE_GW,
                          "AuxAddresses": {}}], "IPv6Data": []}


def base_endpoint() -> dict:
    return {"NetworkID": BASE_NET, "EndpointID": BASE_EP,
            "Interface": {"Address": BASE_ADDR, "AddressIPv6": "", "MacAddress": ""}, "Options": {}}


def hyp(name: str):
    return settings(max_examples=BUDGET[name], deadline=None, database=None, derandomize=not SLOW,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)


# ----------------------------------------------------------------------------- strategies
EVIL_STRINGS = [
    "", " ", "\t", "\n", "\x00", "..", "../", "../../etc/passwd", "/", "eth0 ", " eth0", "eth 0", "eth0\n",
    "é", "eth\u00e90", "\u202eeth0", "\U0001f4a9", "lo", UPLINK, "up0.4095", "up0.0", "up0.99999", "a" * 15,
    "a" * 16, "x" * 4096, "y" * 70_000, "-1", "0", "65536", "1e400", "NaN", "Infinity", "true", "null", "%s%n",
    "${jndi:ldap://x}", "'; DROP TABLE", "pn-", PREFIX + "nffffffff", "docker0", "bridge", "0.0.0.0/0",
    "::/0", "255.255.255.255/32", "10.250.0.0/24", "10.250.0.1", "fe80::1/64", "1.2.3.4/33", "::ffff:1.2.3.4",
]
# Keys that look like Docker's or pynet's: the handlers' branches.
NET_OPTION_KEYS = ["mode", "parent", "bridge_name", "mtu", "icc", "masquerade", "host_binding_ipv4", "host_shim",
                   "container_iface_prefix", "macvlan_mode", "com.docker.network.bridge.name",
                   "com.docker.network.driver.mtu", "com.docker.network.bridge.enable_icc"]

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(), st.text(max_size=40), st.sampled_from(EVIL_STRINGS))
junk = st.recursive(json_scalar, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.text(max_size=12), c, max_size=4)),
                    max_leaves=12)
evil = st.one_of(st.sampled_from(EVIL_STRINGS), st.text(max_size=40), junk)


def hexid(min_size: int = 8, max_size: int = 64):
    return st.text(alphabet="0123456789abcdefABCDEF", min_size=min_size, max_size=max_size)


ids = st.one_of(
    st.sampled_from([BASE_NET, BASE_EP, BASE_NET.upper(), BASE_NET + "\n", "b" * 8, "e" * 8 + "0" * 56]),
    hexid().map(lambda s: s.ljust(64, "0")),  # a Docker-shaped ID, sometimes sharing a prefix
    hexid(1, 7), hexid(65, 80), hexid().map(lambda s: s + "\n"),
    st.builds(lambda a, b: a + b, hexid(8, 8), st.sampled_from(["g", " ", "/", "..", "\x00", "é"])),
    evil,
)
net_ids = st.one_of(st.just(BASE_NET), ids)
ep_ids = st.one_of(st.just(BASE_EP), ids)
octet = st.integers(0, 255)
good_pool = st.builds(lambda a, b: (f"10.{a}.{b}.0/24", f"10.{a}.{b}.1/24"), st.integers(251, 254), octet)
cidr4 = st.one_of(st.builds(lambda b, h, p: f"10.250.{b}.{h}/{p}", st.integers(0, 1), octet, st.integers(0, 40)),
                  st.just(BASE_ADDR), evil)
ports = st.one_of(st.integers(-2, 70000), st.sampled_from([0, 1, 80, 65535, 65536, -1, 2**31, 2**63]), evil)
portmap_item = st.fixed_dictionaries({}, optional={
    "Proto": st.one_of(st.sampled_from([6, 17, 132, 0, 1, 255, -6, "tcp", 6.0, True]), evil),
    "IP": st.one_of(st.just(""), evil),
    "Port": ports, "HostPort": ports, "HostPortEnd": ports,
    "HostIP": st.one_of(st.sampled_from(["", "0.0.0.0", "127.0.0.1", "::", "::1", "192.0.2.1", "1.2.3.4",
                                         "999.1.1.1", "::ffff:127.0.0.1"]), evil),
})
portmap = st.one_of(st.lists(portmap_item, max_size=4), evil)
mac = st.one_of(st.sampled_from(["", "02:42:0a:fa:00:09", "01:00:5e:00:00:01", "00:00:00:00:00:00",
                                 "02-42-0a-fa-00-0a", "ff:ff:ff:ff:ff:ff", "02:42:0a:fa:00", "02:42:0a:fa:00:0g"]),
                evil)
mac_b64 = st.one_of(st.binary(max_size=10).map(lambda b: base64.b64encode(b).decode()), evil)
endpoint_options = st.one_of(
    st.fixed_dictionaries({}, optional={
        "com.docker.network.portmap": portmap,
        "com.docker.network.endpoint.exposedports": st.one_of(
            st.lists(st.fixed_dictionaries({"Proto": st.sampled_from([6, 17]), "Port": ports}), max_size=3), evil),
        "com.docker.network.endpoint.macaddress": mac_b64,
        "com.docker.network.foo": junk,
        "unknown_driver_opt": evil,
    }),
    evil,
)
generic = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(NET_OPTION_KEYS), st.text(max_size=12)),
                    st.one_of(st.sampled_from(["nat", "transparent", "l2bridge", "NAT", "bogus", UPLINK,
                                               "1500", "68", "67", "65535", "65536", "9" * 30, "-1", "true",
                                               "false", "maybe", "private", "passthru", "192.0.2.1"]),
                              evil, st.integers(-10, 70000), st.booleans()),
                    max_size=4),
    evil,
)
ip_data_item = st.one_of(
    st.builds(lambda pg, sp, aux, extra: {"AddressSpace": sp, "Pool": pg[0], "Gateway": pg[1],
                                          "AuxAddresses": aux, **extra},
              good_pool, st.sampled_from(["LocalDefault", "", "pynet-dhcp", "GlobalDefault"]),
              st.one_of(st.just({}), junk), st.dictionaries(st.text(max_size=8), junk, max_size=2)),
    st.fixed_dictionaries({}, optional={"AddressSpace": evil, "Pool": st.one_of(cidr4, evil),
                                        "Gateway": st.one_of(cidr4, evil), "AuxAddresses": junk}),
    evil,
)
ip6_item = st.one_of(
    st.builds(lambda n: {"AddressSpace": "LocalDefault", "Pool": f"fd00:{n:x}::/64", "Gateway": f"fd00:{n:x}::1/64"},
              st.integers(0x250, 0x260)),
    ip_data_item,
)


def with_extras(d: st.SearchStrategy) -> st.SearchStrategy:
    """Sometimes unknown fields on top (Docker may add some; an attacker will)."""
    return st.one_of(d, st.builds(lambda a, b: {**b, **a} if isinstance(a, dict) else a, d,
                                  st.dictionaries(st.text(max_size=16), junk, max_size=3)))


def ids_body(**more) -> st.SearchStrategy:
    return with_extras(st.fixed_dictionaries({"NetworkID": net_ids, "EndpointID": ep_ids}, optional=more))


BODIES: dict[str, st.SearchStrategy] = {
    "/NetworkDriver.CreateNetwork": with_extras(st.fixed_dictionaries(
        {"NetworkID": net_ids},
        optional={"Options": st.one_of(st.fixed_dictionaries({}, optional={
            "com.docker.network.generic": generic,
            "com.docker.network.enable_ipv6": st.one_of(st.booleans(), evil),
            "com.docker.network.internal": st.one_of(st.booleans(), evil)}), evil),
            "IPv4Data": st.one_of(st.lists(ip_data_item, max_size=3), evil),
            "IPv6Data": st.one_of(st.lists(ip6_item, max_size=2), evil)})),
    "/NetworkDriver.DeleteNetwork": with_extras(st.fixed_dictionaries({"NetworkID": net_ids})),
    "/NetworkDriver.CreateEndpoint": ids_body(
        Interface=st.one_of(st.fixed_dictionaries({}, optional={
            "Address": cidr4, "AddressIPv6": st.one_of(st.just(""), st.just("fd00:250::5/64"), evil),
            "MacAddress": mac}), evil),
        Options=endpoint_options),
    "/NetworkDriver.DeleteEndpoint": ids_body(),
    "/NetworkDriver.EndpointOperInfo": ids_body(),
    "/NetworkDriver.Join": ids_body(SandboxKey=st.one_of(st.just("/var/run/docker/netns/0123456789ab"), evil),
                                    Options=endpoint_options),
    "/NetworkDriver.Leave": ids_body(),
    "/NetworkDriver.ProgramExternalConnectivity": ids_body(Options=endpoint_options),
    "/NetworkDriver.RevokeExternalConnectivity": ids_body(Options=endpoint_options),
    "/NetworkDriver.DiscoverNew": with_extras(st.fixed_dictionaries({}, optional={"DiscoveryType": junk,
                                                                                  "DiscoveryData": junk})),
    "/NetworkDriver.AllocateNetwork": ids_body(Options=junk),
    "/IpamDriver.RequestPool": with_extras(st.fixed_dictionaries({}, optional={
        "AddressSpace": st.one_of(st.sampled_from(["pynet-dhcp", "LocalDefault"]), evil),
        "Pool": st.one_of(cidr4, st.sampled_from(["192.0.2.0/24", "fd00::/64"]), evil),
        "SubPool": st.one_of(st.just(""), evil), "Options": junk, "V6": st.one_of(st.booleans(), evil)})),
    "/IpamDriver.ReleasePool": with_extras(st.fixed_dictionaries({}, optional={
        "PoolID": st.one_of(st.sampled_from(["pynet-dhcp/192.0.2.0/24", "pynet-dhcp/"]), evil)})),
    "/IpamDriver.RequestAddress": with_extras(st.fixed_dictionaries({}, optional={
        "PoolID": st.one_of(st.sampled_from(["pynet-dhcp/192.0.2.0/24", "pynet-dhcp/10.250.0.0/24",
                                             "pynet-dhcp/", "pynet-dhcp/x", "pynet-dhcp/::/0"]), evil),
        "Address": st.one_of(st.sampled_from(["", "192.0.2.7", "10.9.9.9", "x"]), evil),
        "Options": st.one_of(st.fixed_dictionaries({}, optional={
            "RequestAddressType": st.one_of(st.just("com.docker.network.gateway"), evil),
            "com.docker.network.endpoint.macaddress": mac}), evil)})),
    "/IpamDriver.ReleaseAddress": with_extras(st.fixed_dictionaries({}, optional={
        "PoolID": st.one_of(st.sampled_from(["pynet-dhcp/192.0.2.0/24", "pynet-dhcp/x"]), evil),
        "Address": st.one_of(st.sampled_from(["192.0.2.7", "192.0.2.7/24", ""]), evil)})),
    "/pynet/v1/ports/add": ids_body(ports=st.one_of(
        st.lists(st.one_of(st.sampled_from(["80", "8080:80", "127.0.0.1:8081:80", "80/udp", "80/sctp",
                                            "[::1]:80:80", "0:80", "70000:80", "80-82", "1-65535:1-65535",
                                            "a:b:c:d", ":::", "80/icmp", "-1:80"]), st.text(max_size=20)),
                 max_size=3), evil)),
}
BODIES["/pynet/v1/ports/rm"] = BODIES["/pynet/v1/ports/add"]
BODIES["/NetworkDriver.DiscoverDelete"] = BODIES["/NetworkDriver.DiscoverNew"]
BODIES["/NetworkDriver.FreeNetwork"] = with_extras(st.fixed_dictionaries({"NetworkID": net_ids}))
for _p in POST_ROUTES:
    BODIES.setdefault(_p, with_extras(st.fixed_dictionaries({}, optional={"Key": junk})))
post_routes = st.sampled_from(POST_ROUTES)
# Mutated bodies favour the calls that change state, so the fuzz reaches deep states.
WEIGHT = {"/NetworkDriver.CreateNetwork": 8, "/NetworkDriver.CreateEndpoint": 8, "/NetworkDriver.Join": 3,
          "/NetworkDriver.ProgramExternalConnectivity": 4, "/pynet/v1/ports/add": 3, "/pynet/v1/ports/rm": 2,
          "/NetworkDriver.DeleteEndpoint": 2, "/NetworkDriver.RevokeExternalConnectivity": 2}
weighted_routes = st.sampled_from([p for p in POST_ROUTES for _ in range(WEIGHT.get(p, 1))])


# Valid bodies (as Docker 20.10 sends them), then mutated: a field replaced by something hostile,
# removed, or an unknown field added. Unmutated ones succeed and move the daemon to new states.
docker_id = st.binary(min_size=32, max_size=32).map(bytes.hex)
_serial = itertools.count()
# Fresh values (outside hypothesis' choice, which favours small equal values): unmutated bodies then
# succeed instead of all colliding on one subnet, ID or address.
fresh_id = st.builds(lambda: secrets.token_hex(32))
fresh_pool = st.builds(lambda: (lambda n: (f"10.{251 + n // 256 % 4}.{n % 256}.0/24",
                                           f"10.{251 + n // 256 % 4}.{n % 256}.1/24"))(next(_serial)))
fresh_host = st.builds(lambda: 3 + next(_serial) % 250)
valid_portmap = st.lists(st.builds(
    lambda proto, port, hport, hip: {"Proto": proto, "IP": "", "Port": port, "HostIP": hip, "HostPort": hport,
                                     "HostPortEnd": hport},
    st.sampled_from([6, 17]), st.integers(1, 65535), st.one_of(st.just(0), st.integers(20000, 20100)),
    st.sampled_from(["", "127.0.0.1", "192.0.2.1", "0.0.0.0"])), max_size=3)
valid_generic = st.one_of(
    st.fixed_dictionaries({}, optional={"mtu": st.integers(1280, 9000).map(str),
                                        "icc": st.sampled_from(["true", "false"]),
                                        "masquerade": st.sampled_from(["true", "false"]),
                                        "host_binding_ipv4": st.sampled_from(["127.0.0.1", "192.0.2.1"]),
                                        "bridge_name": st.integers(0, 255).map(lambda n: f"{PREFIX}b{n:02x}"),
                                        "container_iface_prefix": st.sampled_from(["eth", "net"])}),
    st.builds(lambda m, shim: {"mode": m, "parent": UPLINK, **({"host_shim": shim} if m == "transparent" else {})},
              st.sampled_from(["transparent", "l2bridge"]), st.sampled_from(["true", "false"])),
)
VALID: dict[str, st.SearchStrategy] = {
    "/NetworkDriver.CreateNetwork": st.builds(
        lambda nid, gen, pg, v6, internal: {
            "NetworkID": nid,
            "Options": {"com.docker.network.enable_ipv6": bool(v6 is not None) and gen.get("mode") != "l2bridge",
                        "com.docker.network.generic": gen,
                        **({"com.docker.network.internal": True} if internal and not gen.get("mode") else {})},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pg[0], "Gateway": pg[1], "AuxAddresses": {}}],
            "IPv6Data": [] if v6 is None or gen.get("mode") == "l2bridge" else [
                {"AddressSpace": "LocalDefault", "Pool": f"fd00:{v6:x}::/64", "Gateway": f"fd00:{v6:x}::1/64",
                 "AuxAddresses": {}}]},
        st.one_of(fresh_id, fresh_id, fresh_id, docker_id, st.just(BASE_NET)), valid_generic, fresh_pool,
        st.one_of(st.none(), st.builds(lambda: 0x251 + next(_serial) % 0x1000)), st.booleans()),
    "/NetworkDriver.CreateEndpoint": st.builds(
        lambda eid, host, m, pm: {"NetworkID": BASE_NET, "EndpointID": eid,
                                  "Interface": {"Address": f"10.250.0.{host}/24", "AddressIPv6": "", "MacAddress": m},
                                  "Options": {"com.docker.network.portmap": pm,
                                              "com.docker.network.endpoint.exposedports": []}},
        st.one_of(fresh_id, fresh_id, docker_id, st.just(BASE_EP)), fresh_host,
        st.one_of(st.just(""), st.integers(1, 254).map(lambda h: f"02:42:0a:fa:01:{h:02x}")), valid_portmap),
    "/NetworkDriver.Join": st.builds(
        lambda pm: {"NetworkID": BASE_NET, "EndpointID": BASE_EP, "SandboxKey": "/var/run/docker/netns/0123456789ab",
                    "Options": {"com.docker.network.portmap": pm}}, valid_portmap),
    "/NetworkDriver.ProgramExternalConnectivity": st.builds(
        lambda pm: {"NetworkID": BASE_NET, "EndpointID": BASE_EP, "Options": {"com.docker.network.portmap": pm}},
        valid_portmap),
    "/pynet/v1/ports/add": st.builds(
        lambda specs: {"NetworkID": BASE_NET, "EndpointID": BASE_EP, "ports": specs},
        st.lists(st.builds(lambda h, c, p: f"{h}:{c}/{p}", st.integers(20101, 20200), st.integers(1, 65535),
                           st.sampled_from(["tcp", "udp"])), min_size=1, max_size=3)),
    "/IpamDriver.RequestPool": st.just({"AddressSpace": "pynet-dhcp", "Pool": "192.0.2.0/24", "Options": {},
                                        "SubPool": "", "V6": False}),
}
for _p in ("DeleteEndpoint", "EndpointOperInfo", "Leave", "RevokeExternalConnectivity"):
    VALID[f"/NetworkDriver.{_p}"] = st.builds(lambda e: {"NetworkID": BASE_NET, "EndpointID": e},
                                              st.one_of(st.just(BASE_EP), docker_id))
VALID["/pynet/v1/ports/rm"] = VALID["/pynet/v1/ports/add"]
VALID["/NetworkDriver.DeleteNetwork"] = st.builds(lambda n: {"NetworkID": n}, st.one_of(st.just(BASE_NET), docker_id))


def _slots(doc, out: list) -> list:
    """Every (container, key) in a JSON document, to pick a field to mutate."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in list(items):
        out.append((doc, k))
        _slots(v, out)
    return out


def mutate(draw, body, counts=(0, 0, 0, 0, 0, 1, 1, 1, 2, 3)):
    """Mutate a JSON document in place: a field replaced by something hostile, removed, or one added."""
    for _ in range(draw(st.sampled_from(counts))):
        slots = _slots(body, [])
        how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not slots or how == "add":
            target = draw(st.sampled_from([s[0] for s in slots if isinstance(s[0], dict)] or [body])) \
                if isinstance(body, dict) else None
            if isinstance(target, dict):
                target[draw(st.one_of(st.sampled_from(["Options", "Interface", "Extra", "NetworkID"]),
                                      st.text(max_size=12)))] = draw(junk)
            continue
        container, key = draw(st.sampled_from(slots))
        if how == "delete":
            del container[key]
        else:
            container[key] = draw(evil)
    return body


@st.composite
def mutated(draw, route: str):
    return mutate(draw, copy.deepcopy(draw(VALID.get(route, BODIES[route]))))


def json_bytes(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def malformed_json(draw) -> tuple[str, bytes]:
    """A valid-looking body, broken: cut short, a byte flipped/inserted, bad encoding, deep nesting."""
    path = draw(post_routes)
    text = json_bytes(draw(BODIES[path]))
    how = draw(st.sampled_from(["cut", "insert", "flip", "latin1", "bom", "deep", "bigint", "dupkeys", "trailing"]))
    if how == "cut" and len(text) > 1:
        text = text[:draw(st.integers(1, len(text) - 1))]
    elif how == "insert":
        i = draw(st.integers(0, len(text)))
        junk_byte = draw(st.sampled_from([b"{", b"}", b"[", b'"', b",", b":", b"\\", b"\x00", b"\xff"]))
        text = text[:i] + junk_byte + text[i:]
    elif how == "flip" and text:
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + bytes([text[i] ^ draw(st.integers(1, 255))]) + text[i + 1:]
    elif how == "latin1":
        text = b'{"NetworkID": "\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9"}'
    elif how == "bom":
        text = b"\xef\xbb\xbf" + text
    elif how == "deep":
        n = draw(st.sampled_from([100, 1000, 100_000, 400_000]))
        text = draw(st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n]))
    elif how == "bigint":
        text = b'{"NetworkID": ' + b"9" * draw(st.sampled_from([100, 5000, 100_000])) + b"}"
    elif how == "dupkeys":
        text = b'{"NetworkID": "' + BASE_NET.encode() + b'", "NetworkID": ["x"]}'
    else:
        text = text + b" trailing"
    return path, text


# ----------------------------------------------------------------------------- the tests
HOSTILE = [
    ("empty", b""), ("bytes", b"\xff\xfe\x00\x01garbage"), ("cut", b'{"NetworkID": "'), ("list", b"[1, 2]"),
    ("string", b'"x"'), ("null", b"null"), ("number", b"12"), ("id-list", b'{"NetworkID": [1]}'),
    ("id-obj", b'{"NetworkID": {"a": 1}, "EndpointID": 5}'), ("nan", b'{"NetworkID": NaN}'),
]


@pytest.mark.parametrize("route, method", ALL_ROUTES, ids=[p for p, _ in ALL_ROUTES])
def test_every_route_with_canned_garbage(fz, route, method):
    """A fixed sweep, so every route is hit whatever hypothesis draws."""
    path = route.replace("{ref}", "zz..%2F..")
    for _name, raw in HOSTILE:
        fz.send(path, raw=raw, method=method, route=route)
    # and one body just above the cap
    status, doc = fz.send(path, raw=b" " * (MAX_BODY + 1), method=method, route=route)
    if method == "POST":
        assert status == 413 and "too large" in doc["Err"], (status, doc)


@hyp("bytes")
@given(route=post_routes, raw=st.binary(max_size=2048))
def test_random_bytes(fz, route, raw):
    fz.send(route, raw=raw)


@hyp("malformed")
@given(case=malformed_json())
def test_malformed_json(fz, case):
    path, raw = case
    fz.send(path, raw=raw)


@hyp("wrong_types")
@given(route=post_routes, doc=junk)
def test_json_of_wrong_types(fz, route, doc):
    fz.send(route, raw=json_bytes(doc))


@hyp("mutated")
@given(data=st.data())
def test_mutated_valid_looking_bodies(fz, data):
    fz.ensure_base()
    route = data.draw(weighted_routes, label="route")
    body = data.draw(st.one_of(mutated(route), mutated(route), mutated(route), mutated(route), BODIES[route]),
                     label="body")
    fz.send(route, raw=json_bytes(body), body=body)
    if route == "/NetworkDriver.CreateNetwork" and len(fz.networks()) > 8:
        fz.delete_all(keep=(BASE_NET,))  # keep the namespace small in the long profile


@hyp("lifecycle")
@given(data=st.data())
def test_lifecycle_with_mutated_calls(fz, data):
    """A network's whole life, as Docker drives it, with hostile calls mixed in; after it is
    deleted through the protocol, nothing of it remains (checked after every example)."""
    fz.delete_all()
    net = copy.deepcopy(data.draw(VALID["/NetworkDriver.CreateNetwork"], label="network"))
    net["NetworkID"] = secrets.token_hex(32)
    status, _ = fz.send("/NetworkDriver.CreateNetwork", net)
    if status != 200:
        return  # refused (e.g. an option pair the mode does not take): nothing may be left either
    net_id = net["NetworkID"]
    pool = net["IPv4Data"][0]["Pool"].rsplit(".", 1)[0]
    eps = [secrets.token_hex(32) for _ in range(data.draw(st.integers(1, 3), label="endpoints"))]
    light = (0, 0, 0, 1)  # a quarter of the calls get one hostile field
    # Docker sends a port map only where -p is allowed (nat, not --internal); pynet refuses it elsewhere.
    publishes = not net["Options"]["com.docker.network.generic"].get("mode") and \
        not net["Options"].get("com.docker.network.internal")
    for i, ep in enumerate(eps):
        ids = {"NetworkID": net_id, "EndpointID": ep}
        pm = data.draw(valid_portmap, label="portmap") if publishes else []
        calls = [
            ("/NetworkDriver.CreateEndpoint", dict(ids, Interface={"Address": f"{pool}.{10 + i}/24", "AddressIPv6": "",
                                                                  "MacAddress": ""},
                                                   Options={"com.docker.network.portmap": pm})),
            ("/NetworkDriver.Join", dict(ids, SandboxKey=f"/var/run/docker/netns/{ep[:12]}",
                                         Options={"com.docker.network.portmap": pm})),
            ("/NetworkDriver.ProgramExternalConnectivity", dict(ids, Options={"com.docker.network.portmap": pm})),
            ("/NetworkDriver.EndpointOperInfo", dict(ids)),
        ]
        if publishes:
            spec = [f"{20200 + i}:{80 + i}"]
            calls.append(("/pynet/v1/ports/add", dict(ids, ports=spec)))
            if data.draw(st.booleans(), label="close it again"):
                calls.append(("/pynet/v1/ports/rm", dict(ids, ports=spec)))
        for route, body in calls:
            body = mutate(data.draw, body, light)
            fz.send(route, raw=json_bytes(body), body=body)
    for _ in range(data.draw(st.integers(0, 4), label="extra calls")):
        route = data.draw(weighted_routes, label="extra route")
        body = copy.deepcopy(data.draw(VALID.get(route, BODIES[route]), label="extra body"))
        if isinstance(body, dict) and "NetworkID" in body and route != "/NetworkDriver.CreateNetwork":
            body["NetworkID"] = net_id
            if "EndpointID" in body:
                body["EndpointID"] = data.draw(st.sampled_from(eps))
        body = mutate(data.draw, body)
        fz.send(route, raw=json_bytes(body), body=body)
    # Docker's teardown: every call must succeed, whatever state the hostile calls left.
    for ep in eps:
        for call in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
            status, doc = fz.send(f"/NetworkDriver.{call}", {"NetworkID": net_id, "EndpointID": ep})
            assert status == 200, (call, status, doc)
    status, doc = fz.send("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
    assert status == 200, (status, doc)
    fz.delete_all()  # networks a hostile CreateNetwork made
    assert links_with_prefix(PREFIX, fz.ns.name) == [], (net, links_with_prefix(PREFIX, fz.ns.name))
    assert fz.nft_elements() == []
    assert f"{L2B_RULE_PRIORITY}:" not in fz.ns.run("ip", "rule", "show").stdout


@hyp("get_routes")
@given(ref=st.one_of(st.sampled_from([BASE_NET[:6], BASE_NET, "..", ".", "%00", "b", ""]), st.text(max_size=80)),
       net=st.one_of(st.just(BASE_NET), st.text(max_size=40)), ep=st.text(max_size=40))
def test_control_routes_with_odd_references(fz, ref, net, ep):
    fz.ensure_base()
    fz.send(f"/pynet/v1/networks/{urllib.parse.quote(ref, safe='')}", method="GET", route="/pynet/v1/networks/{ref}")
    q = urllib.parse.urlencode({"network": net, "endpoint": ep})
    status, doc = fz.send(f"/pynet/v1/ports?{q}", method="GET")
    assert status == 200 and isinstance(doc, list)


@hyp("methods")
@given(route=st.one_of(st.sampled_from([p for p, _ in ALL_ROUTES]), st.text(min_size=1, max_size=30).map(
    lambda s: "/" + urllib.parse.quote(s))),
       method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "HEAD"]))
def test_unknown_routes_and_methods(fz, route, method):
    if method == "HEAD":
        return  # no body by definition
    path = route.replace("{ref}", "x")
    status, doc = fz.send(path, raw=b"{}", method=method, route="(unknown)" if path not in
                          dict(ALL_ROUTES) else path)
    if path not in dict(ALL_ROUTES) and not path.startswith("/pynet/v1/networks/"):
        assert status in (404, 405), (path, method, status, doc)


@pytest.mark.parametrize("size", [MAX_BODY + 1, 4 * MAX_BODY, 32 * MAX_BODY])
def test_huge_bodies_are_refused(fz, size):
    """Above Config.max_body: 413 and an Err naming the limit; the daemon reads no further."""
    for route in ("/NetworkDriver.CreateNetwork", "/NetworkDriver.Join", "/IpamDriver.RequestPool",
                  "/pynet/v1/ports/add"):
        padding = b" " * (size - 2)
        status, doc = fz.send(route, raw=b"{" + padding + b"}")
        assert status == 413, (route, size, status, doc)
        assert str(MAX_BODY) in doc["Err"], doc


def test_json_just_under_the_cap_is_parsed(fz):
    """A body at the cap is read and judged on its content (a huge unknown ID), not refused for size."""
    raw = json_bytes({"NetworkID": "a" * (MAX_BODY - 40)})
    assert len(raw) <= MAX_BODY
    status, doc = fz.send("/NetworkDriver.DeleteNetwork", raw=raw)
    assert status == 400 and "NetworkID" in doc["Err"], (status, _short(doc))


def _raw_exchange(sock_path: str, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes, close our side, read whatever comes back until the daemon closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        try:
            s.sendall(data)
        except OSError:
            pass  # the daemon may close early (e.g. after a 413): read its answer anyway
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


@pytest.mark.parametrize("name, data", [
    ("not-http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)),
    ("bad-request-line", b"POST\r\n\r\n"),
    ("lying-content-length", b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 1000000000000\r\n\r\n{}"),
    ("negative-content-length", b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"),
    ("huge-header", b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n"),
    ("many-headers", b"POST /Plugin.Activate HTTP/1.1\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n"),
    ("chunked-over-cap", b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"\r\n" + (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 2 + b"0\r\n\r\n"),
    ("bad-chunk", b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("half-then-close", b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"),
])
def test_broken_http_leaves_the_daemon_serving(fz, name, data):
    """Below the routes: whatever aiohttp answers (or not), the daemon lives and serves the next caller."""
    CASES["(raw http)"] += 1
    reply = _raw_exchange(fz.d.socket, data)
    assert fz.d.proc.poll() is None, f"pynet died after {name}:\n{fz.d.log()}"
    if name == "chunked-over-cap":
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b'"Err"' in reply, reply[:400]
    status, doc = fz.send("/Plugin.Activate")
    assert status == 200 and "NetworkDriver" in doc["Implements"]


def test_many_connections_left_open_do_not_block_others(fz):
    """Half-sent requests held open (slow clients) do not stop the daemon answering a new caller."""
    held = []
    try:
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(fz.d.socket)
            s.sendall(b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            held.append(s)
        CASES["(raw http)"] += len(held)
        t = time.monotonic()
        status, _doc = fz.send("/NetworkDriver.GetCapabilities")
        assert status == 200 and time.monotonic() - t < 5
    finally:
        for s in held:
            s.close()


# Hostile input that reaches the daemon's catch-all (`pynet internal error: <exception>`), found by
# this fuzz. The answer is still a 500 with an Err and the daemon lives, so the fuzz properties
# hold; but the handler meant to refuse the input with a message naming the field (InvalidRequest /
# InvalidOption) and an unexpected exception got through instead. One reproducer each.
N0, E0 = "c" * 64, "d" * 64  # made in the test below, on 10.249.0.0/24
CATCH_ALL = [
    pytest.param("/Plugin.Activate", b"[" * 100_000, id="deeply-nested-json"),
    pytest.param("/IpamDriver.RequestAddress", {"PoolID": "pynet-dhcp/x"}, id="ipam-poolid-not-a-prefix"),
    pytest.param("/IpamDriver.ReleaseAddress", {"PoolID": "pynet-dhcp/10.0.0.0/33"}, id="ipam-release-bad-poolid"),
    pytest.param("/IpamDriver.RequestAddress", {"PoolID": "pynet-dhcp/192.0.2.0/24", "Address": "x"},
                 id="ipam-static-address-not-an-ip"),
    pytest.param("/IpamDriver.RequestAddress", {"PoolID": "pynet-dhcp/192.0.2.0/24",
                                                "Options": {"com.docker.network.endpoint.macaddress": 5}},
                 id="ipam-mac-not-a-string"),
    pytest.param("/NetworkDriver.CreateNetwork", {"NetworkID": "f" * 64, "IPv4Data": [
        {"AddressSpace": {}, "Pool": "10.248.0.0/24", "Gateway": "10.248.0.1/24"}]}, id="addressspace-object"),
    pytest.param("/NetworkDriver.CreateNetwork", {"NetworkID": "f" * 64, "IPv4Data": [
        {"Pool": "10.248.0.0/24", "Gateway": 5}]}, id="gateway-number"),
    pytest.param("/NetworkDriver.CreateNetwork", {"NetworkID": "f" * 64, "IPv4Data": [{"Pool": "10.248.0.0/32"}]},
                 id="pool-slash32-without-gateway"),
    pytest.param("/NetworkDriver.CreateEndpoint", {"NetworkID": N0, "EndpointID": "f" * 64,
                                                   "Interface": {"Address": 5}}, id="endpoint-address-number"),
    pytest.param("/NetworkDriver.CreateEndpoint", {"NetworkID": N0, "EndpointID": "f" * 64,
                                                   "Interface": {"Address": "10.249.0.9/24", "MacAddress": 5}},
                 id="endpoint-mac-number"),
    pytest.param("/NetworkDriver.Join", {"NetworkID": N0, "EndpointID": E0, "Options": {
        "com.docker.network.portmap": [{"Proto": [6], "Port": 80}]}}, id="portmap-proto-list"),
]


@pytest.fixture
def small_net(fz):
    fz.delete_all()
    fz.d.ok("/NetworkDriver.CreateNetwork", {"NetworkID": N0, "Options": {}, "IPv4Data": [
        {"AddressSpace": "LocalDefault", "Pool": "10.249.0.0/24", "Gateway": "10.249.0.1/24"}], "IPv6Data": []})
    fz.d.ok("/NetworkDriver.CreateEndpoint", {"NetworkID": N0, "EndpointID": E0,
                                              "Interface": {"Address": "10.249.0.2/24"}, "Options": {}})
    yield N0
    fz.delete_all()


@pytest.mark.parametrize("route, body", CATCH_ALL)
def test_hostile_input_is_refused_by_name_not_by_the_catch_all(fz, small_net, route, body):
    status, doc = fz.send(route, raw=body if isinstance(body, bytes) else json_bytes(body), body=body)
    assert status != 200, doc
    assert not doc["Err"].startswith("pynet internal error"), doc["Err"]
    assert len(links_with_prefix(PREFIX, fz.ns.name)) == 3  # the bridge and one veth pair: nothing new


def test_endpoint_ids_sharing_a_prefix_do_not_share_a_veth(fz):
    """IDs that agree in the digits kept in link names (8 here with prefix pn-XX-; 11 with pn-)."""
    fz.delete_all()
    nets = {"a" * 64: "10.247.1", "b" * 64: "10.247.2"}
    try:
        for nid, p in nets.items():
            fz.d.ok("/NetworkDriver.CreateNetwork", {"NetworkID": nid, "Options": {}, "IPv4Data": [
                {"AddressSpace": "LocalDefault", "Pool": f"{p}.0/24", "Gateway": f"{p}.1/24"}], "IPv6Data": []})
        first, second = "1234abcd" + "0" * 56, "1234abcd" + "f" * 56
        fz.d.ok("/NetworkDriver.CreateEndpoint", {"NetworkID": "a" * 64, "EndpointID": first,
                                                  "Interface": {"Address": "10.247.1.2/24"}, "Options": {}})
        host_if = f"{PREFIX}h{first[:15 - len(PREFIX) - 1]}"
        assert fz.link(host_if)["master"] == f"{PREFIX}n{'a' * (15 - len(PREFIX) - 1)}"
        CASES["/NetworkDriver.CreateEndpoint"] += 1
        status, doc = fz.d.call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": "b" * 64, "EndpointID": second, "Interface": {"Address": "10.247.2.2/24"}, "Options": {}})
        # Either refused, or given links of its own: the first endpoint's veth stays on its bridge.
        link = fz.link(host_if)
        assert link is not None and link["master"] == f"{PREFIX}n{'a' * (15 - len(PREFIX) - 1)}", (status, doc, link)
        if status == 200:
            fz.d.ok("/NetworkDriver.DeleteEndpoint", {"NetworkID": "b" * 64, "EndpointID": second})
            assert fz.link(host_if) is not None, "deleting the second endpoint deleted the first one's veth"
    finally:
        fz.delete_all()


def test_after_the_fuzz_nothing_is_left(fz, capsys):
    """Runs last: delete what the fuzz created, then no link and no nft element may remain."""
    fz.delete_all()
    assert fz.networks() == []
    left = links_with_prefix(PREFIX, fz.ns.name)
    assert left == [], f"links left after deleting every network: {left}\n{fz.d.log()}"
    assert fz.nft_elements() == [], fz.nft_elements()
    rules = fz.ns.run("ip", "rule", "show").stdout
    assert f"{L2B_RULE_PRIORITY}:" not in rules, rules  # l2bridge's per-network policy rules
    time.sleep(0.3)  # the deferred deletes (core/state.py: PURGE_DELAY)
    assert statedb.network_ids(fz.d.state_dir) == []
    status, doc = fz.send("/pynet/v1/status", method="GET")
    assert status == 200 and doc["leftovers_now"] == [] and doc["endpoints"] == 0, doc
    total = sum(CASES.values())
    lines = [
        f"fuzz profile {'long' if SLOW else 'quick'}: {total} requests over {len(CASES)} routes in "
        f"{time.monotonic() - RUN_START[0]:.1f} s; networks created and deleted: {len(CREATED)}",
        "statuses: " + ", ".join(f"{k}x{v}" for k, v in sorted(STATUSES.items())),
        "successes of state-changing calls: " + ", ".join(f"{p.split('.')[-1].split('/')[-1]} {OK[p]}/{CASES[p]}"
                                                        for p in WEIGHT),
        f"answers from the catch-all (pynet internal error): {len(INTERNAL)}",
        *[f"  {n} x {kind}" for kind, n in collections.Counter(
            re.sub(r"'.*'|\d+", "_", x.split(" -> ", 1)[1])[:110] for x in INTERNAL).most_common()],
        *[f"  e.g. {x}" for x in INTERNAL[:3]],
    ]
    print("\n".join(lines))
    with capsys.disabled():  # visible without -rP / -s too
        print("\n" + lines[0])
    missing = [p for p, _ in ALL_ROUTES if CASES[p] == 0]
    assert not missing, f"routes never fuzzed: {missing}"
