"""Control API for the `pynet` CLI, on the same socket under /pynet/v1/ (JSON)."""

from __future__ import annotations

import json

from aiohttp import web

from .. import __version__, procmem
from ..core import views
from ..errors import InvalidRequest, NotFound
from ..model import to_dict
from ..store import export_network
from . import wire
from .protocol import read_body


def _json(doc) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type="application/json")


class Control:
    """The /pynet/v1 calls, each a view of the driver or one of its operations."""

    def __init__(self, driver, cfg):
        self.d = driver
        self.cfg = cfg

    async def networks(self, _request):
        return _json([views.summary(n, self.d.mode_of(n)) for n in self.d.state.nets.values()])

    async def network(self, request):
        net = self.d.state.find(request.match_info["ref"])
        return _json(views.detail(net, self.d.mode_of(net)))

    async def status(self, _request):
        d, cfg, state = self.d, self.cfg, self.d.state
        return _json({
            "memory": procmem.memory(),  # first: before this call's own look-ups allocate
            "version": __version__, "driver": cfg.driver_name, "socket": cfg.socket, "state_dir": cfg.state_dir,
            "table": cfg.table, "link_prefix": cfg.link_prefix,
            "networks": len(state.nets), "endpoints": sum(len(n.endpoints) for n in state.nets.values()),
            "published_ports": len(d.published.index),
            "locks": state.lock_count(),  # one per known network; grows with nothing else
            "state_problems": state.store.problems,
            "state_moved": state.moved,
            "leftovers_removed_at_start": d.reconciler.leftovers_removed,
            "leftovers_now": await d.reconciler.find_leftovers(),
            "drift": await d.reconciler.find_drift(),
            "table_present": await d.firewall.table_present() if state.nets else None,
            "docker_firewall": await d.firewall.docker_backend(),
            "cluster": d.cluster.view(),  # scope, this node's swarm address, AllocateNetwork refusals
        })

    async def reconcile(self, request):
        await read_body(request)
        return _json(await self.d.reconciler.reconcile())

    async def list_ports(self, request):
        return _json(self.d.published.listing(request.query.get("network", ""), request.query.get("endpoint", "")))

    async def add_ports(self, request):
        added = await self.d.published.add(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in added])

    async def remove_ports(self, request):
        removed = await self.d.published.remove(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in removed])

    async def leases(self, _request):
        return _json(views.leases(self.d.state.nets.values()))

    async def list_limits(self, request):
        return _json(self.d.limits.listing(request.query.get("network", ""), request.query.get("endpoint", "")))

    async def set_limits(self, request):
        body = await read_body(request)
        settings = body.get("limits")
        if not isinstance(settings, dict) or not settings or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in settings.items()):
            raise InvalidRequest("limits must be a non-empty object of KEY: VALUE strings (ingress_rate: 10mbit, ...)")
        return _json(await self.d.limits.set(wire.endpoint_ref(body), settings))


    # README "A damaged state record": the operator's three actions
    async def state_export(self, request):
        """A network's state as a file: a damaged one's records (and what still reads), or a live one's."""
        ref, store = request.match_info["ref"], self.d.state.store
        damaged = _pick(ref, list(store.damaged), "damaged")
        if damaged:
            return _json(store.export_aside(damaged))
        return _json(export_network(self.d.state.find(ref)))

    async def state_restore(self, request):
        net = self.d.state.store.restore(await read_body(request), live=set(self.d.state.nets))
        return _json({"network": net.id, "reconcile": await self.d.reconciler.reconcile()})

    async def state_forget(self, request):
        ref = (await read_body(request)).get("network")
        if not isinstance(ref, str) or not ref:
            raise InvalidRequest("network must be the ID (or a prefix of it) of a network whose state is kept aside")
        net_id = _pick(ref, list(self.d.state.store.damaged), "damaged")
        if not net_id:
            raise NotFound(f"no damaged state is kept for a network {ref!r}")
        return _json({"network": net_id, "records": self.d.state.store.forget(net_id)})


def _pick(ref: str, ids: list[str], what: str) -> str:
    """The one ID that ref is (a prefix of), or ""; more than one is refused."""
    hits = [i for i in ids if i.startswith(ref)] if len(ref) >= 4 else [i for i in ids if i == ref]
    if len(hits) > 1:
        raise InvalidRequest(f"{ref!r} is a prefix of several {what} networks: give more of the ID")
    return hits[0] if hits else ""


def _port_args(body: dict) -> tuple[wire.EndpointRef, list[str]]:
    specs = body.get("ports")
    if not isinstance(specs, list) or not specs or not all(isinstance(x, str) for x in specs):
        raise InvalidRequest("ports must be a non-empty list of [IP:][HOSTPORT:]PORT[/PROTO] strings")
    return wire.endpoint_ref(body), specs


def routes(driver, cfg) -> list[web.RouteDef]:
    c = Control(driver, cfg)
    return [
        web.get("/pynet/v1/leases", c.leases),
        web.get("/pynet/v1/limits", c.list_limits),
        web.post("/pynet/v1/limits", c.set_limits),
        web.get("/pynet/v1/ports", c.list_ports),
        web.post("/pynet/v1/ports/add", c.add_ports),
        web.post("/pynet/v1/ports/rm", c.remove_ports),
        web.get("/pynet/v1/networks", c.networks),
        web.get("/pynet/v1/networks/{ref}", c.network),
        web.get("/pynet/v1/status", c.status),
        web.post("/pynet/v1/reconcile", c.reconcile),
        web.get("/pynet/v1/state/{ref}", c.state_export),
        web.post("/pynet/v1/state/restore", c.state_restore),
        web.post("/pynet/v1/state/forget", c.state_forget),
    ]
