"""pynet's state database: SQLite (the standard library's), WAL journal, synchronous=FULL.

One transaction per call: it is durable once COMMIT returns (the WAL is fsynced at each commit) and
atomic (a kill -9 or a power loss leaves it committed or not), whatever rows it spans. Checkpoints
(WAL -> database) run from a second connection in a worker thread (`checkpoint`), so no call pays
for one; SQLite's own automatic checkpoint stays as a backstop for a WAL that grows past ~40 MB.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from ..errors import StateError

SCHEMA_VERSION = 2  # 1 was the JSON files (networks/<id>.json)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, doc TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (network_id TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
    sha256 TEXT NOT NULL, PRIMARY KEY (network_id, id));
CREATE TABLE IF NOT EXISTS leases (network_id TEXT NOT NULL, family INTEGER NOT NULL, mac TEXT NOT NULL,
    doc TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (network_id, family, mac));
CREATE TABLE IF NOT EXISTS docs (name TEXT PRIMARY KEY, doc TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aside (network_id TEXT NOT NULL, at REAL NOT NULL, why TEXT NOT NULL,
    rows TEXT NOT NULL, PRIMARY KEY (network_id, at));
"""
BACKSTOP_PAGES = 10000  # SQLite checkpoints by itself past this many WAL pages (4 KiB each)
CHECKPOINT_AFTER = 250  # commits between two background checkpoints


def connect(path: Path, wal: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    else:
        conn.execute("PRAGMA synchronous=FULL")
    return conn


def create(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))


def check(conn: sqlite3.Connection) -> None:
    """Raises sqlite3.DatabaseError when the file is not a sound pynet database."""
    result = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if result != ["ok"]:
        raise sqlite3.DatabaseError("quick_check: " + "; ".join(str(r) for r in result[:3]))
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] != str(SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"unknown schema version {row[0] if row else None!r}")


class Db:
    def __init__(self, path: Path):
        self.path = path
        self.conn = connect(path)
        create(self.conn)
        self.commits = 0

    def write(self, ops: list[tuple[str, tuple]]) -> None:
        """All of ops in one transaction, or none of them (StateError saying why)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in ops:
                    self.conn.execute(sql, args)
                self.conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StateError(f"cannot save pynet's state in {self.path.parent} ({_reason(e)}); nothing was "
                             f"changed: free space on that filesystem (or fix its permissions) and retry") from None
        self.commits += 1

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def due(self) -> bool:
        return self.commits >= CHECKPOINT_AFTER

    def checkpoint(self) -> None:
        """WAL -> database from a connection of its own (run it in a worker thread: it fsyncs)."""
        self.commits = 0
        conn = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


def _reason(e: sqlite3.Error) -> str:
    code = getattr(e, "sqlite_errorname", "")
    return f"{e}" + (f", {code}" if code and code not in str(e) else "")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
