"""What an operator does about a damaged network (`pynet state export|restore|forget`, a mixin of Store).

An export is a network in the format of the files earlier versions wrote ({"version": 1, "sha256",
"network"}), so a backup of one of those files restores too. A damaged network's export also carries
its stored rows ("damaged") and, when its own row still reads, the network assembled from the rows
that do, without a checksum: repaired by hand, it restores.
"""

from __future__ import annotations

import json
import time

from ..errors import Conflict, InvalidRequest, NotFound, StateError
from ..model import Network, to_dict
from . import legacy
from .rows import decode, legacy_digest


def export_network(net: Network) -> dict:
    payload = to_dict(net)
    return {"version": legacy.VERSION, "sha256": legacy_digest(payload), "network": payload}


class AsideOps:
    """Needs `db`, `damaged`, `_remember`, `_write` and `scan_damaged` from Store."""

    def aside_ids(self) -> list[str]:
        return [r[0] for r in self.db.rows("SELECT DISTINCT network_id FROM aside ORDER BY network_id")]

    def export_aside(self, net_id: str) -> dict:
        entries = self.db.rows("SELECT at, why, rows FROM aside WHERE network_id = ? ORDER BY at", (net_id,))
        if not entries:
            raise NotFound(f"no damaged state is kept for network {net_id[:12]}")
        damaged = [{"at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)), "why": why,
                    "rows": json.loads(rows)} for at, why, rows in entries]
        doc = {"version": legacy.VERSION, "network_id": net_id, "damaged": damaged}
        best = _best_effort(net_id, [r for d in damaged for r in d["rows"]])
        if best is not None:
            doc["network"] = best  # no sha256: restore takes it as a hand-repaired file
        return doc

    def restore(self, doc: dict, live: set[str]) -> Network:
        """A network back from an export (or an old networks/<id>.json): its rows written and its
        damaged records, if any, dropped, in one transaction. The checksum is checked when present."""
        if not isinstance(doc, dict):
            raise InvalidRequest("a network to restore is a JSON object (what `pynet state export` writes)")
        net = legacy.parse(doc, "the network to restore", need_checksum=False)
        if net.id in live:
            raise Conflict(f"network {net.id[:12]} is known to pynet and in use: nothing to restore")
        from . import Known  # the store's bookkeeping of what its rows hold

        ops, _change = self._ops(net, Known(), ())
        ops.append(("DELETE FROM aside WHERE network_id = ?", (net.id,)))
        self._write([("DELETE FROM networks WHERE id = ?", (net.id,)),
                     ("DELETE FROM endpoints WHERE network_id = ?", (net.id,)),
                     ("DELETE FROM leases WHERE network_id = ?", (net.id,))] + ops)
        self.scan_damaged()
        return net

    def forget(self, net_id: str) -> int:
        """The damaged records kept for a network dropped (the network's kernel objects are then
        leftovers, removed by the next reconcile if nothing else is damaged)."""
        n = len(self.db.rows("SELECT 1 FROM aside WHERE network_id = ?", (net_id,)))
        if not n:
            raise NotFound(f"no damaged state is kept for network {net_id[:12]}")
        self._write([("DELETE FROM aside WHERE network_id = ?", (net_id,))])
        self.scan_damaged()
        return n


def _best_effort(net_id: str, rows: list[dict]) -> dict | None:
    """The network as far as its rows read (those that do not left out), or None without its own row."""
    net_doc, eps, leases = None, {}, {"leases": {}, "leases6": {}}
    for r in rows:
        if "file" in r:  # a JSON file of an earlier pynet that did not read (imported as it was)
            try:
                doc = json.loads(r.get("doc", ""))
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("network"), dict) and doc["network"].get("id") == net_id:
                return doc["network"]
            continue
        try:
            d = decode(r.get("doc", "").encode(), r.get("sha256", ""), "row", {})
        except (StateError, AttributeError):
            continue
        if r.get("table") == "networks":
            net_doc = d
        elif r.get("table") == "endpoints" and isinstance(d.get("id"), str):
            eps[d["id"]] = d
        elif r.get("table") == "leases" and len(r.get("key", [])) == 3:
            leases["leases" if r["key"][1] == 4 else "leases6"][r["key"][2]] = d
    if net_doc is None or net_doc.get("id") != net_id:
        return None
    return dict(net_doc, endpoints=eps, **leases)
