"""Section 10: bandwidth-limit accuracy (iperf3 against the rate set, both directions, each mode)."""

from __future__ import annotations

from .fmt import fmt, med, spread
from .page import Page

DIRS = {"in": "into the container (ingress)", "out": "out of it (egress)"}
TOLERANCE = 0.10


def _ratios(d: dict) -> list[float]:
    return [med(v) / int(rate) for m in d["modes"].values() for rate, per in m["steady"].items()
            for v in per.values() if v]


def headline(d: dict, r: dict) -> list[str]:
    rs = _ratios(d)
    if not rs:
        return []
    inside = sum(abs(x - 1) <= TOLERANCE for x in rs)
    rates = d["rates"]
    return [f"Bandwidth limits (iperf3 TCP, {rates[0]}–{rates[-1]} Mbit/s, both directions, "
            f"{len(d['modes'])} modes): measured ÷ set {min(rs):.2f}–{max(rs):.2f}; {inside} of {len(rs)} "
            f"within ±{TOLERANCE:.0%}."]


def render(page: Page, d: dict) -> None:
    page.add(f"One container per mode (nat on the bench's nat network, server on the host at its gateway; "
             f"transparent and l2bridge on section 6's LAN, server in the LAN client). Each rate is set at run "
             f"time through the control API (`pynet limit CONTAINER ingress_rate=R egress_rate=R`), default "
             f"bursts; `iperf3 -t {d['secs']} -O {d['omit']}` (the first {d['omit']} s not counted: TCP's slow "
             f"start and the policer's credit after idle time, below), `-R` for ingress. Measured is TCP "
             f"payload as the receiver counts it; a shaper counts whole Ethernet frames, so its payload is "
             f"~1448/1514 = 0.956 of its rate.")
    rows = []
    for mode, m in d["modes"].items():
        for rate in d["rates"]:
            per = m["steady"].get(str(rate), {})
            for key, what in DIRS.items():
                v = per.get(key, [])
                if not v:
                    continue
                x = med(v) / rate
                rows.append([mode, what, d["mechanisms"][mode][key], f"{rate}", f"{fmt(med(v))} ({spread(v)})",
                             f"{x:.3f}", "yes" if abs(x - 1) <= TOLERANCE else "**no**"])
    page.table(["mode", "direction", "enforced by", "set Mbit/s", "measured Mbit/s (min–max)", "measured ÷ set",
                f"within ±{TOLERANCE:.0%}"], rows)
    page.add(f"Unlimited (the same containers, before any limit) and from idle: `iperf3 -t 3 -O 0` after 3 s of "
             f"quiet at {d['idle_rate']} Mbit/s. nftables' `limit` in bytes keeps a bucket of one second at the "
             f"rate plus the burst (the kernel's nft_limit_init), so a policed direction sends about one second "
             f"more than the rate allows after an idle time; a shaper (TBF, HTB) holds its burst.")
    rows = []
    for mode, m in d["modes"].items():
        for key, what in DIRS.items():
            idle = m["from_idle"].get(key)
            rows.append([mode, what, fmt(m["unlimited"].get(key, float("nan"))),
                         f"{fmt(idle)} ({idle / d['idle_rate']:.2f}×)" if idle else "–"])
    page.table(["mode", "direction", "unlimited Mbit/s", f"{d['idle_rate']} Mbit/s from idle, first 3 s"], rows)
