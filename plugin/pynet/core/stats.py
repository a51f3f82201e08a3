"""Live figures for the metrics: read at scrape time, nothing polled in the background.

A snapshot costs one link dump (kernel/links.py) and one nft listing per table
(firewall/counters.py), then one pass over the state, whatever the number of
endpoints and ports. The kernel is read first; the pass over the state has no
await in it, so it sees one consistent state.

Traffic is given from the CONTAINER's side, as `docker stats` does: what a nat or
l2bridge endpoint receives is what its host-side veth transmits (and its receive drops are
the veth's transmit drops). A transparent endpoint is a macvlan that lives in the
container's namespace: the host has no interface of its own to count it on, so it has no
traffic figures (`counted` is False), only its place in the counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..firewall import ruleset
from ..firewall.counters import Counters
from ..kernel.api import LinkStats
from ..model import Binding
from .leases import FAMILIES


@dataclass(frozen=True)
class Traffic:
    """From the container's side."""

    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_dropped: int
    tx_dropped: int

    @classmethod
    def of_host_side(cls, s: LinkStats) -> "Traffic":
        return cls(s.tx_bytes, s.rx_bytes, s.tx_packets, s.rx_packets, s.tx_dropped, s.rx_dropped)


@dataclass
class EndpointFigures:
    network: str
    endpoint: str
    mode: str
    interface: str  # the host-side link counted ("" when the mode has none)
    mac: str
    ipv4: str
    ipv6: str
    counted: bool  # the mode leaves a host-side interface to count on
    traffic: Traffic | None  # None: not counted, or its link was not found


@dataclass
class PortFigures:
    network: str
    endpoint: str
    binding: Binding
    packets: int | None  # None: no element in the kernel's map (drift)
    bytes: int | None


@dataclass
class LeaseFigures:
    network: str
    family: int  # 4 (DHCP) | 6 (DHCPv6)
    mac: str
    ip: str
    state: str  # bound | renewing | rebinding | expired | lost
    expires: float  # epoch seconds
    renewals: int


@dataclass
class Snapshot:
    networks: dict[str, str] = field(default_factory=dict)  # network ID -> mode
    endpoints: list[EndpointFigures] = field(default_factory=list)
    ports: list[PortFigures] = field(default_factory=list)
    drops: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule comment -> (packets, bytes)
    leases: list[LeaseFigures] = field(default_factory=list)
    renewal_failures: int = 0
    damaged_state_files: int = 0
    save_failures: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # source -> why it could not be read
    read_seconds: float = 0.0


LEASE_STATES = ("bound", "renewing", "rebinding", "expired", "lost")


def lease_state(lease, now: float) -> str:
    """A DHCPv4 or DHCPv6 lease: past T1 renewing, past T2 rebinding; lost: it ended and the address was
    taken from the container (core/leases.py asks it back)."""
    if lease.lost_at:
        return "lost"
    return LEASE_STATES[(now >= lease.renew_at) + (now >= lease.rebind_at) + (now >= lease.expires)]


class Stats:
    """Reads the figures; the protocol edge turns them into Prometheus text (api/metrics.py)."""

    def __init__(self, state, modes, links, firewall, leases):
        self.state = state
        self.modes = modes
        self.links = links
        self.firewall = firewall
        self.leases = leases

    async def snapshot(self) -> Snapshot:
        snap = Snapshot()
        t0 = time.perf_counter()
        links: dict[str, LinkStats] = {}
        counters = Counters()
        try:
            links = await self.links.link_stats()
        except Exception as e:  # noqa: BLE001 - serve what can be read, say what could not
            snap.errors["links"] = str(e)
        try:
            counters = await self.firewall.counters()
        except Exception as e:  # noqa: BLE001
            snap.errors["nft"] = str(e)
        if counters.missing and self.state.nets:
            snap.errors["nft"] = f"table(s) missing: {', '.join(counters.missing)}"
        snap.read_seconds = time.perf_counter() - t0
        self._fill(snap, links, counters)
        return snap

    def _fill(self, snap: Snapshot, links: dict[str, LinkStats], counters: Counters) -> None:
        """The pass over the state (no await: one consistent view)."""
        now = time.time()
        for net in self.state.nets.values():
            mode = self.modes[net.mode]
            snap.networks[net.id] = net.mode
            for ep in net.endpoints.values():
                counted = bool(mode.host_side and ep.host_if)
                stats = links.get(ep.host_if) if counted else None
                snap.endpoints.append(EndpointFigures(
                    net.id, ep.id, net.mode, ep.host_if if counted else "", ep.mac, ep.ipv4, ep.ipv6, counted,
                    Traffic.of_host_side(stats) if stats is not None else None))
                for b in ep.bindings:
                    found = counters.ports.get(ruleset.binding_key(b))
                    snap.ports.append(PortFigures(net.id, ep.id, b, *(found if found else (None, None))))
            for v, family in FAMILIES.items():
                for held in getattr(net, family.table).values():
                    lease = family.load(**held)
                    snap.leases.append(LeaseFigures(net.id, v, lease.mac, lease.ip, lease_state(lease, now),
                                                    lease.expires, lease.renewals))
        snap.drops = dict(counters.drops)
        snap.renewal_failures = self.leases.renewal_failures
        snap.damaged_state_files = len(self.state.store.damaged) + len(self.state.store.broken)
        snap.save_failures = self.state.save_failures
