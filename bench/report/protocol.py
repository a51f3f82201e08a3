"""Section 1: protocol call latency and daemon memory."""

from __future__ import annotations

from .charts import PYNET_C, plt
from .fmt import fmt, pct
from .page import Page

ATTACH = ("CreateEndpoint", "Join", "ProgramExternalConnectivity")
DETACH = ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint")


def headline(d: dict, r: dict) -> list[str]:
    lat = d["latency_ms"]
    up = sum(pct(lat[k], 50) for k in ATTACH)
    down = sum(pct(lat[k], 50) for k in DETACH)
    return [f"Protocol: a container's calls take {fmt(up, 1)} ms to attach (CreateEndpoint + Join + "
            f"ProgramExternalConnectivity, p50 sum) and {fmt(down, 1)} ms to detach; daemon RSS "
            f"{fmt(r.get('rss_idle_kb', 0) / 1024, 1)} MiB idle, {fmt(d['rss_after_settle'] / 1024, 1)} MiB "
            f"after {d['cycles']} network+endpoint create/delete cycles{at_rest_growth(d)}."]


def warm_and_end(d: dict) -> tuple[dict, dict] | None:
    """The at-rest samples after the warm-up and at the end (the one before the cycles is the first)."""
    rest = d.get("at_rest") or []
    return (rest[1], rest[-1]) if len(rest) >= 3 else None


def at_rest_growth(d: dict) -> str:
    pair = warm_and_end(d)
    if pair is None:
        return ""
    a, z = pair
    return (f"; at rest, {fmt((z['rss_kb'] - a['rss_kb']) / 1024, 2)} MiB RSS growth from cycle {a['cycles']} "
            f"to {z['cycles']}")


def _mib(n: int | None) -> str:
    return fmt(n / 1048576, 2) if n is not None else "n/a"


def _blocks(n: int | None, sign: str = "") -> str:
    return f"{n:{sign},}" if n is not None else "n/a"


def render(page: Page, d: dict) -> None:
    page.add(f"{d['cycles']} cycles of the calls Docker makes for `docker network create`, `docker run -p 80` "
             "and their removal, sent straight to the daemon's socket (a new unix-socket connection per call, "
             "as `pynet.client` does; client-side time), one cycle right after the other. Each cycle makes "
             "a network (its bridge, or the one the previous cycle retired and the reaper has not unregistered "
             "yet), a veth pair and one published port, removes them and writes each change to the state "
             "database (SQLite, WAL). "
             f"{d['wall_s']:.1f} s in all ({d['wall_s'] / d['cycles'] * 1000:.0f} ms a cycle).")
    paced = d.get("paced_ms") or {}
    head = ["call", "n", "p50 ms", "p95 ms", "max ms"]
    rows = [[k, len(v), fmt(pct(v, 50)), fmt(pct(v, 95)), fmt(max(v))] for k, v in d["latency_ms"].items()]
    if paced:
        head += ["paced: p50 ms", "p95 ms", "p95 < 5 ms"]
        for row, (k, v) in zip(rows, d["latency_ms"].items()):
            w = paced.get(k) or [float("nan")]
            row += [fmt(pct(w, 50)), fmt(pct(w, 95)), "yes" if pct(w, 95) < 5 else "no"]
    page.table(head, rows)
    if paced:
        n = len(next(iter(paced.values())))
        page.add(f"Paced: {n} more cycles with {d.get('pace_s', 0.3)} s between two cycles (the calls of a cycle "
                 "still back-to-back, as Docker sends them; about the pace of a `docker run` loop). Back-to-back, "
                 "the work the calls leave for later (unregistering retired links: an RCU barrier each, one that "
                 "holds the host's RTNL lock for a bridge) has no idle time to go to and lands on the next calls.")
    before = d["rss"][0][1]
    rows = [
        ["idle, just started", fmt(page.r.get("rss_idle_kb", 0) / 1024, 1)],
        ["before the cycles", fmt(before / 1024, 1)],
        [f"after {d['cycles']} create/delete cycles (+1 s)", fmt(d["rss_after_settle"] / 1024, 1)],
        ["growth over the cycles", fmt((d["rss_after_settle"] - before) / 1024, 2)],
    ]
    warm = [(c, kb) for c, kb in d["rss"] if c >= d["cycles"] // 5]
    if len(warm) >= 2 and warm[0][0] < d["cycles"]:
        rows.append([f"growth from cycle {warm[0][0]} to {d['cycles']} (after warm-up)",
                     fmt((d["rss_after_settle"] - warm[0][1]) / 1024, 2)])
    page.table(["daemon RSS (VmRSS)", "MiB"], rows)
    rest = d.get("at_rest") or []
    if rest:
        page.add("At rest: the daemon gives the heap's free pages back once no call came for a second (at its "
                 "next 5 s tick; up to 4 MiB of freed heap stay mapped while calls come, so that they pay no "
                 "page faults), and the bench waits for that before it reads VmRSS; then it asks the daemon "
                 "(`pynet status`) for the bytes malloc has handed out and not got back, and the blocks Python's "
                 "own allocator holds. A leak grows all three between the warm-up and the end.")
        rows = [[f"after {x['cycles']} cycles" if x["cycles"] else "before the cycles",
                 fmt(x["rss_kb"] / 1024, 2) + ("" if x["trimmed"] else " (not trimmed)"), _mib(x["heap_in_use"]),
                 _blocks(x["python_blocks"])] for x in rest]
        pair = warm_and_end(d)
        if pair is not None:
            a, z = pair
            heap = z["heap_in_use"] - a["heap_in_use"] if a["heap_in_use"] is not None else None
            blocks = z["python_blocks"] - a["python_blocks"] if a["python_blocks"] is not None else None
            rows.append([f"growth from cycle {a['cycles']} to {z['cycles']}",
                         fmt((z["rss_kb"] - a["rss_kb"]) / 1024, 2), _mib(heap), _blocks(blocks, "+")])
        page.table(["daemon at rest", "VmRSS MiB", "malloc in use MiB", "Python blocks"], rows)
    if d.get("leftovers"):
        page.add(f"Leftover links after the cycles: {d['leftovers']}")
    page.chart(chart(d), "protocol.png", "protocol latency and RSS")


def chart(d: dict):
    """Latency per call (box plots) and the daemon's RSS along the cycles."""
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    names = list(d["latency_ms"])
    boxes = [d["latency_ms"][k] for k in names]
    try:
        ax1.boxplot(boxes, orientation="horizontal", showfliers=False)
    except TypeError:  # matplotlib < 3.10 (vert=False is deprecated since 3.11)
        ax1.boxplot(boxes, vert=False, showfliers=False)
    ax1.set_yticks(range(1, len(names) + 1))
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_xlabel("ms (box: IQR, whiskers 1.5 IQR)")
    ax1.set_title("protocol call latency")
    ax1.grid(axis="x", alpha=0.3)
    rss = d["rss"]
    ax2.plot([c for c, _ in rss], [kb / 1024 for _, kb in rss], marker="o", color=PYNET_C)
    ax2.set_xlabel("create/delete cycles")
    ax2.set_ylabel("VmRSS MiB")
    ax2.set_ylim(bottom=0)
    ax2.set_title("daemon RSS")
    ax2.grid(alpha=0.3)
    return fig
