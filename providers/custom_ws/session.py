"""``CustomAgentSession``: a customer's own WebSocket agent behind ``AgentSession``.

This is the glue between one dialect codec (``telepath_dialect`` or ``twilio_dialect``) and
the socket pump of ``providers.ws_session`` (reader and writer tasks, bounded queues,
idempotent close): it opens the socket with ``connect_agent``, sends the dialect's opening
frames, waits for ``accept``, turns agent frames into ``AgentEvent``s and sends ``stop`` on
close. No wire format lives here.

Semantics (docs/agent-protocol.md):

- Agent audio becomes ``AgentAudio`` tagged with a *generation* (``item_id`` = "0", "1",
  …). The generation advances on the agent's ``clear`` and on an interruption reported
  by the bridge (``played`` for the current generation), so the bridge can drop stale
  audio still in flight.
- Agent marks become ``MarkRequested``; ``mark_played(name)`` sends the echo. Marks whose
  audio is dropped by a clear are echoed at once in the twilio dialect (Twilio does) and
  listed in the ``cleared`` notice in the telepath dialect (never echoed).
- A malformed agent message is logged, counted and reported as a non-fatal ``AgentError``;
  after ``max_protocol_errors`` of them the session ends with a fatal one.
- The agent closing the socket mid-call is a fatal ``AgentError`` + ``AgentClosed(error)``,
  unless it asked for a hang-up or transfer first, or (twilio dialect) it closed cleanly,
  which is how a Twilio agent ends a ``<Connect><Stream>`` (reported as ``HangupRequested``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.frames import CloseCode

from media import AudioFormat, AudioFrame, CallContext, Encoding
from media.errors import MediaError
from media.frames import DTMF_DIGITS
from media.vad import SpeechStarted
from providers.agent_socket import AgentSocket
from providers.base import (
    AgentAudio,
    AgentConfig,
    AgentError,
    AgentEvent,
    ClearRequested,
    DtmfRequested,
    HangupRequested,
    MarkRequested,
    NegotiatedFormats,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
    TransferRequested,
)
from providers.connection import MAX_MESSAGE_BYTES, connect_agent
from providers.custom_ws.caller_vad import CallerVad
from providers.custom_ws.errors import MalformedAccept, MalformedAgentMessage
from providers.custom_ws.messages import (
    AcceptReceived,
    AgentMessage,
    ClearReceived,
    Dialect,
    DtmfReceived,
    HangupReceived,
    MarkReceived,
    MediaReceived,
    TransferReceived,
)
from providers.custom_ws.options import CustomAgentOptions
from providers.custom_ws.telepath_dialect import TelepathDialect
from providers.custom_ws.twilio_dialect import DEFAULT_ACCOUNT_SID, TwilioDialect, twilio_call_sid
from providers.wire import Outgoing
from providers.ws_session import EndSession, SendQueue, WebSocketAgentSession

logger = logging.getLogger(__name__)

PROVIDER = "custom agent"
CONTROL_QUEUE_SIZE = 4096  # dtmf, mark echoes, notices: small, bounded by marks and keys


@dataclass(slots=True)
class CustomAgentStats:
    """Counters for the call record and metrics."""

    malformed_messages: int = 0
    dropped_caller_frames: int = 0
    dropped_marks: int = 0
    agent_frames: int = 0


class CustomAgentSession(WebSocketAgentSession):
    """A conversation with a customer's WebSocket agent (``provider="custom"``).

    ``config.endpoint`` is the agent's ``ws://`` or ``wss://`` URL, ``config.headers`` go
    on the handshake (e.g. ``Authorization``), ``config.options`` are read by
    ``CustomAgentOptions``. ``token_hex`` is the random source for the twilio dialect's
    ``streamSid`` (injected so tests are deterministic).
    """

    def __init__(
        self, config: AgentConfig, *, token_hex: Callable[[int], str] = secrets.token_hex
    ) -> None:
        options = CustomAgentOptions()
        super().__init__(
            config,
            name=PROVIDER,
            task_prefix="agent",
            # One queue in the order things happened (a key press stays after the audio
            # before it); the trunk's ``send_queue_frames`` is applied in ``_connect``.
            outbox=SendQueue(
                max_audio=options.send_queue_frames,
                max_control=CONTROL_QUEUE_SIZE,
                control_first=False,
            ),
        )
        self._token_hex = token_hex
        self.stats = CustomAgentStats()
        self._options = options
        self._dialect: Dialect | None = None
        self._generation = 0
        self._cut_reported: set[int] = set()
        self._pending_marks: deque[str] = deque()
        self._dropped_marks: list[str] = []
        self._out_ms = 0.0
        self._ending_requested = False
        self._vad: CallerVad | None = None

    # --- opening ---

    @property
    def dialect(self) -> Dialect | None:
        """The dialect codec in use, once ``open`` has started."""
        return self._dialect

    async def _connect(self, context: CallContext) -> AgentSocket:
        """Read the trunk's options, pick the dialect, open the socket.

        Raises ``ProviderConfigError`` (bad options, no endpoint) or the categorised
        errors of ``connect_agent``.
        """
        self._options = options = CustomAgentOptions.from_options(self._config.options)
        if not self._config.endpoint:
            raise ProviderConfigError("custom agent trunk has no endpoint URL")
        self._outbox.max_audio = options.send_queue_frames
        if options.dialect == "twilio":
            self._dialect = TwilioDialect(
                stream_sid="MZ" + self._token_hex(16),
                call_sid=twilio_call_sid(context.call_id),
                account_sid=options.account_sid or DEFAULT_ACCOUNT_SID,
                max_payload_bytes=options.max_payload_bytes,
            )
        else:
            self._dialect = TelepathDialect(
                binary_audio=options.binary_audio,
                vad_events=options.vad_events,
                max_payload_bytes=options.max_payload_bytes,
            )
        return await connect_agent(
            self._config.endpoint,
            provider=PROVIDER,
            headers=self._config.headers,
            connect_timeout=self._config.connect_timeout,
            ping_interval=self._config.ping_interval or None,
        )

    async def _handshake(
        self, ws: AgentSocket, context: CallContext, preferred: AudioFormat
    ) -> NegotiatedFormats:
        """Send ``start`` (twilio: ``connected`` + ``start``), await ``accept``.

        Raises ``ProviderConnectError`` if the agent closes during the handshake and
        ``ProviderProtocolError`` for an ``accept`` we cannot honour.
        """
        dialect = self._require_dialect()
        offered = dialect.offer(preferred)
        accepted: AudioFormat | None = None
        try:
            for frame in dialect.opening(context, offered):
                await ws.send(frame)
            if dialect.negotiates:
                accepted = await self._await_accept(ws, dialect, self._options.accept_timeout)
        except ConnectionClosed as exc:
            raise ProviderConnectError(
                f"{PROVIDER} closed the connection during the start handshake ({_close_text(exc)})"
            ) from exc
        return dialect.negotiated(offered, accepted)

    async def _await_accept(
        self, ws: AgentSocket, dialect: Dialect, wait: float
    ) -> AudioFormat | None:
        """The agent's first message within ``wait`` s: an ``accept`` picks the format;
        anything else (or silence) takes the offer, and the message is handled as usual."""
        try:
            async with asyncio.timeout(wait):
                first = await ws.recv()
        except TimeoutError:
            return None
        try:
            message = dialect.parse(first)
        except MalformedAccept as exc:
            raise ProviderProtocolError(
                f"{PROVIDER} answered start with an unusable accept: {exc.message}"
            ) from exc
        except MalformedAgentMessage:
            self._push_back(first)  # reported by the reader, like any malformed message
            return None
        if isinstance(message, AcceptReceived):
            return message.format
        self._push_back(first)
        return None

    def _opened(self, formats: NegotiatedFormats) -> None:
        dialect = self._require_dialect()
        if self._options.vad_events and dialect.name == "telepath":
            self._vad = CallerVad(formats.input)
        logger.info(
            "call_id=%s custom agent open, dialect=%s in=%s out=%s",
            self._call_id,
            dialect.name,
            formats.input,
            formats.output,
        )

    async def answered(self) -> None:
        """Nothing to send: the agent had everything in ``start``."""

    # --- caller → agent ---

    def send_audio(self, frame: AudioFrame) -> None:
        """Queue caller audio; when the queue is full the oldest frame is dropped (counted)."""
        if not self.is_open:
            return
        if self._queue_audio(frame):
            self.stats.dropped_caller_frames += 1
            if self.stats.dropped_caller_frames % 50 == 1:
                logger.warning(
                    "call_id=%s custom agent reads too slowly, %d caller frames dropped",
                    self._call_id,
                    self.stats.dropped_caller_frames,
                )
        if self._vad is not None:
            self._run_vad(self._vad, frame)

    def _run_vad(self, vad: CallerVad, frame: AudioFrame) -> None:
        try:
            events = vad.feed(frame)
        except MediaError as exc:
            logger.warning("call_id=%s caller audio unusable for VAD: %s", self._call_id, exc)
            return
        for event in events:
            if isinstance(event, SpeechStarted):
                self.caller_speech_started(event.at_ms)
            else:
                self.caller_speech_stopped(event.at_ms)

    def send_dtmf(self, digit: str) -> None:
        """Tell the agent the caller pressed ``digit`` (one of ``0-9*#A-D``)."""
        if self._dialect is None or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            return
        self._control(self._dialect.dtmf(digit.upper()))

    def mark_played(self, name: str) -> None:
        """Echo the agent's mark ``name``, once, if the agent is still waiting for it."""
        if self._dialect is None:
            return
        try:
            self._pending_marks.remove(name)
        except ValueError:
            logger.debug("call_id=%s mark %r played but not pending", self._call_id, name)
            return
        self._control(self._dialect.mark(name))

    def played(self, item_id: str, played_ms: int) -> None:
        """After an interruption: the caller heard ``played_ms`` of generation ``item_id``.

        If ``item_id`` is the current generation the bridge interrupted on its own, so the
        generation advances as if the agent had sent ``clear``. The telepath dialect then
        sends one ``cleared`` notice per generation; the twilio dialect sends nothing.
        """
        if self._dialect is None:
            return
        try:
            generation = int(item_id)
        except ValueError:
            logger.debug("call_id=%s played() for foreign item %r", self._call_id, item_id)
            return
        if generation == self._generation:
            self._cut_generation()
        if generation in self._cut_reported or generation > self._generation:
            return
        self._cut_reported.add(generation)
        dropped, self._dropped_marks = self._dropped_marks, []
        self._control(self._dialect.cleared(generation, max(0, played_ms), dropped))

    def caller_speech_started(self, timestamp_ms: int) -> None:
        """Our VAD heard the caller start speaking; sent only if the trunk enabled it."""
        if self._dialect is not None:
            self._control(self._dialect.speech_started(timestamp_ms))

    def caller_speech_stopped(self, timestamp_ms: int) -> None:
        """Our VAD heard the caller stop speaking; sent only if the trunk enabled it."""
        if self._dialect is not None:
            self._control(self._dialect.speech_stopped(timestamp_ms))

    def _control(self, frame: Outgoing | None) -> None:
        if frame is not None:
            self._queue_control(frame)

    def _encode_audio(self, frame: AudioFrame) -> Outgoing:
        return self._require_dialect().media(frame)

    def _stop_message(self, reason: str) -> Outgoing | None:
        return None if self._dialect is None else self._dialect.stop(reason)

    # --- agent → bridge ---

    def _receive(self, ws: AgentSocket, data: str | bytes) -> None:
        self.stats.agent_frames += 1
        try:
            message = self._require_dialect().parse(data)
            event = self._apply(message)
        except MalformedAgentMessage as exc:
            self._protocol_error(exc)
            return
        if event is not None:
            self._emit(event)

    def _peer_closed(
        self, ws: AgentSocket, closed: ConnectionClosed
    ) -> ProviderError | HangupRequested | None:
        ok = isinstance(closed, ConnectionClosedOK)  # the agent closed with 1000/1001
        if ok and self._ending_requested:
            return None
        if ok and self._require_dialect().name == "twilio":
            # A Twilio agent ends <Connect><Stream> by closing the socket (TW-CONNECT).
            return HangupRequested("agent closed the stream")
        code, reason = _code(closed), _reason(closed)
        error: ProviderError
        if code == CloseCode.MESSAGE_TOO_BIG:
            error = ProviderProtocolError(
                f"{PROVIDER} sent a message larger than {MAX_MESSAGE_BYTES} bytes"
            )
        else:
            error = ProviderConnectError(
                f"{PROVIDER} closed the connection mid-call (code {code}"
                + (f", {reason[:120]!r})" if reason else ")")
            )
        logger.warning("call_id=%s %s", self._call_id, error.message)
        return error

    def _apply(self, message: AgentMessage) -> AgentEvent | None:
        """Update the session for one agent message; return the event for the bridge."""
        assert self._formats is not None  # set before the reader starts
        if isinstance(message, MediaReceived):
            out = self._formats.output
            if not message.payload:
                return None
            if out.encoding is Encoding.L16 and len(message.payload) % 2:
                raise MalformedAgentMessage("L16 payload with an odd number of bytes")
            frame = AudioFrame(
                out,
                message.payload,
                timestamp=int(self._out_ms),
                received_at=asyncio.get_running_loop().time(),
            )
            self._out_ms += frame.duration_ms
            return AgentAudio(frame, item_id=str(self._generation))
        if isinstance(message, MarkReceived):
            if len(self._pending_marks) >= self._options.max_pending_marks:
                self._pending_marks.popleft()
                self.stats.dropped_marks += 1
            self._pending_marks.append(message.name)
            return MarkRequested(message.name)
        if isinstance(message, ClearReceived):
            self._cut_generation()
            return ClearRequested()
        if isinstance(message, HangupReceived):
            self._ending_requested = True
            return HangupRequested(message.reason)
        if isinstance(message, TransferReceived):
            self._ending_requested = True
            return TransferRequested(message.target)
        if isinstance(message, DtmfReceived):
            return DtmfRequested(message.digits)
        raise MalformedAgentMessage("'accept' is only valid as the answer to 'start'")

    def _cut_generation(self) -> None:
        """The audio of the current generation was cut: start the next one, settle marks."""
        self._generation += 1
        pending = list(self._pending_marks)
        self._pending_marks.clear()
        dialect = self._require_dialect()
        if dialect.echoes_marks_on_clear:
            # TW-WSM: clear "causes any mark messages to be sent back to your WebSocket server".
            for name in pending:
                self._control(dialect.mark(name))
        else:
            self._dropped_marks.extend(pending)
            del self._dropped_marks[: -self._options.max_pending_marks]

    def _protocol_error(self, exc: MalformedAgentMessage) -> None:
        self.stats.malformed_messages += 1
        count = self.stats.malformed_messages
        if count <= 10 or count % 100 == 0:
            logger.warning(
                "call_id=%s malformed message from custom agent (#%d): %s",
                self._call_id,
                count,
                exc.message,
            )
        if count >= self._options.max_protocol_errors:
            # Protocol abuse: we end it, politely (1008); nothing more to read or send.
            raise EndSession(
                ProviderProtocolError(f"{PROVIDER} sent {count} malformed messages"),
                close_reason="protocol errors",
            )
        self._emit(AgentError(exc, fatal=False))

    def _require_dialect(self) -> Dialect:
        if self._dialect is None:  # chosen in _connect, before any other hook runs
            raise RuntimeError("custom agent session used before open()")
        return self._dialect


def _code(exc: ConnectionClosed) -> int | None:
    if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
        return exc.sent.code  # we refused an oversized message (websockets max_size)
    if exc.rcvd is not None:
        return exc.rcvd.code
    if exc.sent is not None:
        return exc.sent.code
    return None


def _reason(exc: ConnectionClosed) -> str:
    return exc.rcvd.reason if exc.rcvd is not None else ""


def _close_text(exc: ConnectionClosed) -> str:
    code = _code(exc)
    return "no close frame" if code is None else f"code {code}"
