"""GET /metrics: Prometheus text (prometheus_client's exposition), on the control socket and, when
`metrics_address` is set, on a TCP address (an app of its own that serves nothing else).

Two parts: the calls (a histogram of every call's duration and a counter of its errors, kept
by the errors_and_logs middleware in a registry of this app's own) and the live figures (read
at scrape time by core/stats.py, yielded by api/exposition.py's collector).
"""

from __future__ import annotations

import time

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from .exposition import Live

# No `*_created` series (a start time per call label): they double the histogram's lines for nothing.
prometheus_client.disable_created_metrics()
# Every name and label here is a classic one, so the text is the 0.0.4 format whatever the library's
# newest (0.26 announces 1.0.0, which Prometheus servers before 3.0 do not name): say 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A protocol call takes about a millisecond; a call that waits on a network's lock, seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class CallMetrics:
    """Call counts, latencies and errors, per call (the route's path: a bounded set of labels)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram("pynet_call_duration_seconds", "Time to answer a call (Docker's protocol "
                                  "calls and the CLI's /pynet/v1 ones), by call", ["call"], buckets=BUCKETS,
                                  registry=self.registry)
        self.errors = Counter("pynet_call_errors", "Calls answered with an error, by call and HTTP status",
                              ["call", "status"], registry=self.registry)
        self.last = 0.0

    def observe(self, request: web.Request, status: int, seconds: float, failed: bool) -> None:
        self.last = time.monotonic()  # when the last call ended (app.py: the daemon is idle since)
        call = route_of(request)
        self.duration.labels(call).observe(seconds)
        if failed:
            self.errors.labels(call, str(status)).inc()


def route_of(request: web.Request) -> str:
    """The call's route ("/NetworkDriver.Join", "/pynet/v1/networks/{ref}"), "unknown" for a path no
    route has: a fuzzer's random paths must not grow the label set."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    if resource is None or request.match_info.http_exception is not None:
        return "unknown"
    return resource.canonical.lstrip("/")


CALL_METRICS = web.AppKey("call_metrics", CallMetrics)


class Scrape:
    """What one scrape exposes: the calls' registry and the live collector, as one registry."""

    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for c in self.collectors:
            yield from c.collect()


def handler(driver, cfg, calls: CallMetrics):
    async def metrics(_request: web.Request) -> web.Response:
        snap = await driver.stats.snapshot()
        body = generate_latest(Scrape(calls.registry, Live(snap, cfg.driver_name, driver.modes)))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    return metrics


def routes(driver, cfg, calls: CallMetrics) -> list[web.RouteDef]:
    return [web.get("/metrics", handler(driver, cfg, calls))]


def tcp_app(driver, cfg, calls: CallMetrics) -> web.Application:
    """The TCP listener's app: /metrics only (the protocol and the control API stay on the socket)."""
    app = web.Application()
    app.add_routes(routes(driver, cfg, calls))
    return app
