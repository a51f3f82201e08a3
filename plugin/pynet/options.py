"""What a request means: typed requests (api/wire.py) -> model objects, or an error naming what to change.

Pure: no kernel, no state. Options every mode takes are read here; each mode reads
its own (Mode.configure), and a key that belongs to another mode is refused naming
the mode it is for, so a typo is never silently ignored.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from . import limits
from .errors import InvalidOption
from .model import Endpoint, Network, Subnet, id_hex, link_name

log = logging.getLogger("pynet.options")
DHCP_SPACE = "pynet-dhcp"  # address space of pynet's IPAM driver: addresses from the LAN's DHCP server
# Docker-level keys newer engines leave in the generic options (-o, default-network-opts):
# they mean what the matching top-level option means.
DOCKER_FLAGS = {
    "com.docker.network.enable_ipv4": "--ipv4",
    "com.docker.network.enable_ipv6": "--ipv6",
    "com.docker.network.internal": "--internal",
}
COMMON = frozenset({"mode", "mtu", "container_iface_prefix", *limits.KEYS})
COMMON_ALIASES = {
    "com.docker.network.driver.mtu": "mtu",
    "com.docker.network.container_iface_prefix": "container_iface_prefix",
}
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---------------------------------------------------------------- value checks

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


def valid_mac(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidOption(f"--mac-address must be a string like 02:42:ac:11:00:02, got {value!r}")
    if not re.fullmatch(r"([0-9a-fA-F]{2})([:-][0-9a-fA-F]{2}){5}", value or ""):
        raise InvalidOption(f"--mac-address must look like 02:42:ac:11:00:02, got {value!r}")
    mac = value.replace("-", ":").lower()
    if int(mac[:2], 16) & 1:
        raise InvalidOption(f"--mac-address {mac} is a multicast address; use a unicast one (first byte even)")
    if mac == "00:00:00:00:00:00":
        raise InvalidOption("--mac-address 00:00:00:00:00:00 is not usable")
    return mac


def mac_for(ipv4: str, endpoint_id: str) -> str:
    """Locally administered MAC derived from the IPv4 address, as Docker's bridge does (02:42:...)."""
    raw = b"\x02\x42" + ipaddress.ip_interface(ipv4).ip.packed if ipv4 else bytes.fromhex(id_hex(endpoint_id, 12))
    return ":".join(f"{b:02x}" for b in bytes([(raw[0] & 0xFE) | 0x02]) + raw[1:])


# ---------------------------------------------------------------- networks

def network_mode(generic: dict, modes: dict) -> str:
    """The mode a CreateNetwork/GwAllocCheck asks for (unknown modes, and modes of the other driver
    scope, refused by name); without -o mode, the first registered one of this daemon's scope
    (modes/__init__.py: nat, or overlay for a global-scope pynet)."""
    default = next(name for name, m in modes.items() if m.SCOPE == m.plugin_scope)
    name = str(generic.get("mode", default)).strip().lower()
    if name not in modes:
        raise InvalidOption(f"option mode must be one of {', '.join(modes)}, got {generic.get('mode')!r}")
    modes[name].check_scope()
    return name


def _user_options(generic: dict, modes: dict) -> tuple[dict[str, str], dict[str, bool]]:
    """-o keys under their pynet names, and Docker's own flags found among them."""
    aliases = dict(COMMON_ALIASES)
    known = set(COMMON)
    for mode in modes.values():
        if mode.SCOPE == mode.plugin_scope:  # a global-scope pynet lists overlay's keys only
            aliases.update(mode.ALIASES)
            known |= mode.OPTIONS
    user: dict[str, str] = {}
    flags: dict[str, bool] = {}
    for key, value in generic.items():
        if key in DOCKER_FLAGS:
            flags[key] = parse_bool(DOCKER_FLAGS[key], value)
            continue
        name = aliases.get(key, key)
        if name not in known:
            if key.startswith("com.docker.network."):
                # Docker's own bookkeeping: every engine upgrade adds some (27: enable_ipv6 via
                # -o; 28: enable_ipv4). Refusing them would break pynet on the next engine.
                log.debug("ignoring Docker network option", extra={"fields": {"key": key}})
                continue
            raise InvalidOption(f"unknown network option {key!r} (-o {key}=...); pynet knows: "
                                f"{', '.join(sorted(known))}")
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidOption(f"option {key} must be a plain value, got {value!r}")
        user[name] = str(value) if not isinstance(value, bool) else ("true" if value else "false")
    return user, flags


def _refuse_other_modes(user: dict[str, str], mode, modes: dict) -> None:
    for key in sorted(user.keys() - COMMON - mode.OPTIONS):
        owners = [name for name, m in modes.items() if key in m.OPTIONS]
        raise InvalidOption(f"option {key} is only for {' or '.join(f'mode={o}' for o in owners)}, "
                            f"not mode={mode.NAME}")


def _subnets(items, version: int, mode) -> list[Subnet]:
    out = []
    for item in items:
        try:
            pool = ipaddress.ip_network(item.pool, strict=False)
        except (TypeError, ValueError):
            raise InvalidOption(f"subnet {item.pool!r} is not a valid IP prefix") from None
        if pool.is_multicast or pool.is_loopback or pool.is_unspecified:
            raise InvalidOption(f"subnet {pool} is a multicast, loopback or unspecified range; give a unicast "
                                f"--subnet")
        if pool.version != version:
            raise InvalidOption(f"subnet {pool} is not IPv{version}")
        if pool.num_addresses < 4:
            raise InvalidOption(f"subnet {pool} is too small to hold a gateway and containers; give a larger "
                                f"--subnet (at most /30 for IPv4, /126 for IPv6)")
        out.append(Subnet(pool=str(pool), gateway=_gateway(item.gateway, pool, mode)))
    return out


def _gateway(text: str, pool, mode) -> str:
    if not text:
        # A LAN mode's subnet may come without one (Docker 28+ reserves none after GwAllocCheck):
        # it stays "" and the mode finds the LAN router. A null IPAM pool: the first host address.
        return "" if mode.lan else f"{pool.network_address + 1}/{pool.prefixlen}"
    try:
        gw = ipaddress.ip_interface(text if "/" in text else f"{text}/{pool.prefixlen}")
    except ValueError:
        raise InvalidOption(f"gateway {text!r} is not a valid IP address") from None
    if gw.ip not in pool:
        raise InvalidOption(f"gateway {gw.ip} is not inside subnet {pool}")
    if gw.ip == pool.network_address or (pool.version == 4 and gw.ip == pool.broadcast_address):
        raise InvalidOption(f"gateway {gw.ip} is the network or broadcast address of {pool}; give a host address "
                            f"with --gateway")
    return f"{gw.ip}/{pool.prefixlen}"


def build_network(req, prefix: str, modes: dict) -> Network:
    """A CreateNetwork request -> Network (not yet applied)."""
    user, flags = _user_options(req.generic, modes)
    mode = modes[network_mode(user, modes)]
    _refuse_other_modes(user, mode, modes)
    opts = req.options

    def flag(key: str, default: bool) -> bool:
        return parse_bool(DOCKER_FLAGS[key], opts.get(key, flags.get(key, default)))

    internal, ipv6 = flag("com.docker.network.internal", False), flag("com.docker.network.enable_ipv6", False)
    v4 = _subnets(req.v4, 4, mode) if flag("com.docker.network.enable_ipv4", True) else []
    v6 = _subnets(req.v6, 6, mode) if ipv6 else []  # stray v6 data without --ipv6: ignored, not half-enabled
    if ipv6 and not v6:
        raise InvalidOption("--ipv6 needs an IPv6 subnet too: add --subnet with an IPv6 prefix (e.g. fd00:1::/64)")
    if not v4 and not v6:
        raise InvalidOption(f"mode={mode.NAME} needs an IPv4 subnet from the IPAM driver (or, with --ipv4=false, "
                            f"--ipv6 and an IPv6 subnet); do not use a null IPAM driver")
    _no_overlap(v4 + v6)
    net = Network(id=req.network_id, mode=mode.NAME, bridge="", mtu=_mtu(user, ipv6), internal=internal,
                  ipv6=ipv6, v4=v4, v6=v6, options=user)
    iface_prefix = user.get("container_iface_prefix", "eth")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", iface_prefix):
        raise InvalidOption(f"option container_iface_prefix must be 1-10 lowercase letters/digits, got "
                            f"{iface_prefix!r}")
    # pynet's IPAM: DHCP unless its pool records say otherwise (core/ipam.py claims the network).
    if v4 and DHCP_SPACE in {d.address_space for d in req.v4}:
        net.ipam = "dhcp"
    if v6 and DHCP_SPACE in {d.address_space for d in req.v6}:
        net.ipam6 = "dhcp"
    net.limits = limits.parse(user, "-o")
    limits.check(net.limits, {}, net.mtu)
    mode.configure(net, user, prefix)
    return net


def _mtu(user: dict[str, str], ipv6: bool) -> int:
    if "mtu" not in user:
        return 0
    try:
        mtu = int(user["mtu"])
    except ValueError:
        raise InvalidOption(f"option mtu must be an integer, got {user['mtu']!r}") from None
    if not 68 <= mtu <= 65535:
        raise InvalidOption(f"option mtu must be between 68 and 65535, got {mtu}")
    if ipv6 and mtu < 1280:
        raise InvalidOption(f"option mtu must be at least 1280 with --ipv6, got {mtu}")
    return mtu


def _no_overlap(subnets: list[Subnet]) -> None:
    nets = [ipaddress.ip_network(s.pool) for s in subnets]
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                raise InvalidOption(f"subnets {a} and {b} overlap; give non-overlapping --subnet values")


# ---------------------------------------------------------------- endpoints

def _endpoint_address(name: str, value: str, version: int, net: Network) -> None:
    if not value:
        return
    if "/" not in value:
        raise InvalidOption(f"endpoint {name} {value!r} is not an IP address with prefix")
    try:
        ip = ipaddress.ip_interface(value)
    except ValueError:
        raise InvalidOption(f"endpoint {name} {value!r} is not an IP address with prefix") from None
    if ip.version != version:
        raise InvalidOption(f"endpoint {name} {value!r} is not IPv{version}")
    pools = [ipaddress.ip_network(sub.pool) for sub in (net.v4 if version == 4 else net.v6)]
    if pools and not any(ip.ip in p for p in pools):
        raise InvalidOption(f"endpoint {name} {value} is outside the network's subnets ({', '.join(map(str, pools))})")


def build_endpoint(req, net: Network, prefix: str, mode) -> Endpoint:
    """A CreateEndpoint request -> Endpoint (not yet applied)."""
    for key in req.driver_opts:
        if key not in limits.KEYS:
            raise InvalidOption(f"unknown endpoint option {key!r} (--driver-opt {key}=...); pynet takes "
                                f"{', '.join(limits.KEYS)}")
    own_limits = limits.parse(req.driver_opts, "--driver-opt")
    limits.check(net.limits, own_limits, net.mtu)
    _endpoint_address("Address", req.address, 4, net)
    _endpoint_address("AddressIPv6", req.address6, 6, net)
    if not req.address and net.v4:
        raise InvalidOption(f"mode={net.mode} needs an IPv4 address from the IPAM driver for each container")
    if not req.address and not req.address6:
        raise InvalidOption(f"mode={net.mode} needs an IPv6 address from the IPAM driver for each container "
                            f"of an IPv6-only network")
    mac = req.mac or req.mac_option
    ep = Endpoint(
        id=req.endpoint_id, network_id=net.id,
        host_if=link_name(prefix, "h", req.endpoint_id) if mode.host_side else "",
        peer_if=link_name(prefix, "k", req.endpoint_id),
        mac=valid_mac(mac) if mac else mac_for(req.address, req.endpoint_id),
        ipv4=req.address, ipv6=req.address6, mac_from_docker=bool(req.mac),
        options=dict(req.driver_opts), ports=list(req.portmap), limits=own_limits)
    mode.check_endpoint(net, ep)
    return ep
