"""A network as rows: its own fields, one row per endpoint, one per DHCP lease; each row JSON with its
SHA-256, so a damaged row is detected when read (SQLite checks its own structure, not the content)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ..errors import StateError
from ..model import Network, network_from_dict

NET_ROWS = ("endpoints", "leases", "leases6")  # Network fields kept in rows of their own
LEASE_FIELDS = {4: "leases", 6: "leases6"}
_NET_FIELDS = [f.name for f in dataclasses.fields(Network) if f.name not in NET_ROWS]


def encode(doc) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def network_doc(net: Network) -> str:
    """The network's own row: every field but its endpoints and leases (O(1) in its size)."""
    d = {name: getattr(net, name) for name in _NET_FIELDS}
    d["v4"] = [dataclasses.asdict(s) for s in net.v4]
    d["v6"] = [dataclasses.asdict(s) for s in net.v6]
    return encode(d)


def endpoint_doc(ep) -> str:
    return encode(dataclasses.asdict(ep))


def decode(raw: bytes, sha: str, what: str, key: dict) -> dict:
    """A row's document, checked: its checksum, and that it names the object its keys say."""
    try:
        text = raw.decode()
    except (UnicodeDecodeError, AttributeError):
        raise StateError(f"{what} is unreadable (not text)") from None
    if sha != digest(text):
        raise StateError(f"{what} fails its checksum (corrupt)")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise StateError(f"{what} is unreadable ({e})") from None
    if not isinstance(doc, dict) or any(doc.get(k) != v for k, v in key.items()):
        raise StateError(f"{what} does not describe the object its keys name")
    return doc


def assemble(net_doc: dict, eps: dict[str, dict], leases: dict[int, dict[str, dict]], what: str) -> Network:
    d = dict(net_doc, endpoints=eps, leases=leases.get(4, {}), leases6=leases.get(6, {}))
    try:
        return network_from_dict(d)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise StateError(f"{what} ({e})") from None


def legacy_digest(payload: dict) -> str:
    """The checksum of the JSON files pynet wrote before its database (and of `pynet state export`)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
