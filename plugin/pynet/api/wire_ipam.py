"""Docker's IPAM-driver wire format (/IpamDriver.*): JSON bodies -> typed requests, replies -> JSON.

IPAM replies carry an error in-band (`Error`) as well as the usual `Err` (api/protocol.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidRequest
from .wire import mapping

GATEWAY = "com.docker.network.gateway"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
NAME_OPTION = "com.docker.network.endpoint.name"  # Docker 29 (moby#50586)


@dataclass
class RequestPool:
    pool: str = ""
    sub_pool: str = ""
    v6: bool = False
    options: dict = field(default_factory=dict)


@dataclass
class RequestAddress:
    pool_id: str
    address: str = ""  # a static one (--ip, --gateway), or "" to be given one
    gateway: bool = False  # Docker asks for the network's gateway address
    mac: str = ""
    name: str = ""  # the endpoint's name, where the engine sends it


@dataclass
class ReleasePool:
    pool_id: str


@dataclass
class ReleaseAddress:
    pool_id: str
    address: str


def _str(body: dict, key: str) -> str:
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string, got {value!r}")
    return value


def request_pool(body: dict) -> RequestPool:
    return RequestPool(pool=_str(body, "Pool"), sub_pool=_str(body, "SubPool"), v6=bool(body.get("V6")),
                       options=mapping(body, "Options"))


def request_address(body: dict) -> RequestAddress:
    opts = mapping(body, "Options")
    mac, name = opts.get(MAC_OPTION) or "", opts.get(NAME_OPTION) or ""
    if not isinstance(mac, str) or not isinstance(name, str):
        raise InvalidRequest("Options values must be strings")
    return RequestAddress(pool_id=_str(body, "PoolID"), address=_str(body, "Address"),
                          gateway=opts.get("RequestAddressType") == GATEWAY, mac=mac, name=name)


def release_pool(body: dict) -> ReleasePool:
    return ReleasePool(pool_id=_str(body, "PoolID"))


def release_address(body: dict) -> ReleaseAddress:
    return ReleaseAddress(pool_id=_str(body, "PoolID"), address=_str(body, "Address"))


def pool_reply(pool_id: str, pool: str) -> dict:
    return {"PoolID": pool_id, "Pool": pool, "Data": {}}


def address_reply(cidr: str) -> dict:
    return {"Address": cidr, "Data": {}}
