"""The live part of /metrics: a prometheus_client collector over one snapshot (core/stats.py).

Every metric pynet exports, with its labels (README "Metrics" lists them for users):
IDs are Docker's short form (12 characters); container names are Docker's, which the daemon
never asks for (`pynet stats` does, or join on `pynet_endpoint_info` in Prometheus).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import __version__
from ..core.stats import LEASE_STATES, Snapshot

EP = ["network", "endpoint", "mode"]  # the interface (and more) is in pynet_endpoint_info: 10,000s of lines less
PORT = ["network", "endpoint", "proto", "host_ip", "host_port", "container_port"]
TRAFFIC = (  # (metric, Traffic field, help)
    ("pynet_endpoint_receive_bytes", "rx_bytes", "Bytes received by the container on this endpoint"),
    ("pynet_endpoint_transmit_bytes", "tx_bytes", "Bytes sent by the container on this endpoint"),
    ("pynet_endpoint_receive_packets", "rx_packets", "Packets received by the container on this endpoint"),
    ("pynet_endpoint_transmit_packets", "tx_packets", "Packets sent by the container on this endpoint"),
    ("pynet_endpoint_receive_drops", "rx_dropped", "Packets for the container dropped on their way in "
                                                   "(the host-side interface's transmit drops)"),
    ("pynet_endpoint_transmit_drops", "tx_dropped", "Packets from the container dropped on their way out "
                                                    "(the host-side interface's receive drops)"),
)


def short(object_id: str) -> str:
    return object_id[:12]


class Live:
    """A custom collector: what one scrape read, as metric families."""

    def __init__(self, snap: Snapshot, driver_name: str, modes):
        self.s = snap
        self.driver_name = driver_name
        self.modes = list(modes)

    def collect(self):
        yield from self._endpoints()
        yield from self._ports()
        yield from self._drops()
        yield from self._leases()
        yield from self._counts()
        yield from self._daemon()

    def _endpoints(self):
        info = GaugeMetricFamily("pynet_endpoint_info", "One per endpoint; counted=false: its mode leaves no "
                                 "host-side interface to count traffic on (transparent)",
                                 labels=EP + ["interface", "mac", "ipv4", "ipv6", "counted"])
        fams = [(CounterMetricFamily(name, text, labels=EP), attr) for name, attr, text in TRAFFIC]
        for e in self.s.endpoints:
            labels = [short(e.network), short(e.endpoint), e.mode]
            info.add_metric(labels + [e.interface, e.mac, e.ipv4, e.ipv6, str(e.counted).lower()], 1)
            if e.traffic is not None:
                for fam, attr in fams:
                    fam.add_metric(labels, getattr(e.traffic, attr))
        yield info
        for fam, _attr in fams:
            yield fam

    def _ports(self):
        packets = CounterMetricFamily("pynet_published_port_packets", "Packets through a published port, both "
                                      "directions (counter of its nftables map element)", labels=PORT)
        nbytes = CounterMetricFamily("pynet_published_port_bytes", "Bytes through a published port, both "
                                     "directions (counter of its nftables map element)", labels=PORT)
        for p in self.s.ports:
            if p.packets is None:
                continue
            b = p.binding
            host_ip = b.host_ip or ("0.0.0.0" if b.family == 4 else "::")
            labels = [short(p.network), short(p.endpoint), b.proto, host_ip, str(b.host_port), str(b.container_port)]
            packets.add_metric(labels, p.packets)
            nbytes.add_metric(labels, p.bytes)
        yield packets
        yield nbytes

    def _drops(self):
        spoof = CounterMetricFamily("pynet_spoof_drops", "Packets a container sent posing as another (its MAC, "
                                    "address, ARP or ND claims), dropped", labels=["mode", "check"])
        other = CounterMetricFamily("pynet_firewall_drops", "Packets pynet's firewall dropped, by reason "
                                    "(isolation, internal, internal-host, localhost, overlay-gateway)", labels=["reason"])
        for comment, (p, _b) in sorted(self.s.drops.items()):
            parts = comment.split(":")
            if parts[0] == "spoof" and len(parts) == 3:
                spoof.add_metric(parts[1:], p)
            elif parts[0] == "drop" and len(parts) == 2:
                other.add_metric(parts[1:], p)
        yield spoof
        yield other

    def _leases(self):
        states = GaugeMetricFamily("pynet_dhcp_leases", "DHCP (family 4) and DHCPv6 (6) leases held for "
                                   "containers, by state", labels=["network", "family", "state"])
        expiry = GaugeMetricFamily("pynet_dhcp_lease_expiry_timestamp_seconds", "When a lease ends unless renewed",
                                   labels=["network", "family", "mac", "ip"])
        renewals = CounterMetricFamily("pynet_dhcp_lease_renewals", "Renewals of a lease since it was acquired",
                                       labels=["network", "family", "mac", "ip"])
        by_net: dict[tuple[str, int], dict[str, int]] = {}
        for lease in self.s.leases:
            by_net.setdefault((lease.network, lease.family), dict.fromkeys(LEASE_STATES, 0))[lease.state] += 1
            labels = [short(lease.network), str(lease.family), lease.mac, lease.ip]
            expiry.add_metric(labels, lease.expires)
            renewals.add_metric(labels, lease.renewals)
        for (net, family), counts in sorted(by_net.items()):
            for state, n in counts.items():
                states.add_metric([short(net), str(family), state], n)
        yield states
        yield expiry
        yield renewals
        yield CounterMetricFamily("pynet_dhcp_renewal_failures", "DHCP renewals that got no usable answer, "
                                  "since pynet started", value=self.s.renewal_failures)

    def _counts(self):
        nets = GaugeMetricFamily("pynet_networks", "pynet networks, by mode", labels=["mode"])
        eps = GaugeMetricFamily("pynet_endpoints", "Endpoints of a network", labels=["network", "mode"])
        ports = GaugeMetricFamily("pynet_published_ports", "Published ports of a network (host address, "
                                  "protocol and port each)", labels=["network"])
        by_mode = dict.fromkeys(self.modes, 0)
        per_net = {net_id: [0, 0] for net_id in self.s.networks}
        for net_id, mode in self.s.networks.items():
            by_mode[mode] = by_mode.get(mode, 0) + 1
        for e in self.s.endpoints:
            per_net[e.network][0] += 1
        for p in self.s.ports:
            per_net[p.network][1] += 1
        for mode, n in by_mode.items():
            nets.add_metric([mode], n)
        for net_id, (n_eps, n_ports) in per_net.items():
            eps.add_metric([short(net_id), self.s.networks[net_id]], n_eps)
            ports.add_metric([short(net_id)], n_ports)
        yield nets
        yield eps
        yield ports

    def _daemon(self):
        yield GaugeMetricFamily("pynet_state_damaged_files", "Networks (and whole state databases) set aside "
                                "as damaged (see `pynet doctor`): their calls fail until restored or forgotten",
                                value=self.s.damaged_state_files)
        yield CounterMetricFamily("pynet_state_save_failures", "State writes that could not be made (the call "
                                  "failed and was undone), since pynet started", value=self.s.save_failures)
        errors = GaugeMetricFamily("pynet_scrape_error", "1 when this scrape could not read a source (links, "
                                   "nft): its metrics are missing", labels=["source"])
        for source in ("links", "nft"):
            errors.add_metric([source], 1 if source in self.s.errors else 0)
        yield errors
        yield GaugeMetricFamily("pynet_scrape_read_seconds", "Time this scrape spent reading the kernel (one "
                                "link dump, one nft listing per table)", value=self.s.read_seconds)
        info = GaugeMetricFamily("pynet_info", "pynet's version and driver name", labels=["version", "driver"])
        info.add_metric([__version__, self.driver_name], 1)
        yield info
