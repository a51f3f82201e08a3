"""The state layout of pynet before its database: one JSON file per network, and documents beside them.

    state_dir/networks/<network id>.json            {"version": 1, "sha256": ..., "network": {...}}
    state_dir/networks/<id>.json.corrupt-<time>     a damaged file that pynet had set aside
    state_dir/<name>.json                            ipam, node, allocations: {"version": 1, "sha256", name: {...}}

At the first start of this version everything is imported into the database in one transaction
(store/__init__.py), then the old files are moved, untouched, into state_dir/migrated-<time>/. A file
that does not read as a network is imported as a damaged network (set aside, reported), never dropped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

from ..errors import StateError
from ..model import Network, network_from_dict
from .db import fsync_dir
from .rows import legacy_digest

VERSION = 1
CORRUPT = ".corrupt-"
DOCS = ("ipam", "node", "allocations")


class Damaged(NamedTuple):
    network_id: str
    why: str
    raw: str  # the file's content, as text (undecodable bytes escaped)
    file: str


class Legacy(NamedTuple):
    networks: list[Network]
    docs: dict[str, dict]
    damaged: list[Damaged]


def present(state_dir: Path) -> bool:
    return (state_dir / "networks").is_dir() or any((state_dir / f"{n}.json").exists() for n in DOCS)


def read_network(path: Path) -> Network:
    """A network file of the old layout (also what `pynet state export` writes), checked."""
    try:
        return parse(json.loads(path.read_bytes()), str(path))
    except (OSError, ValueError) as e:
        raise StateError(f"state file {path} is unreadable or truncated ({e})") from None


def parse(doc, what: str, need_checksum: bool = True) -> Network:
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise StateError(f"{what} has unknown version {doc.get('version') if isinstance(doc, dict) else None!r}")
    payload = doc.get("network")
    if not isinstance(payload, dict) or (need_checksum or "sha256" in doc) and doc.get("sha256") != legacy_digest(payload):
        raise StateError(f"{what} fails its checksum (corrupt)")
    try:
        return network_from_dict(payload)
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise StateError(f"{what} does not describe a network ({e})") from None


def read(state_dir: Path) -> Legacy:
    nets, damaged = [], []
    folder = state_dir / "networks"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        name = path.name
        if name.endswith(".json") or CORRUPT in name:
            net_id = name.split(".", 1)[0]
            try:
                if CORRUPT in name:
                    read_network(path)
                    raise StateError(f"state file {path} had been set aside as damaged")
                nets.append(read_network(path))
            except StateError as e:
                damaged.append(Damaged(net_id, str(e), path.read_bytes().decode(errors="backslashreplace"), name))
    docs = {}
    for name in DOCS:
        path = state_dir / f"{name}.json"
        try:
            doc = json.loads(path.read_bytes())
            if isinstance(doc, dict) and doc.get("version") == VERSION and isinstance(doc.get(name), dict) \
                    and doc.get("sha256") == legacy_digest(doc[name]):
                docs[name] = doc[name]
        except (OSError, ValueError):
            continue  # missing or damaged: pynet went by the networks' own state then, and still does
    return Legacy(nets, docs, damaged)


def move_aside(state_dir: Path) -> Path:
    """The old files, untouched, into state_dir/migrated-<time>/ (kept, never deleted)."""
    dest = state_dir / f"migrated-{int(time.time())}"
    dest.mkdir(mode=0o700, exist_ok=True)
    for name in ["networks"] + [f"{n}.json" for n in DOCS] + [f for f in os.listdir(state_dir)
                                                                if any(f.startswith(f"{n}.json{CORRUPT}") for n in DOCS)]:
        if (state_dir / name).exists():
            os.replace(state_dir / name, dest / name)
    fsync_dir(dest)
    fsync_dir(state_dir)
    return dest
