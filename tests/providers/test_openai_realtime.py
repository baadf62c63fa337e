"""OpenAI Realtime adapter against a protocol-faithful fake over real loopback sockets.

Each test drives the real ``OpenAIRealtimeSession`` and asserts what reaches the fake
server (session.update shape, audio bytes, truncate offsets, tool outputs) and which
``AgentEvent``s come out (shared/protocols/providers.md §1, §6.2).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import L16_16K, L16_24K, PCMA, PCMU, AudioFrame, CallContext
from media.inbox import Inbox
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    CallerSpeechStarted,
    CallerSpeechStopped,
    ErrorCategory,
    HangupRequested,
    NegotiatedFormats,
    ProviderAuthError,
    ProviderConfigError,
    ProviderConnectError,
    ProviderError,
    ProviderProtocolError,
    ResponseDone,
    TranscriptReceived,
    TransferRequested,
)
from providers.openai_realtime import OpenAIRealtimeSession
from providers.openai_realtime.conversation import (
    PLAYBACK_SLACK_S,
    RealtimeConversation,
    RealtimeStats,
)
from providers.openai_realtime.events import (
    OutputAudioDelta,
    ResponseCreated,
    SpeechStarted,
    parse_server_event,
)
from providers.openai_realtime.events import ResponseDone as ResponseDone_
from providers.openai_realtime.options import RealtimeOptions, realtime_url
from tests.providers.fakes.openai_server import (
    FakeOpenAIConnection,
    FakeOpenAIRealtime,
    SilentServer,
    audio_delta,
    error_event,
    function_call_done,
    response_created,
    response_done,
    speech_started,
    speech_stopped,
)

CONTEXT = CallContext(
    call_id="call-1",
    trunk_id="trunk-1",
    sip_call_id="abc@10.0.0.1",
    from_number="+15551230000",
    to_number="+15559870000",
)


def make_config(url: str, **options: object) -> AgentConfig:
    return AgentConfig(
        provider="openai",
        api_key="sk-test",
        system_prompt="You are a phone agent.",
        options=dict(options),
        base_url=url,
        connect_timeout=2.0,
    )


class Opened:
    """An open session, its server-side connection and its event stream."""

    def __init__(
        self, session: OpenAIRealtimeSession, conn: FakeOpenAIConnection, fmt: NegotiatedFormats
    ) -> None:
        self.session = session
        self.conn = conn
        self.formats = fmt
        self.session_update: dict[str, Any] = {}
        # Listened to at once, as the bridge does once the call is answered.
        self._events: Inbox[AgentEvent] = Inbox()
        session.listen(self._events.put)

    async def next_event(self, within: float = 2.0) -> AgentEvent:
        return await asyncio.wait_for(self._events.get(), within)

    async def next_of(self, kind: type, within: float = 2.0) -> Any:
        while True:
            event = await self.next_event(within)
            if isinstance(event, kind):
                return event


async def open_session(
    fake: FakeOpenAIRealtime, preferred: Any = PCMU, **options: object
) -> Opened:
    session = OpenAIRealtimeSession(make_config(fake.url, **options))
    fmt = await session.open(CONTEXT, preferred)
    conn = await fake.accepted()
    opened = Opened(session, conn, fmt)
    opened.session_update = await conn.next_message()
    return opened


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIRealtime]:
    async with FakeOpenAIRealtime() as server:
        yield server


# --- connecting and session.update (providers.md §1.2, §1.3) ---


async def test_open_sends_ga_session_update_for_pcmu_passthrough(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(
        fake, PCMU, voice="cedar", vad_threshold=0.6, silence_duration_ms=400
    )
    conn = opened.conn
    assert opened.formats == NegotiatedFormats(PCMU, PCMU)
    assert conn.request_headers["Authorization"] == "Bearer sk-test"
    assert "OpenAI-Beta" not in conn.request_headers
    assert conn.path == "/v1/realtime?model=gpt-realtime"
    update = opened.session_update
    assert update["type"] == "session.update"
    session = update["session"]
    assert session["type"] == "realtime"
    assert session["model"] == "gpt-realtime"
    assert session["instructions"] == "You are a phone agent."
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar"}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "create_response": True,
        "interrupt_response": True,
        "threshold": 0.6,
        "silence_duration_ms": 400,
    }
    assert "tools" not in session
    await opened.session.close()


@pytest.mark.parametrize(
    ("preferred", "expected", "wire_format"),
    [
        (PCMA, PCMA, {"type": "audio/pcma"}),
        (L16_16K, L16_24K, {"type": "audio/pcm", "rate": 24000}),
    ],
)
async def test_format_negotiation(
    fake: FakeOpenAIRealtime, preferred: Any, expected: Any, wire_format: dict[str, Any]
) -> None:
    opened = await open_session(fake, preferred, model="gpt-4o-realtime-preview")
    assert opened.formats == NegotiatedFormats(expected, expected)
    assert opened.conn.path == "/v1/realtime?model=gpt-4o-realtime-preview"
    audio = opened.session_update["session"]["audio"]
    assert audio["input"]["format"] == wire_format
    assert audio["output"]["format"] == wire_format
    await opened.session.close()


async def test_semantic_vad_and_tools_declared_only_when_enabled(
    fake: FakeOpenAIRealtime,
) -> None:
    opened = await open_session(
        fake,
        turn_detection="semantic_vad",
        eagerness="low",
        enable_end_call=True,
        enable_transfer=True,
    )
    session = opened.session_update["session"]
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "create_response": True,
        "interrupt_response": True,
        "eagerness": "low",
    }
    assert [t["name"] for t in session["tools"]] == ["end_call", "transfer_call"]
    assert session["tools"][1]["parameters"]["required"] == ["target"]
    await opened.session.close()


async def test_open_waits_for_session_updated(fake: FakeOpenAIRealtime) -> None:
    release = asyncio.Event()

    async def confirm_later(conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        await release.wait()
        await conn.send({"type": "session.updated", "session": message["session"]})

    fake.on_session_update = confirm_later
    session = OpenAIRealtimeSession(make_config(fake.url))
    opening = asyncio.create_task(session.open(CONTEXT, PCMU))
    conn = await fake.accepted()
    assert (await conn.next_message())["type"] == "session.update"
    await asyncio.sleep(0.05)
    assert not opening.done()
    release.set()
    assert await opening == NegotiatedFormats(PCMU, PCMU)
    await session.close()


async def test_session_update_refused_is_a_config_error(fake: FakeOpenAIRealtime) -> None:
    async def refuse(conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        await conn.send(
            error_event(
                "invalid_request_error",
                "invalid_value",
                "Invalid value: 'nova'. Supported values are: 'alloy'…",
            )
        )

    fake.on_session_update = refuse
    session = OpenAIRealtimeSession(make_config(fake.url, voice="nova"))
    with pytest.raises(ProviderConfigError, match="nova"):
        await session.open(CONTEXT, PCMU)


async def test_error_with_own_cause_before_session_updated(fake: FakeOpenAIRealtime) -> None:
    async def out_of_quota(conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        await conn.send(
            error_event("insufficient_quota", "insufficient_quota", "You exceeded your quota.")
        )

    fake.on_session_update = out_of_quota
    with pytest.raises(ProviderError) as info:
        await OpenAIRealtimeSession(make_config(fake.url)).open(CONTEXT, PCMU)
    assert info.value.category is ErrorCategory.QUOTA


async def test_handshake_401_is_an_auth_error(fake: FakeOpenAIRealtime) -> None:
    config = AgentConfig(provider="openai", api_key="sk-wrong", base_url=fake.url)
    with pytest.raises(ProviderAuthError) as info:
        await OpenAIRealtimeSession(config).open(CONTEXT, PCMU)
    assert info.value.status == 401
    assert info.value.category is ErrorCategory.AUTH


async def test_slow_handshake_times_out_as_connect_error() -> None:
    async with SilentServer() as silent:
        config = AgentConfig(
            provider="openai", api_key="k", base_url=silent.url, connect_timeout=0.2
        )
        session = OpenAIRealtimeSession(config)
        with pytest.raises(ProviderConnectError, match="did not answer within 0.2 s"):
            await session.open(CONTEXT, PCMU)
        await session.close()


async def test_beta_shape_close_4000_is_a_config_error(fake: FakeOpenAIRealtime) -> None:
    # A proxy that injects the beta header gets the same 4000 close as the beta shape.
    config = AgentConfig(
        provider="openai",
        api_key="sk-test",
        base_url=fake.url,
        headers={"X-Proxy": "1"},
    )
    fake.reject_beta = True

    async def close_4000(conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        await conn.ws.close(4000, "invalid_request_error.beta_api_shape_disabled")

    fake.on_session_update = close_4000
    with pytest.raises(ProviderConfigError, match="beta") as info:
        await OpenAIRealtimeSession(config).open(CONTEXT, PCMU)
    assert info.value.category is ErrorCategory.CONFIG


async def test_beta_header_from_config_is_never_sent(fake: FakeOpenAIRealtime) -> None:
    config = AgentConfig(
        provider="openai",
        api_key="sk-test",
        base_url=fake.url,
        headers={"OpenAI-Beta": "realtime=v1"},
    )
    session = OpenAIRealtimeSession(config)
    await session.open(CONTEXT, PCMU)
    conn = await fake.accepted()
    assert "OpenAI-Beta" not in conn.request_headers
    await session.close()


# --- audio both ways (passthrough) ---


async def test_pcmu_passes_through_unchanged_both_ways(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    caller = bytes(range(256)) + bytes(range(255, -1, -1)) + bytes(128)  # 80 ms of µ-law
    for i in range(0, len(caller), 160):
        opened.session.send_audio(AudioFrame(PCMU, caller[i : i + 160]))
    assert await opened.conn.wait_audio(len(caller)) == caller
    assert opened.conn.appends == 4

    agent = bytes((i * 7) % 256 for i in range(8000))  # 1 s of µ-law in one delta
    await opened.conn.send(audio_delta("item_a", agent))
    received = bytearray()
    while len(received) < len(agent):
        event = await opened.next_of(AgentAudio)
        assert event.item_id == "item_a"
        assert event.frame.format == PCMU
        assert len(event.frame.payload) == 160  # 20 ms frames
        received += event.frame.payload
    assert bytes(received) == agent
    assert opened.session.stats.audio_ms_received == pytest.approx(1000)
    await opened.session.close()


async def test_audio_queue_drops_oldest_when_full(fake: FakeOpenAIRealtime) -> None:
    """Caller audio goes to the socket until it congests (the service cannot read while
    this loop runs), then the queue keeps the newest second (50 frames) and drops the
    oldest."""
    opened = await open_session(fake, PCMU)
    frames: list[bytes] = []
    while opened.session.stats.audio_frames_dropped < 5 and len(frames) < 200_000:
        frames.append(len(frames).to_bytes(4, "big") * 40)
        opened.session.send_audio(AudioFrame(PCMU, frames[-1]))
    assert opened.session.stats.audio_frames_dropped == 5, len(frames)
    direct = len(frames) - 5 - 50  # written before the socket congested
    heard = await opened.conn.wait_audio((direct + 50) * 160, within=30)
    assert heard == b"".join(frames[:direct] + frames[-50:])
    await opened.session.close()


# --- barge-in and truncation (providers.md §1.7) ---


async def _speak(opened: Opened, item: str, ms: int) -> None:
    await opened.conn.send(response_created("resp_1"))
    await opened.conn.send(audio_delta(item, bytes(8 * ms), "resp_1"))
    got = 0
    while got < ms:
        got += int((await opened.next_of(AgentAudio)).frame.duration_ms)


async def test_speech_started_mid_response_interrupts_and_truncates(
    fake: FakeOpenAIRealtime,
) -> None:
    opened = await open_session(fake, PCMU)
    await _speak(opened, "item_a", 1000)
    await opened.conn.send(speech_started())
    assert isinstance(await opened.next_event(), CallerSpeechStarted)
    assert await opened.next_event() == AgentInterrupted("item_a")
    # A late delta of the interrupted item is dropped; a transcript after it still arrives.
    await opened.conn.send(audio_delta("item_a", bytes(160), "resp_1"))
    await opened.conn.send(
        {
            "type": "response.output_audio_transcript.done",
            "item_id": "item_a",
            "transcript": "Hello there",
        }
    )
    assert await opened.next_event() == TranscriptReceived("agent", "Hello there")
    assert opened.session.stats.late_deltas_dropped == 1

    opened.session.played("item_a", 420)
    assert await opened.conn.next_message() == {
        "type": "conversation.item.truncate",
        "item_id": "item_a",
        "content_index": 0,
        "audio_end_ms": 420,
    }
    await opened.session.close()


async def test_truncate_is_clamped_to_audio_received(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    await _speak(opened, "item_b", 600)
    await opened.conn.send(speech_started())
    assert await opened.next_of(AgentInterrupted) == AgentInterrupted("item_b")
    opened.session.played("item_b", 2500)  # the bridge overshoots: clamp to 600
    message = await opened.conn.next_message()
    assert message["type"] == "conversation.item.truncate"
    assert message["audio_end_ms"] == 600
    await opened.session.close()


async def test_no_truncate_when_playback_completed(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    await _speak(opened, "item_c", 200)
    await opened.conn.send(response_done("resp_1", ("item_c",)))
    assert await opened.next_of(ResponseDone) == ResponseDone("item_c")
    await opened.conn.send(speech_started())
    assert await opened.next_of(AgentInterrupted) == AgentInterrupted("item_c")
    opened.session.played("item_c", 200)  # everything was heard and the response is over
    opened.session.send_dtmf("7")
    message = await opened.conn.next_message()
    assert message["type"] == "conversation.item.create"  # no truncate before it
    await opened.session.close()


async def test_interrupt_without_server_cancel_sends_response_cancel(
    fake: FakeOpenAIRealtime,
) -> None:
    opened = await open_session(fake, PCMU, interrupt_response=False)
    await _speak(opened, "item_d", 400)
    await opened.conn.send(speech_started())
    await opened.next_of(AgentInterrupted)
    assert (await opened.conn.next_message())["type"] == "response.cancel"
    await opened.session.close()


async def test_speech_stopped_transcripts_and_recoverable_errors(
    fake: FakeOpenAIRealtime,
) -> None:
    opened = await open_session(fake, PCMU)
    conn = opened.conn
    await conn.send(speech_stopped())
    assert isinstance(await opened.next_event(), CallerSpeechStopped)
    await conn.send(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "content_index": 0,
            "transcript": "I need help",
        }
    )
    assert await opened.next_event() == TranscriptReceived("user", "I need help")
    await conn.send(
        {
            "type": "response.audio_transcript.done",
            "item_id": "item_x",
            "transcript": "Beta-named transcript",
        }
    )
    assert await opened.next_event() == TranscriptReceived("agent", "Beta-named transcript")
    await conn.send(
        {
            "type": "rate_limits.updated",
            "rate_limits": [
                {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 7.2},
                {"name": "tokens", "limit": 50000, "remaining": 49000, "reset_seconds": 1.1},
            ],
        }
    )
    await conn.send(
        error_event(
            "invalid_request_error",
            "invalid_value",
            "Audio content of 13600ms is already shorter than 55960ms",
        )
    )
    error = await opened.next_event()
    assert isinstance(error, AgentError) and not error.fatal
    assert error.error.category is ErrorCategory.PROTOCOL
    assert opened.session.stats.rate_limits == {"requests": 999, "tokens": 49000}
    await conn.send("this is not json")
    error = await opened.next_event()
    assert isinstance(error, AgentError) and not error.fatal
    # Still alive: a legacy-named delta still plays.
    await conn.send({**audio_delta("item_y", bytes(160)), "type": "response.audio.delta"})
    assert (await opened.next_of(AgentAudio)).item_id == "item_y"
    await opened.session.close()


# --- DTMF, tools, greeting ---


async def test_dtmf_becomes_user_item_and_response(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU, dtmf_template="Key {digit} was pressed.")
    opened.session.send_dtmf("#")
    item = await opened.conn.next_message()
    assert item["item"]["content"] == [{"type": "input_text", "text": "Key # was pressed."}]
    assert await opened.conn.next_message() == {"type": "response.create"}
    # While a response runs, only the item goes out (a second response.create would fail).
    await opened.conn.send(response_created("resp_9"))
    await opened.conn.send(speech_stopped())
    await opened.next_of(CallerSpeechStopped)
    opened.session.send_dtmf("1")
    opened.session.send_dtmf("x")  # not a DTMF digit: ignored
    opened.session.played("unknown", 10)  # unknown item: ignored
    await opened.session.answered()  # no greeting configured: nothing sent
    assert (await opened.conn.next_message())["item"]["content"][0]["text"] == "Key 1 was pressed."
    with pytest.raises(TimeoutError):
        await opened.conn.next_message(within=0.1)
    await opened.session.close()


async def test_tool_calls_become_hangup_and_transfer(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU, enable_end_call=True, enable_transfer=True)
    conn = opened.conn
    await conn.send(function_call_done("transfer_call", '{"target": "+15550001111"}', "call_t"))
    assert await opened.next_of(TransferRequested) == TransferRequested("+15550001111")
    output = await conn.next_message()
    assert output["item"] == {
        "type": "function_call_output",
        "call_id": "call_t",
        "output": '{"ok":true}',
    }
    await conn.send(function_call_done("transfer_call", '{"target": "premium; rm -rf"}', "c2"))
    refused = await conn.next_message()
    assert "error" in refused["item"]["output"]
    assert await conn.next_message() == {"type": "response.create"}
    await conn.send(function_call_done("end_call", '{"reason": "caller said bye"}', "call_e"))
    assert await opened.next_of(HangupRequested) == HangupRequested("caller said bye")
    assert (await conn.next_message())["item"]["call_id"] == "call_e"
    await opened.session.close()


async def test_disabled_tool_is_refused(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    await opened.conn.send(function_call_done("end_call", "{}", "call_x"))
    output = await opened.conn.next_message()
    assert output["item"]["call_id"] == "call_x" and "not available" in output["item"]["output"]
    await opened.session.close()


async def test_greeting_on_answered(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU, greeting="Thanks for calling Acme.")
    await opened.session.answered()
    message = await opened.conn.next_message()
    assert message["type"] == "response.create"
    assert "Thanks for calling Acme." in message["response"]["instructions"]
    await opened.session.close()


# --- ending ---


async def test_abrupt_close_is_fatal_then_closed(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    assert opened.conn.ws.transport is not None
    opened.conn.ws.transport.abort()
    error = await opened.next_event()
    assert isinstance(error, AgentError) and error.fatal
    assert error.error.category is ErrorCategory.CONNECTIVITY
    closed = await opened.next_event()
    assert isinstance(closed, AgentClosed) and closed.error is error.error
    opened.session.send_audio(AudioFrame(PCMU, bytes(160)))  # after the end: ignored
    await opened.session.close()


async def test_fatal_error_event_then_server_close(fake: FakeOpenAIRealtime) -> None:
    opened = await open_session(fake, PCMU)
    await opened.conn.send(
        error_event(
            "invalid_request_error",
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
        )
    )
    error = await opened.next_event()
    assert isinstance(error, AgentError) and error.fatal
    await opened.conn.ws.close(1000)
    closed = await opened.next_of(AgentClosed)
    assert closed.error is not None and "ended the session" in closed.error.message
    await opened.session.close()


async def test_close_is_idempotent_and_leaves_no_task(fake: FakeOpenAIRealtime) -> None:
    before = asyncio.all_tasks()
    opened = await open_session(fake, PCMU)
    started = asyncio.all_tasks() - before
    assert {t.get_name() for t in started} >= {"openai-read-call-1", "openai-send-call-1"}
    await opened.session.close("caller hung up")
    await opened.session.close()
    assert all(t.done() for t in started if t.get_name().startswith("openai-"))
    assert await opened.next_event() == AgentClosed(None)
    assert opened.conn.ws.close_code == 1000


async def test_failed_open_still_ends_the_event_stream(fake: FakeOpenAIRealtime) -> None:
    session = OpenAIRealtimeSession(
        AgentConfig(provider="openai", api_key="sk-wrong", base_url=fake.url)
    )
    with pytest.raises(ProviderAuthError) as info:
        await session.open(CONTEXT, PCMU)
    assert await anext(session.events()) == AgentClosed(info.value)


async def test_close_while_opening(fake: FakeOpenAIRealtime) -> None:
    async def never_confirm(conn: FakeOpenAIConnection, message: dict[str, Any]) -> None:
        return None

    fake.on_session_update = never_confirm
    session = OpenAIRealtimeSession(make_config(fake.url))
    opening = asyncio.create_task(session.open(CONTEXT, PCMU))
    conn = await fake.accepted()
    await conn.next_message()
    await session.close("caller hung up while ringing")
    with pytest.raises(ProviderError):
        await opening
    assert await anext(session.events()) == AgentClosed(None)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("openai-")]


def test_missing_api_key_is_a_config_error() -> None:
    with pytest.raises(ProviderConfigError, match="API key"):
        OpenAIRealtimeSession(AgentConfig(provider="openai"))


@pytest.mark.parametrize(
    "options",
    [
        {"turn_detection": "push_to_talk"},
        {"vad_threshold": 2},
        {"voice": 3},
        {"enable_end_call": "yes"},
        {"eagerness": "wild", "turn_detection": "semantic_vad"},
    ],
)
def test_bad_options_are_refused_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ProviderConfigError):
        OpenAIRealtimeSession(make_config("ws://127.0.0.1:9/v1/realtime", **options))


def test_base_url_must_be_a_websocket_url() -> None:
    with pytest.raises(ProviderConfigError, match="ws://"):
        OpenAIRealtimeSession(make_config("https://api.openai.com/v1/realtime"))


# --- the parser never lets peer input escape as anything but ProviderProtocolError ---


@given(
    st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "type",
                            "delta",
                            "item_id",
                            "response",
                            "error",
                            "session",
                            "call_id",
                            "name",
                            "output",
                            "id",
                        ]
                    ),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ).map(json.dumps),
        st.sampled_from(
            [
                "response.output_audio.delta",
                "response.done",
                "error",
                "response.created",
                "session.updated",
            ]
        ).map(
            lambda t: json.dumps(
                {"type": t, "delta": "@@", "response": 1, "error": [], "session": 2}
            )
        ),
    )
)
def test_parser_raises_only_protocol_errors(text: str) -> None:
    try:
        event = parse_server_event(text)
    except ProviderProtocolError as exc:
        assert exc.category is ErrorCategory.PROTOCOL
    else:
        assert type(event).__module__ == "providers.openai_realtime.events"


# --- the sans-I/O conversation core, in virtual time ---


def make_conversation(**options: object) -> RealtimeConversation:
    opts = RealtimeOptions.from_config(make_config("ws://127.0.0.1:1/v1/realtime", **options))
    return RealtimeConversation(opts, NegotiatedFormats(PCMU, PCMU), RealtimeStats())


def feed_audio(conv: RealtimeConversation, item: str, ms: int, now: float) -> None:
    conv.receive_event(ResponseCreated("resp_1"), now)
    conv.receive_event(OutputAudioDelta("resp_1", item, bytes(8 * ms)), now)
    conv.events_received()


def test_speech_long_after_playback_is_not_a_barge_in() -> None:
    conv = make_conversation()
    feed_audio(conv, "item_a", 1000, now=100.0)
    conv.receive_event(ResponseDone_("resp_1", "completed", ("item_a",), "", ""), 100.1)
    conv.events_received()
    # 1 s of audio from t=100 has played by t=101; the slack covers gateway buffering.
    conv.receive_event(SpeechStarted("item_u", 0), 100.0 + 1.0 + PLAYBACK_SLACK_S + 0.01)
    assert conv.events_received() == [CallerSpeechStarted()]
    assert conv.data_to_send() == []


def test_speech_while_audio_may_still_play_is_a_barge_in() -> None:
    conv = make_conversation()
    feed_audio(conv, "item_a", 1000, now=100.0)
    conv.receive_event(SpeechStarted("item_u", 0), 100.0 + 1.0 + PLAYBACK_SLACK_S - 0.01)
    assert conv.events_received() == [CallerSpeechStarted(), AgentInterrupted("item_a")]


def test_bridge_initiated_interruption_cancels_and_truncates() -> None:
    # The bridge's own VAD stopped playback: the server knows nothing, so the running
    # response is cancelled as well as truncated.
    conv = make_conversation()
    feed_audio(conv, "item_a", 800, now=5.0)
    conv.played("item_a", 300)
    assert conv.data_to_send() == [
        {"type": "response.cancel"},
        {
            "type": "conversation.item.truncate",
            "item_id": "item_a",
            "content_index": 0,
            "audio_end_ms": 300,
        },
    ]
    conv.receive_event(OutputAudioDelta("resp_1", "item_a", bytes(160)), 5.1)
    assert conv.events_received() == []
    assert conv.stats.late_deltas_dropped == 1


def test_realtime_url_keeps_other_query_parameters() -> None:
    assert realtime_url(
        "wss://example.openai.azure.com/openai/v1/realtime?api-version=x&model=old", "gpt-realtime"
    ) == ("wss://example.openai.azure.com/openai/v1/realtime?api-version=x&model=gpt-realtime")
