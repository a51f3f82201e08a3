"""bench/: what sections 3 and 7 read from the tools they run, without running them: wrk's output
(bench/loadgen.py) and Docker's iptables rules for a port, copied to other ports (section 7's
10,000 ports with the userland proxy off). Run in a subprocess with bench/ as the working
directory, as the runner imports them (no root, no dockerd)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

WRK_OUT = """\
Running 1s test @ http://127.0.0.1:17081/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  12.34ms   80.00%
    Req/Sec    10.01k   500.00    11.00k    70.00%
  10012 requests in 1.00s, 0.53MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  10005.12
Transfer/sec:    535.00KB
"""

IPTABLES_SAVE = """\
*nat
:DOCKER - [0:0]
-A POSTROUTING -s 10.251.2.3/32 -d 10.251.2.3/32 -p tcp -m tcp --dport 30000 -j MASQUERADE
-A DOCKER ! -i br-1 -p tcp -m tcp --dport 30000 -j DNAT --to-destination 10.251.2.3:30000
-A DOCKER ! -i br-1 -p tcp -m tcp --dport 30001 -j DNAT --to-destination 10.251.2.3:30001
-A DOCKER ! -i br-1 -p tcp -m tcp --dport 300000 -j DNAT --to-destination 10.251.2.3:300000
COMMIT
*filter
-A DOCKER -d 10.251.2.3/32 ! -i br-1 -o br-1 -p tcp -m tcp --dport 30000 -j ACCEPT
-A FORWARD -j DOCKER-USER
COMMIT
"""


def run(code: str) -> object:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=BENCH, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_wrk_output_parsed():
    r = run(f"""
        import json, loadgen
        print(json.dumps(loadgen._parse({WRK_OUT!r})))
    """)
    assert r == {"rate": 10005.12, "requests": 10012, "errors": 6,
                 "error_kinds": {"read": 3, "timeout": 1, "non-2xx": 2}}


def test_wrk_output_without_a_rate_is_an_error():
    r = run("""
        import json, loadgen
        from common import BenchError
        try:
            loadgen._parse("unable to connect to 127.0.0.1:1 Connection refused")
            print(json.dumps("parsed"))
        except BenchError as e:
            print(json.dumps(str(e)))
    """)
    assert r.startswith("wrk printed no rate")


def test_docker_port_rules_copied_to_other_ports():
    r = run(f"""
        import json, subprocess
        from measure import proxy_off
        proxy_off.sh = lambda *a, **k: subprocess.CompletedProcess(a, 0, {IPTABLES_SAVE!r}, "")
        print(json.dumps(proxy_off.docker_port_rules(30000, range(31000, 31002))))
    """)
    assert r == {
        "nat": ["-A POSTROUTING -s 10.251.2.3/32 -d 10.251.2.3/32 -p tcp -m tcp --dport 31000 -j MASQUERADE",
                "-A DOCKER ! -i br-1 -p tcp -m tcp --dport 31000 -j DNAT --to-destination 10.251.2.3:31000",
                "-A POSTROUTING -s 10.251.2.3/32 -d 10.251.2.3/32 -p tcp -m tcp --dport 31001 -j MASQUERADE",
                "-A DOCKER ! -i br-1 -p tcp -m tcp --dport 31001 -j DNAT --to-destination 10.251.2.3:31001"],
        "filter": ["-A DOCKER -d 10.251.2.3/32 ! -i br-1 -o br-1 -p tcp -m tcp --dport 31000 -j ACCEPT",
                   "-A DOCKER -d 10.251.2.3/32 ! -i br-1 -o br-1 -p tcp -m tcp --dport 31001 -j ACCEPT"]}
