"""Events decoded from the carriers' media-stream WebSockets, and per-stream statistics.

A codec's ``decode(text)`` returns a list of these, in the order they take effect:

- ``StreamConnected``   the carrier's first message (``connected``).
- ``StreamStarted``     ``start``: the call and stream ids, the caller, the parameters and
                        the inbound audio format. Open the ``CallLeg`` here.
- ``media.AudioFrame``  caller audio, in ``StreamStarted.media_format``, in order.
- ``media.DtmfDigit``   a key press (``dtmf``).
- ``media.MarkPlayed``  a mark we sent has come back: the audio queued before it has been
                        played, *or* a ``clear`` flushed it (both carriers echo marks on clear).
- ``CarrierErrorReported``  Telnyx ``error`` (codes 100002–100005, carriers.md §2.4).
- ``StreamStopped``     ``stop``: the stream is over; nothing follows.

``AudioFrame``, ``DtmfDigit`` and ``MarkPlayed`` are the seam types of ``media.frames`` so
the WS loop can hand them to the bridge unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from media import AudioFormat, AudioFrame, CallEnd, DtmfDigit, MarkPlayed

__all__ = [
    "Carrier",
    "CarrierErrorReported",
    "MediaStreamCodec",
    "MediaStreamEvent",
    "StreamConnected",
    "StreamState",
    "StreamStarted",
    "StreamStats",
    "StreamStopped",
    "TelnyxCallAnswered",
    "TelnyxCallEvent",
    "TelnyxCallEventIgnored",
    "TelnyxCallHungUp",
    "TelnyxCallInitiated",
    "TelnyxStreamingFailed",
    "TelnyxStreamingStarted",
    "TelnyxStreamingStopped",
    "TelnyxWebhookEvent",
    "TwilioCallStatusChanged",
    "TwilioStreamStatusChanged",
]


class StreamState(StrEnum):
    """Where a codec is in the carrier's message order: connected → start → media… → stop."""

    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class Carrier(StrEnum):
    """Which carrier's media-stream protocol a stream speaks (``CallContext.carrier``)."""

    TWILIO = "twilio"
    TELNYX = "telnyx"


@dataclass(frozen=True, slots=True)
class StreamConnected:
    """The carrier opened the stream (``connected``); ``protocol`` is Twilio-only.

    ``auth_token`` is the Telnyx ``stream_auth_token`` if the frame repeats it (check it
    with ``signatures.check_stream_auth_token``); it is kept out of ``repr`` so that
    logging the event does not log the secret.
    """

    carrier: Carrier
    version: str | None = None
    protocol: str | None = None
    auth_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The ``start`` message: everything known about the call when its media begins.

    ``call_id`` is Twilio's ``callSid`` (``CA…``) or Telnyx's ``call_control_id``;
    ``stream_id`` is Twilio's ``streamSid`` (``MZ…``) or Telnyx's top-level ``stream_id``.
    ``account_id`` is Twilio's ``accountSid`` / Telnyx's ``user_id``. Twilio puts no
    caller numbers in ``start``: they come from the voice webhook (or ``<Parameter>``s).
    """

    carrier: Carrier
    call_id: str
    stream_id: str
    media_format: AudioFormat
    account_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    tracks: tuple[str, ...] = ()
    call_session_id: str | None = None
    client_state: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamStopped:
    """The carrier's ``stop`` message: the stream, and for ``<Connect><Stream>`` the call, ended.

    ``end`` is a provisional classification (the caller hung up: for a bidirectional
    stream "the only way to stop a Stream is to end the call", TW-WSM). The carrier's
    status webhook (``hangup_causes``) knows better; prefer it when it arrives.
    """

    carrier: Carrier
    stream_id: str
    call_id: str | None
    end: CallEnd


@dataclass(frozen=True, slots=True)
class CarrierErrorReported:
    """Telnyx ``error``: 100002 unknown_error, 100003 malformed_frame, 100004 invalid_media,
    100005 rate_limit_reached (TX-MS). 100003/100004 mean *our* outbound frames were bad."""

    carrier: Carrier
    code: int | None
    title: str
    detail: str


MediaStreamEvent = (
    StreamConnected
    | StreamStarted
    | AudioFrame
    | DtmfDigit
    | MarkPlayed
    | CarrierErrorReported
    | StreamStopped
)


@dataclass(slots=True)
class StreamStats:
    """Counters a codec keeps for the call record and the logs (mutable, read any time).

    Media ordering uses ``media.chunk`` (one per media message of a track, from 1):
    a chunk not above the last accepted one is dropped (``duplicates`` when equal,
    ``out_of_order`` when below); a jump counts the chunks skipped in ``frames_missing``.
    A late chunk that arrives after its gap was counted is dropped and not un-counted.
    """

    messages: int = 0
    media_frames: int = 0
    media_bytes: int = 0
    frames_missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    other_track_frames: int = 0
    empty_frames: int = 0
    unknown_events: int = 0
    ignored_after_stop: int = 0


class MediaStreamCodec(Protocol):
    """What ``TwilioStreamCodec`` and ``TelnyxStreamCodec`` both offer the WS loop.

    Feed each text message to ``decode`` (raises ``MediaStreamProtocolError``); send the
    strings ``encode_*`` return (they raise ``MediaStreamStateError`` before ``start``).
    """

    carrier: Carrier
    stats: StreamStats
    state: StreamState
    started: StreamStarted | None

    def decode(
        self, text: str | bytes, *, received_at: float | None = None
    ) -> list[MediaStreamEvent]:
        """Decode one WebSocket text message from the carrier into events."""
        ...

    def encode_media(self, payload: bytes) -> str:
        """A message playing ``payload`` (raw bytes in the stream's outbound format)."""
        ...

    def encode_frame(self, frame: AudioFrame) -> str:
        """A message playing ``frame``, which must be in the stream's outbound format."""
        ...

    def encode_mark(self, name: str) -> str:
        """A mark, echoed back as ``MarkPlayed(name)`` once the audio before it has played."""
        ...

    def encode_clear(self) -> str:
        """A message dropping all audio the carrier has queued (barge-in)."""
        ...


class ChunkSequencer:
    """Accept media chunks in increasing order per track, counting gaps and stale ones."""

    __slots__ = ("_last", "_stats")

    def __init__(self, stats: StreamStats) -> None:
        self._stats = stats
        self._last: dict[str, int] = {}

    def accept(self, track: str, chunk: int) -> bool:
        """Whether chunk ``chunk`` of ``track`` is new (and so should become a frame)."""
        last = self._last.get(track)
        if last is not None:
            if chunk == last:
                self._stats.duplicates += 1
                return False
            if chunk < last:
                self._stats.out_of_order += 1
                return False
            self._stats.frames_missing += chunk - last - 1
        self._last[track] = chunk
        return True


# --- carrier webhooks (HTTP, not the WebSocket) ---------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioCallStatusChanged:
    """A Twilio call status callback (or voice webhook) form (carriers.md §1.9).

    ``end`` is set when ``call_status`` is final (completed, busy, failed, no-answer,
    canceled) and says why the call ended as far as Twilio tells.
    """

    call_sid: str
    account_sid: str
    call_status: str
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    sequence_number: int | None = None
    call_duration_s: int | None = None
    sip_response_code: int | None = None
    timestamp: str | None = None
    end: CallEnd | None = None


@dataclass(frozen=True, slots=True)
class TwilioStreamStatusChanged:
    """A ``<Stream statusCallback>`` form: ``stream_event`` is ``stream-started``,
    ``stream-stopped`` or ``stream-error`` (carriers.md §1.6)."""

    call_sid: str
    stream_sid: str
    stream_event: str
    stream_name: str | None = None
    stream_error: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class TelnyxCallEvent:
    """Fields every Telnyx Call Control webhook carries (``data`` and ``data.payload``).

    ``event_id`` is ``data.id``: Telnyx retries and reorders webhooks, so dedupe on it.
    """

    event_type: str
    event_id: str
    occurred_at: str | None
    call_control_id: str
    call_leg_id: str | None
    call_session_id: str | None
    connection_id: str | None
    client_state: str | None


@dataclass(frozen=True, slots=True)
class TelnyxCallInitiated:
    """``call.initiated``: a call reached our Call Control application (answer it next)."""

    call: TelnyxCallEvent
    direction: str | None
    from_number: str | None
    to_number: str | None
    offered_codecs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TelnyxCallAnswered:
    """``call.answered``."""

    call: TelnyxCallEvent


@dataclass(frozen=True, slots=True)
class TelnyxCallHungUp:
    """``call.hangup``, with Telnyx's cause and source and our classification in ``end``."""

    call: TelnyxCallEvent
    hangup_cause: str | None
    hangup_source: str | None
    sip_hangup_cause: str | None
    end: CallEnd


@dataclass(frozen=True, slots=True)
class TelnyxStreamingStarted:
    """``streaming.started``."""

    call: TelnyxCallEvent
    stream_url: str | None


@dataclass(frozen=True, slots=True)
class TelnyxStreamingStopped:
    """``streaming.stopped`` (sent before the WebSocket ``stop``, TX-MS)."""

    call: TelnyxCallEvent
    stream_url: str | None


@dataclass(frozen=True, slots=True)
class TelnyxStreamingFailed:
    """``streaming.failed``: Telnyx could not open or keep our WebSocket."""

    call: TelnyxCallEvent
    failure_reason: str | None
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class TelnyxCallEventIgnored:
    """Any other Call Control event type (answered with 200 and otherwise ignored)."""

    call: TelnyxCallEvent


TelnyxWebhookEvent = (
    TelnyxCallInitiated
    | TelnyxCallAnswered
    | TelnyxCallHungUp
    | TelnyxStreamingStarted
    | TelnyxStreamingStopped
    | TelnyxStreamingFailed
    | TelnyxCallEventIgnored
)
