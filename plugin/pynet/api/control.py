"""Control API for the `pynet` CLI, on the same socket under /pynet/v1/."""

from __future__ import annotations

import json

from aiohttp import web

from .. import __version__, options
from ..errors import InvalidRequest
from ..model import to_dict
from .protocol import read_body


def _json(doc) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type="application/json")


def routes(service, cfg) -> list[web.RouteDef]:
    async def networks(_request):
        return _json([service.summary(n) for n in service.nets.values()])

    async def network(request):
        return _json(service.detail(service.find(request.match_info["ref"])))

    async def status(_request):
        return _json({
            "version": __version__,
            "driver": cfg.driver_name,
            "socket": cfg.socket,
            "state_dir": cfg.state_dir,
            "table": cfg.table,
            "link_prefix": cfg.link_prefix,
            "networks": len(service.nets),
            "endpoints": sum(len(n.endpoints) for n in service.nets.values()),
            "published_ports": len(service.port_index),
            "locks": len(service._locks),  # one per known network; grows with nothing else
            "state_problems": service.store.problems,
            "leftovers_removed_at_start": service.leftovers_removed,
            "leftovers_now": await service.find_leftovers(),
            "drift": await service.find_drift(),
            "table_present": await service.firewall.table_present() if service.nets else None,
            "docker_firewall": await service.firewall.docker_backend(),
        })

    async def reconcile(request):
        await read_body(request)
        return _json(await service.reconcile())

    async def list_ports(request):
        q = request.query
        return _json(service.list_ports(q.get("network", ""), q.get("endpoint", "")))

    def _port_args(body: dict) -> tuple[str, str, list[str]]:
        specs = body.get("ports")
        if not isinstance(specs, list) or not specs or not all(isinstance(x, str) for x in specs):
            raise InvalidRequest("ports must be a non-empty list of [IP:][HOSTPORT:]PORT[/PROTO] strings")
        return options.object_id(body, "NetworkID"), options.object_id(body, "EndpointID"), specs

    async def add_ports(request):
        added = await service.add_ports(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in added])

    async def remove_ports(request):
        removed = await service.remove_ports(*_port_args(await read_body(request)))
        return _json([to_dict(b) for b in removed])

    async def leases(_request):
        return _json([dict(lease, network=n.id) for n in service.nets.values() for lease in n.leases.values()])

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
