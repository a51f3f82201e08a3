"""The driver: the core's parts put together, the one object the protocol edge talks to.

  state       networks, locks, lookups, saving           (state.py)
  networks    GwAllocCheck, CreateNetwork, DeleteNetwork  (networks.py)
  endpoints   CreateEndpoint, Join, Leave, DeleteEndpoint (endpoints.py)
  published   PEC/Revoke, pynet port add/rm               (published.py)
  limits      `pynet limit`, the limits sweep at start    (limits.py; modes enforce them)
  ipam        the IPAM driver: pools, static allocation     (ipam.py, pools.py)
  acquire     addresses from the LAN: DHCPv4/v6, SLAAC     (acquire.py)
  leases      DHCP lease keeping: renewals, expiry, release (leases.py)
  guard       the host's addresses and probes on the LAN   (guard.py)
  cluster     swarm: AllocateNetwork/FreeNetwork, DiscoverNew/DiscoverDelete (cluster.py)
  reconciler  start-up, repair, periodic checks           (reconcile.py)
  stats       live figures for /metrics                   (stats.py)

Kernel objects come in (links, nft, sysctl, prober, police), so unit tests run it against fakes.
"""

from __future__ import annotations

from ..config import Config, parse_port_range
from ..errors import PynetError
from ..firewall import Firewall
from ..kernel import sysctl
from ..kernel.police import Police
from ..kernel.probe import Prober
from ..model import NodeInfo
from ..modes import make_modes
from .acquire import Acquirer
from .cluster import Cluster
from .endpoints import Endpoints
from .guard import AddressGuard
from .ipam import Ipam
from .leases import Leases
from .limits import Limits
from .networks import Networks
from .published import Published
from .reconcile import Reconciler
from .state import State
from .stats import Stats


class Driver:
    def __init__(self, cfg: Config, store, links, nft, sysctl_ensure=sysctl.ensure, dhcp_client=None, prober=None,
                 police=None):
        self.cfg = cfg
        self.links = links
        self.state = State(store, cfg.driver_name)
        self.node = NodeInfo()
        # Policers live in pynet's netdev table (same name as its inet and bridge tables).
        self.police = police if police is not None else Police(nft, cfg.table)
        self.modes = make_modes(links, sysctl_ensure, cfg.owner_tag, cfg.scope, self.node, self.police)
        self.firewall = Firewall(nft, cfg.table)
        port_range = parse_port_range(cfg.port_range) if cfg.port_range else kernel_port_range()
        self.published = Published(self.state, self.modes, self.firewall, port_range)
        self.guard = AddressGuard(links, prober or Prober(), cfg.probe_wait, cfg.probe_count)
        self.leases = Leases(self.state, links, dhcp_client, renew_after=cfg.dhcp_renew_after)
        self.ipam = Ipam(self.state, self.leases, Acquirer(self.guard, self.leases), self.guard)
        part = (self.state, self.modes, self.firewall, self.published, self.leases, cfg.link_prefix)
        self.endpoints = Endpoints(*part, guard=self.guard)
        self.networks = Networks(*part, ipam=self.ipam)
        self.limits = Limits(self.networks, links, self.police)
        self.reconciler = Reconciler(self.networks, links, self.networks, self.endpoints, cfg.owner_tag, self.limits)
        self.cluster = Cluster(self.networks, cfg.scope, self.node)
        self.stats = Stats(self.state, self.modes, links, self.firewall, self.leases)

    async def start(self) -> None:
        self.ipam.load()
        self.cluster.load()
        await self.reconciler.start()

    async def shutdown(self) -> None:
        await self.reconciler.shutdown()
        self.state.store.close()

    def mode_of(self, net):
        return self.modes[net.mode]


def kernel_port_range() -> tuple[int, int]:
    try:
        return parse_port_range(sysctl.read("/proc/sys/net/ipv4/ip_local_port_range"))
    except (OSError, PynetError):
        return (32768, 60999)
