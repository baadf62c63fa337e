"""The ``telepath`` dialect: Telepath's own agent protocol (docs/agent-protocol.md).

JSON text frames both ways, audio as base64 in ``media`` messages; with the trunk option
``binary_audio`` the audio travels as raw binary frames instead (no header, no base64), and
JSON keeps the control messages. The wire shapes, gateway → agent::

    {"type":"start","call_id":…,"sip_call_id":…,"from":…,"to":…,"direction":…,"carrier":…,
     "trunk_id":…,"headers":{…},"custom_parameters":{…},"binary_audio":false,
     "vad_events":false,"media_format":{"encoding":"audio/pcmu","sample_rate":8000,"channels":1}}
    {"type":"media","payload":"<base64>","sequence":1,"timestamp":0}
    {"type":"dtmf","digit":"1"}            {"type":"mark","name":"…"}
    {"type":"cleared","generation":0,"played_ms":840,"marks":["…"]}
    {"type":"speech_started","timestamp":…}  {"type":"speech_stopped","timestamp":…}
    {"type":"stop","reason":"…"}

agent → gateway: ``accept``, ``media``, ``mark``, ``clear``, ``hangup``, ``transfer``,
``dtmf`` (see ``parse``).
"""

from __future__ import annotations

from typing import Final

from media import L16_16K, L16_24K, AudioFormat, AudioFrame, CallContext, Encoding
from providers.base import NegotiatedFormats
from providers.custom_ws.errors import MalformedAccept, MalformedAgentMessage
from providers.custom_ws.messages import (
    AcceptReceived,
    AgentMessage,
    ClearReceived,
    DtmfReceived,
    HangupReceived,
    MarkReceived,
    MediaReceived,
    TransferReceived,
    base64_payload,
    dtmf_digits,
    load_object,
    text_field,
)
from providers.wire import Outgoing, encode_base64, encode_json, json_string

SIP_CALL_ID_HEADER: Final = "X-SIP-Call-ID"

# Wire name of each encoding, and the sample rates the protocol allows for it.
WIRE_ENCODINGS: Final[dict[Encoding, str]] = {
    Encoding.PCMU: "audio/pcmu",
    Encoding.PCMA: "audio/pcma",
    Encoding.L16: "audio/l16",
}
WIRE_RATES: Final[dict[Encoding, tuple[int, ...]]] = {
    Encoding.PCMU: (8000,),
    Encoding.PCMA: (8000,),
    Encoding.L16: (8000, 16000, 24000),
}
_ENCODING_BY_WIRE: Final = {wire: enc for enc, wire in WIRE_ENCODINGS.items()}


def format_to_wire(format_: AudioFormat) -> dict[str, object]:
    """The ``media_format`` object for ``format_``; raises ``ValueError`` if not expressible."""
    wire = WIRE_ENCODINGS.get(format_.encoding)
    if wire is None or format_.sample_rate not in WIRE_RATES[format_.encoding]:
        raise ValueError(f"{format_} cannot be offered in the telepath dialect")
    return {"encoding": wire, "sample_rate": format_.sample_rate, "channels": 1}


def format_from_wire(value: object) -> AudioFormat:
    """Parse a ``media_format`` object from an agent; raises ``MalformedAgentMessage``."""
    if not isinstance(value, dict):
        raise MalformedAgentMessage("'media_format' must be an object")
    encoding = _ENCODING_BY_WIRE.get(str(value.get("encoding", "")).lower())
    if encoding is None:
        raise MalformedAgentMessage(
            f"'media_format.encoding' must be one of {sorted(_ENCODING_BY_WIRE)}"
        )
    rate = value.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in WIRE_RATES[encoding]:
        raise MalformedAgentMessage(
            f"'media_format.sample_rate' for {WIRE_ENCODINGS[encoding]} must be one of "
            f"{list(WIRE_RATES[encoding])}"
        )
    channels = value.get("channels", 1)
    if channels != 1 or isinstance(channels, bool):
        raise MalformedAgentMessage("'media_format.channels' must be 1 (mono)")
    return AudioFormat(encoding, rate)


class TelepathDialect:
    """Codec for the telepath dialect; see the module docstring for the wire shapes.

    ``binary_audio`` sends and takes audio as binary frames; ``vad_events`` tells the agent
    that we will send ``speech_started`` / ``speech_stopped``. ``max_payload_bytes`` bounds
    one decoded audio payload from the agent.
    """

    name = "telepath"
    negotiates = True
    echoes_marks_on_clear = False

    def __init__(
        self, *, binary_audio: bool = False, vad_events: bool = False, max_payload_bytes: int
    ) -> None:
        self.binary_audio = binary_audio
        self.vad_events = vad_events
        self.max_payload_bytes = max_payload_bytes
        self._sequence = 0

    def offer(self, preferred: AudioFormat) -> AudioFormat:
        """The leg's own format when the protocol can carry it (no transcoding), else L16.

        G.722 legs are offered L16 at 16 kHz (the same audio band); any other rate the
        nearest L16 rate the protocol allows.
        """
        try:
            format_to_wire(preferred)
        except ValueError:
            return L16_24K if preferred.sample_rate > 16000 else L16_16K
        return preferred

    def negotiated(self, offered: AudioFormat, accepted: AudioFormat | None) -> NegotiatedFormats:
        """One format both ways: the agent's choice from ``accept``, else the offer."""
        chosen = accepted or offered
        return NegotiatedFormats(input=chosen, output=chosen)

    def opening(self, context: CallContext, offered: AudioFormat) -> list[Outgoing]:
        """The ``start`` message: call metadata, every X- header, and the offered format."""
        headers = dict(context.headers)
        if context.sip_call_id and not any(
            name.lower() == SIP_CALL_ID_HEADER.lower() for name in headers
        ):
            headers[SIP_CALL_ID_HEADER] = context.sip_call_id
        start: dict[str, object] = {
            "type": "start",
            "call_id": context.call_id,
            "sip_call_id": context.sip_call_id,
            "from": context.from_number,
            "to": context.to_number,
            "direction": context.direction,
            "carrier": context.carrier,
            "trunk_id": context.trunk_id,
            "headers": headers,
            "custom_parameters": dict(context.custom_parameters),
            "binary_audio": self.binary_audio,
            "vad_events": self.vad_events,
            "media_format": format_to_wire(offered),
        }
        return [encode_json(start)]

    def parse(self, data: str | bytes) -> AgentMessage:
        """Decode one agent frame; raises ``MalformedAgentMessage``.

        A binary frame is audio when the trunk enabled ``binary_audio``, an error otherwise.
        """
        if isinstance(data, bytes):
            if not self.binary_audio:
                raise MalformedAgentMessage(
                    "binary frame received but binary_audio is not enabled for this trunk"
                )
            if len(data) > self.max_payload_bytes:
                raise MalformedAgentMessage(
                    f"media payload is larger than {self.max_payload_bytes} bytes"
                )
            return MediaReceived(data)
        obj, kind = load_object(data, key="type")
        if kind == "media":
            return MediaReceived(
                base64_payload(obj.get("payload"), max_bytes=self.max_payload_bytes)
            )
        if kind == "mark":
            return MarkReceived(text_field(obj, "name"))
        if kind == "clear":
            return ClearReceived()
        if kind == "hangup":
            return HangupReceived(text_field(obj, "reason", required=False))
        if kind == "transfer":
            return TransferReceived(text_field(obj, "target"))
        if kind == "dtmf":
            return DtmfReceived(dtmf_digits(obj.get("digits")))
        if kind == "accept":
            if obj.get("media_format") is None:
                return AcceptReceived(None)
            try:
                return AcceptReceived(format_from_wire(obj["media_format"]))
            except MalformedAgentMessage as exc:
                raise MalformedAccept(exc.message) from exc
        raise MalformedAgentMessage(f"unknown message type {kind[:64]!r}")

    def media(self, frame: AudioFrame) -> Outgoing:
        """Caller audio: a binary frame, or ``media`` with a sequence number from 1."""
        if self.binary_audio:
            return frame.payload
        self._sequence += 1
        # The message encode_json would write, formatted directly: one per 20 ms frame,
        # and base64 (RFC 4648 alphabet) and integers need no JSON escaping, so the
        # encoder's scan of the payload is skipped. Byte for byte the same
        # (tests/providers/test_custom_ws.py).
        return (
            f'{{"type":"media","payload":"{encode_base64(frame.payload)}",'
            f'"sequence":{self._sequence},"timestamp":{frame.timestamp}}}'
        )

    def dtmf(self, digit: str) -> Outgoing:
        return encode_json({"type": "dtmf", "digit": digit})

    def mark(self, name: str) -> Outgoing:
        # Formatted directly as media() is: a mark echo follows every few frames.
        return f'{{"type":"mark","name":{json_string(name)}}}'

    def cleared(self, generation: int, played_ms: int, dropped_marks: list[str]) -> Outgoing | None:
        """``cleared``: the caller heard ``played_ms`` of generation ``generation``'s audio;
        ``marks`` lists the agent's marks whose audio was dropped (they are never echoed)."""
        return encode_json(
            {
                "type": "cleared",
                "generation": generation,
                "played_ms": played_ms,
                "marks": dropped_marks,
            }
        )

    def speech_started(self, timestamp_ms: int) -> Outgoing | None:
        if not self.vad_events:
            return None
        return encode_json({"type": "speech_started", "timestamp": timestamp_ms})

    def speech_stopped(self, timestamp_ms: int) -> Outgoing | None:
        if not self.vad_events:
            return None
        return encode_json({"type": "speech_stopped", "timestamp": timestamp_ms})

    def stop(self, reason: str) -> Outgoing:
        return encode_json({"type": "stop", "reason": reason})
