"""Start-up and repair: make the kernel agree with the state (Docker replays nothing).

At start (and on `pynet reconcile`): networks restored by an operator are loaded, missing
links, addresses and routes are rebuilt, the whole nftables table is rewritten from
state, links and rules pynet owns that belong to nothing are removed (never while a
state file is damaged: its network's links would look like leftovers), and deletes
pynet died in are finished. Periodically: the table and DOCKER-USER are checked (Docker
or a firewall reload may flush them), and the ports of containers that vanished unseen
are freed.
"""

from __future__ import annotations

import logging
import re

from ..errors import PynetError
from ..limits import effective
from ..modes import GONE
from .state import Part
from .undo import Undo

log = logging.getLogger("pynet.reconcile")


class Reconciler(Part):
    def __init__(self, part: Part, links, networks, endpoints, owner_tag: str, limits=None):
        super().__init__(part.state, part.modes, part.firewall, part.published, part.leases, part.prefix)
        self.links = links
        self.networks = networks
        self.endpoints = endpoints
        self.limits = limits
        self.owner_tag = owner_tag
        n = 15 - len(self.prefix) - 1
        self._our_name = re.compile(re.escape(self.prefix) + f"[nhksv][0-9a-z]{{{n}}}$")
        self.leftovers_removed: list[str] = []

    async def start(self) -> None:
        self.state.load()
        self.published.load()
        await self.reconcile()
        self.leases.start_all()  # DHCP renewals go on across restarts

    async def reconcile(self) -> dict:
        report: dict[str, list[str]] = {"links_created": [], "leftovers_removed": [], "endpoints_missing": [],
                                        "deletes_finished": [], "errors": []}
        live: list = []  # (network, endpoint) whose container side is there: their limits are enforced
        async with self.state.nets_lock, self.state.all_locks():
            await self._settle(report)
            self._load_restored()
            self.state.store.scan_damaged()
            await self._check_moved()
            self.firewall.preserve = self.state.keep_all()
            nets = list(self.state.nets.values())
            for net in nets:
                if not net.deleting:  # finished below, once the firewall is whole
                    live += await self._repair(net, report)
            report["leftovers_removed"] = await self._remove_leftovers()
            report["leftovers_removed"] += await self._sweep_limits(live, report)
            self.leftovers_removed = report["leftovers_removed"]
            elems: dict[str, list[str]] = {}
            for net in nets:
                for name, items in self.networks.elements(net).items():
                    elems.setdefault(name, []).extend(items)
            await self.firewall.rebuild(elems)
            await self._finish_deletes(nets, report)
            try:
                self.state.store.flush()  # the rows of the deletes finished
            except PynetError as e:
                report["errors"].append(str(e))
            await self.networks.sync_docker_user()
        log.info("reconciled", extra={"fields": {"networks": len(nets), **{k: len(v) for k, v in report.items()}}})
        return report

    async def _settle(self, report: dict) -> None:
        """Links retired by a delete (this run's, or one killed before unregistering them) go now: they
        are out of service by construction, so this happens whatever else is kept."""
        try:
            await self.links.settle()
        except PynetError as e:
            report["errors"].append(f"retired links: {e}")

    async def _check_moved(self) -> None:
        """At the first start on a new state directory, links of this pynet (its owner tag) mean the
        state is elsewhere, not that they are leftovers: keep them, the table and DOCKER-USER's
        accepts until an operator decides (`pynet reconcile` after this start removes them)."""
        if not self.state.new_dir:
            self.state.moved = ""
            return
        self.state.new_dir = False
        ours = [link.name for link in await self.links.list() if link.alias.startswith(self.owner_tag)]
        if ours and not self.state.nets:
            self.state.moved = (
                f"the state directory {self.state.store.dir} is new, yet {len(ours)} interfaces of this pynet "
                f"exist ({', '.join(sorted(ours)[:6])}{', ...' if len(ours) > 6 else ''}): its state is elsewhere. "
                f"Nothing was removed. `docker plugin upgrade` resets a plugin's state.source: disable the plugin, "
                f"`docker plugin set <plugin> state.source=<the old directory>`, enable it; or, to drop those "
                f"networks, `pynet reconcile`")
            log.error("state directory moved", extra={"fields": {"problem": self.state.moved}})

    def _load_restored(self) -> None:
        for net in self.state.store.load_missing(self.state.nets):
            log.warning("network state restored by an operator", extra={"fields": {"network": net.id[:12]}})
            self.state.nets[net.id] = net
            for ep in net.endpoints.values():
                for b in ep.bindings:
                    self.published.index.add(net.id, ep.id, b)

    async def _repair(self, net, report: dict) -> list:
        """The network's links and its live endpoints' host side; returns those live endpoints."""
        mode = self.modes[net.mode]
        live = []
        try:
            undo = Undo()
            await mode.ensure_network(net, undo)
            report["links_created"] += [what for what, _fn, _a in undo.steps]
        except PynetError as e:
            report["errors"].append(f"network {net.id[:12]}: {e}")
        for ep in list(net.endpoints.values()):
            if ep.deleting:
                continue
            if await mode.endpoint_state(net, ep) == GONE:
                # The container side went with its namespace (reboot, crash): Docker joins it again
                # (and re-programs its ports) or deletes it. Until then it holds no host port.
                report["endpoints_missing"].append(ep.id[:12])
                if ep.bindings:
                    for b in ep.bindings:
                        self.published.index.remove(ep.id, b)
                    ep.bindings, ep.gateway = [], False
                    self.state.save(net, ep)
                continue
            live.append((net, ep))
            try:
                await mode.repair_endpoint(net, ep)
                rates = effective(net.limits, ep.limits)
                if rates:
                    await mode.limit(net, ep, rates)
            except PynetError as e:
                report["errors"].append(f"endpoint {ep.id[:12]}: {e}")
        return live

    async def _sweep_limits(self, live: list, report: dict) -> list[str]:
        """Qdiscs and policers pynet made for endpoints that are gone (never while a state file is
        damaged: its endpoints' limits would look like leftovers)."""
        if self.limits is None or self.state.store.problems:
            return []
        try:
            return await self.limits.sweep(live)
        except PynetError as e:
            report["errors"].append(f"limits: {e}")
            return []

    async def _finish_deletes(self, nets, report: dict) -> None:
        """DeleteNetwork/DeleteEndpoint that pynet died in: Docker will not send them again."""
        for net in nets:
            try:
                if net.deleting:
                    await self.networks.delete_now(net)
                    report["deletes_finished"].append(net.id[:12])
                    continue
                for ep in [e for e in net.endpoints.values() if e.deleting]:
                    await self.endpoints.delete_now(net, ep)
                    report["deletes_finished"].append(ep.id[:12])
            except PynetError as e:
                report["errors"].append(f"unfinished delete in network {net.id[:12]}: {e}")

    # ------------------------------------------------------------ leftovers and drift
    async def find_drift(self) -> list[str]:
        """What the state says exists on the host side but the kernel lacks (reconcile repairs it)."""
        present = {link.name for link in await self.links.list()}
        out = []
        for net in self.state.nets.values():
            for name in self.modes[net.mode].network_links(net):
                if name and name not in present:
                    out.append(f"network {net.id[:12]}: interface {name} missing")
            for ep in net.endpoints.values():
                if ep.host_if and ep.host_if not in present and not ep.deleting:
                    out.append(f"endpoint {ep.id[:12]}: host interface {ep.host_if} missing "
                               f"(container gone while pynet was down?)")
        return out

    async def find_leftovers(self) -> list[str]:
        """Links this daemon made (by alias tag or by exact name shape) that belong to nothing (those
        being unregistered in the background excepted)."""
        expected: set[str] = self.links.retiring()
        for net in self.state.nets.values():
            expected |= self.modes[net.mode].link_names(net)
        return [link.name for link in await self.links.list()
                if (link.alias.startswith(self.owner_tag) or self._our_name.match(link.name or ""))
                and link.name not in expected]

    async def _remove_leftovers(self) -> list[str]:
        if self.state.store.problems or self.state.moved:
            # A network whose state file is damaged (or elsewhere) still has live links: removing them as
            # leftovers would cut its containers off. Keep everything until a human decides.
            log.error("leftover removal skipped: damaged state files",
                      extra={"fields": {"problems": self.state.store.problems}})
            return []
        removed = []
        for name in await self.find_leftovers():
            try:
                await self.links.retire(name)  # then unregistered together: one RCU barrier for all
                removed.append(name)
            except PynetError as e:
                log.error("leftover not removed", extra={"fields": {"link": name, "error": str(e)}})
        if removed:
            try:
                await self.links.settle()
            except PynetError as e:
                log.error("leftovers not unregistered", extra={"fields": {"error": str(e)}})
        for mode in self.modes.values():
            removed += await mode.sweep([n for n in self.state.nets.values() if n.mode == mode.NAME], self.prefix)
        return removed

    # ------------------------------------------------------------ periodic
    async def check_firewall(self) -> None:
        """Docker or a firewall reload may have flushed pynet's table or its DOCKER-USER accepts."""
        async with self.state.nets_lock:
            if self.state.nets and not await self.firewall.table_present():
                log.warning("nftables table missing, rebuilding", extra={"fields": {"table": self.firewall.table}})
                await self.firewall.repair()
            await self.networks.sync_docker_user()
        if self.limits is not None:
            await self.limits.repair_policers()

    async def free_ports_of_gone_endpoints(self) -> list[str]:
        """A container that died while dockerd was down may never get its Leave (Docker drops a
        legacy plugin's endpoints silently on restart): once its veth is gone, its host ports
        are freed, so they cannot block a new container. The endpoint stays until Docker
        deletes it or its address is handed out again."""
        candidates = [ep.host_if for net in self.state.nets.values() for ep in net.endpoints.values()
                      if ep.bindings and ep.host_if and not ep.deleting]
        if not candidates:
            return []  # no link dump every few seconds on a host with 1,000 containers without ports
        if len(candidates) <= 32:
            present = {name for name in candidates if await self.links.get(name) is not None}
        else:
            present = {link.name for link in await self.links.list()}
        freed = []
        for net in list(self.state.nets.values()):
            gone = [ep for ep in net.endpoints.values()
                    if ep.bindings and ep.host_if and ep.host_if not in present and not ep.deleting]
            if not gone:
                continue
            async with self.state.locked(net.id) as known:
                for ep in gone if known else []:
                    if ep.id in net.endpoints and await self.modes[net.mode].endpoint_state(net, ep) == GONE:
                        log.warning("ports freed: the endpoint's container is gone",
                                    extra={"fields": {"endpoint": ep.id[:12], "ports": len(ep.bindings)}})
                        await self.published.unpublish(net, ep, ep.bindings)
                        ep.gateway = False
                        self.state.save(net, ep)
                        freed.append(ep.id[:12])
        return freed

    async def shutdown(self) -> None:
        """Clean stop: kernel objects stay (containers keep networking); an unused table goes."""
        await self.leases.stop_all()
        async with self.state.nets_lock:
            await self.networks.flush_docker_user()
            if not self.state.nets:
                await self.firewall.delete_table()
                await self.networks.sync_docker_user()
