"""The swarm side: AllocateNetwork/FreeNetwork on the manager, DiscoverNew/DiscoverDelete on every node.

What Docker 28's swarm sends a global-scope remote driver (research/swarm-global.md): the manager
(leader) alone gets AllocateNetwork with the -o map and the subnet its IPAM chose, and what pynet
returns becomes every node's CreateNetwork options; FreeNetwork comes at `network rm`. A new
leader allocates every network again, sending back what pynet returned before, so the VNIs the
manager hands out survive a leader change.

An AllocateNetwork error never reaches the user: `docker network create` succeeds, the network's
tasks stay "New" forever and the error is only in the manager's dockerd log. So a refusal is
logged loudly with what to do, and kept here for `pynet ls` / `pynet doctor` on the manager.

DiscoverNew with Self tells a node its swarm data-path address (overlay's VXLAN source); it is
kept on disk (a plugin Docker restarts on its own is not told again). Other nodes are announced
only when they join or leave the gossip: kept in memory, shown in /pynet/v1/status, used for nothing.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from .. import options
from ..errors import InvalidOption, PynetError
from .state import Part

log = logging.getLogger("pynet.cluster")
NODE_DOC, ALLOC_DOC = "node", "allocations"
MAX_REFUSALS = 50  # refused networks are never freed by Docker: keep the newest


class Cluster(Part):
    def __init__(self, part: Part, scope: str, node):
        super().__init__(part.state, part.modes, part.firewall, part.published, part.leases, part.prefix)
        self.scope = scope
        self.node = node  # modes read node.address (the same object)
        self.peers: dict[str, float] = {}  # other nodes' addresses -> when Docker announced them
        self.allocations: dict[str, dict[str, str]] = {}  # manager: network ID -> options returned
        self.refusals: dict[str, dict] = {}  # manager: network ID -> {error, count, first, last}

    def load(self) -> None:
        self.node.address = self.state.store.load_doc(NODE_DOC).get("address", "")
        self.allocations = {k: v for k, v in self.state.store.load_doc(ALLOC_DOC).items() if isinstance(v, dict)}

    # ------------------------------------------------------------ every node
    def discover(self, req, new: bool) -> None:
        if not req.node or not req.address:
            return
        if req.self_:
            if new and req.address != self.node.address:
                log.info("this node's swarm address", extra={"fields": {"address": req.address}})
                self.node.address = req.address
                self.state.store.save_doc(NODE_DOC, {"address": req.address})
            return
        if new:
            self.peers[req.address] = time.time()
        else:
            self.peers.pop(req.address, None)

    # ------------------------------------------------------------ the manager
    async def allocate(self, req) -> dict[str, str]:
        try:
            reply = self._allocate(req)
        except PynetError as e:
            self._refused(req.network_id, str(e))
            raise
        self.refusals.pop(req.network_id, None)
        if self.allocations.get(req.network_id) != reply:
            self.allocations[req.network_id] = reply
            self.state.store.save_doc(ALLOC_DOC, self.allocations)
        log.info("network allocated", extra={"fields": {"network": req.network_id, "options": reply}})
        return reply

    def _allocate(self, req) -> dict[str, str]:
        if self.scope != "global":
            raise InvalidOption("this pynet is local-scope (PYNET_SCOPE=local): AllocateNetwork is for swarm "
                                "networks of a global-scope pynet (mode=overlay)")
        # The same checks CreateNetwork makes on the nodes, before any node sees the network.
        create = SimpleNamespace(network_id=req.network_id, generic=dict(req.options), options={}, v4=list(req.v4),
                                 v6=[])
        net = options.build_network(create, self.prefix, self.modes)
        taken = [o for net_id, o in self.allocations.items() if net_id != req.network_id]
        return {**req.options, **self.modes[net.mode].allocation(net, taken)}

    def _refused(self, net_id: str, error: str) -> None:
        now = time.time()
        entry = self.refusals.setdefault(net_id, {"network": net_id, "first": now, "count": 0})
        entry.update(error=error, last=now, count=entry["count"] + 1)
        while len(self.refusals) > MAX_REFUSALS:
            self.refusals.pop(min(self.refusals, key=lambda k: self.refusals[k]["last"]))
        # Docker shows this to nobody (the create "succeeded"); say it as loudly as a log can.
        log.error("AllocateNetwork REFUSED: this swarm network will never start; `docker network rm` it and "
                  "create it again with what the error asks for", extra={"fields": {
                      "network": net_id, "error": error, "attempts": entry["count"]}})

    async def free(self, ref) -> None:
        self.refusals.pop(ref.network_id, None)
        if self.allocations.pop(ref.network_id, None) is not None:
            self.state.store.save_doc(ALLOC_DOC, self.allocations)

    def view(self) -> dict:
        return {"scope": self.scope, "node_address": self.node.address, "peers": sorted(self.peers),
                "allocations": dict(self.allocations),
                "refusals": sorted(self.refusals.values(), key=lambda r: r["last"])}
