"""``WebSocketAgentSession``: the asyncio pump shared by every WebSocket adapter.

OpenAI Realtime, ElevenLabs and customers' own agents differ in their wire protocol and
conversation state, not in how one socket is driven. This module owns the driving: the
open/close lifecycle; the agent's messages handled as the socket parses them (in
its frame callback) and their events handed to the bridge's listener there and then (a
``media.relay.Relay``: no queue, no task between the socket and the bridge), always ending
with ``AgentClosed``; a ``SendQueue`` that drops the oldest caller audio when the agent reads
too slowly (caller audio goes straight to the socket while nothing is queued and the socket
is not congested) and the writer task that empties it; a watcher task that waits for the
end of the connection; an idempotent ``close()`` that stops both tasks and closes the
socket; and the mapping of a close we did not ask for to a fatal ``AgentError`` followed by
``AgentClosed(error)``. No protocol decision lives here.

Reading starts when the session gets its listener (``listen``, or the first ``events()``):
until then the agent's messages wait in the socket, which stops reading after
``max_queue`` of them (TCP backpressure instead of an unbounded queue).

Lifecycle (``_State``)::

    NEW ─open()─▶ OPENING ─handshake─▶ OPEN ─peer closed / EndSession─▶ ENDED
     └──────────────┴──────── close(), or open() failed ──────┴──────────────┴─▶ CLOSED

Calling contract for a subclass. The base calls these hooks; a subclass never starts a
task, never closes the socket and never finishes the event stream itself:

``await _connect(context) -> AgentSocket``
    Open the socket (through ``connect_agent``). Raise ``ProviderError`` on failure.
``await _handshake(ws, context, preferred) -> NegotiatedFormats``
    The opening exchange, bounded in time by the subclass. ``close()`` meanwhile closes
    ``ws``, so a pending ``recv`` raises ``ConnectionClosed``. A conversation message read
    here goes to ``_push_back`` and is handled first once reading starts.
``_opened(formats)``
    The handshake succeeded: set up the conversation state. No I/O. Still inside
    ``open``'s error handling; the writer starts right after it.
``_receive(ws, data)``
    One message from the agent, in the socket's callback (so it never waits). Hand events
    to ``_emit(...)``, queue replies with ``_queue_control(...)`` (or ``ws.write`` what must
    go out before anything else). Raise ``EndSession`` to end the session from our side.
``_encode_audio(frame) -> Outgoing``
    Caller audio as the wire carries it, called just before it is sent (by
    ``_queue_audio`` when nothing waits, else by the writer), so that a sequence number
    never skips a frame the queue dropped.
``_peer_closed(ws, closed) -> ProviderError | HangupRequested | None``
    Called only while OPEN: what a close we did not ask for means: an error (emitted as a fatal ``AgentError``
    and carried by ``AgentClosed``), a ``HangupRequested`` where closing is how the
    protocol hangs up, or ``None`` for an expected close (the agent asked to end the call).
``_stop_message(reason) -> Outgoing | None``
    The last message ``close()`` sends, after the control messages still queued (within
    ``STOP_TIMEOUT``). ``None`` (the default): the protocol has none.

Subclasses keep ``send_audio``/``send_dtmf``/``played``/``answered`` and feed the queue
with ``_queue_audio`` and ``_queue_control``; both are no-ops unless the session is OPEN.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import Final

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from media import AudioFormat, AudioFrame, CallContext
from media.pull import Pull
from media.relay import Listener, Relay
from providers.agent_socket import AgentSocket
from providers.base import (
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    AgentSession,
    HangupRequested,
    NegotiatedFormats,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
)
from providers.wire import Outgoing

logger = logging.getLogger(__name__)

STOP_TIMEOUT: Final = 1.0  # seconds to hand the last messages to a slow agent on close
AUDIO_QUEUE_FRAMES: Final = 50  # 1 s of 20 ms caller frames; older ones are dropped
CONTROL_QUEUE: Final = 256  # control messages waiting for the writer


def close_detail(code: int | None, reason: str) -> str:
    """``(close 1011: reason)`` for error messages; the peer's reason is cut at 200."""
    return f"(close {code}{': ' + reason[:200] if reason else ''})"


def unexpected_close(
    name: str, code: int | None, reason: str, *, ended: str = "the session"
) -> ProviderError:
    """Classify by its RFC 6455 §7.4.1 code a close of ``name``'s socket we did not ask for.

    A normal close or going away mid-call means the provider ended ``ended``; 1002, 1003,
    1007 and 1009 name a protocol error; anything else (1006: no close frame at all) is a
    lost connection. Adapters test their vendor's own codes first.
    """
    detail = close_detail(code, reason)
    if code in (1000, 1001):
        return ProviderError(f"{name} ended {ended} {detail}")
    if code in (1002, 1003, 1007, 1009):
        return ProviderProtocolError(f"{name} closed on a protocol error {detail}")
    return ProviderConnectError(f"{name} connection lost {detail}")


class _State(Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    ENDED = "ended"  # the peer closed, or we ended it: nothing more is sent
    CLOSED = "closed"  # close() started (or open() failed)


class EndSession(Exception):
    """Raised by ``_receive`` to end the session from our side (the agent misbehaves).

    The session emits ``AgentError(error, fatal=True)`` and ``AgentClosed(error)``, then
    closes the socket with 1008 (policy violation) and ``close_reason``.
    """

    def __init__(self, error: ProviderError, close_reason: str = "") -> None:
        super().__init__(error.message)
        self.error = error
        self.close_reason = close_reason


class SendQueue:
    """What waits for the writer: caller audio (drop-oldest) and control messages.

    Audio holds at most ``max_audio`` frames; beyond that the oldest is dropped (the caller
    hears the agent late rather than never). Control messages (key presses, truncations,
    mark echoes, tool results) hold at most ``max_control``; beyond that a new one is
    refused. With ``control_first`` control messages overtake queued audio; without it
    everything leaves in the order it was queued (a key press stays after the audio
    before it).
    """

    def __init__(self, *, max_audio: int, max_control: int, control_first: bool) -> None:
        self.max_audio = max_audio
        self.max_control = max_control
        self.control_first = control_first
        self._audio: deque[tuple[int, AudioFrame]] = deque()
        self._control: deque[tuple[int, Outgoing]] = deque()
        self._order = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._audio) + len(self._control)

    def put_audio(self, frame: AudioFrame) -> bool:
        """Queue caller audio; True when the queue was full and its oldest frame dropped."""
        full = len(self._audio) >= self.max_audio
        if full and self._audio:
            self._audio.popleft()
        self._order += 1
        self._audio.append((self._order, frame))
        self._ready.set()
        return full

    def put_control(self, message: Outgoing) -> bool:
        """Queue a control message; False (nothing queued) when ``max_control`` wait."""
        if len(self._control) >= self.max_control:
            return False
        self._order += 1
        self._control.append((self._order, message))
        self._ready.set()
        return True

    def pop(self) -> AudioFrame | Outgoing | None:
        """The next item to send, ``None`` when empty."""
        if self._control and (
            self.control_first or not self._audio or self._control[0][0] < self._audio[0][0]
        ):
            return self._control.popleft()[1]
        if self._audio:
            return self._audio.popleft()[1]
        return None

    def take_control(self) -> list[Outgoing]:
        """Empty the queue, returning the control messages in order (audio is discarded)."""
        messages = [message for _, message in self._control]
        self.clear()
        return messages

    def clear(self) -> None:
        """Drop everything queued."""
        self._audio.clear()
        self._control.clear()

    async def wait(self) -> None:
        """Wait until something was queued since the last ``wait``."""
        await self._ready.wait()
        self._ready.clear()


class WebSocketAgentSession(AgentSession):
    """An ``AgentSession`` over one WebSocket; see the module docstring for the contract.

    ``name`` is the provider as people read it ("OpenAI"), used in errors and logs;
    ``task_prefix`` names the tasks (``<prefix>-read-<call_id>``, ``<prefix>-send-…``);
    ``outbox`` is the send queue, by default ``AUDIO_QUEUE_FRAMES`` of audio and
    ``CONTROL_QUEUE`` control messages sent ahead of the audio (a subclass may resize it
    in ``_connect``).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        name: str,
        task_prefix: str,
        outbox: SendQueue | None = None,
    ) -> None:
        self._config = config
        self._name = name
        self._task_prefix = task_prefix
        self._call_id = ""
        self._state = _State.NEW
        self._ws: AgentSocket | None = None
        self._formats: NegotiatedFormats | None = None
        self._relay: Relay[AgentEvent] = Relay()
        self._pull = Pull(self.listen, _is_closed)
        self._finished = False  # AgentClosed went to the relay: nothing after it
        self._outbox = outbox or SendQueue(
            max_audio=AUDIO_QUEUE_FRAMES, max_control=CONTROL_QUEUE, control_first=True
        )
        self._unread: deque[str | bytes] = deque()
        self._reader: asyncio.Task[None] | None = None  # watches the connection's end
        self._failed: Exception | None = None  # what _receive raised
        self._failure: asyncio.Future[None] | None = None  # set when it did
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # the writer holds items it has not finished sending
        self._closed = asyncio.Event()

    # --- hooks (see the module docstring) ---

    @abc.abstractmethod
    async def _connect(self, context: CallContext) -> AgentSocket:
        """Open the agent's socket."""

    @abc.abstractmethod
    async def _handshake(
        self, ws: AgentSocket, context: CallContext, preferred: AudioFormat
    ) -> NegotiatedFormats:
        """Run the opening exchange; return the formats of the call."""

    @abc.abstractmethod
    def _opened(self, formats: NegotiatedFormats) -> None:
        """Set up the conversation state once the handshake succeeded."""

    @abc.abstractmethod
    def _receive(self, ws: AgentSocket, data: str | bytes) -> None:
        """Handle one message from the agent (in the socket's callback)."""

    @abc.abstractmethod
    def _encode_audio(self, frame: AudioFrame) -> Outgoing:
        """Caller audio as the wire carries it (writer task)."""

    @abc.abstractmethod
    def _peer_closed(
        self, ws: AgentSocket, closed: ConnectionClosed
    ) -> ProviderError | HangupRequested | None:
        """What a close we did not ask for means."""

    def _stop_message(self, reason: str) -> Outgoing | None:
        """The last message ``close()`` sends; none by default."""
        del reason
        return None

    # --- AgentSession ---

    @property
    def formats(self) -> NegotiatedFormats | None:
        """The negotiated formats, once ``open`` has returned."""
        return self._formats

    @property
    def is_open(self) -> bool:
        """True from a successful ``open`` until the agent or ``close()`` ends the session."""
        return self._state is _State.OPEN

    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        """Connect, run the handshake, start the writer (and reading, if listened to).

        Raises what ``_connect`` and ``_handshake`` raise (``ProviderError``), and
        ``ProviderConnectError`` when ``close()`` ran meanwhile; the event stream then ends
        with ``AgentClosed`` (carrying the error unless ``close()`` came first).
        """
        if self._state is not _State.NEW:
            raise RuntimeError(f"{self._name} session: open() may be called once")
        self._state = _State.OPENING
        self._call_id = context.call_id
        failure: BaseException | None = None
        try:
            self._ws = ws = await self._connect(context)
            self._check_opening()
            formats = await self._handshake(ws, context, preferred)
            self._check_opening()
            self._formats = formats
            self._opened(formats)
        except BaseException as exc:
            failure = exc
        if failure is not None:
            # Awaited outside the handler (see gateway.bridge.CallBridge.run: mypyc).
            await self._shutdown("", failure if isinstance(failure, ProviderError) else None)
            if self._ws is not None:  # close() may have run before the socket existed
                with contextlib.suppress(Exception):
                    await self._ws.close()
            raise failure
        self._state = _State.OPEN
        self._writer = asyncio.create_task(
            self._write(ws), name=f"{self._task_prefix}-send-{self._call_id}"
        )
        if self._relay.listening:
            self._start_reading(ws)
        return formats

    def listen(self, on_event: Listener[AgentEvent]) -> None:
        """Hand the agent's events to ``on_event`` as they are parsed; reading starts now."""
        self._relay.listen(on_event)
        if self._state is _State.OPEN and self._ws is not None:
            self._start_reading(self._ws)

    def events(self) -> AsyncIterator[AgentEvent]:
        """The agent's events, ending with ``AgentClosed`` (instead of ``listen``)."""
        return self._pull()

    async def close(self, reason: str = "") -> None:
        """Stop both tasks, send the stop message if any, close the socket, end the event
        stream with ``AgentClosed``. Idempotent; a concurrent call waits for the first."""
        await self._shutdown(reason, None)

    # --- for subclasses ---

    def _push_back(self, data: str | bytes) -> None:
        """A message the handshake read but did not consume: the reader handles it first."""
        self._unread.append(data)

    def _emit(self, *events: AgentEvent) -> None:
        """Hand events to the bridge (held until it listens); ignored once finished."""
        if self._finished:
            return
        for event in events:
            self._relay.put(event)

    def _queue_audio(self, frame: AudioFrame) -> bool:
        """Send or queue caller audio if OPEN; True when that dropped the oldest queued frame.

        With nothing queued or being sent and the socket taking data, the frame is written
        at once, in the caller's callback: the common case costs no writer wake-up, and
        the order of everything sent stays the order it was queued."""
        if self._state is not _State.OPEN:
            return False
        ws = self._writable()
        if ws is not None:
            if ws.open:  # else it is closing: the reader reports how and why
                ws.write(self._encode_audio(frame))
            return False
        return self._outbox.put_audio(frame)

    def _queue_control(self, *messages: Outgoing) -> None:
        """Send or queue control messages if OPEN; one beyond the bound is dropped and
        logged. Like caller audio, a message is written at once when nothing is queued or
        being sent and the socket takes data (a mark echo costs no writer wake-up)."""
        if self._state is not _State.OPEN:
            return
        for message in messages:
            ws = self._writable()
            if ws is not None:
                if ws.open:  # else it is closing: the reader reports how and why
                    ws.write(message)
                continue
            if not self._outbox.put_control(message):
                logger.warning(
                    "call %s: %s control queue full, message dropped", self._call_id, self._name
                )

    # --- internals ---

    def _writable(self) -> AgentSocket | None:
        """The socket, when a message may be written now rather than queued: nothing
        queued, the writer idle (so order is kept) and the socket taking data."""
        ws = self._ws
        if self._outbox or self._writing or ws is None or ws.congested:
            return None
        return ws

    def _check_opening(self) -> None:
        if self._state is not _State.OPENING:
            raise ProviderConnectError(f"{self._name} session was closed while it opened")

    def _start_reading(self, ws: AgentSocket) -> None:
        if self._reader is None:
            self._failure = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(
                self._read(ws), name=f"{self._task_prefix}-read-{self._call_id}"
            )

    def _on_message(self, data: str | bytes) -> None:
        """A message, in the socket's frame callback: handled at once."""
        ws = self._ws
        assert ws is not None
        try:
            self._receive(ws, data)
        except Exception as exc:  # EndSession, or a bug of ours: the reader ends it
            ws.set_handler(None)  # nothing more is handled
            self._failed = exc
            if self._failure is not None and not self._failure.done():
                self._failure.set_result(None)

    async def _read(self, ws: AgentSocket) -> None:
        """Hand the messages to ``_receive`` from the socket's callback, then wait for the
        end: the peer closed, or ``_receive`` raised."""
        error: ProviderError | None = None
        last: list[AgentEvent] = []
        ended_by_us: EndSession | None = None
        failure = self._failure
        assert failure is not None
        try:
            while self._unread:
                self._receive(ws, self._unread.popleft())
            ws.set_handler(self._on_message)
            await asyncio.wait((failure, ws.lost), return_when=asyncio.FIRST_COMPLETED)
            if self._failed is not None:
                raise self._failed
            raise ws.close_exc  # the connection is gone: how it ended
        except ConnectionClosed as closed:
            if self._state is not _State.OPEN:
                return  # close() ran: it ends the event stream itself
            outcome = self._peer_closed(ws, closed)
            if isinstance(outcome, ProviderError):
                error = outcome
                last = [AgentError(outcome, fatal=True)]
            elif outcome is not None:
                last = [outcome]
        except EndSession as end:
            if self._state is not _State.OPEN:
                return
            ended_by_us, error = end, end.error
            last = [AgentError(end.error, fatal=True)]
        except Exception:
            # A bug of ours while handling a message must end the call cleanly with an
            # explanation, not leave the bridge waiting on a dead reader.
            if self._state is not _State.OPEN:
                return
            logger.exception("%s: failed handling a message from the agent", self._name)
            error = ProviderError(f"Telepath failed to handle a message from {self._name}")
            ended_by_us = EndSession(error, "internal error")
            last = [AgentError(error, fatal=True)]
        finally:
            ws.set_handler(None)
        self._state = _State.ENDED  # send_audio() and friends become no-ops
        self._finish(*last, closed=AgentClosed(error))
        if self._writer is not None:
            self._writer.cancel()
        if ended_by_us is not None:
            with contextlib.suppress(Exception):
                await ws.close(CloseCode.POLICY_VIOLATION, ended_by_us.close_reason[:120])

    def _finish(self, *last: AgentEvent, closed: AgentClosed) -> None:
        """The last events, ``AgentClosed`` at the end; later calls are ignored."""
        if self._finished:
            return
        self._finished = True
        for event in (*last, closed):
            self._relay.put(event)

    async def _write(self, ws: AgentSocket) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader reports how and why
            while True:
                await self._outbox.wait()
                self._writing = True
                try:
                    while (item := self._outbox.pop()) is not None:
                        if isinstance(item, AudioFrame):
                            item = self._encode_audio(item)
                        await ws.send(item)  # waits only while the socket is congested
                finally:
                    self._writing = False

    async def _shutdown(self, reason: str, error: ProviderError | None) -> None:
        if self._state is _State.CLOSED:
            await self._closed.wait()
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        try:
            # Both tasks stop, the writer first, before the stop message: no two senders,
            # no audio after it, and no event after close() began.
            if self._ws is not None:
                self._ws.set_handler(None)
            current = asyncio.current_task()
            tasks = [t for t in (self._writer, self._reader) if t is not None and t is not current]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            ws = self._ws
            if ws is not None:
                if was_open:
                    await self._say_goodbye(ws, reason)
                with contextlib.suppress(Exception):
                    await ws.close(CloseCode.NORMAL_CLOSURE, reason[:120])
            self._outbox.clear()
            self._finish(closed=AgentClosed(error))
        finally:
            self._closed.set()

    async def _say_goodbye(self, ws: AgentSocket, reason: str) -> None:
        stop = self._stop_message(reason)
        if stop is None:
            return
        # Control messages already queued (mark echoes, key presses) still go out, then
        # the stop message; caller audio not yet sent is moot now.
        with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
            async with asyncio.timeout(STOP_TIMEOUT):
                for message in (*self._outbox.take_control(), stop):
                    await ws.send(message)


def _is_closed(event: AgentEvent) -> bool:
    return isinstance(event, AgentClosed)
