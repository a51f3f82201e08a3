"""Section: what the LAN checks cost `docker run` (issue 14): transparent with the address probe on,
with it off (-o probe=false), and with DHCP from the LAN's server (--ipam-driver pynet, dnsmasq in the
LAN's router namespace: DHCP exchange + probe of the leased address; dnsmasq with --no-ping, so the
time is pynet's, not dnsmasq's own ping check, which delays offers of new addresses by seconds). Besides the wall time of
`docker run --rm busybox true`, the daemon's own call log gives CreateEndpoint (where the probe runs
for Docker-IPAM addresses) and RequestAddress (the DHCP exchange) in milliseconds. Does not restart
dockerd. The networks share the LAN's subnet (one transparent network per parent and subnet): each
is made for its turn in a round and removed after."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

from common import DRIVER, IMAGE, LABEL, NAME, del_netns, docker, sh, timed_docker

from . import lan

if TYPE_CHECKING:
    from runner import Bench

NET = f"{NAME}-lr"
SUBNET, ROUTER = f"{lan.LAN_NET}.0/24", lan.LAN_ROUTER
DHCP_RANGE = (f"{lan.LAN_NET}.200", f"{lan.LAN_NET}.250")
KEYS = {  # what `docker network create` gets besides -d, the parent and the subnet
    "transparent, probe on": ["--ip-range", f"{lan.LAN_NET}.128/26"],
    "transparent, probe off": ["--ip-range", f"{lan.LAN_NET}.128/26", "-o", "probe=false"],
    "transparent, DHCP": ["--ipam-driver", DRIVER],
}
RUN = ["run", "--rm", "--label", LABEL, "--net", NET, IMAGE, "true"]


def dnsmasq(b: Bench):
    rt = f"{NAME}-rt"
    return b.spawn(["ip", "netns", "exec", rt, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0",
                    "--interface=r0", "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-ping",
                    f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,10m",
                    f"--dhcp-option=option:router,{ROUTER}", f"--dhcp-leasefile=/tmp/{NAME}-lr.leases",
                    "--dhcp-authoritative", f"--pid-file=/tmp/{NAME}-lr-dnsmasq.pid"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def calls_ms(b: Bench, start: int) -> dict[str, list[float]]:
    """Durations (ms) of the daemon's calls logged after byte `start` of its log, by call."""
    out: dict[str, list[float]] = {}
    with open(b.d.log_path, "rb") as fh:
        fh.seek(start)
        for raw in fh:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            f = rec.get("fields", rec)
            if isinstance(f, dict) and "call" in f and "ms" in f and not f.get("err"):
                out.setdefault(f["call"].rsplit(".", 1)[-1], []).append(float(f["ms"]))
    return out


def log_size(b: Bench) -> int:
    try:
        return b.d.log_path.stat().st_size
    except OSError:
        return 0


def turn(b: Bench, key: str, runs: int) -> tuple[list[float], dict[str, list[float]]]:
    """One network of `key` for its turn: a warm-up run, then `runs` timed ones."""
    docker("network", "create", "-d", DRIVER, "--label", LABEL, "-o", "mode=transparent", "-o",
           f"parent={lan.PARENT}", "--subnet", SUBNET, "--gateway", ROUTER, *KEYS[key], NET)
    try:
        timed_docker(*RUN)
        start = log_size(b)
        times = [timed_docker(*RUN) for _ in range(runs)]
        return times, calls_ms(b, start)
    finally:
        docker("network", "rm", NET, check=False)


def measure(b: Bench) -> dict:
    lan.cleanup()
    docker("network", "rm", NET, check=False)
    lan.build()
    dnsmasq(b)
    runs = max(2, b.p["run_rounds"] // 2)
    res = {"run_s": {k: [] for k in KEYS}, "create_endpoint_ms": {k: [] for k in KEYS},
           "request_address_ms": {k: [] for k in KEYS}}
    try:
        for r in range(b.p["iperf_rounds"]):
            for key in KEYS if r % 2 == 0 else reversed(list(KEYS)):
                times, calls = turn(b, key, runs)
                res["run_s"][key] += times
                res["create_endpoint_ms"][key] += calls.get("CreateEndpoint", [])
                res["request_address_ms"][key] += calls.get("RequestAddress", [])
    finally:
        b.kill_children()
        b.section_cleanup()
        del_netns(*(f"{NAME}-{ns}" for ns in ("cl", "rt", "sw")))
        lan.cleanup()
        sh("rm", "-f", f"/tmp/{NAME}-lr.leases", f"/tmp/{NAME}-lr-dnsmasq.pid", check=False)
    return {**res, "runs_per_turn": runs, "subnet": SUBNET,
            "probe": "2 probes in 0.2 s (the defaults: probe_count, probe_wait)"}
