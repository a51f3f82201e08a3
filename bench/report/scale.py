"""Section 11: N containers on one network."""

from __future__ import annotations

from .fmt import fmt, med, pct, ratio
from .page import Page


def pair_ratios(p: dict, k: dict, what: str) -> list[float]:
    """pynet's time over Docker's, turn by turn (the two turns of a pair ran one after the other)."""
    mine, theirs = p.get(f"{what}_turns_s") or [p[f"{what}_s"]], k.get(f"{what}_turns_s") or [k[f"{what}_s"]]
    return [a / b for a, b in zip(mine, theirs) if b]


def versus(p: dict, k: dict, what: str) -> str:
    """'1.02x' for one turn; with several, the median of the pairs' ratios and each pair's."""
    r = sorted(pair_ratios(p, k, what))
    if len(r) < 2:
        return ratio(p[f"{what}_s"], k[f"{what}_s"])
    return f"{med(r):.2f}× median of {len(r)} pairs ({', '.join(f'{x:.2f}' for x in r)})"


def headline(d: dict, r: dict) -> list[str]:
    out = []
    for n, by in d["levels"].items():
        p, k = by["pynet nat"], by["docker bridge"]
        out.append(f"{int(n):,} containers on one network, pynet vs Docker bridge: start {fmt(p['start_s'], 1)} s vs "
                   f"{fmt(k['start_s'], 1)} s ({versus(p, k, 'start')}), `docker rm -f` of all "
                   f"{fmt(p['rm_s'], 1)} s vs {fmt(k['rm_s'], 1)} s ({versus(p, k, 'rm')}).")
    return out


def render(page: Page, d: dict) -> None:
    page.add("`docker run -d --net NET busybox sleep 3600`, one after another until N run (wall time), then one "
             "`docker rm -f` of all N (wall time); a pynet nat network and a user-defined Docker bridge network, "
             "each made for its turn (a /21) and removed after it; one turn each per level, or several (pynet's and "
             "Docker's in turn, the order rotating; the times are the median turn's and the ratio the median of "
             "the pairs'). The call durations "
             f"are pynet's own (its log), for the first and the last {d['edge']} containers started, and for "
             "every DeleteEndpoint of the removal: a cost that grows with the network's size shows as a "
             "difference between first and last.")
    rows = []
    for n, by in d["levels"].items():
        base = by["docker bridge"]
        for key, v in by.items():
            turns = ", ".join(fmt(x, 1) for x in v.get("start_turns_s") or [v["start_s"]])
            rows.append([f"{int(n):,}", key, fmt(v["start_s"], 1), turns, versus(v, base, "start"),
                         fmt(v["rm_s"], 1), versus(v, base, "rm")])
    page.table(["containers", "network", "start all s", "each turn s", "vs Docker", "rm -f all s", "vs Docker"],
               rows)
    rows = []
    for n, by in d["levels"].items():
        for what, v in by["pynet nat"]["calls"].items():
            rows.append([f"{int(n):,}", what, len(v), fmt(med(v)), fmt(pct(v, 95))])
    page.table(["containers", "pynet call", "n", "p50 ms", "p95 ms"], rows)
