"""What a network mode is: its options, its kernel shape, its Join data, its firewall elements.

A mode is the one place that knows what its mode means; the core asks it through
this interface and never compares mode names. A mode never parses HTTP (the wire
layer did) and keeps no state (the core does: state, locks, undo, ports); kernel/
knows nothing of Docker. Adding a mode = one module with a Mode subclass,
registered in modes/__init__.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .. import limits
from ..errors import InvalidOption
from ..limits import Rates
from ..model import Endpoint, JoinInfo, Network, NodeInfo

# What the host namespace shows of an endpoint's container side (see endpoint_state).
GONE, CREATED, IN_CONTAINER = "gone", "created", "in_container"

# How one direction of a bandwidth limit is enforced on the host. Linux queues only what a device
# sends, so that side is shaped (kernel/tc.py); what a device receives can only be policed
# (kernel/police.py: nftables, as this kernel has no tc actions).
SHAPE = "shape"  # a TBF on dev: everything dev sends
SHAPE_SOURCE = "shape_source"  # an HTB class on dev for frames from mac
POLICE = "police"  # nftables on dev's ingress: everything dev receives
POLICE_DEST = "police_dest"  # nftables on dev's ingress: frames for mac


@dataclass(frozen=True)
class Limiter:
    """One direction of an endpoint's limit, as the kernel enforces it."""

    how: str  # SHAPE | SHAPE_SOURCE | POLICE | POLICE_DEST
    dev: str
    mac: str = ""
    rate: int = 0  # bits/s
    burst: int = 0  # bytes

    @property
    def key(self) -> tuple[str, str, str]:
        return self.how, self.dev, self.mac


class Mode:
    NAME = ""
    # The driver scope (PYNET_SCOPE) this mode belongs to: a local-scope plugin makes networks of one
    # host, a global-scope one swarm networks the manager allocates (AllocateNetwork). Docker fixes
    # Scope per driver, so a mode of the other scope is refused (scope_error says what to do).
    SCOPE = "local"
    # -o keys this mode takes (besides the common ones), with the Docker bridge-driver
    # spellings users already type: {alias: key}.
    OPTIONS: frozenset[str] = frozenset()
    ALIASES: dict[str, str] = {}
    lan = False  # containers are on a LAN parent, whose router is their gateway (GwAllocCheck)
    publishes = False  # -p/-P ports are applied on its endpoints
    forwards = False  # its traffic crosses the host's forward path (Docker's DOCKER-USER)
    dhcp = False  # addresses may come from the LAN's DHCP server (--ipam-driver pynet)
    host_side = False  # each endpoint keeps a host-side veth (host_if)
    kernel_needs: tuple[str, ...] = ()  # link kinds it makes, for `pynet doctor`

    def __init__(self, links, sysctl, owner_tag: str, scope: str = "local", node: NodeInfo | None = None,
                 police=None):
        self.links = links  # kernel/links.py, with its tc part (kernel/tc.py)
        self.sysctl = sysctl
        self.owner_tag = owner_tag
        self.plugin_scope = scope  # this daemon's PYNET_SCOPE
        self.node = node if node is not None else NodeInfo()  # what DiscoverNew told of this node
        self.police = police  # kernel/police.py

    def check_scope(self) -> None:
        if self.SCOPE != self.plugin_scope:
            raise InvalidOption(self.scope_error())

    def scope_error(self) -> str:
        return (f"mode={self.NAME} is for the local-scope pynet plugin; this one is global-scope (PYNET_SCOPE="
                f"global) and makes swarm overlay networks only (-o mode=overlay). For mode={self.NAME} across a "
                f"swarm use the local-scope pynet: a --config-only network on every node and one `--scope swarm "
                f"--config-from` network (Docker rejects the tasks of a global-scope driver's --config-from "
                f"network: \"user specified configurations are not supported if the network depends on a "
                f"configuration network\")")

    def alias(self, object_id: str) -> str:
        return self.owner_tag + object_id

    # ------------------------------------------------------------ options (pure)
    def configure(self, net: Network, user: dict[str, str], prefix: str) -> None:
        """Validate this mode's -o keys in `user` and fill the mode's fields of `net`."""

    def check_endpoint(self, net: Network, ep: Endpoint) -> None:
        """Mode-specific refusals of a new endpoint (pure)."""

    # ------------------------------------------------------------ before anything is touched
    async def prepare(self, net: Network) -> None:
        """Fill in what the request left to the driver (read-only kernel lookups)."""

    async def check(self, net: Network, others: list[Network]) -> None:
        """Mode-specific conflicts with the host and the other networks."""

    # ------------------------------------------------------------ kernel
    def link_names(self, net: Network) -> set[str]:
        """Every host-namespace link of this network and its endpoints (for the leftover sweep)."""
        raise NotImplementedError

    def network_links(self, net: Network) -> list[str]:
        """Links the network itself needs on the host (state/kernel drift)."""
        return []

    async def ensure_network(self, net: Network, undo) -> None:
        raise NotImplementedError

    async def delete_network(self, net: Network, others: list[Network]) -> list[str]:
        raise NotImplementedError

    async def ensure_endpoint(self, net: Network, ep: Endpoint, undo) -> None:
        raise NotImplementedError

    async def repair_endpoint(self, net: Network, ep: Endpoint) -> None:
        """At start, for a live endpoint: put back what belongs to it on the host side."""

    async def delete_endpoint(self, net: Network, ep: Endpoint) -> list[str]:
        raise NotImplementedError

    async def endpoint_state(self, net: Network, ep: Endpoint) -> str:
        """GONE (nothing of it left), CREATED (its interface still on the host: never joined) or
        IN_CONTAINER, judged by what the HOST network namespace shows (a managed plugin cannot
        see Docker's netns paths: never judge by SandboxKey)."""
        if await self.links.get(ep.host_if) is None:
            return GONE
        return CREATED if await self.links.get(ep.peer_if) is not None else IN_CONTAINER

    async def announce(self, net: Network, ep: Endpoint) -> None:
        """After Join: tell the LAN where the container's address lives."""

    async def sweep(self, nets: list[Network], prefix: str) -> list[str]:
        """Leftovers of this mode that are not links (the core sweeps links); returns what went."""
        return []

    # ------------------------------------------------------------ bandwidth limits
    def limiters(self, net: Network, ep: Endpoint, rates: Rates) -> list[Limiter]:
        """How this mode enforces `rates` for ep: one Limiter per limited direction (ingress = into
        the container), none for an unlimited one (it pays nothing: no qdisc, no rule)."""
        raise NotImplementedError

    async def limit(self, net: Network, ep: Endpoint, rates: Rates, before: Rates = Rates()) -> None:
        """Make the kernel enforce `rates` for ep; what `before` had and `rates` has not goes.
        Idempotent (CreateEndpoint, Join, reconcile and `pynet limit` call it)."""
        want = {lim.key: lim for lim in self.limiters(net, ep, rates)}
        for lim in self.limiters(net, ep, before):
            if lim.key not in want:
                await self._unlimit(lim)
        for lim in want.values():
            await self._apply(lim)

    async def unlimit(self, net: Network, ep: Endpoint) -> list[str]:
        """ep's limiters go (teardown: keeps going, returns the errors)."""
        errors = []
        for lim in self.limiters(net, ep, limits.effective(net.limits, ep.limits)):
            try:
                await self._unlimit(lim)
            except Exception as e:  # noqa: BLE001 - teardown keeps going and reports all
                errors.append(f"{lim.how} on {lim.dev}: {e}")
        return errors

    async def _apply(self, lim: Limiter) -> None:
        if lim.how == SHAPE:
            await self.links.shape(lim.dev, lim.rate, lim.burst)
        elif lim.how == SHAPE_SOURCE:
            await self.links.shape_source(lim.dev, lim.mac, lim.rate, lim.burst)
        elif lim.how == POLICE:
            await self.police.police(lim.dev, lim.rate, lim.burst)
        else:
            await self.police.police_dest(lim.dev, lim.mac, lim.rate, lim.burst)

    async def _unlimit(self, lim: Limiter) -> None:
        if lim.how == SHAPE:
            await self.links.unshape(lim.dev)
        elif lim.how == SHAPE_SOURCE:
            await self.links.unshape_source(lim.dev, lim.mac)
        elif lim.how == POLICE:
            await self.police.unpolice(lim.dev)
        else:
            await self.police.unpolice_dest(lim.dev, lim.mac)

    # ------------------------------------------------------------ swarm manager (global scope)
    def allocation(self, net: Network, taken: list[dict[str, str]]) -> dict[str, str]:
        """AllocateNetwork: options to add to what every node's CreateNetwork will carry, given the
        options the manager's other networks were allocated with (pure)."""
        return {}

    # ------------------------------------------------------------ Docker's Join reply
    def join_info(self, net: Network, ep: Endpoint) -> JoinInfo:
        reply = JoinInfo(src_name=ep.peer_if, dst_prefix=net.options.get("container_iface_prefix", "eth"))
        if not net.internal:
            # A Gateway keeps Docker from adding docker_gwbridge (and Docker 26.1+ forwards DNS
            # only for containers with one); --internal has no way out.
            if net.v4 and ep.ipv4:
                reply.gateway = str(ipaddress.ip_interface(net.v4[0].gateway).ip)
            if net.v6 and ep.ipv6:
                reply.gateway6 = str(ipaddress.ip_interface(net.v6[0].gateway).ip)
        return reply

    # ------------------------------------------------------------ firewall (nft set elements)
    def network_elements(self, net: Network) -> dict[str, list[str]]:
        """Elements the network itself puts in pynet's table (endpoints' not included)."""
        return {}

    def endpoint_elements(self, net: Network, ep: Endpoint) -> dict[str, list[str]]:
        return {}

    def docker_user_names(self, net: Network) -> list[str]:
        """Interface names beyond the link prefix that Docker's DOCKER-USER must accept."""
        return []

    # ------------------------------------------------------------ helpers for subclasses
    async def _retire(self, names, peer: str = "") -> list[str]:
        """Links out of service now, unregistered in the background (kernel/retire.py); `peer`: the
        other end of the (one) veth in `names`, which goes with it."""
        errors = []
        for name in names:
            if not name:
                continue
            try:
                await self.links.retire(name, peer)
            except Exception as e:  # noqa: BLE001 - teardown keeps going and reports all
                errors.append(f"{name}: {e}")
        return errors

    async def _retire_bridge(self, net: Network) -> list[str]:
        try:
            await self.links.retire_bridge(net.bridge, net.gateways())
        except Exception as e:  # noqa: BLE001
            return [f"{net.bridge}: {e}"]
        return []


def veth_limiters(ep: Endpoint, rates: Rates) -> list[Limiter]:
    """Modes whose containers hang off a host-side veth (nat, l2bridge): what the veth's host side
    sends goes into the container (shaped: a TBF), what it receives comes out of it (policed)."""
    out = []
    if rates.ingress:
        out.append(Limiter(SHAPE, ep.host_if, rate=rates.ingress.rate, burst=rates.ingress.burst_or_default()))
    if rates.egress:
        out.append(Limiter(POLICE, ep.host_if, rate=rates.egress.rate, burst=rates.egress.burst_or_default()))
    return out


def quoted(name: str) -> str:
    """An interface name as an nft set element (validated names only reach here)."""
    return f'"{name}"'
