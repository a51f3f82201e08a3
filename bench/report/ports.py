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
            H.append(f"New connections/s through a published port with {int(level):,} other ports{tool(d)}, pynet vs "
                     f"Docker: " + "; ".join(parts) + ".")
    if "10000" in rate:
        parts = [f"{t} {fmt(med(rate['10000']['pynet'][t]))}" for t in d["targets"]]
        off = "10000" in r["sections"].get("ports_proxy_off", {}).get("rate", {})
        H.append("pynet with 10,000 other ports: " + ", ".join(parts) + " connections/s (Docker "
                 + ("with its userland proxy not run; with it off: section 7)." if off else "not run)."))
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


OLD_METHOD = ("A Python accept loop (`bench/connrate.py`) runs in a container's network namespace behind one "
              "published port; one Python client process on the host opens TCP connections to it for {secs:g} s per "
              "sample (connect, read the server's byte, close with RST) and counts those that got the byte (results "
              "from before wrk: that client was the ceiling, ~7.5k connections/s).")


def tool(d: dict) -> str:
    """" (wrk)" where the load generator was wrk (results from before it: "")."""
    return f" ({d['load']['tool']})" if d.get("load") else ""


def method(d: dict) -> str:
    """How a connection-rate sample is taken (sections 3 and 7)."""
    ld = d.get("load")
    if not ld:  # a results.json from before wrk
        return OLD_METHOD.format(secs=d["rate_secs"])
    return (f"A Python accept loop (`bench/connrate.py`: read the request, answer a bare HTTP 200, close with RST) "
            f"runs in a container's network namespace behind one published port. The load is {ld['tool']} "
            f"({ld['version']}, Debian's, C) on the host: {ld['threads']} thread, {ld['conns']} requests in flight, "
            f"each on a new TCP connection (`Connection: close`), {d['rate_secs']:g} s per sample; a request "
            f"counts when the server's answer arrives. Pinning: {ld['pinning']} (taskset), so neither starves "
            "the other; each sample records both cores' busy share and the CPU of wrk, of the server and of the "
            "port's docker-proxy processes (table b). With N other ports, the server's container is published "
            "again after them: its port is the last one published, at the end of Docker's iptables chains "
            "(pynet's port lookups are nftables maps, with no order).")


def render(page: Page, d: dict) -> None:
    page.add(method(d) + f" Targets: the host's own address ({d['targets']['host IP']}) and 127.0.0.1; with no "
             "other ports also the container's own address and port (no NAT: the floor of this machine's TCP "
             "path). " + (f"The engine: {d['engine']}. " if d.get("engine") else "")
             + "Docker: a user-defined bridge, default userland proxy (so 127.0.0.1 goes through "
             "`docker-proxy`, the host address through iptables DNAT). The other ports are published by a second "
             "container (`docker run -p 20000-20999:20000-20999`, …) and measured with only that driver's ports "
             "present (pynet's and Docker's fillers never coexist, so neither pays for the other's rules).")
    page.add("**3a. New connections per second through one published port**")
    page.table(["other ports", "target", "pynet conn/s", "min–max", "Docker conn/s", "min–max", "pynet ÷ Docker"],
               rate_rows(d))
    cpu_table(page, "3a′", d, ("0", "1000", "10000"), "Docker")
    page.add(read_note(d))
    if d["errors"]:
        page.add("Failed requests during sampling: " + "; ".join(d["errors"][:6]))
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
    page.chart(rate_bars(f"new TCP connections/s through one published port{tool(d)}", d["rate"], d["targets"],
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


# ---------------------------------------------------------------- where the CPU went (sections 3 and 7)
CPU_HOW = ("busy share of the client's core (wrk's) and of the server's, every process on it counted; wrk's own "
           "user-space code; the server process; the port's docker-proxy processes; in % of one CPU")
CPU_HEADER = ["other ports", "target", "side", "conn/s", "client core", "wrk code", "server core", "server",
              "docker-proxy", "ran out first"]
FULL = 0.9  # a core this busy (or a process using this much of one) is the limit


def cpu_median(samples: list[dict]) -> dict:
    keys = {k for c in samples for k in c}
    return {k: med([c[k] for c in samples if k in c]) for k in keys}


def bottleneck(c: dict) -> str:
    """Which side ran out first, from the median CPU shares of a sample set."""
    proxy, server, client, score = c.get("proxy"), c["server"], c["client_core"], c["server_core"]
    if proxy is not None and proxy >= FULL:
        return f"docker-proxy ({pct_cpu(proxy)} CPU)"
    if server >= FULL:
        return "server process"
    if client >= FULL and score >= FULL:
        return "both cores (kernel TCP/NAT)"
    if client >= FULL:
        return "client core: kernel TCP/NAT" if c["wrk_user"] < 0.3 else "client core: wrk"
    if score >= FULL:
        return "server core: kernel"
    return "no core full (latency-bound)"


def pct_cpu(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.0f}%"


def cpu_table(page: Page, label: str, d: dict, levels: tuple[str, ...], docker_name: str) -> None:
    """Table a′ (results from before wrk have no CPU shares: nothing)."""
    if d.get("cpu"):
        page.add(f"**{label}. Where the CPU went** (medians over the samples: {CPU_HOW})")
        page.table(CPU_HEADER, cpu_rows(d, levels, docker_name))


def cpu_rows(d: dict, levels: tuple[str, ...], docker_name: str) -> list[list]:
    rows = []
    cpu = d.get("cpu", {})
    for level in levels:
        for tname in list(d["targets"]) + ([NO_NAT] if level == "0" else []):
            for drv, side in (("pynet", "pynet"), ("docker", docker_name)):
                samples = cpu.get(level, {}).get(drv, {}).get(tname, [])
                if not samples:
                    continue
                c = cpu_median(samples)
                rows.append([f"{int(level):,}", tname, side, fmt(med(rate_at(d["rate"], level, drv, tname))),
                             pct_cpu(c["client_core"]), pct_cpu(c["wrk_user"]), pct_cpu(c["server_core"]),
                             pct_cpu(c["server"]), pct_cpu(c.get("proxy")), bottleneck(c)])
    return rows


def read_note(d: dict) -> str:
    """What the rates say, against the no-NAT floor."""
    floor = {drv: med(rate_at(d["rate"], "0", drv, NO_NAT)) for drv in ("pynet", "docker")}
    nat = {drv: med(rate_at(d["rate"], "0", drv, "host IP")) for drv in ("pynet", "docker")}
    parts = [f"{name} host IP {ratio(nat[drv], floor[drv])} of it" for drv, name in (("pynet", "pynet"),
                                                                                       ("docker", "Docker"))]
    if not d.get("load"):
        return ("Read against the no-NAT row (" + "; ".join(parts) + "): that was the client's own ceiling (one "
                "Python process), so NAT costs below it do not show.")
    return ("Read against the no-NAT row: the same server and load without any NAT (" + "; ".join(parts)
            + " with no other ports). wrk's own code is a few % of its core (wrk code), so the load generator is "
            "not the limit; what fills the cores is the kernel's work for the connections (TCP, and the NAT of "
            "each connection's first packet, which runs in the sender's context) and, on a shared machine, other "
            "processes: they count in the core shares (the load average is in the header). Where the pynet and "
            "Docker ranges overlap, the difference is within this run's noise.")


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
