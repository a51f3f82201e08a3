"""The charts' look (colours, size, resolution) and the grouped-bar chart most sections draw."""

from __future__ import annotations

from pathlib import Path

from .fmt import med

PYNET_C, DOCKER_C, OTHER_C = "#2a7ab0", "#e07b39", "#7a7a7a"
PYNET_LIGHT, DOCKER_LIGHT = "#7fb6dc", "#f2b98f"


def plt():
    """matplotlib.pyplot, imported when the first chart is drawn (Agg: no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt().close(fig)


def bars(title: str, ylabel: str, groups: list[str], series: dict[str, list[list[float]]], colors: list[str]):
    """Grouped bars (median) with min-max whiskers: one bar a series in each group."""
    fig, ax = plt().subplots(figsize=(8, 4.6))
    n = len(series)
    width = 0.8 / max(n, 1)
    for i, (name, per_group) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for g, vals in enumerate(per_group):
            if not vals:
                continue
            m = med(vals)
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        ax.bar(xs, ys, width * 0.9, yerr=[lo, hi], capsize=3, label=name, color=colors[i % len(colors)])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=min(n, 4), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def rate_bars(title: str, rate: dict, targets: dict, levels: tuple[str, ...], docker_name: str):
    """Sections 3 and 7: connections/s per number of other ports, pynet and Docker, per target."""
    drivers = (("pynet", "pynet"), ("docker", docker_name))
    groups: list[str] = []
    series: dict[str, list[list[float]]] = {f"{dname} {t}": [] for _, dname in drivers for t in targets}
    for level in levels:
        if level not in rate:
            continue
        groups.append(f"{int(level):,} other ports")
        for drv, dname in drivers:
            for tname in targets:
                series[f"{dname} {tname}"].append(rate[level].get(drv, {}).get(tname, []))
    return bars(title, "connections/s", groups, series, [PYNET_C, PYNET_LIGHT, DOCKER_C, DOCKER_LIGHT])
