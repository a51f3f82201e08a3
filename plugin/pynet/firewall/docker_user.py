"""Docker's DOCKER-USER chain (iptables backend): two plain accepts for pynet's interfaces.

Docker (iptables backend) sets the FORWARD policy to DROP; a packet dropped by any base
chain is gone whatever pynet's own table says, so pynet inserts `iifname "<pattern>"
accept` and `oifname "<pattern>" accept` there (iptables-nft reads them back as `-i pn-+
-j ACCEPT`, so dockerd's own iptables calls keep working), and nothing else: all real
policy is in pynet's table. Only rules of that exact shape with one of pynet's patterns
are ever touched.
"""

from __future__ import annotations

import logging

log = logging.getLogger("pynet.firewall")


async def sync(nft, patterns: list[str], ours: set[str], keep: bool = False) -> list[str]:
    """Make DOCKER-USER (ip and ip6 `filter`, where Docker made it) accept exactly `patterns`.

    `ours`: every pattern pynet may have written (the link prefix's, custom bridge names,
    those of networks just deleted); other rules are not ours and stay. `keep`: only add
    (a damaged state file's network may need any of them). Returns the families where the
    chain exists.
    """
    wanted = [(key, p) for p in patterns for key in ("iifname", "oifname")]
    seen = []
    for family in ("ip", "ip6"):
        listing = await nft.list(f"chain {family} filter DOCKER-USER")
        if listing is None:
            continue
        seen.append(family)
        present: dict[tuple[str, str], list[int]] = {}
        for item in listing:
            rule = item.get("rule")
            key_pat = _our_shape(rule.get("expr", [])) if rule else None
            if key_pat and key_pat[1] in ours:
                present.setdefault(key_pat, []).append(rule["handle"])
        lines = [f'insert rule {family} filter DOCKER-USER {key} "{pattern}" accept'
                 for key, pattern in wanted if (key, pattern) not in present]
        for key_pat, handles in present.items():
            extra = [] if keep else (handles if key_pat not in wanted else handles[1:])
            lines += [f"delete rule {family} filter DOCKER-USER handle {h}" for h in extra]
        if lines:
            log.info("docker-user sync", extra={"fields": {"family": family, "changes": len(lines)}})
            await nft.run(lines)
    return seen


def _our_shape(expr: list) -> tuple[str, str] | None:
    """(key, pattern) when a rule is exactly `<iif|oif>name == "<pattern>" accept`."""
    if len(expr) != 2 or expr[1] != {"accept": None}:
        return None
    m = expr[0].get("match") if isinstance(expr[0], dict) else None
    if not m or m.get("op") != "==" or not isinstance(m.get("right"), str):
        return None
    key = (m.get("left") or {}).get("meta", {}).get("key")
    if key not in ("iifname", "oifname"):
        return None
    return key, m["right"]
