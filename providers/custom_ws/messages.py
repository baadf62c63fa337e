"""What a customer's agent may send us, decoded: one frozen dataclass per message.

Both dialects (``telepath_dialect``, ``twilio_dialect``) parse agent frames into these
types, so the session loop never looks at JSON. Parsing is pure and bounded; anything we
cannot understand raises ``MalformedAgentMessage`` (a ``ProviderProtocolError``), which the
session logs, counts and reports as a non-fatal ``AgentError``.

Compiled (gateway/native.py): every agent frame is parsed into one of these. The
exceptions live in ``providers.custom_ws.errors``, interpreted, since they subclass the
providers' interpreted error tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from media import AudioFormat, AudioFrame, CallContext
from media.frames import DTMF_DIGITS
from providers.base import NegotiatedFormats
from providers.custom_ws.errors import MalformedAgentMessage
from providers.wire import Outgoing, decode_base64, load_message

MAX_NAME_CHARS = 256
"""Longest mark name, hang-up reason or transfer target we accept from an agent."""

MAX_DTMF_DIGITS = 64
"""Longest digit string an agent may ask us to send in one ``dtmf`` request."""


@dataclass(frozen=True, slots=True)
class AcceptReceived:
    """The agent answered ``start`` (telepath ``accept``).

    ``format`` is the format it chose for both directions, ``None`` if it took the offer.
    """

    format: AudioFormat | None


@dataclass(frozen=True, slots=True, init=False)
class MediaReceived:
    """Audio for the caller, in the negotiated output format (payload already decoded)."""

    payload: bytes

    def __init__(self, payload: bytes) -> None:
        # Written out, as media.frames.AudioFrame's: one per agent frame.
        object.__setattr__(self, "payload", payload)


@dataclass(frozen=True, slots=True)
class MarkReceived:
    """The agent asked to be told when the audio it sent so far has been played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearReceived:
    """The agent asked us to drop the audio still queued for the caller."""


@dataclass(frozen=True, slots=True)
class HangupReceived:
    """The agent asked us to end the call."""

    reason: str


@dataclass(frozen=True, slots=True)
class TransferReceived:
    """The agent asked us to transfer the call to ``target``."""

    target: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The agent asked us to send ``digits`` to the caller as DTMF."""

    digits: str


AgentMessage = (
    AcceptReceived
    | MediaReceived
    | MarkReceived
    | ClearReceived
    | HangupReceived
    | TransferReceived
    | DtmfReceived
)


class Dialect(Protocol):
    """A pure codec for one agent wire protocol; the session loop only talks to this.

    Encoders return the frame to send (or ``None`` when the dialect has no such message);
    ``parse`` returns one ``AgentMessage`` or raises ``MalformedAgentMessage``. A dialect
    may keep counters (sequence numbers) but does no I/O and reads no clock.
    """

    name: str
    negotiates: bool
    """True when the agent may answer ``start`` with ``accept`` (telepath)."""
    echoes_marks_on_clear: bool
    """True when ``clear`` returns every pending mark at once (Twilio semantics)."""

    def offer(self, preferred: AudioFormat) -> AudioFormat:
        """The format we offer the agent for a leg whose format is ``preferred``."""
        ...

    def negotiated(self, offered: AudioFormat, accepted: AudioFormat | None) -> NegotiatedFormats:
        """The formats of the call, given the offer and the agent's ``accept`` (if any)."""
        ...

    def opening(self, context: CallContext, offered: AudioFormat) -> list[Outgoing]:
        """The frames that open the conversation (``start``; Twilio: ``connected`` + ``start``)."""
        ...

    def parse(self, data: str | bytes) -> AgentMessage:
        """Decode one frame from the agent; raises ``MalformedAgentMessage``."""
        ...

    def media(self, frame: AudioFrame) -> Outgoing:
        """Caller audio for the agent."""
        ...

    def dtmf(self, digit: str) -> Outgoing:
        """The caller pressed ``digit``."""
        ...

    def mark(self, name: str) -> Outgoing:
        """The echo of the agent's mark ``name``: its audio has been played."""
        ...

    def cleared(self, generation: int, played_ms: int, dropped_marks: list[str]) -> Outgoing | None:
        """After a clear or an interruption: what the caller heard of the cut audio."""
        ...

    def speech_started(self, timestamp_ms: int) -> Outgoing | None:
        """Our VAD heard the caller start speaking (only when the agent asked for it)."""
        ...

    def speech_stopped(self, timestamp_ms: int) -> Outgoing | None:
        """Our VAD heard the caller stop speaking."""
        ...

    def stop(self, reason: str) -> Outgoing:
        """The last frame we send: the call or the session is over."""
        ...


def load_object(data: str | bytes, *, key: str) -> tuple[dict[str, object], str]:
    """Decode a JSON text frame into ``(object, message_kind)``; ``key`` names the kind.

    Raises ``MalformedAgentMessage`` for binary frames, invalid JSON, non-objects and a
    missing or non-string ``key`` (``providers.wire.load_message``).
    """
    return load_message(data, sender="agent", key=key, error=MalformedAgentMessage)


def text_field(obj: dict[str, object], name: str, *, required: bool = True) -> str:
    """A bounded string field; a missing optional field reads as ``""``."""
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise MalformedAgentMessage(f"field {name!r} must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise MalformedAgentMessage(f"field {name!r} is longer than {MAX_NAME_CHARS} characters")
    return value


def dtmf_digits(value: object) -> str:
    """Validate a digit string an agent wants dialled (RFC 4733 §3.2 events 0-15)."""
    if not isinstance(value, str) or not value:
        raise MalformedAgentMessage("dtmf 'digits' must be a non-empty string")
    if len(value) > MAX_DTMF_DIGITS:
        raise MalformedAgentMessage(f"dtmf 'digits' is longer than {MAX_DTMF_DIGITS}")
    digits = value.upper()
    if any(d not in DTMF_DIGITS for d in digits):
        raise MalformedAgentMessage(f"dtmf 'digits' has a character outside {DTMF_DIGITS!r}")
    return digits


def base64_payload(value: object, *, max_bytes: int) -> bytes:
    """Decode a base64 audio payload, strictly, refusing more than ``max_bytes`` of audio."""
    if not isinstance(value, str):
        raise MalformedAgentMessage("media 'payload' must be a base64 string")
    return decode_base64(
        value, what="media payload", max_bytes=max_bytes, error=MalformedAgentMessage
    )
