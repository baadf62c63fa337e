"""TwilioStreamCodec against message sequences written from Twilio's Media Streams docs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.media_streams.errors import (
    MediaStreamProtocolError,
    MediaStreamStateError,
    UnsupportedMediaFormatError,
)
from ingress.media_streams.events import (
    Carrier,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
)
from ingress.media_streams.telnyx import TelnyxStreamCodec
from ingress.media_streams.twilio import TwilioStreamCodec
from media import PCMA, PCMU, AudioFrame, Blame, DisconnectReason, DtmfDigit, MarkPlayed

Recorded = Callable[[str], list[str]]
MZ = "MZ00000000000000000000000000000001"
CA = "CA00000000000000000000000000000002"


def _payload(seed: int, n: int = 160) -> bytes:
    """The synthetic payload bytes the recordings were written with."""
    return bytes((seed * 7 + k * 3) % 256 for k in range(n))


def _decode_all(codec: TwilioStreamCodec, messages: list[str]) -> list[object]:
    events: list[object] = []
    for message in messages:
        events.extend(codec.decode(message))
    return events


def _started(codec: TwilioStreamCodec, recorded: Recorded) -> None:
    for message in recorded("twilio_inbound_call.jsonl")[:2]:
        codec.decode(message)


class TestRecordedInboundCall:
    """TW-WSM: connected → start → media… → stop."""

    def test_events_in_order(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        events = _decode_all(codec, recorded("twilio_inbound_call.jsonl"))
        assert events[0] == StreamConnected(Carrier.TWILIO, version="1.0.0", protocol="Call")
        start = events[1]
        assert isinstance(start, StreamStarted)
        assert start.carrier is Carrier.TWILIO
        assert start.call_id == CA
        assert start.stream_id == MZ
        assert start.account_id == "AC00000000000000000000000000000003"
        assert start.media_format == PCMU
        assert start.tracks == ("inbound",)
        assert start.custom_parameters == {
            "telepath_call_id": "call_0001",
            "from": "+15550100001",
            "to": "+15550100002",
        }
        frames = events[2:7]
        assert frames == [AudioFrame(PCMU, _payload(i), 20 * i) for i in range(5)]
        stopped = events[7]
        assert isinstance(stopped, StreamStopped)
        assert (stopped.stream_id, stopped.call_id) == (MZ, CA)
        assert stopped.end.reason is DisconnectReason.HANGUP
        assert stopped.end.blame is Blame.CALLER
        assert len(events) == 8
        assert codec.state is StreamState.STOPPED

    def test_stats(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        _decode_all(codec, recorded("twilio_inbound_call.jsonl"))
        assert codec.stats.messages == 8
        assert codec.stats.media_frames == 5
        assert codec.stats.media_bytes == 800
        assert codec.stats.frames_missing == codec.stats.duplicates == codec.stats.out_of_order == 0

    def test_received_at_is_stamped_on_frames(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        messages = recorded("twilio_inbound_call.jsonl")
        codec.decode(messages[0])
        codec.decode(messages[1])
        (frame,) = codec.decode(messages[2], received_at=12.5)
        assert isinstance(frame, AudioFrame)
        assert frame.received_at == 12.5

    def test_messages_after_stop_are_ignored(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        messages = recorded("twilio_inbound_call.jsonl")
        _decode_all(codec, messages)
        assert codec.decode(messages[3]) == []
        assert codec.stats.ignored_after_stop == 1


class TestRecordedDtmfAndMarks:
    def test_dtmf_and_marks(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        events = _decode_all(codec, recorded("twilio_dtmf_mark.jsonl"))
        kinds = [type(e).__name__ for e in events]
        assert kinds == [
            "StreamConnected",
            "StreamStarted",
            "AudioFrame",
            "DtmfDigit",
            "AudioFrame",
            "MarkPlayed",
            "DtmfDigit",
            "AudioFrame",
            "MarkPlayed",
            "StreamStopped",
        ]
        assert [e for e in events if isinstance(e, DtmfDigit)] == [DtmfDigit("1"), DtmfDigit("#")]
        assert [e for e in events if isinstance(e, MarkPlayed)] == [
            MarkPlayed("gen1:chunk1"),
            MarkPlayed("gen1:chunk2"),
        ]


class TestMediaOrdering:
    """Chunks are delivered in order; duplicates and late ones dropped, gaps counted."""

    def test_reordered_recording(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        events = _decode_all(codec, recorded("twilio_reordered_media.jsonl"))
        frames = [e for e in events if isinstance(e, AudioFrame)]
        assert [f.timestamp for f in frames] == [0, 20, 60, 80, 140]
        assert [f.payload for f in frames] == [_payload(s) for s in (1, 2, 4, 5, 8)]
        assert codec.stats.duplicates == 1
        assert codec.stats.out_of_order == 1
        assert codec.stats.frames_missing == 1 + 2  # chunk 3 (came late) and chunks 6-7

    @given(st.lists(st.integers(min_value=1, max_value=40), max_size=40))
    def test_frames_strictly_increase_and_everything_is_counted(self, chunks: list[int]) -> None:
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        delivered: list[int] = []
        for n, chunk in enumerate(chunks):
            events = codec.decode(json.dumps(_media(n + 2, chunk, chunk * 20, b"\xff" * 160)))
            delivered.extend(e.timestamp // 20 for e in events if isinstance(e, AudioFrame))
        assert delivered == sorted(set(delivered))
        stats = codec.stats
        assert len(delivered) + stats.duplicates + stats.out_of_order == len(chunks)
        if delivered:
            assert stats.frames_missing == delivered[-1] - delivered[0] + 1 - len(delivered)

    def test_outbound_track_is_not_caller_audio(self) -> None:
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        message = _media(2, 1, 0, b"\x00" * 160)
        message["media"]["track"] = "outbound"
        assert codec.decode(json.dumps(message)) == []
        assert codec.stats.other_track_frames == 1


class TestOutbound:
    def test_nothing_is_encoded_before_start(self) -> None:
        codec = TwilioStreamCodec()
        encoders: list[Callable[[], str]] = [
            lambda: codec.encode_media(b"\xff"),
            lambda: codec.encode_mark("m"),
            codec.encode_clear,
        ]
        for encode in encoders:
            with pytest.raises(MediaStreamStateError):
                encode()

    def test_nothing_is_encoded_after_stop(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        _decode_all(codec, recorded("twilio_inbound_call.jsonl"))
        with pytest.raises(MediaStreamStateError):
            codec.encode_media(b"\xff" * 160)

    def test_media_message_shape(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        _started(codec, recorded)
        payload = bytes(range(160))
        # TW-WSM §"Send a Media message": event, streamSid, media.payload (base64 µ-law).
        assert json.loads(codec.encode_media(payload)) == {
            "event": "media",
            "streamSid": MZ,
            "media": {"payload": base64.b64encode(payload).decode()},
        }
        assert json.loads(codec.encode_clear()) == {"event": "clear", "streamSid": MZ}
        assert json.loads(codec.encode_mark("gen2:7")) == {
            "event": "mark",
            "streamSid": MZ,
            "mark": {"name": "gen2:7"},
        }

    def test_frames_must_be_pcmu(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        _started(codec, recorded)
        assert json.loads(codec.encode_frame(AudioFrame(PCMU, b"\x7f" * 160)))["event"] == "media"
        with pytest.raises(MediaStreamStateError):
            codec.encode_frame(AudioFrame(PCMA, b"\xd5" * 160))

    @pytest.mark.parametrize("bad", [b"", "text"])
    def test_media_payload_must_be_bytes(self, recorded: Recorded, bad: object) -> None:
        codec = TwilioStreamCodec()
        _started(codec, recorded)
        with pytest.raises(MediaStreamStateError):
            codec.encode_media(bad)  # type: ignore[arg-type]

    def test_empty_mark_name_is_refused(self, recorded: Recorded) -> None:
        codec = TwilioStreamCodec()
        _started(codec, recorded)
        with pytest.raises(MediaStreamStateError):
            codec.encode_mark("")

    @given(name=st.text(min_size=1, max_size=200))
    def test_mark_round_trip(self, name: str) -> None:
        """Twilio echoes our mark with the same name (TW-WSM) → MarkPlayed(name)."""
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        echo = json.loads(codec.encode_mark(name))
        echo["sequenceNumber"] = "3"
        assert codec.decode(json.dumps(echo)) == [MarkPlayed(name)]

    @given(payload=st.binary(min_size=1, max_size=2000))
    def test_media_round_trip(self, payload: bytes) -> None:
        """What we send is exactly what a carrier media message with that payload decodes to."""
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        sent = json.loads(codec.encode_media(payload))
        inbound = _media(2, 1, 0, b"")
        inbound["media"]["payload"] = sent["media"]["payload"]
        assert codec.decode(json.dumps(inbound)) == [AudioFrame(PCMU, payload, 0)]


class TestStartValidation:
    @pytest.mark.parametrize(
        "media_format",
        [
            {"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1},
            {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
            {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
            {"encoding": "audio/x-mulaw", "sampleRate": "8000", "channels": 1},
        ],
    )
    def test_anything_but_mulaw_8k_mono_is_unsupported(
        self, media_format: dict[str, object]
    ) -> None:
        message = _start()
        message["start"]["mediaFormat"] = media_format
        with pytest.raises(UnsupportedMediaFormatError):
            TwilioStreamCodec().decode(json.dumps(message))

    def test_second_start_is_a_protocol_error(self) -> None:
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        with pytest.raises(MediaStreamProtocolError):
            codec.decode(json.dumps(_start()))

    def test_media_before_start_is_a_protocol_error(self) -> None:
        with pytest.raises(MediaStreamProtocolError):
            TwilioStreamCodec().decode(json.dumps(_media(2, 1, 0, b"\xff")))

    def test_media_for_another_stream_is_a_protocol_error(self) -> None:
        codec = TwilioStreamCodec()
        codec.decode(json.dumps(_start()))
        message = _media(2, 1, 0, b"\xff")
        message["streamSid"] = "MZ99999999999999999999999999999999"
        with pytest.raises(MediaStreamProtocolError):
            codec.decode(json.dumps(message))

    def test_unknown_events_are_counted_not_fatal(self) -> None:
        codec = TwilioStreamCodec()
        assert codec.decode('{"event": "transcription", "streamSid": "MZ1"}') == []
        assert codec.stats.unknown_events == 1


def _start() -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC00000000000000000000000000000003",
            "streamSid": MZ,
            "callSid": CA,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {},
        },
        "streamSid": MZ,
    }


def _media(seq: int, chunk: int, timestamp: int, payload: bytes) -> dict[str, Any]:
    return {
        "event": "media",
        "sequenceNumber": str(seq),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp),
            "payload": base64.b64encode(payload).decode(),
        },
        "streamSid": MZ,
    }


@given(
    stream_ids=st.lists(st.text(max_size=40), min_size=1, max_size=3),
    payload=st.binary(min_size=1, max_size=400),
)
def test_media_message_is_what_the_json_encoder_writes(
    stream_ids: list[str], payload: bytes
) -> None:
    # Both carriers' codecs format their one-per-frame media message directly, encoding
    # the stream id once per stream; it must stay byte for byte what the JSON encoder
    # makes of it, for any stream id (quotes, control characters, non-ASCII) and after
    # the id changes.
    for codec in (TwilioStreamCodec(), TelnyxStreamCodec()):
        for stream_id in [*stream_ids, *stream_ids]:
            expected = {
                "event": "media",
                codec._stream_key: stream_id,
                "media": {"payload": base64.b64encode(payload).decode("ascii")},
            }
            assert codec._media_message(stream_id, payload) == json.dumps(
                expected, separators=(",", ":"), ensure_ascii=False
            )
