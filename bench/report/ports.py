"""Section 3: published ports (connection rate, publish time, memory), pynet vs Docker's bridge."""

from __future__ import annotations

from shared import NO_NAT, PUBLISH_HOW

from .charts import DOCKER_C, PYNET_C, plt, rate_bars
from .fmt import fmt, med, ratio, spread, versus, vs
from .page import Page

PYNET_RUN, DOCKER_RUN = PUBLISH_HOW["pynet"], PUBLISH_HOW["docker"]
K_PYNET_MEM = "pynet daemon memory growth, 1,000 ports (RSS, MiB)"
K_PROXY_MEM = "docker-proxy memory, 1,000 ports (summed PSS, MiB)"
K_PROXIES = "docker-proxy processes, 1,000 ports"


def rate_at(rate: dict, level: str, drv: str, target: str) -> list[float]:
    """rate[level][drv][target], [] where it was not measured."""
    return rate.get(level, {}).get(drv, {}).get(target, [])


def by_ports(pub: dict) -> list[tuple[str, dict]]:
    """publish["how|N"] items by N, then how."""
    return sorted(pub.items(), key=lambda kv: (int(kv[0].split("|")[1]), kv[0]))


def headline(d: dict, r: dict) -> list[str]:
    H = []
    rate = d["rate"]
    for level in ("0", "1000"):
        if level in rate and "docker" in rate[level]:
            parts = [f"{t} " + vs(med(rate[level]["pynet"][t]), med(rate[level]["docker"][t])) for t in d["targets"]]
            H.append(f"New connections/s through a published port with {int(level):,} other ports, pynet vs "
                     f"Docker: " + "; ".join(parts) + ".")
    if "10000" in rate:
        parts = [f"{t} {fmt(med(rate['10000']['pynet'][t]))}" for t in d["targets"]]
        H.append("pynet with 10,000 other ports: " + ", ".join(parts) + " connections/s (Docker not run).")
    a, b = d["publish"].get(f"{PYNET_RUN}|1000"), d["publish"].get(f"{DOCKER_RUN}|1000")
    if a and b:
        H.append(f"Publishing 1,000 ports (`docker run -p` range): pynet {fmt(med(a['add']))} s vs Docker "
                 f"{fmt(med(b['add']))} s ({ratio(med(a['add']), med(b['add']))}); removing them "
                 + vs(med(a["rm"]), med(b["rm"]), " s") + ".")
    mem = d.get("memory", {})
    if K_PYNET_MEM in mem and K_PROXY_MEM in mem:
        H.append(f"Memory for 1,000 published ports: pynet daemon +{fmt(mem[K_PYNET_MEM], 1)} MiB vs "
                 f"{mem.get(K_PROXIES, '?')} docker-proxy processes, {fmt(mem[K_PROXY_MEM], 0)} MiB.")
    return H


def render(page: Page, d: dict) -> None:
    page.add(f"A Python accept loop (`bench/connrate.py`) runs in a container's network namespace behind one "
             f"published port; a client on the host opens TCP connections to it for {d['rate_secs']:g} s per "
             "sample (connect, read the server's byte, close with RST) and counts those that got the byte. "
             f"Targets: the host's own address ({d['targets']['host IP']}) and 127.0.0.1; with no other ports also "
             "the container's own address and port (no NAT: the floor). Docker: a user-defined "
             "bridge, default userland proxy (so 127.0.0.1 goes through `docker-proxy`, the host address "
             "through iptables DNAT). The other ports are published by a second container "
             "(`docker run -p 20000-20999:20000-20999`, …) and measured with only that driver's ports present "
             "(pynet's and Docker's fillers never coexist, so neither pays for the other's rules).")
    page.add("**3a. New connections per second through one published port**")
    page.table(["other ports", "target", "pynet conn/s", "min–max", "Docker conn/s", "min–max", "pynet ÷ Docker"],
               rate_rows(d))
    page.add("Read against the no-NAT row: that is the client's own ceiling (one Python process on a 2-CPU "
             "machine), so NAT costs below its resolution do not show, and where the pynet and Docker ranges "
             "overlap the difference is within this run's noise. The userland proxy (Docker, 127.0.0.1) is "
             "the one path clearly below the ceiling.")
    if d["errors"]:
        page.add("Failed connects during sampling: " + "; ".join(d["errors"][:6]))
    page.add("**3b. Time to publish and unpublish N ports**")
    page.add("`docker run -d -p RANGE` until it returns (container started, ports programmed) and "
             "`docker rm -f` of that container; `pynet port add/rm CONTAINER h:c ...` with N specs in one "
             "command on a running container.")
    page.table(["N", "how", "publish s", "min–max", "vs Docker", "unpublish s", "min–max", "vs Docker"],
               publish_rows(d["publish"]))
    if d["memory"]:
        page.add("**3c. Memory cost of published ports**")
        page.table(["", "value"], [[k, fmt(v, 1)] for k, v in d["memory"].items()])
    page.bullets(notes(d))
    page.chart(rate_bars("new TCP connections/s through one published port", d["rate"], d["targets"],
                         ("0", "1000", "10000"), "Docker"), "ports_rate.png", "connection rate")
    page.chart(publish_chart(d["publish"]), "publish_time.png", "publish time")


def rate_rows(d: dict) -> list[list]:
    rows = []
    for level in ("0", "1000", "10000"):
        if level not in d["rate"]:
            continue
        for tname in list(d["targets"]) + ([NO_NAT] if level == "0" else []):
            pv, dv = rate_at(d["rate"], level, "pynet", tname), rate_at(d["rate"], level, "docker", tname)
            cells = versus(pv, dv, 0) if dv else [fmt(med(pv)), spread(pv, 0), "not run", "", "–"]
            rows.append([f"{int(level):,}", tname, *cells])
    return rows


def publish_rows(pub: dict) -> list[list]:
    """Each way of publishing and N; pynet's 1,000 ports also against Docker's."""
    rows = []
    dk = pub.get(f"{DOCKER_RUN}|1000", {})
    for key, v in by_ports(pub):
        how, n = key.split("|")
        against = n == "1000" and dk and "pynet" in how
        cells = []
        for what in ("add", "rm"):
            cells += [fmt(med(v[what]), 2), spread(v[what]),
                      ratio(med(v[what]), med(dk.get(what, []))) if against else "–"]
        rows.append([f"{int(n):,}", how, *cells])
    rows.append(["10,000", DOCKER_RUN, "not run", "", "", "not run", "", ""])
    return rows


def notes(d: dict) -> list[str]:
    """The section's own notes, pynet's worse-than-linear publish times, a daemon busy while it unpublishes."""
    out = list(d["notes"])
    pub = d["publish"]
    for how in sorted({k.split("|")[0] for k in pub}):
        small, big = pub.get(f"{how}|1000"), pub.get(f"{how}|10000")
        if not (small and big) or not how.startswith("pynet"):
            continue
        for what, verb in (("add", "publishing"), ("rm", "unpublishing")):
            a, b = med(small[what]), med(big[what])
            if a and b / a > 20:
                out.append(f"`{how}`: {verb} 10× the ports took {b / a:.0f}× the time ({fmt(a)} s → {fmt(b)} s): "
                           "worse than linear in the number of ports.")
    blocked = d.get("activate_during_rm_s") or []
    if blocked:
        waited = med(blocked)
        out.append(f"A `/Plugin.Activate` sent 0.3 s into `pynet port rm` of 10,000 ports was answered after "
                   f"{fmt(waited, 3)} s ({', '.join(fmt(x, 3) for x in blocked)})"
                   + (": while it unpublishes, the daemon answers no other call (other containers' start/stop "
                      "wait too)." if waited > 0.5 else ": the daemon stays responsive while it unpublishes."))
    return out


def publish_chart(pub: dict):
    fig, ax = plt().subplots(figsize=(8, 4.2))
    labels, adds, rms, colors = [], [], [], []
    for key, v in by_ports(pub):
        how, n = key.split("|")
        labels.append(f"{how.replace(' docker run -p', ': run -p')}\n{int(n):,} ports")
        adds.append(med(v["add"]))
        rms.append(med(v["rm"]))
        colors.append(DOCKER_C if how.startswith("docker") else PYNET_C)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], adds, 0.4, color=colors, label="publish")
    ax.bar([x + 0.2 for x in xs], rms, 0.4, color=colors, alpha=0.5, hatch="//", label="unpublish")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("seconds (log)")
    ax.set_yscale("log")
    ax.set_title("time to publish / unpublish N ports")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig
