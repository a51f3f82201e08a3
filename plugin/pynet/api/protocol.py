"""The protocol edge: routes of /Plugin.Activate, /NetworkDriver.* and /IpamDriver.*.

Thin on purpose: decode (api/wire.py), call the driver (core/), encode. Every error
becomes {"Err": ...} in one place (errors_and_logs), and every call is logged with
its duration.
"""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from ..errors import InvalidRequest, PynetError
from . import wire, wire_ipam

MAX_BODY = web.AppKey("max_body", int)
# Set by app.py: (request, status, seconds, failed) -> None, e.g. api/metrics.py's CallMetrics.observe.
OBSERVE = web.AppKey("observe_call", object)
CALL_FIELDS = web.RequestKey("call_fields", dict)
log = logging.getLogger("pynet.api")
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


def reply(doc: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(doc), content_type=CONTENT_TYPE)


async def read_body(request: web.Request) -> dict:
    """Docker often sends no Content-Type and may send an empty body: parse it ourselves."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"request body of {request.path} is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest(f"request body of {request.path} nests too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body of {request.path} must be a JSON object")
    return body


def call_fields(body: dict) -> dict:
    fields = {}
    for key, short in (("NetworkID", "network"), ("EndpointID", "endpoint")):
        value = body.get(key)
        if isinstance(value, str):
            fields[short] = value[:12]
    return fields


@web.middleware
async def errors_and_logs(request: web.Request, handler):
    """Every error becomes {"Err": ...} here, and every call is logged (and counted) with its duration."""
    start = time.perf_counter()
    status = 200
    err = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        if e.status == 413:
            err = f"request body too large (limit {request.app[MAX_BODY]} bytes)"
        elif e.status == 404:
            err = f"unknown call {request.path}"
        elif e.status == 405:
            err = f"{request.method} is not allowed on {request.path}; use POST"
        else:
            err = e.reason
        return reply({"Err": err}, status)
    except PynetError as e:
        status, err = e.status, str(e)
        doc = {"Err": err}
        if request.path.startswith("/IpamDriver."):
            doc["Error"] = err  # IPAM replies carry the error in-band too
        return reply(doc, status)
    except Exception as e:  # noqa: BLE001 - the daemon must answer, not die
        log.exception("internal error")
        status, err = 500, f"pynet internal error: {e.__class__.__name__}: {e}"
        return reply({"Err": err}, status)
    finally:
        seconds = time.perf_counter() - start
        observe = request.app.get(OBSERVE)
        if observe is not None:
            observe(request, status, seconds, bool(err) or status >= 400)
        fields = {"call": request.path, "status": status, "ms": round(seconds * 1000, 3)}
        fields.update(request.get(CALL_FIELDS, {}))
        if err:
            fields["err"] = err
        log.log(logging.WARNING if err else logging.INFO, "call", extra={"fields": fields})


# Each handler: (driver, decoded JSON body) -> reply document. Decode, call the core, encode.
async def _empty(_d, _body):
    return {}


async def _allocate(d, body):
    return wire.allocate_reply(await d.cluster.allocate(wire.allocate_network(body)))


async def _free(d, body):
    await d.cluster.free(wire.network_ref(body))
    return {}


async def _discover_new(d, body):
    d.cluster.discover(wire.discovery(body), new=True)
    return {}


async def _discover_delete(d, body):
    d.cluster.discover(wire.discovery(body), new=False)
    return {}


async def _gw_alloc_check(d, body):
    return wire.gw_alloc_reply(*d.networks.gw_alloc_check(wire.gw_alloc_check(body)))


async def _create_network(d, body):
    await d.networks.create(wire.create_network(body))
    return {}


async def _delete_network(d, body):
    await d.networks.delete(wire.network_ref(body))
    return {}


async def _create_endpoint(d, body):
    return wire.create_endpoint_reply(await d.endpoints.create(wire.create_endpoint(body)))


async def _delete_endpoint(d, body):
    await d.endpoints.delete(wire.endpoint_ref(body))
    return {}


async def _oper_info(d, body):
    return {"Value": d.endpoints.oper_info(wire.endpoint_ref(body))}


async def _join(d, body):
    return wire.join_reply(await d.endpoints.join(wire.join(body)))


async def _leave(d, body):
    await d.endpoints.leave(wire.endpoint_ref(body))
    return {}


async def _program(d, body):
    await d.published.program(wire.connectivity(body))
    return {}


async def _revoke(d, body):
    await d.published.revoke(wire.endpoint_ref(body))
    return {}


async def _ipam_caps(d, _body):
    return d.ipam.capabilities()


async def _ipam_spaces(d, _body):
    return d.ipam.default_spaces()


async def _request_pool(d, body):
    return wire_ipam.pool_reply(*await d.ipam.request_pool(wire_ipam.request_pool(body)))


async def _release_pool(d, body):
    await d.ipam.release_pool(wire_ipam.release_pool(body).pool_id)
    return {}


async def _request_address(d, body):
    return wire_ipam.address_reply(await d.ipam.request_address(wire_ipam.request_address(body)))


async def _release_address(d, body):
    await d.ipam.release_address(wire_ipam.release_address(body))
    return {}


CALLS = {
    "/NetworkDriver.GwAllocCheck": _gw_alloc_check,
    "/NetworkDriver.CreateNetwork": _create_network,
    "/NetworkDriver.DeleteNetwork": _delete_network,
    "/NetworkDriver.CreateEndpoint": _create_endpoint,
    "/NetworkDriver.DeleteEndpoint": _delete_endpoint,
    "/NetworkDriver.EndpointOperInfo": _oper_info,
    "/NetworkDriver.Join": _join,
    "/NetworkDriver.Leave": _leave,
    "/NetworkDriver.ProgramExternalConnectivity": _program,
    "/NetworkDriver.RevokeExternalConnectivity": _revoke,
    "/NetworkDriver.DiscoverNew": _discover_new,
    "/NetworkDriver.DiscoverDelete": _discover_delete,
    "/NetworkDriver.AllocateNetwork": _allocate,
    "/NetworkDriver.FreeNetwork": _free,
    "/IpamDriver.GetCapabilities": _ipam_caps,
    "/IpamDriver.GetDefaultAddressSpaces": _ipam_spaces,
    "/IpamDriver.RequestPool": _request_pool,
    "/IpamDriver.ReleasePool": _release_pool,
    "/IpamDriver.RequestAddress": _request_address,
    "/IpamDriver.ReleaseAddress": _release_address,
}


def routes(driver, implements: list[str], scope: str = "local", connectivity_scope: str = "local"
           ) -> list[web.RouteDef]:
    """Every call of the protocol as a POST route on `driver`."""
    async def activate(_d, _body):
        return {"Implements": implements}

    async def capabilities(_d, _body):
        return wire.capabilities(scope, connectivity_scope)

    def handler(fn):
        async def h(request: web.Request) -> web.Response:
            body = await read_body(request)
            request[CALL_FIELDS] = call_fields(body)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("request", extra={"fields": {"call": request.path, "body": body}})
            return reply(await fn(driver, body))
        return h

    table = {"/Plugin.Activate": activate, "/NetworkDriver.GetCapabilities": capabilities, **CALLS}
    return [web.post(path, handler(fn)) for path, fn in table.items()]
