"""Section 11: N containers on one network."""

from __future__ import annotations

from .fmt import fmt, med, pct, ratio
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    out = []
    for n, by in d["levels"].items():
        p, k = by["pynet nat"], by["docker bridge"]
        out.append(f"{int(n):,} containers on one network, pynet vs Docker bridge: start {fmt(p['start_s'], 1)} s vs "
                   f"{fmt(k['start_s'], 1)} s ({ratio(p['start_s'], k['start_s'])}), `docker rm -f` of all "
                   f"{fmt(p['rm_s'], 1)} s vs {fmt(k['rm_s'], 1)} s ({ratio(p['rm_s'], k['rm_s'])}).")
    return out


def render(page: Page, d: dict) -> None:
    page.add("`docker run -d --net NET busybox sleep 3600`, one after another until N run (wall time), then one "
             "`docker rm -f` of all N (wall time); a pynet nat network and a user-defined Docker bridge network, "
             "each made for its turn (a /21) and removed after it; one turn each per level. The call durations "
             f"are pynet's own (its log), for the first and the last {d['edge']} containers started, and for "
             "every DeleteEndpoint of the removal: a cost that grows with the network's size shows as a "
             "difference between first and last.")
    rows = []
    for n, by in d["levels"].items():
        base = by["docker bridge"]
        for key, v in by.items():
            rows.append([f"{int(n):,}", key, fmt(v["start_s"], 1), ratio(v["start_s"], base["start_s"]),
                         fmt(v["rm_s"], 1), ratio(v["rm_s"], base["rm_s"])])
    page.table(["containers", "network", "start all s", "vs Docker", "rm -f all s", "vs Docker"], rows)
    rows = []
    for n, by in d["levels"].items():
        for what, v in by["pynet nat"]["calls"].items():
            rows.append([f"{int(n):,}", what, len(v), fmt(med(v)), fmt(pct(v, 95))])
    page.table(["containers", "pynet call", "n", "p50 ms", "p95 ms"], rows)
