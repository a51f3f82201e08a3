"""pynet under each firewall Docker may run, rebuilt in the daemon's namespace from moby's sources.

iptables backend (Docker 20.10-29 default): FORWARD policy DROP, jumps to DOCKER-USER then
DOCKER-FORWARD (28+); pynet's two accepts in DOCKER-USER let its traffic through.
nftables backend (Docker 29 --firewall-backend=nftables): tables `ip docker-bridges` whose base
chains have policy accept and verdict maps keyed by Docker's bridge names only, no DOCKER-USER,
ip_forward left alone. --iptables=false: nothing at all. In every case a nat container reaches the
LAN (masqueraded) and a LAN host reaches its published port; `pynet doctor`'s status says which.
"""

from __future__ import annotations

import pytest

from lib import sh
from nslib import UPLINK_CLIENT, UPLINK_HOST, fetch, peer_server, portmap, until

IPTABLES_28 = """
table ip filter {
  chain DOCKER-USER { }
  chain DOCKER { iifname != "docker0" oifname "docker0" drop; }
  chain DOCKER-CT { oifname "docker0" ct state related,established accept; }
  chain DOCKER-BRIDGE { oifname "docker0" jump DOCKER; }
  chain DOCKER-ISOLATION-STAGE-2 { oifname "docker0" drop; }
  chain DOCKER-ISOLATION-STAGE-1 { iifname "docker0" oifname != "docker0" jump DOCKER-ISOLATION-STAGE-2; }
  chain DOCKER-FORWARD { jump DOCKER-CT; jump DOCKER-ISOLATION-STAGE-1; jump DOCKER-BRIDGE; iifname "docker0" accept; }
  chain FORWARD { type filter hook forward priority filter; policy drop; jump DOCKER-USER; jump DOCKER-FORWARD; }
}
"""

NFTABLES_29 = """
table ip docker-bridges {
  chain filter-forward-in__docker0 { ct state established,related accept; counter drop comment "UNPUBLISHED PORT DROP"; }
  chain filter-forward-out__docker0 { ct state established,related accept; counter accept comment "OUTGOING"; }
  map filter-forward-in-jumps { type ifname : verdict; elements = { "docker0" : jump filter-forward-in__docker0 } }
  map filter-forward-out-jumps { type ifname : verdict; elements = { "docker0" : jump filter-forward-out__docker0 } }
  chain filter-FORWARD {
    type filter hook forward priority filter; policy accept;
    oifname vmap @filter-forward-in-jumps
    iifname vmap @filter-forward-out-jumps
  }
  chain raw-PREROUTING {
    type filter hook prerouting priority raw; policy accept;
    ip daddr 172.17.0.2 iifname != "docker0" counter drop comment "DROP DIRECT ACCESS"
  }
  chain nat-POSTROUTING { type nat hook postrouting priority srcnat; policy accept; }
}
"""


def _docker_firewall(host, kind: str) -> None:
    """What dockerd would have made, before pynet starts (as at boot: dockerd first)."""
    host.ns.run("sysctl", "-qw", "net.ipv4.ip_forward=0")  # Docker 29 (nftables) leaves it to the host
    script = {"iptables": IPTABLES_28, "nftables": NFTABLES_29, "none": ""}[kind]
    if script:
        sh("ip", "netns", "exec", host.ns.name, "nft", "-f", "-", input=script)


@pytest.mark.parametrize("kind", ["iptables", "nftables", "none"])
def test_nat_traffic_under_each_docker_firewall(host, kind):
    _docker_firewall(host, kind)
    lan = host.lan_client()
    out = peer_server(lan.name, 8000)  # the LAN host answers with the source it sees
    host.procs.append(out)
    net = host.create_network(61)
    web = host.run_container(net, 2)
    web.serve(8000)
    assert host.ok("/NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": net.id, "EndpointID": web.ep_id,
        "Options": {"com.docker.network.portmap": portmap((8000, 18610))}}) == {}
    assert host.sysctl("net.ipv4.ip_forward") == "1"  # pynet enables forwarding itself
    assert web.fetch(f"http://{UPLINK_CLIENT}:8000/") == UPLINK_HOST  # out, masqueraded
    assert fetch(f"http://{UPLINK_HOST}:18610/", lan.name) == UPLINK_CLIENT  # in, source kept
    assert host.get("/pynet/v1/status")["docker_firewall"] == kind
    du = host.nft("list", "chain", "ip", "filter", "DOCKER-USER", check=False)
    if kind == "iptables":
        assert '"pn-' in du.stdout and "accept" in du.stdout
        # Control: without them Docker's FORWARD policy drops pynet's traffic (a dockerd restart
        # re-creates DOCKER-USER empty); pynet puts them back within its check interval.
        host.nft("flush", "chain", "ip", "filter", "DOCKER-USER")
        assert web.fetch(f"http://{UPLINK_CLIENT}:8000/", timeout=1) is None
        until(lambda: web.fetch(f"http://{UPLINK_CLIENT}:8000/", timeout=1) == UPLINK_HOST, timeout=10,
              what="DOCKER-USER accepts restored")
    else:
        assert du.returncode != 0  # pynet makes no DOCKER-USER where Docker has none
