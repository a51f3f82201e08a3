"""/metrics: the collector over fake kernel counters, parsed with prometheus_client's own parser."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes import EP_1, EP_2, ID_A, ID_B, ep_req, join_req, net_req, pec_req, port
from pynet.config import Config, load
from pynet.errors import InvalidOption, KernelError, StateError
from pynet.firewall import counters
from pynet.kernel.api import LinkStats

T = "pynet_unit"
H1, H2 = "pn-h" + EP_1[:11], "pn-h" + EP_2[:11]


async def scrape(docker) -> dict[str, list]:
    """GET /metrics, parsed: metric name -> [(sample name, labels, value)]."""
    async with docker.client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def value(m: dict, name: str, **labels) -> float:
    """The one sample of metric family `name` (sample name `name` or `name_total`) with these labels."""
    found = [v for sname, lab, v in m[name] if sname in (name, name + "_total")
             and all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (name, labels, m.get(name))
    return found[0]


async def two_containers(driver):
    await driver.networks.create(net_req())
    for ep, addr in ((EP_1, "172.30.0.2/24"), (EP_2, "172.30.0.3/24")):
        await driver.endpoints.create(ep_req(ep_id=ep, address=addr))
        await driver.endpoints.join(join_req(ep_id=ep))
    await driver.published.program(pec_req(ports=[port(80, 8080), port(53, 5353, proto="udp", host_ip="127.0.0.1")]))


async def test_endpoint_traffic_from_the_containers_side(driver, docker, links):
    await two_containers(driver)
    # The host-side veth transmits what the container receives.
    links.links[H1].stats = LinkStats(rx_bytes=100, tx_bytes=5000, rx_packets=2, tx_packets=7, rx_dropped=1,
                                      tx_dropped=3)
    m = await scrape(docker)
    ep1 = {"network": ID_A[:12], "endpoint": EP_1[:12], "mode": "nat"}
    assert value(m, "pynet_endpoint_receive_bytes", **ep1) == 5000
    assert value(m, "pynet_endpoint_transmit_bytes", **ep1) == 100
    assert value(m, "pynet_endpoint_receive_packets", **ep1) == 7
    assert value(m, "pynet_endpoint_transmit_packets", **ep1) == 2
    assert value(m, "pynet_endpoint_receive_drops", **ep1) == 3
    assert value(m, "pynet_endpoint_transmit_drops", **ep1) == 1
    assert value(m, "pynet_endpoint_receive_bytes", endpoint=EP_2[:12]) == 0
    assert value(m, "pynet_endpoint_info", endpoint=EP_1[:12], mac="02:42:ac:1e:00:02", ipv4="172.30.0.2/24",
                 counted="true", interface=H1) == 1
    assert value(m, "pynet_endpoints", network=ID_A[:12], mode="nat") == 2
    assert value(m, "pynet_networks", mode="nat") == 1
    assert value(m, "pynet_networks", mode="transparent") == 0


async def test_published_ports_from_their_map_elements(driver, docker, nft):
    await two_containers(driver)
    nft.element_counters[(T, "pubany4", "tcp . 8080")] = (12, 34567)
    nft.element_counters[(T, "pub4", "127.0.0.1 . udp . 5353")] = (3, 300)
    m = await scrape(docker)
    tcp = {"network": ID_A[:12], "endpoint": EP_1[:12], "proto": "tcp", "host_ip": "0.0.0.0", "host_port": "8080",
           "container_port": "80"}
    assert value(m, "pynet_published_port_packets", **tcp) == 12
    assert value(m, "pynet_published_port_bytes", **tcp) == 34567
    assert value(m, "pynet_published_port_bytes", proto="udp", host_ip="127.0.0.1", host_port="5353") == 300
    assert value(m, "pynet_published_ports", network=ID_A[:12]) == 2


async def test_drops_by_what_they_stop(driver, docker, nft):
    await two_containers(driver)
    nft.rule_counters[("bridge " + T, "spoof:nat:mac")] = (4, 400)
    nft.rule_counters[(T, "spoof:l2bridge:ipv4")] = (2, 200)
    nft.rule_counters[(T, "drop:isolation")] = (9, 900)
    m = await scrape(docker)
    assert value(m, "pynet_spoof_drops", mode="nat", check="mac") == 4
    assert value(m, "pynet_spoof_drops", mode="nat", check="ipv4") == 0
    assert value(m, "pynet_spoof_drops", mode="l2bridge", check="ipv4") == 2
    assert value(m, "pynet_firewall_drops", reason="isolation") == 9
    assert value(m, "pynet_firewall_drops", reason="localhost") == 0


async def test_transparent_endpoints_have_no_traffic_figures(driver, docker, links):
    """Their macvlan lives in the container's namespace: nothing on the host to count on."""
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24",
                                         gateway="192.168.50.1/24"))
    await driver.endpoints.create(ep_req(address="192.168.50.20/24"))
    m = await scrape(docker)
    assert value(m, "pynet_endpoint_info", endpoint=EP_1[:12], mode="transparent", counted="false",
                 interface="") == 1
    assert not [s for s in m["pynet_endpoint_receive_bytes"] if s[1]["endpoint"] == EP_1[:12]]
    assert value(m, "pynet_endpoints", mode="transparent") == 1


async def test_one_link_dump_and_one_listing_per_table_whatever_the_size(driver, docker, links, nft):
    await driver.networks.create(net_req(pool="172.30.0.0/22", gateway="172.30.0.1/22"))
    for i in range(40):
        ep = f"{i:02x}" * 32
        await driver.endpoints.create(ep_req(ep_id=ep, address=f"172.30.1.{i + 2}/22"))
    listed = []
    real_list = nft.list

    async def counting_list(what):
        listed.append(what)
        return await real_list(what)
    nft.list = counting_list
    links.calls.clear()
    m = await scrape(docker)
    assert links.calls == [("link_stats",)]
    assert sorted(listed) == [f"table bridge {T}", f"table inet {T}"]
    assert len([s for s in m["pynet_endpoint_receive_bytes"]]) == 40
    assert value(m, "pynet_scrape_error", source="links") == 0


async def test_a_source_that_cannot_be_read_is_said_and_the_rest_served(driver, docker, links, nft):
    await two_containers(driver)
    links.fail["link_stats"] = KernelError("netlink is gone")
    del nft.tables["bridge " + T]
    m = await scrape(docker)
    assert value(m, "pynet_scrape_error", source="links") == 1
    assert value(m, "pynet_scrape_error", source="nft") == 1
    assert m["pynet_endpoint_receive_bytes"] == []
    assert value(m, "pynet_endpoints", network=ID_A[:12]) == 2
    assert value(m, "pynet_published_port_packets", host_port="8080") == 0  # the inet table still read


async def test_calls_counted_timed_and_errors_by_call(driver, docker):
    await docker.ok("/NetworkDriver.CreateNetwork", {"NetworkID": ID_B, "IPv4Data": [
        {"AddressSpace": "LocalDefault", "Pool": "172.31.0.0/24", "Gateway": "172.31.0.1/24"}], "Options": {}})
    await docker.err("/NetworkDriver.CreateEndpoint", {"NetworkID": "f" * 64, "EndpointID": EP_1,
                                                       "Interface": {"Address": "172.31.0.2/24"}}, status=404)
    await docker.err("/no/such/call/" + "x" * 40, {}, status=404)
    m = await scrape(docker)
    counts = {s[1]["call"]: s[2] for s in m["pynet_call_duration_seconds"] if s[0].endswith("_count")}
    assert counts["NetworkDriver.CreateNetwork"] == 1 and counts["NetworkDriver.CreateEndpoint"] == 1
    assert counts["unknown"] == 1 and not any("no/such" in c for c in counts)
    assert value(m, "pynet_call_errors", call="NetworkDriver.CreateEndpoint", status="404") == 1
    assert not [s for s in m["pynet_call_errors"] if s[1].get("call") == "NetworkDriver.CreateNetwork"]
    buckets = [s for s in m["pynet_call_duration_seconds"]
               if s[0].endswith("_bucket") and s[1]["call"] == "NetworkDriver.CreateNetwork"]
    assert buckets[-1][1]["le"] == "+Inf" and buckets[-1][2] == 1


async def test_dhcp_lease_state_and_renewals(driver, docker, links):
    links.add_foreign("eth0", kind="device")
    await driver.networks.create(net_req(generic={"mode": "transparent", "parent": "eth0"}, pool="192.168.50.0/24",
                                         gateway="192.168.50.1/24"))
    net = driver.state.nets[ID_A]
    now = time.time()
    base = {"prefixlen": 24, "server": "192.168.50.1", "server_mac": "02:00:00:00:00:01", "lease_time": 3600,
            "t1": 1800, "t2": 3150}
    net.leases["02:00:00:00:00:0a"] = dict(base, mac="02:00:00:00:00:0a", ip="192.168.50.10", acquired=now - 60,
                                           renewals=4)
    net.leases["02:00:00:00:00:0b"] = dict(base, mac="02:00:00:00:00:0b", ip="192.168.50.11", acquired=now - 2000)
    net.leases["02:00:00:00:00:0c"] = dict(base, mac="02:00:00:00:00:0c", ip="192.168.50.12", acquired=now - 4000)
    driver.leases.renewal_failures = 5
    m = await scrape(docker)
    assert value(m, "pynet_dhcp_leases", network=ID_A[:12], state="bound") == 1
    assert value(m, "pynet_dhcp_leases", network=ID_A[:12], state="renewing") == 1
    assert value(m, "pynet_dhcp_leases", network=ID_A[:12], state="rebinding") == 0
    assert value(m, "pynet_dhcp_leases", network=ID_A[:12], state="expired") == 1
    assert value(m, "pynet_dhcp_leases", network=ID_A[:12], family="4", state="lost") == 0
    assert value(m, "pynet_dhcp_lease_renewals", mac="02:00:00:00:00:0a") == 4
    assert value(m, "pynet_dhcp_lease_expiry_timestamp_seconds", ip="192.168.50.10") == pytest.approx(now + 3540)
    assert value(m, "pynet_dhcp_renewal_failures") == 5


async def test_state_file_problems(driver, docker, monkeypatch):
    await driver.networks.create(net_req())
    driver.state.store.damaged["c" * 64] = "/x/networks/ccc.json.corrupt-1"

    def disk_full(_net, *_eps):
        raise StateError("no space left on device")
    monkeypatch.setattr(driver.state.store, "save", disk_full)
    with pytest.raises(StateError):
        await driver.endpoints.create(ep_req())
    m = await scrape(docker)
    assert value(m, "pynet_state_damaged_files") == 1
    assert value(m, "pynet_state_save_failures") == 1


def test_tcp_app_serves_metrics_only(cfg, driver):
    from pynet.api import metrics

    app = metrics.tcp_app(driver, cfg, metrics.CallMetrics())
    assert [r.resource.canonical for r in app.router.routes() if r.method == "GET"] == ["/metrics"]
    assert {r.method for r in app.router.routes()} <= {"GET", "HEAD"}


def test_metrics_address_setting():
    assert load(env={"PYNET_METRICS_ADDRESS": "127.0.0.1:9641"}).metrics_address == "127.0.0.1:9641"
    assert Config().metrics_address == ""
    for bad in ("9641", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9641"):
        with pytest.raises(InvalidOption, match="metrics_address"):
            load(env={"PYNET_METRICS_ADDRESS": bad})


# nft 1.0.6's own JSON (`nft -j list table inet ...`), trimmed: a map with counted elements, a commented drop.
LISTING = [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "pynet", "handle": 7}},
    {"map": {"family": "inet", "name": "pub6", "table": "pynet", "type": ["ipv6_addr", "inet_proto", "inet_service"],
             "handle": 14, "map": "ipv6_addr . inet_service", "stmt": [{"counter": None}],
             "elem": [[{"elem": {"val": {"concat": ["2001:db8::1", "udp", 53]},
                                 "counter": {"packets": 5, "bytes": 61}}},
                       {"concat": ["fd00::2", 53]}]]}},
    {"map": {"family": "inet", "name": "pubany4", "table": "pynet", "type": ["inet_proto", "inet_service"],
             "handle": 15, "map": "ipv4_addr . inet_service", "stmt": [{"counter": None}],
             "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "counter": {"packets": 25, "bytes": 151316}}},
                       {"concat": ["10.0.0.2", 80]}]]}},
    {"rule": {"family": "inet", "table": "pynet", "chain": "forward", "handle": 29, "comment": "drop:isolation",
              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@bridges"}},
                       {"counter": {"packets": 3, "bytes": 180}}, {"drop": None}]}},
    {"rule": {"family": "inet", "table": "pynet", "chain": "forward", "handle": 30,
              "expr": [{"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": ["established"]}},
                       {"accept": None}]}},
]


def test_counters_parsed_from_nft_json():
    got = counters.Counters()
    counters.parse(LISTING, got)
    assert got.ports == {("pub6", "2001:db8::1 . udp . 53"): (5, 61), ("pubany4", "tcp . 8080"): (25, 151316)}
    assert got.drops == {"drop:isolation": (3, 180)}


async def test_pynet_stats_reads_what_the_daemon_writes(driver, docker, links, nft):
    from pynet import stats_cli

    await two_containers(driver)
    links.links[H1].stats = LinkStats(tx_bytes=5000)
    nft.element_counters[(T, "pubany4", "tcp . 8080")] = (12, 34567)
    async with docker.client.get("/metrics") as resp:
        sample = stats_cli.parse(await resp.text(), 1.0)
    assert sample.endpoints[(ID_A[:12], EP_1[:12])]["rx_bytes"] == 5000
    assert sample.endpoints[(ID_A[:12], EP_1[:12])]["counted"] is True
    assert sample.ports[(ID_A[:12], EP_1[:12], "tcp", "0.0.0.0", "8080", "80")] == {"bytes": 34567, "packets": 12}
    assert "nat/mac" in sample.spoof_drops and "isolation" in sample.firewall_drops


async def test_a_rebuild_of_the_table_keeps_what_ports_counted(driver, docker, nft):
    """Every start rebuilds the table from scratch: the port maps' counters are carried over."""
    await two_containers(driver)
    nft.element_counters[(T, "pubany4", "tcp . 8080")] = (12, 34567)
    report = await driver.reconciler.reconcile()
    assert report["errors"] == []
    assert any("tcp . 8080 counter packets 12 bytes 34567 : 172.30.0.2 . 80" in line for line in nft.scripts[-1])
    m = await scrape(docker)
    assert value(m, "pynet_published_port_bytes", host_port="8080") == 34567
    assert nft.elements(T, "pubany4") == {"tcp . 8080": "172.30.0.2 . 80"}  # the bookkeeping knows no counter
