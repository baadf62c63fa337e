"""The built-in echo agent, and the provider registry that builds sessions from trunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media import L16_24K, PCMU, AudioFrame, CallContext
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentEvent,
    DtmfRequested,
    NegotiatedFormats,
    ProviderConfigError,
)
from providers.echo import EchoSession
from providers.registry import ADAPTERS, PROVIDERS, create_session

CONTEXT = CallContext("call-1", "trunk-1", "abc@127.0.0.1", "+15550100001", "+15550100002")


async def next_event(events: AsyncIterator[AgentEvent]) -> AgentEvent:
    async with asyncio.timeout(2.0):
        return await anext(events)


async def test_open_takes_the_preferred_format_both_ways() -> None:
    for fmt in (PCMU, L16_24K):
        echo = EchoSession()
        assert await echo.open(CONTEXT, preferred=fmt) == NegotiatedFormats(fmt, fmt)
        assert echo.context is CONTEXT
        await echo.close()


async def test_audio_comes_back_unchanged_after_the_delay() -> None:
    loop = asyncio.get_running_loop()
    echo = EchoSession(delay=0.05)
    await echo.open(CONTEXT, preferred=PCMU)
    events = echo.events()
    sent_at = loop.time()
    echo.send_audio(AudioFrame(PCMU, b"\x11" * 160, 0, received_at=sent_at))
    echo.send_audio(AudioFrame(PCMU, b"\x22" * 160, 20, received_at=sent_at))
    first = await next_event(events)
    assert loop.time() - sent_at >= 0.05
    second = await next_event(events)
    assert isinstance(first, AgentAudio) and isinstance(second, AgentAudio)
    assert (first.frame.payload, second.frame.payload) == (b"\x11" * 160, b"\x22" * 160)
    assert first.frame.received_at is None  # a new frame: the bridge stamps its arrival
    assert first.item_id == second.item_id == "echo-1"
    await echo.close()
    assert isinstance(await next_event(events), AgentClosed)


async def test_played_truncates_the_item_and_starts_a_new_one() -> None:
    echo = EchoSession(delay=0.05)
    await echo.open(CONTEXT, preferred=PCMU)
    events = echo.events()
    for n in range(5):
        echo.send_audio(AudioFrame(PCMU, bytes([n]) * 160))
    echo.played("echo-1", 0)  # the caller barged in before hearing anything
    echo.send_audio(AudioFrame(PCMU, b"\x77" * 160))
    event = await next_event(events)
    assert isinstance(event, AgentAudio)
    assert (event.item_id, event.frame.payload) == ("echo-2", b"\x77" * 160)
    assert echo.truncations == [("echo-1", 0)]
    echo.played("echo-1", 40)  # a stale item: recorded, nothing else changes
    assert echo.item_id == "echo-2"
    echo.mark_played("m1")
    assert echo.marks_played == ["m1"]
    await echo.close()


async def test_dtmf_is_echoed_as_a_dtmf_request() -> None:
    echo = EchoSession(delay=0.0)
    await echo.open(CONTEXT, preferred=PCMU)
    events = echo.events()
    echo.send_dtmf("7")
    assert await next_event(events) == DtmfRequested("7")
    await echo.close()


async def test_pending_echo_is_bounded() -> None:
    echo = EchoSession(delay=5.0, max_pending_frames=3)
    await echo.open(CONTEXT, preferred=PCMU)
    for n in range(5):
        echo.send_audio(AudioFrame(PCMU, bytes([n]) * 160))
    assert echo.dropped_frames == 2
    await echo.close()


async def test_close_is_idempotent_and_ends_a_waiting_stream() -> None:
    echo = EchoSession()
    await echo.open(CONTEXT, preferred=PCMU)
    events = echo.events()
    waiter = asyncio.ensure_future(next_event(events))
    await asyncio.sleep(0.01)
    await echo.close("hangup")
    await echo.close("hangup")
    assert isinstance(await waiter, AgentClosed)
    echo.send_audio(AudioFrame(PCMU, b"\x00" * 160))  # after close: ignored, no error
    with pytest.raises(StopAsyncIteration):
        await next_event(events)


@pytest.mark.parametrize(
    ("options", "delay"), [({}, 0.2), ({"delay_ms": 0}, 0.0), ({"delay_ms": 750.5}, 0.7505)]
)
def test_from_config_reads_delay_ms(options: dict[str, object], delay: float) -> None:
    echo = EchoSession.from_config(AgentConfig("echo", options=options))
    assert echo.delay == pytest.approx(delay)


@pytest.mark.parametrize("bad", ["200", True, None, -1, 10_001, [200]])
def test_from_config_refuses_bad_delays(bad: object) -> None:
    with pytest.raises(ProviderConfigError):
        EchoSession.from_config(AgentConfig("echo", options={"delay_ms": bad}))


# --- providers.registry ---


def test_registry_builds_the_echo_session() -> None:
    session = create_session(AgentConfig(" Echo ", options={"delay_ms": 10}))
    assert isinstance(session, EchoSession) and session.delay == pytest.approx(0.01)


def test_registry_refuses_an_unknown_provider() -> None:
    with pytest.raises(ProviderConfigError, match="unknown AI provider 'acme'"):
        create_session(AgentConfig("acme"))


def test_registry_builds_the_network_adapters_lazily() -> None:
    from providers.custom_ws import CustomAgentSession
    from providers.elevenlabs import ElevenLabsSession
    from providers.openai_realtime import OpenAIRealtimeSession

    def config(provider: str) -> AgentConfig:
        return AgentConfig(
            provider,
            api_key="sk-test",
            endpoint="ws://127.0.0.1:9/agent",
            options={"agent_id": "agent_test"},
        )

    assert isinstance(create_session(config("openai")), OpenAIRealtimeSession)
    assert isinstance(create_session(config("ElevenLabs")), ElevenLabsSession)
    assert isinstance(create_session(config("custom")), CustomAgentSession)
    assert set(PROVIDERS) == {"openai", "elevenlabs", "custom", "echo"}


def test_a_missing_adapter_fails_alone_as_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ADAPTERS, "openai", ("providers.not_installed", "Session"))
    with pytest.raises(ProviderConfigError, match="'openai' is not available"):
        create_session(AgentConfig("openai"))
    monkeypatch.setitem(ADAPTERS, "openai", ("providers.echo", "NoSuchClass"))
    with pytest.raises(ProviderConfigError, match="no session class NoSuchClass"):
        create_session(AgentConfig("openai"))
    assert isinstance(create_session(AgentConfig("echo")), EchoSession)
