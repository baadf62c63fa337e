"""Telnyx media streaming: the WebSocket codec, Call Control webhooks and command bodies.

Sans-I/O (STYLE.md P1), the same shape as ``twilio.TwilioStreamCodec``. Wire format:
https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming (TX-MS),
summarised in carriers.md §2.3–§2.4. Quirks honoured here:

- Keys are snake_case; ``stream_id`` is top-level only, never inside ``start``.
- The inbound codec is the *call's* codec, named in ``start.media_format.encoding``:
  Telnyx may send PCMA even though PCMU was requested (EU/UK/India legs), and older
  accounts spell it ``audio/x-mulaw``. Decoding PCMA as µ-law is "static for the entire
  call" (carriers.md §4), so the decoder follows ``start`` and nothing else.
- Outbound audio is in the codec we asked for with ``stream_bidirectional_codec`` (the
  constructor's ``outbound_format``), not necessarily the inbound one.
- L16 byte order on the wire is not documented; RFC 3551 §4.5.11 says network order
  (big-endian) and that is the default, switchable with ``l16_big_endian``. Our
  ``Encoding.L16`` is little-endian, so the codec swaps bytes both ways.
- "Media frame order is not guaranteed" (TX-ASYNC): frames are ordered by ``media.chunk``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Final, Literal

from ingress.media_streams.errors import (
    JsonObject,
    MediaStreamConfigError,
    MediaStreamProtocolError,
    MediaStreamStateError,
    UnsupportedMediaFormatError,
    decode_base64,
    parse_json_object,
    read_counter,
    read_object,
    read_optional_counter,
    read_optional_str,
    read_str,
    read_str_list,
    read_string_map,
)
from ingress.media_streams.events import (
    Carrier,
    CarrierErrorReported,
    MediaStreamEvent,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
    TelnyxCallAnswered,
    TelnyxCallEvent,
    TelnyxCallEventIgnored,
    TelnyxCallHungUp,
    TelnyxCallInitiated,
    TelnyxStreamingFailed,
    TelnyxStreamingStarted,
    TelnyxStreamingStopped,
    TelnyxWebhookEvent,
)
from ingress.media_streams.hangup_causes import classify_telnyx_hangup
from ingress.media_streams.stream_codec import StreamCodecBase, read_digit
from ingress.media_streams.twiml import check_stream_url
from media import (
    G722_16K,
    PCMA,
    PCMU,
    AudioFormat,
    AudioFrame,
    CallEnd,
    DtmfDigit,
    Encoding,
    MarkPlayed,
)

__all__ = [
    "TelnyxStreamCodec",
    "decode_client_state",
    "encode_client_state",
    "parse_telnyx_call_event",
    "telnyx_answer_body",
    "telnyx_codec",
    "telnyx_streaming_start_body",
]

_WHERE = "telnyx"
StreamTrack = Literal["inbound_track", "outbound_track", "both_tracks"]
TargetLegs = Literal["self", "opposite", "both"]

# TX-MS start.media_format.encoding → our encoding. OPUS and AMR-WB are valid Telnyx
# codecs we cannot decode; they raise UnsupportedMediaFormatError.
_INBOUND_ENCODINGS: Final[dict[str, Encoding]] = {
    "pcmu": Encoding.PCMU,
    "audio/x-mulaw": Encoding.PCMU,
    "pcma": Encoding.PCMA,
    "audio/x-alaw": Encoding.PCMA,  # alias assumed by analogy (carriers.md §2.4)
    "g722": Encoding.G722,
    "l16": Encoding.L16,
}
_L16_RATES: Final = (8000, 16000, 24000, 48000)
_AUTH_TOKEN_KEY: Final = "x-telnyx-streaming-auth-token"


def telnyx_codec(audio_format: AudioFormat) -> tuple[str, int | None]:
    """Telnyx's name and sampling rate for an outbound format (``stream_bidirectional_*``).

    TX-MS codec table: PCMU/PCMA 8 kHz, G722 (16 kHz audio, rate left to Telnyx), L16.
    Raises ``MediaStreamConfigError`` for formats Telnyx cannot play back to the caller.
    """
    if audio_format == PCMU:
        return "PCMU", 8000
    if audio_format == PCMA:
        return "PCMA", 8000
    if audio_format == G722_16K:
        return "G722", None
    if audio_format.encoding is Encoding.L16 and audio_format.sample_rate in _L16_RATES:
        return "L16", audio_format.sample_rate
    raise MediaStreamConfigError(f"Telnyx cannot play {audio_format} back on a stream")


class TelnyxStreamCodec(StreamCodecBase):
    """Decode messages from Telnyx and encode messages to Telnyx, for one stream.

    ``outbound_format`` must match the ``stream_bidirectional_codec`` (and sampling rate)
    requested in ``telnyx_answer_body``/``telnyx_streaming_start_body`` or the TeXML
    ``bidirectionalCodec``. Limits and calling contract as ``TwilioStreamCodec``.
    """

    carrier = Carrier.TELNYX
    _where = _WHERE
    _name = "Telnyx"
    _stream_key = "stream_id"
    _sequence_key = "sequence_number"

    def __init__(
        self,
        *,
        outbound_format: AudioFormat = PCMU,
        l16_big_endian: bool = True,
        max_message_chars: int = 262_144,
        max_payload_bytes: int = 96_000,
        max_custom_parameters: int = 64,
    ) -> None:
        telnyx_codec(outbound_format)  # refuse an impossible outbound format up front
        self.outbound_format = outbound_format
        self.l16_big_endian = l16_big_endian
        super().__init__(
            max_message_chars=max_message_chars,
            max_payload_bytes=max_payload_bytes,
            max_custom_parameters=max_custom_parameters,
        )

    # --- inbound ------------------------------------------------------------------------

    def decode(self, text: object, *, received_at: float | None = None) -> list[MediaStreamEvent]:
        """Decode one WebSocket text message from Telnyx into events (often one, or none).

        Raises ``MediaStreamProtocolError`` (or ``UnsupportedMediaFormatError``) for any
        message that is malformed or out of place, and for anything that is not text.
        """
        opened = self._open(text)
        if opened is None:
            return []
        message, event = opened
        if event == "connected":
            version = read_optional_str(message, "version", _WHERE, max_chars=64)
            # TX-ASYNC's connected frame reportedly repeats stream_auth_token here as well
            # as in the upgrade header (carriers.md §2.4, secondary sources).
            connected = message.get("connected")
            token = (
                read_optional_str(connected, _AUTH_TOKEN_KEY, "telnyx.connected", max_chars=4096)
                if isinstance(connected, dict)
                else None
            )
            return [StreamConnected(Carrier.TELNYX, version=version, auth_token=token)]
        if event == "start":
            return [self._start(message)]
        if event not in ("media", "dtmf", "mark", "stop", "error"):
            self.stats.unknown_events += 1
            return []
        if event == "error":  # may come at any time, even before start
            return [_error(message)]
        started = self._require_started(event)
        stream_id = read_optional_str(message, "stream_id", _WHERE)
        if stream_id is not None and stream_id != started.stream_id:
            raise MediaStreamProtocolError(
                f"telnyx {event} for stream {stream_id!r} on stream {started.stream_id!r}"
            )
        if event == "media":
            return self._media(message, started, received_at)
        if event == "dtmf":
            dtmf = read_object(message, "dtmf", _WHERE)
            return [DtmfDigit(read_digit(dtmf, "telnyx.dtmf"))]
        if event == "mark":
            mark = read_object(message, "mark", _WHERE)
            return [MarkPlayed(read_str(mark, "name", "telnyx.mark"))]
        self.state = StreamState.STOPPED
        # TX-MS: streaming.stopped (webhook) then stop (WS) when the call ends; the
        # call.hangup webhook says who hung up and refines this.
        return [
            StreamStopped(
                Carrier.TELNYX,
                started.stream_id,
                started.call_id,
                CallEnd.caller_hangup("Telnyx stopped the media stream: the call ended"),
            )
        ]

    def _start(self, message: JsonObject) -> StreamStarted:
        if self.state is not StreamState.AWAITING_START:
            raise MediaStreamProtocolError("telnyx sent a second start message")
        start = read_object(message, "start", _WHERE)
        started = StreamStarted(
            carrier=Carrier.TELNYX,
            call_id=read_str(start, "call_control_id", "telnyx.start"),
            stream_id=read_str(message, "stream_id", _WHERE),
            media_format=self._inbound_format(read_object(start, "media_format", "telnyx.start")),
            account_id=read_optional_str(start, "user_id", "telnyx.start"),
            from_number=read_optional_str(start, "from", "telnyx.start"),
            to_number=read_optional_str(start, "to", "telnyx.start"),
            custom_parameters=self._custom_parameters(start),
            call_session_id=read_optional_str(start, "call_session_id", "telnyx.start"),
            client_state=read_optional_str(start, "client_state", "telnyx.start", max_chars=8192),
            tags=read_str_list(start, "tags", "telnyx.start"),
        )
        return self._take_started(started)

    @staticmethod
    def _inbound_format(media_format: JsonObject) -> AudioFormat:
        raw = read_str(media_format, "encoding", "telnyx.start.media_format", max_chars=64)
        rate = read_counter(media_format, "sample_rate", "telnyx.start.media_format")
        channels = read_optional_counter(media_format, "channels", "telnyx.start.media_format")
        encoding = _INBOUND_ENCODINGS.get(raw.strip().lower())
        if encoding is None or channels not in (None, 1):
            raise UnsupportedMediaFormatError(raw, rate)
        if encoding in (Encoding.PCMU, Encoding.PCMA):
            if rate != 8000:
                raise UnsupportedMediaFormatError(raw, rate)
            return AudioFormat(encoding, 8000)
        if encoding is Encoding.G722:
            # G.722 is 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2); Telnyx's
            # table lists it as "8 kHz", so either number means the same codec.
            if rate not in (8000, 16000):
                raise UnsupportedMediaFormatError(raw, rate)
            return G722_16K
        if rate not in _L16_RATES:
            raise UnsupportedMediaFormatError(raw, rate)
        return AudioFormat(Encoding.L16, rate)

    def _custom_parameters(self, start: JsonObject) -> dict[str, str]:
        # The key for TeXML <Parameter>s / Call Control custom_parameters in `start` is not
        # documented (carriers.md §5 item 3): accept the Call Control list shape
        # [{"name": …, "value": …}] and a plain object.
        value = start.get("custom_parameters")
        if not isinstance(value, list):
            return read_string_map(
                start, "custom_parameters", "telnyx.start", max_items=self.max_custom_parameters
            )
        if len(value) > self.max_custom_parameters:
            raise MediaStreamProtocolError("telnyx.start.custom_parameters has too many entries")
        pairs: dict[str, Any] = {}
        for item in value:
            if not isinstance(item, dict):
                raise MediaStreamProtocolError(
                    "telnyx.start.custom_parameters entries must be objects"
                )
            pairs[read_str(item, "name", "telnyx.start.custom_parameters")] = item.get("value", "")
        return read_string_map(
            {"p": pairs}, "p", "telnyx.start.custom_parameters", max_items=len(pairs)
        )

    def _media(
        self, message: JsonObject, started: StreamStarted, received_at: float | None
    ) -> list[MediaStreamEvent]:
        media = read_object(message, "media", _WHERE)
        track = read_optional_str(media, "track", "telnyx.media", max_chars=32) or "inbound"
        chunk = read_optional_counter(media, "chunk", "telnyx.media")
        if chunk is None:  # fall back on the message counter when chunk is left out
            chunk = read_counter(message, "sequence_number", _WHERE)
        timestamp = read_counter(media, "timestamp", "telnyx.media")
        payload = decode_base64(
            media.get("payload"), "telnyx.media.payload", max_bytes=self.max_payload_bytes
        )
        fmt = started.media_format
        if fmt.encoding is Encoding.L16 and len(payload) % 2:
            raise MediaStreamProtocolError("telnyx L16 payload has an odd number of bytes")
        # stream_track=both_tracks also streams what we play; the agent wants the caller.
        if not self._accept_media(track, chunk, payload):
            return []
        if fmt.encoding is Encoding.L16 and self.l16_big_endian:
            payload = _swap16(payload)
        return [AudioFrame(fmt, payload, timestamp, received_at)]

    # --- outbound -----------------------------------------------------------------------
    # TX-MS needs no stream_id on outbound frames, but we only know the stream (and that
    # bidirectional mode is on) after start; the messages include the id as other
    # implementations do, so a frame can always be traced to its stream.

    def encode_media(self, payload: object) -> str:
        """A ``media`` message with raw ``outbound_format`` bytes (no RTP header).

        TX-MS: chunks of "20 milliseconds to 30 seconds"; played in order. L16 is given
        little-endian (our ``Encoding.L16``) and sent in the wire byte order.
        """
        stream_id = self._outbound_stream_id()
        data = self._media_payload(payload)
        if self.outbound_format.encoding is Encoding.L16:
            if len(data) % 2:
                raise MediaStreamStateError("an L16 payload needs an even number of bytes")
            if self.l16_big_endian:
                data = _swap16(data)
        return self._media_message(stream_id, data)

    def encode_frame(self, frame: AudioFrame) -> str:
        """``encode_media`` for a frame, which must be in ``outbound_format``."""
        if frame.format != self.outbound_format:
            raise MediaStreamStateError(
                f"this Telnyx stream plays {self.outbound_format}, not {frame.format}"
            )
        return self.encode_media(frame.payload)

    def encode_mark(self, name: str) -> str:
        """A ``mark``; Telnyx echoes it when the audio before it has played (or was cleared)."""
        return self._mark_message(name)

    def encode_clear(self) -> str:
        """A ``clear``: "immediately stop the media playing on the stream and clear the
        media queue" (TX-MS); pending marks come back."""
        return self._clear_message()


def _error(message: JsonObject) -> CarrierErrorReported:
    payload = message.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    code = payload.get("code")
    return CarrierErrorReported(
        Carrier.TELNYX,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        read_optional_str(payload, "title", "telnyx.error.payload") or "unknown_error",
        read_optional_str(payload, "detail", "telnyx.error.payload", max_chars=2048) or "",
    )


def _swap16(data: bytes) -> bytes:
    swapped = bytearray(len(data))
    swapped[0::2] = data[1::2]
    swapped[1::2] = data[0::2]
    return bytes(swapped)


# --- client_state (base64, carriers.md §2.1) ---------------------------------------------


def encode_client_state(value: str) -> str:
    """Telnyx requires ``client_state`` to be base64; it comes back in ``start`` and webhooks."""
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def decode_client_state(value: str) -> str:
    """Reverse ``encode_client_state``; ``MediaStreamProtocolError`` if it is not ours."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise MediaStreamProtocolError(f"client_state is not base64 UTF-8: {exc}") from None


# --- Call Control webhooks (JSON, carriers.md §2.1, §2.3) --------------------------------


def parse_telnyx_call_event(body: str | bytes, *, max_chars: int = 262_144) -> TelnyxWebhookEvent:
    """Parse a Call Control webhook body into a typed event.

    Verify the Ed25519 signature over the raw body first (``signatures``). Telnyx retries
    and reorders webhooks: dedupe on ``event.call.event_id``. Raises
    ``MediaStreamProtocolError`` for a body that is not a Call Control event.
    """
    where = "telnyx webhook"
    data = read_object(parse_json_object(body, max_chars=max_chars), "data", where)
    payload = read_object(data, "payload", f"{where}.data")
    p = f"{where}.data.payload"
    call = TelnyxCallEvent(
        event_type=read_str(data, "event_type", f"{where}.data", max_chars=128),
        event_id=read_str(data, "id", f"{where}.data"),
        occurred_at=read_optional_str(data, "occurred_at", f"{where}.data", max_chars=64),
        call_control_id=read_str(payload, "call_control_id", p),
        call_leg_id=read_optional_str(payload, "call_leg_id", p),
        call_session_id=read_optional_str(payload, "call_session_id", p),
        connection_id=read_optional_str(payload, "connection_id", p),
        client_state=read_optional_str(payload, "client_state", p, max_chars=8192),
    )
    kind = call.event_type
    if kind == "call.initiated":
        codecs = read_optional_str(payload, "offered_codecs", p) or ""
        return TelnyxCallInitiated(
            call,
            direction=read_optional_str(payload, "direction", p, max_chars=32),
            from_number=read_optional_str(payload, "from", p),
            to_number=read_optional_str(payload, "to", p),
            offered_codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
        )
    if kind == "call.answered":
        return TelnyxCallAnswered(call)
    if kind == "call.hangup":
        cause = read_optional_str(payload, "hangup_cause", p, max_chars=64)
        source = read_optional_str(payload, "hangup_source", p, max_chars=64)
        sip = payload.get("sip_hangup_cause")
        sip_text = (
            str(sip)[:8] if isinstance(sip, str | int) and not isinstance(sip, bool) else None
        )
        direction = read_optional_str(payload, "direction", p, max_chars=32)
        return TelnyxCallHungUp(
            call,
            hangup_cause=cause,
            hangup_source=source,
            sip_hangup_cause=sip_text,
            end=classify_telnyx_hangup(cause, source, sip_text, inbound=direction != "outgoing"),
        )
    if kind in ("streaming.started", "streaming.stopped"):
        params = payload.get("stream_params")
        url = (
            read_optional_str(params, "stream_url", f"{p}.stream_params", max_chars=2048)
            if isinstance(params, dict)
            else None
        )
        if url is None:
            url = read_optional_str(payload, "stream_url", p, max_chars=2048)
        if kind == "streaming.started":
            return TelnyxStreamingStarted(call, url)
        return TelnyxStreamingStopped(call, url)
    if kind == "streaming.failed":
        return TelnyxStreamingFailed(
            call,
            failure_reason=read_optional_str(payload, "failure_reason", p),
            stream_id=read_optional_str(payload, "stream_id", p),
        )
    return TelnyxCallEventIgnored(call)


# --- Call Control command bodies (carriers.md §2.3) --------------------------------------


def _streaming_params(
    stream_url: str,
    auth_token: str,
    codec: AudioFormat,
    track: StreamTrack,
    target_legs: TargetLegs | None,
    custom_parameters: Mapping[str, str] | None,
    client_state: str | None,
    command_id: str | None,
) -> dict[str, object]:
    check_stream_url(stream_url)
    if not auth_token or len(auth_token) > 4000:  # TX-SS: stream_auth_token ≤ 4000 chars
        raise MediaStreamConfigError("stream_auth_token must be 1 to 4000 characters")
    name, rate = telnyx_codec(codec)
    body: dict[str, object] = {
        "stream_url": stream_url,
        "stream_track": track,
        # TX-MS: without "rtp" nothing we send is played as a stream (mp3 mode).
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": name,  # "Case sensitive." (TX-SS)
        "stream_auth_token": auth_token,
    }
    if rate is not None and name == "L16":
        body["stream_bidirectional_sampling_rate"] = rate
    if target_legs is not None:
        body["stream_bidirectional_target_legs"] = target_legs
    if custom_parameters:
        body["custom_parameters"] = [{"name": k, "value": v} for k, v in custom_parameters.items()]
    if client_state is not None:
        body["client_state"] = encode_client_state(client_state)
    if command_id is not None:
        body["command_id"] = command_id
    return body


def telnyx_answer_body(
    stream_url: str,
    *,
    auth_token: str,
    codec: AudioFormat = PCMU,
    track: StreamTrack = "inbound_track",
    target_legs: TargetLegs | None = "self",
    custom_parameters: Mapping[str, str] | None = None,
    client_state: str | None = None,
    command_id: str | None = None,
) -> dict[str, object]:
    """JSON body of ``POST /v2/calls/{call_control_id}/actions/answer`` that starts the stream.

    ``codec`` is what we will send (``stream_bidirectional_codec``); give the same format
    to ``TelnyxStreamCodec(outbound_format=…)``. ``client_state`` is plain text, base64'd
    here. The telnyx SDK's answer params lack ``stream_auth_token`` (carriers.md §2.3);
    the REST API takes it, and this body is for the REST call.
    """
    return _streaming_params(
        stream_url,
        auth_token,
        codec,
        track,
        target_legs,
        custom_parameters,
        client_state,
        command_id,
    )


def telnyx_streaming_start_body(
    stream_url: str,
    *,
    auth_token: str,
    codec: AudioFormat = PCMU,
    track: StreamTrack = "inbound_track",
    target_legs: TargetLegs | None = "self",
    custom_parameters: Mapping[str, str] | None = None,
    client_state: str | None = None,
    command_id: str | None = None,
) -> dict[str, object]:
    """JSON body of ``POST /v2/calls/{call_control_id}/actions/streaming_start`` (TX-SS)."""
    return _streaming_params(
        stream_url,
        auth_token,
        codec,
        track,
        target_legs,
        custom_parameters,
        client_state,
        command_id,
    )
