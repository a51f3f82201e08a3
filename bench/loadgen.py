"""The load of sections 3 and 7: wrk (C, Debian's package) opening a new TCP connection for every
request, and where the CPU went meanwhile.

Closed loop: `wrk -t1 -c CONNS` keeps CONNS requests in flight, each on a connection of its own
(`Connection: close`; the server, bench/connrate.py, answers and closes with RST, so neither side
nor conntrack keeps a TIME_WAIT entry). One wrk thread is far from its own limit here: its user
time is a few % of its core; what fills that core is the kernel's work for the connections it
opens (TCP, and the NAT of each connection's first packet, which runs in the sender's context).

On a machine with 2 CPUs or more, wrk is pinned to CPU 0 and the server to CPU 1 (taskset), so
neither starves the other; each sample records both cores' busy share (/proc/stat: every process
on that core counts, the bench's or not), the CPU of wrk, of the server and of the docker-proxy
processes of the port, which tells which side ran out first.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from common import BenchError, sh

WRK = "/usr/bin/wrk"
CLIENT_CPU, SERVER_CPU = "0", "1"
HZ = os.sysconf("SC_CLK_TCK")
CT_COUNT, CT_MAX = "/proc/sys/net/netfilter/nf_conntrack_count", "/proc/sys/net/netfilter/nf_conntrack_max"


def pinned() -> bool:
    return (os.cpu_count() or 1) >= 2


def server_prefix() -> list[str]:
    """The command prefix that pins the connection server to its CPU (nothing on a 1-CPU machine)."""
    return ["taskset", "-c", SERVER_CPU] if pinned() else []


def describe(conns: int) -> dict:
    """What the report says about the load: the tool, its version, its options, the pinning."""
    version = sh(WRK, "--version", check=False).stdout.splitlines()
    return {"tool": "wrk", "version": version[0].split("[")[0].strip() if version else "?", "threads": 1,
            "conns": conns, "pinning": f"wrk on CPU {CLIENT_CPU}, server on CPU {SERVER_CPU}" if pinned()
            else "none (1 CPU)"}


def _cores() -> dict[str, tuple[int, int]]:
    """cpuN -> (busy, total) jiffies."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            v = [int(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal
            out[f[0]] = (sum(v) - v[3] - v[4], sum(v))
    return out


def _ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 when it is gone)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0


def proxies(lo: int, hi: int | None = None) -> list[int]:
    """The docker-proxy processes of host ports lo..hi (the userland proxy; none when it is off)."""
    hi = lo if hi is None else hi
    pids = []
    for pid in sh("pgrep", "-x", "docker-proxy", check=False).stdout.split():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-host-port" in args and lo <= int(args[args.index(b"-host-port") + 1]) <= hi:
                pids.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def conntrack_settle(limit: float = 0.25, timeout: float = 15) -> None:
    """Before a sample: wait until the conntrack table is below limit × its maximum (RST-closed
    connections stay there 10 s), so a sample never runs into a full table."""
    try:
        ct_max = int(Path(CT_MAX).read_text())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and int(Path(CT_COUNT).read_text()) > ct_max * limit:
        time.sleep(0.5)


def _parse(out: str) -> dict:
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise BenchError(f"wrk printed no rate: {out[-500:]}")
    errors = {k: int(v) for k, v in re.findall(r"(connect|read|write|timeout) (\d+)", out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["non-2xx"] = int(non2xx.group(1))
    return {"rate": float(rps.group(1)), "requests": int(m.group(1)), "errors": sum(errors.values()),
            "error_kinds": {k: v for k, v in errors.items() if v}}


def run(host: str, port: int, secs: float, conns: int, server_pid: int) -> dict:
    """One sample: wrk for secs against http://host:port/. Returns its rate (requests = new
    connections per second), errors, and the CPU shares (0..1 of one CPU) over the sample."""
    conntrack_settle()
    proxy_pids = proxies(port)
    cmd = [WRK, "-t1", f"-c{conns}", f"-d{max(1, round(secs))}s", "--timeout", "2s", "-H", "Connection: close",
           f"http://{host}:{port}/"]
    if pinned():
        cmd = ["taskset", "-c", CLIENT_CPU, *cmd]
    c0, s0, x0 = _cores(), _ticks(server_pid), sum(_ticks(p) for p in proxy_pids)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except BaseException:
        p.kill()
        p.wait()
        raise
    dt = time.monotonic() - t0
    c1, s1, x1 = _cores(), _ticks(server_pid), sum(_ticks(p) for p in proxy_pids)
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"wrk -> {os.waitstatus_to_exitcode(status)}: {(err or out).strip()[-400:]}")
    r = _parse(out)

    def busy(cpu: str) -> float:
        (b0, t0_), (b1, t1_) = c0.get(cpu, (0, 0)), c1.get(cpu, (0, 0))
        return (b1 - b0) / (t1_ - t0_) if t1_ > t0_ else float("nan")

    r["cpu"] = {"client_core": busy(f"cpu{CLIENT_CPU}") if pinned() else float("nan"),
                "server_core": busy(f"cpu{SERVER_CPU}") if pinned() else float("nan"),
                "wrk_user": ru.ru_utime / dt, "wrk": (ru.ru_utime + ru.ru_stime) / dt,
                "server": (s1 - s0) / HZ / dt}
    if proxy_pids:
        r["cpu"]["proxy"] = (x1 - x0) / HZ / dt
    return r
