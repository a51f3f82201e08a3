"""Section 7: published ports against Docker with `--userland-proxy=false`."""

from __future__ import annotations

from .charts import rate_bars
from .fmt import med, versus, vs
from .page import Page
from .ports import cpu_table, method, rate_at, tool

LEVELS = ("0", "1000", "10000")
DOCKER = "Docker (proxy off)"
NOT_RUN = ("Not run: this section restarts dockerd (with `--userland-proxy=false`, then back), so it "
           "runs only with `--proxy-off` (`make bench` without QUICK passes it; `make bench QUICK=1` "
           "skips it), or with `--only ports_proxy_off`.")


def not_run(page: Page) -> str | None:
    """Why the section is missing when the run was not asked for it (else it failed: see Errors)."""
    return NOT_RUN if page.quick or not page.proxy_off else None


def headline(d: dict, r: dict) -> list[str]:
    rate, pub = d["rate"], d["publish"]
    parts = [f"{int(level):,} other ports, {t} " + vs(med(rate_at(rate, level, "pynet", t)),
                                                      med(rate_at(rate, level, "docker", t)))
             for level in LEVELS if level in rate for t in d["targets"]]
    out = ["Against Docker with `--userland-proxy=false`: new connections/s pynet vs Docker: " + "; ".join(parts)]
    for n in ("1000", "10000"):
        a, c = publish_at(pub, "pynet", n), publish_at(pub, "docker", n)
        if a or c:
            out.append(f"publishing {int(n):,} ports " + vs(med(a.get("add", [])), med(c.get("add", [])), " s")
                       + ", removing them " + vs(med(a.get("rm", [])), med(c.get("rm", [])), " s"))
    return ["; ".join(out) + "."]


def publish_at(pub: dict, drv: str, n: str) -> dict:
    """publish["drv|N"], or pynet's "pynet (2×5,000)|N" where it published 10,000 in two runs."""
    return pub.get(f"{drv}|{n}") or next((v for k, v in pub.items() if k.startswith(f"{drv} (") and
                                          k.endswith(f"|{n}")), {})


def publish_label(n: str) -> str:
    """"1", "1,000", or "1 (1,000 others there)" for the server's port published after the others."""
    if " after " in n:
        one, _, others = n.split(" ")
        return f"{one} ({int(others):,} others there)"
    return f"{int(n):,}"


def render(page: Page, d: dict) -> None:
    where = (d["engine"] + "; pynet measured on that same engine, interleaved" if d.get("engine") else
             "dockerd restarted with the flag after the shared test suite finished; pynet measured again on that "
             "same dockerd, interleaved; the original dockerd restored afterwards")
    page.add(f"Docker with `{d['flag']}` (no `docker-proxy`: Docker publishes with iptables DNAT only, 127.0.0.1 "
             f"through `route_localnet`): {where}. Section 3's method"
             + (", with Docker at 10,000 other ports too (how: the notes below). " if "10000" in d["rate"] else ". ")
             + method(d) + " " + ", ".join(f"{k}: {v}" for k, v in d["proxies"].items()) + ".")
    rate = d["rate"]
    rows = [[f"{int(level):,}", t, *versus(rate_at(rate, level, "pynet", t), rate_at(rate, level, "docker", t), 0)]
            for level in LEVELS if level in rate for t in d["targets"]]
    page.add("**7a. New connections per second through one published port**")
    page.table(["other ports", "target", "pynet conn/s", "min–max", f"{DOCKER} conn/s", "min–max",
                "pynet ÷ Docker"], rows)
    cpu_table(page, "7a′", d, LEVELS, DOCKER)
    page.add("**7b. Time to publish and unpublish N ports** (`docker run -d -p RANGE`, `docker rm -f`)")
    rows = []
    for n in ("1", "1 after 1000", "1000", "1 after 10000", "10000"):
        pv, dv = publish_at(d["publish"], "pynet", n), publish_at(d["publish"], "docker", n)
        for what, label in (("add", "publish"), ("rm", "unpublish")):
            if pv.get(what) or dv.get(what):
                rows.append([publish_label(n), label, *versus(pv.get(what, []), dv.get(what, []))])
    page.table(["N", "", "pynet s", "min–max", f"{DOCKER} s", "min–max", "pynet ÷ Docker"], rows)
    page.bullets(d.get("notes", []))
    if d["errors"]:
        page.add("Failed requests during sampling: " + "; ".join(d["errors"][:6]))
    page.chart(rate_bars(f"new TCP connections/s{tool(d)}, Docker with --userland-proxy=false", rate, d["targets"],
                         LEVELS, DOCKER), "ports_proxy_off.png", "connection rate, proxy off")
