"""Hostile WebSocket input: every bad message is a MediaStreamProtocolError, nothing else."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.media_streams.errors import MediaStreamProtocolError
from ingress.media_streams.events import MediaStreamCodec as Codec
from ingress.media_streams.events import StreamState
from ingress.media_streams.telnyx import TelnyxStreamCodec
from ingress.media_streams.twilio import TwilioStreamCodec

MZ = "MZ00000000000000000000000000000001"
SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"

TWILIO_START: dict[str, Any] = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC00000000000000000000000000000003",
        "streamSid": MZ,
        "callSid": "CA00000000000000000000000000000002",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
    "streamSid": MZ,
}
TELNYX_START: dict[str, Any] = {
    "event": "start",
    "sequence_number": "1",
    "start": {
        "call_control_id": "v3:00000000000000000000000000000000",
        "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
    },
    "stream_id": SID,
}


def _twilio_media(**media: Any) -> str:
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "//8="}
    body.update(media)
    return json.dumps({"event": "media", "sequenceNumber": "2", "media": body, "streamSid": MZ})


def _telnyx_media(**media: Any) -> str:
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "//8="}
    body.update(media)
    return json.dumps({"event": "media", "sequence_number": "2", "media": body, "stream_id": SID})


def _with_start(factory: Callable[[], Codec], start: dict[str, Any]) -> Callable[[], Codec]:
    def make() -> Codec:
        codec = factory()
        codec.decode(json.dumps(start))
        return codec

    return make


twilio_streaming = _with_start(TwilioStreamCodec, TWILIO_START)
telnyx_streaming = _with_start(TelnyxStreamCodec, TELNYX_START)


def _start_without(start: dict[str, Any], *path: str) -> str:
    message = json.loads(json.dumps(start))
    target = message
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return json.dumps(message)


def _start_with(start: dict[str, Any], value: Any, *path: str) -> str:
    message = json.loads(json.dumps(start))
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(message)


HOSTILE: list[tuple[str, Callable[[], Codec], str | bytes]] = [
    # not JSON / not an object
    ("twilio empty", TwilioStreamCodec, ""),
    ("twilio not json", TwilioStreamCodec, "{event: media}"),
    ("twilio json array", TwilioStreamCodec, '["media"]'),
    ("twilio json string", TwilioStreamCodec, '"start"'),
    ("twilio bad utf-8 bytes", TwilioStreamCodec, b'{"event": "\xff"}'),
    ("twilio nesting bomb", TwilioStreamCodec, "[" * 50_000 + "]" * 50_000),
    ("twilio huge message", TwilioStreamCodec, json.dumps({"event": "media", "x": "a" * 70_000})),
    ("telnyx nesting bomb", TelnyxStreamCodec, '{"a":' * 20_000 + "1" + "}" * 20_000),
    ("telnyx not json", TelnyxStreamCodec, "\x00\x01"),
    # event field
    ("twilio no event", TwilioStreamCodec, '{"streamSid": "MZ1"}'),
    ("twilio event is a number", TwilioStreamCodec, '{"event": 5}'),
    ("telnyx event is null", TelnyxStreamCodec, '{"event": null}'),
    (
        "twilio sequenceNumber is a list",
        TwilioStreamCodec,
        '{"event": "connected", "sequenceNumber": [1]}',
    ),
    (
        "telnyx sequence_number is text",
        TelnyxStreamCodec,
        '{"event": "connected", "sequence_number": "one"}',
    ),
    # start
    ("twilio start without start", TwilioStreamCodec, '{"event": "start"}'),
    ("twilio start is a list", TwilioStreamCodec, '{"event": "start", "start": []}'),
    (
        "twilio start no callSid",
        TwilioStreamCodec,
        _start_without(TWILIO_START, "start", "callSid"),
    ),
    (
        "twilio start no streamSid",
        TwilioStreamCodec,
        _start_without(TWILIO_START, "start", "streamSid"),
    ),
    (
        "twilio start no mediaFormat",
        TwilioStreamCodec,
        _start_without(TWILIO_START, "start", "mediaFormat"),
    ),
    (
        "twilio start two streamSids",
        TwilioStreamCodec,
        _start_with(TWILIO_START, "MZ2", "streamSid"),
    ),
    (
        "twilio start callSid number",
        TwilioStreamCodec,
        _start_with(TWILIO_START, 7, "start", "callSid"),
    ),
    (
        "twilio start params list",
        TwilioStreamCodec,
        _start_with(TWILIO_START, ["a"], "start", "customParameters"),
    ),
    (
        "twilio start param object",
        TwilioStreamCodec,
        _start_with(TWILIO_START, {"a": {}}, "start", "customParameters"),
    ),
    (
        "twilio start too many params",
        TwilioStreamCodec,
        _start_with(TWILIO_START, {str(i): "v" for i in range(65)}, "start", "customParameters"),
    ),
    (
        "twilio start tracks string",
        TwilioStreamCodec,
        _start_with(TWILIO_START, "inbound", "start", "tracks"),
    ),
    (
        "twilio start huge callSid",
        TwilioStreamCodec,
        _start_with(TWILIO_START, "C" * 600, "start", "callSid"),
    ),
    (
        "telnyx start no call_control_id",
        TelnyxStreamCodec,
        _start_without(TELNYX_START, "start", "call_control_id"),
    ),
    ("telnyx start no stream_id", TelnyxStreamCodec, _start_without(TELNYX_START, "stream_id")),
    (
        "telnyx start no media_format",
        TelnyxStreamCodec,
        _start_without(TELNYX_START, "start", "media_format"),
    ),
    (
        "telnyx start no encoding",
        TelnyxStreamCodec,
        _start_without(TELNYX_START, "start", "media_format", "encoding"),
    ),
    (
        "telnyx start rate is text",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, "fast", "start", "media_format", "sample_rate"),
    ),
    (
        "telnyx start rate is bool",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, True, "start", "media_format", "sample_rate"),
    ),
    (
        "telnyx start rate negative",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, -8000, "start", "media_format", "sample_rate"),
    ),
    (
        "telnyx start from is a number",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, 15550100001, "start", "from"),
    ),
    (
        "telnyx params entry not object",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, ["x"], "start", "custom_parameters"),
    ),
    (
        "telnyx params entry no name",
        TelnyxStreamCodec,
        _start_with(TELNYX_START, [{"value": "x"}], "start", "custom_parameters"),
    ),
    # media
    ("twilio media before start", TwilioStreamCodec, _twilio_media()),
    ("telnyx media before start", TelnyxStreamCodec, _telnyx_media()),
    ("twilio media no media", twilio_streaming, json.dumps({"event": "media", "streamSid": MZ})),
    ("twilio media no streamSid", twilio_streaming, json.dumps({"event": "media", "media": {}})),
    ("twilio media wrong stream", twilio_streaming, _twilio_media().replace(MZ, "MZ9")),
    ("twilio media no payload", twilio_streaming, _twilio_media(payload=None)),
    ("twilio media payload number", twilio_streaming, _twilio_media(payload=12)),
    ("twilio media base64 garbage", twilio_streaming, _twilio_media(payload="no+JhoaJ*&^%")),
    ("twilio media base64 unpadded", twilio_streaming, _twilio_media(payload="//8")),
    ("twilio media base64 urlsafe", twilio_streaming, _twilio_media(payload="__8=")),
    (
        "twilio media huge payload",
        twilio_streaming,
        _twilio_media(payload=base64.b64encode(b"\xff" * 16_001).decode()),
    ),
    ("twilio media chunk text", twilio_streaming, _twilio_media(chunk="one")),
    ("twilio media chunk negative", twilio_streaming, _twilio_media(chunk="-1")),
    ("twilio media chunk float", twilio_streaming, _twilio_media(chunk=1.5)),
    ("twilio media chunk 5000 digits", twilio_streaming, _twilio_media(chunk="9" * 5000)),
    ("twilio media timestamp missing", twilio_streaming, _twilio_media(timestamp=None)),
    ("twilio media timestamp list", twilio_streaming, _twilio_media(timestamp=[1])),
    ("twilio media track number", twilio_streaming, _twilio_media(track=1)),
    ("telnyx media no payload", telnyx_streaming, _telnyx_media(payload=None)),
    ("telnyx media garbage", telnyx_streaming, _telnyx_media(payload="%%%%")),
    ("telnyx media wrong stream", telnyx_streaming, _telnyx_media().replace(SID, "other")),
    (
        "telnyx media no chunk or seq",
        telnyx_streaming,
        json.dumps({"event": "media", "media": {"timestamp": "0", "payload": "//8="}}),
    ),
    (
        "telnyx media huge payload",
        telnyx_streaming,
        _telnyx_media(payload=base64.b64encode(bytes(96_001)).decode()),
    ),
    # dtmf / mark
    ("twilio dtmf no dtmf", twilio_streaming, json.dumps({"event": "dtmf", "streamSid": MZ})),
    (
        "twilio dtmf bad digit",
        twilio_streaming,
        json.dumps({"event": "dtmf", "streamSid": MZ, "dtmf": {"digit": "X"}}),
    ),
    (
        "twilio dtmf two digits",
        twilio_streaming,
        json.dumps({"event": "dtmf", "streamSid": MZ, "dtmf": {"digit": "12"}}),
    ),
    (
        "twilio dtmf digit number",
        twilio_streaming,
        json.dumps({"event": "dtmf", "streamSid": MZ, "dtmf": {"digit": 1}}),
    ),
    (
        "telnyx dtmf empty digit",
        telnyx_streaming,
        json.dumps({"event": "dtmf", "stream_id": SID, "dtmf": {"digit": ""}}),
    ),
    ("twilio mark no mark", twilio_streaming, json.dumps({"event": "mark", "streamSid": MZ})),
    (
        "twilio mark name missing",
        twilio_streaming,
        json.dumps({"event": "mark", "streamSid": MZ, "mark": {}}),
    ),
    (
        "twilio mark is a string",
        twilio_streaming,
        json.dumps({"event": "mark", "streamSid": MZ, "mark": "m"}),
    ),
    (
        "telnyx mark name null",
        telnyx_streaming,
        json.dumps({"event": "mark", "stream_id": SID, "mark": {"name": None}}),
    ),
    # stop
    ("twilio stop before start", TwilioStreamCodec, json.dumps({"event": "stop", "streamSid": MZ})),
    (
        "twilio stop other call",
        twilio_streaming,
        json.dumps({"event": "stop", "streamSid": MZ, "stop": {"callSid": "CA9"}}),
    ),
    (
        "telnyx stop before start",
        TelnyxStreamCodec,
        json.dumps({"event": "stop", "stream_id": SID}),
    ),
]


@pytest.mark.parametrize(
    ("factory", "message"), [(f, m) for _, f, m in HOSTILE], ids=[n for n, _, _ in HOSTILE]
)
def test_hostile_message_is_a_protocol_error(
    factory: Callable[[], Codec], message: str | bytes
) -> None:
    codec = factory()
    state = codec.state
    with pytest.raises(MediaStreamProtocolError):
        codec.decode(message)
    assert codec.state is state  # a refused message leaves the stream where it was


@pytest.mark.parametrize("factory", [TwilioStreamCodec, TelnyxStreamCodec])
def test_non_text_input_is_a_protocol_error(factory: Callable[[], Codec]) -> None:
    with pytest.raises(MediaStreamProtocolError):
        factory().decode(12)  # type: ignore[arg-type]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
EVENTS = st.sampled_from(
    ["connected", "start", "media", "dtmf", "mark", "stop", "error", "clear", ""]
)
TWILIO_KEYS = st.sampled_from(
    ["event", "streamSid", "sequenceNumber", "media", "start", "dtmf", "mark", "stop"]
)
TELNYX_KEYS = st.sampled_from(
    ["event", "stream_id", "sequence_number", "media", "start", "dtmf", "mark", "stop", "payload"]
)
INNER = st.dictionaries(
    st.sampled_from(
        [
            "payload",
            "chunk",
            "timestamp",
            "track",
            "digit",
            "name",
            "callSid",
            "streamSid",
            "call_control_id",
            "mediaFormat",
            "media_format",
            "customParameters",
            "custom_parameters",
            "tracks",
        ]
    ),
    JSON | st.just("//8=") | st.just("1") | st.just(MZ) | st.just(SID),
    max_size=6,
)


def _messages(keys: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    shaped = st.fixed_dictionaries({"event": EVENTS}, optional={}).flatmap(
        lambda base: st.dictionaries(keys, INNER | JSON, max_size=5).map(
            lambda extra: {**extra, **base}
        )
    )
    return st.one_of(shaped.map(json.dumps), JSON.map(json.dumps), st.text(max_size=60))


def _feed(codec: Codec, messages: list[str]) -> None:
    for message in messages:
        # MediaStreamProtocolError is the only error a decoder may raise (the WS loop
        # closes on it); anything else escapes and fails the test.
        with contextlib.suppress(MediaStreamProtocolError):
            codec.decode(message)
        assert isinstance(codec.state, StreamState)


@settings(max_examples=150, deadline=None)
@given(st.lists(_messages(TWILIO_KEYS), max_size=6))
def test_twilio_fuzz_raises_only_protocol_errors(messages: list[str]) -> None:
    codec = TwilioStreamCodec()
    codec.decode(json.dumps(TWILIO_START))
    _feed(codec, messages)


@settings(max_examples=150, deadline=None)
@given(st.lists(_messages(TELNYX_KEYS), max_size=6))
def test_telnyx_fuzz_raises_only_protocol_errors(messages: list[str]) -> None:
    codec = TelnyxStreamCodec()
    _feed(codec, messages)
    codec = TelnyxStreamCodec()
    codec.decode(json.dumps(TELNYX_START))
    _feed(codec, messages)
