"""Metrics with a real dockerd: /metrics scraped before and after a counted number of bytes through a
published port moves by at least that traffic, and `pynet stats` shows it under Docker's names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from conftest import IMAGE
from lib import PYNET, docker, request

BYTE_COUNT = str(Path(__file__).resolve().parents[1] / "byte_count.py")
SEND, REPLY = 2_000_000, 500_000


def scrape(daemon) -> dict[tuple[str, frozenset], float]:
    status, body = request(daemon.socket, "GET", "/metrics")
    assert status == 200, body
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def pick(m: dict, name: str, **labels) -> float:
    found = [v for (n, lab), v in m.items() if n == name and set(labels.items()) <= lab]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def in_container_netns(ctr: str, *cmd: str) -> list[str]:
    pid = docker("inspect", "-f", "{{.State.Pid}}", ctr).stdout.strip()
    return ["nsenter", "-t", pid, "-n", *cmd]


def send(port: int) -> None:
    """From the host through 127.0.0.1 (the LAN path is the netns tier's: this machine's other test sessions
    share the e2e `outside` subnet, so replies to it may leave through their veth)."""
    p = subprocess.run([sys.executable, BYTE_COUNT, "send", "127.0.0.1", str(port), str(SEND)], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip() == f"sent {SEND} received {REPLY}", p.stdout + p.stderr


def test_metrics_and_stats_move_by_the_traffic(nets, ctrs, daemon):
    net = nets.create("metrics")
    web = ctrs.start("metricsweb", "--net", net, "-p", "18290:9000", IMAGE, "sleep", "600")
    net_id = docker("network", "inspect", "-f", "{{.Id}}", net).stdout.strip()
    ep_id = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.EndpointID}}{{end}}", web).stdout.strip()
    server = subprocess.Popen(in_container_netns(web, sys.executable, BYTE_COUNT, "serve", "9000", str(REPLY), "120"),
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        ep = {"network": net_id[:12], "endpoint": ep_id[:12], "mode": "nat"}
        port = {"network": net_id[:12], "endpoint": ep_id[:12], "host_port": "18290", "proto": "tcp"}
        before = scrape(daemon)
        send(18290)
        after = scrape(daemon)

        def moved(name, **labels):
            return pick(after, name, **labels) - pick(before, name, **labels)

        assert moved("pynet_endpoint_receive_bytes_total", **ep) >= SEND
        assert moved("pynet_endpoint_transmit_bytes_total", **ep) >= REPLY
        assert moved("pynet_published_port_bytes_total", **port) >= SEND + REPLY
        assert moved("pynet_published_port_packets_total", **port) > 0

        # `pynet stats` while traffic flows: Docker's names, rates above zero, totals past the traffic.
        loop = subprocess.Popen(["sh", "-c", f"for i in $(seq 15); do {sys.executable} {BYTE_COUNT} send 127.0.0.1 "
                                 f"18290 {SEND}; sleep 0.1; done"],
                                stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            p = subprocess.run([PYNET, "stats", "--no-stream", "--format", "json", web], capture_output=True,
                               text=True, timeout=60, env=dict(os.environ, PYNET_SOCKET=daemon.socket))
        finally:
            loop.kill()
            loop.wait()
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        (row,) = doc["endpoints"]
        assert (row["container"], row["network_name"], row["mode"]) == (web, net, "nat")
        assert row["rx_bytes"] >= 2 * SEND and row["rx_bytes_per_s"] > 0
        (prow,) = doc["ports"]
        assert (prow["host_port"], prow["container"]) == (18290, web) and prow["bytes"] >= 2 * (SEND + REPLY)
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
