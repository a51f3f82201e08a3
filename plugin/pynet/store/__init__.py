"""State on disk: state_dir/state.db, SQLite (store/db.py): one row per network, per endpoint, per lease.

A change costs what it changes, not the network's size: `save(net, *eps)` writes the network's own
row if it changed, the rows of the endpoints named (changed in place), of endpoints added or replaced,
of leases added or replaced, and deletes the rows of those gone, all in one transaction. Deletes are
deferred (`delete`, `delete_endpoint`: the rows go with the next transaction, or `flush`): the intent
was saved first (`deleting`), so a crash before they go makes the next start finish the job.

Every row carries the SHA-256 of its JSON. A row that fails it (or does not describe what its keys
say) sets its whole network aside (table `aside`): reported at every start until an operator restores
or forgets it, its kernel objects kept meanwhile (README: "A damaged state record"). A database SQLite
cannot read is set aside whole (store/salvage.py). The JSON files of earlier versions are imported at
the first start (store/legacy.py).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path

from ..errors import StateError
from ..model import Network
from . import legacy, salvage
from .aside import AsideOps, export_network
from .db import Db, check, connect, create, fsync_dir
from .rows import LEASE_FIELDS, decode, digest, encode, endpoint_doc, legacy_digest, network_doc
from .reader import read_networks

VERSION = legacy.VERSION  # of an exported network (the format of the old files)
_digest = legacy_digest
__all__ = ["Known", "Store", "VERSION", "export_network"]
log = logging.getLogger("pynet.store")


@dataclasses.dataclass
class Known:
    """What the database holds of a network, as last written: its row, and which objects its rows are."""

    doc: str = ""
    eps: dict = dataclasses.field(default_factory=dict)  # endpoint ID -> the Endpoint object written
    leases: dict = dataclasses.field(default_factory=dict)  # (family, MAC) -> the lease dict written


@dataclasses.dataclass
class Change:
    """What a transaction changes in a network's Known: applied once the database took it."""

    doc: str
    eps: dict = dataclasses.field(default_factory=dict)  # endpoint ID -> the Endpoint object written
    gone: list = dataclasses.field(default_factory=list)  # endpoint IDs whose rows were deleted
    leases: dict = dataclasses.field(default_factory=dict)

    def apply(self, known: Known) -> Known:
        known.doc = self.doc
        known.eps.update(self.eps)
        for ep_id in self.gone:
            del known.eps[ep_id]
        known.leases = self.leases
        return known


class Store(AsideOps):
    def __init__(self, state_dir: str, verify: bool = False):
        self.dir = Path(state_dir)
        self.path = self.dir / "state.db"
        self.verify = verify  # tests: after each save, read the network back and compare
        self.problems: list[str] = []  # damaged records and databases, for `pynet doctor`
        self.damaged: dict[str, str] = {}  # network ID -> since when its records are set aside
        self.broken: list[str] = []  # damaged databases set aside (state.db.corrupt-<time>)
        self.new = False  # this start found no state at all
        self._db: Db | None = None
        self._known: dict[str, Known] = {}
        self._purge: list[tuple[str, str]] = []  # (network ID, endpoint ID or "" for all its rows)
        self._unsaved: dict[str, str] = {}  # networks set aside in memory only (the write failed)

    # ------------------------------------------------------------ opening, migrating
    @property
    def db(self) -> Db:
        if self._db is None:
            self.open()
        return self._db

    def ensure(self) -> None:
        self.open()

    def open(self) -> None:
        if self._db is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.with_name("state.db.tmp").unlink(missing_ok=True)  # a migration killed half way
        old = legacy.present(self.dir)
        self.new = not self.path.exists() and not old and not salvage.damaged_files(self.path)
        if not self.path.exists():
            self._create(legacy.read(self.dir) if old else None)
        else:
            try:
                self._db = Db(self.path)
                check(self._db.conn)
            except sqlite3.DatabaseError as e:
                self._recover(str(e))
        if old:
            dest = legacy.move_aside(self.dir)
            log.warning("state imported from the JSON files of an earlier pynet; they are kept",
                        extra={"fields": {"database": str(self.path), "old_files": str(dest)}})

    def _create(self, old: legacy.Legacy | None, extra: list[tuple[str, tuple]] = ()) -> None:
        """A new database, with what an earlier layout held, made aside and renamed in (atomic)."""
        tmp = self.path.with_name("state.db.tmp")
        conn = connect(tmp, wal=False)
        try:
            create(conn)
            conn.execute("BEGIN")
            for sql, args in self._import_ops(old) + list(extra):
                conn.execute(sql, args)
            conn.execute("COMMIT")
        finally:
            conn.close()
        tmp.chmod(0o600)
        tmp.replace(self.path)
        fsync_dir(self.dir)
        self._db = Db(self.path)

    def _import_ops(self, old: legacy.Legacy | None) -> list[tuple[str, tuple]]:
        if old is None:
            return []
        ops = [("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", (name, text, digest(text)))
               for name, text in ((n, encode(p)) for n, p in old.docs.items())]
        for net in old.networks:
            ops += self._ops(net, Known(), ())[0]
        now = time.time()
        for i, d in enumerate(old.damaged):
            rows = encode([{"file": d.file, "doc": d.raw}])
            ops.append(("INSERT INTO aside VALUES (?, ?, ?, ?)", (d.network_id, now + i * 1e-3, d.why, rows)))
        ops.append(("INSERT OR REPLACE INTO meta VALUES ('imported', ?)", (f"{len(old.networks)} networks, "
                                                                          f"{len(old.damaged)} damaged",)))
        return ops

    def _recover(self, why: str) -> None:
        """The database cannot be read: set aside whole; what a copy of it still yields comes back."""
        if self._db is not None:
            self._db.conn.close()
            self._db = None
        aside = salvage.set_aside(self.path)
        got = salvage.salvage(aside)
        log.error("state database damaged: set aside, readable records recovered",
                  extra={"fields": {"database": str(self.path), "kept_as": str(aside), "error": why,
                                    "complete": got.complete}})
        self._create(None, salvage.salvage_ops(got, str(aside)))

    # ------------------------------------------------------------ loading
    def load_all(self) -> dict[str, Network]:
        """Every network whose records read; those that do not are set aside (never dropped) and stay
        reported, start after start, until an operator restores or forgets them."""
        nets, bad = read_networks(self.db, None)
        for net_id, (why, rows) in bad.items():
            self._set_aside(net_id, why, rows)
        for net in nets.values():
            self._remember(net)
        self.scan_damaged()
        return nets

    def load_missing(self, known) -> list[Network]:
        """Networks whose records appeared since start (`pynet state restore`)."""
        self.flush()
        ids = [r[0] for r in self.db.rows("SELECT id FROM networks") if r[0] not in known]
        nets, bad = read_networks(self.db, ids)
        for net_id, (why, _rows) in bad.items():
            log.error(f"state of network {net_id[:12]} {why}")
        for net in nets.values():
            self._remember(net)
        return list(nets.values())

    def _remember(self, net: Network) -> None:
        self._known[net.id] = Known(network_doc(net), dict(net.endpoints),
                                    {(v, mac): d for v, f in LEASE_FIELDS.items() for mac, d in getattr(net, f).items()})

    def _set_aside(self, net_id: str, why: str, rows: list[dict]) -> None:
        ops = [("INSERT INTO aside VALUES (?, ?, ?, ?)", (net_id, time.time(), why, encode(rows)))] + _drop_ops(net_id)
        try:
            self.db.write(ops)
            log.error(f"state of network {net_id[:12]} {why}; its records are kept aside")
        except StateError as e:
            self._unsaved[net_id] = why
            log.error(f"state of network {net_id[:12]} {why}; not set aside ({e})")

    def scan_damaged(self) -> None:
        """Records and databases set aside (by this start or an earlier one): what doctor and ls report."""
        self.problems, self.damaged = [], {}
        self.broken = [str(p) for p in salvage.damaged_files(self.path)]
        for path in self.broken:
            self.problems.append(
                f"state database {path} was set aside as damaged (what could be read was recovered; networks it "
                f"held that could not be are unknown to pynet): every interface and firewall rule of this pynet is "
                f"kept as it is until you remove that file (README: \"A damaged state record\")")
        rows = self.db.rows("SELECT network_id, MIN(at), MIN(why) FROM aside GROUP BY network_id ORDER BY 2")
        for net_id, at, why in rows + [(k, time.time(), v) for k, v in self._unsaved.items()]:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
            self.damaged[net_id] = f"kept aside since {since}"
            self.problems.append(
                f"state of network {net_id[:12]} {why}; kept aside since {since}: network {net_id[:12]}'s "
                f"interfaces and firewall rules are left as they are, and Docker's calls for it fail until you "
                f"restore it (`pynet state restore FILE`) or forget it (`pynet state forget {net_id[:12]}`)")

    # ------------------------------------------------------------ saving
    def save(self, net: Network, *eps) -> None:
        """The network's changes in one transaction: its row if it changed, the rows of `eps` (changed
        in place) and of endpoints and leases added, replaced or gone. Nothing is written on failure."""
        known = self._known.get(net.id) or Known()
        ops, change = self._ops(net, known, eps)
        self._write(ops)
        self._known[net.id] = change.apply(known)
        if self.verify:
            self._check(net)

    def _ops(self, net: Network, known: Known, eps) -> tuple[list[tuple[str, tuple]], Change]:
        """The rows to write, and the change to the bookkeeping once they are (not a copy of it: that
        grew with the network's endpoints, at every call)."""
        ops: list[tuple[str, tuple]] = []
        change = Change(network_doc(net))
        if change.doc != known.doc:
            ops.append(("INSERT OR REPLACE INTO networks VALUES (?, ?, ?)",
                        (net.id, change.doc, digest(change.doc))))
        named = {ep.id for ep in eps}
        for ep_id, ep in net.endpoints.items():
            if ep_id in named or known.eps.get(ep_id) is not ep:
                text = endpoint_doc(ep)
                ops.append(("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?)", (net.id, ep_id, text, digest(text))))
                change.eps[ep_id] = ep
        # A row's endpoint can be gone only if the rows' and the ones written now outnumber the network's.
        if len(known.eps) + len(change.eps) > len(net.endpoints):
            for ep_id in [e for e in known.eps if e not in net.endpoints]:
                ops.append(("DELETE FROM endpoints WHERE network_id = ? AND id = ?", (net.id, ep_id)))
                change.gone.append(ep_id)
        current = {(v, mac): d for v, f in LEASE_FIELDS.items() for mac, d in getattr(net, f).items()}
        for key, d in current.items():
            if known.leases.get(key) is not d:  # leases are replaced, never changed in place
                text = encode(d)
                ops.append(("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?)", (net.id, *key, text, digest(text))))
        for key in [k for k in known.leases if k not in current]:
            ops.append(("DELETE FROM leases WHERE network_id = ? AND family = ? AND mac = ?", (net.id, *key)))
        change.leases = current
        return ops, change

    def _write(self, ops: list[tuple[str, tuple]]) -> None:
        """ops, after the deferred deletes, in one transaction (the deletes stay pending if it fails)."""
        purge = list(self._purge)
        self.db.write([op for net_id, ep_id in purge for op in _drop_ops(net_id, ep_id)] + ops)
        del self._purge[:len(purge)]

    def _check(self, net: Network) -> None:
        nets, bad = read_networks(self.db, [net.id])
        got = nets.get(net.id)
        mine = Known()
        if got is None or sorted(self._ops(net, mine, ())[0]) != sorted(self._ops(got, mine, ())[0]):
            raise AssertionError(f"pynet's database is out of step with memory for network {net.id[:12]}: "
                                 f"{bad or 'rows differ'}; a change was made without naming its endpoint to save()")

    def delete(self, net_id: str) -> None:
        """Every row of the network goes, with the next transaction (or `flush`)."""
        self._known.pop(net_id, None)
        self._purge.append((net_id, ""))

    def delete_endpoint(self, net_id: str, ep_id: str) -> None:
        known = self._known.get(net_id)
        if known is not None:
            known.eps.pop(ep_id, None)
        self._purge.append((net_id, ep_id))

    def flush(self) -> None:
        if self._purge:
            self._write([])

    # ------------------------------------------------------------ documents (IPAM pools, swarm)
    def save_doc(self, name: str, payload: dict) -> None:
        text = encode(payload)
        self._write([("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", (name, text, digest(text)))])

    def load_doc(self, name: str) -> dict:
        """The document, or {} when there is none; a damaged one is logged (with its text) and {} returned
        (pynet's IPAM then goes by the networks' own state: see core/pools.py)."""
        for raw, sha in self.db.rows("SELECT CAST(doc AS BLOB), sha256 FROM docs WHERE name = ?", (name,)):
            try:
                return decode(raw, sha, f"state document {name}", {})
            except StateError as e:
                log.error(f"{e}; ignored until rewritten", extra={"fields": {"doc": raw.decode(errors="replace")}})
        return {}

    # ------------------------------------------------------------ housekeeping
    def checkpoint_due(self) -> bool:
        return self._db is not None and self._db.due()

    def checkpoint(self) -> None:
        self.db.checkpoint()

    def close(self) -> None:
        if self._db is not None:
            try:
                self.flush()
            except StateError as e:
                log.error(f"deferred deletes left for the next start: {e}")
            self._db.close()
            self._db = None


def _drop_ops(net_id: str, ep_id: str = "") -> list[tuple[str, tuple]]:
    if ep_id:
        return [("DELETE FROM endpoints WHERE network_id = ? AND id = ?", (net_id, ep_id))]
    return [("DELETE FROM networks WHERE id = ?", (net_id,)),
            ("DELETE FROM endpoints WHERE network_id = ?", (net_id,)),
            ("DELETE FROM leases WHERE network_id = ?", (net_id,))]
