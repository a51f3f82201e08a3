"""`pynet stats`: rates between two scrapes of /metrics, the filter, the table."""

from __future__ import annotations

from pynet import stats_cli

NET, EP1, EP2 = "aaaaaaaaaaaa", "111111111111", "222222222222"


def text(rx: int, port_bytes: int, spoofed: int = 0) -> str:
    ep1 = f'network="{NET}",endpoint="{EP1}",mode="nat"'
    return f"""# TYPE pynet_endpoint_info gauge
pynet_endpoint_info{{{ep1},interface="pn-h1111",mac="02:42:ac:1e:00:02",ipv4="172.30.0.2/24",ipv6="",\
counted="true"}} 1
pynet_endpoint_info{{network="{NET}",endpoint="{EP2}",mode="transparent",interface="",mac="02:42:c0:a8:32:14",\
ipv4="192.168.50.20/24",ipv6="",counted="false"}} 1
# TYPE pynet_endpoint_receive_bytes counter
pynet_endpoint_receive_bytes_total{{{ep1}}} {rx}
# TYPE pynet_endpoint_transmit_bytes counter
pynet_endpoint_transmit_bytes_total{{{ep1}}} 10
# TYPE pynet_endpoint_receive_packets counter
pynet_endpoint_receive_packets_total{{{ep1}}} {rx // 1000}
# TYPE pynet_endpoint_transmit_packets counter
pynet_endpoint_transmit_packets_total{{{ep1}}} 1
# TYPE pynet_endpoint_receive_drops counter
pynet_endpoint_receive_drops_total{{{ep1}}} 2
# TYPE pynet_endpoint_transmit_drops counter
pynet_endpoint_transmit_drops_total{{{ep1}}} 0
# TYPE pynet_published_port_bytes counter
pynet_published_port_bytes_total{{network="{NET}",endpoint="{EP1}",proto="tcp",host_ip="0.0.0.0",host_port="8080",\
container_port="80"}} {port_bytes}
# TYPE pynet_published_port_packets counter
pynet_published_port_packets_total{{network="{NET}",endpoint="{EP1}",proto="tcp",host_ip="0.0.0.0",host_port="8080",\
container_port="80"}} 7
# TYPE pynet_spoof_drops counter
pynet_spoof_drops_total{{mode="nat",check="ipv4"}} {spoofed}
"""


def test_rates_between_two_scrapes():
    old, new = stats_cli.parse(text(1000, 500), 10.0), stats_cli.parse(text(3000, 4500, spoofed=3), 12.0)
    doc = stats_cli.view(old, new, stats_cli.Target(), stats_cli.Names({NET + "0" * 52: "mynet"},
                                                                       {EP1 + "f" * 52: "web"}))
    (e1, e2) = doc["endpoints"]
    assert (e1["container"], e1["network_name"], e1["rx_bytes"], e1["rx_bytes_per_s"]) == ("web", "mynet", 3000, 1000)
    assert e1["tx_bytes_per_s"] == 0 and e1["rx_packets_per_s"] == 1
    assert e2["mode"] == "transparent" and not e2["counted"] and e2["rx_bytes_per_s"] is None
    (p,) = doc["ports"]
    assert (p["host_port"], p["bytes"], p["bytes_per_s"], p["container"]) == (8080, 4500, 2000, "web")
    assert doc["spoof_drops"] == {"nat/ipv4": 3}
    table = stats_cli.table(doc)
    assert "web" in table and "1.0kB/s" in table and "0.0.0.0:8080->80/tcp" in table
    assert "not counted" in table and "anti-spoofing drops: 3 (nat/ipv4 3)" in table


def test_a_counter_that_went_down_is_a_reset_not_a_negative_rate():
    doc = stats_cli.view(stats_cli.parse(text(9000, 9000), 0.0), stats_cli.parse(text(100, 50), 1.0),
                         stats_cli.Target(), stats_cli.Names())
    assert doc["endpoints"][0]["rx_bytes_per_s"] == 0 and doc["ports"][0]["bytes_per_s"] == 0


def test_filter_by_network_or_container():
    old, new = stats_cli.parse(text(0, 0), 0.0), stats_cli.parse(text(1, 1), 1.0)
    names = stats_cli.Names()
    only_ep2 = stats_cli.view(old, new, stats_cli.Target(endpoints={EP2}), names)
    assert [e["endpoint"] for e in only_ep2["endpoints"]] == [EP2] and only_ep2["ports"] == []
    other_net = stats_cli.view(old, new, stats_cli.Target(network="b" * 64), names)
    assert other_net["endpoints"] == [] and other_net["ports"] == []
    this_net = stats_cli.view(old, new, stats_cli.Target(network=NET + "0" * 52), names)
    assert len(this_net["endpoints"]) == 2


def test_sizes_as_docker_stats_prints_them():
    assert [stats_cli.size(x) for x in (0, 999, 1000, 1_500_000, 2.5e9)] == ["0B", "999B", "1.0kB", "1.5MB", "2.5GB"]
    assert stats_cli.size(None) == "-" and stats_cli.size(1234, True) == "1.2kB/s"
