"""SIP over TCP and TLS (RFC 3261 §18, RFC 5626 §3.5.1 keep-alives, RFC 5630 for sips:).

:class:`StreamListener` accepts connections (plain TCP, or TLS with an ``ssl`` context:
TLS 1.2 or newer, certificate and key from files, :func:`server_tls_context`). Each
connection runs a :class:`~ingress.sip.framing.StreamFramer`: whole messages go to
``on_message(data, source)``, a CRLFCRLF ping is answered with a CRLF pong at once, and a
framing error hands the error to ``on_framing_error`` (which may queue a 400/513), then
closes the connection (RFC 3261 §18.3).

Connections are remembered by the peer's address and port, so responses and in-dialog
requests for that peer reuse the connection it opened (§18.2.2; we never dial out:
carriers and softphones keep their connection open for the call). At most
``max_connections`` are open; an idle connection is closed after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ingress.sip.errors import FramingError
from ingress.sip.framing import NEED_DATA, MessageFramed, StreamFramer
from ingress.sip.message import Peer, TransportKind

__all__ = ["StreamListener", "server_tls_context"]

logger = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, Peer], None]
ErrorHandler = Callable[[FramingError, Peer], None]
ClosedHandler = Callable[[Peer], None]


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context: TLS 1.2+, the certificate chain and key from PEM files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class _Connection(asyncio.Protocol):
    def __init__(self, listener: StreamListener) -> None:
        self._listener = listener
        self._framer = StreamFramer(max_message_size=listener.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        addr = self.transport.get_extra_info("peername")
        self.peer = Peer(self._listener.kind, str(addr[0]), int(addr[1]))
        if not self._listener.register(self):
            transport.close()
            return
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._listener.idle_timeout, self.close)

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.transport is None:
            return
        self._touch()
        self._framer.receive_data(data)
        while True:
            try:
                event = self._framer.next_event()
            except FramingError as error:
                self._listener.on_framing_error(error, self.peer)
                self.close()  # §18.3: framing lost, close after answering
                return
            if event is NEED_DATA:
                break
            if isinstance(event, MessageFramed):
                self._listener.on_message(event.data, self.peer)
            pong = self._framer.data_to_send()
            if pong and not self.transport.is_closing():
                self.transport.write(pong)  # RFC 5626 §3.5.1: CRLF pong

    def send(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.peer is not None:
            self._listener.unregister(self)


class StreamListener:
    """A TCP or TLS SIP listener and its connections (see the module docstring)."""

    def __init__(
        self,
        kind: TransportKind,
        on_message: MessageHandler,
        on_framing_error: ErrorHandler,
        on_closed: ClosedHandler,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 3600.0,
        max_message_size: int = 65_535,
    ) -> None:
        if kind is TransportKind.UDP:
            raise ValueError("a stream listener is TCP or TLS")
        self.kind = kind
        self.on_message = on_message
        self.on_framing_error = on_framing_error
        self._on_closed = on_closed
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self._connections: dict[Peer, _Connection] = {}
        self._server: asyncio.Server | None = None
        self.local: tuple[str, int] = ("", 0)

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on ``host:port`` (TLS when ``tls`` is given)."""
        if (tls is None) != (self.kind is TransportKind.TCP):
            raise ValueError("TLS listeners need an SSL context, TCP listeners none")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, ssl=tls, reuse_address=True
        )
        sockname: Any = self._server.sockets[0].getsockname()
        self.local = (str(sockname[0]), int(sockname[1]))

    def register(self, connection: _Connection) -> bool:
        if connection.peer is None or len(self._connections) >= self.max_connections:
            logger.warning("SIP %s connection refused: limit reached", self.kind.value)
            return False
        self._connections[connection.peer] = connection
        return True

    def unregister(self, connection: _Connection) -> None:
        if connection.peer is not None and self._connections.get(connection.peer) is connection:
            del self._connections[connection.peer]
            self._on_closed(connection.peer)

    def send(self, data: bytes, destination: Peer) -> bool:
        """Write to the open connection of ``destination``; ``False`` if there is none."""
        connection = self._connections.get(destination)
        return connection is not None and connection.send(data)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
