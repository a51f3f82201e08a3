"""Published ports: where Docker says (the container's gateway endpoint), and `pynet port add/rm`.

Docker sends a container's whole port map with every Join, and ProgramExternalConnectivity
(PEC) for the endpoint that is its gateway (Docker 29: only when it becomes it; Revoke
when it stops). So ports are applied at PEC, removed at Revoke or Leave (29 sends no
Revoke after a live-restore restart), and `pynet port add` ports belong to the container:
parked on Revoke, they follow it to its next gateway endpoint (same sandbox key).

Host ports are host-wide: allocation across networks is serialised by one lock (held
for microseconds: index lookups and one nft transaction). The allocation itself is pure
(ports.py); the kernel side is one nftables map lookup per packet (firewall/ruleset.py).
"""

from __future__ import annotations

import asyncio
import logging

from .. import faults, ports
from ..errors import InvalidOption, NotFound, PynetError
from ..model import Binding, Endpoint, Network, PortMapping, to_dict

log = logging.getLogger("pynet.ports")


def as_mappings(bindings: list[Binding]) -> list[PortMapping]:
    """Applied bindings back to requests (one per host port: a dual-stack `-p` is one mapping)."""
    out: dict[tuple, PortMapping] = {}
    for b in bindings:
        out.setdefault((b.proto, b.host_port, b.container_port, b.host_ip),
                       PortMapping(proto=b.proto, container_port=b.container_port, host_ip=b.host_ip,
                                   host_port=b.host_port, host_port_end=b.host_port))
    return list(out.values())


class Published:
    def __init__(self, state, modes, firewall, port_range: tuple[int, int], probe=ports.host_port_free):
        self.state = state
        self.modes = modes
        self.firewall = firewall
        self.port_range = port_range
        self.probe = probe
        self.index = ports.PortIndex()
        self._lock = asyncio.Lock()

    def load(self) -> None:
        self.index = ports.PortIndex.from_networks(self.state.nets.values())

    def check_allowed(self, net: Network, mappings, cli: bool = False) -> None:
        mode = self.modes[net.mode]
        if mappings and not mode.publishes:
            how = "publish on a mode=nat network" if cli else "remove -p/-P"
            hint = "" if cli else (" (if the container is also on a pynet nat network, make that its gateway "
                                   "network: `docker run --network name=NET,gw-priority=1` or compose "
                                   "`gw_priority`, Docker 28+)")
            raise InvalidOption(f"published ports (-p/-P) belong to mode=nat; containers of this mode={net.mode} "
                                f"network are reached at their own LAN address: {how}{hint}")
        if mappings and net.internal and cli:
            raise InvalidOption("this network is --internal: it has no way in or out, so no port can be published "
                                "on it; use a network without --internal")

    # ------------------------------------------------------------ Docker: the gateway endpoint
    async def program(self, req) -> None:
        """PEC: this endpoint is the container's gateway: Docker's port map is applied here."""
        async with self.state.lock(req.network_id):
            net, ep = self.state.endpoint(req.network_id, req.endpoint_id)
            mappings = ep.ports if req.portmap is None else req.portmap
            if net.internal:
                # Docker 29 may make an --internal endpoint the gateway when it is the only one; it has
                # no way in: like Docker's bridge, publish nothing rather than fail the container.
                log.info("ports not published on an --internal network", extra={"fields": {"endpoint": ep.id[:12]}})
                mappings = []
            self.check_allowed(net, mappings)
            old = [b for b in ep.bindings if b.source == "docker"]
            keep_cli = [b for b in ep.bindings if b.source != "docker"]
            before = ep.ports, ep.gateway
            ep.ports, ep.gateway = mappings, True
            try:
                await self.publish(net, ep, mappings, "docker", replace=old, others=keep_cli, call="program_external")
            except BaseException:
                ep.ports, ep.gateway = before
                raise
        await self._adopt_cli_ports(net, ep)

    async def revoke(self, ref) -> None:
        """No longer the gateway: its ports go (Docker's come again with the next PEC; CLI ones park)."""
        async with self.state.locked(ref.network_id) as known:
            ep = self.state.nets[ref.network_id].endpoints.get(ref.endpoint_id) if known else None
            if ep is not None and (ep.bindings or ep.gateway):
                net = self.state.nets[ref.network_id]
                ep.parked += as_mappings([b for b in ep.bindings if b.source != "docker"])
                ep.gateway = False
                await self.unpublish(net, ep, ep.bindings)
                faults.point("revoke_external:firewall")
                self.state.save(net, ep)
                faults.point("revoke_external:saved")

    async def leave(self, net: Network, ep: Endpoint) -> list[PortMapping]:
        """Under the network's lock: the endpoint's ports go; returns its CLI ports, to hand over."""
        cli = ep.parked + as_mappings([b for b in ep.bindings if b.source != "docker"])
        await self.unpublish(net, ep, ep.bindings)
        ep.parked, ep.gateway = [], False
        return cli

    async def hand_over(self, sandbox: str, leaving: str, mappings: list[PortMapping]) -> None:
        """CLI ports of a container's endpoint that left: to its gateway endpoint (or parked on another)."""
        siblings = [(n, e) for n, e in self.state.siblings(sandbox, leaving)
                    if self.modes[n.mode].publishes and not n.internal]
        if not siblings:
            if mappings:
                log.info("`pynet port add` ports ended with the container's last pynet endpoint",
                         extra={"fields": {"endpoint": leaving[:12], "ports": len(mappings)}})
            return
        net, ep = next(((n, e) for n, e in siblings if e.gateway), siblings[0])
        async with self.state.locked(net.id) as known:
            if not known or ep.id not in net.endpoints:
                return
            if ep.gateway:
                await self._publish_cli(net, ep, mappings)
            else:
                ep.parked += mappings
                self.state.save(net, ep)

    async def _adopt_cli_ports(self, net: Network, ep: Endpoint) -> None:
        """Parked `pynet port add` ports of this container (this endpoint's or a sibling's) come here."""
        if not ep.sandbox or net.internal:
            return
        parked: list[PortMapping] = []
        for other, sib in [(net, ep)] + self.state.siblings(ep.sandbox, ep.id):
            if not sib.parked:
                continue
            async with self.state.locked(other.id) as known:
                if known and sib.parked:
                    parked += sib.parked
                    sib.parked = []
                    self.state.save(other, sib)
        if parked:
            async with self.state.locked(net.id) as known:
                if known and ep.id in net.endpoints:
                    await self._publish_cli(net, ep, parked)

    async def _publish_cli(self, net: Network, ep: Endpoint, mappings: list[PortMapping]) -> None:
        """Under the network's lock: publish each; one that no longer fits stays parked, logged."""
        for m in mappings:
            try:
                await self.publish(net, ep, [m], "cli", replace=[], others=list(ep.bindings))
            except PynetError as e:
                ep.parked.append(m)
                self.state.save(net, ep)
                log.warning("a `pynet port add` port could not follow the container's gateway",
                            extra={"fields": {"endpoint": ep.id[:12], "port": to_dict(m), "error": str(e)}})

    # ------------------------------------------------------------ `pynet port add/rm`
    async def add(self, ref, specs: list[str]) -> list[Binding]:
        mappings = [ports.parse_spec(s) for s in specs]
        async with self.state.lock(ref.network_id):
            net, ep = self.state.endpoint(ref.network_id, ref.endpoint_id)
            self.check_allowed(net, mappings, cli=True)
            return await self.publish(net, ep, mappings, "cli", replace=[], others=list(ep.bindings))

    async def remove(self, ref, specs: list[str]) -> list[Binding]:
        """A spec without host port closes every binding of that container port."""
        mappings = [ports.parse_spec(s) for s in specs]
        async with self.state.lock(ref.network_id):
            net, ep = self.state.endpoint(ref.network_id, ref.endpoint_id)
            by_target: dict[tuple[str, int], list[Binding]] = {}
            for b in ep.bindings:  # one pass: `pynet port rm` of 10,000 ports stays linear
                by_target.setdefault((b.proto, b.container_port), []).append(b)
            gone: dict[Binding, None] = {}
            for m in mappings:
                match = [b for b in by_target.get((m.proto, m.container_port), [])
                         if (not m.host_port or b.host_port == m.host_port) and (not m.host_ip or b.host_ip == m.host_ip)]
                if not match:
                    raise NotFound(f"no published port matches {ports.fmt_host(4, m.host_ip, m.host_port)}->"
                                   f"{m.container_port}/{m.proto} on endpoint {ep.id[:12]}; see `pynet ports`")
                gone.update(dict.fromkeys(match))
            await self.unpublish(net, ep, list(gone))
            self.state.save(net, ep)
            return list(gone)

    # ------------------------------------------------------------ the mechanics
    async def publish(self, net: Network, ep: Endpoint, mappings, source: str, replace: list[Binding],
                      others: list[Binding], call: str = "") -> list[Binding]:
        """Allocate, apply (one nft transaction) and persist; on any failure nothing changes."""
        async with self._lock:
            for b in replace:
                self.index.remove(ep.id, b)
            try:
                new = ports.allocate(net, ep, mappings, self.index, self.port_range, self.probe, source=source,
                                     keep=replace)
            except BaseException:
                for b in replace:
                    self.index.add(net.id, ep.id, b)
                raise
            try:
                await self.firewall.change_ports(replace, new)
                faults.point(f"{call}:firewall")
                before = ep.bindings
                ep.bindings = others + new
                try:
                    self.state.save(net, ep)
                    faults.point(f"{call}:saved")
                except BaseException:
                    ep.bindings = before
                    await self.firewall.change_ports(new, replace)
                    raise
            except BaseException:
                for b in new:
                    self.index.remove(ep.id, b)
                for b in replace:
                    self.index.add(net.id, ep.id, b)
                raise
        return new

    async def unpublish(self, net: Network, ep: Endpoint, bindings: list[Binding]) -> None:
        """Remove bindings from the kernel and the index; the caller persists."""
        if not bindings:
            return
        gone = list(bindings)
        drop = set(gone)
        async with self._lock:
            ep.bindings = [b for b in ep.bindings if b not in drop]
            for b in gone:
                self.index.remove(ep.id, b)
            await self.firewall.change_ports(gone, [])

    def forget(self, net: Network) -> None:
        """A network went: its bindings leave the index (the firewall elements went with it)."""
        for ep in net.endpoints.values():
            for b in ep.bindings:
                self.index.remove(ep.id, b)

    def listing(self, net_id: str = "", ep_id: str = "") -> list[dict]:
        out = []
        for net in self.state.nets.values():
            if net_id and net.id != net_id:
                continue
            for ep in net.endpoints.values():
                if not ep_id or ep.id == ep_id:
                    out += [dict(to_dict(b), network=net.id, endpoint=ep.id) for b in ep.bindings]
        return out
