"""What a network mode is: its options, its kernel shape, its Join data, its firewall elements.

A mode is the one place that knows what its mode means; the core asks it through
this interface and never compares mode names. A mode never parses HTTP (the wire
layer did) and keeps no state (the core does: state, locks, undo, ports); kernel/
knows nothing of Docker. Adding a mode = one module with a Mode subclass,
registered in modes/__init__.py.
"""

from __future__ import annotations

import ipaddress

from ..errors import InvalidOption
from ..model import Endpoint, JoinInfo, Network, NodeInfo

# What the host namespace shows of an endpoint's container side (see endpoint_state).
GONE, CREATED, IN_CONTAINER = "gone", "created", "in_container"


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

    def __init__(self, links, sysctl, owner_tag: str, scope: str = "local", node: NodeInfo | None = None):
        self.links = links
        self.sysctl = sysctl
        self.owner_tag = owner_tag
        self.plugin_scope = scope  # this daemon's PYNET_SCOPE
        self.node = node if node is not None else NodeInfo()  # what DiscoverNew told of this node

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
    async def _delete_links(self, names) -> list[str]:
        errors = []
        for name in names:
            if not name:
                continue
            try:
                await self.links.delete(name)
            except Exception as e:  # noqa: BLE001 - teardown keeps going and reports all
                errors.append(f"{name}: {e}")
        return errors


def quoted(name: str) -> str:
    """An interface name as an nft set element (validated names only reach here)."""
    return f'"{name}"'
