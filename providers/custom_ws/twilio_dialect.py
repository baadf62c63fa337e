"""The ``twilio`` dialect: Twilio Media Streams, byte for byte, from Twilio's side.

An agent written for Twilio's bidirectional ``<Connect><Stream>`` (pipecat's
``TwilioFrameSerializer``, the OpenAI/Twilio samples, …) runs behind a SIP trunk unchanged:
we play Twilio. Shapes from Twilio's "WebSocket Messages" page (TW-WSM;
/work/shared/protocols/carriers.md §1.3-1.5). Gateway → agent: ``connected``, ``start``,
``media``, ``dtmf``, ``mark`` (echo), ``stop``; agent → gateway: ``media``, ``mark``,
``clear``.

Twilio quirks kept on purpose:
- ``sequenceNumber``, ``media.chunk`` and ``media.timestamp`` are *strings*;
  ``mediaFormat.sampleRate`` and ``channels`` are numbers (TW-WSM field table).
- ``connected`` has no ``sequenceNumber``; ``start`` is "1" and every later message adds one.
- Audio is only ever ``audio/x-mulaw`` at 8000 Hz, mono: "Value is always audio/x-mulaw".
- ``clear`` "empties all buffered audio and causes any mark messages to be sent back".
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from media import PCMU, AudioFormat, AudioFrame, CallContext
from providers.base import NegotiatedFormats
from providers.custom_ws.errors import MalformedAgentMessage
from providers.custom_ws.messages import (
    AgentMessage,
    ClearReceived,
    MarkReceived,
    MediaReceived,
    base64_payload,
    load_object,
    text_field,
)
from providers.wire import Outgoing, encode_base64, encode_json

DEFAULT_ACCOUNT_SID: Final = "AC" + "0" * 32
"""What ``accountSid`` reads when the trunk sets none: there is no Twilio account here."""

_TWILIO_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")

MEDIA_FORMAT: Final[dict[str, object]] = {
    "encoding": "audio/x-mulaw",
    "sampleRate": 8000,
    "channels": 1,
}


def twilio_call_sid(call_id: str) -> str:
    """A ``callSid`` of Twilio's shape (``CA`` + 32 hex digits) for our call id.

    A Twilio call id passes through; any other id maps to a stable digest of itself, so
    agents that validate or store SIDs keep working. The real id is in customParameters.
    """
    if call_id.startswith("CA") and _TWILIO_SID.fullmatch(call_id):
        return call_id
    return "CA" + hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:32]


def custom_parameters(context: CallContext) -> dict[str, str]:
    """``start.customParameters``: the call's own parameters, then Telepath's call facts.

    Twilio carries ``<Parameter>`` values here as strings; an agent written for Twilio has
    nowhere else to read the call's numbers and X- headers, so they go here too, without
    overriding a parameter of the same name.
    """
    params = {str(k): str(v) for k, v in context.custom_parameters.items()}
    facts = {
        "call_id": context.call_id,
        "sip_call_id": context.sip_call_id,
        "from": context.from_number,
        "to": context.to_number,
        "direction": context.direction,
        "carrier": context.carrier,
        "trunk_id": context.trunk_id,
        "X-SIP-Call-ID": context.sip_call_id,
        **context.headers,
    }
    for key, value in facts.items():
        params.setdefault(key, value)
    return params


class TwilioDialect:
    """Codec that plays Twilio's side of a bidirectional Media Stream.

    ``stream_sid`` (``MZ`` + 32 hex) comes from the session's random source, so this class
    stays deterministic. ``max_payload_bytes`` bounds one decoded audio payload.
    """

    name = "twilio"
    negotiates = False
    echoes_marks_on_clear = True

    def __init__(
        self,
        *,
        stream_sid: str,
        call_sid: str,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        max_payload_bytes: int,
    ) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.max_payload_bytes = max_payload_bytes
        self._sequence = 0
        self._chunk = 0

    def _next_sequence(self) -> str:
        # TW-WSM: "The first message has a value of 1 and then is incremented for each
        # subsequent message." (``connected`` carries none.)
        self._sequence += 1
        return str(self._sequence)

    def offer(self, preferred: AudioFormat) -> AudioFormat:
        """Always µ-law 8 kHz, whatever the leg speaks: Twilio knows nothing else."""
        del preferred
        return PCMU

    def negotiated(self, offered: AudioFormat, accepted: AudioFormat | None) -> NegotiatedFormats:
        del offered, accepted
        return NegotiatedFormats(input=PCMU, output=PCMU)

    def opening(self, context: CallContext, offered: AudioFormat) -> list[Outgoing]:
        """``connected`` then ``start``, as Twilio sends them when the stream opens."""
        del offered
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = {
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": dict(MEDIA_FORMAT),
                "customParameters": custom_parameters(context),
            },
            "streamSid": self.stream_sid,
        }
        return [encode_json(connected), encode_json(start)]

    def parse(self, data: str | bytes) -> AgentMessage:
        """Decode ``media``, ``mark`` or ``clear`` (TW-WSM "messages to Twilio").

        A ``streamSid`` naming another stream is refused; Twilio answers that with error
        31951 "Stream - Protocol - Invalid message".
        """
        obj, event = load_object(data, key="event")
        sid = obj.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            raise MalformedAgentMessage(f"{event[:32]!r} names another streamSid")
        if event == "media":
            media = obj.get("media")
            if not isinstance(media, dict):
                raise MalformedAgentMessage("media message has no 'media' object")
            return MediaReceived(
                base64_payload(media.get("payload"), max_bytes=self.max_payload_bytes)
            )
        if event == "mark":
            mark = obj.get("mark")
            if not isinstance(mark, dict):
                # A mark without a mark.name object is malformed (twilio-agent-connect PR #82).
                raise MalformedAgentMessage("mark message has no 'mark' object")
            return MarkReceived(text_field(mark, "name"))
        if event == "clear":
            return ClearReceived()
        raise MalformedAgentMessage(f"unknown event {event[:64]!r}")

    def media(self, frame: AudioFrame) -> Outgoing:
        """Inbound-track audio; chunk counts from 1, timestamp is the stream's ms clock."""
        self._chunk += 1
        return encode_json(
            {
                "event": "media",
                "sequenceNumber": self._next_sequence(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(frame.timestamp),
                    "payload": encode_base64(frame.payload),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> Outgoing:
        return encode_json(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_sequence(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> Outgoing:
        return encode_json(
            {
                "event": "mark",
                "sequenceNumber": self._next_sequence(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def cleared(self, generation: int, played_ms: int, dropped_marks: list[str]) -> Outgoing | None:
        """Twilio has no such notice: its marks come back on ``clear`` instead."""
        del generation, played_ms, dropped_marks
        return None

    def speech_started(self, timestamp_ms: int) -> Outgoing | None:
        del timestamp_ms
        return None

    def speech_stopped(self, timestamp_ms: int) -> Outgoing | None:
        del timestamp_ms
        return None

    def stop(self, reason: str) -> Outgoing:
        """``stop``: Twilio's carries the account and call, no reason."""
        del reason
        return encode_json(
            {
                "event": "stop",
                "sequenceNumber": self._next_sequence(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )
