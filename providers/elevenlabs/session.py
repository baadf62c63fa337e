"""``ElevenLabsSession``: the asyncio pump between one ElevenLabs Agents WebSocket and the
``AgentSession`` seam.

No protocol decision lives here: parsing is ``events.py``, the conversation state is
``conversation.py``, settings and dynamic variables are ``options.py``, the private-agent
REST call is ``signed_url.py``. ``open`` gets a signed URL when an API key is configured,
connects through ``connect_agent``, sends ``conversation_initiation_client_data`` and waits
for ``conversation_initiation_metadata``, whose formats become the ``NegotiatedFormats``
(ElevenLabs cannot change formats per conversation, providers.md §0.5). Then a reader task
(server events → conversation → agent events; pongs sent straight back) and a sender task
(caller audio from a bounded drop-oldest queue, control messages first).

Ending: ``close()`` is idempotent, cancels both tasks and closes the socket. A socket that
closes while the call is up emits ``AgentError(fatal=True)`` then ``AgentClosed(error)``,
unless the agent had asked to hang up or transfer. A conversation cannot be resumed on a
new socket, so there is no reconnect.
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
from providers.elevenlabs import events as wire
from providers.elevenlabs.conversation import ConvaiConversation, ConvaiStats
from providers.elevenlabs.options import ConvaiOptions, dynamic_variables
from providers.elevenlabs.signed_url import DEFAULT_API_URL, get_signed_url

logger = logging.getLogger(__name__)

PROVIDER: Final = "elevenlabs"
AUDIO_QUEUE_FRAMES: Final = 50  # 1 s of 20 ms caller frames; older ones are dropped
CONTROL_QUEUE: Final = 256
EVENT_QUEUE: Final = 512


class _State(Enum):
    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"


def close_error(code: int | None, reason: str) -> ProviderError:
    """Classify a close of the ElevenLabs socket that we did not ask for."""
    detail = f"(close {code}{': ' + reason[:200] if reason else ''})"
    if code == 1008:
        # Policy violation: ElevenLabs' answer to a refused override or an invalid message.
        if "override" in reason.lower() or "agent" in reason.lower():
            return ProviderConfigError(f"ElevenLabs refused the conversation set-up {detail}")
        return ProviderProtocolError(f"ElevenLabs refused a message {detail}")
    if code in (1000, 1001):
        return ProviderError(f"ElevenLabs ended the conversation {detail}")
    if code in (1002, 1003, 1007, 1009):
        return ProviderProtocolError(f"ElevenLabs closed on a protocol error {detail}")
    if code == 1011:
        return ProviderError(f"ElevenLabs had an internal error {detail}")
    return ProviderConnectError(f"ElevenLabs connection lost {detail}")


class ElevenLabsSession(AgentSession):
    """One call's conversation with an ElevenLabs agent. See the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        """Read the trunk's settings; raises ``ProviderConfigError`` for unusable ones."""
        self._config = config
        self._options = ConvaiOptions.from_config(config)
        self.stats = ConvaiStats()
        self.conversation_id: str | None = None
        self._state = _State.NEW
        self._ws: ClientConnection | None = None
        self._conv: ConvaiConversation | None = None
        self._formats: NegotiatedFormats | None = None
        self._audio: deque[AudioFrame] = deque(maxlen=AUDIO_QUEUE_FRAMES)
        self._control: deque[str] = deque()
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[AgentEvent] = asyncio.Queue(EVENT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._finished = False
        self._call_id = ""

    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        """Connect, send the initiation data, adopt the formats the agent announces."""
        if self._state is not _State.NEW:
            raise RuntimeError("open() may be called once")
        self._state = _State.OPENING
        self._call_id = context.call_id
        timeout = self._config.connect_timeout
        try:
            options = self._options
            if options.api_key is not None:
                url = await get_signed_url(
                    options.api_url or DEFAULT_API_URL, options.agent_id, options.api_key, timeout
                )
            else:
                url = options.public_url()
            self._ws = await connect_agent(
                url,
                provider=PROVIDER,
                connect_timeout=timeout,
                ping_interval=self._config.ping_interval,
            )
            first = wire.conversation_initiation_client_data(
                dynamic_variables=dynamic_variables(context),
                prompt=options.prompt,
                first_message=options.first_message,
                language=options.language,
                voice_id=options.voice_id,
            )
            formats = await self._await_metadata(self._ws, wire.encode(first), timeout)
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
            raise ProviderConnectError("ElevenLabs session was closed while it opened")
        if formats.input != preferred or formats.output != preferred:
            logger.info(
                "call %s: ElevenLabs agent uses %s/%s, leg is %s: the bridge transcodes "
                "(set the agent to ulaw_8000 for passthrough)",
                self._call_id,
                formats.input,
                formats.output,
                preferred,
            )
        self._formats = formats
        self._conv = ConvaiConversation(options, formats, self.stats, self._call_id)
        self._state = _State.OPEN
        self._tasks = [
            asyncio.create_task(
                self._read(self._ws, self._conv), name=f"elevenlabs-read-{self._call_id}"
            ),
            asyncio.create_task(self._send(self._ws), name=f"elevenlabs-send-{self._call_id}"),
        ]
        return formats

    async def _await_metadata(
        self, ws: ClientConnection, first: str, limit_s: float
    ) -> NegotiatedFormats:
        try:
            async with asyncio.timeout(limit_s):
                await ws.send(first)
                while True:
                    try:
                        event = wire.parse_server_event(await ws.recv())
                    except ProviderProtocolError as exc:
                        logger.warning("call %s: %s", self._call_id, exc.message)
                        continue
                    if isinstance(event, wire.Ping):
                        await ws.send(wire.encode(wire.pong(event.event_id)))
                        self.stats.pings_answered += 1
                    elif isinstance(event, wire.ConversationInitiationMetadata):
                        self.conversation_id = event.conversation_id
                        return NegotiatedFormats(
                            input=wire.audio_format(event.user_input_audio_format),
                            output=wire.audio_format(event.agent_output_audio_format),
                        )
                    else:
                        logger.debug("call %s: before metadata, ignored %s", self._call_id, event)
        except TimeoutError as exc:
            raise ProviderConnectError(
                f"ElevenLabs did not start the conversation within {limit_s:g} s"
            ) from exc
        except ConnectionClosed:
            raise close_error(ws.close_code, ws.close_reason or "") from None

    async def answered(self) -> None:
        """Release the agent's first message, held while the call rang."""
        if self._conv is not None and self._state is _State.OPEN:
            self._conv.answered()
            await self._emit_pending()

    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio; when the queue is full the oldest frame is dropped."""
        if self._state is not _State.OPEN or self._formats is None:
            return
        if frame.format != self._formats.input:
            self.stats.audio_frames_dropped += 1
            return
        if len(self._audio) == self._audio.maxlen:
            self.stats.audio_frames_dropped += 1
        self._audio.append(frame)
        self._wake.set()

    def send_dtmf(self, digit: str) -> None:
        """Pass a key press to the agent as a ``contextual_update``."""
        if self._conv is not None and self._state is _State.OPEN:
            self._conv.dtmf(digit)
            self._flush_control()

    def played(self, item_id: str, played_ms: int) -> None:
        """Nothing to send: ElevenLabs has no truncation message (providers.md §2.6)."""
        del item_id, played_ms

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

    async def _read(self, ws: ClientConnection, conv: ConvaiConversation) -> None:
        try:
            while True:
                message = await ws.recv()
                try:
                    conv.receive_event(wire.parse_server_event(message))
                except ProviderProtocolError as exc:
                    logger.warning("call %s: %s", self._call_id, exc.message)
                    conv.protocol_error(exc)
                # Pongs and tool results go out from here, before anything else is read.
                for reply in conv.data_to_send():
                    await ws.send(wire.encode(reply))
                await self._emit_pending()
        except ConnectionClosed:
            if self._state is _State.CLOSED:
                return
        self._state = _State.CLOSED
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if conv.ended_by_agent and ws.close_code in (1000, 1001):
            logger.info("call %s: ElevenLabs closed after the agent ended the call", self._call_id)
            self._finish(None)
            return
        error = close_error(ws.close_code, ws.close_reason or "")
        logger.warning("call %s: %s", self._call_id, error.message)
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
                    await ws.send(wire.user_audio_chunk(frame.payload))
                    self.stats.audio_frames_sent += 1
