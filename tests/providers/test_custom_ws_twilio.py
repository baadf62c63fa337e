"""The custom agent adapter's ``twilio`` dialect: we play Twilio to an agent built for Twilio.

The agent in ``twilio_media_streams_agent`` is written only from Twilio's documented Media
Streams protocol ("WebSocket Messages", /work/shared/protocols/carriers.md §1.3-1.5),
the way a Twilio developer writes one: it knows nothing of Telepath. The ``TWILIO_DOC_*``
messages are Twilio's documented examples; our frames must have their exact shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from media import L16_16K, PCMU, AudioFrame, CallContext
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    ClearRequested,
    HangupRequested,
    MarkRequested,
    ProviderProtocolError,
)
from providers.custom_ws import CustomAgentSession, MalformedAgentMessage, TwilioDialect
from tests.providers.fakes.custom_agent import AgentPeer, FakeCustomAgent

EVENT_TIMEOUT = 3.0
STREAM_SID = "MZ" + "18ad3ab5a668481ce02b83e7395059f0"

# Twilio's documented messages (TW-WSM), as printed in its docs.
TWILIO_DOC_CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
TWILIO_DOC_START: dict[str, Any] = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
    },
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}
TWILIO_DOC_MEDIA = {
    "event": "media",
    "sequenceNumber": "4",
    "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "no+JhoaJjpzS..."},
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}
TWILIO_DOC_DTMF = {
    "event": "dtmf",
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "sequenceNumber": "5",
    "dtmf": {"track": "inbound_track", "digit": "1"},
}
TWILIO_DOC_MARK = {
    "event": "mark",
    "sequenceNumber": "4",
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "mark": {"name": "my label"},
}
TWILIO_DOC_STOP = {
    "event": "stop",
    "sequenceNumber": "5",
    "stop": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    },
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}

CONTEXT = CallContext(
    call_id="call-7f3a",
    trunk_id="trunk-1",
    sip_call_id="a84b4c76e66710@pc33.carrier.example",
    from_number="+14155550100",
    to_number="+14155550199",
    headers={"X-Customer-Tier": "gold"},
    custom_parameters={"FirstName": "Jane"},
)


def make_session(url: str, **options: object) -> CustomAgentSession:
    return CustomAgentSession(
        AgentConfig(
            provider="custom",
            endpoint=url,
            options={"dialect": "twilio", **options},
            connect_timeout=2.0,
        ),
        token_hex=lambda n: "18ad3ab5a668481ce02b83e7395059f0"[: 2 * n],
    )


async def next_event(events: AsyncIterator[AgentEvent]) -> AgentEvent:
    async with asyncio.timeout(EVENT_TIMEOUT):
        return await anext(events)


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys in order and leaf types, no values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


# --- an agent written for Twilio, from Twilio's docs only ---


class TwilioAgentLog:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.marks_back: list[str] = []
        self.done = asyncio.Event()


def twilio_media_streams_agent(log: TwilioAgentLog) -> Any:
    """A bidirectional Media Streams echo bot, as in Twilio's tutorials."""

    async def handler(ws: ServerConnection) -> None:
        stream_sid = None
        try:
            async for raw in ws:
                message = json.loads(raw)
                log.events.append(message)
                event = message["event"]
                if event == "connected":
                    continue
                if event == "start":
                    stream_sid = message["start"]["streamSid"]
                elif event == "media":
                    # Echo the caller back, then ask to hear when it has played.
                    await ws.send(
                        json.dumps(
                            {
                                "event": "media",
                                "streamSid": stream_sid,
                                "media": {"payload": message["media"]["payload"]},
                            }
                        )
                    )
                    chunk = message["media"]["chunk"]
                    await ws.send(
                        json.dumps(
                            {
                                "event": "mark",
                                "streamSid": stream_sid,
                                "mark": {"name": f"echo-{chunk}"},
                            }
                        )
                    )
                elif event == "mark":
                    log.marks_back.append(message["mark"]["name"])
                elif event == "stop":
                    break
        finally:
            log.done.set()

    return handler


async def test_an_agent_written_for_twilio_runs_unchanged() -> None:
    log = TwilioAgentLog()
    server = await serve(twilio_media_streams_agent(log), "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    try:
        session = make_session(f"ws://127.0.0.1:{port}/media")
        formats = await session.open(CONTEXT, PCMU)
        assert (formats.input, formats.output) == (PCMU, PCMU)
        events = session.events()
        sent = [bytes(range(n, n + 160)) for n in (0, 50, 90)]
        for n, payload in enumerate(sent):
            session.send_audio(AudioFrame(PCMU, payload, timestamp=n * 20))
        echoed: list[bytes] = []
        marks: list[str] = []
        while len(marks) < len(sent):
            event = await next_event(events)
            if isinstance(event, AgentAudio):
                assert event.item_id == "0"
                echoed.append(event.frame.payload)
            elif isinstance(event, MarkRequested):
                marks.append(event.name)
        assert echoed == sent
        assert marks == ["echo-1", "echo-2", "echo-3"]
        for name in marks[:2]:
            session.mark_played(name)
        await session.close("caller hung up")
        async with asyncio.timeout(EVENT_TIMEOUT):
            await log.done.wait()
    finally:
        server.close()
        await server.wait_closed()

    kinds = [m["event"] for m in log.events]
    assert kinds == ["connected", "start", "media", "media", "media", "mark", "mark", "stop"]
    assert log.marks_back == ["echo-1", "echo-2"]
    # Sequence numbers are strings counting every message after connected, from "1".
    assert [m.get("sequenceNumber") for m in log.events] == [None] + [str(n) for n in range(1, 8)]
    assert all(m["streamSid"] == STREAM_SID for m in log.events[1:])
    assert [m["media"]["chunk"] for m in log.events[2:5]] == ["1", "2", "3"]
    assert [m["media"]["timestamp"] for m in log.events[2:5]] == ["0", "20", "40"]


async def test_every_frame_has_the_shape_of_twilios_documented_messages() -> None:
    async def script(peer: AgentPeer) -> None:
        assert await peer.recv_json() == TWILIO_DOC_CONNECTED
        start = await peer.expect("start", key="event")
        assert shape(start) == shape(TWILIO_DOC_START) | {
            "start": shape(TWILIO_DOC_START["start"])
            | {"customParameters": shape(start["start"]["customParameters"])}
        }
        assert start["start"]["mediaFormat"] == TWILIO_DOC_START["start"]["mediaFormat"]
        assert start["start"]["callSid"].startswith("CA") and len(start["start"]["callSid"]) == 34
        params = start["start"]["customParameters"]
        assert params["FirstName"] == "Jane"
        assert params["X-Customer-Tier"] == "gold"
        assert params["X-SIP-Call-ID"] == "a84b4c76e66710@pc33.carrier.example"
        assert (params["from"], params["to"], params["call_id"]) == (
            "+14155550100",
            "+14155550199",
            "call-7f3a",
        )
        assert all(isinstance(v, str) for v in params.values())
        media = await peer.expect("media", key="event")
        assert shape(media) == shape(TWILIO_DOC_MEDIA)
        assert base64.b64decode(media["media"]["payload"]) == b"\xff" * 160
        dtmf = await peer.expect("dtmf", key="event")
        assert shape(dtmf) == shape(TWILIO_DOC_DTMF)
        assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
        await peer.send_json({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "m"}})
        mark = await peer.expect("mark", key="event")
        assert shape(mark) == shape(TWILIO_DOC_MARK)
        stop = await peer.expect("stop", key="event")
        assert shape(stop) == shape(TWILIO_DOC_STOP)
        assert stop["stop"]["callSid"] == start["start"]["callSid"]

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        session.send_audio(AudioFrame(PCMU, b"\xff" * 160, timestamp=0))
        session.send_dtmf("7")
        event = await next_event(session.events())
        if agent.failures:
            raise agent.failures[0]
        assert event == MarkRequested("m")
        session.mark_played("m")
        await session.close()
        await agent.finished()


async def test_twilio_dialect_speaks_only_mulaw_8k() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("connected", key="event")
        start = await peer.expect("start", key="event")
        assert start["start"]["mediaFormat"]["encoding"] == "audio/x-mulaw"
        await peer.expect("stop", key="event")

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        formats = await session.open(CONTEXT, L16_16K)  # the leg is wideband: we transcode
        assert (formats.input, formats.output) == (PCMU, PCMU)
        await session.close()
        await agent.finished()


async def test_clear_returns_every_pending_mark_like_twilio() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("connected", key="event")
        await peer.expect("start", key="event")
        for name in ("a", "b"):
            await peer.send_json(
                {"event": "media", "streamSid": STREAM_SID, "media": {"payload": "//8="}}
            )
            await peer.send_json({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}})
        await peer.send_json({"event": "clear", "streamSid": STREAM_SID})
        # TW-WSM: clear "causes any mark messages to be sent back".
        back = [(await peer.expect("mark", key="event"))["mark"]["name"] for _ in range(2)]
        assert back == ["a", "b"]
        await peer.send_json(
            {"event": "media", "streamSid": STREAM_SID, "media": {"payload": "AA=="}}
        )
        await peer.expect("stop", key="event")

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        got = [await next_event(events) for _ in range(6)]
        assert [type(e).__name__ for e in got] == [
            "AgentAudio",
            "MarkRequested",
            "AgentAudio",
            "MarkRequested",
            "ClearRequested",
            "AgentAudio",
        ]
        assert isinstance(got[4], ClearRequested)
        assert isinstance(got[5], AgentAudio) and got[5].item_id == "1"
        session.mark_played("a")  # already returned by the clear: not sent twice
        session.played("0", 40)  # Twilio has no "cleared" notice
        await session.close()
        await agent.finished()


async def test_a_foreign_stream_sid_or_unknown_event_is_refused_but_survived() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("connected", key="event")
        await peer.expect("start", key="event")
        await peer.send_json(
            {"event": "media", "streamSid": "MZ" + "0" * 32, "media": {"payload": "AA=="}}
        )
        await peer.send_json({"event": "playAudio", "streamSid": STREAM_SID})
        await peer.send_json({"event": "mark", "streamSid": STREAM_SID})
        await peer.send_json(
            {"event": "media", "streamSid": STREAM_SID, "media": {"payload": "AA=="}}
        )
        await peer.expect("stop", key="event")

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        for _ in range(3):
            event = await next_event(events)
            assert isinstance(event, AgentError) and not event.fatal
            assert isinstance(event.error, ProviderProtocolError)
        audio = await next_event(events)
        assert isinstance(audio, AgentAudio) and audio.frame.payload == b"\x00"
        await session.close()
        await agent.finished()


async def test_a_twilio_agent_closing_the_socket_hangs_up() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("connected", key="event")
        await peer.expect("start", key="event")
        await peer.close(1000)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        assert await next_event(events) == HangupRequested("agent closed the stream")
        assert await next_event(events) == AgentClosed(None)
        await session.close()
        await agent.finished()


def test_dialect_keeps_a_twilio_call_sid_and_digests_others() -> None:
    twilio_sid = "CA" + "a" * 32
    ours = TwilioDialect(stream_sid=STREAM_SID, call_sid=twilio_sid, max_payload_bytes=1024)
    assert json.loads(ours.stop(""))["stop"]["callSid"] == twilio_sid
    from providers.custom_ws.twilio_dialect import twilio_call_sid

    assert twilio_call_sid(twilio_sid) == twilio_sid
    derived = twilio_call_sid("call-7f3a")
    assert derived == twilio_call_sid("call-7f3a") != twilio_call_sid("call-7f3b")
    assert derived.startswith("CA") and len(derived) == 34


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00",
        "{}",
        '{"event": "media"}',
        '{"event": "media", "media": {"payload": 5}}',
        '{"event": "mark", "mark": {"name": ""}}',
        '{"event": "start"}',
    ],
)
def test_dialect_refuses_what_twilio_would(frame: str | bytes) -> None:
    dialect = TwilioDialect(stream_sid=STREAM_SID, call_sid="CA" + "0" * 32, max_payload_bytes=64)
    with pytest.raises(MalformedAgentMessage):
        dialect.parse(frame)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    event=st.sampled_from(["media", "mark", "clear", "start", "stop", "dtmf", "x"]),
    fields=st.dictionaries(
        st.sampled_from(["media", "mark", "streamSid", "sequenceNumber"]), json_values, max_size=3
    ),
)
def test_dialect_turns_any_json_object_into_a_message_or_a_protocol_error(
    event: str, fields: dict[str, Any]
) -> None:
    dialect = TwilioDialect(stream_sid=STREAM_SID, call_sid="CA" + "0" * 32, max_payload_bytes=64)
    try:
        message = dialect.parse(json.dumps({"event": event, **fields}))
    except MalformedAgentMessage as exc:
        assert exc.category == "protocol" and exc.message
        return
    assert event in ("media", "mark", "clear")
    assert type(message).__name__.lower().startswith(event)
