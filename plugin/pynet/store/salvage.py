"""A state database that SQLite cannot read (or whose structure fails its check): kept, mined, reported.

The file (and its WAL) is renamed to state.db.corrupt-<time>[-wal], byte for byte, and stays reported
at every start until an operator removes it. A copy is read table by table for what can still be read:
when every table reads to its end, the networks come back as they were (each row still checked by its
checksum); when one does not, every network found is set aside as damaged (its rows may be incomplete:
`pynet state export` shows them), never loaded as if whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from .db import fsync_dir
from .rows import encode

CORRUPT = ".corrupt-"
TABLES = {"networks": "id, CAST(doc AS BLOB), sha256", "endpoints": "network_id, id, CAST(doc AS BLOB), sha256",
          "leases": "network_id, family, mac, CAST(doc AS BLOB), sha256", "docs": "name, CAST(doc AS BLOB), sha256",
          "aside": "network_id, at, why, rows"}


class Salvaged(NamedTuple):
    tables: dict[str, list[tuple]]
    complete: bool  # every table read to its end
    why: str


def set_aside(path: Path) -> Path:
    """state.db (and its -wal) renamed; the -shm (rebuilt from the WAL) removed."""
    aside = path.with_name(f"{path.name}{CORRUPT}{int(time.time())}")
    os.replace(path, aside)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_name(path.name + "-shm"))
    fsync_dir(path.parent)
    return aside


def damaged_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(f"{path.name}{CORRUPT}*") if not p.name.endswith("-wal"))


def salvage(aside: Path) -> Salvaged:
    """What can be read from a copy of the damaged file (the file itself is never opened)."""
    tmp = Path(tempfile.mkdtemp(prefix="pynet-salvage-"))
    try:
        copy = tmp / "state.db"
        shutil.copyfile(aside, copy)
        wal = aside.with_name(aside.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, tmp / "state.db-wal")
        tables, why = {}, ""
        try:
            conn = sqlite3.connect(str(copy), isolation_level=None)
        except sqlite3.Error as e:
            return Salvaged({}, False, str(e))
        try:
            for table, cols in TABLES.items():
                tables[table] = []
                try:
                    for row in conn.execute(f"SELECT {cols} FROM {table}"):
                        tables[table].append(row)
                except sqlite3.Error as e:
                    why = why or f"table {table}: {e}"
        finally:
            conn.close()
        return Salvaged(tables, not why, why)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def salvage_ops(got: salvage.Salvaged, source: str) -> list[tuple[str, tuple]]:
    """Rows read from a damaged database into the new one: as they were when every table read to its
    end (each still checked at load), else every network found set aside as possibly incomplete."""
    t = got.tables
    ops = [("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", r) for r in t.get("docs", [])]
    ops += [("INSERT OR REPLACE INTO aside VALUES (?, ?, ?, ?)", r) for r in t.get("aside", [])]
    if got.complete:
        for table, n in (("networks", 3), ("endpoints", 4), ("leases", 5)):
            ops += [(f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * n)})", r) for r in t.get(table, [])]
        return ops
    found: dict[str, list[dict]] = {}
    for r in t.get("networks", []):
        found.setdefault(r[0], []).append({"table": "networks", "key": [r[0]], "doc": _text(r[1]), "sha256": r[2]})
    for table in ("endpoints", "leases"):
        for r in t.get(table, []):
            found.setdefault(r[0], []).append({"table": table, "key": list(r[:-2]), "doc": _text(r[-2]),
                                               "sha256": r[-1]})
    why = f"was read from the damaged database {source} ({got.why}): its records may be incomplete"
    now = time.time()
    ops += [("INSERT INTO aside VALUES (?, ?, ?, ?)", (net_id, now, why, encode(rows))) for net_id, rows in found.items()]
    return ops


def _text(raw) -> str:
    return raw.decode(errors="backslashreplace") if isinstance(raw, bytes) else str(raw)
