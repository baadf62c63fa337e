"""The custom WebSocket agent adapter, telepath dialect, over real loopback sockets.

The agent is ``tests/providers/fakes/custom_agent.py``: a real ``websockets`` server whose
script asserts every frame the gateway sends. The dialect's parser is also checked on its
own, with Hypothesis, for hostile input.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosedError

from media import G722_16K, L16_16K, L16_24K, PCMA, PCMU, AudioFrame, CallContext
from media.chunking import silence
from media.g711 import encode_ulaw
from media.tones import speech_like
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    ClearRequested,
    DtmfRequested,
    HangupRequested,
    MarkRequested,
    ProviderAuthError,
    ProviderConfigError,
    ProviderConnectError,
    ProviderProtocolError,
    TransferRequested,
)
from providers.custom_ws import CustomAgentSession, MalformedAgentMessage, TelepathDialect
from tests.providers.fakes.custom_agent import AgentPeer, FakeCustomAgent

ROOT = Path(__file__).resolve().parents[2]
EVENT_TIMEOUT = 3.0

CONTEXT = CallContext(
    call_id="call-7f3a",
    trunk_id="trunk-1",
    sip_call_id="a84b4c76e66710@pc33.carrier.example",
    from_number="+14155550100",
    to_number="+14155550199",
    direction="inbound",
    carrier="sip",
    headers={"X-Customer-Tier": "gold", "X-Campaign": "spring"},
    custom_parameters={"lang": "de"},
)


def make_session(url: str, **options: object) -> CustomAgentSession:
    opts: dict[str, object] = {"accept_timeout": 0.05}
    opts.update(options)
    return CustomAgentSession(
        AgentConfig(
            provider="custom",
            endpoint=url,
            headers={"Authorization": "Bearer agent-secret"},
            options=opts,
            connect_timeout=2.0,
        )
    )


async def next_event(events: AsyncIterator[AgentEvent]) -> AgentEvent:
    async with asyncio.timeout(EVENT_TIMEOUT):
        return await anext(events)


async def idle(peer: AgentPeer) -> None:
    """Agent script end: wait until the gateway says stop."""
    await peer.expect("stop")


def pcmu(payload: bytes, ts: int = 0) -> AudioFrame:
    return AudioFrame(PCMU, payload, timestamp=ts)


# --- opening and negotiation ---


async def test_start_carries_call_metadata_headers_and_offered_format() -> None:
    seen: dict[str, Any] = {}

    async def script(peer: AgentPeer) -> None:
        seen.update(await peer.expect("start"))
        assert peer.headers["Authorization"] == "Bearer agent-secret"
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        formats = await session.open(CONTEXT, PCMU)
        assert (formats.input, formats.output) == (PCMU, PCMU)
        await session.close("caller hung up")
        await agent.finished()

    assert seen == {
        "type": "start",
        "call_id": "call-7f3a",
        "sip_call_id": "a84b4c76e66710@pc33.carrier.example",
        "from": "+14155550100",
        "to": "+14155550199",
        "direction": "inbound",
        "carrier": "sip",
        "trunk_id": "trunk-1",
        "headers": {
            "X-Customer-Tier": "gold",
            "X-Campaign": "spring",
            "X-SIP-Call-ID": "a84b4c76e66710@pc33.carrier.example",
        },
        "custom_parameters": {"lang": "de"},
        "binary_audio": False,
        "vad_events": False,
        "media_format": {"encoding": "audio/pcmu", "sample_rate": 8000, "channels": 1},
    }


async def test_accept_switches_both_directions_to_l16_16k() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json(
            {
                "type": "accept",
                "media_format": {"encoding": "audio/l16", "sample_rate": 16000, "channels": 1},
            }
        )
        media = await peer.expect("media")
        assert base64.b64decode(media["payload"]) == b"\x01\x00" * 320
        assert (media["sequence"], media["timestamp"]) == (1, 40)
        await peer.send_media(b"\x02\x00" * 320)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=2.0)
        formats = await session.open(CONTEXT, PCMU)
        assert (formats.input, formats.output) == (L16_16K, L16_16K)
        session.send_audio(AudioFrame(L16_16K, b"\x01\x00" * 320, timestamp=40))
        event = await next_event(session.events())
        assert isinstance(event, AgentAudio)
        assert event.frame.format == L16_16K
        assert event.frame.duration_ms == 20
        await session.close()
        await agent.finished()


@pytest.mark.parametrize(
    ("leg", "offered"),
    [(PCMA, "audio/pcma/8000"), (G722_16K, "audio/l16/16000"), (L16_24K, "audio/l16/24000")],
)
async def test_offer_follows_the_leg_format_when_the_protocol_can_carry_it(
    leg: Any, offered: str
) -> None:
    async def script(peer: AgentPeer) -> None:
        start = await peer.expect("start")
        fmt = start["media_format"]
        assert f"{fmt['encoding']}/{fmt['sample_rate']}" == offered
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        formats = await session.open(CONTEXT, leg)
        assert f"audio/{formats.input.name}" == offered
        await session.close()
        await agent.finished()


async def test_accept_naming_an_impossible_format_fails_open() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json(
            {"type": "accept", "media_format": {"encoding": "audio/pcmu", "sample_rate": 16000}}
        )
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=2.0)
        with pytest.raises(ProviderProtocolError, match="unusable accept"):
            await session.open(CONTEXT, PCMU)
        await agent.finished()
        closed = await next_event(session.events())
        assert isinstance(closed, AgentClosed)
        assert isinstance(closed.error, ProviderProtocolError)


async def test_agent_speaking_first_without_accept_keeps_the_offer_and_its_audio() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_media(b"\xff" * 160)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=2.0)
        formats = await session.open(CONTEXT, PCMU)
        assert formats.output == PCMU
        event = await next_event(session.events())
        assert isinstance(event, AgentAudio)
        assert event.frame.payload == b"\xff" * 160
        await session.close()
        await agent.finished()


# --- media, marks, clear ---


async def test_media_both_ways_is_byte_exact() -> None:
    caller = [bytes(range(i, i + 160)) for i in (0, 96)]
    agent_audio = [bytes(reversed(range(256))), b"\x7f\x80" * 80]

    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        for n, payload in enumerate(caller, start=1):
            media = await peer.expect("media")
            assert base64.b64decode(media["payload"], validate=True) == payload
            assert media["sequence"] == n
            assert media["timestamp"] == (n - 1) * 20
        for payload in agent_audio:
            await peer.send_media(payload)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        for n, payload in enumerate(caller):
            session.send_audio(pcmu(payload, ts=n * 20))
        events = session.events()
        got = [await next_event(events) for _ in agent_audio]
        assert [e.frame.payload for e in got if isinstance(e, AgentAudio)] == agent_audio
        assert [e.item_id for e in got if isinstance(e, AgentAudio)] == ["0", "0"]
        assert [e.frame.timestamp for e in got if isinstance(e, AgentAudio)] == [0, 32]
        await session.close()
        await agent.finished()


async def test_marks_are_echoed_only_through_mark_played() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_media(b"\x00" * 160)
        await peer.send_json({"type": "mark", "name": "greeting-end"})
        # Before the bridge reports playout, only the caller's key press may arrive.
        assert await peer.expect("dtmf") == {"type": "dtmf", "digit": "5"}
        assert await peer.expect("mark") == {"type": "mark", "name": "greeting-end"}
        # A second report, and an unknown name, send nothing: next is the sentinel.
        assert await peer.expect("dtmf") == {"type": "dtmf", "digit": "#"}
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        assert isinstance(await next_event(events), AgentAudio)
        assert await next_event(events) == MarkRequested("greeting-end")
        session.send_dtmf("5")
        session.mark_played("greeting-end")
        session.mark_played("greeting-end")
        session.mark_played("never-requested")
        session.send_dtmf("#")
        await session.close()
        await agent.finished()


async def test_clear_starts_a_new_generation_and_reports_dropped_marks() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_media(b"\x11" * 160)
        await peer.send_json({"type": "mark", "name": "sentence-1"})
        await peer.send_json({"type": "clear"})
        await peer.send_media(b"\x22" * 160)
        cleared = await peer.expect("cleared")
        assert cleared == {
            "type": "cleared",
            "generation": 0,
            "played_ms": 120,
            "marks": ["sentence-1"],
        }
        assert await peer.expect("dtmf") == {"type": "dtmf", "digit": "1"}
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        first = await next_event(events)
        assert isinstance(first, AgentAudio) and first.item_id == "0"
        assert await next_event(events) == MarkRequested("sentence-1")
        assert await next_event(events) == ClearRequested()
        second = await next_event(events)
        assert isinstance(second, AgentAudio) and second.item_id == "1"
        session.played("0", 120)
        session.played("0", 120)  # once per generation
        session.mark_played("sentence-1")  # dropped by the clear: never echoed
        session.send_dtmf("1")
        await session.close()
        await agent.finished()


async def test_bridge_interruption_advances_the_generation_like_a_clear() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_media(b"\x11" * 160)
        assert (await peer.expect("cleared"))["generation"] == 0
        await peer.send_media(b"\x22" * 160)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        first = await next_event(events)
        assert isinstance(first, AgentAudio) and first.item_id == "0"
        session.played("0", 60)
        second = await next_event(events)
        assert isinstance(second, AgentAudio) and second.item_id == "1"
        await session.close()
        await agent.finished()


# --- requests from the agent ---


async def test_dtmf_transfer_and_hangup_requests_then_a_clean_close() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json({"type": "dtmf", "digits": "12#"})
        await peer.send_json({"type": "transfer", "target": "sip:sales@pbx.example.com"})
        await peer.send_json({"type": "hangup", "reason": "goodbye said"})
        await peer.close()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        assert await next_event(events) == DtmfRequested("12#")
        assert await next_event(events) == TransferRequested("sip:sales@pbx.example.com")
        assert await next_event(events) == HangupRequested("goodbye said")
        assert await next_event(events) == AgentClosed(None)
        await session.close()
        await session.close()
        await agent.finished()


async def test_malformed_messages_are_reported_and_survived() -> None:
    bad: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"type": 7}',
        '{"type": "sing"}',
        '{"type": "media", "payload": "!!not base64!!"}',
        '{"type": "dtmf", "digits": "12x"}',
        '{"type": "mark"}',
        '{"type": "accept"}',  # only valid as the answer to start
        b"\x00\x01",  # binary audio is not enabled on this trunk
    ]

    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        for frame in bad:
            await peer.ws.send(frame)
        await peer.send_media(b"\x55" * 160)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=0.0)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        for _ in bad:
            event = await next_event(events)
            assert isinstance(event, AgentError), event
            assert isinstance(event.error, ProviderProtocolError)
            assert event.fatal is False
        audio = await next_event(events)
        assert isinstance(audio, AgentAudio) and audio.frame.payload == b"\x55" * 160
        assert session.stats.malformed_messages == len(bad)
        await session.close()
        await agent.finished()


async def test_too_many_malformed_messages_end_the_session() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        for _ in range(3):
            await peer.send_text("garbage")
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, max_protocol_errors=3)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        kinds = [await next_event(events) for _ in range(4)]
        assert [type(e) for e in kinds] == [AgentError, AgentError, AgentError, AgentClosed]
        assert isinstance(kinds[2], AgentError) and kinds[2].fatal
        assert isinstance(kinds[3], AgentClosed)
        assert isinstance(kinds[3].error, ProviderProtocolError)
        await session.close()
        await agent.finished()


async def test_oversized_payload_is_refused_and_an_oversized_frame_ends_the_call() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_media(b"\x00" * 2048)  # over max_payload_bytes: refused, survivable
        # The gateway fails the connection (1009) on this frame's header, which may be
        # before our send of its 5 MB has drained: then the send itself sees the close.
        with contextlib.suppress(ConnectionClosedError):
            await peer.send_text('{"type":"media","payload":"' + "A" * (5 * 1024 * 1024) + '"}')
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, max_payload_bytes=1024)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        refused = await next_event(events)
        assert isinstance(refused, AgentError) and not refused.fatal
        assert "larger than 1024" in refused.error.message
        fatal = await next_event(events)
        assert isinstance(fatal, AgentError) and fatal.fatal
        assert isinstance(fatal.error, ProviderProtocolError)
        closed = await next_event(events)
        assert isinstance(closed, AgentClosed) and closed.error is fatal.error
        await session.close()
        await agent.finished()


# --- the socket going away ---


async def test_abrupt_close_is_a_fatal_connectivity_error() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        peer.abort()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=0.0)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        error = await next_event(events)
        assert isinstance(error, AgentError) and error.fatal
        assert isinstance(error.error, ProviderConnectError)
        closed = await next_event(events)
        assert isinstance(closed, AgentClosed) and closed.error is error.error
        await session.close()
        await agent.finished()


async def test_clean_close_without_a_hangup_request_is_still_fatal() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.close(1000, "bye")

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=0.0)
        await session.open(CONTEXT, PCMU)
        events = session.events()
        error = await next_event(events)
        assert isinstance(error, AgentError) and error.fatal
        assert "mid-call" in error.error.message and "bye" in error.error.message
        assert isinstance(await next_event(events), AgentClosed)
        await session.close()
        await agent.finished()


async def test_connect_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = make_session(f"ws://127.0.0.1:{port}/agent")
    with pytest.raises(ProviderConnectError):
        await session.open(CONTEXT, PCMU)
    closed = await next_event(session.events())
    assert isinstance(closed, AgentClosed) and isinstance(closed.error, ProviderConnectError)
    await session.close()


async def test_handshake_401_is_an_auth_error() -> None:
    async def script(peer: AgentPeer) -> None:
        raise AssertionError("the handshake was refused; no script should run")

    async with FakeCustomAgent(script, reject_status=401) as agent:
        session = make_session(agent.url)
        with pytest.raises(ProviderAuthError) as info:
            await session.open(CONTEXT, PCMU)
        assert info.value.status == 401
        assert agent.handshakes[0]["Authorization"] == "Bearer agent-secret"


async def test_bad_options_and_missing_endpoint_are_config_errors() -> None:
    with pytest.raises(ProviderConfigError, match="dialect"):
        await make_session("ws://127.0.0.1:9/", dialect="jambonz").open(CONTEXT, PCMU)
    with pytest.raises(ProviderConfigError, match="binary_audio"):
        await make_session("ws://127.0.0.1:9/", binary_audio="yes").open(CONTEXT, PCMU)
    with pytest.raises(ProviderConfigError, match="endpoint"):
        await CustomAgentSession(AgentConfig(provider="custom")).open(CONTEXT, PCMU)


# --- closing, queues, options ---


async def test_close_sends_stop_once_and_leaves_no_task() -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        assert await peer.expect("stop") == {"type": "stop", "reason": "caller hung up"}
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url)
        await session.open(CONTEXT, PCMU)
        heard: list[AgentEvent] = []
        session.listen(heard.append)  # reading starts: the reader joins the writer
        ours = {t for t in asyncio.all_tasks() if t.get_name().startswith("agent-")}
        assert len(ours) == 2
        await asyncio.gather(session.close("caller hung up"), session.close("again"))
        await session.close()
        await agent.finished()
        assert all(t.done() for t in ours)
        assert heard == [AgentClosed(None)]
        session.send_audio(pcmu(b"\x00" * 160))  # after close: ignored, no error
        session.send_dtmf("1")


async def test_close_while_opening_ends_the_open_without_leftovers() -> None:
    started = asyncio.Event()

    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        started.set()
        await peer.wait_closed()  # never accepts: the gateway is still waiting

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, accept_timeout=10.0)
        opening = asyncio.create_task(session.open(CONTEXT, PCMU))
        async with asyncio.timeout(EVENT_TIMEOUT):
            await started.wait()
        await session.close("caller cancelled")
        with pytest.raises(ProviderConnectError):
            await opening
        await agent.finished()
        assert [e async for e in session.events()] == [AgentClosed(None)]
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("agent-")]


async def test_full_send_queue_drops_the_oldest_caller_audio() -> None:
    """An agent that stops reading: caller audio goes to the socket until it congests,
    then the send queue keeps the newest ten frames and drops the oldest; the agent
    hears a gap in the audio but never in the sequence numbers."""
    queue = 10
    count: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    heard: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()

    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        wanted = await count  # not reading meanwhile: the gateway's socket congests
        heard.set_result([await peer.expect("media") for _ in range(wanted)])
        await peer.send_json({"type": "mark", "name": "heard-all"})
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, send_queue_frames=queue)
        await session.open(CONTEXT, PCMU)
        sent = 0
        # No await in this loop: the agent cannot read, the socket buffers fill up.
        while session.stats.dropped_caller_frames < 5 and sent < 200_000:
            session.send_audio(pcmu(sent.to_bytes(4, "big") * 40, ts=sent * 20))
            sent += 1
        dropped = session.stats.dropped_caller_frames
        assert dropped == 5, sent
        direct = sent - dropped - queue  # written before the socket congested
        count.set_result(direct + queue)
        got = await asyncio.wait_for(heard, 30)
        assert [m["sequence"] for m in got] == list(range(1, direct + queue + 1))
        markers = [int.from_bytes(base64.b64decode(m["payload"])[:4], "big") for m in got]
        assert markers == [*range(direct), *range(sent - queue, sent)]
        assert await next_event(session.events()) == MarkRequested("heard-all")
        await session.close()
        await agent.finished()


async def test_binary_audio_carries_raw_payloads_both_ways() -> None:
    async def script(peer: AgentPeer) -> None:
        start = await peer.expect("start")
        assert start["binary_audio"] is True
        assert await peer.recv() == b"\x01" * 160
        await peer.send_bytes(b"\x02" * 160)
        await idle(peer)

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, binary_audio=True)
        await session.open(CONTEXT, PCMU)
        session.send_audio(pcmu(b"\x01" * 160))
        event = await next_event(session.events())
        assert isinstance(event, AgentAudio) and event.frame.payload == b"\x02" * 160
        await session.close()
        await agent.finished()


async def test_vad_events_are_sent_only_when_the_trunk_asks() -> None:
    async def script(peer: AgentPeer) -> None:
        start = await peer.expect("start")
        if start["vad_events"]:
            assert await peer.expect("speech_started") == {
                "type": "speech_started",
                "timestamp": 1200,
            }
            assert (await peer.expect("speech_stopped"))["timestamp"] == 2400
        assert await peer.expect("dtmf") == {"type": "dtmf", "digit": "9"}
        await idle(peer)

    for enabled in (True, False):
        async with FakeCustomAgent(script) as agent:
            session = make_session(agent.url, vad_events=enabled)
            await session.open(CONTEXT, PCMU)
            session.caller_speech_started(1200)
            session.caller_speech_stopped(2400)
            session.send_dtmf("9")
            await session.close()
            await agent.finished()


async def test_our_vad_tells_the_agent_when_the_caller_speaks() -> None:
    # 400 ms of line silence, one second of a voiced vowel-like signal, then silence again.
    speech = encode_ulaw(speech_like(8000, 1000).tobytes())
    audio = silence(PCMU, 400) + speech + silence(PCMU, 1000)
    seen: list[dict[str, Any]] = []

    async def script(peer: AgentPeer) -> None:
        assert (await peer.expect("start"))["vad_events"] is True
        while not seen or seen[-1]["type"] != "speech_stopped":
            message = await peer.recv_json()
            if message["type"] != "media":
                seen.append(message)
        await peer.send_json({"type": "mark", "name": "heard-the-turn"})
        while (await peer.recv_json())["type"] != "stop":
            pass  # the rest of the caller's audio

    async with FakeCustomAgent(script) as agent:
        session = make_session(agent.url, vad_events=True, send_queue_frames=200)
        await session.open(CONTEXT, PCMU)
        for n in range(len(audio) // 160):
            session.send_audio(pcmu(audio[n * 160 : (n + 1) * 160], ts=1000 + n * 20))
        assert await next_event(session.events()) == MarkRequested("heard-the-turn")
        await session.close()
        await agent.finished()

    assert [m["type"] for m in seen] == ["speech_started", "speech_stopped"]
    started, stopped = seen[0]["timestamp"], seen[1]["timestamp"]
    # The media clock of the frames (first frame at 1000 ms): speech spans 1400-2400 ms.
    assert 1300 <= started <= 1600, started
    assert 2200 <= stopped <= 2500, stopped


# --- the example agent in examples/ ---


def load_example() -> Any:
    path = ROOT / "examples" / "echo_agent.py"
    spec = importlib.util.spec_from_file_location("telepath_example_echo_agent", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_example_echo_agent_echoes_audio_and_answers_marks() -> None:
    example = load_example()
    server = await example.serve_echo("127.0.0.1", 0, accept="l16/16000")
    port = server.sockets[0].getsockname()[1]
    try:
        session = make_session(f"ws://127.0.0.1:{port}/", accept_timeout=2.0)
        formats = await session.open(CONTEXT, PCMU)
        assert (formats.input, formats.output) == (L16_16K, L16_16K)
        events = session.events()
        sent = [bytes([n, 0]) * 320 for n in range(3)]
        for n, payload in enumerate(sent):
            session.send_audio(AudioFrame(L16_16K, payload, timestamp=n * 20))
        echoed: list[bytes] = []
        marks: list[str] = []
        while len(echoed) < len(sent):
            event = await next_event(events)
            if isinstance(event, AgentAudio):
                echoed.append(event.frame.payload)
            elif isinstance(event, MarkRequested):
                marks.append(event.name)
        assert echoed == sent
        session.send_dtmf("#")  # the example hangs up on '#'
        while not isinstance(event := await next_event(events), HangupRequested):
            if isinstance(event, MarkRequested):
                marks.append(event.name)
        assert marks and all(m.startswith("echo-") for m in marks)
        await session.close("done")
    finally:
        server.close()
        await server.wait_closed()


# --- the parser on its own: hostile input never escapes as anything but a protocol error ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
message_types = st.sampled_from(
    ["accept", "media", "mark", "clear", "hangup", "transfer", "dtmf", "start", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    kind=message_types,
    fields=st.dictionaries(
        st.sampled_from(["payload", "name", "reason", "target", "digits", "media_format"]),
        json_values,
        max_size=4,
    ),
)
def test_parser_turns_any_json_object_into_a_message_or_a_protocol_error(
    kind: str, fields: dict[str, Any]
) -> None:
    dialect = TelepathDialect(max_payload_bytes=1024)
    try:
        message = dialect.parse(json.dumps({"type": kind, **fields}))
    except MalformedAgentMessage as exc:
        assert exc.category == "protocol" and exc.message
        return
    assert type(message).__name__.lower().startswith(kind), (kind, message)


@settings(max_examples=150, deadline=None)
@given(data=st.text(max_size=200) | st.binary(max_size=200))
def test_parser_survives_arbitrary_frames(data: str | bytes) -> None:
    dialect = TelepathDialect(max_payload_bytes=1024)
    with pytest.raises(MalformedAgentMessage):
        dialect.parse(data)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"mark","name":"m","x":NaN}',
        '{"type":"mark","name":"m","x":Infinity}',
        '{"type":"mark","name":"\\ud800"}',  # a lone surrogate (RFC 8259 §8.2)
        '{"type":"mark","name":"m"} trailing',
        "[" * 5_000 + "]" * 5_000,
        '{"type":"media","payload":"AA=A"}',
        '{"type":"media","payload":"AA AA"}',
    ],
    ids=["nan", "infinity", "lone-surrogate", "trailing-data", "nesting", "padding", "blank"],
)
def test_parser_refuses_what_rfc_8259_and_4648_do_not_allow(frame: str) -> None:
    # The JSON parser (orjson) and the base64 decoder (binascii, strict) are stricter
    # than Python's defaults; whatever they refuse must come out as a protocol error.
    with pytest.raises(MalformedAgentMessage):
        TelepathDialect(max_payload_bytes=1024).parse(frame)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=400), min_size=1, max_size=5),
    timestamp=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_media_message_is_what_the_json_encoder_writes(
    payloads: list[bytes], timestamp: int
) -> None:
    # media() formats its one-per-frame message directly; it must stay byte for byte what
    # json.dumps (compact, keys in this order) makes of it, whatever the audio.
    dialect = TelepathDialect(max_payload_bytes=1024)
    for sequence, payload in enumerate(payloads, start=1):
        sent = dialect.media(AudioFrame(PCMU, payload, timestamp=timestamp))
        expected = {
            "type": "media",
            "payload": base64.b64encode(payload).decode("ascii"),
            "sequence": sequence,
            "timestamp": timestamp,
        }
        assert sent == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=40))
def test_mark_echo_is_what_the_json_encoder_writes(name: str) -> None:
    # mark() formats the echo directly, as media() does; whatever the agent named its mark
    # (quotes, backslashes, control characters, any plane), the text is json.dumps's.
    sent = TelepathDialect(max_payload_bytes=1024).mark(name)
    expected = {"type": "mark", "name": name}
    assert sent == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(sent) == expected
