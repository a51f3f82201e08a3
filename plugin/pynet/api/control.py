"""Control API for the `pynet` CLI, on the same socket under /pynet/v1/ (JSON)."""

from __future__ import annotations

import json

from aiohttp import web

from .. import __version__
from ..core import views
from ..errors import InvalidRequest
from ..model import to_dict
from . import wire
from .protocol import read_body


def _json(doc) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type="application/json")


def routes(driver, cfg) -> list[web.RouteDef]:
    state = driver.state

    async def networks(_request):
        return _json([views.summary(n, driver.mode_of(n)) for n in state.nets.values()])

    async def network(request):
        net = state.find(request.match_info["ref"])
        return _json(views.detail(net, driver.mode_of(net)))

    async def status(_request):
        return _json({
            "version": __version__,
            "driver": cfg.driver_name,
            "socket": cfg.socket,
            "state_dir": cfg.state_dir,
            "table": cfg.table,
            "link_prefix": cfg.link_prefix,
            "networks": len(state.nets),
            "endpoints": sum(len(n.endpoints) for n in state.nets.values()),
            "published_ports": len(driver.published.index),
            "locks": state.lock_count(),  # one per known network; grows with nothing else
            "state_problems": state.store.problems,
            "leftovers_removed_at_start": driver.reconciler.leftovers_removed,
            "leftovers_now": await driver.reconciler.find_leftovers(),
            "drift": await driver.reconciler.find_drift(),
            "table_present": await driver.firewall.table_present() if state.nets else None,
            "docker_firewall": await driver.firewall.docker_backend(),
        })

    async def reconcile(request):
        await read_body(request)
        return _json(await driver.reconciler.reconcile())

    async def list_ports(request):
        q = request.query
        return _json(driver.published.listing(q.get("network", ""), q.get("endpoint", "")))

    def _port_args(body: dict) -> tuple[wire.EndpointRef, list[str]]:
        specs = body.get("ports")
        if not isinstance(specs, list) or not specs or not all(isinstance(x, str) for x in specs):
            raise InvalidRequest("ports must be a non-empty list of [IP:][HOSTPORT:]PORT[/PROTO] strings")
        return wire.endpoint_ref(body), specs

    async def add_ports(request):
        added = await driver.published.add(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in added])

    async def remove_ports(request):
        removed = await driver.published.remove(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in removed])

    async def leases(_request):
        return _json(views.leases(state.nets.values()))

    return [
        web.get("/pynet/v1/leases", leases),
        web.get("/pynet/v1/ports", list_ports),
        web.post("/pynet/v1/ports/add", add_ports),
        web.post("/pynet/v1/ports/rm", remove_ports),
        web.get("/pynet/v1/networks", networks),
        web.get("/pynet/v1/networks/{ref}", network),
        web.get("/pynet/v1/status", status),
        web.post("/pynet/v1/reconcile", reconcile),
    ]
