"""TelnyxStreamCodec against message sequences written from Telnyx's media streaming docs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingress.media_streams.errors import (
    MediaStreamConfigError,
    MediaStreamProtocolError,
    MediaStreamStateError,
    UnsupportedMediaFormatError,
)
from ingress.media_streams.events import (
    Carrier,
    CarrierErrorReported,
    StreamConnected,
    StreamStarted,
    StreamState,
    StreamStopped,
)
from ingress.media_streams.telnyx import TelnyxStreamCodec, decode_client_state, encode_client_state
from media import (
    G722_16K,
    L16_16K,
    PCMA,
    PCMU,
    AudioFormat,
    AudioFrame,
    DtmfDigit,
    Encoding,
    MarkPlayed,
)

Recorded = Callable[[str], list[str]]
SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
CC = "v3:00000000000000000000000000000000000000000000000000aa"


def _payload(seed: int, n: int = 160) -> bytes:
    return bytes((seed * 7 + k * 3) % 256 for k in range(n))


def _decode_all(codec: TelnyxStreamCodec, messages: list[str]) -> list[object]:
    events: list[object] = []
    for message in messages:
        events.extend(codec.decode(message))
    return events


class TestRecordedRtpPcmu:
    def test_events(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec()
        events = _decode_all(codec, recorded("telnyx_rtp_pcmu.jsonl"))
        assert events[0] == StreamConnected(Carrier.TELNYX, version="1.0.0")
        start = events[1]
        assert isinstance(start, StreamStarted)
        assert start.carrier is Carrier.TELNYX
        assert (start.call_id, start.stream_id) == (CC, SID)
        assert start.media_format == PCMU
        assert (start.from_number, start.to_number) == ("+15550100001", "+15550100002")
        assert start.account_id == "00000000-0000-4000-8000-000000000001"
        assert start.call_session_id == "00000000-0000-4000-8000-000000000002"
        assert start.tags == ("TAG1",)
        assert start.custom_parameters == {"telepath_call_id": "call_0001"}
        assert start.client_state is not None
        assert decode_client_state(start.client_state) == "call_0001"
        # the outbound-track frame (our own audio, both_tracks) is not caller audio
        assert events[2:] == [
            AudioFrame(PCMU, _payload(1), 0),
            AudioFrame(PCMU, _payload(2), 20),
            DtmfDigit("1"),
            MarkPlayed("gen1:chunk1"),
            AudioFrame(PCMU, _payload(3), 40),
            events[-1],
        ]
        stopped = events[-1]
        assert isinstance(stopped, StreamStopped)
        assert (stopped.stream_id, stopped.call_id) == (SID, CC)
        assert codec.stats.other_track_frames == 1
        assert codec.stats.media_frames == 3
        assert codec.state is StreamState.STOPPED


class TestInboundFormatFollowsStart:
    def test_pcma_when_pcmu_was_requested(self, recorded: Recorded) -> None:
        """dograh-hq/dograh PR #256: decoding an A-law leg as µ-law is static for the whole call."""
        codec = TelnyxStreamCodec(outbound_format=PCMU)
        messages = recorded("telnyx_pcma_start.jsonl")
        events = _decode_all(codec, messages[:-1])
        start = events[1]
        assert isinstance(start, StreamStarted)
        assert start.media_format == PCMA
        frames = [e for e in events if isinstance(e, AudioFrame)]
        assert frames == [AudioFrame(PCMA, _payload(1), 0), AudioFrame(PCMA, _payload(2), 20)]
        # outbound stays what we asked Telnyx for: a PCMU frame is accepted, PCMA is not
        assert json.loads(codec.encode_frame(AudioFrame(PCMU, b"\xff" * 160)))["event"] == "media"
        with pytest.raises(MediaStreamStateError):
            codec.encode_frame(AudioFrame(PCMA, b"\xd5" * 160))
        assert isinstance(codec.decode(messages[-1])[0], StreamStopped)

    def test_legacy_mulaw_spelling_and_error_frame(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec()
        events = _decode_all(codec, recorded("telnyx_legacy_mulaw_error.jsonl"))
        start = events[1]
        assert isinstance(start, StreamStarted)
        assert start.media_format == PCMU
        assert start.from_number is None
        assert decode_client_state(start.client_state or "") == "have a nice day =]"
        assert events[3] == CarrierErrorReported(
            Carrier.TELNYX, 100003, "malformed_frame", "Received frame was not formed correctly"
        )
        assert isinstance(events[4], StreamStopped)

    def test_l16_is_swapped_from_network_order(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec()
        events = _decode_all(codec, recorded("telnyx_l16_16k.jsonl"))
        start = events[1]
        assert isinstance(start, StreamStarted)
        assert start.media_format == L16_16K
        frame = events[2]
        assert isinstance(frame, AudioFrame)
        wire = _payload(1, 640)
        assert frame.payload[0::2] == wire[1::2]
        assert frame.payload[1::2] == wire[0::2]
        assert frame.duration_ms == 20

    def test_l16_little_endian_option_keeps_bytes(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec(l16_big_endian=False)
        events = _decode_all(codec, recorded("telnyx_l16_16k.jsonl"))
        frame = events[2]
        assert isinstance(frame, AudioFrame)
        assert frame.payload == _payload(1, 640)

    def test_g722_at_its_rtp_clock_rate_is_16k_audio(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec()
        events = _decode_all(codec, recorded("telnyx_g722.jsonl"))
        frame = events[2]
        assert isinstance(frame, AudioFrame)
        assert frame.format == G722_16K
        assert frame.duration_ms == 20

    def test_opus_is_refused(self, recorded: Recorded) -> None:
        codec = TelnyxStreamCodec()
        messages = recorded("telnyx_opus_start.jsonl")
        codec.decode(messages[0])
        with pytest.raises(UnsupportedMediaFormatError) as info:
            codec.decode(messages[1])
        assert info.value.encoding == "OPUS"
        assert codec.state is StreamState.AWAITING_START

    @pytest.mark.parametrize(
        ("encoding", "rate"),
        [
            ("AMR-WB", 16000),
            ("PCMU", 16000),
            ("PCMA", 48000),
            ("L16", 11025),
            ("G722", 24000),
            ("G729", 8000),
        ],
    )
    def test_unsupported_formats(self, encoding: str, rate: int) -> None:
        with pytest.raises(UnsupportedMediaFormatError):
            TelnyxStreamCodec().decode(json.dumps(_start(encoding, rate)))

    def test_stereo_is_refused(self) -> None:
        message = _start("PCMU", 8000)
        message["start"]["media_format"]["channels"] = 2
        with pytest.raises(UnsupportedMediaFormatError):
            TelnyxStreamCodec().decode(json.dumps(message))

    def test_odd_l16_payload_is_a_protocol_error(self) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("L16", 16000)))
        with pytest.raises(MediaStreamProtocolError):
            codec.decode(json.dumps(_media(2, 1, 0, b"\x00\x01\x02")))


class TestConnected:
    def test_auth_token_in_connected_frame_is_kept_out_of_repr(self) -> None:
        message = {
            "event": "connected",
            "version": "1.0.0",
            "connected": {"x-telnyx-streaming-auth-token": "s3cret"},
        }
        (event,) = TelnyxStreamCodec().decode(json.dumps(message))
        assert isinstance(event, StreamConnected)
        assert event.auth_token == "s3cret"
        assert "s3cret" not in repr(event)

    def test_refused_l16_frame_does_not_advance_ordering(self) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("L16", 16000)))
        with pytest.raises(MediaStreamProtocolError):
            codec.decode(json.dumps(_media(2, 1, 0, b"\x00\x01\x02")))
        assert codec.decode(json.dumps(_media(3, 1, 0, b"\x00\x01"))) == [
            AudioFrame(L16_16K, b"\x01\x00", 0)
        ]


class TestOrdering:
    """TX-ASYNC: "Media frame order is not guaranteed" — order by chunk."""

    def test_out_of_order_duplicate_and_gap(self) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("PCMU", 8000)))
        delivered: list[int] = []
        for seq, chunk in enumerate([1, 3, 2, 3, 6], start=2):
            events = codec.decode(json.dumps(_media(seq, chunk, chunk * 20, bytes([chunk]) * 160)))
            delivered.extend(e.timestamp for e in events if isinstance(e, AudioFrame))
        assert delivered == [20, 60, 120]
        assert (codec.stats.out_of_order, codec.stats.duplicates, codec.stats.frames_missing) == (
            1,
            1,
            3,
        )

    def test_sequence_number_orders_when_chunk_is_absent(self) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("PCMU", 8000)))
        first = _media(5, 1, 0, b"\xff" * 160)
        del first["media"]["chunk"]
        second = _media(4, 1, 20, b"\xff" * 160)
        del second["media"]["chunk"]
        assert len(codec.decode(json.dumps(first))) == 1
        assert codec.decode(json.dumps(second)) == []
        assert codec.stats.out_of_order == 1

    def test_error_frame_before_start_is_reported(self) -> None:
        message = {
            "event": "error",
            "payload": {
                "code": 100005,
                "title": "rate_limit_reached",
                "detail": "Too many requests",
            },
        }
        assert TelnyxStreamCodec().decode(json.dumps(message)) == [
            CarrierErrorReported(Carrier.TELNYX, 100005, "rate_limit_reached", "Too many requests")
        ]


class TestOutbound:
    def test_nothing_is_encoded_before_start(self) -> None:
        codec = TelnyxStreamCodec()
        encoders: list[Callable[[], str]] = [
            lambda: codec.encode_media(b"\xff"),
            lambda: codec.encode_mark("m"),
            codec.encode_clear,
        ]
        for encode in encoders:
            with pytest.raises(MediaStreamStateError):
                encode()

    def test_message_shapes(self) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("PCMU", 8000)))
        payload = bytes(range(160))
        assert json.loads(codec.encode_media(payload)) == {
            "event": "media",
            "stream_id": SID,
            "media": {"payload": base64.b64encode(payload).decode()},
        }
        assert json.loads(codec.encode_mark("m1")) == {
            "event": "mark",
            "stream_id": SID,
            "mark": {"name": "m1"},
        }
        assert json.loads(codec.encode_clear()) == {"event": "clear", "stream_id": SID}

    def test_frames_must_be_in_the_negotiated_outbound_format(self) -> None:
        codec = TelnyxStreamCodec(outbound_format=PCMA)
        codec.decode(json.dumps(_start("PCMU", 8000)))
        assert json.loads(codec.encode_frame(AudioFrame(PCMA, b"\xd5" * 160)))["event"] == "media"
        with pytest.raises(MediaStreamStateError):
            codec.encode_frame(AudioFrame(PCMU, b"\xff" * 160))

    @pytest.mark.parametrize(
        "fmt", [AudioFormat(Encoding.PCMU, 16000), AudioFormat(Encoding.G722, 8000)]
    )
    def test_impossible_outbound_format_is_a_config_error(self, fmt: AudioFormat) -> None:
        with pytest.raises(MediaStreamConfigError):
            TelnyxStreamCodec(outbound_format=fmt)

    def test_odd_l16_outbound_is_refused(self) -> None:
        codec = TelnyxStreamCodec(outbound_format=L16_16K)
        codec.decode(json.dumps(_start("L16", 16000)))
        with pytest.raises(MediaStreamStateError):
            codec.encode_media(b"\x01\x02\x03")

    @given(samples=st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
    def test_l16_round_trip(self, samples: list[int]) -> None:
        """Little-endian L16 out → big-endian on the wire → the same little-endian L16 back."""
        payload = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
        codec = TelnyxStreamCodec(outbound_format=L16_16K)
        codec.decode(json.dumps(_start("L16", 16000)))
        wire_b64 = json.loads(codec.encode_media(payload))["media"]["payload"]
        wire = base64.b64decode(wire_b64)
        assert wire == b"".join(s.to_bytes(2, "big", signed=True) for s in samples)
        inbound = _media(2, 1, 0, b"")
        inbound["media"]["payload"] = wire_b64
        assert codec.decode(json.dumps(inbound)) == [AudioFrame(L16_16K, payload, 0)]

    @given(name=st.text(min_size=1, max_size=200))
    def test_mark_round_trip(self, name: str) -> None:
        codec = TelnyxStreamCodec()
        codec.decode(json.dumps(_start("PCMU", 8000)))
        echo = json.loads(codec.encode_mark(name))
        echo["sequence_number"] = "9"
        assert codec.decode(json.dumps(echo)) == [MarkPlayed(name)]


class TestClientState:
    @given(st.text(st.characters(exclude_categories=["Cs"]), max_size=300))
    def test_round_trip(self, value: str) -> None:
        assert decode_client_state(encode_client_state(value)) == value

    @pytest.mark.parametrize("bad", ["not base64!", "//79", "YQ"])
    def test_garbage_is_a_protocol_error(self, bad: str) -> None:
        with pytest.raises(MediaStreamProtocolError):
            decode_client_state(bad)


def _start(encoding: str, rate: int) -> dict[str, Any]:
    return {
        "event": "start",
        "sequence_number": "1",
        "start": {
            "call_control_id": CC,
            "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1},
        },
        "stream_id": SID,
    }


def _media(seq: int, chunk: int, timestamp: int, payload: bytes) -> dict[str, Any]:
    return {
        "event": "media",
        "sequence_number": str(seq),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp),
            "payload": base64.b64encode(payload).decode(),
        },
        "stream_id": SID,
    }
