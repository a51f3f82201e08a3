"""The sections the runner measures, one module each, in the order they run.

A new section: a module here with `measure(b: Bench) -> dict` (its figures, stored under its key in
results.json; b gives the daemon, the parameters and the shared helpers), and one line in SECTIONS.
The report shows it once bench/report/ has a renderer registered for the same key.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from . import docker_run, iperf3, lan, lan_run, limits, metrics, ports, protocol, proxy_off, recovery, scale, swarm


class Section(NamedTuple):
    key: str  # its key in results.json's "sections" and for --only
    measure: Callable  # (Bench) -> dict
    restarts_dockerd: bool = False  # runs only with --proxy-off or --only; measured once (no retries)
    cleanup: Callable[[], list[str]] | None = None  # removes what it leaves outside the bench's prefix
    # False: measures engines of its own (the swarm bed), so a restart of the system dockerd while it
    # runs does not void its figures (one during its set-up still fails the attempt, and it is retried)
    uses_dockerd: bool = True


SECTIONS = [
    Section("protocol", protocol.measure),
    Section("recovery", recovery.measure),
    Section("docker_run", docker_run.measure),
    Section("iperf3", iperf3.measure),
    Section("ports", ports.measure),
    Section("lan", lan.measure, cleanup=lan.cleanup),
    Section("lan_run", lan_run.measure, cleanup=lan.cleanup),
    Section("swarm", swarm.measure, cleanup=swarm.cleanup, uses_dockerd=False),
    Section("metrics", metrics.measure, uses_dockerd=False),
    Section("limits", limits.measure, cleanup=lan.cleanup),
    Section("scale", scale.measure),
    Section("ports_proxy_off", proxy_off.measure, restarts_dockerd=True),
]
