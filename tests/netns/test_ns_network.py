"""CreateNetwork / DeleteNetwork against the real kernel, inside the daemon's namespace."""

from __future__ import annotations

import json

from lib import PREFIX, TABLE, retired_groups, sh
from nslib import new_id, network_body, pynet_cli


def test_handshake_answers_as_a_local_network_driver(host):
    assert host.ok("/Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    # Docker sends these bodies empty, with no Content-Type.
    assert host.ok("/NetworkDriver.GetCapabilities") == {"Scope": "local", "ConnectivityScope": "local",
                                                          "GwAllocChecker": True}
    assert host.ok("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {}}) == {}


def test_create_nat_network_makes_bridge_with_gateway_and_delete_removes_it(host):
    net_id = new_id()
    body = network_body(net_id, 31, generic={"mode": "nat"})
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}
    bridge = host.networks()[net_id]["bridge"]
    assert bridge == f"{PREFIX}n{net_id[:15 - len(PREFIX) - 1]}"
    link = host.link(bridge)
    assert link is not None and link["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in link["flags"]
    assert link["ifalias"] == f"pynet:{TABLE}:{net_id}"  # how the daemon recognises its own links
    assert "10.31.0.1/24" in host.addrs(bridge)
    assert link["linkinfo"]["info_data"]["stp_state"] == 0
    # The namespace routes for containers and lets 127.0.0.1 reach published ports.
    assert host.sysctl("net.ipv4.ip_forward") == "1"
    assert host.sysctl(f"net.ipv4.conf.{bridge}.route_localnet") == "1"
    assert host.state_ids() == [net_id]  # persisted before the answer

    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id}) == {}
    assert host.link(bridge) is None
    assert host.links() == []
    assert host.networks() == {}
    assert host.state_ids() == []
    # Deleting what is already gone succeeds (Docker repeats deletes at start-up).
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id}) == {}
    assert host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": new_id()}) == {}


def test_docker_bridge_option_names_and_custom_bridge_name(host):
    net_id = new_id()
    name = f"{PREFIX}mybr"
    generic = {"com.docker.network.bridge.name": name, "com.docker.network.driver.mtu": "1400",
               "com.docker.network.bridge.enable_icc": "false"}
    host.ok("/NetworkDriver.CreateNetwork", network_body(net_id, 32, generic=generic))
    link = host.link(name)
    assert link is not None and link["mtu"] == 1400
    assert "10.32.0.1/24" in host.addrs(name)
    summary = host.networks()[net_id]
    assert (summary["bridge"], summary["mtu"], summary["icc"]) == (name, 1400, False)
    host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
    assert host.link(name) is None


def test_create_is_idempotent_and_a_retry_with_other_settings_is_refused(host):
    net_id = new_id()
    body = network_body(net_id, 33)
    host.ok("/NetworkDriver.CreateNetwork", body)
    before = host.links()
    assert host.ok("/NetworkDriver.CreateNetwork", body) == {}  # a retry after a lost answer
    assert host.links() == before and len(before) == 1
    err = host.err("/NetworkDriver.CreateNetwork", network_body(net_id, 34))
    assert "already exists with other settings" in err
    assert host.links() == before
    assert "10.34.0.1/24" not in host.addrs(before[0])


def test_internal_and_ipv6_networks(host):
    internal = new_id()
    host.ok("/NetworkDriver.CreateNetwork", network_body(internal, 35, internal=True))
    dual = new_id()
    host.ok("/NetworkDriver.CreateNetwork", network_body(dual, 36, v6="fd00:36::/64"))
    nets = host.networks()
    assert nets[internal]["internal"] is True
    assert nets[dual]["ipv6"] is True and "fd00:36::/64" in nets[dual]["subnets"]
    assert "fd00:36::1/64" in host.addrs(nets[dual]["bridge"])
    assert host.sysctl("net.ipv6.conf.all.forwarding") == "1"


def test_cli_lists_the_daemons_networks(host):
    net_id = new_id()
    host.ok("/NetworkDriver.CreateNetwork", network_body(net_id, 37))
    p = pynet_cli(host, "ls", "--json")
    assert p.returncode == 0, p.stderr
    (net,) = json.loads(p.stdout)
    assert (net["id"], net["mode"], net["subnets"], net["gateways"]) == (net_id, "nat", ["10.37.0.0/24"],
                                                                         ["10.37.0.1/24"])


def test_a_network_made_while_another_is_removed_takes_its_bridge_made_new(host):
    """DeleteNetwork retires the bridge (down, renamed, no address); a CreateNetwork before it is
    unregistered takes it instead of making one (kernel/retire.py reuse_bridge): nothing of the old
    network may show through, and it must work as a new bridge does."""
    sh("ip", "netns", "exec", host.ns.name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    try:
        old_id = new_id()
        generic = {"com.docker.network.driver.mtu": "1400"}
        host.ok("/NetworkDriver.CreateNetwork", network_body(old_id, 41, generic=generic, v6="fd00:41::/64"))
        old = host.networks()[old_id]["bridge"]
        old_index = host.link(old)["ifindex"]
        old_mac = host.link(old)["address"]
        host.ok("/NetworkDriver.DeleteNetwork", {"NetworkID": old_id})
        net = host.create_network(42)  # at once: the retired bridge is still registered
        link = json.loads(sh("ip", "-n", host.ns.name, "-j", "-d", "link", "show", "dev", net.bridge).stdout)[0]
        assert link["ifindex"] == old_index, "the retired bridge was not reused (test premise)"
        assert link["mtu"] == 1500 and link["address"] != old_mac
        assert link["ifalias"] == f"pynet:{TABLE}:{net.id}" and link.get("group") in ("default", 0, "0")
        assert "UP" in link["flags"]
        assert sorted(a for a in host.addrs(net.bridge) if not a.startswith("fe80")) == ["10.42.0.1/24"]
        # IPv6 as a new bridge would have it (the namespace's default, set to off above), not on as the old one's
        assert host.sysctl(f"net.ipv6.conf.{net.bridge}.disable_ipv6") == "1"
        assert host.sysctl(f"net.ipv4.conf.{net.bridge}.route_localnet") == "1"
        assert host.link(old) is None
        ctr = host.run_container(net, 2)
        assert ctr.ping(net.gateway)
        host.remove_container(ctr)
        host.delete_network(net)
        assert host.links() == []
    finally:
        sh("ip", "netns", "exec", host.ns.name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0")


def test_retired_links_of_another_pynet_daemon_are_not_ours_to_unregister(host):
    """Two pynet daemons on one host (the plugin and a test's, local and global scope) each retire
    links into a group of their own (derived from the link prefix): one reaper never takes the other's."""
    other_prefix = "po-"  # the global-scope daemon's default prefix
    assert retired_groups(other_prefix)[0] not in retired_groups(PREFIX)
    theirs = "po-ztest0"
    sh("ip", "-n", host.ns.name, "link", "add", theirs, "type", "veth", "peer", "name", theirs + "p")
    try:
        sh("ip", "-n", host.ns.name, "link", "set", theirs, "group", str(retired_groups(other_prefix)[0]))
        net = host.create_network(43)
        ctr = host.run_container(net, 2)
        host.remove_container(ctr)  # DeleteEndpoint retires the veth: our reaper's group delete follows
        host.delete_network(net)
        assert host.links() == []  # waits for our reaper
        assert sh("ip", "-n", host.ns.name, "link", "show", theirs, check=False).returncode == 0
    finally:
        sh("ip", "-n", host.ns.name, "link", "del", theirs, check=False)
