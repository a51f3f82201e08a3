"""Published ports (nat mode): from Docker's port map to concrete bindings.

Pure logic, no kernel: expansion of each -p form into per-family bindings,
host-port choice, and conflict checks against every other binding pynet holds
(host ports are host-wide, so the index spans all networks). The kernel side is
in ruleset.py: one nftables map lookup per packet, whatever the number of ports.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass

from .errors import Conflict, InvalidOption
from .model import Binding, Endpoint, Network, PortMapping

PROTO_NUM = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}


def host_port_free(family: int, host_ip: str, proto: str, port: int) -> str | None:
    """None when no host process holds the port; else why not (e.g. another program listens).

    pynet does not hold the port itself (no proxy process, no socket per port): this
    check stops a mapping from silently shadowing a host service.
    """
    if proto == "sctp":
        return None  # the kernel may lack SCTP; nothing to probe
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    addr = host_ip or ("0.0.0.0" if family == 4 else "::")
    s = socket.socket(af, kind)
    try:
        if proto == "tcp":
            # TIME_WAIT entries of a program that served on the port lately are not a user of it
            # (without this, bind fails for a minute after); a listener still makes bind fail.
            # Not for UDP: there SO_REUSEADDR would let the probe share a port a program holds.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == 6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return f"a host process already uses {fmt_host(family, host_ip, port)}/{proto}"
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{addr} is not an address of this host"
        if e.errno == errno.EAFNOSUPPORT:
            return f"IPv{family} is not available on this host"
        return f"cannot check {fmt_host(family, host_ip, port)}/{proto}: {e.strerror}"
    finally:
        s.close()
    return None


def fmt_host(family: int, host_ip: str, port: int) -> str:
    ip = host_ip or ("0.0.0.0" if family == 4 else "::")
    return f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"


@dataclass
class Holder:
    network_id: str
    endpoint_id: str
    binding: Binding


class PortIndex:
    """Every binding pynet holds, keyed by (family, proto, host port)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, str, int], list[Holder]] = {}

    @classmethod
    def from_networks(cls, nets) -> "PortIndex":
        idx = cls()
        for net in nets:
            for ep in net.endpoints.values():
                for b in ep.bindings:
                    idx.add(net.id, ep.id, b)
        return idx

    def add(self, net_id: str, ep_id: str, b: Binding) -> None:
        self._by_key.setdefault((b.family, b.proto, b.host_port), []).append(Holder(net_id, ep_id, b))

    def remove(self, ep_id: str, b: Binding) -> None:
        key = (b.family, b.proto, b.host_port)
        holders = [h for h in self._by_key.get(key, []) if not (h.endpoint_id == ep_id and h.binding == b)]
        if holders:
            self._by_key[key] = holders
        else:
            self._by_key.pop(key, None)

    def holder(self, family: int, host_ip: str, proto: str, port: int, ignore_ep: str = "") -> Holder | None:
        for h in self._by_key.get((family, proto, port), []):
            if h.endpoint_id == ignore_ep:
                continue
            if not h.binding.host_ip or not host_ip or h.binding.host_ip == host_ip:
                return h
        return None

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())


def _targets(net: Network, ep: Endpoint, m: PortMapping) -> list[tuple[int, str, str]]:
    """(family, host IP or "" for every address, container IP) for one mapping."""
    c4 = str(ipaddress.ip_interface(ep.ipv4).ip) if ep.ipv4 else ""
    c6 = str(ipaddress.ip_interface(ep.ipv6).ip) if ep.ipv6 else ""
    host_ip = m.host_ip or net.host_binding_ipv4
    if not host_ip:
        # Like Docker: 0.0.0.0 and :: when the container has both (IPv6-only networks: :: only).
        return [(f, "", c) for f, c in ((4, c4), (6, c6)) if c]
    ip = ipaddress.ip_address(host_ip)
    spec = "" if ip.is_unspecified else str(ip)
    if ip.version == 4:
        if not c4:
            if ip.is_unspecified and c6:
                return [(6, "", c6)]  # -p 0.0.0.0:... (Docker's default HostIP) on an IPv6-only network
            raise InvalidOption(f"-p {host_ip}: an IPv4 host address needs an IPv4 container address; this "
                                f"network is IPv6-only (--ipv4=false): publish on an IPv6 host address")
        return [(4, spec, c4)]
    if not c6:
        raise InvalidOption(f"-p {host_ip}: an IPv6 host address needs an IPv6 container address; "
                            f"create the network with --ipv6 and an IPv6 --subnet")
    return [(6, spec, c6)]


def allocate(net: Network, ep: Endpoint, mappings: list[PortMapping], index: PortIndex,
             port_range: tuple[int, int], probe=host_port_free, source: str = "docker",
             keep: list[Binding] = ()) -> list[Binding]:
    """Concrete bindings for these mappings, or an error naming the port and its holder.

    `keep` are the endpoint's current bindings: a repeated request gets the same
    host ports back (Docker calls ProgramExternalConnectivity again on retries).
    Bindings chosen here are added to `index`; the caller removes them on failure.
    """
    out: list[Binding] = []
    kept = list(keep)
    try:
        for m in mappings:
            targets = _targets(net, ep, m)
            port = _reuse(kept, m, targets)
            if port is None:
                if m.host_port and (not m.host_port_end or m.host_port_end == m.host_port):
                    candidates = [m.host_port]
                elif m.host_port:
                    candidates = range(m.host_port, m.host_port_end + 1)
                else:
                    candidates = range(port_range[0], port_range[1] + 1)
                port = _choose(candidates, m, targets, index, probe, ep.id, fixed=len(candidates) == 1)
            for family, host_ip, cip in targets:
                b = Binding(proto=m.proto, family=family, host_ip=host_ip, host_port=port, container_ip=cip,
                            container_port=m.container_port, source=source)
                index.add(net.id, ep.id, b)
                out.append(b)
    except BaseException:
        for b in out:
            index.remove(ep.id, b)
        raise
    return out


def _reuse(kept: list[Binding], m: PortMapping, targets) -> int | None:
    for b in kept:
        if b.proto != m.proto or b.container_port != m.container_port:
            continue
        if (b.family, b.host_ip) != targets[0][:2]:
            continue
        lo = m.host_port or 0
        hi = m.host_port_end or m.host_port
        if (lo == 0 and hi == 0) or lo <= b.host_port <= hi:
            kept[:] = [k for k in kept if not (k.proto == b.proto and k.host_port == b.host_port)]
            return b.host_port
    return None


def _choose(candidates, m: PortMapping, targets, index: PortIndex, probe, ep_id: str, fixed: bool) -> int:
    reason = ""
    for port in candidates:
        busy = None
        for family, host_ip, _cip in targets:
            h = index.holder(family, host_ip, m.proto, port)
            if h is not None:
                busy = (f"{fmt_host(family, host_ip, port)}/{m.proto} is already published by pynet for "
                        f"endpoint {h.endpoint_id[:12]} of network {h.network_id[:12]} "
                        f"({fmt_host(h.binding.family, h.binding.host_ip, port)} -> "
                        f"{h.binding.container_ip}:{h.binding.container_port}); see `pynet ports`")
                break
            why = probe(family, host_ip, m.proto, port)
            if why:
                busy = f"cannot publish {fmt_host(family, host_ip, port)}/{m.proto}: {why}"
                break
        if busy is None:
            return port
        reason = busy
        if fixed:
            raise Conflict(reason + "; pick another host port")
    if isinstance(candidates, range) and len(candidates) > 1:
        raise Conflict(f"no free host port for {m.container_port}/{m.proto} in "
                       f"{candidates.start}-{candidates.stop - 1} (last: {reason})")
    raise Conflict(reason)


_SPEC = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(?P<hp>\d*):)?(?P<cp>\d+)(?:/(?P<proto>tcp|udp|sctp))?$")


def parse_spec(text: str) -> PortMapping:
    """`[IP:][HOSTPORT:]PORT[/PROTO]` as `docker run -p` takes it (IPv6 in brackets)."""
    m = _SPEC.match(text.strip())
    if not m:
        raise InvalidOption(f"port spec {text!r} must look like [IP:][HOSTPORT:]PORT[/tcp|udp|sctp]")
    ip = (m.group("ip") or "").strip("[]")
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise InvalidOption(f"{ip!r} in port spec {text!r} is not an IP address") from None
    hp = int(m.group("hp")) if m.group("hp") else 0
    cp = int(m.group("cp"))
    if not 0 < cp <= 65535 or not 0 <= hp <= 65535:
        raise InvalidOption(f"ports in {text!r} must be 1-65535")
    return PortMapping(proto=m.group("proto") or "tcp", container_port=cp, host_ip=ip, host_port=hp,
                       host_port_end=hp)
