"""/metrics on the real kernel: known traffic moves the counters by at least that much, a full table
rebuild keeps the published ports counted, spoofed packets are counted, the TCP listener."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nslib import UPLINK_HOST, Host, pynet_cli, portmap, stop_proc, until

BYTE_COUNT = str(Path(__file__).resolve().parents[1] / "byte_count.py")
SEND, REPLY = 300_000, 120_000


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def scrape(host: Host) -> dict[tuple[str, frozenset], float]:
    status, body = host.call("/metrics", method="GET")
    assert status == 200, body
    return parse(body.decode() if isinstance(body, bytes) else body)


def pick(m: dict, name: str, **labels) -> float:
    found = [v for (n, lab), v in m.items() if n == name and set(labels.items()) <= lab]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def serve_bytes(host: Host, netns: str, port: int) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, BYTE_COUNT, "serve", str(port), str(REPLY),
                          "60"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    host.procs.append(p)
    assert p.stdout.readline().strip() == "listening"
    return p


def send_bytes(netns: str, ip: str, port: int) -> None:
    p = subprocess.run(["ip", "netns", "exec", netns, sys.executable, BYTE_COUNT, "send", ip, str(port), str(SEND)],
                       capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == f"sent {SEND} received {REPLY}", p.stdout + p.stderr


def publish(host: Host, ctr, maps) -> None:
    host.ok("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": ctr.net_id, "EndpointID": ctr.ep_id, "Options": {"com.docker.network.portmap": maps}})


def test_known_traffic_moves_endpoint_and_port_counters(host):
    lan = host.lan_client()
    net = host.create_network(81)
    maps = portmap((9000, 18190), (9000, 18191, "127.0.0.1"))
    web = host.run_container(net, 2, options={"com.docker.network.portmap": maps})
    publish(host, web, maps)
    serve_bytes(host, web.name, 9000)
    ep = {"network": net.id[:12], "endpoint": web.ep_id[:12]}
    any_port = dict(ep, proto="tcp", host_ip="0.0.0.0", host_port="18190", container_port="9000")
    local_port = dict(ep, host_ip="127.0.0.1", host_port="18191")

    before = scrape(host)
    send_bytes(lan.name, UPLINK_HOST, 18190)  # from the LAN: prerouting, forward, postrouting
    send_bytes(host.ns.name, "127.0.0.1", 18191)  # from the host itself: output and input
    after = scrape(host)

    def moved(name, **labels):
        return pick(after, name, **labels) - pick(before, name, **labels)

    assert moved("pynet_endpoint_receive_bytes_total", **ep) >= 2 * SEND
    assert moved("pynet_endpoint_transmit_bytes_total", **ep) >= 2 * REPLY
    assert moved("pynet_endpoint_receive_packets_total", **ep) > 0
    # Each port counts both directions of every packet of its connections, once.
    assert SEND + REPLY <= moved("pynet_published_port_bytes_total", **any_port) < 1.2 * (SEND + REPLY)
    assert SEND + REPLY <= moved("pynet_published_port_bytes_total", **local_port) < 1.2 * (SEND + REPLY)
    assert pick(after, "pynet_published_ports", network=net.id[:12]) == 2
    assert pick(after, "pynet_scrape_error", source="links") == pick(after, "pynet_scrape_error", source="nft") == 0

    # A full rebuild of the table (what a start does): the counts are carried over, and counting goes on.
    assert host.ok("/pynet/v1/reconcile", {})["errors"] == []
    rebuilt = scrape(host)
    assert pick(rebuilt, "pynet_published_port_bytes_total", **any_port) >= \
        pick(after, "pynet_published_port_bytes_total", **any_port)
    send_bytes(lan.name, UPLINK_HOST, 18190)
    again = scrape(host)
    assert pick(again, "pynet_published_port_bytes_total", **any_port) - \
        pick(rebuilt, "pynet_published_port_bytes_total", **any_port) >= SEND + REPLY
    # kill -9 and a new daemon: the endpoint's and the port's figures go on from where they were.
    host.daemon.kill9()
    host.daemon.start()
    restarted = scrape(host)
    for name, labels in (("pynet_published_port_bytes_total", any_port), ("pynet_endpoint_receive_bytes_total", ep)):
        assert pick(restarted, name, **labels) >= pick(again, name, **labels)


def test_spoofed_source_is_counted(host):
    net = host.create_network(82)
    ctr = host.run_container(net, 2)
    assert ctr.ping(net.gateway)  # the gateway's MAC known: the spoofed packets need no ARP of their own
    before = pick(scrape(host), "pynet_spoof_drops_total", mode="nat", check="ipv4")
    ctr.run("ip", "addr", "add", "10.82.0.99/24", "dev", ctr.ifname)
    assert not ctr.run("busybox", "ping", "-c", "2", "-W", "1", "-I", "10.82.0.99", net.gateway,
                       check=False).returncode == 0
    assert pick(scrape(host), "pynet_spoof_drops_total", mode="nat", check="ipv4") >= before + 2


def test_stats_cli_shows_the_traffic(host):
    lan = host.lan_client()
    net = host.create_network(83)
    maps = portmap((9000, 18192))
    web = host.run_container(net, 2, options={"com.docker.network.portmap": maps})
    publish(host, web, maps)
    serve_bytes(host, web.name, 9000)
    sender = subprocess.Popen(["sh", "-c", f"for i in $(seq 20); do ip netns exec {lan.name} {sys.executable} "
                               f"{BYTE_COUNT} send {UPLINK_HOST} 18192 {SEND}; sleep 0.2; done"],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    host.procs.append(sender)
    p = pynet_cli(host, "stats", "--no-stream", "--format", "json", "--interval", "1", net.id[:12])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    row = [e for e in doc["endpoints"] if e["endpoint"] == web.ep_id[:12]][0]
    assert row["rx_bytes"] >= SEND and row["rx_bytes_per_s"] > 0
    port_row = [x for x in doc["ports"] if x["host_port"] == 18192][0]
    assert port_row["bytes"] >= SEND + REPLY
    stop_proc(sender)


@pytest.fixture
def tcp_host(request):
    h = Host()
    port = 9641  # the daemon's own namespace: nothing else listens there
    h.daemon.extra_env["PYNET_METRICS_ADDRESS"] = f"127.0.0.1:{port}"
    try:
        h.start()
        yield h, port
    finally:
        h.close()


def test_metrics_on_a_tcp_address_and_nothing_else(tcp_host):
    host, port = tcp_host

    def get(path):
        return host.ns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}{path}",
                           check=False).stdout

    until(lambda: get("/metrics") == "200", what="metrics on TCP")
    body = host.ns.run("curl", "-s", f"http://127.0.0.1:{port}/metrics").stdout
    assert pick(parse(body), "pynet_info") == 1
    assert get("/pynet/v1/networks") == "404"
    assert host.ns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                       f"http://127.0.0.1:{port}/NetworkDriver.CreateNetwork", check=False).stdout in ("404", "405")
