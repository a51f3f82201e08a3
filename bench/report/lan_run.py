"""Section: what the LAN address checks cost `docker run` (probe on / off, DHCP)."""

from __future__ import annotations

from .fmt import fmt, med, spread
from .page import Page

ON, OFF, DHCP = "transparent, probe on", "transparent, probe off", "transparent, DHCP"


def headline(d: dict, r: dict) -> list[str]:
    run, ce, ra = d["run_s"], d["create_endpoint_ms"], d["request_address_ms"]
    if not (run.get(ON) and run.get(OFF)):
        return []
    out = [f"LAN address probe: `docker run` on transparent {fmt(med(run[ON]), 3)} s with it, "
           f"{fmt(med(run[OFF]), 3)} s without (CreateEndpoint {fmt(med(ce[ON]), 0)} ms vs "
           f"{fmt(med(ce[OFF]), 0)} ms)."]
    if run.get(DHCP) and ra.get(DHCP):
        out.append(f"DHCP from the LAN's server: RequestAddress {fmt(med(ra[DHCP]), 0)} ms (exchange + probe), "
                   f"`docker run` {fmt(med(run[DHCP]), 3)} s.")
    return out


def not_run(page: Page) -> str | None:
    if "lan_run" in page.r.get("errors", {}):
        return None
    return ("Added after the run these results come from: `make bench` (or `bench/bench.py --only lan_run`, "
            "which does not restart dockerd) measures it.")


def render(page: Page, d: dict) -> None:
    page.add(f"`docker run --rm busybox true` on a transparent network of the bench's namespace LAN "
             f"({d['subnet']}), {d['runs_per_turn']} runs per network and round: Docker's IPAM with pynet's "
             f"probe of the address ({d['probe']}), the same with `-o probe=false`, and `--ipam-driver pynet` "
             "(DHCP from dnsmasq in the LAN's router namespace, then a probe of the leased address; dnsmasq "
             "runs with `--no-ping`: its own ping check of a new address would add seconds that are dnsmasq's). "
             "CreateEndpoint and RequestAddress are the daemon's own call durations (its log).")
    rows = []
    for key, runs in d["run_s"].items():
        ce, ra = d["create_endpoint_ms"].get(key, []), d["request_address_ms"].get(key, [])
        rows.append([key, len(runs), fmt(med(runs), 3), spread(runs, 3), fmt(med(ce), 1) if ce else "–",
                     fmt(med(ra), 1) if ra else "–"])
    page.table(["network", "runs", "docker run median s", "min–max s", "CreateEndpoint median ms",
                "RequestAddress median ms"], rows)
