"""Docker's remote-driver wire format, in one place: JSON bodies -> typed requests, replies -> JSON.

The protocol edge decodes a body here, hands the typed request to the core and encodes
what the core returns; nothing past this module reads or builds Docker's dicts. Decoding
checks shapes and types only (InvalidRequest, HTTP 400); what a value means (a subnet
that overlaps, an unknown -o key) is the core's and the modes' to judge.

Field names follow moby's libnetwork/drivers/remote/api/api.go (see shared protocol.md).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field

from ..errors import InvalidOption, InvalidRequest
from ..model import JoinInfo, PortMapping

GENERIC = "com.docker.network.generic"
PORTMAP = "com.docker.network.portmap"
EXPOSED = "com.docker.network.endpoint.exposedports"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
# Docker's IDs: 64 hex digits for local objects, 25 base-36 characters for swarm networks.
_ID_RE = re.compile(r"^(?:[0-9a-fA-F]{8,64}|[0-9a-z]{8,64})$")
PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}


# ---------------------------------------------------------------- requests

@dataclass(frozen=True)
class IpData:
    """One IPv4Data/IPv6Data item: the pool, and its gateway (CIDR) if Docker reserved one."""

    pool: str
    gateway: str = ""
    address_space: str = ""


@dataclass
class CreateNetwork:
    network_id: str
    generic: dict  # the -o map (with Docker's own keys newer engines leave in it)
    options: dict  # top-level Options other than the generic map (enable_ipv4/6, internal, ...)
    v4: list[IpData] = field(default_factory=list)
    v6: list[IpData] = field(default_factory=list)


@dataclass
class AllocateNetwork:
    """The swarm manager's AllocateNetwork: the plain -o map (no com.docker.* keys), the pools its
    IPAM chose (IPv4 only: Docker skips IPv6 here)."""

    network_id: str
    options: dict
    v4: list[IpData] = field(default_factory=list)


@dataclass(frozen=True)
class Discovery:
    """DiscoverNew/DiscoverDelete of a node (DiscoveryType 1); other types carry nothing pynet uses."""

    node: bool  # DiscoveryType 1 (a node), else ignored
    address: str = ""
    self_: bool = False  # this node itself (its data-path address)


@dataclass(frozen=True)
class NetworkRef:
    network_id: str


@dataclass(frozen=True)
class EndpointRef:
    network_id: str
    endpoint_id: str


@dataclass
class CreateEndpoint:
    network_id: str
    endpoint_id: str
    address: str = ""  # CIDR
    address6: str = ""  # CIDR
    mac: str = ""  # MacAddress as Docker sent it ("" = the driver chooses)
    mac_option: str = ""  # com.docker.network.endpoint.macaddress (base64), decoded to text
    driver_opts: dict = field(default_factory=dict)  # --driver-opt keys (not com.docker.*)
    portmap: list[PortMapping] = field(default_factory=list)


@dataclass
class Join:
    network_id: str
    endpoint_id: str
    sandbox: str = ""
    portmap: list[PortMapping] = field(default_factory=list)


@dataclass
class Connectivity:
    """ProgramExternalConnectivity: this endpoint is the container's gateway; portmap None = not sent."""

    network_id: str
    endpoint_id: str
    portmap: list[PortMapping] | None = None


# ---------------------------------------------------------------- decoding

def object_id(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidRequest(f"{key} must be a Docker ID (8-64 hex digits, or a swarm ID of lowercase letters "
                             f"and digits), got {value!r}")
    return value.lower()


def mapping(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{key} must be an object, got {type(value).__name__}")
    return value


def _objects(items, key: str) -> list[dict]:
    """A JSON list of objects (None = empty)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidRequest(f"{key} must be a list")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidRequest(f"{key} items must be objects")
    return items


def _ip_data(body: dict, key: str) -> list[IpData]:
    out = []
    for item in _objects(body.get(key) or [], key):
        space, pool, gw = item.get("AddressSpace", ""), item.get("Pool"), item.get("Gateway") or ""
        if not isinstance(space, str):
            raise InvalidRequest(f"{key} AddressSpace must be a string")
        if not isinstance(gw, str):
            raise InvalidRequest(f"{key} Gateway must be a string, got {gw!r}")
        if not isinstance(pool, str):
            raise InvalidOption(f"subnet {pool!r} is not a valid IP prefix")
        out.append(IpData(pool=pool, gateway=gw, address_space=space))
    return out


def create_network(body: dict) -> CreateNetwork:
    net_id = object_id(body, "NetworkID")
    opts = mapping(body, "Options")
    generic = opts.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise InvalidRequest(f"Options[{GENERIC}] must be an object")
    return CreateNetwork(network_id=net_id, generic=dict(generic),
                         options={k: v for k, v in opts.items() if k != GENERIC},
                         v4=_ip_data(body, "IPv4Data"), v6=_ip_data(body, "IPv6Data"))


def allocate_network(body: dict) -> AllocateNetwork:
    net_id = object_id(body, "NetworkID")
    opts = mapping(body, "Options")
    for key, value in opts.items():
        if not isinstance(value, str):
            raise InvalidRequest(f"AllocateNetwork option {key} must be a string, got {value!r}")
    return AllocateNetwork(network_id=net_id, options=dict(opts), v4=_ip_data(body, "IPv4Data"))


def discovery(body: dict) -> Discovery:
    kind = body.get("DiscoveryType")
    data = mapping(body, "DiscoveryData")
    if kind != 1:
        return Discovery(node=False)
    address = data.get("Address") or ""
    try:
        address = str(ipaddress.ip_address(address)) if address else ""
    except (TypeError, ValueError):
        raise InvalidRequest(f"DiscoveryData Address must be an IP address, got {address!r}") from None
    return Discovery(node=True, address=address, self_=data.get("Self") is True)


def gw_alloc_check(body: dict) -> CreateNetwork:
    """GwAllocCheck carries the Options CreateNetwork will carry, and no ID or pools yet."""
    opts = mapping(body, "Options")
    generic = opts.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise InvalidRequest(f"Options[{GENERIC}] must be an object")
    return CreateNetwork(network_id="", generic=dict(generic), options={k: v for k, v in opts.items()
                                                                          if k != GENERIC})


def network_ref(body: dict) -> NetworkRef:
    return NetworkRef(object_id(body, "NetworkID"))


def endpoint_ref(body: dict) -> EndpointRef:
    return EndpointRef(object_id(body, "NetworkID"), object_id(body, "EndpointID"))


def _address(iface: dict, key: str) -> str:
    value = iface.get(key) or ""
    if value and not isinstance(value, str):
        raise InvalidOption(f"endpoint {key} {value!r} is not an IP address with prefix")
    return value


def create_endpoint(body: dict) -> CreateEndpoint:
    ref = endpoint_ref(body)
    iface = mapping(body, "Interface")
    opts = mapping(body, "Options")
    mac = iface.get("MacAddress") or ""
    if not isinstance(mac, str):
        raise InvalidOption(f"--mac-address must be a string like 02:42:ac:11:00:02, got {mac!r}")
    mac_option = ""
    if opts.get(MAC_OPTION):
        try:
            raw = base64.b64decode(opts[MAC_OPTION], validate=True)
        except (ValueError, TypeError):
            raise InvalidOption(f"{MAC_OPTION} is not base64 of 6 bytes") from None
        mac_option = ":".join(f"{b:02x}" for b in raw)
    return CreateEndpoint(
        network_id=ref.network_id, endpoint_id=ref.endpoint_id,
        address=_address(iface, "Address"), address6=_address(iface, "AddressIPv6"), mac=mac,
        mac_option=mac_option,
        driver_opts={k: v for k, v in opts.items() if not k.startswith("com.docker.")},
        portmap=portmap(opts.get(PORTMAP)))


def join(body: dict) -> Join:
    ref = endpoint_ref(body)
    sandbox = body.get("SandboxKey") or ""
    if not isinstance(sandbox, str):
        raise InvalidRequest("SandboxKey must be a string")
    opts = mapping(body, "Options")
    # Docker sends the container's whole port map with every Join, on every network: read (so
    # that a garbled one is refused), applied only where Docker programs the gateway.
    return Join(ref.network_id, ref.endpoint_id, sandbox, portmap(opts.get(PORTMAP)))


def connectivity(body: dict) -> Connectivity:
    ref = endpoint_ref(body)
    opts = mapping(body, "Options")
    ports = portmap(opts.get(PORTMAP)) if PORTMAP in opts else None
    return Connectivity(ref.network_id, ref.endpoint_id, ports)


def portmap(items) -> list[PortMapping]:
    out = []
    for item in _objects(items, PORTMAP):
        raw_proto = item.get("Proto")
        proto = PROTOS.get(raw_proto) if isinstance(raw_proto, int) and not isinstance(raw_proto, bool) else None
        if proto is None:
            raise InvalidOption(f"port protocol {item.get('Proto')!r} is not tcp, udp or sctp")
        port, host_port, end = item.get("Port"), item.get("HostPort", 0), item.get("HostPortEnd", 0)
        for name, v in (("container port", port), ("host port", host_port), ("host port range end", end)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
                raise InvalidOption(f"{name} must be 0-65535, got {v!r}")
        if port == 0:
            raise InvalidOption("container port must be 1-65535, got 0")
        host_ip = item.get("HostIP") or ""
        if host_ip:
            try:
                host_ip = str(ipaddress.ip_address(host_ip))
            except ValueError:
                raise InvalidOption(f"host IP {host_ip!r} of -p is not an IP address") from None
        if end and end < host_port:
            raise InvalidOption(f"host port range {host_port}-{end} ends before it starts")
        out.append(PortMapping(proto=proto, container_port=port, host_ip=host_ip, host_port=host_port,
                               host_port_end=end))
    return out


# ---------------------------------------------------------------- encoding

def create_endpoint_reply(mac: str | None) -> dict:
    """Only what Docker did not supply: echoing a supplied field is an error in the engine."""
    return {"Interface": {"MacAddress": mac}} if mac else {}


def join_reply(r: JoinInfo) -> dict:
    doc: dict = {"InterfaceName": {"SrcName": r.src_name, "DstPrefix": r.dst_prefix}}
    if r.gateway:
        doc["Gateway"] = r.gateway
    if r.gateway6:
        doc["GatewayIPv6"] = r.gateway6
    if r.routes:
        doc["StaticRoutes"] = [{"Destination": x.destination, "RouteType": 0 if x.next_hop else 1,
                                **({"NextHop": x.next_hop} if x.next_hop else {})} for x in r.routes]
    return doc


def allocate_reply(options: dict[str, str]) -> dict:
    """What every node's CreateNetwork will carry as its -o map (Docker keeps it as DriverState)."""
    return {"Options": dict(options)}


def gw_alloc_reply(skip4: bool, skip6: bool) -> dict:
    return {"SkipIPv4": skip4, "SkipIPv6": skip6}


def capabilities(scope: str, connectivity_scope: str) -> dict:
    # GwAllocChecker (Docker 28+): Docker asks GwAllocCheck before CreateNetwork whether to
    # reserve a gateway address; older engines ignore the key.
    return {"Scope": scope, "ConnectivityScope": connectivity_scope, "GwAllocChecker": True}
