"""What every part of the core shares: the networks, their locks, lookups and saving.

One lock per KNOWN network (made with it, dropped with it): calls for different networks
never wait on each other, and a call naming an unknown network adds nothing (refused calls
cannot grow this table). `nets_lock` guards the set of networks (create, delete, reconcile:
subnet overlaps and bridge names are checked across networks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import NotFound, StateError
from ..model import Endpoint, Network

PURGE_DELAY = 0.1  # seconds: a delete's rows go then, unless another call's transaction took them first
log = logging.getLogger("pynet.state")


class State:
    def __init__(self, store, driver_name: str):
        self.store = store
        self.driver_name = driver_name
        self.nets: dict[str, Network] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.nets_lock = asyncio.Lock()
        self.new_dir = False  # this start made the state directory
        # Set when the state directory is new yet links of this pynet exist (its state mount moved:
        # `docker plugin upgrade` resets a `state.source` set with `docker plugin set`): everything
        # in the kernel is kept as it is, until an operator's `pynet reconcile`.
        self.moved = ""
        self.save_failures = 0  # state files that could not be written, since start (metrics)

    def load(self) -> None:
        self.store.open()
        self.new_dir = self.store.new
        self.nets = self.store.load_all()

    def keep_all(self) -> bool:
        """Nothing of the kernel may be taken away: a network pynet cannot read may still use it."""
        return bool(self.store.damaged) or bool(self.moved)

    def save(self, net: Network, *eps: Endpoint) -> None:
        """One transaction: the network's own changes, endpoints added or gone, and `eps`, the endpoints
        changed in place (store.py writes only what changed: name every endpoint the call changed)."""
        try:
            self.store.save(net, *eps)
        except StateError:
            self.save_failures += 1
            raise

    def forget_endpoint(self, net: Network, ep_id: str) -> None:
        """A deleted endpoint leaves memory now; its row goes with the next transaction (its `deleting`
        intent is saved: a crash before that makes the next start finish the delete)."""
        net.endpoints.pop(ep_id, None)
        self.store.delete_endpoint(net.id, ep_id)
        self._flush_soon()

    def forget_network(self, net_id: str) -> None:
        self.nets.pop(net_id, None)
        self.store.delete(net_id)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """The deferred deletes written shortly after the call (off its path), if nothing did first."""
        try:
            asyncio.get_running_loop().call_later(PURGE_DELAY, self._flush)
        except RuntimeError:  # no loop (a test calling in directly): the next transaction takes them
            pass

    def _flush(self) -> None:
        try:
            self.store.flush()
        except StateError as e:  # kept pending: the next transaction (or the next start) takes them
            log.error("deferred deletes not written yet", extra={"fields": {"error": str(e)}})

    async def tidy(self) -> None:
        """Deferred deletes written, and the database checkpointed in a worker thread (periodic)."""
        self.store.flush()
        if self.store.checkpoint_due():
            await asyncio.to_thread(self.store.checkpoint)

    # ------------------------------------------------------------ lookups
    def network(self, net_id: str) -> Network:
        net = self.nets.get(net_id)
        if net is None:
            if net_id in self.store.damaged:
                raise NotFound(f"network {net_id[:12]}'s state is damaged ({self.store.damaged[net_id]}): see "
                               f"`pynet doctor`; restore it (`pynet state restore`), or remove the network and "
                               f"forget its state (`pynet state forget`)")
            broken = f"; pynet's state database was damaged ({self.store.broken[0]}): see `pynet doctor`" \
                if self.store.broken else ""
            raise NotFound(f"network {net_id[:12]} is not known to pynet ({self.driver_name}); "
                           f"remove it with `docker network rm` and create it again{broken}")
        return net

    def endpoint(self, net_id: str, ep_id: str) -> tuple[Network, Endpoint]:
        net = self.network(net_id)
        ep = net.endpoints.get(ep_id)
        if ep is None:
            raise NotFound(f"endpoint {ep_id[:12]} of network {net_id[:12]} is not known to pynet")
        return net, ep

    def find(self, ref: str) -> Network:
        """A network by (a prefix of) its ID or its bridge name."""
        ref = ref.lower()
        matches = [n for n in self.nets.values() if n.id.startswith(ref) or n.bridge == ref]
        if len(matches) != 1:
            raise NotFound(f"no single pynet network matches {ref!r}" if not matches
                           else f"{ref!r} matches {len(matches)} networks; give more of the ID")
        return matches[0]

    def siblings(self, sandbox: str, exclude: str) -> list[tuple[Network, Endpoint]]:
        """The container's other endpoints on pynet networks (they share Docker's sandbox key)."""
        if not sandbox:
            return []
        return [(n, e) for n in self.nets.values() for e in n.endpoints.values()
                if e.sandbox == sandbox and e.id != exclude and not e.deleting]

    # ------------------------------------------------------------ locks
    def lock(self, net_id: str) -> asyncio.Lock:
        """The lock of a known network (NotFound otherwise: nothing is added for unknown IDs)."""
        self.network(net_id)
        return self._locks.setdefault(net_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def locked(self, net_id: str):
        """The network's lock if it still exists; yields False (holding nothing) once it is gone."""
        if net_id not in self.nets:
            yield False
            return
        async with self.lock(net_id):
            yield net_id in self.nets

    def forget_lock(self, net_id: str) -> None:
        self._locks.pop(net_id, None)

    def lock_count(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def all_locks(self):
        """Every network's lock, in ID order (reconcile: nothing changes under a full rebuild)."""
        held = []
        try:
            for net_id in sorted(self.nets):
                lock = self._locks.setdefault(net_id, asyncio.Lock())
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()


class Part:
    """A part of the core that changes networks or endpoints: the state, the modes, the firewall,
    published ports and DHCP leases it works with, and the link name prefix."""

    def __init__(self, state: State, modes, firewall, published, leases, link_prefix: str):
        self.state = state
        self.modes = modes
        self.firewall = firewall
        self.published = published
        self.leases = leases
        self.prefix = link_prefix
