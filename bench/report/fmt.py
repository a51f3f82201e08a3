"""The figures' statistics and their text: percentiles, medians, numbers, spreads, ratios, tables."""

from __future__ import annotations

import statistics


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(x: float, digits: int = 2) -> str:
    if x != x:  # nan
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return "(n=1)"
    return f"{fmt(min(values), digits)}–{fmt(max(values), digits)}"


def ratio(a: float, b: float) -> str:
    if a != a or b != b or not b or not a:
        return "–"
    r = a / b
    if r < 0.1:
        return f"{r:.2g}× (1/{1 / r:.0f})"
    return f"{r:.2f}×"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def med_spread(values: list[float]) -> str:
    """"median (min–max)" in one cell."""
    return f"{fmt(med(values))} ({spread(values)})"


def vs(a: float, b: float, unit: str = "") -> str:
    """"a vs b (a ÷ b)": two medians and their ratio."""
    return f"{fmt(a)}{unit} vs {fmt(b)}{unit} ({ratio(a, b)})"


def versus(a: list[float], b: list[float], digits: int = 2) -> list[str]:
    """Table cells: a's median and spread, b's, and the ratio of the medians."""
    return [fmt(med(a)), spread(a, digits), fmt(med(b)), spread(b, digits), ratio(med(a), med(b))]
