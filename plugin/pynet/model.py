"""Plain data: what pynet knows about networks and endpoints.

These are what the store persists and what reconcile rebuilds the kernel from,
so every field needed to recreate a kernel object lives here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass, field


@dataclass
class Subnet:
    pool: str  # "172.18.0.0/16"
    gateway: str  # "172.18.0.1/16" (CIDR, as Docker sends it)


@dataclass
class PortMapping:
    proto: str  # tcp | udp | sctp
    container_port: int
    host_ip: str = ""  # "" = every host address of the family
    host_port: int = 0
    host_port_end: int = 0


@dataclass(frozen=True)
class Binding:
    """One published port as applied: host (family, IP or "" = every address, port) -> container."""

    proto: str
    family: int  # 4 | 6
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    source: str = "docker"  # docker (-p/-P) | cli (`pynet port add`)


@dataclass
class Endpoint:
    id: str
    network_id: str
    host_if: str  # host side of the veth
    peer_if: str  # side Docker moves into the container
    mac: str
    ipv4: str = ""  # CIDR
    ipv6: str = ""  # CIDR
    mac_from_docker: bool = False
    options: dict = field(default_factory=dict)
    sandbox: str = ""
    ports: list[PortMapping] = field(default_factory=list)  # as requested in CreateEndpoint
    bindings: list[Binding] = field(default_factory=list)  # as applied (ProgramExternalConnectivity)
    # `pynet port add` ports waiting for this container's next gateway endpoint (its gateway moved away).
    parked: list[PortMapping] = field(default_factory=list)
    gateway: bool = False  # Docker programmed it as the container's gateway endpoint (PEC, not revoked since)
    deleting: bool = False  # DeleteEndpoint received and saved: finished at start if pynet died in it
    # Bandwidth limits of its own (--driver-opt, `pynet limit`) over the network's: {key: number}, see limits.py.
    limits: dict = field(default_factory=dict)


@dataclass
class Network:
    id: str
    mode: str
    bridge: str
    mtu: int = 0  # 0 = kernel default
    icc: bool = True
    masquerade: bool = True
    internal: bool = False
    ipv6: bool = False
    host_binding_ipv4: str = ""
    custom_bridge: bool = False  # bridge name given by the user (not our prefix)
    # transparent / l2bridge
    parent: str = ""  # interface on the LAN (may be a VLAN sub-interface pynet creates)
    vlan_base: str = ""  # for parent "eth0.50": "eth0"
    vlan: int = 0
    host_shim: bool = True
    shim: str = ""  # host's macvlan on parent, so the host reaches its containers
    macvlan_mode: str = "bridge"
    ipam: str = ""  # IPv4 from pynet's IPAM (--ipam-driver pynet): "dhcp" (the LAN's server) | "static"
    ipam6: str = ""  # IPv6 from pynet's IPAM: "dhcp" (DHCPv6 IA_NA) | "slaac" (the LAN router's prefix) | "static"
    # overlay: a VXLAN segment across the swarm's nodes (parent = the underlay interface)
    vni: int = 0
    vxlan: str = ""  # the vxlan device, a port of the bridge
    vxlan_group: str = ""  # multicast group on the underlay: floods (broadcast, unknown unicast)
    vxlan_port: int = 0  # UDP port
    local: str = ""  # this node's underlay address (the VXLAN source)
    gw_mac: str = ""  # the bridge's MAC: the same on every node, like its gateway address
    leases: dict[str, dict] = field(default_factory=dict)  # MAC -> dhcp.Lease as dict
    leases6: dict[str, dict] = field(default_factory=dict)  # MAC -> dhcp.client6.Lease6 as dict
    probe: bool = True  # LAN modes: probe an address on the LAN before a container gets it (-o probe)
    dhcp_domain: str = ""  # transparent + DHCP: the FQDN's domain (option 81 / DHCPv6 option 39)
    v4: list[Subnet] = field(default_factory=list)
    v6: list[Subnet] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    # Default bandwidth limits of its endpoints (-o ingress_rate=...): {key: number}, see limits.py.
    limits: dict = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    deleting: bool = False  # DeleteNetwork received and saved: finished at start if pynet died in it

    def gateways(self) -> list[str]:
        return [s.gateway for s in self.v4 + self.v6 if s.gateway]


@dataclass
class NodeInfo:
    """What Docker told this node about itself (DiscoverNew Self): its swarm data-path address."""

    address: str = ""


@dataclass(frozen=True)
class Route:
    destination: str
    next_hop: str = ""  # "" = connected


@dataclass
class JoinInfo:
    """What a container gets at Join: the interface to move in, gateways, static routes."""

    src_name: str
    dst_prefix: str
    gateway: str = ""
    gateway6: str = ""
    routes: list[Route] = field(default_factory=list)


def link_name(prefix: str, kind: str, object_id: str) -> str:
    """Kernel names are 15 bytes at most: prefix + one kind letter + as much ID as fits."""
    return prefix + kind + object_id[: 15 - len(prefix) - 1]


def id_hex(object_id: str, n: int) -> str:
    """n hex digits that stand for an object ID: its own first digits when it is hex (Docker's
    local IDs, and what earlier pynet versions derived names from), else a hash of it (swarm's
    25-character base-36 network IDs)."""
    head = object_id[:n]
    if all(c in "0123456789abcdef" for c in head):
        return head.ljust(n, "0")
    return hashlib.sha256(object_id.encode()).hexdigest()[:n]


def link_local(mac: str) -> str:
    """The EUI-64 link-local address a kernel forms for `mac` (addr_gen_mode 0, a container's default)."""
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def network_from_dict(d: dict) -> Network:
    d = dict(d)
    d["v4"] = [Subnet(**s) for s in d.get("v4", [])]
    d["v6"] = [Subnet(**s) for s in d.get("v6", [])]
    eps = {}
    for eid, e in d.get("endpoints", {}).items():
        e = dict(e)
        e["ports"] = [PortMapping(**p) for p in e.get("ports", [])]
        e["bindings"] = [Binding(**b) for b in e.get("bindings", [])]
        e["parked"] = [PortMapping(**p) for p in e.get("parked", [])]
        eps[eid] = Endpoint(**e)
    d["endpoints"] = eps
    return Network(**d)
