"""Validation of what Docker sends, before anything is touched.

Turns protocol bodies into model objects or raises InvalidOption /
InvalidRequest naming what the user must change. Pure: no kernel, no state.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re

from .errors import InvalidOption, InvalidRequest
from .model import MODES, Endpoint, Network, PortMapping, Subnet, id_hex

log = logging.getLogger("pynet.options")
GENERIC = "com.docker.network.generic"
# Docker-level keys newer engines leave in the generic options (-o, default-network-opts):
# they mean what the matching top-level option means.
DOCKER_FLAGS = {
    "com.docker.network.enable_ipv4": "--ipv4",
    "com.docker.network.enable_ipv6": "--ipv6",
    "com.docker.network.internal": "--internal",
}
DHCP_SPACE = "pynet-dhcp"  # address space of pynet's IPAM driver: addresses from the LAN's DHCP server
# Option names users of Docker's bridge driver already type, mapped to pynet's.
ALIASES = {
    "com.docker.network.bridge.name": "bridge_name",
    "com.docker.network.driver.mtu": "mtu",
    "com.docker.network.bridge.enable_icc": "icc",
    "com.docker.network.bridge.enable_ip_masquerade": "masquerade",
    "com.docker.network.bridge.host_binding_ipv4": "host_binding_ipv4",
    "com.docker.network.container_iface_prefix": "container_iface_prefix",
    "macvlan_mode": "macvlan_mode",
}
NETWORK_KEYS = {
    "mode",
    "parent",
    "bridge_name",
    "mtu",
    "icc",
    "masquerade",
    "host_binding_ipv4",
    "host_shim",
    "container_iface_prefix",
    "macvlan_mode",
}
# Keys only the LAN modes take; refused on nat so a typo is never silently ignored.
LAN_ONLY = {"parent", "host_shim", "macvlan_mode"}
NAT_ONLY = {"bridge_name", "icc", "masquerade", "host_binding_ipv4"}
TRANSPARENT_ONLY = {"host_shim", "macvlan_mode"}  # l2bridge has no macvlan: the host routes

# Docker's IDs: 64 hex digits for local objects, 25 base-36 characters for swarm networks.
_ID_RE = re.compile(r"^(?:[0-9a-fA-F]{8,64}|[0-9a-z]{8,64})$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def object_id(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidRequest(f"{key} must be a Docker ID (8-64 hex digits, or a swarm ID of lowercase letters "
                             f"and digits), got {value!r}")
    return value.lower()


def parse_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidOption(f"option {key} must be true or false, got {value!r}")


def valid_ifname(key: str, value) -> str:
    if not isinstance(value, str) or not _IFNAME_RE.match(value) or value in (".", ".."):
        raise InvalidOption(
            f"option {key} must be an interface name of 1-15 letters, digits, '_', '.' or '-', got {value!r}"
        )
    return value


def _mapping(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{key} must be an object, got {type(value).__name__}")
    return value


def _ip_data(body: dict, key: str, version: int, mode: str = "nat") -> list[Subnet]:
    """IPv4Data/IPv6Data -> subnets. A LAN mode's subnet may come without a gateway (Docker 28+
    reserves none after GwAllocCheck): it stays "" here and the mode finds the LAN router."""
    items = body.get(key) or []
    if not isinstance(items, list):
        raise InvalidRequest(f"{key} must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest(f"{key} items must be objects")
        if not isinstance(item.get("AddressSpace", ""), str):
            raise InvalidRequest(f"{key} AddressSpace must be a string")
        pool_s = item.get("Pool")
        try:
            pool = ipaddress.ip_network(pool_s, strict=False)
        except (TypeError, ValueError):
            raise InvalidOption(f"subnet {pool_s!r} is not a valid IP prefix") from None
        if pool.is_multicast or pool.is_loopback or pool.is_unspecified:
            raise InvalidOption(f"subnet {pool} is a multicast, loopback or unspecified range; give a unicast "
                                f"--subnet")
        if pool.version != version:
            raise InvalidOption(f"subnet {pool} is not IPv{version}")
        if pool.num_addresses < 4:
            raise InvalidOption(f"subnet {pool} is too small to hold a gateway and containers; give a larger "
                                f"--subnet (at most /30 for IPv4, /126 for IPv6)")
        gw_s = item.get("Gateway") or ""
        if not isinstance(gw_s, str):
            raise InvalidRequest(f"{key} Gateway must be a string, got {gw_s!r}")
        if gw_s:
            try:
                gw = ipaddress.ip_interface(gw_s if "/" in gw_s else f"{gw_s}/{pool.prefixlen}")
            except ValueError:
                raise InvalidOption(f"gateway {gw_s!r} is not a valid IP address") from None
            if gw.ip not in pool:
                raise InvalidOption(f"gateway {gw.ip} is not inside subnet {pool}")
            if gw.ip == pool.network_address or (version == 4 and gw.ip == pool.broadcast_address):
                raise InvalidOption(f"gateway {gw.ip} is the network or broadcast address of {pool}; "
                                    f"give a host address with --gateway")
        elif mode != "nat":
            out.append(Subnet(pool=str(pool), gateway=""))
            continue
        else:
            # A null IPAM pool may come without a gateway: take the first host address.
            gw = ipaddress.ip_interface(f"{pool.network_address + 1}/{pool.prefixlen}")
        gw = ipaddress.ip_interface(f"{gw.ip}/{pool.prefixlen}")
        out.append(Subnet(pool=str(pool), gateway=str(gw)))
    return out


def network_mode(body: dict) -> str:
    """The mode a CreateNetwork/GwAllocCheck body asks for (validated: unknown modes are refused)."""
    opts = _mapping(body, "Options")
    generic = opts.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise InvalidRequest(f"Options[{GENERIC}] must be an object")
    mode = str(generic.get("mode", "nat")).strip().lower()
    if mode not in MODES:
        raise InvalidOption(f"option mode must be one of {', '.join(MODES)}, got {generic.get('mode')!r}")
    return mode


def parse_network(body: dict, prefix: str) -> Network:
    """CreateNetwork body -> Network (not yet applied)."""
    net_id = object_id(body, "NetworkID")
    opts = _mapping(body, "Options")
    generic = opts.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise InvalidRequest(f"Options[{GENERIC}] must be an object")
    user: dict[str, str] = {}
    flags: dict[str, bool] = {}
    for key, value in generic.items():
        if key in DOCKER_FLAGS:
            flags[key] = parse_bool(DOCKER_FLAGS[key], value)
            continue
        name = ALIASES.get(key, key)
        if name not in NETWORK_KEYS:
            if key.startswith("com.docker.network."):
                # Docker's own bookkeeping: every engine upgrade adds some (27: enable_ipv6 via
                # -o; 28: enable_ipv4). Refusing them would break pynet on the next engine.
                log.debug("ignoring Docker network option", extra={"fields": {"key": key}})
                continue
            raise InvalidOption(
                f"unknown network option {key!r} (-o {key}=...); pynet knows: {', '.join(sorted(NETWORK_KEYS))}"
            )
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidOption(f"option {key} must be a plain value, got {value!r}")
        user[name] = str(value) if not isinstance(value, bool) else ("true" if value else "false")
    mode = user.get("mode", "nat").strip().lower()
    if mode not in MODES:
        raise InvalidOption(f"option mode must be one of {', '.join(MODES)}, got {user.get('mode')!r}")
    if mode == "nat":
        for key in sorted(LAN_ONLY & user.keys()):
            raise InvalidOption(f"option {key} is only for mode=transparent or mode=l2bridge, not mode={mode}")
    else:
        for key in sorted(NAT_ONLY & user.keys()):
            raise InvalidOption(f"option {key} is only for mode=nat, not mode={mode}")
    if mode == "l2bridge":
        for key in sorted(TRANSPARENT_ONLY & user.keys()):
            raise InvalidOption(f"option {key} is only for mode=transparent, not mode=l2bridge "
                                f"(l2bridge routes through the host: no macvlan, no shim)")

    internal = parse_bool("internal", opts.get("com.docker.network.internal",
                                               flags.get("com.docker.network.internal", False)))
    ipv6 = parse_bool("--ipv6", opts.get("com.docker.network.enable_ipv6",
                                         flags.get("com.docker.network.enable_ipv6", False)))
    ipv4 = parse_bool("--ipv4", opts.get("com.docker.network.enable_ipv4",
                                         flags.get("com.docker.network.enable_ipv4", True)))
    v4 = _ip_data(body, "IPv4Data", 4, mode) if ipv4 else []
    v6 = _ip_data(body, "IPv6Data", 6, mode)
    if ipv6 and not v6:
        raise InvalidOption("--ipv6 needs an IPv6 subnet too: add --subnet with an IPv6 prefix (e.g. fd00:1::/64)")
    if v6 and not ipv6:
        v6 = []  # Docker only sends v6 data with --ipv6; ignore a stray one rather than half-enable it.
    if not v4 and not v6:
        raise InvalidOption(f"mode={mode} needs an IPv4 subnet from the IPAM driver (or, with --ipv4=false, "
                            f"--ipv6 and an IPv6 subnet); do not use a null IPAM driver")
    _no_overlap(v4 + v6)

    mtu = 0
    if "mtu" in user:
        try:
            mtu = int(user["mtu"])
        except ValueError:
            raise InvalidOption(f"option mtu must be an integer, got {user['mtu']!r}") from None
        if not 68 <= mtu <= 65535:
            raise InvalidOption(f"option mtu must be between 68 and 65535, got {mtu}")
        if ipv6 and mtu < 1280:
            raise InvalidOption(f"option mtu must be at least 1280 with --ipv6, got {mtu}")
    host_binding = ""
    if user.get("host_binding_ipv4"):
        try:
            host_binding = str(ipaddress.ip_address(user["host_binding_ipv4"]))
        except ValueError:
            raise InvalidOption(
                f"option host_binding_ipv4 must be an IP address, got {user['host_binding_ipv4']!r}"
            ) from None
    iface_prefix = user.get("container_iface_prefix", "eth")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", iface_prefix):
        raise InvalidOption(
            f"option container_iface_prefix must be 1-10 lowercase letters/digits, got {iface_prefix!r}"
        )
    lan: dict = {}
    spaces = {item.get("AddressSpace") for item in (body.get("IPv4Data") or [])
              if isinstance(item, dict) and isinstance(item.get("AddressSpace"), str)}
    if DHCP_SPACE in spaces:
        if mode != "transparent":
            raise InvalidOption(f"--ipam-driver pynet (DHCP from the LAN) is for mode=transparent, not mode={mode}")
        lan["ipam"] = "dhcp"
    if mode != "nat":
        if internal:
            raise InvalidOption(f"--internal is not possible with mode={mode}: its containers are on the LAN; "
                                "use mode=nat for an internal network")
        if not user.get("parent"):
            raise InvalidOption(f"mode={mode} needs -o parent=<host interface on the LAN> (e.g. eth0 or eth0.50)")
        parent = valid_ifname("parent", user["parent"])
        shim = mode == "transparent" and parse_bool("host_shim", user.get("host_shim", True))
        lan.update(parent=parent, host_shim=shim)
        m = re.fullmatch(r"(.+)\.(\d+)", parent)
        if m:
            vlan = int(m.group(2))
            if not 1 <= vlan <= 4094:
                raise InvalidOption(f"VLAN id {vlan} of parent {parent} must be 1-4094")
            lan.update(vlan_base=m.group(1), vlan=vlan)
        mv_mode = user.get("macvlan_mode", "bridge")
        if mv_mode not in ("bridge", "private", "vepa", "passthru"):
            raise InvalidOption(f"option macvlan_mode must be bridge, private, vepa or passthru, got {mv_mode!r}")
        lan["macvlan_mode"] = mv_mode
        if lan["host_shim"]:
            lan["shim"] = link_name(prefix, "s", net_id)
    custom = "bridge_name" in user
    if mode != "nat":
        bridge = ""
    elif custom:
        bridge = valid_ifname("bridge_name", user["bridge_name"])
    else:
        bridge = link_name(prefix, "n", net_id)
    return Network(
        id=net_id,
        mode=mode,
        bridge=bridge,
        mtu=mtu,
        icc=parse_bool("icc", user.get("icc", True)),
        masquerade=parse_bool("masquerade", user.get("masquerade", True)),
        internal=internal,
        ipv6=ipv6,
        host_binding_ipv4=host_binding,
        custom_bridge=custom,
        v4=v4,
        v6=v6,
        options=user,
        **lan,
    )


def _no_overlap(subnets: list[Subnet]) -> None:
    nets = [ipaddress.ip_network(s.pool) for s in subnets]
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                raise InvalidOption(f"subnets {a} and {b} overlap; give non-overlapping --subnet values")


def link_name(prefix: str, kind: str, object_id_: str) -> str:
    """Kernel names are 15 bytes at most: prefix + one kind letter + as much ID as fits."""
    return prefix + kind + object_id_[: 15 - len(prefix) - 1]


def mac_from_bytes(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def valid_mac(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidOption(f"--mac-address must be a string like 02:42:ac:11:00:02, got {value!r}")
    m = re.fullmatch(r"([0-9a-fA-F]{2})([:-][0-9a-fA-F]{2}){5}", value or "")
    if not m:
        raise InvalidOption(f"--mac-address must look like 02:42:ac:11:00:02, got {value!r}")
    mac = value.replace("-", ":").lower()
    if int(mac[:2], 16) & 1:
        raise InvalidOption(f"--mac-address {mac} is a multicast address; use a unicast one (first byte even)")
    if mac == "00:00:00:00:00:00":
        raise InvalidOption("--mac-address 00:00:00:00:00:00 is not usable")
    return mac


def mac_for(ipv4: str, endpoint_id: str) -> str:
    """Locally administered MAC derived from the IPv4 address, as Docker's bridge does (02:42:...)."""
    if ipv4:
        raw = ipaddress.ip_interface(ipv4).ip.packed
        return mac_from_bytes(b"\x02\x42" + raw)
    raw = bytes.fromhex(id_hex(endpoint_id, 12))
    return mac_from_bytes(bytes([(raw[0] & 0xFE) | 0x02]) + raw[1:])


def parse_portmap(items) -> list[PortMapping]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidRequest("com.docker.network.portmap must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidRequest("com.docker.network.portmap items must be objects")
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
        out.append(PortMapping(proto=proto, container_port=port, host_ip=host_ip, host_port=host_port, host_port_end=end))
    return out


ENDPOINT_DOCKER_KEYS = {
    "com.docker.network.portmap",
    "com.docker.network.endpoint.exposedports",
    "com.docker.network.endpoint.macaddress",
}


def parse_endpoint(body: dict, net: Network, prefix: str) -> Endpoint:
    """CreateEndpoint body -> Endpoint (not yet applied)."""
    ep_id = object_id(body, "EndpointID")
    iface = _mapping(body, "Interface")
    opts = _mapping(body, "Options")
    for key in opts:
        if key in ENDPOINT_DOCKER_KEYS or key.startswith("com.docker."):
            continue  # Docker's own bookkeeping keys; newer engines add more.
        raise InvalidOption(f"unknown endpoint option {key!r} (--driver-opt {key}=...); pynet takes none for mode={net.mode}")
    address = iface.get("Address") or ""
    address6 = iface.get("AddressIPv6") or ""
    for name, value, version in (("Address", address, 4), ("AddressIPv6", address6, 6)):
        if value:
            if not isinstance(value, str) or "/" not in value:
                raise InvalidOption(f"endpoint {name} {value!r} is not an IP address with prefix")
            try:
                ip = ipaddress.ip_interface(value)
            except ValueError:
                raise InvalidOption(f"endpoint {name} {value!r} is not an IP address with prefix") from None
            if ip.version != version:
                raise InvalidOption(f"endpoint {name} {value!r} is not IPv{version}")
            pools = [ipaddress.ip_network(sub.pool) for sub in (net.v4 if version == 4 else net.v6)]
            if pools and not any(ip.ip in p for p in pools):
                raise InvalidOption(f"endpoint {name} {value} is outside the network's subnets "
                                    f"({', '.join(map(str, pools))})")
    if net.lan:
        gateways = {ipaddress.ip_interface(s.gateway).ip for s in net.v4 + net.v6 if s.gateway}
        for value in (address, address6):
            if value and ipaddress.ip_interface(value).ip in gateways:
                ip = ipaddress.ip_interface(value).ip
                raise InvalidOption(f"address {ip} is the LAN router's (the network's gateway) and cannot go to a "
                                    f"container: recreate the network with --aux-address router={ip} or an "
                                    f"--ip-range without it, or give the container another --ip")
    if not address and net.v4:
        raise InvalidOption(f"mode={net.mode} needs an IPv4 address from the IPAM driver for each container")
    if not address and not address6:
        raise InvalidOption(f"mode={net.mode} needs an IPv6 address from the IPAM driver for each container "
                            f"of an IPv6-only network")
    mac = iface.get("MacAddress") or ""
    from_docker = bool(mac)
    if not mac and opts.get("com.docker.network.endpoint.macaddress"):
        try:
            mac = mac_from_bytes(base64.b64decode(opts["com.docker.network.endpoint.macaddress"], validate=True))
        except (ValueError, TypeError):
            raise InvalidOption("com.docker.network.endpoint.macaddress is not base64 of 6 bytes") from None
    mac = valid_mac(mac) if mac else mac_for(address, ep_id)
    return Endpoint(
        id=ep_id,
        network_id=net.id,
        host_if=link_name(prefix, "h", ep_id) if net.mode in ("nat", "l2bridge") else "",
        peer_if=link_name(prefix, "k", ep_id),
        mac=mac,
        ipv4=address,
        ipv6=address6,
        mac_from_docker=from_docker,
        options={k: v for k, v in opts.items() if not k.startswith("com.docker.")},
        ports=parse_portmap(opts.get("com.docker.network.portmap")),
    )
