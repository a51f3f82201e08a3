"""Counters of pynet's tables, read from one `nft -j list table` per table (for the metrics).

  ports   (map, key) -> (packets, bytes): each published port's element in pub4/pub6/pubany4/
          pubany6, keyed as ruleset.binding_key() writes it ("1.2.3.4 . tcp . 8080", "tcp . 8080")
  drops   comment -> (packets, bytes): the counted drop rules, by the comment ruleset.py gives them
          ("spoof:nat:mac", "drop:isolation"; rules sharing a comment are summed)

Pure functions on libnftables' JSON, so the unit tests feed them listings as nft prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ruleset


@dataclass
class Counters:
    ports: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    drops: dict[str, tuple[int, int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # tables that could not be listed


def _key_text(val) -> str:
    if isinstance(val, dict) and "concat" in val:
        return " . ".join(str(x) for x in val["concat"])
    return str(val)


def _counter(obj: dict) -> tuple[int, int] | None:
    c = obj.get("counter") if isinstance(obj, dict) else None
    if isinstance(c, dict) and "packets" in c:
        return int(c["packets"]), int(c.get("bytes", 0))
    return None


def map_elements(body: dict) -> dict[str, tuple[int, int]]:
    """A listed map's elements with their counters: key text -> (packets, bytes)."""
    out = {}
    for item in body.get("elem") or []:
        key = item[0] if isinstance(item, list) and item else item  # [key, value] in a map
        if isinstance(key, dict) and "elem" in key:
            found = _counter(key["elem"])
            if found is not None:
                out[_key_text(key["elem"].get("val"))] = found
    return out


def rule_drop(body: dict) -> tuple[str, tuple[int, int]] | None:
    """(comment, counter) of a commented drop rule, else None."""
    comment = body.get("comment") or ""
    if not comment.startswith(("spoof:", "drop:")):
        return None
    for expr in body.get("expr") or []:
        found = _counter(expr)
        if found is not None:
            return comment, found
    return None


def parse(listing: list[dict], into: Counters) -> None:
    """Add the counters of one table's listing (`nft -j list table ...`'s objects) to `into`."""
    for obj in listing:
        if "map" in obj and obj["map"].get("name") in ruleset.MAPS:
            for key, value in map_elements(obj["map"]).items():
                into.ports[(obj["map"]["name"], key)] = value
        elif "rule" in obj:
            found = rule_drop(obj["rule"])
            if found is not None:
                comment, (p, b) = found
                old = into.drops.get(comment, (0, 0))
                into.drops[comment] = (old[0] + p, old[1] + b)


async def read(nft, table: str) -> Counters:
    """Both of pynet's tables, one listing each."""
    out = Counters()
    for family in (ruleset.FAMILY, "bridge"):
        listing = await nft.list(f"table {family} {table}")
        if listing is None:
            out.missing.append(f"{family} {table}")
        else:
            parse(listing, out)
    return out
