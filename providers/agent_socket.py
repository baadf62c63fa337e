"""``AgentSocket``: one WebSocket to an agent, driven in the event loop's own callbacks.

websockets' asyncio client wraps every connection in tasks, a message assembler, a queue
and a send lock; at 100 messages a second per call that machinery was about 18 % of the
gateway's CPU in the benchmark (docs/performance.md). The protocol itself stays the
library's: ``websockets.client.ClientProtocol`` is its sans-I/O implementation of RFC 6455
(opening handshake, framing, masking, UTF-8 and size limits, ping/pong replies, the
closing handshake). This module is only the I/O around it, as the library documents for
sans-I/O integrations: bytes read are fed to the protocol in ``data_received``, whole
messages wait in a deque for ``recv``, and ``write`` puts a frame on the transport at
once. ``send`` is ``write`` plus waiting while the transport is paused (flow control).

Behaviour kept from the asyncio client, because the adapters rely on it: ``recv`` hands
out every message that arrived, then raises ``ConnectionClosed`` (OK for 1000/1001)
once the TCP connection is gone, with ``close_code`` / ``close_reason`` as the peer sent
them (1006 when it sent no close frame); ``close`` runs the closing handshake, bounded by
``close_timeout``; keep-alive pings go out every ``ping_interval`` and a missing pong
fails the connection with 1011. Reading pauses while ``max_queue`` messages wait.

Once the session has a listener, ``set_handler`` hands each message to the adapter in
``data_received`` itself: no queue and no task wake-up between the socket and the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidMessage,
)
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import SEND_EOF, State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

__all__ = ["AgentSocket", "open_agent_socket"]

logger = logging.getLogger(__name__)

Message = str | bytes
Handler = Callable[[Message], None]


class AgentSocket(asyncio.Protocol):
    """A client WebSocket; see the module docstring. Made by :func:`open_agent_socket`."""

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_queue: int,
    ) -> None:
        self.protocol = protocol
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._messages: deque[Message] = deque()
        self._handler: Handler | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._reading_paused = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._ping: bytes | None = None
        self._ping_sent_at = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None

    # --- what the adapters use ---

    @property
    def subprotocol(self) -> Subprotocol | None:
        """The subprotocol the server chose, if any."""
        return self.protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The peer's close code once the connection is closed (1006: none was sent)."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason once the connection is closed."""
        return self.protocol.close_reason

    @property
    def open(self) -> bool:
        """True until the closing handshake begins (``write`` raises from then on)."""
        return self.protocol.state is State.OPEN

    @property
    def congested(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return self._paused

    @property
    def lost(self) -> asyncio.Future[None]:
        """Done once the TCP connection is gone (``recv`` then raises what it ended with)."""
        return self._lost

    def set_handler(self, handler: Handler | None) -> None:
        """Hand every message to ``handler`` as it is parsed, in ``data_received``.

        The messages waiting for ``recv`` go to it first, in order. ``None`` goes back to
        queueing for ``recv`` (after a handler failed, say). A handler must not raise:
        it runs inside the transport's callback.
        """
        self._handler = handler
        while handler is not None and self._messages and self._handler is handler:
            handler(self._messages.popleft())
        if handler is not None:
            self._resume_reading()

    async def recv(self) -> Message:
        """The next message; ``ConnectionClosed`` once none is left and the socket is gone."""
        while not self._messages:
            if self._lost.done():
                raise self.protocol.close_exc
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        message = self._messages.popleft()
        if len(self._messages) <= self.max_queue // 4:
            self._resume_reading()
        return message

    def write(self, message: Message) -> None:
        """Put ``message`` on the wire now (text for ``str``); never waits.

        Raises ``ConnectionClosed`` once the closing handshake has begun."""
        if self.protocol.state is not State.OPEN:
            raise self._closed_error()
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self._flush()

    async def send(self, message: Message) -> None:
        """``write``, then wait while the transport is paused."""
        self.write(message)
        while self._paused and not self._lost.done():
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Run the closing handshake (at most ``close_timeout``), then drop the connection."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        elif self.protocol.state is State.CONNECTING:
            self.protocol.fail(CloseCode.ABNORMAL_CLOSURE)
        if self._lost.done():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(self._lost)
        if self._lost.done():
            return
        # The peer did not close in time. Not awaited in an `except` block: see
        # gateway.bridge.CallBridge.run (mypyc).
        if self._transport is not None:
            self._transport.abort()
        await asyncio.shield(self._lost)

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not derive from asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)
        self._flush()  # the handshake request queued by open_agent_socket

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        self._flush()  # pong replies, the close echo
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Response):
                self._handshake_answered()
        if len(self._messages) >= self.max_queue and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the protocol is CLOSED from here on
        self.protocol.state = State.CLOSED
        for timer in (self._ping_timer, self._abort_timer):
            if timer is not None:
                timer.cancel()
        if not self._opened.done():
            self._opened.set_exception(
                InvalidMessage("the connection closed during the opening handshake")
            )
            self._opened.exception()  # retrieved here; open_agent_socket re-raises it
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()
        self._resume()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._resume()

    # --- internals ---

    def _closed_error(self) -> ConnectionClosed:
        if self.protocol.state is State.CLOSED:
            return self.protocol.close_exc
        return ConnectionClosedError(self.protocol.close_rcvd, self.protocol.close_sent)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data == SEND_EOF:
                if transport.can_write_eof():
                    transport.write_eof()
            else:
                transport.write(data)
        if self.protocol.close_expected() and self._abort_timer is None:
            # RFC 6455 §7.1.1: the server closes TCP first; do it ourselves if it does not.
            self._abort_timer = self._loop.call_later(self.close_timeout, transport.abort)

    def _handshake_answered(self) -> None:
        if self._opened.done():
            return
        error = self.protocol.handshake_exc
        if error is not None:
            self._opened.set_exception(error)
            self._opened.exception()
            return
        self._opened.set_result(None)
        if self.ping_interval:
            self._ping_timer = self._loop.call_later(self.ping_interval, self._send_ping)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        # Frames parsed from the network carry bytes (the type also admits buffers).
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(data, opcode is Opcode.TEXT)
            else:
                self._fragments = [data]
                self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(data)
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._deliver(data, self._fragment_text)
        elif opcode is Opcode.PONG and self._ping is not None and data == self._ping:
            self._ping = None
        # PING: the protocol queued the pong (flushed above); CLOSE: it echoed the close.

    def _deliver(self, data: bytes, text: bool) -> None:
        if text:
            try:
                message: Message = data.decode()
            except UnicodeDecodeError:
                # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection.
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                self._flush()
                return
        else:
            message = data
        if self._handler is not None:
            self._handler(message)
            return
        self._messages.append(message)
        self._wake()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self._transport is not None and not self._lost.done():
                self._transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not State.OPEN:
            return
        self._ping = os.urandom(4)
        self._ping_sent_at = self._loop.time()
        self.protocol.send_ping(self._ping)
        self._flush()
        timeout = self.ping_timeout or self.ping_interval or 0.0
        self._ping_timer = self._loop.call_later(timeout, self._check_pong)

    def _check_pong(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not State.OPEN:
            return
        if self._ping is not None:
            # No pong within ping_timeout: the peer or the path is gone (1011, as the
            # asyncio client does).
            logger.info("agent socket: no pong within %.0f s, failing it", self.ping_timeout or 0)
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
            if self._transport is not None:
                self._transport.abort()
            return
        interval = self.ping_interval or 0.0
        delay = max(0.0, interval - (self._loop.time() - self._ping_sent_at))
        self._ping_timer = self._loop.call_later(delay, self._send_ping)


async def open_agent_socket(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] | None = None,
    user_agent: str = "Telepath",
    max_size: int | None = 2**20,
    max_queue: int = 64,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 2.0,
) -> AgentSocket:
    """Connect to ``url`` (``ws://`` or ``wss://``) and run the opening handshake.

    No overall timeout here: the caller bounds the whole open. Raises ``InvalidURI``,
    ``OSError`` (cannot connect), ``InvalidStatus`` (the server answered another HTTP
    status; ``.response`` has it) or another ``InvalidHandshake``.
    """
    uri = parse_uri(url)
    protocol = ClientProtocol(
        uri,
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        max_size=max_size,  # no extensions offered: audio does not compress
    )
    request = protocol.connect()
    for name, value in (headers or {}).items():
        request.headers[name] = value
    request.headers["User-Agent"] = user_agent
    protocol.send_request(request)
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if uri.secure else None
    _, socket = await loop.create_connection(
        lambda: AgentSocket(
            protocol,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
        ),
        uri.host,
        uri.port,
        ssl=context,
        server_hostname=uri.host if context is not None else None,
    )
    try:
        await asyncio.shield(socket._opened)
    except BaseException:
        if socket._transport is not None:
            socket._transport.abort()
        raise
    # The handshake succeeded; the peer may already have sent messages, or even closed
    # (they arrived with its answer): recv() hands them out, then raises.
    return socket
