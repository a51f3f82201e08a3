"""overlay: nat across the nodes of a swarm — one L2 segment over VXLAN, egress NAT on every node.

Global scope only (PYNET_SCOPE=global): the swarm manager allocates the network (AllocateNetwork,
core/cluster.py: options checked, VNI chosen) and its subnet (the manager's IPAM); every node
that runs a task on it gets CreateNetwork with the options AllocateNetwork returned and builds:

  bridge    as in nat mode (this class IS nat mode plus the rest): the gateway address, veths of
            the containers, masquerade outward, -p ports (swarm: --publish mode=host); the bridge
            has the same MAC on every node (derived from the network ID), like the same gateway
            address, so a container's gateway is its own node whichever node answers.
  vxlan     <prefix>v<id>, a port of the bridge: the VNI, source = this node's swarm data-path
            address (DiscoverNew Self; or -o parent / the default route's interface), learning,
            broadcast and unknown unicast flooded to a multicast group on the underlay (239.x.y.z
            from the VNI, or -o vxlan_group). Flood-and-learn needs no peer list: Docker tells a
            remote driver of other nodes only when they join or leave the gossip, so a plugin
            installed or upgraded in a running swarm would never learn them (research/swarm-global.md).
  gateway   each node answers for the gateway itself: ARP for or from the gateway address, and
            every frame to or from the gateway MAC, is kept off the vxlan port (bridge-family sets
            ov_gw4, ov_gwmac: firewall/ruleset.py), so a container's traffic out of its subnet
            leaves through its own node's NAT.
  MTU       the underlay's minus 50 (VXLAN over IPv4), unless -o mtu (at most that).
  join      a gratuitous ARP for the container sent out of the vxlan port: the other nodes' vxlan
            and bridge tables learn at once where its MAC lives (an address reused on another node
            would otherwise go to the old node until their entries age out).
"""

from __future__ import annotations

import hashlib
import ipaddress

from ..errors import Conflict, InvalidOption
from ..kernel import announce
from ..model import Network, link_name
from ..options import valid_ifname
from .base import quoted
from .nat import NatMode

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
VXLAN_PORT = 4789
# VNIs pynet derives live in the upper half of the 24-bit space: Docker's own overlay allocates
# from 4096 upwards, so the two never meet on a host (they share the kernel's UDP 4789 socket).
VNI_BASE, VNI_SPAN = 0x800000, 0x7FFFFF
VNI_MAX = 0xFFFFFF


def vni_for(net_id: str, attempt: int = 0) -> int:
    """The VNI a network gets unless taken (core/cluster.py probes the next one then)."""
    digest = int(hashlib.sha256(net_id.encode()).hexdigest()[:8], 16)
    return VNI_BASE + (digest + attempt) % VNI_SPAN


def group_for(vni: int) -> str:
    """A multicast group per VNI (administratively scoped 239/8): a node receives only the floods
    of the segments it has."""
    return f"239.{(vni >> 16) & 255}.{(vni >> 8) & 255}.{vni & 255}"


def gateway_mac(net_id: str) -> str:
    """The bridge's MAC, the same on every node: locally administered, 02:70:..., never one of the
    containers' 02:42:<IPv4> ones."""
    raw = hashlib.sha256(b"pynet-gw:" + net_id.encode()).digest()[:4]
    return ":".join(f"{b:02x}" for b in b"\x02\x70" + raw)


def parse_vni(value) -> int:
    try:
        vni = int(str(value), 10)
    except ValueError:
        raise InvalidOption(f"option vni must be an integer 1-{VNI_MAX}, got {value!r}") from None
    if not 1 <= vni <= VNI_MAX:
        raise InvalidOption(f"option vni must be 1-{VNI_MAX}, got {vni}")
    return vni


class OverlayMode(NatMode):
    NAME = "overlay"
    SCOPE = "global"
    OPTIONS = NatMode.OPTIONS | {"vni", "parent", "vxlan_group", "vxlan_port"}
    kernel_needs = ("bridge", "veth", "vxlan")

    def scope_error(self) -> str:
        return ("mode=overlay needs the global-scope pynet plugin (Docker fixes a driver's scope): install a "
                "second alias with PYNET_SCOPE=global on every node (`docker plugin install --alias "
                "pynet-overlay <plugin> PYNET_SCOPE=global`) and create the network on a swarm manager "
                "with `-d pynet-overlay:latest`")

    # ------------------------------------------------------------ options
    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        super().configure(net, user, prefix)
        net.vni = parse_vni(user["vni"]) if "vni" in user else vni_for(net.id)
        net.vxlan = link_name(prefix, "v", net.id)
        net.parent = valid_ifname("parent", user["parent"]) if user.get("parent") else ""
        net.vxlan_group = user.get("vxlan_group") or group_for(net.vni)
        try:
            group = ipaddress.ip_address(net.vxlan_group)
        except ValueError:
            group = None
        if group is None or group.version != 4 or not group.is_multicast:
            raise InvalidOption(f"option vxlan_group must be an IPv4 multicast address (e.g. 239.1.1.1), got "
                                f"{net.vxlan_group!r}")
        try:
            net.vxlan_port = int(user.get("vxlan_port", VXLAN_PORT))
        except ValueError:
            net.vxlan_port = 0
        if not 1 <= net.vxlan_port <= 65535:
            raise InvalidOption(f"option vxlan_port must be a UDP port 1-65535, got {user.get('vxlan_port')!r}")
        net.gw_mac = gateway_mac(net.id)

    async def prepare(self, net: Network) -> None:
        """The underlay: -o parent, else the interface of this node's swarm address (DiscoverNew
        Self), else the default route's; the source address on it; the MTU it leaves."""
        dev, local = await self._underlay(net)
        under = await self.links.get(dev)
        net.parent, net.local = dev, local
        room = (under.mtu or 1500) - VXLAN_OVERHEAD
        if not net.mtu:
            net.mtu = room
        elif net.mtu > room:
            raise InvalidOption(f"option mtu {net.mtu} does not fit VXLAN on {dev} (MTU {under.mtu}): at most "
                                f"{room}, or leave -o mtu out")

    async def _underlay(self, net: Network) -> tuple[str, str]:
        addrs = [(name, ipaddress.ip_interface(cidr)) for name, cidr in await self.links.addresses()]
        own = ipaddress.ip_address(self.node.address) if self.node.address else None
        if own is not None and own.version != 4:
            raise InvalidOption(f"this node's swarm address {own} is IPv6: mode=overlay runs VXLAN over IPv4 "
                                f"only; give -o parent=IFACE with an IPv4 address")
        dev = net.parent
        if not dev:
            dev = next((name for name, a in addrs if a.ip == own), "") or await self.links.default_route_dev()
        if not dev:
            raise InvalidOption("mode=overlay found no underlay on this node (no swarm address from Docker, no "
                                "default route): give -o parent=IFACE, the interface on the nodes' network")
        if await self.links.get(dev) is None:
            raise InvalidOption(f"underlay interface {dev} does not exist on this node; give -o parent=IFACE "
                                f"(an interface every node has) or leave it out")
        v4 = [a.ip for name, a in addrs if name == dev and a.version == 4 and not a.ip.is_loopback]
        if own is not None and own in v4:
            return dev, str(own)
        if not v4:
            raise InvalidOption(f"underlay interface {dev} has no IPv4 address: mode=overlay needs one as "
                                f"VXLAN source; give -o parent=IFACE")
        return dev, str(v4[0])

    async def check(self, net: Network, others: list[Network]) -> None:
        await super().check(net, others)
        for other in others:
            if other.vni and other.vni == net.vni:
                raise Conflict(f"VNI {net.vni} is already used by pynet network {other.id[:12]} on this node; "
                               f"remove one of them (or give -o vni=N)")

    def allocation(self, net: Network, taken: list[dict[str, str]]) -> dict[str, str]:
        """The VNI, unique among the manager's pynet networks: the one derived from the ID, else the
        next free one; a VNI the user gave (or an earlier allocation of this network did: Docker
        sends it back when a new leader allocates again) is kept, or refused when another has it."""
        used = {int(o["vni"]) for o in taken if str(o.get("vni", "")).isdigit()}
        if "vni" in net.options:
            if net.vni in used:
                raise Conflict(f"VNI {net.vni} (-o vni) is already used by another pynet overlay network; "
                               f"give another -o vni, or leave it out")
            return {"vni": str(net.vni)}
        for attempt in range(4096):
            vni = vni_for(net.id, attempt)
            if vni not in used:
                return {"vni": str(vni)}
        raise Conflict("no free VNI found for the network; give -o vni=N")

    # ------------------------------------------------------------ kernel
    def link_names(self, net: Network) -> set[str]:
        return super().link_names(net) | {net.vxlan}

    def network_links(self, net: Network) -> list[str]:
        return [net.bridge, net.vxlan]

    async def ensure_network(self, net: Network, undo) -> None:
        await super().ensure_network(net, undo)
        if await self.links.ensure_vxlan(net.vxlan, net.vni, net.parent, net.local, net.vxlan_group,
                                         net.vxlan_port, net.mtu, net.bridge, self.alias(net.id), not net.icc):
            undo.push("delete vxlan", self.links.delete, net.vxlan)

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        return await self._retire([net.vxlan]) + await self._retire_bridge(net)

    async def announce(self, net: Network, ep) -> None:
        if ep.ipv4:
            announce.send_garp(net.vxlan, str(ipaddress.ip_interface(ep.ipv4).ip), ep.mac)

    # ------------------------------------------------------------ firewall
    def network_elements(self, net: Network) -> dict[str, list[str]]:
        out = super().network_elements(net)
        port = quoted(net.vxlan)
        out["ov_gwmac"] = [f"{port} . {net.gw_mac}"]
        out["ov_gw4"] = [f"{port} . {s.gateway.split('/')[0]}" for s in net.v4 if s.gateway]
        return out
