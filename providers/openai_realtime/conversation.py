"""The OpenAI Realtime conversation state, sans-I/O: server events in, ``AgentEvent``s and
client events out.

Calling protocol (the session loop in ``session.py`` is the only caller)::

    conv.receive_event(event, now)            # a parsed server event, with the loop's clock
    conv.played(item_id, ms) / conv.dtmf(d) / conv.greet()
    for msg in conv.data_to_send(): send it   # after every call above, in order
    for ev in conv.events_received(): emit it

It never raises on peer input: a broken event becomes an ``AgentError`` the caller emits.

Barge-in over a WebSocket is the client's job (providers.md §1.7): on ``speech_started``
while an item's audio may still be playing we emit ``AgentInterrupted(item_id)`` and drop
that item's late deltas; the bridge clears the leg and reports ``played(item_id, ms)``; we
then send ``conversation.item.truncate`` with ``audio_end_ms = min(ms, received)``, and
skip it when the caller heard everything and the response is over.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from media.frames import DTMF_DIGITS
from providers.base import (
    AgentAudio,
    AgentError,
    AgentInterrupted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ErrorCategory,
    NegotiatedFormats,
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ResponseDone,
    TranscriptReceived,
)
from providers.conversation import ConversationOutput, ToolRefused, agent_frames, tool_request
from providers.openai_realtime import events as wire
from providers.openai_realtime.options import RealtimeOptions

logger = logging.getLogger(__name__)

# The bridge starts playing an item's audio as it arrives and paces it in real time, so
# audio received from ``t0`` lasting ``d`` has surely finished playing by ``t0 + d`` plus
# the gateway's own buffering. Past that a ``speech_started`` is no barge-in.
PLAYBACK_SLACK_S: Final = 2.0
MAX_TRACKED_ITEMS: Final = 32  # items whose audio we remember (truncation needs only the last)
MAX_TOOL_ARGUMENTS: Final = 16_384


@dataclass(slots=True)
class _Item:
    """Audio received for one assistant item."""

    response_id: str
    first_at: float
    received_ms: float = 0.0
    interrupted: bool = False


@dataclass(slots=True)
class RealtimeStats:
    """Counters for one OpenAI session (read by the bridge for metrics and call records)."""

    audio_frames_sent: int = 0
    audio_frames_dropped: int = 0
    audio_ms_received: float = 0.0
    late_deltas_dropped: int = 0
    interruptions: int = 0
    truncations: int = 0
    errors: int = 0
    rate_limits: dict[str, int] = field(default_factory=dict)


class RealtimeConversation(ConversationOutput):
    """One OpenAI Realtime conversation's state. See the module docstring for the protocol."""

    def __init__(
        self,
        options: RealtimeOptions,
        formats: NegotiatedFormats,
        stats: RealtimeStats,
        call_id: str = "",
    ) -> None:
        super().__init__()
        self._call_id = call_id
        self._options = options
        self._formats = formats
        self.stats = stats
        self._items: OrderedDict[str, _Item] = OrderedDict()
        self._playing: str | None = None  # the last item whose audio may still be playing
        self._active_responses: set[str] = set()
        self._seen_calls: deque[str] = deque(maxlen=MAX_TRACKED_ITEMS)
        self._out_ms = 0.0

    # --- input from the bridge ---

    def greet(self) -> None:
        """The caller is connected: have the agent speak first if a greeting is configured."""
        greeting = self._options.greeting
        if greeting:
            # providers.md §1.8: response.create with per-response instructions.
            self._to_send.append(
                wire.response_create(f"Greet the caller by saying exactly this: {greeting}")
            )

    def dtmf(self, digit: str) -> None:
        """The caller pressed ``digit``: tell the model with a user text item.

        With ``dtmf_response`` (default true) a ``response.create`` follows unless a
        response is already running: a key press makes no audio, so the server VAD would
        never end a turn for it and the model would otherwise stay silent.
        """
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            logger.warning("call %s: ignoring invalid DTMF digit %r", self._call_id, digit)
            return
        self._to_send.append(
            wire.user_text_item(self._options.dtmf_template.replace("{digit}", digit))
        )
        if self._options.dtmf_response and not self._active_responses:
            self._to_send.append(wire.response_create())

    def played(self, item_id: str, played_ms: int) -> None:
        """After an interruption the caller heard ``played_ms`` of ``item_id``: truncate."""
        item = self._items.get(item_id)
        if item is None:
            logger.debug("call %s: played() for unknown item %s", self._call_id, item_id)
            return
        # After a server-VAD barge-in the response is already cancelled: by the server
        # (interrupt_response) or by the response.cancel sent then.
        already_cancelled = item.interrupted
        if not item.interrupted:
            # The bridge interrupted on its own (local VAD): stop the item here too.
            item.interrupted = True
            self.stats.interruptions += 1
        if self._playing == item_id:
            self._playing = None
        response_over = item.response_id not in self._active_responses
        if response_over and played_ms >= int(item.received_ms):
            return  # playback complete: nothing to take back (providers.md §1.7 step 3)
        if not already_cancelled and not response_over:
            self._to_send.append(wire.response_cancel())
        # Clamp to the audio we received, or the server answers "Audio content of Xms is
        # already shorter than Yms" (providers.md §1.9).
        end_ms = max(0, min(played_ms, int(item.received_ms)))
        self._to_send.append(wire.conversation_item_truncate(item_id, end_ms))
        self.stats.truncations += 1

    # --- input from the server ---

    def receive_event(self, event: wire.ServerEvent, now: float) -> None:
        """Act on one parsed server event received at monotonic time ``now``."""
        match event:
            case wire.OutputAudioDelta():
                self._on_audio(event, now)
            case wire.SpeechStarted():
                self._on_speech_started(now)
            case wire.SpeechStopped():
                self._events.append(CallerSpeechStopped())
            case wire.ResponseCreated(response_id=rid):
                self._active_responses.add(rid)
            case wire.ResponseDone():
                self._on_response_done(event)
            case wire.OutputTranscriptDone(transcript=text) if text:
                self._events.append(TranscriptReceived("agent", text))
            case wire.InputTranscriptCompleted(transcript=text) if text:
                self._events.append(TranscriptReceived("user", text))
            case wire.FunctionCallArgumentsDone():
                self._on_function_call(event)
            case wire.RateLimitsUpdated(rate_limits=limits):
                for limit in limits:
                    self.stats.rate_limits[limit.name] = limit.remaining
            case wire.ErrorReceived():
                self._on_error(event)
            case _:
                logger.debug("call %s: OpenAI event ignored: %s", self._call_id, event)

    def protocol_error(self, error: ProviderProtocolError) -> None:
        """A message could not be parsed: report it, keep the session."""
        self.stats.errors += 1
        self._events.append(AgentError(error, fatal=False))

    def _on_audio(self, event: wire.OutputAudioDelta, now: float) -> None:
        item = self._items.get(event.item_id)
        if item is None:
            item = _Item(response_id=event.response_id, first_at=now)
            self._items[event.item_id] = item
            while len(self._items) > MAX_TRACKED_ITEMS:
                self._items.popitem(last=False)
        if item.interrupted:
            # providers.md §1.7 step 6: late deltas of an interrupted item are dropped.
            self.stats.late_deltas_dropped += 1
            return
        self._playing = event.item_id
        for frame in agent_frames(self._formats.output, event.audio, self._out_ms):
            ms = frame.duration_ms
            self._out_ms += ms
            item.received_ms += ms
            self.stats.audio_ms_received += ms
            self._events.append(AgentAudio(frame, event.item_id))

    def _on_speech_started(self, now: float) -> None:
        self._events.append(CallerSpeechStarted())
        item_id = self._playing
        if item_id is None:
            return
        item = self._items[item_id]
        if now > item.first_at + item.received_ms / 1000 + PLAYBACK_SLACK_S:
            self._playing = None  # long finished: not a barge-in
            return
        item.interrupted = True
        self._playing = None
        self.stats.interruptions += 1
        self._events.append(AgentInterrupted(item_id))
        if not self._options.interrupt_response and item.response_id in self._active_responses:
            # providers.md §1.7 step 5: the server cancels only with interrupt_response.
            self._to_send.append(wire.response_cancel())

    def _on_response_done(self, event: wire.ResponseDone) -> None:
        self._active_responses.discard(event.response_id)
        for item_id in event.item_ids or (event.response_id,):
            self._events.append(ResponseDone(item_id))
        if event.status == "failed":
            self.stats.errors += 1
            message = event.error_message or event.reason or "no detail"
            self._events.append(
                AgentError(ProviderError(f"OpenAI response failed: {message}"), fatal=False)
            )

    def _on_function_call(self, event: wire.FunctionCallArgumentsDone) -> None:
        if event.call_id in self._seen_calls:
            return
        self._seen_calls.append(event.call_id)
        request = tool_request(event.name, _arguments(event.arguments), self._options)
        if isinstance(request, ToolRefused):
            logger.info("call %s: OpenAI tool call refused: %s", self._call_id, request.reason)
            self._to_send.append(
                wire.function_call_output(event.call_id, {"error": request.reason})
            )
            self._to_send.append(wire.response_create())  # let the model tell the caller
            return
        self._events.append(request)
        self._to_send.append(wire.function_call_output(event.call_id, {"ok": True}))

    def _on_error(self, event: wire.ErrorReceived) -> None:
        self.stats.errors += 1
        error, fatal = classify_error(event)
        logger.warning(
            "call %s: OpenAI error %s/%s: %s",
            self._call_id,
            event.type,
            event.code,
            event.message[:200],
        )
        self._events.append(AgentError(error, fatal=fatal))


def _arguments(raw: str) -> dict[str, object]:
    if len(raw) > MAX_TOOL_ARGUMENTS:
        return {}
    try:
        value = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def classify_error(event: wire.ErrorReceived) -> tuple[ProviderError, bool]:
    """Map an ``error`` event to a categorised error and whether it ends the session.

    Most are recoverable (providers.md §1.6); a refused key, an empty account, the beta
    shape and the 60-minute session limit are not.
    """
    text = f"OpenAI error: {event.message or event.code or event.type}"[:500]
    code = event.code
    if code in ("invalid_api_key", "authentication_error") or event.type == "authentication_error":
        return ProviderAuthError(text), True
    if code == "insufficient_quota":
        return ProviderRateLimitError(text, category=ErrorCategory.QUOTA), True
    if code == "rate_limit_exceeded" or event.type == "rate_limit_error":
        return ProviderRateLimitError(text), False
    if code == "beta_api_shape_disabled":
        return ProviderConfigError(text), True
    if code == "session_expired":
        return ProviderError(text), True
    if event.type == "invalid_request_error":
        return ProviderProtocolError(text), False
    return ProviderError(text), False
