"""Section 8: what a scrape of /metrics costs as pynet grows: 0, 100 and 1,000 endpoints (10 published
ports each: 1,000 and 10,000 ports), made through protocol calls on the daemon's socket (no dockerd),
100 endpoints per network (a scrape's cost is in the totals: one link dump, one listing per table,
one pass; the networks' state files are kept small, as a call rewrites its network's whole file).

Per level: scrapes in a row, each timed from the client (request to last byte) and by the daemon
itself (pynet_scrape_read_seconds: the link dump and the two nft listings), the body's size and
its number of series, and the time the CLI's parser takes over it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from common import BenchError
from daemon import new_id

if TYPE_CHECKING:
    from runner import Bench

PER_NET = 100
PORTS_PER_EP = 10
FIRST_HOST_PORT = 21000  # endpoint i publishes 21000 + 10 i ... + 9 (to 30999: below the ephemeral range)


def _address(i: int) -> str:
    return f"10.250.{i // PER_NET}.{i % PER_NET + 2}/24"


def _network(b: Bench, k: int) -> str:
    net_id = new_id()
    b.d.ok("/NetworkDriver.CreateNetwork", {
        "NetworkID": net_id, "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": f"10.250.{k}.0/24", "Gateway": f"10.250.{k}.1/24",
                      "AuxAddresses": {}}], "IPv6Data": []})
    return net_id


def _options(i: int) -> dict:
    base = FIRST_HOST_PORT + PORTS_PER_EP * i
    pm = [{"Proto": 6, "IP": "", "Port": 8000 + j, "HostIP": "", "HostPort": base + j, "HostPortEnd": base + j}
          for j in range(PORTS_PER_EP)]
    return {"com.docker.network.portmap": pm,
            "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 8000 + j} for j in range(PORTS_PER_EP)]}


def grow(b: Bench, nets: list[str], have: int, want: int) -> float:
    """Endpoints have..want-1 as `docker run -p` would make them (a new network every PER_NET): seconds."""
    t0 = time.perf_counter()
    for i in range(have, want):
        if i % PER_NET == 0:
            nets.append(_network(b, i // PER_NET))
        net_id = nets[-1]
        ep_id, opts = new_id(), _options(i)
        ids = {"NetworkID": net_id, "EndpointID": ep_id}
        b.d.ok("/NetworkDriver.CreateEndpoint", {**ids, "Interface": {"Address": _address(i), "AddressIPv6": "",
                                                                      "MacAddress": ""}, "Options": opts})
        b.d.ok("/NetworkDriver.Join", {**ids, "SandboxKey": f"/var/run/docker/netns/{ep_id[:12]}", "Options": opts})
        b.d.ok("/NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": opts})
    return time.perf_counter() - t0


def scrape_once(b: Bench) -> dict:
    t0 = time.perf_counter()
    status, body = b.d.call("/metrics", method="GET")
    wall = time.perf_counter() - t0
    if status != 200 or not isinstance(body, bytes):
        raise BenchError(f"/metrics -> {status} {str(body)[:300]}")
    text = body.decode()
    t1 = time.perf_counter()
    fams = list(text_string_to_metric_families(text))
    parse = time.perf_counter() - t1
    read = next(s.value for f in fams if f.name == "pynet_scrape_read_seconds" for s in f.samples)
    errors = {s.labels["source"]: s.value for f in fams if f.name == "pynet_scrape_error" for s in f.samples}
    if any(errors.values()):
        raise BenchError(f"the scrape could not read {errors}")
    series = sum(len(f.samples) for f in fams)
    return {"wall_s": wall, "read_s": read, "parse_s": parse, "bytes": len(body), "series": series}


def level(b: Bench, rounds: int) -> dict:
    scrape_once(b)  # warm: the first listing after a change fills libnftables' caches
    runs = [scrape_once(b) for _ in range(rounds)]
    st = b.d.status()
    return {"endpoints": st["endpoints"], "ports": st["published_ports"], "rss_kb": b.d.rss(),
            **{k: [r[k] for r in runs] for k in ("wall_s", "read_s", "parse_s")},
            "bytes": runs[-1]["bytes"], "series": runs[-1]["series"]}


def measure(b: Bench) -> dict:
    rounds = b.p["scrape_rounds"]
    nets: list[str] = []
    levels, fill, have = [], {}, 0
    try:
        for n in b.p["scrape_levels"]:
            fill[n] = grow(b, nets, have, n)
            have = n
            levels.append(level(b, rounds))
            b.rss_mark(f"metrics: {n} endpoints, {n * PORTS_PER_EP} ports")
    finally:
        t0 = time.perf_counter()
        for net_id in nets:
            b.d.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
        delete_s = time.perf_counter() - t0
    return {"rounds": rounds, "ports_per_endpoint": PORTS_PER_EP, "endpoints_per_network": PER_NET,
            "levels": levels, "fill_s": fill, "delete_networks_s": delete_s}
