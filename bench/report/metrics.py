"""Section 8: the cost of a /metrics scrape as a network grows."""

from __future__ import annotations

from .fmt import fmt, med, pct, spread
from .page import Page


def headline(d: dict, r: dict) -> list[str]:
    top = d["levels"][-1]
    return [f"A /metrics scrape with {top['endpoints']:,} endpoints and {top['ports']:,} published ports: "
            f"{fmt(med(top['wall_s']) * 1000, 1)} ms (p95 {fmt(pct(top['wall_s'], 95) * 1000, 1)} ms), "
            f"{top['series']:,} series."]


def render(page: Page, d: dict) -> None:
    page.add("`GET /metrics` on the daemon's socket, with nat networks of "
             f"{d['endpoints_per_network']} endpoints grown through protocol calls (CreateEndpoint, Join, "
             f"ProgramExternalConnectivity with {d['ports_per_endpoint']} ports each, as `docker run -p` sends "
             "them; no dockerd, no traffic). At each size, "
             f"{d['rounds']} scrapes in a row after one to warm up. *client*: request to last byte, from "
             "another process; *kernel reads*: what the daemon reports it spent in its one link dump and its "
             "one nft listing per table (`pynet_scrape_read_seconds`); *parse*: prometheus_client's text parser "
             "over the body (what `pynet stats` does per scrape). Everything else is the pass over the state "
             "and the text exposition.")
    rows = []
    for lv in d["levels"]:
        ms = [x * 1000 for x in lv["wall_s"]]
        rows.append([f"{lv['endpoints']:,}", f"{lv['ports']:,}", fmt(med(ms), 1), fmt(pct(ms, 95), 1),
                     spread(ms, 1), fmt(med(lv["read_s"]) * 1000, 1), fmt(med(lv["parse_s"]) * 1000, 1),
                     f"{lv['series']:,}", f"{lv['bytes'] / 1024:,.0f}", f"{lv['rss_kb'] / 1024:.0f}"])
    page.table(["endpoints", "ports", "client ms (median)", "p95", "min–max", "kernel reads ms", "parse ms",
                "series", "body KiB", "daemon RSS MiB"], rows)
    fill = ", ".join(f"{int(n):,} endpoints after {s:.0f} s" for n, s in d["fill_s"].items() if int(n))
    page.add(f"Making the endpoints: {fill} (cumulative); deleting the networks with them "
             f"{d['delete_networks_s']:.1f} s. A scrape takes no network's lock: Docker's calls are served "
             "between its reads (libnftables is used by one thread at a time, so a change waits for a listing).")
