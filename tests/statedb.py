"""pynet's state database read (and damaged) from the outside, as an operator with sqlite3 would.

Every tier uses it: the daemon may be a separate process (netns, e2e), so it opens the file itself
(WAL: readers never block the daemon). Networks are assembled by pynet's own reader, each row checked.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))
from pynet.model import to_dict  # noqa: E402
from pynet.store.reader import read_networks  # noqa: E402


def db_path(state_dir) -> Path:
    return Path(state_dir) / "state.db"


@contextlib.contextmanager
def connect(state_dir):
    # mode=rw: never creates the file (the daemon would take an empty one for a damaged database)
    conn = sqlite3.connect(f"file:{db_path(state_dir)}?mode=rw", uri=True, isolation_level=None, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


class _Rows:
    def __init__(self, conn):
        self.conn = conn

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()


def networks(state_dir) -> dict[str, dict]:
    """Every network the database holds (to_dict form); one that does not read raises."""
    if not db_path(state_dir).exists():
        return {}
    with connect(state_dir) as conn:
        nets, bad = read_networks(_Rows(conn), None)
    assert not bad, f"damaged networks in {state_dir}: {bad}"
    return {k: to_dict(v) for k, v in nets.items()}


def network(state_dir, net_id: str) -> dict | None:
    return networks(state_dir).get(net_id)


def network_ids(state_dir) -> list[str]:
    return sorted(networks(state_dir))


def doc(state_dir, name: str) -> dict:
    import json
    if not db_path(state_dir).exists():
        return {}
    with connect(state_dir) as conn:
        row = conn.execute("SELECT doc FROM docs WHERE name = ?", (name,)).fetchone()
    return json.loads(row[0]) if row else {}


def aside(state_dir) -> list[tuple[str, str]]:
    """(network ID, why) of the damaged networks set aside."""
    with connect(state_dir) as conn:
        return conn.execute("SELECT network_id, why FROM aside ORDER BY at").fetchall()


def damage(state_dir, net_id: str, table: str = "networks", how: str = "truncate") -> None:
    """A row of the network made unreadable, as a failing disk would (its checksum no longer matches)."""
    key = "id" if table == "networks" else "network_id"
    change = {"truncate": "substr(doc, 1, length(doc) / 2)", "garbage": "'{not json'",
              "bitflip": "'[' || substr(doc, 2)"}[how]
    with connect(state_dir) as conn:
        n = conn.execute(f"UPDATE {table} SET doc = {change} WHERE rowid = (SELECT rowid FROM {table} WHERE {key} = ? "
                         f"LIMIT 1)", (net_id,)).rowcount
    assert n == 1, f"no {table} row of network {net_id} to damage"
