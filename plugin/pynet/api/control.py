"""Control API for the `pynet` CLI, on the same socket under /pynet/v1/."""

from __future__ import annotations

import json

from aiohttp import web

from .. import __version__
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
            "state_problems": service.store.problems,
            "leftovers_removed_at_start": service.leftovers_removed,
            "leftovers_now": await service.find_leftovers(),
            "table_present": await service.firewall.table_present() if service.nets else None,
        })

    async def reconcile(request):
        await read_body(request)
        return _json(await service.reconcile())

    return [
        web.get("/pynet/v1/networks", networks),
        web.get("/pynet/v1/networks/{ref}", network),
        web.get("/pynet/v1/status", status),
        web.post("/pynet/v1/reconcile", reconcile),
    ]
