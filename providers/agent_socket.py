"""``AgentSocket``: one WebSocket to an agent, driven in the event loop's own callbacks.

The protocol is a library's: picows (Cython) runs the opening handshake and parses,
masks and frames RFC 6455 in C, and calls ``on_ws_frame`` once per frame from the
transport's read callback. Before it, websockets' sans-I/O parser was the largest
interpreted part of a frame's path (docs/performance.md: about a quarter of the
gateway's instructions per frame pair). This module is the part picows leaves to its
user: assembling fragmented messages, the message size limit, UTF-8 validation of text,
answering the peer's close, keep-alive, flow control and a queue for ``recv``.

Behaviour kept from websockets' asyncio client, because the adapters rely on it:
``recv`` hands out every message that arrived, then raises websockets'
``ConnectionClosed`` (``ConnectionClosedOK`` for 1000/1001 both ways) once the TCP
connection is gone, with ``close_code`` / ``close_reason`` as the peer sent them (1006
when it sent no close frame); ``close`` runs the closing handshake, bounded by
``close_timeout``; keep-alive pings go out every ``ping_interval`` and a missing pong
fails the connection with 1011. Reading pauses while ``max_queue`` messages wait.

Once the session has a listener, ``set_handler`` hands each message to the adapter in
``on_ws_frame`` itself: no queue and no task wake-up between the socket and the bridge.

The same class serves the server side of a connection (``server=True``): the carriers'
media streams on ``gateway.media_streams.listener``. The one difference is who closes
TCP: RFC 6455 §7.1.1 has the server close it as soon as both close frames went, where a
client waits for the server to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from picows import WSCloseCode, WSMsgType, WSTransport, ws_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from providers.ws_listener import ForwardingListener

__all__ = ["AgentSocket", "open_agent_socket"]

logger = logging.getLogger(__name__)

Message = str | bytes
Handler = Callable[[Message], None]

# The codes of a normal end, as websockets counts them: 1000, "going away" (1001) and
# "no status received" (1005, RFC 6455 §7.1.5: a close frame without a code).
_OK_CODES: Final = (1000, 1001, 1005)
# Read for every frame: Final makes them C statics, not lookups in the module's globals.
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY


class AgentSocket:
    """A client WebSocket; see the module docstring. Made by :func:`open_agent_socket`.

    picows calls its ``on_ws_*`` and ``*_writing`` methods through a
    ``ForwardingListener`` (providers/ws_listener.py says why)."""

    def __init__(
        self,
        *,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_queue: int,
        server: bool = False,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.max_size = max_size
        self.server = server
        self._on_connected = on_connected
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self._loop = asyncio.get_running_loop()
        self._transport: WSTransport | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._closing = False  # a close frame went out or came in
        self._failed = False  # we or picows failed the connection: discard what arrives
        self._messages: deque[Message] = deque()
        self._handler: Handler | None = None
        self._waiter: asyncio.Future[None] | None = None
        # A fragmented message so far (None: none under way). One buffer, not a list of
        # frames: a message in a million one-byte frames costs max_size, no more.
        self._fragments: bytearray | None = None
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
    def close_code(self) -> int | None:
        """The peer's close code once the connection is closed (1006: none was sent)."""
        if not self._lost.done():
            return None
        rcvd = self._close_frames()[0]
        return rcvd.code if rcvd is not None else 1006

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason once the connection is closed."""
        if not self._lost.done():
            return None
        rcvd = self._close_frames()[0]
        return rcvd.reason if rcvd is not None else ""

    @property
    def close_exc(self) -> ConnectionClosed:
        """How the connection ended, as ``recv`` raises it once the socket is gone."""
        return self._closed_error()

    @property
    def open(self) -> bool:
        """True until the closing handshake begins (``write`` raises from then on)."""
        return not self._closing and not self._lost.done()

    @property
    def congested(self) -> bool:
        """True while the transport's buffer is over its high-water mark."""
        return self._paused

    @property
    def lost(self) -> asyncio.Future[None]:
        """Done once the TCP connection is gone (``recv`` then raises what it ended with)."""
        return self._lost

    def set_handler(self, handler: Handler | None) -> None:
        """Hand every message to ``handler`` as it is parsed, in ``on_ws_frame``.

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
                raise self._closed_error()
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
        transport = self._transport
        if transport is None or self._closing or self._lost.done():
            raise self._closed_error()
        if isinstance(message, str):
            transport.send(_TEXT, message.encode())
        else:
            transport.send(_BINARY, message)

    async def send(self, message: Message) -> None:
        """``write``, then wait while the transport is paused."""
        self.write(message)
        while self._paused and not self._lost.done():
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (at most ``close_timeout``), then drop the connection."""
        transport = self._transport
        if transport is None or self._lost.done():
            return
        if not self._closing:
            self._closing = True
            transport.send_close(WSCloseCode(code), reason.encode())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(self._lost)
        if self._lost.done():
            return
        # The peer did not close in time. Not awaited in an `except` block: see
        # gateway.bridge.CallBridge.run (mypyc).
        transport.disconnect(graceful=False)
        await asyncio.shield(self._lost)

    # --- what picows calls (through ForwardingListener) ---

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        if self.ping_interval:
            self._ping_timer = self._loop.call_later(self.ping_interval, self._send_ping)
        if self._on_connected is not None:
            self._on_connected()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        # ``frame`` is a ``WSFrame``, typed ``Any`` on purpose: picows' stubs say ``fin``
        # is a bool and a close frame's message bytes, but at run time they are an int
        # and ``None`` when absent, and mypyc would check the declared types.
        # The frame points into picows' read buffer: copy what is kept before returning.
        if self._failed or frame.payload_size > self.max_size:
            # The connection failed (RFC 6455 §7.1.7): discard what follows. picows fails
            # it with 1009 as soon as an oversized frame's header arrives, but goes on
            # parsing, and would deliver the frame once its payload is in.
            self._failed = True
            return
        kind = frame.msg_type
        if kind in (_TEXT, _BINARY):
            if self._fragments is not None:
                # RFC 6455 §5.4: a new message before the fragmented one ended.
                self._fail(WSCloseCode.PROTOCOL_ERROR, b"expected a continuation frame")
            elif frame.fin:
                self._deliver(frame.get_payload_as_bytes(), kind == _TEXT)
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
                self._fragment_text = kind == _TEXT
        elif kind == WSMsgType.CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, b"continuation of no message")
                return
            if len(fragments) + frame.payload_size > self.max_size:
                # What picows' own limit does for one frame, for the whole message.
                self._fail(WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
                return
            fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                self._fragments = None
                self._deliver(bytes(fragments), self._fragment_text)
        elif kind == WSMsgType.CLOSE:
            # RFC 6455 §5.5.1: answer with a close of our own (the peer's code, as
            # websockets does), then wait for the server to close TCP (§7.1.1), and do it
            # ourselves after close_timeout; a server closes it at once. A close without a
            # code is answered 1000: picows would put its "no code" (0) on the wire, which
            # §7.4.1 forbids.
            if not self._closing:
                self._closing = True
                code = frame.get_close_code()
                if code == WSCloseCode.NO_INFO:
                    transport.send_close(WSCloseCode.OK)
                else:
                    transport.send_close(code, frame.get_close_message() or b"")
            if self.server:
                transport.disconnect()
            elif self._abort_timer is None:
                self._abort_timer = self._loop.call_later(
                    self.close_timeout, transport.disconnect, False
                )
        elif (
            kind == WSMsgType.PONG
            and self._ping is not None
            and frame.get_payload_as_bytes() == self._ping
        ):
            self._ping = None
        # PING: picows answers it (enable_auto_pong).

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._transport = transport
        # When picows failed the connection, it keeps the reason as the exception of
        # wait_disconnected(); nobody else awaits it, so take it here (the close frames
        # already tell the session what happened) instead of leaving asyncio to log it.
        asyncio.ensure_future(transport.wait_disconnected()).add_done_callback(_retrieved)
        for timer in (self._ping_timer, self._abort_timer):
            if timer is not None:
                timer.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()
        self._resume()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._resume()

    # --- internals ---

    def _close_frames(self) -> tuple[Close | None, Close | None, bool | None]:
        """The close frames received and sent, as websockets' exceptions carry them."""
        # ``Any``: as for frames, picows' stubs type a missing reason as ``str``; it is None.
        handshake: Any = self._transport.close_handshake if self._transport is not None else None
        if handshake is None:
            return None, None, None
        rcvd, sent = _close(handshake.recv), _close(handshake.sent)
        # websockets: the order is known only when both frames went.
        order = bool(handshake.recv_then_sent) if rcvd is not None and sent is not None else None
        return rcvd, sent, order

    def _closed_error(self) -> ConnectionClosed:
        rcvd, sent, rcvd_then_sent = self._close_frames()
        if (
            self._lost.done()
            and rcvd is not None
            and sent is not None
            and rcvd.code in _OK_CODES
            and sent.code in _OK_CODES
        ):
            return ConnectionClosedOK(rcvd, sent, rcvd_then_sent)
        return ConnectionClosedError(rcvd, sent, rcvd_then_sent)

    def _fail(self, code: WSCloseCode, reason: bytes) -> None:
        """RFC 6455 §7.1.7: send a close frame, then close the TCP connection."""
        transport = self._transport
        self._fragments = None
        self._failed = True
        if transport is None:
            return
        if not self._closing:
            self._closing = True
            transport.send_close(code, reason)
        transport.disconnect()

    def _deliver(self, data: bytes, text: bool) -> None:
        if text:
            try:
                message: Message = data.decode()
            except UnicodeDecodeError:
                # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection.
                self._fail(WSCloseCode.INVALID_TEXT, b"invalid UTF-8")
                return
        else:
            message = data
        if self._handler is not None:
            self._handler(message)
            return
        self._messages.append(message)
        self._wake()
        if len(self._messages) >= self.max_queue and not self._reading_paused:
            self._reading_paused = True
            if self._transport is not None:
                self._transport.underlying_transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self._transport is not None and not self._lost.done():
                self._transport.underlying_transport.resume_reading()

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
        transport = self._transport
        if transport is None or not self.open:
            return
        self._ping = os.urandom(4)
        self._ping_sent_at = self._loop.time()
        transport.send_ping(self._ping)
        timeout = self.ping_timeout or self.ping_interval or 0.0
        self._ping_timer = self._loop.call_later(timeout, self._check_pong)

    def _check_pong(self) -> None:
        self._ping_timer = None
        transport = self._transport
        if transport is None or not self.open:
            return
        if self._ping is not None:
            # No pong within ping_timeout: the peer or the path is gone (1011, as
            # websockets' asyncio client does); no closing handshake with a dead peer.
            logger.info("agent socket: no pong within %.0f s, failing it", self.ping_timeout or 0)
            self._closing = True
            transport.send_close(WSCloseCode.INTERNAL_ERROR, b"keepalive ping timeout")
            transport.disconnect(graceful=False)
            return
        interval = self.ping_interval or 0.0
        delay = max(0.0, interval - (self._loop.time() - self._ping_sent_at))
        self._ping_timer = self._loop.call_later(delay, self._send_ping)


def _close(info: Any) -> Close | None:
    """picows' record of a close frame as websockets' ``Close``. A frame without a code
    reads 1005, "no status received" (RFC 6455 §7.1.5), as websockets has it."""
    if info is None:
        return None
    code = info.code.value
    return Close(code if code != WSCloseCode.NO_INFO.value else 1005, info.reason or "")


def _retrieved(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


async def open_agent_socket(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    user_agent: str = "Telepath",
    max_size: int = 2**20,
    max_queue: int = 64,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 2.0,
) -> AgentSocket:
    """Connect to ``url`` (``ws://`` or ``wss://``) and run the opening handshake.

    No overall timeout here: the caller bounds the whole open. Raises picows'
    ``WSInvalidURL``, ``OSError`` (cannot connect), ``WSInvalidStatusError`` (the server
    answered another HTTP status; ``.response`` has it, ``.raw_body`` its body) or
    another ``WSHandshakeError``. Redirects are not followed: a provider that moved is a
    configuration to fix, not something to follow with the customer's key.
    """
    extra = dict(headers or {})
    extra["User-Agent"] = user_agent
    secure = url.lower().startswith("wss:")
    socket = AgentSocket(
        max_size=max_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
    )
    await ws_connect(
        lambda: ForwardingListener(socket),
        url,
        ssl_context=ssl.create_default_context() if secure else None,
        # An adapter's handler must not raise (set_handler); if one does, picows logs it
        # and fails the connection with 1011, which the session reports.
        disconnect_on_exception=True,
        websocket_handshake_timeout=None,  # the caller bounds the whole open
        enable_auto_ping=False,  # our own keep-alive: its failure reads 1011 as before
        enable_auto_pong=True,
        max_frame_size=max_size,
        extra_headers=extra,
        max_redirects=0,
        logger_name=logger,
        # The event loop's own TCP and TLS transports (uvloop's in production), not
        # aiofastnet's, which picows would pick when installed: the same instructions per
        # frame pair within 2 % (callgrind), and the loop's are the long-proven ones.
        use_aiofastnet=False,
    )
    # The handshake succeeded; the peer may already have sent messages, or even closed
    # (they arrived with its answer): recv() hands them out, then raises.
    return socket
