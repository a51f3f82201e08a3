"""libnetwork remote-driver protocol routes (/Plugin.Activate, /NetworkDriver.*)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from ..errors import InvalidRequest, PynetError

MAX_BODY = web.AppKey("max_body", int)
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
    """Every error becomes {"Err": ...} here, and every call is logged with its duration."""
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
        fields = {"call": request.path, "status": status, "ms": round((time.perf_counter() - start) * 1000, 3)}
        fields.update(request.get(CALL_FIELDS, {}))
        if err:
            fields["err"] = err
        log.log(logging.WARNING if err else logging.INFO, "call", extra={"fields": fields})


def routes(service, implements: list[str]) -> list[web.RouteDef]:
    def handler(fn):
        async def h(request: web.Request) -> web.Response:
            body = await read_body(request)
            request[CALL_FIELDS] = call_fields(body)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("request", extra={"fields": {"call": request.path, "body": body}})
            return reply(await fn(body))
        return h

    async def activate(_body):
        return {"Implements": implements}

    async def capabilities(_body):
        # GwAllocChecker (Docker 28+): Docker asks GwAllocCheck before CreateNetwork whether to
        # reserve a gateway address; older engines ignore the key.
        return {"Scope": "local", "ConnectivityScope": "local", "GwAllocChecker": True}

    async def empty(_body):
        return {}

    async def global_only(_body):
        raise PynetError("pynet networks are local-scope; AllocateNetwork/FreeNetwork are for swarm drivers")

    table = {
        "/Plugin.Activate": activate,
        "/NetworkDriver.GetCapabilities": capabilities,
        "/NetworkDriver.CreateNetwork": service.create_network,
        "/NetworkDriver.DeleteNetwork": service.delete_network,
        "/NetworkDriver.CreateEndpoint": service.create_endpoint,
        "/NetworkDriver.DeleteEndpoint": service.delete_endpoint,
        "/NetworkDriver.EndpointOperInfo": service.endpoint_info,
        "/NetworkDriver.Join": service.join,
        "/NetworkDriver.Leave": service.leave,
        "/NetworkDriver.ProgramExternalConnectivity": service.program_external,
        "/NetworkDriver.RevokeExternalConnectivity": service.revoke_external,
        "/NetworkDriver.GwAllocCheck": service.gw_alloc_check,
        "/NetworkDriver.DiscoverNew": empty,
        "/NetworkDriver.DiscoverDelete": empty,
        "/NetworkDriver.AllocateNetwork": global_only,
        "/NetworkDriver.FreeNetwork": global_only,
        "/IpamDriver.GetCapabilities": service.ipam.capabilities,
        "/IpamDriver.GetDefaultAddressSpaces": service.ipam.default_spaces,
        "/IpamDriver.RequestPool": service.ipam.request_pool,
        "/IpamDriver.ReleasePool": service.ipam.release_pool,
        "/IpamDriver.RequestAddress": service.ipam.request_address,
        "/IpamDriver.ReleaseAddress": service.ipam.release_address,
    }
    return [web.post(path, handler(fn)) for path, fn in table.items()]
