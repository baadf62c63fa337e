"""``telepath serve``: the database, the services, the HTTP app and the SIP stack in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from gateway.app import create_app
from gateway.database import close_database, open_database
from gateway.demo import describe, ensure_demo
from gateway.drain import drain_calls
from gateway.overload import LagMonitor
from gateway.runtime import freeze_startup_heap, running_event_loop
from gateway.services import Services
from gateway.settings import Settings
from gateway.sip_service import SipService

logger = logging.getLogger(__name__)


def hypercorn_config(settings: Settings) -> HypercornConfig:
    """Hypercorn's configuration for the HTTP(S)/WS(S) listener."""
    config = HypercornConfig()
    config.bind = [str(settings.http)]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5
    if settings.http_tls and settings.tls_cert and settings.tls_key:
        config.certfile = str(settings.tls_cert)
        config.keyfile = str(settings.tls_key)
    return config


async def _start_sip(settings: Settings, services: Services) -> SipService | None:
    """Start the SIP stack; a taken address is logged and the HTTP side still serves."""
    sip = SipService(settings, services)
    try:
        endpoint = await sip.start()
    except OSError as error:
        logger.error("SIP listener %s not started: %s", settings.sip, error)
        print(f"SIP listener {settings.sip} not started: {error}", file=sys.stderr, flush=True)
        return None
    for kind, (host, port) in endpoint.addresses.items():
        print(f"Telepath SIP listening on {kind.value} {host}:{port}", file=sys.stderr, flush=True)
    return sip


async def run_server(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT."""
    logger.info("event loop: %s", running_event_loop())
    await open_database(settings.database_url)
    services = Services.build(settings)
    # Calls a crash left open are closed before any new call; pending webhooks resume.
    # SQLite means one process: every open row is ours. On PostgreSQL other nodes may be
    # mid-call, so only this node's rows (Call.node: host name and SIP port) are closed.
    await services.calls.close_stale(any_node=settings.database_url.startswith("sqlite"))
    services.webhooks.start()
    lag_monitor = LagMonitor(services.overload)
    if services.shared is not None:
        services.shared.start()
    # The first SIGTERM/SIGINT drains (gateway.drain), a second one hurries the drain.
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    async def drained() -> None:
        """Hypercorn's shutdown trigger: HTTP serves on until the calls are drained."""
        await stop.wait()
        print("Telepath draining", file=sys.stderr, flush=True)
        await drain_calls(
            services.drain, services.runner, deadline_s=settings.drain_timeout, hurry=hurry
        )

    try:
        if settings.demo:
            demo = await ensure_demo(services)
            print(
                describe(demo, settings.sip_domain, settings.http_base_url, str(settings.sip)),
                flush=True,
            )
        app = create_app(services)
        # Start-up is complete: what exists now lives as long as the process (gateway.runtime).
        # Frozen before SIP listens, so no call waits for the collection nor is frozen.
        started = time.perf_counter()
        frozen = freeze_startup_heap()
        logger.info(
            "start-up heap frozen: %d objects, %.0f ms",
            frozen,
            (time.perf_counter() - started) * 1000,
        )
        # Probing starts once start-up's own long steps (the collection above) are over.
        lag_monitor.start()
        sip = await _start_sip(settings, services)
        logger.info("HTTP listening on %s", settings.http)
        print(
            f"Telepath listening on http{'s' if settings.http_tls else ''}://{settings.http}",
            file=sys.stderr,
            flush=True,
        )
        try:
            await hypercorn_serve(app, hypercorn_config(settings), shutdown_trigger=drained)
        finally:
            if sip is not None:
                await sip.stop()
    finally:
        lag_monitor.stop()
        await services.close()
        await close_database()
