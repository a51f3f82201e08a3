"""Section 7: published ports against Docker with `--userland-proxy=false`."""

from __future__ import annotations

from .charts import rate_bars
from .fmt import med, versus, vs
from .page import Page
from .ports import rate_at

LEVELS = ("0", "1000")
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
             for level in LEVELS for t in d["targets"]]
    a, c = pub.get("pynet|1000", {}), pub.get("docker|1000", {})
    return ["Against Docker with `--userland-proxy=false`: new connections/s pynet vs Docker: " + "; ".join(parts)
            + "; publishing 1,000 ports " + vs(med(a.get("add", [])), med(c.get("add", [])), " s")
            + ", removing them " + vs(med(a.get("rm", [])), med(c.get("rm", [])), " s") + "."]


def render(page: Page, d: dict) -> None:
    page.add(f"dockerd restarted with `{d['flag']}` (no `docker-proxy`: Docker publishes with iptables DNAT only, "
             "127.0.0.1 through `route_localnet`), after the shared test suite finished; pynet measured again on "
             "that same dockerd, interleaved; the original dockerd restored afterwards. The method is section 3's "
             f"({d['rate_secs']:g} s samples; the other 1,000 ports from a second container). "
             + ", ".join(f"{k}: {v}" for k, v in d["proxies"].items()) + ".")
    rate = d["rate"]
    rows = [[f"{int(level):,}", t, *versus(rate_at(rate, level, "pynet", t), rate_at(rate, level, "docker", t), 0)]
            for level in LEVELS for t in d["targets"]]
    page.add("**7a. New connections per second through one published port**")
    page.table(["other ports", "target", "pynet conn/s", "min–max", "Docker (proxy off) conn/s", "min–max",
                "pynet ÷ Docker"], rows)
    page.add("**7b. Time to publish and unpublish N ports** (`docker run -d -p RANGE`, `docker rm -f`)")
    rows = []
    for n in ("1", "1000"):
        pv, dv = d["publish"].get(f"pynet|{n}", {}), d["publish"].get(f"docker|{n}", {})
        for what, label in (("add", "publish"), ("rm", "unpublish")):
            rows.append([f"{int(n):,}", label, *versus(pv.get(what, []), dv.get(what, []))])
    page.table(["N", "", "pynet s", "min–max", "Docker (proxy off) s", "min–max", "pynet ÷ Docker"], rows)
    if d["errors"]:
        page.add("Failed connects during sampling: " + "; ".join(d["errors"][:6]))
    page.chart(rate_bars("new TCP connections/s, Docker with --userland-proxy=false", rate, d["targets"], LEVELS,
                         "Docker (proxy off)"), "ports_proxy_off.png", "connection rate, proxy off")
