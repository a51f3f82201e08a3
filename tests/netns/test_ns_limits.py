"""Bandwidth limits on the real kernel: what each mode puts where, iperf3 inside the bounds both ways,
`pynet limit` at run time, kill -9 and restart, and nothing left after removal.

nat: the container's ingress is a TBF on its veth's host side, its egress an nftables policer on
that veth's ingress (table netdev <table>). transparent: egress is an HTB class on the parent for
the macvlan's source MAC, ingress a policer on the parent for its destination MAC.
"""

from __future__ import annotations

import json

import iperf
from lib import PREFIX, TABLE
from nslib import UPLINK_CLIENT, UPLINK_IF, pynet_cli, until
from test_ns_lan import lan_container, lan_network

RATE = 50  # Mbit/s: well inside what two busy shared cores move through a veth


def qdisc(host, dev: str) -> dict:
    out = json.loads(host.ns.run("tc", "-j", "qdisc", "show", "dev", dev).stdout)
    return next(q for q in out if q.get("root"))


def netdev_table(host) -> str | None:
    p = host.nft("list", "table", "netdev", TABLE, check=False)
    return p.stdout if p.returncode == 0 else None


def measure(host, ctr, server_ip: str, server_prefix: list[str]) -> tuple[float, float]:
    """(into the container, out of it) in Mbit/s, against an iperf3 server behind server_prefix."""
    host.procs.append(iperf.server(server_prefix))
    client = ["ip", "netns", "exec", ctr.name]
    return iperf.mbits(client, server_ip, reverse=True), iperf.mbits(client, server_ip)


def assert_within(got: tuple[float, float], want: tuple[float, float]) -> None:
    print(f"measured {got[0]:.1f} in, {got[1]:.1f} out (set {want})")
    for direction, g, w in zip(("ingress", "egress"), got, want):
        assert iperf.within(g, w), f"{direction}: {g:.1f} Mbit/s measured, {w} set (±10%)"


def test_nat_limits_measured_changed_and_removed(host):
    net = host.create_network(61, generic={"ingress_rate": f"{RATE}mbit", "egress_rate": f"{RATE}mbit"})
    ctr = host.run_container(net, 2)
    hif = f"{PREFIX}h{ctr.ep_id[:15 - len(PREFIX) - 1]}"
    tbf = qdisc(host, hif)
    assert tbf["kind"] == "tbf" and tbf["handle"] == "706e:" and tbf["options"]["rate"] == RATE * 10**6 // 8
    assert f'chain dev_{hif}' in netdev_table(host) and f"rate over {RATE * 10**6 // 8} bytes/second" in \
        netdev_table(host)
    assert_within(measure(host, ctr, net.gateway, ["ip", "netns", "exec", host.ns.name]), (RATE, RATE))

    # pynet limit at run time (the control API the CLI calls): egress only, then none at all.
    doc = host.ok("/pynet/v1/limits", {"NetworkID": net.id, "EndpointID": ctr.ep_id,
                                       "limits": {"egress_rate": "20mbit"}})
    assert doc["limits"]["egress_rate"] == "20mbit" and doc["overrides"] == {"egress_rate": "20mbit"}
    client = ["ip", "netns", "exec", ctr.name]
    assert iperf.within(iperf.mbits(client, net.gateway), 20)
    host.ok("/pynet/v1/limits", {"NetworkID": net.id, "EndpointID": ctr.ep_id,
                                 "limits": {"egress_rate": "none", "ingress_rate": "none"}})
    assert qdisc(host, hif)["kind"] == "noqueue" and netdev_table(host) is None
    assert iperf.mbits(client, net.gateway, secs=2, omit=0) > 3 * RATE  # unlimited again

    # The same limits as a --driver-opt of a second container; removal leaves no qdisc, no rule.
    other = host.run_container(net, 3, options={"egress_rate": "10mbit"})
    assert netdev_table(host) is not None
    host.remove_container(other)
    host.remove_container(ctr)
    assert netdev_table(host) is None
    host.delete_network(net)


def test_transparent_limits_on_the_parent(host):
    lan = host.lan_client()
    net = lan_network(host, "transparent")
    ctr = lan_container(host, net, "192.0.2.10", "tl")
    assert qdisc(host, UPLINK_IF)["kind"] == "noqueue"  # an unlimited endpoint pays nothing
    host.ok("/pynet/v1/limits", {"NetworkID": net.id, "EndpointID": ctr.ep_id,
                                 "limits": {"ingress_rate": f"{RATE}mbit", "egress_rate": f"{RATE}mbit"}})
    htb = qdisc(host, UPLINK_IF)
    assert htb["kind"] == "htb" and htb["handle"] == "706e:"
    filters = host.ns.run("tc", "filter", "show", "dev", UPLINK_IF).stdout
    assert "match 0242c000/ffffffff at -8" in filters and "match 020a0000/ffff0000 at -4" in filters  # 02:42:c0:00:02:0a
    assert f"macs_{UPLINK_IF}" in netdev_table(host) and ctr.mac in netdev_table(host)
    assert_within(measure(host, ctr, UPLINK_CLIENT, ["ip", "netns", "exec", lan.name]), (RATE, RATE))
    # Leaving: the class, the filter, the HTB, the policer and the table go.
    host.remove_container(ctr)
    assert qdisc(host, UPLINK_IF)["kind"] == "noqueue" and netdev_table(host) is None
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net.id}) == {}


def test_limits_survive_kill9_and_come_back_when_the_kernel_lost_them(host):
    net = host.create_network(62, generic={"ingress_rate": "30mbit"})
    ctr = host.run_container(net, 2, options={"egress_rate": "15mbit"})
    hif = f"{PREFIX}h{ctr.ep_id[:15 - len(PREFIX) - 1]}"
    host.daemon.kill9()
    assert qdisc(host, hif)["kind"] == "tbf"  # the kernel keeps them without the daemon
    host.ns.run("tc", "qdisc", "del", "dev", hif, "root")  # someone removes one while pynet is down
    host.nft("delete", "table", "netdev", TABLE)
    host.daemon.start()
    assert qdisc(host, hif)["options"]["rate"] == 30 * 10**6 // 8
    assert "rate over 1875000 bytes/second" in netdev_table(host)
    p = pynet_cli(host, "limit", "--json")
    assert p.returncode == 0, p.stderr
    assert [d["limits"]["egress_rate"] for d in json.loads(p.stdout)] == ["15mbit"]
    host.remove_container(ctr)
    host.delete_network(net)
    assert netdev_table(host) is None


def test_leftover_policer_and_class_are_swept_at_start(host):
    lan = host.lan_client()
    assert lan
    host.daemon.kill9()
    host.nft("add", "table", "netdev", TABLE)
    host.nft("add", "chain", "netdev", TABLE, f"dev_{PREFIX}hdeadbeef00",
             '{ type filter hook ingress device "lo" priority 0; policy accept; }')
    host.ns.run("tc", "qdisc", "add", "dev", UPLINK_IF, "root", "handle", "706e:", "htb", "default", "0")
    host.ns.run("tc", "class", "add", "dev", UPLINK_IF, "parent", "706e:", "classid", "706e:1", "htb", "rate",
                "1mbit")
    host.ns.run("tc", "filter", "add", "dev", UPLINK_IF, "parent", "706e:", "protocol", "all", "prio", "1",
                "handle", "800::1", "u32", "match", "ether", "src", "02:42:00:00:00:09", "flowid", "706e:1")
    host.daemon.start()
    assert qdisc(host, UPLINK_IF)["kind"] == "noqueue"
    assert netdev_table(host) is None
    report = host.get("/pynet/v1/status")["leftovers_removed_at_start"]
    assert "shaper for 02:42:00:00:00:09 on up0" in report


def test_policer_flushed_while_running_comes_back(host):
    """A firewall reload (`nft flush ruleset`) takes the netdev table too: the periodic check (1 s in
    tests) puts the policers back from the state, with pynet's inet table."""
    net = host.create_network(63, generic={"egress_rate": "12mbit"})
    ctr = host.run_container(net, 2)
    assert "rate over 1500000 bytes/second" in netdev_table(host)
    host.nft("flush", "ruleset")
    until(lambda: netdev_table(host) and "rate over 1500000 bytes/second" in netdev_table(host), timeout=10,
          what="policer back")
    host.remove_container(ctr)
    host.delete_network(net)
    assert netdev_table(host) is None
