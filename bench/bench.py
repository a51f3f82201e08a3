#!/usr/bin/env python3
"""pynet benchmark suite (`make bench`, `make bench QUICK=1`): writes report.md and PNG charts.

Sections (issue 8), each measured in interleaved rounds against a baseline
taken in the same run:
  1. protocol call latency per call type (the daemon's socket driven directly) and daemon RSS
  2. `docker run --rm busybox true`: pynet nat vs a user-defined Docker bridge vs --net none;
     10 containers started in parallel
  3. published ports: new-connection rate (wrk) through one port with 0 / 1,000 / 10,000 other
     ports published, and the time to publish/unpublish N ports (pynet vs Docker's bridge
     with its default userland proxy)
  4. iperf3 throughput: container<->host, container<->container (pynet vs Docker bridge vs a
     hand-built veth+bridge in namespaces)
  5. recovery: kill -9 of pynet -> first successful /Plugin.Activate, with 100 endpoints in state
  6. iperf3 container <-> a LAN client of namespaces: each pynet mode vs its baseline
  7. with --proxy-off: section 3 again against dockerd --userland-proxy=false, Docker at 10,000
     other ports too (restarts dockerd)
  8. a swarm of two Docker 28 nodes (scripts/swarm.sh): task start time and node-to-node iperf3
     over pynet overlay and l2bridge vs Docker's overlay and macvlan (`--only swarm` alone)
  9. metrics scrape cost: GET /metrics at 0 / 100 / 1,000 endpoints (10 published ports each)

Layout: this file is the command line; runner.py the run (Bench), params.py its parameters;
measure/ one module per section and its registry (connserver.py: the connection servers of
sections 3 and 7); loadgen.py the load generator (wrk) and its CPU accounting, connrate.py the
server; daemon.py the daemon under test; common.py names and shell/docker helpers; report/
report.md and the charts from the results (it never imports the runner); shared.py what both
know. `--report-only` rebuilds the report from results.json.

Everything it makes carries its own names (driver pynet-bench, links pn-bb-*, nft
table pynet_bench, namespaces pnbb-*, Docker objects labelled pynet-bench=1) and is
removed on exit, Ctrl-C and errors included. This is a report, not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import report  # bench/report/: report.md and the charts (never imports the runner)
from common import log
from measure import SECTIONS
from measure.proxy_off import CI_DONE, PROXY_OFF_FLAG
from runner import Bench


def report_only(results: Path, out: Path) -> int:
    """report.md and the charts from a results.json, as the run that wrote it made them (no root, no dockerd)."""
    data = json.loads(results.read_text())
    # --proxy-off is not in results.json: a run that had it has the section, its error or its duration
    proxy_off = ("ports_proxy_off" in data.get("sections", {}) or "ports_proxy_off" in data.get("errors", {})
                 or any(k.startswith("ports_proxy_off") for k in data.get("durations_s", {})))
    report.write(out, data, proxy_off)
    log(f"report rebuilt from {results}: {out / 'report.md'}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (a few minutes)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="where report.md and PNGs go")
    ap.add_argument("--only", default="", help=f"comma-separated sections to run ({','.join(s.key for s in SECTIONS)})"
                    f"; default all but {', '.join(s.key for s in SECTIONS if s.restarts_dockerd)}")
    ap.add_argument("--proxy-off", action="store_true", help="also section ports_proxy_off: restarts dockerd "
                    f"with {PROXY_OFF_FLAG} (after {CI_DONE} exists), measures, restores it (`make bench` full)")
    ap.add_argument("--report-only", action="store_true", help="measure nothing: rebuild report.md and the charts "
                    "in --out from results.json (`make bench-report`)")
    ap.add_argument("--results", default="", help="with --report-only: the results.json to read (default: the "
                    "one in --out)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                    help="override one of params.py's parameters for this run, e.g. scale_levels=[200] "
                    "scale_turns=[5] (results.json records the parameters used)")
    ap.add_argument("--engine-sock", default="", help="measure on this engine, one of the bench's own "
                    "(scripts/bench-engine.sh run SECTION); section ports_proxy_off: it runs with "
                    f"{PROXY_OFF_FLAG} already, nothing is restarted")
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        return report_only(Path(args.results) if args.results else out / "results.json", out)
    if os.geteuid() == 0:
        import common
        from common import engine
        engine.activate()  # PYNET_ENGINE (default 20): DOCKER_HOST, and Docker 28's network namespace
        if args.engine_sock:
            os.environ["DOCKER_HOST"] = f"unix://{args.engine_sock}"
            common.ENGINE_SOCK = args.engine_sock  # dockerd_pid(): restarts of this engine, not the system's

    def to_interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, to_interrupt)
    signal.signal(signal.SIGHUP, to_interrupt)
    b = Bench(args.quick, out)
    b.only = {x.strip() for x in args.only.split(",") if x.strip()}
    for spec in args.param:
        name, _, value = spec.partition("=")
        if name not in b.p:
            ap.error(f"--param {spec}: no parameter {name!r} (params.py has {', '.join(sorted(b.p))})")
        try:
            b.p[name] = json.loads(value)
        except ValueError:
            ap.error(f"--param {spec}: the value must be JSON, e.g. {name}={json.dumps(b.p[name])}")
    b.proxy_off = args.proxy_off
    b.engine_sock = args.engine_sock
    rc = 1
    try:
        rc = b.run()
        log(f"done in {b.res.get('total_s', 0):.0f} s: {out / 'report.md'}")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        rc = 130
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        rc = 1
    finally:
        if b.owns_names:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
            try:
                b.dockerd_restore()  # normally done by its section already
            except Exception:  # noqa: BLE001
                traceback.print_exc()
            left = b.cleanup(final=True)
            if left:
                log(f"cleaned up: {', '.join(left)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
