"""Twilio Media Streams: the WebSocket message codec and the status-callback forms.

Sans-I/O (STYLE.md P1): ``TwilioStreamCodec.decode(text)`` takes one WebSocket text
message and returns events (``events.py``); the ``encode_*`` methods return the text
messages to send. The WS loop in ``gateway/`` only pumps.

Wire format: https://www.twilio.com/docs/voice/media-streams/websocket-messages (TW-WSM),
summarised in carriers.md §1.3–§1.5. Quirks honoured here:

- ``sequenceNumber``, ``media.chunk`` and ``media.timestamp`` are *strings* (TW-WSM).
- Inbound and outbound audio is always ``audio/x-mulaw`` at 8000 Hz, one channel, base64
  without any file header (TW-WSM: "Providing header bytes causes the media to be streamed
  incorrectly").
- Every message we send carries ``streamSid`` (TW-WSM), so nothing can be encoded before
  ``start``.
- ``mark`` comes back when the audio before it has played, *or* when ``clear`` flushed it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingress.media_streams.errors import (
    JsonObject,
    MediaStreamProtocolError,
    MediaStreamStateError,
    UnsupportedMediaFormatError,
    decode_base64,
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
    MediaStreamEvent,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
    TwilioCallStatusChanged,
    TwilioStreamStatusChanged,
)
from ingress.media_streams.hangup_causes import classify_twilio_call_status
from ingress.media_streams.stream_codec import StreamCodecBase, read_digit
from media import PCMU, AudioFrame, CallEnd, DtmfDigit, MarkPlayed

__all__ = [
    "TwilioStreamCodec",
    "parse_twilio_call_status",
    "parse_twilio_stream_status",
]

_WHERE = "twilio"


class TwilioStreamCodec(StreamCodecBase):
    """Decode messages from Twilio and encode messages to Twilio, for one stream.

    Limits are constructor arguments (STYLE.md P3): ``max_message_chars`` bounds a whole
    text message; ``max_payload_bytes`` bounds one decoded ``media.payload`` (Twilio sends
    160 bytes = 20 ms; the default allows 2 s).

    Calling contract: feed every text message to ``decode`` in arrival order. ``start``
    must come before ``media``/``dtmf``/``mark`` (else ``MediaStreamProtocolError``);
    messages after ``stop`` are ignored and counted. ``encode_*`` raise
    ``MediaStreamStateError`` before ``start``.
    """

    carrier = Carrier.TWILIO
    _where = _WHERE
    _name = "Twilio"
    _stream_key = "streamSid"
    _sequence_key = "sequenceNumber"

    def __init__(
        self,
        *,
        max_message_chars: int = 65_536,
        max_payload_bytes: int = 16_000,
        max_custom_parameters: int = 64,
    ) -> None:
        super().__init__(
            max_message_chars=max_message_chars,
            max_payload_bytes=max_payload_bytes,
            max_custom_parameters=max_custom_parameters,
        )

    # --- inbound ------------------------------------------------------------------------

    def decode(self, text: object, *, received_at: float | None = None) -> list[MediaStreamEvent]:
        """Decode one WebSocket text message from Twilio into events (often one, or none).

        ``received_at`` (monotonic seconds, from the I/O shell) is stamped on audio frames.
        Raises ``MediaStreamProtocolError`` (or ``UnsupportedMediaFormatError``) for any
        message that is malformed or out of place, and for anything that is not text.
        """
        opened = self._open(text)
        if opened is None:
            return []
        message, event = opened
        if event == "connected":
            return [
                StreamConnected(
                    Carrier.TWILIO,
                    version=read_optional_str(message, "version", _WHERE, max_chars=64),
                    protocol=read_optional_str(message, "protocol", _WHERE, max_chars=64),
                )
            ]
        if event == "start":
            return [self._start(message)]
        if event not in ("media", "dtmf", "mark", "stop"):
            # TW-WSM may grow new message types; an unknown one must not end the call.
            self.stats.unknown_events += 1
            return []
        started = self._require_started(event)
        stream_sid = read_str(message, "streamSid", _WHERE)
        if stream_sid != started.stream_id:
            raise MediaStreamProtocolError(
                f"twilio {event} for stream {stream_sid!r} on stream {started.stream_id!r}"
            )
        if event == "media":
            return self._media(message, received_at)
        if event == "dtmf":
            dtmf = read_object(message, "dtmf", _WHERE)
            return [DtmfDigit(read_digit(dtmf, "twilio.dtmf"))]
        if event == "mark":
            mark = read_object(message, "mark", _WHERE)
            return [MarkPlayed(read_str(mark, "name", "twilio.mark"))]
        return [self._stop(message, started)]

    def _start(self, message: JsonObject) -> StreamStarted:
        if self.state is not StreamState.AWAITING_START:
            raise MediaStreamProtocolError("twilio sent a second start message")
        start = read_object(message, "start", _WHERE)
        stream_sid = read_str(start, "streamSid", "twilio.start")
        top_sid = read_optional_str(message, "streamSid", _WHERE)
        if top_sid is not None and top_sid != stream_sid:
            raise MediaStreamProtocolError("twilio start names two different streamSids")
        media_format = read_object(start, "mediaFormat", "twilio.start")
        encoding = media_format.get("encoding")
        rate = media_format.get("sampleRate")
        channels = media_format.get("channels", 1)
        # TW-WSM: encoding "Value is always audio/x-mulaw", sampleRate "always 8000",
        # channels "always 1". Anything else we would decode as noise.
        if encoding != "audio/x-mulaw" or rate != 8000 or channels != 1:
            raise UnsupportedMediaFormatError(str(encoding)[:64], rate)
        started = StreamStarted(
            carrier=Carrier.TWILIO,
            call_id=read_str(start, "callSid", "twilio.start"),
            stream_id=stream_sid,
            media_format=PCMU,
            account_id=read_optional_str(start, "accountSid", "twilio.start"),
            custom_parameters=read_string_map(
                start, "customParameters", "twilio.start", max_items=self.max_custom_parameters
            ),
            tracks=read_str_list(start, "tracks", "twilio.start"),
        )
        return self._take_started(started)

    def _media(self, message: JsonObject, received_at: float | None) -> list[MediaStreamEvent]:
        media = read_object(message, "media", _WHERE)
        track = read_optional_str(media, "track", "twilio.media", max_chars=32) or "inbound"
        chunk = read_counter(media, "chunk", "twilio.media")
        timestamp = read_counter(media, "timestamp", "twilio.media")
        payload = decode_base64(
            media.get("payload"), "twilio.media.payload", max_bytes=self.max_payload_bytes
        )
        # Only <Start><Stream track="both_tracks"> sends the outbound track; for the
        # agent it is our own audio coming back, dropped by _accept_media.
        if not self._accept_media(track, chunk, payload):
            return []
        return [AudioFrame(PCMU, payload, timestamp, received_at)]

    def _stop(self, message: JsonObject, started: StreamStarted) -> StreamStopped:
        stop = message.get("stop")
        call_sid = (
            read_optional_str(stop, "callSid", "twilio.stop") if isinstance(stop, dict) else None
        )
        if call_sid is not None and call_sid != started.call_id:
            raise MediaStreamProtocolError("twilio stop names a different callSid")
        self.state = StreamState.STOPPED
        return StreamStopped(
            Carrier.TWILIO,
            started.stream_id,
            started.call_id,
            # TW-WSM: for bidirectional streams "the only way to stop a Stream is to end
            # the call"; if we did not end it, the caller did.
            CallEnd.caller_hangup("Twilio stopped the media stream: the call ended"),
        )

    # --- outbound -----------------------------------------------------------------------

    def encode_media(self, payload: object) -> str:
        """A ``media`` message playing ``payload``: raw µ-law 8 kHz bytes, no file header.

        TW-WSM: "The media messages are buffered and played in the order received."
        """
        stream_id = self._outbound_stream_id()
        return self._media_message(stream_id, self._media_payload(payload))

    def encode_frame(self, frame: AudioFrame) -> str:
        """``encode_media`` for a frame, which must already be PCMU 8 kHz (Twilio's only format)."""
        if frame.format != PCMU:
            raise MediaStreamStateError(f"twilio plays only pcmu/8000, not {frame.format}")
        return self.encode_media(frame.payload)

    def encode_mark(self, name: str) -> str:
        """A ``mark`` message; Twilio echoes it once the audio sent before it has played."""
        return self._mark_message(name)

    def encode_clear(self) -> str:
        """A ``clear`` message: drop all queued audio now (barge-in); pending marks echo back."""
        return self._clear_message()


# --- status callbacks (form POSTs, carriers.md §1.6, §1.9) -------------------------------


def parse_twilio_call_status(form: Mapping[str, str]) -> TwilioCallStatusChanged:
    """Parse a call status callback (or voice webhook) form into a typed event.

    Check ``X-Twilio-Signature`` first (``signatures.verify_twilio_signature``). ``end`` is
    set for final statuses (``completed``, ``busy``, ``failed``, ``no-answer``,
    ``canceled``). Raises ``MediaStreamProtocolError`` on missing or malformed fields.
    """
    where = "twilio status callback"
    call_status = _form_str(form, "CallStatus", where).lower()
    sip_code = _form_int(form, "SipResponseCode", where)
    return TwilioCallStatusChanged(
        call_sid=_form_str(form, "CallSid", where),
        account_sid=_form_str(form, "AccountSid", where),
        call_status=call_status,
        direction=_form_optional(form, "Direction"),
        from_number=_form_optional(form, "From"),
        to_number=_form_optional(form, "To"),
        sequence_number=_form_int(form, "SequenceNumber", where),
        call_duration_s=_form_int(form, "CallDuration", where),
        sip_response_code=sip_code,
        timestamp=_form_optional(form, "Timestamp"),
        end=classify_twilio_call_status(call_status, sip_code),
    )


def parse_twilio_stream_status(form: Mapping[str, str]) -> TwilioStreamStatusChanged:
    """Parse a ``<Stream statusCallback>`` form (``StreamEvent`` = stream-started/…)."""
    where = "twilio stream status callback"
    event = _form_str(form, "StreamEvent", where).lower()
    # carriers.md §1.6: handlers in the wild also see stream-start/stream-stop and
    # Telnyx's clone says stream-failed; accept them all under the documented names.
    event = {"stream-start": "stream-started", "stream-stop": "stream-stopped"}.get(event, event)
    if event == "stream-failed":
        event = "stream-error"
    return TwilioStreamStatusChanged(
        call_sid=_form_str(form, "CallSid", where),
        stream_sid=_form_str(form, "StreamSid", where),
        stream_event=event,
        stream_name=_form_optional(form, "StreamName"),
        stream_error=_form_optional(form, "StreamError"),
        timestamp=_form_optional(form, "Timestamp"),
    )


def _form_optional(form: Mapping[str, str], key: str) -> str | None:
    value = form.get(key)
    if not isinstance(value, str) or not value:
        return None
    return value[:1024]


def _form_str(form: Mapping[str, str], key: str, where: str) -> str:
    value = _form_optional(form, key)
    if value is None:
        raise MediaStreamProtocolError(f"{where}: {key} is missing")
    return value


def _form_int(form: Mapping[str, str], key: str, where: str) -> int | None:
    value = _form_optional(form, key)
    if value is None:
        return None
    return read_optional_counter({key: value}, key, where)
