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


CORRUPT = ".corrupt-"


class Store:
    def __init__(self, state_dir: str):
        self.dir = Path(state_dir) / "networks"
        self.problems: list[str] = []  # damaged files (this start's and earlier ones), for `pynet doctor`
        self.damaged: dict[str, str] = {}  # network ID -> the damaged file kept aside

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, net_id: str) -> Path:
        return self.dir / f"{net_id}.json"

    def save(self, net: Network) -> None:
        payload = to_dict(net)
        self._write(self._path(net.id), {"version": VERSION, "sha256": _digest(payload), "network": payload})

    # ------------------------------------------------------------ other documents (state_dir/<name>.json)
    def save_doc(self, name: str, payload: dict) -> None:
        """A document beside the networks (pynet's IPAM pools), written like a network's file."""
        self.ensure()
        self._write(self.dir.parent / f"{name}.json", {"version": VERSION, "sha256": _digest(payload), name: payload})

    def load_doc(self, name: str) -> dict:
        """The document, or {} when there is none; a damaged one is set aside, logged and {} returned
        (pynet's IPAM then goes by the networks' own state: see core/pools.py)."""
        path = self.dir.parent / f"{name}.json"
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != VERSION or \
                    not isinstance(doc.get(name), dict) or doc.get("sha256") != _digest(doc[name]):
                raise ValueError("unknown version or failed checksum")
            return doc[name]
        except (OSError, ValueError) as e:
            aside = path.with_name(f"{path.name}{CORRUPT}{int(time.time())}")
            os.replace(path, aside)
            log.error(f"state file {path} is damaged ({e}); kept as {aside}")
            return {}

    def _write(self, path: Path, doc: dict) -> None:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        data = json.dumps(doc, sort_keys=True, indent=1).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            # The old file stays as it was: the caller's change is undone and the call fails.
            tmp.unlink(missing_ok=True)
            raise StateError(f"cannot save pynet's state in {path.parent} ({e.strerror or e}); nothing was "
                             f"changed: free space on that filesystem (or fix its permissions) and retry") from None
        self._fsync_dir(path.parent)

    def delete(self, net_id: str) -> None:
        try:
            self._path(net_id).unlink()
        except FileNotFoundError:
            return
        self._fsync_dir()

    def _fsync_dir(self, path: Path | None = None) -> None:
        fd = os.open(path or self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load_all(self) -> dict[str, Network]:
        """Every network; a damaged file is set aside (never deleted) and stays reported, start after
        start, until an operator restores or removes it (README: "A damaged state file")."""
        self.ensure()
        nets: dict[str, Network] = {}
        for path in sorted(self.dir.iterdir()):
            if ".tmp" in path.suffix:
                path.unlink(missing_ok=True)  # a write that never reached its rename
                continue
            if path.suffix != ".json":
                continue
            try:
                net = self.read(path)
            except StateError as e:
                aside = path.with_name(f"{path.name}{CORRUPT}{int(time.time())}")
                os.replace(path, aside)
                log.error(f"{e}; kept as {aside}")
                continue
            nets[net.id] = net
        self.scan_damaged()
        return nets

    def load_missing(self, known) -> list[Network]:
        """Networks whose files appeared since start (an operator restored a damaged one)."""
        out = []
        for path in sorted(self.dir.glob("*.json")):
            if path.stem in known:
                continue
            try:
                out.append(self.read(path))
            except StateError as e:
                log.error(str(e))
        return out

    def scan_damaged(self) -> None:
        """Files set aside as damaged (by this start or an earlier one): what doctor and ls report."""
        self.problems, self.damaged = [], {}
        for path in sorted(self.dir.glob(f"*.json{CORRUPT}*")):
            net_id = path.name.split(".", 1)[0]
            orig = path.with_name(path.name.split(CORRUPT, 1)[0])
            try:
                self.read(path)
                why = "it was set aside"
            except StateError as e:
                why = str(e).split(f"{path} ", 1)[-1]
            self.damaged[net_id] = str(path)
            self.problems.append(f"state file {orig} {why}; kept aside as {path}: network {net_id[:12]}'s "
                                 f"interfaces and firewall rules are left as they are, and Docker's calls for "
                                 f"it fail until you restore or remove the file")

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


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a nearly full disk): finish it, or fail."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(28, "no space left on device")
        view = view[n:]
