"""ElevenLabs adapter against protocol-faithful fakes over real loopback sockets.

Each test drives the real ``ElevenLabsSession`` and asserts what reaches the fake
(initiation data, dynamic variables, pongs and their timing, tool results, audio bytes,
the signed-URL request) and which ``AgentEvent``s come out (providers.md §2, §6.3).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media import L16_16K, PCMU, AudioFrame, CallContext
from media.inbox import Inbox
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    ErrorCategory,
    HangupRequested,
    NegotiatedFormats,
    ProviderAuthError,
    ProviderConfigError,
    ProviderConnectError,
    ProviderProtocolError,
    TranscriptReceived,
    TransferRequested,
)
from providers.elevenlabs import ElevenLabsSession
from providers.elevenlabs.events import parse_server_event
from providers.elevenlabs.options import variable_name
from tests.providers.fakes.elevenlabs_server import (
    FakeConvaiConnection,
    FakeElevenLabs,
    FakeElevenLabsApi,
    audio,
    client_tool_call,
    interruption,
    ping,
)
from tests.providers.fakes.openai_server import SilentServer

AGENT = "agent_7401k2"
CONTEXT = CallContext(
    call_id="call-9",
    trunk_id="trunk-2",
    sip_call_id="a84b4c76e66710@pc33.carrier.example",
    from_number="+14155550100",
    to_number="+14155550199",
    headers={
        "X-Customer-Tier": "gold",
        "X-SIP-Call-ID": "a84b4c76e66710",
        "X-Call-Id": "forged",
        "X-System--Secret": "s",
    },
    custom_parameters={"lang": "de", "system__caller_id": "+1900"},
)


def make_config(url: str, **options: object) -> AgentConfig:
    return AgentConfig(
        provider="elevenlabs",
        options={"agent_id": AGENT, **options},
        base_url=url,
        connect_timeout=2.0,
    )


class Opened:
    def __init__(
        self, session: ElevenLabsSession, conn: FakeConvaiConnection, fmt: NegotiatedFormats
    ) -> None:
        self.session = session
        self.conn = conn
        self.formats = fmt
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


async def open_session(fake: FakeElevenLabs, *, answered: bool = True, **options: object) -> Opened:
    session = ElevenLabsSession(make_config(fake.url, **options))
    fmt = await session.open(CONTEXT, PCMU)
    opened = Opened(session, await fake.accepted(), fmt)
    if answered:
        await session.answered()
    return opened


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(agent_id=AGENT) as server:
        yield server


# --- conversation start (providers.md §2.1-§2.3) ---


async def test_initiation_data_carries_call_metadata_and_overrides(
    fake: FakeElevenLabs,
) -> None:
    config = AgentConfig(
        provider="elevenlabs",
        system_prompt="You answer for Acme.",
        base_url=fake.url,
        options={
            "agent_id": AGENT,
            "first_message": "Hi, Acme here.",
            "voice_id": "21m00Tcm",
            "language": "de",
        },
    )
    session = ElevenLabsSession(config)
    formats = await session.open(CONTEXT, PCMU)
    conn = await fake.accepted()
    assert conn.query == {"agent_id": [AGENT]}
    assert formats == NegotiatedFormats(PCMU, PCMU)
    assert session.conversation_id == "conv_01jx8m2k3n4p"
    first = conn.initiation
    assert first["conversation_config_override"] == {
        "agent": {
            "prompt": {"prompt": "You answer for Acme."},
            "first_message": "Hi, Acme here.",
            "language": "de",
        },
        "tts": {"voice_id": "21m00Tcm"},
    }
    assert first["dynamic_variables"] == {
        "lang": "de",
        "x_customer_tier": "gold",
        "x_sip_call_id": "a84b4c76e66710",
        "x_call_id": "forged",
        "x_system_secret": "s",
        "call_id": "call-9",
        "trunk_id": "trunk-2",
        "sip_call_id": "a84b4c76e66710@pc33.carrier.example",
        "from_number": "+14155550100",
        "to_number": "+14155550199",
        "direction": "inbound",
        "carrier": "sip",
    }
    await session.close()


async def test_no_override_without_settings(fake: FakeElevenLabs) -> None:
    fake.refuse_overrides = True  # like an agent with overrides disabled
    opened = await open_session(fake)
    assert "conversation_config_override" not in opened.conn.initiation
    await opened.session.close()


async def test_refused_override_is_a_config_error(fake: FakeElevenLabs) -> None:
    fake.refuse_overrides = True
    session = ElevenLabsSession(make_config(fake.url, greeting="Hello!"))
    with pytest.raises(ProviderConfigError, match="not allowed"):
        await session.open(CONTEXT, PCMU)


async def test_formats_come_from_the_agent_metadata() -> None:
    async with FakeElevenLabs(
        agent_id=AGENT, user_format="pcm_16000", agent_format="pcm_16000"
    ) as fake:
        opened = await open_session(fake)
        assert opened.formats == NegotiatedFormats(L16_16K, L16_16K)
        opened.session.send_audio(AudioFrame(PCMU, bytes(160)))  # wrong format: dropped
        assert opened.session.stats.audio_frames_dropped == 1
        await opened.session.close()


async def test_unsupported_agent_format_is_a_config_error() -> None:
    async with FakeElevenLabs(agent_id=AGENT, agent_format="pcm_44100") as fake:
        with pytest.raises(ProviderConfigError, match="ulaw_8000"):
            await ElevenLabsSession(make_config(fake.url)).open(CONTEXT, PCMU)


async def test_pings_before_metadata_are_answered(fake: FakeElevenLabs) -> None:
    fake.pings_before_metadata = 2
    opened = await open_session(fake)
    assert [await opened.conn.next_message() for _ in range(2)] == [
        {"type": "pong", "event_id": 100},
        {"type": "pong", "event_id": 101},
    ]
    await opened.session.close()


async def test_unknown_agent_is_a_config_error(fake: FakeElevenLabs) -> None:
    session = ElevenLabsSession(make_config(fake.url, agent_id="agent_missing"))
    with pytest.raises(ProviderConfigError) as info:
        await session.open(CONTEXT, PCMU)
    assert info.value.status == 404


@pytest.mark.parametrize(
    "options",
    [{"agent_id": None}, {"agent_id": "a b/../c"}, {"enable_end_call": 1}, {"voice_id": 5}],
)
def test_bad_options_are_refused_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ProviderConfigError):
        ElevenLabsSession(make_config("ws://127.0.0.1:9/x", **options))


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ProviderConfigError, match="ws://"):
        ElevenLabsSession(make_config("https://api.elevenlabs.io/v1/convai/conversation"))


async def test_bad_api_url_is_a_config_error() -> None:
    config = AgentConfig(
        provider="elevenlabs", api_key="k", options={"agent_id": AGENT}, api_url="ftp://x"
    )
    with pytest.raises(ProviderConfigError, match="http"):
        await ElevenLabsSession(config).open(CONTEXT, PCMU)


async def test_metadata_never_sent_times_out() -> None:
    async with FakeElevenLabs(agent_id=AGENT, send_metadata=False) as fake:
        config = AgentConfig(
            provider="elevenlabs",
            options={"agent_id": AGENT},
            base_url=fake.url,
            connect_timeout=0.2,
        )
        with pytest.raises(ProviderConnectError, match="did not start the conversation"):
            await ElevenLabsSession(config).open(CONTEXT, PCMU)


async def test_slow_handshake_times_out() -> None:
    async with SilentServer() as silent:
        config = AgentConfig(
            provider="elevenlabs",
            options={"agent_id": AGENT},
            base_url=silent.url,
            connect_timeout=0.2,
        )
        with pytest.raises(ProviderConnectError, match="within 0.2 s"):
            await ElevenLabsSession(config).open(CONTEXT, PCMU)


# --- private agents: signed URL (providers.md §2.1) ---


async def test_private_agent_connects_through_signed_url() -> None:
    async with (
        FakeElevenLabs(agent_id=AGENT, private=True) as fake,
        FakeElevenLabsApi(api_key="xi-secret", agent_id=AGENT, signed_base=fake.url) as api,
    ):
        config = AgentConfig(
            provider="elevenlabs", api_key="xi-secret", options={"agent_id": AGENT}, api_url=api.url
        )
        session = ElevenLabsSession(config)
        assert await session.open(CONTEXT, PCMU) == NegotiatedFormats(PCMU, PCMU)
        assert len(api.requests) == 1
        request, headers = api.requests[0]
        assert request == f"GET /v1/convai/conversation/get-signed-url?agent_id={AGENT}"
        assert headers["xi-api-key"] == "xi-secret"
        conn = await fake.accepted()
        assert conn.query["conversation_signature"] == ["sig_4f1c2a"]
        await session.close()


async def test_private_agent_without_signature_is_refused() -> None:
    async with FakeElevenLabs(agent_id=AGENT, private=True) as fake:
        with pytest.raises(ProviderAuthError):
            await ElevenLabsSession(make_config(fake.url)).open(CONTEXT, PCMU)


@pytest.mark.parametrize(
    ("status", "error", "category"),
    [
        (401, ProviderAuthError, ErrorCategory.AUTH),
        (404, ProviderConfigError, ErrorCategory.CONFIG),
        (429, Exception, ErrorCategory.RATE_LIMIT),
        (503, Exception, ErrorCategory.PROVIDER),
    ],
)
async def test_signed_url_errors_are_categorised(
    status: int, error: type[Exception], category: ErrorCategory
) -> None:
    async with FakeElevenLabsApi(
        api_key="xi-secret", agent_id=AGENT, signed_base="ws://127.0.0.1:9/x"
    ) as api:
        api.status = status
        config = AgentConfig(
            provider="elevenlabs", api_key="xi-secret", options={"agent_id": AGENT}, api_url=api.url
        )
        with pytest.raises(error) as info:
            await ElevenLabsSession(config).open(CONTEXT, PCMU)
        assert getattr(info.value, "category", None) is category


async def test_wrong_api_key_on_rest_is_an_auth_error() -> None:
    async with FakeElevenLabsApi(
        api_key="xi-secret", agent_id=AGENT, signed_base="ws://127.0.0.1:9/x"
    ) as api:
        config = AgentConfig(
            provider="elevenlabs", api_key="xi-wrong", options={"agent_id": AGENT}, api_url=api.url
        )
        with pytest.raises(ProviderAuthError) as info:
            await ElevenLabsSession(config).open(CONTEXT, PCMU)
        assert info.value.status == 401


async def test_unreachable_rest_api_is_a_connect_error() -> None:
    async with FakeElevenLabsApi(api_key="k", agent_id=AGENT, signed_base="ws://x") as api:
        url = api.url
    config = AgentConfig(
        provider="elevenlabs", api_key="k", options={"agent_id": AGENT}, api_url=url
    )
    with pytest.raises(ProviderConnectError):
        await ElevenLabsSession(config).open(CONTEXT, PCMU)


# --- audio, pings, barge-in ---


async def test_ulaw_passes_through_unchanged_both_ways(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    caller = bytes(range(256)) + bytes(64)
    for i in range(0, len(caller), 160):
        opened.session.send_audio(AudioFrame(PCMU, caller[i : i + 160]))
    assert await opened.conn.wait_audio(len(caller)) == caller
    agent = bytes((i * 13) % 256 for i in range(1600))
    await opened.conn.send(audio(1, agent))
    received = bytearray()
    while len(received) < len(agent):
        event = await opened.next_of(AgentAudio)
        assert event.item_id == "1" and event.frame.format == PCMU
        received += event.frame.payload
    assert bytes(received) == agent
    await opened.session.close()


async def test_first_message_audio_is_held_until_answered(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake, answered=False)
    await opened.conn.send(audio(1, bytes(320)))
    await opened.conn.send(
        {"type": "agent_response", "agent_response_event": {"agent_response": "Hello!"}}
    )
    assert await opened.next_event() == TranscriptReceived("agent", "Hello!")
    await opened.session.answered()
    first = await opened.next_event()
    assert isinstance(first, AgentAudio) and first.item_id == "1"
    await opened.session.close()


async def test_pong_goes_back_at_once(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await opened.conn.send(ping(42, ping_ms=87))
    arrived_at, message = await opened.conn.next_timed()
    assert message == {"type": "pong", "event_id": 42}
    assert arrived_at - sent_at < 0.05  # "reply at once"; loopback makes it ~1 ms
    assert opened.session.stats.last_ping_ms == 87
    assert opened.session.stats.pings_answered == 1
    await opened.session.close()


async def test_interruption_drops_stale_audio(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    conn = opened.conn
    await conn.send(audio(5, bytes(160)))
    assert (await opened.next_of(AgentAudio)).item_id == "5"
    await conn.send(interruption(5))
    assert await opened.next_event() == AgentInterrupted("5")
    opened.session.played("5", 20)  # nothing to send to ElevenLabs
    await conn.send(audio(5, bytes(160)))  # in flight when the caller barged in
    await conn.send(audio(4, bytes(160)))
    await conn.send(audio(6, b"\x11" * 160))
    fresh = await opened.next_event()
    assert isinstance(fresh, AgentAudio) and fresh.item_id == "6"
    assert fresh.frame.payload == b"\x11" * 160
    assert opened.session.stats.stale_audio_dropped == 2
    await opened.session.close()


async def test_transcripts_ignored_unknown_and_malformed_events(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    conn = opened.conn
    await conn.send({"type": "vad_score", "vad_score_event": {"vad_score": 0.93}})
    await conn.send(
        {
            "type": "internal_tentative_agent_response",
            "tentative_agent_response_internal_event": {"tentative_agent_response": "x"},
        }
    )
    await conn.send({"type": "guardrail_triggered", "guardrail_triggered_event": {}})
    await conn.send(
        {
            "type": "user_transcript",
            "user_transcription_event": {"user_transcript": "My bill is wrong"},
        }
    )
    assert await opened.next_event() == TranscriptReceived("user", "My bill is wrong")
    assert opened.session.stats.unknown_events == 1
    await conn.send({"type": "audio", "audio_event": {"event_id": "seven"}})
    error = await opened.next_event()
    assert isinstance(error, AgentError) and not error.fatal
    assert error.error.category is ErrorCategory.PROTOCOL
    await conn.send(audio(7, bytes(160)))
    assert (await opened.next_of(AgentAudio)).item_id == "7"
    await opened.session.close()


# --- DTMF and tools ---


async def test_dtmf_is_a_contextual_update(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake, dtmf_template="Caller pressed {digit} on the keypad.")
    opened.session.send_dtmf("3")
    opened.session.send_dtmf("33")  # not one digit: ignored
    opened.session.send_dtmf("*")
    assert await opened.conn.next_message() == {
        "type": "contextual_update",
        "text": "Caller pressed 3 on the keypad.",
    }
    assert (await opened.conn.next_message())["text"] == "Caller pressed * on the keypad."
    await opened.session.close()


async def test_client_tools_and_clean_close_after_end_call(fake: FakeElevenLabs) -> None:
    opened = await open_session(
        fake, enable_end_call=True, enable_transfer=True, transfer_target="sip:desk@pbx.example.com"
    )
    conn = opened.conn
    await conn.send(client_tool_call("lookup_order", "tc_0", {"id": 1}))
    assert await conn.next_message() == {
        "type": "client_tool_result",
        "tool_call_id": "tc_0",
        "result": "the tool 'lookup_order' is not available",
        "is_error": True,
    }
    await conn.send(client_tool_call("transfer_call", "tc_1", {"target": "+19005550000"}))
    # The configured target wins over what the model asked for.
    assert await opened.next_of(TransferRequested) == TransferRequested("sip:desk@pbx.example.com")
    assert (await conn.next_message())["tool_call_id"] == "tc_1"
    await conn.send(client_tool_call("end_call", "tc_2", {"reason": "resolved"}))
    assert await opened.next_of(HangupRequested) == HangupRequested("resolved")
    assert await conn.next_message() == {
        "type": "client_tool_result",
        "tool_call_id": "tc_2",
        "result": "ok",
        "is_error": False,
    }
    await conn.ws.close(1000, "Conversation ended")
    assert await opened.next_event() == AgentClosed(None)
    await opened.session.close()


async def test_end_call_system_tool_is_a_hangup(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    await opened.conn.send(
        {
            "type": "agent_tool_response",
            "agent_tool_response": {
                "tool_name": "end_call",
                "tool_call_id": "t9",
                "tool_type": "system",
                "is_error": False,
            },
        }
    )
    assert await opened.next_event() == HangupRequested("agent ended the call")
    await opened.session.close()


# --- ending ---


async def test_abrupt_close_is_fatal_then_closed(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    assert opened.conn.ws.transport is not None
    opened.conn.ws.transport.abort()
    error = await opened.next_event()
    assert isinstance(error, AgentError) and error.fatal
    assert error.error.category is ErrorCategory.CONNECTIVITY
    closed = await opened.next_event()
    assert isinstance(closed, AgentClosed) and closed.error is error.error
    await opened.session.close()


async def test_unexpected_normal_close_mid_call_is_an_error(fake: FakeElevenLabs) -> None:
    opened = await open_session(fake)
    await opened.conn.ws.close(1000)
    error = await opened.next_event()
    assert isinstance(error, AgentError) and error.fatal
    assert "ended the conversation" in error.error.message
    assert isinstance(await opened.next_event(), AgentClosed)
    await opened.session.close()


async def test_close_is_idempotent_and_leaves_no_task(fake: FakeElevenLabs) -> None:
    before = asyncio.all_tasks()
    opened = await open_session(fake)
    started = {t for t in asyncio.all_tasks() - before if t.get_name().startswith("elevenlabs-")}
    assert len(started) == 2
    await opened.session.close("bye")
    await opened.session.close("bye")
    assert all(t.done() for t in started)
    assert await opened.next_event() == AgentClosed(None)
    assert opened.conn.ws.close_code == 1000


# --- pure parts ---


def test_variable_names() -> None:
    assert variable_name("X-Customer-Tier") == "x_customer_tier"
    assert variable_name("--") == ""


@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=20),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(
                    [
                        "audio",
                        "ping",
                        "interruption",
                        "client_tool_call",
                        "conversation_initiation_metadata",
                        "agent_response",
                        "user_transcript",
                        "agent_tool_response",
                        "x",
                    ]
                )
            },
            optional={
                k: st.one_of(
                    st.none(),
                    st.integers(),
                    st.text(max_size=5),
                    st.dictionaries(
                        st.text(max_size=12), st.integers() | st.text(max_size=8), max_size=3
                    ),
                )
                for k in (
                    "audio_event",
                    "ping_event",
                    "interruption_event",
                    "client_tool_call",
                    "agent_response_event",
                    "conversation_initiation_metadata_event",
                    "agent_tool_response",
                )
            },
        ).map(json.dumps),
    )
)
def test_parser_raises_only_protocol_errors(message: str | bytes) -> None:
    try:
        event = parse_server_event(message)
    except ProviderProtocolError as exc:
        assert exc.category is ErrorCategory.PROTOCOL
    else:
        assert type(event).__module__ == "providers.elevenlabs.events"
