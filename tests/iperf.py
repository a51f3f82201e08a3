"""iperf3 for the limit tests: a server in a namespace (or a container), a measured TCP run from another.

Throughput is what iperf3's receiver counted (TCP payload: a shaper that counts Ethernet frames
gives ~95.6% of its rate as payload with a 1500-byte MTU). The first OMIT seconds are not counted:
TCP's slow start, and nftables' policer lets a full second at the rate through on top of its burst
after an idle time (kernel/police.py), both of which the steady rate is not.
"""

from __future__ import annotations

import json
import subprocess
import time

SECS = 4
OMIT = 2
PORT = 5201


def server(prefix: list[str], port: int = PORT, bind: str = "") -> subprocess.Popen:
    """`iperf3 -s` run with the command prefix ([] for here, ["ip", "netns", "exec", NS], ...)."""
    p = subprocess.Popen(prefix + ["iperf3", "-s", "-p", str(port)] + (["-B", bind] if bind else []),
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.3)
    return p


def mbits(prefix: list[str], ip: str, reverse: bool = False, secs: int = SECS, omit: int = OMIT,
          port: int = PORT, tries: int = 3) -> float:
    """Mbit/s received in a run from `prefix` to `ip` (reverse: the server sends)."""
    args = prefix + ["iperf3", "-c", ip, "-p", str(port), "-t", str(secs), "-O", str(omit), "-J",
                     "--connect-timeout", "3000"] + (["-R"] if reverse else [])
    out = ""
    for _ in range(tries):
        p = subprocess.run(args, capture_output=True, text=True, timeout=secs + omit + 30)
        out = p.stdout + p.stderr
        doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
        if p.returncode == 0 and "sum_received" in doc.get("end", {}):
            return doc["end"]["sum_received"]["bits_per_second"] / 1e6
        # iperf3 may exit 0 with only {"error": ...} (e.g. "the server is busy running a test": the
        # one-client-at-a-time server is still finishing the last run)
        out = doc.get("error") or out
        time.sleep(1)
    raise AssertionError(f"iperf3 {' '.join(args)} failed: {out[-500:]}")


def within(measured: float, rate_mbit: float, tolerance: float = 0.10) -> bool:
    return abs(measured - rate_mbit) <= tolerance * rate_mbit
