"""The daemon's nftables table: per namespace, elements per network, and what a clean stop leaves.

Designed behaviour (README "State, restarts, crashes"; service.Service.shutdown):
a clean stop (SIGTERM) leaves kernel objects in place so containers keep
networking; the table goes only when no network uses it.
"""

from __future__ import annotations

import os

from lib import TABLE, sh


def test_table_lives_in_the_daemons_namespace_with_one_element_per_network(host):
    a = host.create_network(61)
    internal = host.create_network(62, internal=True)
    routed = host.create_network(63, generic={"masquerade": "false"})
    assert host.table_present()
    # Not in the real host's table (which the e2e tier's daemon, same name, may hold in the same run).
    on_host = sh("nft", "list", "table", "inet", TABLE, check=False).stdout
    assert a.bridge not in on_host and internal.bridge not in on_host
    assert sorted(host.nft_elements("bridges")) == sorted([a.bridge, internal.bridge, routed.bridge])
    assert host.nft_elements("internal") == [internal.bridge]
    assert host.nft_elements("masq") == [a.bridge]  # not internal, not masquerade=false
    chains = host.nft("list", "table", "inet", TABLE).stdout
    for chain in ("forward", "raw_pre", "dnat_pre", "dnat_out", "postrouting"):
        assert f"chain {chain} {{" in chains, chain
    host.delete_network(internal)
    host.delete_network(routed)
    assert host.nft_elements("bridges") == [a.bridge]
    assert host.nft_elements("internal") == []


def test_sigterm_keeps_kernel_objects_and_traffic_while_networks_exist(host):
    net = host.create_network(64)
    a = host.run_container(net, 2)
    b = host.run_container(net, 3)
    links = host.links()
    host.daemon.stop()
    assert host.daemon.proc.returncode == 0
    assert not os.path.exists(host.daemon.socket)  # the socket goes with the daemon
    assert host.links() == links
    assert host.table_present() and host.nft_elements("bridges") == [net.bridge]
    assert a.ping(b.ip) and a.ping(net.gateway)
    host.daemon.start()
    assert host.networks()[net.id]["endpoints"] == 2
    assert host.get("/pynet/v1/status")["leftovers_removed_at_start"] == []


def test_sigterm_removes_the_unused_table(host):
    net = host.create_network(65)
    host.delete_network(net)
    host.daemon.stop()
    assert host.daemon.proc.returncode == 0
    assert not host.table_present()
    assert host.links() == []
