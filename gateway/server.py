"""``telepath serve``: the database, the services, the HTTP app and the SIP stack in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from gateway import native
from gateway.app import create_app
from gateway.database import close_database, open_database
from gateway.demo import describe, ensure_demo
from gateway.drain import drain_calls
from gateway.media_streams.listener import MediaStreamListener
from gateway.media_streams.routes import hub_of
from gateway.overload import LagMonitor
from gateway.runtime import freeze_startup_heap, running_event_loop
from gateway.services import Services
from gateway.settings import Settings
from gateway.sip_service import SipService
from ingress.sip.transport.tcp import server_tls_context

logger = logging.getLogger(__name__)

# Once the calls are drained, each step of the shutdown gets this long. A step that hangs
# (a peer that never answers, a client library that swallows a cancellation) must not
# keep a drained node alive until the orchestrator kills it: the later steps (records,
# the shared call counts, the database) would be lost with it.
SHUTDOWN_STEP_TIMEOUT_S = 10.0
# The media-stream sessions end with their calls (the drain ended those); this long for
# their records, then they are cancelled (and each cancelled one winds down as long again).
MEDIA_STREAMS_GRACE_S = 5.0


async def shutdown_step(
    name: str, step: Awaitable[None], limit_s: float = SHUTDOWN_STEP_TIMEOUT_S
) -> bool:
    """Await one shutdown step for at most ``limit_s`` seconds; log how it went and go on
    either way (True when it finished)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_s):
            await step
    except TimeoutError:
        logger.error("shutdown: %s did not finish within %.1f s; going on", name, limit_s)
        return False
    except Exception:
        logger.exception("shutdown: %s failed; going on", name)
        return False
    logger.info("shutdown: %s done in %.0f ms", name, (time.perf_counter() - started) * 1000)
    return True


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


async def start_media_listener(
    settings: Settings, app: Quart, services: Services
) -> MediaStreamListener | None:
    """``--media-listen``'s listener; a taken address is logged, as SIP's is."""
    if settings.media_listen is None:
        return None
    context = None
    if settings.http_tls and settings.tls_cert and settings.tls_key:
        context = server_tls_context(settings.tls_cert, settings.tls_key)
    listener = MediaStreamListener(hub_of(app), services)
    where = settings.media_listen
    try:
        await listener.start(where.host, where.port, context)
    except OSError as error:
        logger.error("media-stream listener %s not started: %s", where, error)
        print(f"media-stream listener {where} not started: {error}", file=sys.stderr, flush=True)
        return None
    scheme = "wss" if context is not None else "ws"
    for host, port in listener.addresses:
        print(f"Telepath media streams on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
    logger.info(
        "media streams listening on %s; carriers stream to %s",
        where,
        settings.media_stream_base_url,
    )
    return listener


async def run_server(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT."""
    logger.info("event loop: %s", running_event_loop())
    logger.info(
        "frame path: %d of %d modules compiled (gateway/native.py)",
        len(native.compiled()),
        len(native.COMPILED),
    )
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
    stop, hurry, drain_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    media: MediaStreamListener | None = None

    async def drained() -> None:
        """Hypercorn's shutdown trigger: HTTP serves on until the calls are drained."""
        await stop.wait()
        print("Telepath draining", file=sys.stderr, flush=True)
        try:
            await drain_calls(
                services.drain, services.runner, deadline_s=settings.drain_timeout, hurry=hurry
            )
        finally:
            # Before HTTP stops: its shutdown hooks close what the sessions still use
            # (the carrier API clients, the token store).
            if media is not None:
                await shutdown_step(
                    "media-stream listener",
                    media.stop(MEDIA_STREAMS_GRACE_S),
                    2 * MEDIA_STREAMS_GRACE_S + SHUTDOWN_STEP_TIMEOUT_S,
                )
            drain_done.set()

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
        media = await start_media_listener(settings, app, services)
        sip = await _start_sip(settings, services)
        logger.info("HTTP listening on %s", settings.http)
        print(
            f"Telepath listening on http{'s' if settings.http_tls else ''}://{settings.http}",
            file=sys.stderr,
            flush=True,
        )
        config = hypercorn_config(settings)
        try:
            # Hypercorn closes its connections within graceful_timeout of the trigger, then
            # runs the app's shutdown hooks: bounded from the trigger on, like every step.
            http = asyncio.ensure_future(hypercorn_serve(app, config, shutdown_trigger=drained))
            draining = asyncio.ensure_future(drain_done.wait())
            await asyncio.wait({http, draining}, return_when=asyncio.FIRST_COMPLETED)
            draining.cancel()
            if not drain_done.is_set():
                http.result()  # HTTP stopped by itself (a bind error): that is the outcome
            else:
                bound = config.graceful_timeout + SHUTDOWN_STEP_TIMEOUT_S
                if not await shutdown_step("HTTP server", asyncio.shield(http), bound):
                    http.cancel()
        finally:
            if media is not None:  # stopped after the drain already, unless HTTP failed
                await shutdown_step("media-stream listener", media.stop(MEDIA_STREAMS_GRACE_S))
            if sip is not None:
                await shutdown_step("SIP calls and listeners", sip.stop())
    finally:
        lag_monitor.stop()
        await shutdown_step("services", services.close())
        await shutdown_step("database", close_database())
