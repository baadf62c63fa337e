"""The carriers' media streams on a WebSocket listener of their own (``--media-listen``).

The same streams are served by the Quart route (``routes.py``) on the HTTP listener. There
a media message passes Hypercorn's protocol code, wsproto, asyncio's streams and Quart's
websocket queues, all interpreted, and a stream costs three to four times a SIP call
(docs/performance.md). Here picows parses and frames RFC 6455 in C and hands each message
to ``providers.agent_socket.AgentSocket`` (server side), the class the agent WebSockets
already use; ``run_media_stream`` serves it exactly as it serves the route's socket.
docs/media-listener.md says how carriers reach it (``--media-url``, or a proxy routing
``/v1/media/`` to it).

What it answers:

========================================  =============================================
``GET /v1/media/{twilio|telnyx}/<token>``  the WebSocket upgrade (101), then the stream
``GET /healthz``                           200 ``ok``: a load balancer's port check
anything else                              404, or picows' 400 for a broken upgrade
========================================  =============================================

The one-time token is checked after the upgrade, as on the route (a refused stream is
closed 1008 with a reason, which a carrier's debugger shows, where a 4xx upgrade answer
would show only a failed connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from typing import TYPE_CHECKING, Final

from picows import (
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from gateway.media_streams.session import MediaStreamHub, run_media_stream
from ingress.media_streams.events import Carrier
from providers.agent_socket import AgentSocket, Message
from providers.ws_listener import ForwardingListener

if TYPE_CHECKING:
    from gateway.services import Services

__all__ = ["MediaStreamListener"]

logger = logging.getLogger(__name__)

# ingress.media_streams.twiml.MEDIA_STREAM_PATH with its token pattern; a query string,
# which no carrier adds, is ignored as the route ignores it.
_STREAM_PATH: Final = re.compile(r"/v1/media/(twilio|telnyx)/([A-Za-z0-9_-]{1,256})(?:\?.*)?")
# A media message is a few hundred bytes and ``start`` a few KB with custom parameters;
# 64 KiB bounds what one hostile peer makes us hold per message (picows fails it 1009).
MAX_MESSAGE_BYTES: Final = 64 * 1024
# Messages read ahead of the session before reading pauses (TCP then pushes back).
MAX_QUEUE: Final = 64
CLOSE_TIMEOUT_S: Final = 2.0
# How long the opening handshake may take from accept, as Hypercorn allows for HTTP.
HANDSHAKE_TIMEOUT_S: Final = 5.0


class CarrierStream:
    """``session.PushStreamSocket`` over an ``AgentSocket``: what ``run_media_stream`` serves.

    After ``start`` the session takes each message in the socket's read callback
    (``set_handler``) and the leg writes without waiting when the socket can take it
    (``write_now``): no task wakes per message, as on the agent side."""

    def __init__(self, socket: AgentSocket) -> None:
        self.socket = socket
        self.set_handler = socket.set_handler

    @property
    def lost(self) -> asyncio.Future[None]:
        return self.socket.lost

    def write_now(self, data: str) -> bool:
        """Write ``data`` now, unless the socket is congested or closing (then False)."""
        socket = self.socket
        if socket.congested or not socket.open:
            return False
        socket.write(data)
        return True

    async def accept(self) -> None:
        """Nothing to do: picows sent the 101 before the session began."""

    async def receive(self) -> Message:
        return await self.socket.recv()

    async def send(self, data: str) -> None:
        await self.socket.send(data)

    async def close(self, code: int, reason: str = "") -> None:
        await self.socket.close(code, reason)


class MediaStreamListener:
    """One process's media-stream listener: start it, then ``stop`` it after the drain."""

    def __init__(self, hub: MediaStreamHub, services: Services) -> None:
        self.hub = hub
        self.services = services
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._sockets: set[AgentSocket] = set()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of each listening socket (port 0 resolved)."""
        if self._server is None:
            return []
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        """Listen on ``host:port`` (``OSError`` if the address is taken)."""
        self._server = await ws_create_server(
            self._route,
            host,
            port,
            ssl=ssl_context,
            websocket_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            # A handler that raises is our bug: picows logs it and closes the stream 1011.
            disconnect_on_exception=True,
            # No keep-alive pings, as on the route (Hypercorn sends none by default): a
            # stream lives as long as its call, which ends by stop, close or status callback.
            enable_auto_ping=False,
            enable_auto_pong=True,
            max_frame_size=MAX_MESSAGE_BYTES,
            logger_name=logger,
            use_aiofastnet=False,  # the loop's own transports, as the agent socket uses
        )

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let the sessions end (the drain has ended their calls) for up to
        ``grace_s`` seconds, then cancel what is left and drop its connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = set(self._sessions)
        if sessions:
            _, pending = await asyncio.wait(sessions, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("%d media streams still open at shutdown: cancelled", len(pending))
                # Each session's own wind-down is bounded (session._RUN_WIND_DOWN_S).
                await asyncio.wait(pending, timeout=grace_s)
        for socket in list(self._sockets):
            with contextlib.suppress(Exception):
                await socket.close(1001, "going away")  # RFC 6455 §7.4.1: server going down

    def _route(
        self, request: WSUpgradeRequest
    ) -> WSListener | WSUpgradeResponseWithListener | None:
        """picows' router: the listener of a stream, a health answer, or 404 (``None``)."""
        path = request.path.decode("latin-1")
        if path == "/healthz":
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(b"ok"), None)
        found = _STREAM_PATH.fullmatch(path)
        if found is None:
            # A stream path's tail may hold a call token: not written to the log.
            shown = "/v1/media/…" if path.startswith("/v1/media/") else path[:100]
            logger.info("media listener: no stream at %r (404)", shown)
            return None
        carrier, token = Carrier(found.group(1)), found.group(2)
        headers = {k.lower(): v for k, v in request.headers.items()}
        stream_path = path.partition("?")[0]
        socket: AgentSocket

        def begin() -> None:
            # In on_ws_connected: the 101 went, the session may read and write.
            task = asyncio.get_running_loop().create_task(
                self._serve(socket, carrier, token, stream_path, headers),
                name=f"media-stream-{carrier.value}",
            )
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)

        socket = AgentSocket(
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=CLOSE_TIMEOUT_S,
            max_queue=MAX_QUEUE,
            server=True,
            on_connected=begin,
        )
        return ForwardingListener(socket)

    async def _serve(
        self, socket: AgentSocket, carrier: Carrier, token: str, path: str, headers: dict[str, str]
    ) -> None:
        self._sockets.add(socket)
        try:
            await run_media_stream(
                self.hub,
                self.services,
                CarrierStream(socket),
                carrier=carrier,
                token=token,
                path=path,
                headers=headers,
            )
        except Exception:
            # run_media_stream never raises for what the peer does: this is our bug.
            logger.exception("%s media stream failed", carrier.value)
        finally:
            self._sockets.discard(socket)
        if socket.open:  # only after a failure: the session closes its socket itself
            with contextlib.suppress(Exception):
                await socket.close(1011, "internal error")
