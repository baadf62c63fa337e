"""``OpenAIRealtimeSession``: the asyncio pump between one OpenAI Realtime WebSocket (GA
interface) and the ``AgentSession`` seam.

No protocol decision lives here: parsing is ``events.py``, the conversation state is
``conversation.py``, settings are ``options.py``. This module opens the socket through
``connect_agent``, sends ``session.update`` and waits for ``session.updated``, then runs two
tasks: a reader (server events → conversation → agent events) and a sender (caller audio
from a bounded drop-oldest queue, and control messages ahead of audio).

Ending: ``close()`` is idempotent, cancels both tasks and closes the socket. A socket that
closes while the call is up emits ``AgentError(fatal=True)`` then ``AgentClosed(error)``; a
Realtime session cannot be resumed on a new socket (providers.md §1.9: a reconnect is a new
server session), so there is no reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from media import AudioFormat, AudioFrame, CallContext
from providers.base import (
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    AgentSession,
    NegotiatedFormats,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
)
from providers.connection import connect_agent
from providers.openai_realtime import events as wire
from providers.openai_realtime.conversation import (
    RealtimeConversation,
    RealtimeStats,
    classify_error,
)
from providers.openai_realtime.options import RealtimeOptions, negotiate

logger = logging.getLogger(__name__)

PROVIDER: Final = "openai"
AUDIO_QUEUE_FRAMES: Final = 50  # 1 s of 20 ms caller frames; older ones are dropped
CONTROL_QUEUE: Final = 256
EVENT_QUEUE: Final = 512
# OpenAI closes with 4000 and ``invalid_request_error.beta_api_shape_disabled`` when the
# beta shape is used (providers.md §0.1, §1.9).
CLOSE_BETA_SHAPE: Final = 4000


class _State(Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"


def close_error(code: int | None, reason: str) -> ProviderError:
    """Classify a close of the OpenAI socket that we did not ask for."""
    detail = f"(close {code}{': ' + reason[:200] if reason else ''})"
    if code == CLOSE_BETA_SHAPE or "beta_api_shape_disabled" in reason:
        return ProviderConfigError(
            "OpenAI refused the Realtime beta interface; Telepath speaks GA only, check "
            f"base_url and proxies for an OpenAI-Beta header {detail}"
        )
    if code in (1000, 1001):
        return ProviderError(f"OpenAI ended the session {detail}")
    if code in (1002, 1003, 1007, 1009):
        return ProviderProtocolError(f"OpenAI closed on a protocol error {detail}")
    if code == 1008:
        return ProviderConfigError(f"OpenAI closed on a policy violation {detail}")
    return ProviderConnectError(f"OpenAI connection lost {detail}")


class OpenAIRealtimeSession(AgentSession):
    """One call's conversation with OpenAI Realtime (GA). See the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        """Read the trunk's settings; raises ``ProviderConfigError`` for unusable ones."""
        self._config = config
        self._options = RealtimeOptions.from_config(config)
        self.stats = RealtimeStats()
        self._state = _State.NEW
        self._ws: ClientConnection | None = None
        self._conv: RealtimeConversation | None = None
        self._formats: NegotiatedFormats | None = None
        self._audio: deque[AudioFrame] = deque(maxlen=AUDIO_QUEUE_FRAMES)
        self._control: deque[str] = deque()
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[AgentEvent] = asyncio.Queue(EVENT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._finished = False
        self._call_id = ""

    @property
    def formats(self) -> NegotiatedFormats | None:
        """The negotiated formats once ``open`` returned."""
        return self._formats

    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        """Connect, send ``session.update``, wait for ``session.updated``."""
        if self._state is not _State.NEW:
            raise RuntimeError("open() may be called once")
        self._state = _State.OPENING
        self._call_id = context.call_id
        try:
            options = self._options
            formats = negotiate(preferred)
            self._ws = await connect_agent(
                options.url,
                provider=PROVIDER,
                headers=options.headers,
                connect_timeout=self._config.connect_timeout,
                ping_interval=self._config.ping_interval,
            )
            await self._configure(self._ws, options, formats)
        except BaseException as exc:
            closed_by_us = self._state is _State.CLOSED  # close() ran while we were opening
            await self._abort()
            self._state = _State.CLOSED
            # The stream still ends with AgentClosed, for a consumer already iterating it.
            error = exc if isinstance(exc, ProviderError) and not closed_by_us else None
            self._finish(error, report=False)
            raise
        if self._state is not _State.OPENING:  # close() ran while we were opening
            await self._abort()
            raise ProviderConnectError("OpenAI session was closed while it opened")
        self._formats = formats
        self._conv = RealtimeConversation(options, formats, self.stats, self._call_id)
        self._state = _State.OPEN
        self._tasks = [
            asyncio.create_task(
                self._read(self._ws, self._conv), name=f"openai-read-{self._call_id}"
            ),
            asyncio.create_task(self._send(self._ws), name=f"openai-send-{self._call_id}"),
        ]
        logger.info(
            "call %s: OpenAI session ready (model %s, %s in, %s out)",
            self._call_id,
            options.model,
            formats.input,
            formats.output,
        )
        return formats

    async def _configure(
        self, ws: ClientConnection, options: RealtimeOptions, formats: NegotiatedFormats
    ) -> None:
        timeout = self._config.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await ws.send(wire.encode(wire.session_update(options.session(formats))))
                while True:
                    try:
                        event = wire.parse_server_event(await ws.recv())
                    except ProviderProtocolError as exc:
                        logger.warning("call %s: %s", self._call_id, exc.message)
                        continue
                    if isinstance(event, wire.SessionUpdated):
                        return
                    if isinstance(event, wire.ErrorReceived):
                        # An error before session.updated means our configuration was
                        # refused, unless it names a cause of its own (key, quota, limits).
                        error, _ = classify_error(event)
                        if isinstance(error, ProviderProtocolError) or type(error) is ProviderError:
                            raise ProviderConfigError(
                                "OpenAI refused the session configuration: "
                                f"{(event.message or event.code)[:300]}"
                            )
                        raise error
        except TimeoutError as exc:
            raise ProviderConnectError(
                f"OpenAI did not confirm the session within {timeout:g} s"
            ) from exc
        except ConnectionClosed:
            raise close_error(ws.close_code, ws.close_reason or "") from None

    async def answered(self) -> None:
        """Trigger the greeting (``options["greeting"]``) now that the caller is connected."""
        if self._conv is not None and self._state is _State.OPEN:
            self._conv.greet()
            self._flush_control()

    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio; when the queue is full the oldest frame is dropped."""
        if self._state is not _State.OPEN or self._formats is None:
            return
        if frame.format != self._formats.input:
            self.stats.audio_frames_dropped += 1
            logger.debug(
                "call %s: dropped %s audio, expected %s",
                self._call_id,
                frame.format,
                self._formats.input,
            )
            return
        if len(self._audio) == self._audio.maxlen:
            self.stats.audio_frames_dropped += 1
        self._audio.append(frame)
        self._wake.set()

    def send_dtmf(self, digit: str) -> None:
        """Pass a key press to the model as a user text item (see ``RealtimeConversation``)."""
        if self._conv is not None and self._state is _State.OPEN:
            self._conv.dtmf(digit)
            self._flush_control()

    def played(self, item_id: str, played_ms: int) -> None:
        """Truncate ``item_id`` at what the caller heard (clamped to the audio received)."""
        if self._conv is not None and self._state is _State.OPEN:
            self._conv.played(item_id, played_ms)
            self._flush_control()

    async def events(self) -> AsyncIterator[AgentEvent]:
        """The agent's events, ending with ``AgentClosed``."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, AgentClosed):
                return

    async def close(self, reason: str = "") -> None:
        """Cancel the tasks, close the socket, emit ``AgentClosed``. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        await self._abort(reason)
        self._finish(None)

    # --- internals ---

    async def _abort(self, reason: str = "") -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close(1000, reason[:120])
        if self._state is _State.OPENING:
            self._state = _State.CLOSED

    def _flush_control(self) -> None:
        if self._conv is None:
            return
        for message in self._conv.data_to_send():
            if len(self._control) >= CONTROL_QUEUE:
                logger.warning("call %s: control queue full, message dropped", self._call_id)
                continue
            self._control.append(wire.encode(message))
        self._wake.set()

    async def _emit_pending(self) -> None:
        if self._conv is None:
            return
        self._flush_control()
        for event in self._conv.events_received():
            await self._events.put(event)

    def _finish(self, error: ProviderError | None, *, report: bool = True) -> None:
        """Queue the last events (``AgentError`` if ``report`` and ``error``, then
        ``AgentClosed``); never blocks: drops the oldest events if the queue is full."""
        if self._finished:
            return
        self._finished = True
        tail: list[AgentEvent] = [AgentClosed(error)]
        if error is not None and report:
            tail.insert(0, AgentError(error, fatal=True))
        for event in tail:
            while self._events.full():
                self._events.get_nowait()
            self._events.put_nowait(event)

    async def _read(self, ws: ClientConnection, conv: RealtimeConversation) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await ws.recv()
                try:
                    conv.receive_event(wire.parse_server_event(message), loop.time())
                except ProviderProtocolError as exc:
                    logger.warning("call %s: %s", self._call_id, exc.message)
                    conv.protocol_error(exc)
                await self._emit_pending()
        except ConnectionClosed:
            if self._state is _State.CLOSED:
                return
        error = close_error(ws.close_code, ws.close_reason or "")
        logger.warning("call %s: %s", self._call_id, error.message)
        self._state = _State.CLOSED
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._finish(error)

    async def _send(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._control or self._audio:
                    if self._control:
                        await ws.send(self._control.popleft())
                        continue
                    frame = self._audio.popleft()
                    await ws.send(wire.input_audio_buffer_append(frame.payload))
                    self.stats.audio_frames_sent += 1
