"""Bandwidth limits: `pynet limit` at run time, what the CLI shows, and the start-up sweep.

An endpoint's limits are its network's defaults (-o ingress_rate=...) with its own
overrides on top (--driver-opt at CreateEndpoint, then `pynet limit`), merged key by key
(limits.py). Its mode enforces them (Mode.limit: which qdisc or policer on which
device); CreateEndpoint, Join and reconcile apply them (core/endpoints.py,
core/reconcile.py), deleting an endpoint removes them (each mode's delete_endpoint).
A change is applied, then saved; if the save fails the old limits are put back.
"""

from __future__ import annotations

import logging

from .. import limits
from ..modes import GONE, POLICE, POLICE_DEST, SHAPE, SHAPE_SOURCE
from .state import Part

log = logging.getLogger("pynet.limits")


def rates(net, ep) -> limits.Rates:
    return limits.effective(net.limits, ep.limits)


class Limits(Part):
    def __init__(self, part: Part, links, police):
        super().__init__(part.state, part.modes, part.firewall, part.published, part.leases, part.prefix)
        self.links = links
        self.police = police

    async def set(self, ref, settings: dict[str, str]) -> dict:
        """`pynet limit CONTAINER KEY=VALUE...`: the endpoint's overrides change, the kernel follows,
        the state is saved (all or nothing)."""
        async with self.state.lock(ref.network_id):
            net, ep = self.state.endpoint(ref.network_id, ref.endpoint_id)
            new = limits.change(ep.limits, settings)
            wanted = limits.check(net.limits, new, net.mtu)
            before = rates(net, ep)
            mode = self.modes[net.mode]
            old = ep.limits
            try:
                await mode.limit(net, ep, wanted, before)
                ep.limits = new
                self.state.save(net, ep)
            except BaseException:
                ep.limits = old
                try:
                    await mode.limit(net, ep, before, wanted)
                except Exception as e:  # noqa: BLE001 - the original error is what the user must see
                    log.error("limits not put back", extra={"fields": {"endpoint": ep.id[:12], "error": str(e)}})
                raise
            log.info("limits changed", extra={"fields": {"endpoint": ep.id[:12], **wanted.as_options()}})
            return self.view(net, ep)

    def view(self, net, ep) -> dict:
        r = rates(net, ep)
        return {"network": net.id, "endpoint": ep.id, "mode": net.mode, "limits": r.as_options(),
                "network_defaults": {k: _fmt(k, v) for k, v in net.limits.items()},
                "overrides": {k: _fmt(k, v) for k, v in ep.limits.items()},
                "enforced_by": [f"{lim.how} {lim.dev}" + (f" {lim.mac}" if lim.mac else "")
                                for lim in self.modes[net.mode].limiters(net, ep, r)]}

    def listing(self, net_id: str = "", ep_id: str = "") -> list[dict]:
        return [self.view(net, ep) for net in self.state.nets.values() if not net_id or net.id == net_id
                for ep in net.endpoints.values() if (not ep_id or ep.id == ep_id) and not ep.deleting]

    async def repair_policers(self) -> list[str]:
        """Periodic: a firewall reload (`nft flush ruleset`, firewalld) takes the netdev table with the
        rest; pynet's inet table comes back from its bookkeeping, the policers from the state. Only
        endpoints that have a policer are looked at, and only when one is missing is anything done."""
        wanted = {}
        for net in self.state.nets.values():
            for ep in net.endpoints.values():
                if ep.deleting or not (net.limits or ep.limits):
                    continue
                for lim in self.modes[net.mode].limiters(net, ep, rates(net, ep)):
                    if lim.how in (POLICE, POLICE_DEST):
                        wanted.setdefault((lim.dev, lim.mac), (net.id, ep.id))
        if not wanted:
            return []
        have = await self.police.policed()
        missing = {ids for key, ids in wanted.items() if key not in have}
        repaired = []
        for net_id, ep_id in sorted(missing):
            async with self.state.locked(net_id) as known:
                net = self.state.nets.get(net_id) if known else None
                ep = net.endpoints.get(ep_id) if net else None
                if ep is None or ep.deleting:
                    continue
                mode = self.modes[net.mode]
                if await mode.endpoint_state(net, ep) == GONE:
                    continue
                log.warning("policer missing, put back", extra={"fields": {"endpoint": ep.id[:12]}})
                await mode.limit(net, ep, rates(net, ep))
                repaired.append(ep.id[:12])
        return repaired

    # ------------------------------------------------------------ start-up: the kernel as the state says
    async def sweep(self, live: list) -> list[str]:
        """Limiters pynet made that no endpoint (of `live`: (net, ep) whose container side is there)
        wants any more: an endpoint that went while pynet was down, a crash between a change and
        its save. Returns what went. Called under every lock (reconcile)."""
        wanted = set()
        for net, ep in live:
            wanted |= {lim.key for lim in self.modes[net.mode].limiters(net, ep, rates(net, ep))}
        removed = await self.police.sweep({(dev, mac) for how, dev, mac in wanted if how in (POLICE, POLICE_DEST)})
        for dev, kind in (await self.links.shaped_devices()).items():
            if kind == "tbf" and (SHAPE, dev, "") not in wanted:
                await self.links.unshape(dev)
                removed.append(f"shaper on {dev}")
            elif kind == "htb":
                for mac in await self.links.shaped_sources(dev):
                    if (SHAPE_SOURCE, dev, mac) not in wanted:
                        await self.links.unshape_source(dev, mac)
                        removed.append(f"shaper for {mac} on {dev}")
        return removed


def _fmt(key: str, value: int) -> str:
    if not value:
        return "none" if key in limits.RATE_KEYS else "default"
    return limits.fmt_rate(value) if key in limits.RATE_KEYS else limits.fmt_size(value)
