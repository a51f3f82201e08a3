"""Section 2: `docker run --rm busybox true`."""

from __future__ import annotations

from .charts import DOCKER_C, OTHER_C, PYNET_C, bars
from .fmt import fmt, med, ratio, spread
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    q = {k: med(v) for k, v in d["sequential_s"].items()}
    p = {k: med(v) for k, v in d["parallel_s"].items()}
    return [f"`docker run --rm busybox true`: pynet {fmt(q['pynet nat'], 3)} s vs Docker bridge "
            f"{fmt(q['docker bridge'], 3)} s ({ratio(q['pynet nat'], q['docker bridge'])}); "
            f"{d['parallel_n']} in parallel {fmt(p['pynet nat'], 2)} s vs "
            f"{fmt(p['docker bridge'], 2)} s ({ratio(p['pynet nat'], p['docker bridge'])})."]


def render(page: Page, d: dict) -> None:
    page.add("Wall time of the `docker run` command (create, start, exit, remove: `--rm` waits for the removal) "
             "on a pynet nat network, on a user-defined Docker bridge network, and with `--net none`; "
             f"then {d['parallel_n']} such containers started at once (wall time until all are gone).")
    groups = ["one container", f"{d['parallel_n']} in parallel"]
    rows = []
    for kind, key in zip(groups, ("sequential_s", "parallel_s")):
        base = med(d[key]["docker bridge"])
        for net, v in d[key].items():
            rows.append([kind, net, len(v), fmt(med(v), 3), spread(v, 3), ratio(med(v), base)])
    page.table(["", "network", "rounds", "median s", "min–max s", "vs docker bridge"], rows)
    series = {net: [d["sequential_s"][net], d["parallel_s"][net]] for net in d["sequential_s"]}
    page.chart(bars("docker run --rm busybox true", "seconds", groups, series, [PYNET_C, DOCKER_C, OTHER_C]),
               "docker_run.png", "docker run")
