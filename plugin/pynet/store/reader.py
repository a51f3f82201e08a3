"""Networks read back from their rows, each row checked; a network with any bad row is reported whole."""

from __future__ import annotations

from ..errors import StateError
from ..model import Network
from .rows import assemble, decode

COLS = {"networks": "id, CAST(doc AS BLOB), sha256", "endpoints": "network_id, id, CAST(doc AS BLOB), sha256",
        "leases": "network_id, family, mac, CAST(doc AS BLOB), sha256"}
KEY = {"networks": "id", "endpoints": "network_id", "leases": "network_id"}


def _rows(db, ids: list[str] | None) -> dict[str, dict[str, list[tuple]]]:
    """network ID -> table -> its rows (every network's when ids is None)."""
    out: dict[str, dict[str, list[tuple]]] = {}
    for table, cols in COLS.items():
        if ids is None:
            found = db.rows(f"SELECT {cols} FROM {table}")
        else:
            found = [r for net_id in ids for r in db.rows(f"SELECT {cols} FROM {table} WHERE {KEY[table]} = ?",
                                                          (net_id,))]
        for r in found:
            out.setdefault(r[0], {}).setdefault(table, []).append(r)
    return out


def raw_rows(tables: dict[str, list[tuple]]) -> list[dict]:
    """A network's rows as they are stored, for the `aside` table and `pynet state export`."""
    out = []
    for table, rows in tables.items():
        for r in rows:
            out.append({"table": table, "key": list(r[:-2]), "sha256": r[-1],
                        "doc": r[-2].decode(errors="backslashreplace") if isinstance(r[-2], bytes) else str(r[-2])})
    return out


def _network(net_id: str, tables: dict[str, list[tuple]]) -> Network:
    nrows = tables.get("networks", [])
    if not nrows:
        raise StateError("has records for its endpoints or leases but none of its own")
    net_doc = decode(nrows[0][1], nrows[0][2], "has a record that", {"id": net_id})
    eps = {}
    for _n, ep_id, raw, sha in tables.get("endpoints", []):
        eps[ep_id] = decode(raw, sha, f"has a record of endpoint {ep_id[:12]} that", {"id": ep_id, "network_id": net_id})
    leases: dict[int, dict[str, dict]] = {}
    for _n, family, mac, raw, sha in tables.get("leases", []):
        leases.setdefault(family, {})[mac] = decode(raw, sha, f"has a record of lease {mac} that", {})
    return assemble(net_doc, eps, leases, "has records that do not describe a network")


def read_networks(db, ids: list[str] | None) -> tuple[dict[str, Network], dict[str, tuple[str, list[dict]]]]:
    """(networks that read, {network ID: (why not, its raw rows)})."""
    nets, bad = {}, {}
    for net_id, tables in _rows(db, ids).items():
        try:
            nets[net_id] = _network(net_id, tables)
        except StateError as e:
            bad[net_id] = (str(e), raw_rows(tables))
    return nets, bad
