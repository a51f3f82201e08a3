"""Networks: GwAllocCheck, CreateNetwork, DeleteNetwork, and the firewall elements a network owns.

CreateNetwork: validate (options.build_network, the mode's prepare and checks, overlaps
with the other networks) -> apply with an undo stack (the mode's kernel work, its
firewall elements) -> persist -> answer. DeleteNetwork saves its intent first and is
finished at the next start if pynet dies in it (Docker would not send it again).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from .. import faults, options
from ..errors import Conflict, KernelError
from ..firewall.ruleset import binding_elements
from ..model import Network, to_dict
from .state import Part
from .undo import Undo

log = logging.getLogger("pynet.networks")
DOCKER_SPACES = {"LocalDefault", "GlobalDefault"}
DOCKER_USER_LINGER = 5.0  # s a DOCKER-USER accept stays after the last network that needed it


def merge(*parts: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in parts:
        for name, items in part.items():
            out.setdefault(name, []).extend(items)
    return out


class Networks(Part):
    def __init__(self, *part, ipam):
        super().__init__(*part)
        self.ipam = ipam
        self._synced: frozenset[str] | None = None  # the patterns of the last DOCKER-USER sync that succeeded
        self._forget: set[str] = set()  # patterns of deleted networks whose accepts still linger
        self._linger: asyncio.Task | None = None
        self.docker_user_linger = DOCKER_USER_LINGER

    # ------------------------------------------------------------ what a network puts in the firewall
    def elements(self, net: Network, with_endpoints: bool = True) -> dict[str, list[str]]:
        mode = self.modes[net.mode]
        parts = [mode.network_elements(net)]
        if with_endpoints:
            parts += [mode.endpoint_elements(net, ep) for ep in net.endpoints.values()]
            parts.append(binding_elements([b for ep in net.endpoints.values() for b in ep.bindings]))
        return merge(*parts)

    def docker_user_patterns(self) -> tuple[list[str], set[str]]:
        """(patterns DOCKER-USER must accept, every pattern pynet may have written there)."""
        forwarding = [n for n in self.state.nets.values() if self.modes[n.mode].forwards]
        named = sorted({name for n in forwarding for name in self.modes[n.mode].docker_user_names(n)})
        wanted = [self.prefix + "*"] + named if forwarding or self.state.keep_all() else []
        return wanted, {self.prefix + "*", *named}

    async def sync_docker_user(self, forget: tuple[str, ...] = (), changed_only: bool = False) -> None:
        """DOCKER-USER made to accept exactly what pynet's networks need. `changed_only` (a network's
        create and delete): nothing when no pattern is missing since the last sync that succeeded
        (two nft listings and a change, ~1.5 ms of the call); accepts no network needs any more go
        `docker_user_linger` seconds later (a network made again meanwhile, compose down/up, finds
        them in place). The periodic check (reconcile.check_firewall, every firewall_check_interval)
        always looks, so a chain someone else flushed is mended there.

        The linger counts from the last call that left an accept unneeded: a create that needs
        every accept again stops it, the next delete starts it anew. Counted from the first such
        delete, a network made and removed every few seconds (a `docker run` loop with its own
        network) found its accept gone every `docker_user_linger` seconds and paid the full sync.
        While accepts linger, any other sync (the periodic check mending the chain, a create with a
        new pattern) keeps them: only the linger's own sync, or a clean stop, takes them out."""
        self._forget |= set(forget)
        wanted, ours = self.docker_user_patterns()
        if changed_only and self._synced is not None and set(wanted) <= self._synced:
            if self._linger is not None:
                self._linger.cancel()  # nothing when it is done
            self._linger = None
            if set(wanted) != self._synced:
                self._linger = asyncio.get_running_loop().create_task(self._linger_then_sync())
            return
        lingering = self._linger is not None and not self._linger.done() \
            and self._linger is not asyncio.current_task()
        if lingering:  # the periodic check, or a create with a new pattern: what lingers stays until its time
            wanted = sorted(set(wanted) | (self._synced or set()))
        else:
            self._linger = None
        self._synced = None
        try:
            await self.firewall.sync_docker_user(wanted, ours | self._forget, keep=self.state.keep_all())
            self._synced = frozenset(wanted)
            if not lingering:
                self._forget.clear()
        except KernelError as e:
            log.error("DOCKER-USER sync failed", extra={"fields": {"error": str(e)}})

    async def _linger_then_sync(self) -> None:
        await asyncio.sleep(self.docker_user_linger)
        async with self.state.nets_lock:
            await self.sync_docker_user()

    async def flush_docker_user(self) -> None:
        """Clean stop: lingering accepts go now (the next start would no longer know their patterns)."""
        if self._linger is not None and not self._linger.done():
            self._linger.cancel()
            self._linger = None
            await self.sync_docker_user()

    # ------------------------------------------------------------ Docker's calls
    def gw_alloc_check(self, req) -> tuple[bool, bool]:
        """Docker 28+: a LAN mode's gateway is the LAN's router: Docker reserves no address for it
        (a user's --gateway is reserved all the same; without one pynet takes the parent's router)."""
        lan = self.modes[options.network_mode(req.generic, self.modes)].lan
        return lan, lan

    async def create(self, req) -> None:
        net = options.build_network(req, self.prefix, self.modes)
        mode = self.modes[net.mode]
        self.ipam.claim(net, mode)  # which of pynet's IPAM modes serve it (--ipam-driver pynet)
        await mode.prepare(net)
        async with self.state.nets_lock:
            old = self.state.nets.get(net.id)
            if old is not None:
                if to_dict(old) | {"endpoints": {}} != to_dict(net) | {"endpoints": {}}:
                    raise Conflict(f"network {net.id[:12]} already exists with other settings")
                await mode.ensure_network(old, Undo())  # a retry after a crash: make it whole
                return
            await self._evict_ghosts(net, req)
            await self._check_conflicts(net)
            undo = Undo()
            try:
                await mode.ensure_network(net, undo)
                faults.point("create_network:kernel")
                elems = mode.network_elements(net)
                await self.firewall.add(elems)
                undo.push("remove firewall elements", self.firewall.remove, elems)
                faults.point("create_network:firewall")
                self.state.nets[net.id] = net
                undo.push("forget network", self.state.nets.pop, net.id, None)
                self.state.save(net)
                faults.point("create_network:saved")
            except BaseException:
                await undo.run()
                raise
            await self.sync_docker_user(changed_only=True)

    async def _evict_ghosts(self, net: Network, req) -> None:
        """A network pynet saved but Docker never got (pynet died before answering) is a ghost.

        Docker's default IPAM never hands out a pool that overlaps one of its live networks, so
        a CreateNetwork from it with exactly the pools of a pynet network without endpoints
        means that network is not Docker's: without this the user's retry after such a crash
        would fail as an overlap.
        """
        spaces = {d.address_space for d in req.v4 + req.v6}
        if not spaces or not spaces <= DOCKER_SPACES:
            return
        pools = sorted(s.pool for s in net.v4 + net.v6)
        for other in list(self.state.nets.values()):
            if other.endpoints or other.mode != net.mode or sorted(s.pool for s in other.v4 + other.v6) != pools:
                continue
            log.warning("network removed", extra={"fields": {"network": other.id[:12],
                                                             "why": "stale: Docker creates a network with its pools"}})
            async with self.state.lock(other.id):
                await self.delete_now(other)
            self.state.forget_lock(other.id)

    async def _check_conflicts(self, net: Network) -> None:
        await self.modes[net.mode].check(net, list(self.state.nets.values()))
        mine = [ipaddress.ip_network(s.pool) for s in net.v4 + net.v6]
        for other in self.state.nets.values():
            for s in other.v4 + other.v6:
                theirs = ipaddress.ip_network(s.pool)
                for m in mine:
                    if m.version == theirs.version and m.overlaps(theirs):
                        raise Conflict(f"subnet {m} overlaps {theirs} of pynet network {other.id[:12]}; "
                                       f"pick another --subnet")

    async def delete(self, ref) -> None:
        async with self.state.nets_lock:
            net = self.state.nets.get(ref.network_id)
            if net is None:
                return  # already gone
            async with self.state.lock(net.id):
                await self.delete_now(net)
            self.state.forget_lock(net.id)
            await self.sync_docker_user(forget=tuple(self.modes[net.mode].docker_user_names(net)), changed_only=True)

    async def delete_now(self, net: Network) -> None:
        """Under the locks. The intent is saved first: Docker ignores a driver's DeleteNetwork error
        and its retry comes with an empty body, so if pynet dies half way, the next start finishes
        the job (reconcile), or nobody would."""
        if not net.deleting:
            net.deleting = True
            try:
                self.state.save(net)
            except BaseException:
                net.deleting = False
                raise
        mode = self.modes[net.mode]
        errors = []
        for ep in list(net.endpoints.values()):
            errors += await mode.delete_endpoint(net, ep)
        faults.point("delete_network:endpoints")
        errors += await mode.delete_network(net, [n for n in self.state.nets.values() if n.id != net.id])
        faults.point("delete_network:kernel")
        if errors:
            # Keep the state so that `docker network rm` (or the next start) can retry.
            raise KernelError(f"network {net.id[:12]} not fully removed: {'; '.join(errors)}")
        await self.leases.release_all(net)  # Docker releases them first; just in case
        self.state.forget_network(net.id)  # its rows go with the next transaction (or at the next start)
        faults.point("delete_network:saved")
        self.published.forget(net)
        await self.firewall.remove(self.elements(net))
