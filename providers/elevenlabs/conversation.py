"""The ElevenLabs conversation state, sans-I/O: server events in, ``AgentEvent``s and client
events out.

Calling protocol (``session.py`` is the only caller)::

    conv.receive_event(event)                 # a parsed server event
    conv.dtmf(digit) / conv.answered()
    for msg in conv.data_to_send(): send it   # after every call above, in order (pongs!)
    for ev in conv.events_received(): emit it

Barge-in (providers.md §2.6): the server runs VAD and turn-taking; on ``interruption`` we
emit ``AgentInterrupted`` and drop every ``audio`` whose ``event_id`` is ≤ the interrupted
one. There is no "played up to" message in the protocol, so ``played()`` has nothing to
send. ElevenLabs has no speech-started/stopped events: we emit none (the bridge uses its
own VAD for per-turn latency).

The agent starts its first message as soon as the conversation begins, which may be while
the call still rings (pre-warm). Audio that arrives before ``answered()`` is held (up to
``MAX_PRE_ANSWER_MS``) and released when the caller is connected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from media.frames import DTMF_DIGITS
from providers.base import (
    AgentAudio,
    AgentError,
    AgentInterrupted,
    HangupRequested,
    NegotiatedFormats,
    ProviderProtocolError,
    TranscriptReceived,
)
from providers.conversation import ConversationOutput, ToolRefused, agent_frames, tool_request
from providers.elevenlabs import events as wire
from providers.elevenlabs.options import ConvaiOptions

logger = logging.getLogger(__name__)

MAX_PRE_ANSWER_MS: Final = 30_000


@dataclass(slots=True)
class ConvaiStats:
    """Counters for one ElevenLabs session (read by the bridge for metrics)."""

    audio_frames_sent: int = 0
    audio_frames_dropped: int = 0
    audio_ms_received: float = 0.0
    stale_audio_dropped: int = 0
    pre_answer_audio_dropped: int = 0
    interruptions: int = 0
    pings_answered: int = 0
    last_ping_ms: int | None = None
    unknown_events: int = 0
    errors: int = 0


class ConvaiConversation(ConversationOutput):
    """One ElevenLabs conversation's state. See the module docstring for the protocol."""

    def __init__(
        self,
        options: ConvaiOptions,
        formats: NegotiatedFormats,
        stats: ConvaiStats,
        call_id: str = "",
    ) -> None:
        super().__init__()
        self._call_id = call_id
        self._options = options
        self._formats = formats
        self.stats = stats
        self._last_interrupt_id = -1
        self._answered = False
        self._held: list[tuple[int, AgentAudio]] = []
        self._held_ms = 0.0
        self._out_ms = 0.0
        self.ended_by_agent = False  # a hang-up or transfer was asked: a close is expected

    # --- input from the bridge ---

    def answered(self) -> None:
        """The caller is connected: release the agent audio held since the start."""
        if self._answered:
            return
        self._answered = True
        self._events.extend(audio for _, audio in self._held)
        self._held.clear()

    def dtmf(self, digit: str) -> None:
        """Tell the agent about a key press as a non-interrupting ``contextual_update``."""
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            logger.warning("call %s: ignoring invalid DTMF digit %r", self._call_id, digit)
            return
        text = self._options.dtmf_template.replace("{digit}", digit)
        self._to_send.append(wire.contextual_update(text))

    # --- input from the server ---

    def receive_event(self, event: wire.ServerEvent) -> None:
        """Act on one parsed server event."""
        match event:
            case wire.Audio():
                self._on_audio(event)
            case wire.Ping(event_id=event_id, ping_ms=ping_ms):
                # providers.md §2.5: reply with pong at once. ``ping_ms`` is the server's
                # measure of the round trip: recorded, never waited for.
                self._to_send.append(wire.pong(event_id))
                self.stats.pings_answered += 1
                if ping_ms is not None:
                    self.stats.last_ping_ms = ping_ms
            case wire.Interruption(event_id=event_id):
                self._on_interruption(event_id)
            case wire.AgentResponse(text=text) if text:
                self._events.append(TranscriptReceived("agent", text))
            case wire.UserTranscript(text=text) if text:
                self._events.append(TranscriptReceived("user", text))
            case wire.ClientToolCall():
                self._on_tool_call(event)
            case wire.AgentToolResponse(tool_name="end_call", is_error=False):
                # The agent's end_call system tool: the server ends the conversation.
                self.ended_by_agent = True
                self._events.append(HangupRequested("agent ended the call"))
            case wire.UnknownEvent(type=kind):
                self.stats.unknown_events += 1
                logger.info(
                    "call %s: ElevenLabs event %r not handled; ignored", self._call_id, kind
                )
            case _:
                pass  # vad_score, internal_*, corrections, metadata repeats: not used

    def protocol_error(self, error: ProviderProtocolError) -> None:
        """A message could not be parsed: report it, keep the session."""
        self.stats.errors += 1
        self._events.append(AgentError(error, fatal=False))

    def _on_audio(self, event: wire.Audio) -> None:
        if event.event_id <= self._last_interrupt_id:
            # providers.md §2.6: audio of the interrupted reply is stale.
            self.stats.stale_audio_dropped += 1
            return
        item_id = str(event.event_id)
        for frame in agent_frames(self._formats.output, event.audio, self._out_ms):
            ms = frame.duration_ms
            audio = AgentAudio(frame, item_id)
            self._out_ms += ms
            self.stats.audio_ms_received += ms
            if self._answered:
                self._events.append(audio)
            elif self._held_ms + ms <= MAX_PRE_ANSWER_MS:
                self._held.append((event.event_id, audio))
                self._held_ms += ms
            else:
                self.stats.pre_answer_audio_dropped += 1

    def _on_interruption(self, event_id: int) -> None:
        self._last_interrupt_id = max(self._last_interrupt_id, event_id)
        self.stats.interruptions += 1
        self._held = [(i, a) for i, a in self._held if i > self._last_interrupt_id]
        self._events.append(AgentInterrupted(str(event_id)))

    def _on_tool_call(self, call: wire.ClientToolCall) -> None:
        request = tool_request(call.tool_name, call.parameters, self._options)
        if isinstance(request, ToolRefused):
            logger.info("call %s: ElevenLabs tool call refused: %s", self._call_id, request.reason)
            self._to_send.append(
                wire.client_tool_result(call.tool_call_id, request.reason, is_error=True)
            )
            return
        self.ended_by_agent = True
        self._events.append(request)
        result = "ok" if isinstance(request, HangupRequested) else "transferring"
        self._to_send.append(wire.client_tool_result(call.tool_call_id, result, is_error=False))
