"""aiohttp application factory and the `serve` loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket as socketlib
import time

from aiohttp import web

from . import procmem
from .api import control, metrics, protocol
from .config import Config, parse_address
from .core.driver import Driver
from .store import Store

log = logging.getLogger("pynet")
DRIVER = web.AppKey("driver", Driver)


def make_app(cfg: Config, driver: Driver) -> web.Application:
    app = web.Application(middlewares=[protocol.errors_and_logs], client_max_size=cfg.max_body)
    app[protocol.MAX_BODY] = cfg.max_body
    app[DRIVER] = driver
    calls = app[metrics.CALL_METRICS] = metrics.CallMetrics()
    app[protocol.OBSERVE] = calls.observe
    app.add_routes(protocol.routes(driver, ["NetworkDriver", "IpamDriver"], scope=cfg.scope,
                                   connectivity_scope=cfg.connectivity_scope))
    app.add_routes(control.routes(driver, cfg))
    app.add_routes(metrics.routes(driver, cfg, calls))
    return app


async def start_metrics_listener(cfg: Config, app: web.Application) -> web.AppRunner | None:
    """/metrics on cfg.metrics_address too. A port that cannot be bound is logged, not fatal:
    Docker's networking must not wait on a monitoring setting."""
    if not cfg.metrics_address:
        return None
    host, port = parse_address(cfg.metrics_address)
    runner = web.AppRunner(metrics.tcp_app(app[DRIVER], cfg, app[metrics.CALL_METRICS]), access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        log.error("cannot serve metrics", extra={"fields": {"address": cfg.metrics_address, "error": str(e)}})
        await runner.cleanup()
        return None
    log.info("metrics", extra={"fields": {"address": cfg.metrics_address}})
    return runner


def bind_socket(path: str) -> socketlib.socket:
    """Root-only unix socket; a stale file from a killed daemon is replaced."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    probe = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        raise SystemExit(f"pynet: another daemon already listens on {path}")
    finally:
        probe.close()
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


async def serve(cfg: Config) -> None:
    from .kernel.links import Links
    from .kernel.nft import Nft

    links = Links(cfg.link_prefix)
    await links.open()
    # PYNET_STORE_VERIFY=1 (tests): every save is read back and compared with memory.
    nft = Nft()
    driver = Driver(cfg, Store(cfg.state_dir, verify=os.environ.get("PYNET_STORE_VERIFY") == "1"), links, nft)
    await driver.start()
    app = make_app(cfg, driver)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = bind_socket(cfg.socket)
    site = web.SockSite(runner, sock)
    await site.start()
    metrics_runner = await start_metrics_listener(cfg, app)
    log.info("ready", extra={"fields": {"socket": cfg.socket, "driver": cfg.driver_name,
                                        "networks": len(driver.state.nets)}})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def firewall_watch():
        while True:
            await asyncio.sleep(cfg.firewall_check_interval)
            try:
                await driver.reconciler.check_firewall()
                await driver.reconciler.free_ports_of_gone_endpoints()
                await driver.state.tidy()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("firewall check failed")
            procmem.TRIM.maybe(app[metrics.CALL_METRICS].last, time.monotonic())

    watcher = asyncio.create_task(firewall_watch())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        log.info("stopping")
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cfg.socket)
        await driver.shutdown()
        await links.close()
        nft.close()
