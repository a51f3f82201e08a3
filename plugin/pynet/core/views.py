"""What the control API shows of the state (pynet ls / inspect / ports / leases / status)."""

from __future__ import annotations

from .. import limits
from ..model import Network, to_dict


def summary(net: Network, mode) -> dict:
    return {
        "id": net.id, "mode": net.mode, "bridge": net.bridge, "parent": net.parent, "shim": net.shim,
        "ipam": net.ipam or "docker", "ipam6": net.ipam6 or ("docker" if net.v6 else ""), "probe": net.probe,
        "internal": net.internal,
        "ipv6": net.ipv6, "icc": net.icc, "masquerade": net.masquerade, "mtu": net.mtu,
        "subnets": [s.pool for s in net.v4 + net.v6],
        "limits": limits.effective(net.limits, {}).as_options(),
        "gateways": [s.gateway for s in net.v4 + net.v6],
        "endpoints": len(net.endpoints),
        "vni": net.vni, "vxlan": net.vxlan, "local": net.local,  # overlay: its VXLAN segment
        # For `pynet doctor`: whether its traffic crosses the host's forward path, what the kernel must make.
        "forwards": mode.forwards, "kernel_needs": list(mode.kernel_needs) + (["8021q"] if net.vlan else [])
        + (["limits"] if net.limits or any(ep.limits for ep in net.endpoints.values()) else []),
    }


def detail(net: Network, mode) -> dict:
    d = summary(net, mode)
    d["options"] = net.options
    d["leases"] = list(net.leases.values()) + list(net.leases6.values())
    d["endpoints"] = [
        {"id": ep.id, "mac": ep.mac, "ipv4": ep.ipv4, "ipv6": ep.ipv6, "host_if": ep.host_if, "peer_if": ep.peer_if,
         "sandbox": ep.sandbox, "ports": [to_dict(p) for p in ep.ports], "gateway": ep.gateway,
         "parked": [to_dict(p) for p in ep.parked],
         "limits": limits.effective(net.limits, ep.limits).as_options()}
        for ep in net.endpoints.values()
    ]
    return d


def leases(nets) -> list[dict]:
    """DHCPv4 and DHCPv6 leases; state "bound", or "lost" (expired or refused: the address was taken away)."""
    return [dict(lease, network=n.id, family=family, state="lost" if lease.get("lost_at") else "bound")
            for n in nets for family, table in ((4, n.leases), (6, n.leases6)) for lease in table.values()]
