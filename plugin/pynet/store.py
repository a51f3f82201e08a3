"""State on disk: one JSON file per network (its endpoints inside).

Writes are atomic (temp file + fsync + rename + fsync of the directory), so a
kill -9 leaves either the old or the new file. Each file carries a version and
a SHA-256 of its payload: a truncated or corrupt file is detected and reported,
and kept aside (never silently dropped).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from .errors import StateError
from .model import Network, network_from_dict, to_dict

VERSION = 1
log = logging.getLogger("pynet.store")


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Store:
    def __init__(self, state_dir: str):
        self.dir = Path(state_dir) / "networks"
        self.problems: list[str] = []  # corrupt files found at load, for `pynet doctor`

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, net_id: str) -> Path:
        return self.dir / f"{net_id}.json"

    def save(self, net: Network) -> None:
        payload = to_dict(net)
        doc = {"version": VERSION, "sha256": _digest(payload), "network": payload}
        path = self._path(net.id)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        data = json.dumps(doc, sort_keys=True, indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._fsync_dir()

    def delete(self, net_id: str) -> None:
        try:
            self._path(net_id).unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load_all(self) -> dict[str, Network]:
        self.ensure()
        nets: dict[str, Network] = {}
        self.problems = []
        for path in sorted(self.dir.iterdir()):
            if ".tmp" in path.suffix:
                path.unlink(missing_ok=True)  # a write that never reached its rename
                continue
            if path.suffix != ".json":
                continue
            try:
                net = self.read(path)
            except StateError as e:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                os.replace(path, aside)
                msg = f"{e}; kept as {aside}"
                self.problems.append(msg)
                log.error(msg)
                continue
            nets[net.id] = net
        return nets

    @staticmethod
    def read(path: Path) -> Network:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise StateError(f"state file {path} is unreadable or truncated ({e})") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise StateError(f"state file {path} has unknown version {doc.get('version') if isinstance(doc, dict) else None!r}")
        payload = doc.get("network")
        if not isinstance(payload, dict) or doc.get("sha256") != _digest(payload):
            raise StateError(f"state file {path} fails its checksum (corrupt)")
        try:
            return network_from_dict(payload)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise StateError(f"state file {path} does not describe a network ({e})") from None
