"""What the Twilio and Telnyx WebSocket codecs share: limits, state, chunk order, stats.

Both carriers speak the same message shape (``connected``, ``start``, ``media``, ``dtmf``,
``mark``, ``stop`` in; ``media``, ``mark``, ``clear`` out; carriers.md §1.3–§1.5, §2.3–§2.4)
and differ in key spelling and media formats. ``StreamCodecBase`` holds the common,
sans-I/O part (STYLE.md P1); ``twilio.TwilioStreamCodec`` and ``telnyx.TelnyxStreamCodec``
keep the carrier specifics.
"""

from __future__ import annotations

import binascii
import json
from typing import ClassVar

from ingress.media_streams.errors import (
    JsonObject,
    MediaStreamProtocolError,
    MediaStreamStateError,
    parse_json_object,
    read_optional_counter,
    read_str,
)
from ingress.media_streams.events import (
    Carrier,
    ChunkSequencer,
    StreamStarted,
    StreamState,
    StreamStats,
)
from media.frames import DTMF_DIGITS

__all__ = ["StreamCodecBase", "dumps", "read_digit"]


class StreamCodecBase:
    """Per-stream state and the steps both carriers' codecs take alike.

    Subclasses set ``carrier``, ``_where`` (lower-case prefix of error paths),
    ``_name`` (the carrier in messages), ``_stream_key`` (the stream id's JSON key on
    outbound messages) and ``_sequence_key`` (the message counter's JSON key).
    """

    carrier: Carrier
    _where: ClassVar[str]
    _name: ClassVar[str]
    _stream_key: ClassVar[str]
    _sequence_key: ClassVar[str]

    def __init__(
        self, *, max_message_chars: int, max_payload_bytes: int, max_custom_parameters: int
    ) -> None:
        self.max_message_chars = max_message_chars
        self.max_payload_bytes = max_payload_bytes
        self.max_custom_parameters = max_custom_parameters
        self.stats = StreamStats()
        self.state = StreamState.AWAITING_START
        self.started: StreamStarted | None = None
        self._sequencer = ChunkSequencer(self.stats)
        self._encoded_for: str | None = None  # the stream id _media_prefix was made for
        self._media_prefix = ""

    # --- inbound ------------------------------------------------------------------------

    def _open(self, text: object) -> tuple[JsonObject, str] | None:
        """Parse and count one message: its object and ``event``, or ``None`` after stop."""
        message = parse_json_object(text, max_chars=self.max_message_chars)
        self.stats.messages += 1
        event = read_str(message, "event", self._where, max_chars=64)
        # A string of digits when present.
        read_optional_counter(message, self._sequence_key, self._where)
        if self.state is StreamState.STOPPED:
            self.stats.ignored_after_stop += 1
            return None
        return message, event

    def _require_started(self, event: str) -> StreamStarted:
        if self.started is None:
            raise MediaStreamProtocolError(f"{self._where} sent {event} before start")
        return self.started

    def _take_started(self, started: StreamStarted) -> StreamStarted:
        self.started = started
        self.state = StreamState.STREAMING
        return started

    def _accept_media(self, track: str, chunk: int, payload: bytes) -> bool:
        """Count one inbound ``media`` frame; ``True`` if it is caller audio to pass on.

        Other tracks, duplicate or late chunks (``ChunkSequencer``) and empty payloads are
        counted in ``stats`` and dropped.
        """
        if track != "inbound":
            self.stats.other_track_frames += 1
            return False
        if not self._sequencer.accept(track, chunk):
            return False
        if not payload:
            self.stats.empty_frames += 1
            return False
        self.stats.media_frames += 1
        self.stats.media_bytes += len(payload)
        return True

    # --- outbound -----------------------------------------------------------------------

    def _media_payload(self, payload: object) -> bytes:
        """``payload`` as the bytes of an outbound ``media`` message, once checked.

        Typed ``object``: the check is the contract, and compiled code (gateway/native.py)
        would otherwise refuse a wrong type with its own ``TypeError`` before it."""
        if isinstance(payload, bytes) and payload:
            return payload
        if isinstance(payload, (bytearray, memoryview)) and payload:
            return bytes(payload)
        raise MediaStreamStateError(f"{self._where} media payload must be non-empty bytes")

    def _media_message(self, stream_id: str, data: bytes) -> str:
        # What dumps() would write, formatted directly: one per 20 ms frame. Only the
        # carrier's stream id can need escaping, and it is encoded once per stream;
        # base64 never does. Byte for byte the same (tests/ingress/media_streams).
        if stream_id != self._encoded_for:
            self._encoded_for = stream_id
            key, value = dumps(self._stream_key), dumps(stream_id)
            self._media_prefix = f'{{"event":"media",{key}:{value},"media":{{"payload":"'
        return self._media_prefix + binascii.b2a_base64(data, newline=False).decode("ascii") + '"}}'

    def _mark_message(self, name: str) -> str:
        stream_id = self._outbound_stream_id()
        if not isinstance(name, str) or not name:
            raise MediaStreamStateError("a mark needs a non-empty name")
        return dumps({"event": "mark", self._stream_key: stream_id, "mark": {"name": name}})

    def _clear_message(self) -> str:
        return dumps({"event": "clear", self._stream_key: self._outbound_stream_id()})

    def _outbound_stream_id(self) -> str:
        if self.started is None:
            raise MediaStreamStateError(f"cannot send to {self._name} before its start message")
        if self.state is StreamState.STOPPED:
            raise MediaStreamStateError(f"the {self._name} stream has stopped")
        return self.started.stream_id


def read_digit(obj: JsonObject, where: str) -> str:
    """The ``digit`` of a ``dtmf`` object, upper-cased; must be a DTMF digit."""
    digit = read_str(obj, "digit", where, max_chars=1).upper()
    if digit not in DTMF_DIGITS:
        raise MediaStreamProtocolError(f"{where}.digit {digit!r} is not a DTMF digit")
    return digit


def dumps(message: object) -> str:
    """A compact JSON text message."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
