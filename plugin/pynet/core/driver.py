"""The driver: the core's parts put together, the one object the protocol edge talks to.

  state       networks, locks, lookups, saving           (state.py)
  networks    GwAllocCheck, CreateNetwork, DeleteNetwork  (networks.py)
  endpoints   CreateEndpoint, Join, Leave, DeleteEndpoint (endpoints.py)
  published   PEC/Revoke, pynet port add/rm               (published.py)
  leases/ipam the DHCP IPAM driver and its lease keeping  (leases.py, ipam.py)
  reconciler  start-up, repair, periodic checks           (reconcile.py)

Kernel objects come in (links, nft, sysctl), so unit tests run it against fakes.
"""

from __future__ import annotations

from ..config import Config, parse_port_range
from ..errors import PynetError
from ..firewall import Firewall
from ..kernel import sysctl
from ..modes import make_modes
from .endpoints import Endpoints
from .ipam import Ipam
from .leases import Leases
from .networks import Networks
from .published import Published
from .reconcile import Reconciler
from .state import State


class Driver:
    def __init__(self, cfg: Config, store, links, nft, sysctl_ensure=sysctl.ensure, dhcp_client=None):
        self.cfg = cfg
        self.links = links
        self.state = State(store, cfg.driver_name)
        self.modes = make_modes(links, sysctl_ensure, cfg.owner_tag)
        self.firewall = Firewall(nft, cfg.table)
        port_range = parse_port_range(cfg.port_range) if cfg.port_range else kernel_port_range()
        self.published = Published(self.state, self.modes, self.firewall, port_range)
        self.leases = Leases(self.state, dhcp_client, cfg.dhcp_renew_after)
        self.ipam = Ipam(self.state, self.leases)
        part = (self.state, self.modes, self.firewall, self.published, self.leases, cfg.link_prefix)
        self.endpoints = Endpoints(*part)
        self.networks = Networks(*part)
        self.reconciler = Reconciler(self.networks, links, self.networks, self.endpoints, cfg.owner_tag)

    async def start(self) -> None:
        await self.reconciler.start()

    async def shutdown(self) -> None:
        await self.reconciler.shutdown()

    def mode_of(self, net):
        return self.modes[net.mode]


def kernel_port_range() -> tuple[int, int]:
    try:
        return parse_port_range(sysctl.read("/proc/sys/net/ipv4/ip_local_port_range"))
    except (OSError, PynetError):
        return (32768, 60999)
