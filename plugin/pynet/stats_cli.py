"""`pynet stats [NET|CONTAINER]`: a `docker stats`-like view of /metrics, rates between two scrapes.

The daemon's /metrics is the only source (the same numbers Prometheus gets); Docker is asked
for names only (network and container names never reach the daemon). A counter that went
down between two scrapes (pynet rebuilt its table, an endpoint was re-created) shows a rate of 0.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from . import client

TRAFFIC = {  # metric -> row key
    "pynet_endpoint_receive_bytes": "rx_bytes", "pynet_endpoint_transmit_bytes": "tx_bytes",
    "pynet_endpoint_receive_packets": "rx_packets", "pynet_endpoint_transmit_packets": "tx_packets",
    "pynet_endpoint_receive_drops": "rx_drops", "pynet_endpoint_transmit_drops": "tx_drops",
}
RATED = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
PORT_LABELS = ("network", "endpoint", "proto", "host_ip", "host_port", "container_port")


@dataclass
class Sample:
    """One scrape, by what `pynet stats` shows."""

    at: float
    endpoints: dict[tuple[str, str], dict] = field(default_factory=dict)  # (network, endpoint) -> row
    ports: dict[tuple, dict] = field(default_factory=dict)  # PORT_LABELS values -> {"bytes", "packets"}
    spoof_drops: dict[str, float] = field(default_factory=dict)  # "mode/check" -> packets
    firewall_drops: dict[str, float] = field(default_factory=dict)  # reason -> packets


def parse(text: str, at: float) -> Sample:
    s = Sample(at)
    for fam in text_string_to_metric_families(text):
        name = fam.name.removesuffix("_total")  # a counter's family, whichever way the text names it
        for smp in fam.samples:
            lab = smp.labels
            if name == "pynet_endpoint_info":
                s.endpoints.setdefault((lab["network"], lab["endpoint"]), {}).update(
                    mode=lab["mode"], interface=lab["interface"], ipv4=lab["ipv4"], counted=lab["counted"] == "true")
            elif name in TRAFFIC:
                s.endpoints.setdefault((lab["network"], lab["endpoint"]), {})[TRAFFIC[name]] = int(smp.value)
            elif name in ("pynet_published_port_bytes", "pynet_published_port_packets"):
                key = tuple(lab[k] for k in PORT_LABELS)
                s.ports.setdefault(key, {})[name.rsplit("_", 1)[1]] = int(smp.value)
            elif name == "pynet_spoof_drops":
                s.spoof_drops[f"{lab['mode']}/{lab['check']}"] = smp.value
            elif name == "pynet_firewall_drops":
                s.firewall_drops[lab["reason"]] = smp.value
    return s


def scrape(sock: str) -> Sample:
    try:
        status, body = client.request(sock, "GET", "/metrics")
    except OSError as e:
        raise SystemExit(f"pynet: cannot reach the daemon on {sock}: {e}") from None
    if status != 200 or not isinstance(body, bytes):
        raise SystemExit(f"pynet: /metrics answered {status}: {body!r:.200}")
    return parse(body.decode(), time.monotonic())


def _rate(new: int | None, old: int | None, dt: float) -> float | None:
    if new is None or old is None or dt <= 0:
        return None
    return max(new - old, 0) / dt  # a counter that went down was reset: no negative rates


@dataclass
class Names:
    networks: dict[str, str] = field(default_factory=dict)  # full network ID -> name
    endpoints: dict[str, str] = field(default_factory=dict)  # full endpoint ID -> container name

    def network(self, short: str) -> str:
        return next((n for i, n in self.networks.items() if i.startswith(short)), short)

    def container(self, short: str) -> str:
        return next((n.lstrip("/") for i, n in self.endpoints.items() if i.startswith(short) and n), short)


@dataclass
class Target:
    """What to show: every endpoint, those of a network (ID prefix), or those of a container."""

    network: str = ""
    endpoints: set[str] = field(default_factory=set)  # short IDs

    def wants(self, net: str, ep: str) -> bool:
        if self.endpoints:
            return ep in self.endpoints
        return not self.network or net == self.network[:12]


def view(old: Sample, new: Sample, target: Target, names: Names) -> dict:
    """The document --format json prints (and the table shows)."""
    dt = new.at - old.at
    eps = []
    for (net, ep), row in sorted(new.endpoints.items()):
        if not target.wants(net, ep) or "mode" not in row:
            continue
        prev = old.endpoints.get((net, ep), {})
        out = {"network": net, "network_name": names.network(net), "endpoint": ep,
               "container": names.container(ep), **row}
        for key in RATED:
            out[f"{key}_per_s"] = _rate(row.get(key), prev.get(key), dt)
        eps.append(out)
    ports = []
    for key, row in sorted(new.ports.items(), key=lambda kv: (int(kv[0][4]), kv[0])):
        lab = dict(zip(PORT_LABELS, key))
        if not target.wants(lab["network"], lab["endpoint"]):
            continue
        prev = old.ports.get(key, {})
        ports.append({**lab, "host_port": int(lab["host_port"]), "container_port": int(lab["container_port"]),
                      "container": names.container(lab["endpoint"]), "bytes": row.get("bytes"),
                      "packets": row.get("packets"), "bytes_per_s": _rate(row.get("bytes"), prev.get("bytes"), dt),
                      "packets_per_s": _rate(row.get("packets"), prev.get("packets"), dt)})
    return {"interval_s": round(dt, 3), "endpoints": eps, "ports": ports,
            "spoof_drops": new.spoof_drops, "firewall_drops": new.firewall_drops}


def size(n: float | None, per_s: bool = False) -> str:
    """Decimal units, as `docker stats` prints them."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            text = f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
            return text + ("/s" if per_s else "")
        n /= 1000
    return "-"


def count(n: float | None) -> str:
    return "-" if n is None else f"{n:.0f}"


def table(doc: dict) -> str:
    rows = [("CONTAINER", "NETWORK", "MODE", "RX/s", "TX/s", "RX", "TX", "RX PKT/s", "TX PKT/s", "DROPS")]
    for e in doc["endpoints"]:
        if not e.get("counted"):
            rows.append((e["container"], e["network_name"], e["mode"], "-", "-", "-", "-", "-", "-",
                         "(not counted: its interface lives in the container)"))
            continue
        drops = (e.get("rx_drops") or 0) + (e.get("tx_drops") or 0) if "rx_drops" in e else None
        rows.append((e["container"], e["network_name"], e["mode"], size(e["rx_bytes_per_s"], True),
                     size(e["tx_bytes_per_s"], True), size(e.get("rx_bytes")), size(e.get("tx_bytes")),
                     count(e["rx_packets_per_s"]), count(e["tx_packets_per_s"]), count(drops)))
    lines = _columns(rows)
    if doc["ports"]:
        prow = [("PUBLISHED PORT", "CONTAINER", "BYTES/s", "PKT/s", "BYTES", "PACKETS")]
        for p in doc["ports"]:
            host = f"[{p['host_ip']}]" if ":" in p["host_ip"] else p["host_ip"]
            prow.append((f"{host}:{p['host_port']}->{p['container_port']}/{p['proto']}", p["container"],
                         size(p["bytes_per_s"], True), count(p["packets_per_s"]), size(p["bytes"]),
                         count(p["packets"])))
        lines += [""] + _columns(prow)
    spoofed = sum(doc["spoof_drops"].values())
    lines += ["", f"anti-spoofing drops: {spoofed:.0f}"
              + (f" ({', '.join(f'{k} {v:.0f}' for k, v in sorted(doc['spoof_drops'].items()) if v)})"
                 if spoofed else "")]
    return "\n".join(lines)


def _columns(rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def resolve(sock: str, ref: str | None, names: Names) -> Target:
    """NET (name or ID prefix) or CONTAINER (name or ID), asked of the daemon and of Docker."""
    if not ref:
        return Target()
    ours = [n["id"] for n in client.call(sock, "GET", "/pynet/v1/networks")]
    by_name = [i for i, n in names.networks.items() if n == ref and i in ours]
    by_id = [i for i in ours if i.startswith(ref.lower())]
    if len(by_name or by_id) == 1:
        return Target(network=(by_name or by_id)[0])
    doc = client.docker_get(f"/containers/{ref}/json")
    if doc is None:
        raise SystemExit(f"pynet: {ref!r} is neither a pynet network nor a container Docker knows")
    eps = {info["EndpointID"][:12] for info in (doc.get("NetworkSettings", {}).get("Networks") or {}).values()
           if info.get("NetworkID") in ours and info.get("EndpointID")}
    if not eps:
        raise SystemExit(f"pynet: container {ref} is not on a pynet network")
    return Target(endpoints=eps)


def run(args) -> int:
    sock = client.find_socket(args.socket)
    names = Names(client.docker_network_names())
    target = resolve(sock, args.target, names)
    old = scrape(sock)
    names.endpoints = client.docker_endpoint_names({n for n, _e in old.endpoints})
    tty = sys.stdout.isatty() and not args.no_stream and args.format == "table"
    try:
        while True:
            time.sleep(args.interval)
            new = scrape(sock)
            if set(new.endpoints) - set(old.endpoints):  # new containers: ask Docker for their names
                names.endpoints = client.docker_endpoint_names({n for n, _e in new.endpoints})
            doc = view(old, new, target, names)
            text = json.dumps(doc) if args.format == "json" else table(doc)
            print(("\033[2J\033[H" if tty else "") + text, flush=True)
            if args.no_stream:
                return 0
            old = new
    except KeyboardInterrupt:
        return 0
