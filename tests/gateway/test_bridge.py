"""CallBridge: a MemoryLeg (tests.support, real paced playout) against the echo agent or a
scripted AgentSession.

``ScriptedAgent`` stands in for an external AI provider (OpenAI, ElevenLabs, a customer's
agent), which cannot be reached here: it speaks the ``AgentSession`` contract of
``providers.base`` exactly as an adapter does (events ending with ``AgentClosed``, ``open``
raising ``ProviderError``) and records what the bridge sends it.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridge import BridgeOptions, BridgeResult, CallBridge
from gateway.playout import Handout, PlayoutLedger
from gateway.turns import LatencyStats, LogHistogram, SampleWindow, TurnTracker
from media import (
    L16_24K,
    PCMU,
    AudioFormat,
    AudioFrame,
    Blame,
    CallContext,
    CallEnd,
    DisconnectReason,
)
from media.g711 import ULAW_SILENCE, encode_ulaw
from media.pull import Pull
from media.relay import Relay
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentError,
    AgentEvent,
    AgentInterrupted,
    AgentSession,
    CallerSpeechStopped,
    ClearRequested,
    DtmfRequested,
    HangupRequested,
    MarkRequested,
    NegotiatedFormats,
    ProviderAuthError,
    ProviderConnectError,
    ProviderError,
    ResponseDone,
    TransferRequested,
)
from providers.echo import EchoSession
from providers.registry import create_session
from tests.providers.fakes.openai_server import (
    FakeOpenAIRealtime,
    audio_delta,
    response_created,
    speech_started,
)
from tests.support.memory_leg import MemoryLeg

FRAME = 160  # 20 ms of PCMU


class ScriptedAgent(AgentSession):
    """A provider fake that speaks the AgentSession contract; the test scripts its events."""

    def __init__(
        self,
        formats: NegotiatedFormats | None = None,
        *,
        open_delay: float = 0.0,
        open_error: ProviderError | None = None,
    ) -> None:
        self._formats = formats
        self._open_delay = open_delay
        self._open_error = open_error
        self._relay: Relay[AgentEvent] = Relay()
        self._pull = Pull(self.listen, lambda event: isinstance(event, AgentClosed))
        self._finished = False
        self.opened_with: tuple[CallContext, AudioFormat] | None = None
        self.open_cancelled = False
        self.answered_calls = 0
        self.audio_in: list[AudioFrame] = []
        self.dtmf_in: list[str] = []
        self.played_calls: list[tuple[str, int]] = []
        self.marks_played: list[str] = []
        self.close_reasons: list[str] = []

    def emit(self, *events: AgentEvent) -> None:
        """Hand events to the listener now (as a socket callback would), or hold them."""
        for event in events:
            self._relay.put(event)

    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        self.opened_with = (context, preferred)
        try:
            await asyncio.sleep(self._open_delay)
        except asyncio.CancelledError:
            self.open_cancelled = True
            raise
        if self._open_error is not None:
            raise self._open_error
        return self._formats or NegotiatedFormats(preferred, preferred)

    async def answered(self) -> None:
        self.answered_calls += 1

    def send_audio(self, frame: AudioFrame) -> None:
        self.audio_in.append(frame)

    def send_dtmf(self, digit: str) -> None:
        self.dtmf_in.append(digit)

    def played(self, item_id: str, played_ms: int) -> None:
        self.played_calls.append((item_id, played_ms))

    def mark_played(self, name: str) -> None:
        self.marks_played.append(name)

    def listen(self, on_event: Callable[[AgentEvent], None]) -> None:
        self._relay.listen(on_event)

    def events(self) -> AsyncIterator[AgentEvent]:
        return self._pull()

    async def close(self, reason: str = "") -> None:
        self.close_reasons.append(reason)
        if not self._finished:
            self._finished = True
            self._relay.put(AgentClosed())


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Wait (on the real loop clock) until ``condition()`` holds, polling every 2 ms."""
    async with asyncio.timeout(within):
        # ASYNC110: the conditions are on objects that signal nothing (lists, counters).
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


def start(
    leg: MemoryLeg,
    agent: AgentSession,
    options: BridgeOptions | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[CallBridge, asyncio.Task[BridgeResult]]:
    bridge = CallBridge(leg, agent, options, clock=clock)
    bridge.prepare()
    return bridge, asyncio.create_task(bridge.run())


def pcmu_frames(count: int, seed: int = 1) -> list[bytes]:
    """``count`` distinct 20 ms PCMU payloads (each byte pattern unique per frame)."""
    return [bytes((seed * 31 + n * 7 + i) % 256 for i in range(FRAME)) for n in range(count)]


def l16_tone(ms: int, rate: int = 24000, hz: float = 440.0) -> bytes:
    n = rate * ms // 1000
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(n)
    )


# --- format negotiation and audio paths ---


async def test_pcmu_passthrough_with_echo_is_byte_identical() -> None:
    leg, echo = MemoryLeg(), EchoSession(delay=0.05)
    _, task = start(leg, echo)
    await until(lambda: leg.answered_at is not None)
    payloads = pcmu_frames(10)
    for n, payload in enumerate(payloads):
        leg.say(payload, timestamp=n * 20)
        await asyncio.sleep(0.02)
    await until(lambda: len(leg.sent) == len(payloads))
    leg.hang_up()
    result = await task

    assert leg.sent_payload == b"".join(payloads)
    assert result.formats == NegotiatedFormats(PCMU, PCMU)
    assert result.end == CallEnd.caller_hangup()
    assert echo.context is leg.context and echo.format == PCMU


async def test_pcmu_passthrough_hands_the_same_frames_to_the_agent() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    sent = [leg.say(p) for p in pcmu_frames(5)]
    await until(lambda: len(agent.audio_in) == 5)
    # Agent audio in arbitrary chunk sizes is rechunked to exact 20 ms frames, padded
    # with µ-law silence at the response's end.
    stream = bytes(range(256)) * 2  # 512 bytes = 3 frames + 32 bytes
    for size in (100, 260, 37, 115):
        chunk, stream = stream[:size], stream[size:]
        agent.emit(AgentAudio(AudioFrame(PCMU, chunk), "resp-1"))
    agent.emit(ResponseDone("resp-1"))
    await until(lambda: len(leg.sent) == 4)
    leg.hang_up()
    await task

    assert [f is s for f, s in zip(agent.audio_in, sent, strict=True)] == [True] * 5
    assert agent.opened_with == (leg.context, PCMU)
    assert all(len(frame.payload) == FRAME for _, frame in leg.sent)
    expected = bytes(range(256)) * 2
    assert leg.sent_payload == expected + bytes([ULAW_SILENCE]) * (4 * FRAME - len(expected))


async def test_transcoding_pcmu_leg_to_l16_24k_agent() -> None:
    leg = MemoryLeg()
    agent = ScriptedAgent(NegotiatedFormats(L16_24K, L16_24K))
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    for n in range(10):
        leg.say(bytes([0x10 + n]) * FRAME, timestamp=n * 20)
    await until(lambda: sum(f.duration_ms for f in agent.audio_in) >= 160)
    tone = l16_tone(300)
    for offset in range(0, len(tone), 334):  # odd chunks: 6.96 ms, not whole frames
        agent.emit(AgentAudio(AudioFrame(L16_24K, tone[offset : offset + 334]), "r"))
    agent.emit(ResponseDone("r"))
    await until(lambda: leg.sent_ms >= 280 and not leg.queued_frames)
    await asyncio.sleep(0.05)
    leg.hang_up()
    result = await task

    assert {f.format for f in agent.audio_in} == {L16_24K}
    assert {f.format for _, f in leg.sent} == {PCMU}
    assert all(len(f.payload) == FRAME for _, f in leg.sent)
    # 300 ms in, converted once: 15 frames out, give or take the resampler's delay.
    assert 280 <= leg.sent_ms <= 320
    assert result.metrics.gateway_latency.count > 0
    assert result.end.reason is DisconnectReason.HANGUP


# --- barge-in ---


@pytest.mark.parametrize("talk_s", [0.07, 0.23, 0.41])
async def test_barge_in_reports_what_the_caller_heard_within_one_frame(talk_s: float) -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    payloads = pcmu_frames(100, seed=3)  # 2 s, sent faster than real time in 100 ms chunks
    for n in range(0, 100, 5):
        agent.emit(AgentAudio(AudioFrame(PCMU, b"".join(payloads[n : n + 5])), "resp-1"))
    await until(lambda: len(leg.sent) > 0)
    await asyncio.sleep(talk_s)
    agent.emit(AgentInterrupted("resp-1"))
    await until(lambda: len(agent.played_calls) == 1)
    heard_by_leg = leg.clears[0]
    sent_after_clear = len(leg.sent)
    # Late audio of the interrupted item is dropped; a new response plays.
    agent.emit(AgentAudio(AudioFrame(PCMU, payloads[99]), "resp-1"))
    agent.emit(AgentAudio(AudioFrame(PCMU, b"\x42" * FRAME), "resp-2"))
    await until(lambda: len(leg.sent) == sent_after_clear + 1)
    await asyncio.sleep(0.06)
    leg.hang_up()
    result = await task

    item, heard = agent.played_calls[0]
    assert item == "resp-1"
    assert abs(heard - heard_by_leg) <= 20
    assert talk_s * 1000 - 40 <= heard_by_leg < 2000  # cut part-way, as scripted
    assert leg.sent_payload[: len(leg.sent_payload) - FRAME] == b"".join(
        payloads[:sent_after_clear]
    )
    assert leg.sent[-1][1].payload == b"\x42" * FRAME
    assert agent.played_calls == [("resp-1", heard)]
    assert result.metrics.interruptions == 1
    assert any(e.event == "barge_in" for e in result.timeline)


async def test_clear_requested_acknowledges_agent_marks_behind_dropped_audio() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(AgentAudio(AudioFrame(PCMU, b"\x01" * FRAME * 2), "a"), MarkRequested("m1"))
    await until(lambda: agent.marks_played == ["m1"])
    agent.emit(AgentAudio(AudioFrame(PCMU, b"\x02" * FRAME * 50), "a"), MarkRequested("m2"))
    await asyncio.sleep(0.05)
    assert agent.marks_played == ["m1"]
    agent.emit(ClearRequested())
    await until(lambda: agent.marks_played == ["m1", "m2"])
    sent = len(leg.sent)
    await asyncio.sleep(0.06)
    # ClearRequested does not drop the item's later audio (custom agents reuse ids).
    agent.emit(AgentAudio(AudioFrame(PCMU, b"\x03" * FRAME), "a"))
    await until(lambda: len(leg.sent) == sent + 1)
    leg.hang_up()
    result = await task
    assert leg.sent[-1][1].payload == b"\x03" * FRAME
    assert len(leg.sent) < 2 + 50
    assert result.metrics.interruptions == 1


# --- ends of calls ---


async def test_agent_hangup_request_hangs_up_the_leg_after_the_goodbye() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(
        AgentAudio(AudioFrame(PCMU, b"\x05" * FRAME * 5), "bye"),
        HangupRequested("Conversation finished"),
    )
    result = await task

    assert leg.hung_up == CallEnd(
        DisconnectReason.AGENT_HANGUP, Blame.AI_AGENT, "Conversation finished"
    )
    assert result.end == leg.hung_up
    assert len(leg.sent) == 5  # the goodbye played out before the hang-up
    assert agent.close_reasons == ["agent_hangup"]


async def test_caller_hangup_closes_the_agent_session() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    leg.hang_up()
    result = await task

    assert result.end == CallEnd(DisconnectReason.HANGUP, Blame.CALLER, "Caller hung up")
    assert agent.close_reasons == ["hangup"]
    assert leg.hung_up is None  # the leg was already gone
    assert result.answered_at is not None and result.talk_ms >= 0
    assert [e.event for e in result.timeline][-2:] == ["hangup", "ended"]


async def test_fatal_agent_error_ends_the_call_as_agent_error() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(
        AgentError(ProviderError("transient glitch"), fatal=False),
        AgentError(ProviderAuthError("OpenAI rejected the API key (401)", status=401), fatal=True),
    )
    result = await task

    expected = CallEnd(
        DisconnectReason.AGENT_ERROR, Blame.AI_AGENT, "OpenAI rejected the API key (401)"
    )
    assert result.end == expected and leg.hung_up == expected
    assert result.metrics.agent_errors == {"provider": 1, "auth": 1}
    assert agent.close_reasons == ["agent_error"]


async def test_agent_closing_cleanly_ends_the_call_as_agent_hangup() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(AgentClosed())
    result = await task
    assert result.end.reason is DisconnectReason.AGENT_HANGUP
    assert result.end.blame is Blame.AI_AGENT


async def test_slow_agent_is_rejected_with_503_unreachable() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent(open_delay=30)
    _, task = start(leg, agent, BridgeOptions(agent_ready_timeout=0.05))
    result = await task

    assert leg.answered_at is None
    assert leg.rejected is not None
    assert leg.rejected.reason is DisconnectReason.AGENT_UNREACHABLE
    assert leg.rejected.blame is Blame.AI_AGENT
    assert leg.rejected.sip_status == 503
    assert result.end == leg.rejected and result.answered_at is None
    assert agent.open_cancelled and agent.close_reasons == ["agent_unreachable"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ProviderConnectError("OpenAI could not be reached"), DisconnectReason.AGENT_UNREACHABLE),
        (ProviderAuthError("OpenAI rejected the API key (401)"), DisconnectReason.AGENT_ERROR),
    ],
)
async def test_agent_open_failure_rejects_the_call(
    error: ProviderError, reason: DisconnectReason
) -> None:
    leg, agent = MemoryLeg(), ScriptedAgent(open_error=error)
    _, task = start(leg, agent)
    result = await task
    assert leg.rejected == CallEnd(reason, Blame.AI_AGENT, error.message, sip_status=503)
    assert result.end == leg.rejected
    assert result.metrics.agent_errors == {error.category.value: 1}


async def test_caller_cancel_while_ringing_never_answers() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent(open_delay=30)
    _, task = start(leg, agent)
    await asyncio.sleep(0.01)
    cancel = CallEnd(DisconnectReason.CANCEL, Blame.CALLER, "Caller cancelled")
    leg.hang_up(cancel)
    result = await task
    assert result.end == cancel
    assert leg.answered_at is None and leg.rejected is None
    assert agent.open_cancelled and agent.close_reasons == ["cancel"]


async def test_max_duration_ends_the_call() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent, BridgeOptions(max_duration=0.1))
    result = await task
    assert result.end.reason is DisconnectReason.MAX_DURATION
    assert result.end.blame is Blame.SYSTEM
    assert leg.hung_up == result.end
    assert 90 <= result.talk_ms <= 1000


async def test_end_from_outside_before_answer_rejects() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent(open_delay=30)
    bridge, task = start(leg, agent)
    shutdown = CallEnd(DisconnectReason.SHUTDOWN, Blame.SYSTEM, "Draining", sip_status=503)
    bridge.end(shutdown)
    result = await task
    assert leg.rejected == shutdown and result.end == shutdown


async def test_transfer_request_reaches_the_leg() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(TransferRequested("sip:desk@example.com"))
    result = await task
    assert leg.transferred_to == ["sip:desk@example.com"]
    assert result.end.reason is DisconnectReason.TRANSFER


async def test_failed_transfer_keeps_the_call_up() -> None:
    leg, agent = MemoryLeg(can_transfer=False), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(TransferRequested("+15550100003"))
    await until(lambda: leg.transferred_to == ["+15550100003"])
    await asyncio.sleep(0.02)
    assert not task.done()
    leg.hang_up()
    result = await task
    assert result.end.reason is DisconnectReason.HANGUP
    assert any(e.event == "transfer_failed" for e in result.timeline)


async def test_broken_agent_audio_is_dropped_and_the_call_goes_on() -> None:
    leg = MemoryLeg()
    agent = ScriptedAgent(NegotiatedFormats(L16_24K, L16_24K))
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    agent.emit(
        AgentAudio(AudioFrame(L16_24K, b"\x01\x02\x03"), "r"),  # half a sample
        AgentAudio(AudioFrame(PCMU, b"\x00" * FRAME), "r"),  # not the negotiated format
        AgentAudio(AudioFrame(L16_24K, b""), "r"),  # empty
        AgentAudio(AudioFrame(L16_24K, l16_tone(100)), "r"),
        ResponseDone("r"),
    )
    await until(lambda: leg.sent_ms >= 80)
    assert not task.done()
    leg.hang_up()
    result = await task
    assert result.end.reason is DisconnectReason.HANGUP


# --- DTMF, greeting ---


async def test_dtmf_reaches_the_agent_once_and_agent_dtmf_reaches_the_caller() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent)
    await until(lambda: leg.answered_at is not None)
    leg.press("5")
    leg.press("#")
    agent.emit(DtmfRequested("12"))
    await until(lambda: leg.dtmf_sent == ["12"] and len(agent.dtmf_in) == 2)
    await asyncio.sleep(0.02)
    leg.hang_up()
    result = await task
    assert agent.dtmf_in == ["5", "#"]
    assert agent.answered_calls == 1
    assert [e.detail for e in result.timeline if e.event == "dtmf"] == ["5", "#"]


# --- metrics ---


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_latency_metrics_from_a_scripted_timeline() -> None:
    clock = Clock()
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent, clock=clock)
    await until(lambda: leg.answered_at is not None)
    half = b"\x07" * (FRAME // 2)  # 10 ms: the rechunker holds it until the next half

    async def at(t: float, *events: AgentEvent) -> None:
        clock.now = t
        agent.emit(*events)
        await until(lambda: not agent._relay)  # handed to the bridge
        await asyncio.sleep(0.005)

    # (end of speech, first agent audio, second half → first frame to the leg)
    script = [(1.0, 1.35, 1.40, "a"), (2.0, 2.8, 2.83, "b"), (3.0, 3.1, 3.2, "c")]
    for stop, first, second, item in script:
        await at(stop, CallerSpeechStopped())
        await at(first, AgentAudio(AudioFrame(PCMU, half), item))
        await at(second, AgentAudio(AudioFrame(PCMU, half), item), ResponseDone(item))
    clock.now = 4.0
    leg.hang_up()
    result = await task

    m = result.metrics
    assert m.turns == 3
    ai = m.ai_latency
    assert ai.count == 3
    assert (ai.mean_ms, ai.p50_ms, ai.p95_ms, ai.max_ms) == pytest.approx(
        ((350 + 800 + 100) / 3, 350, 800, 800)
    )
    assert m.ai_latency_ms == pytest.approx(416.6667, abs=1e-3)
    assert m.playout_latency.mean_ms == pytest.approx((400 + 830 + 200) / 3)
    assert m.playout_latency.max_ms == pytest.approx(830)
    turns = [e for e in result.timeline if e.event == "turn"]
    assert [round(t.offset_ms) for t in turns] == [1400, 2830, 3200]
    assert "ai_latency_ms=800.0" in turns[1].detail
    first_audio = next(e for e in result.timeline if e.event == "first_agent_audio")
    assert first_audio.offset_ms == pytest.approx(1350)
    assert result.started_at == 0.0 and result.ended_at == 4.0
    assert result.answer_delay_ms == 0.0


async def test_backpressure_drops_the_oldest_queued_agent_audio() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    options = BridgeOptions(playout_queue_frames=10, playout_lead_ms=200)
    _, task = start(leg, agent, options)
    await until(lambda: leg.answered_at is not None)
    payloads = pcmu_frames(50, seed=9)
    agent.emit(*(AgentAudio(AudioFrame(PCMU, p), "long") for p in payloads))
    await until(lambda: len(leg.sent) == 20, within=5)
    leg.hang_up()
    result = await task
    assert result.metrics.frames_dropped == 30
    assert [f.payload for _, f in leg.sent] == payloads[:10] + payloads[40:]


async def test_our_vad_times_turns_for_agents_without_one() -> None:
    leg, agent = MemoryLeg(), ScriptedAgent()
    _, task = start(leg, agent, BridgeOptions(run_vad=True))
    await until(lambda: leg.answered_at is not None)
    # 600 ms of silence, 600 ms of a loud two-tone voice-like sound, 700 ms of silence.
    for _ in range(30):
        leg.say(bytes([ULAW_SILENCE]) * FRAME)
        await asyncio.sleep(0)
    for n in range(30):
        pcm = b"".join(
            struct.pack(
                "<h",
                int(
                    6000 * math.sin(2 * math.pi * 180 * (n * 160 + i) / 8000)
                    + 3000 * math.sin(2 * math.pi * 720 * (n * 160 + i) / 8000)
                ),
            )
            for i in range(160)
        )
        leg.say(encode_ulaw(pcm))
        await asyncio.sleep(0)
    for _ in range(35):
        leg.say(bytes([ULAW_SILENCE]) * FRAME)
        await asyncio.sleep(0)
    await until(lambda: len(agent.audio_in) == 95)
    agent.emit(AgentAudio(AudioFrame(PCMU, b"\x09" * FRAME), "answer"))
    await until(lambda: len(leg.sent) == 1)
    leg.hang_up()
    result = await task
    assert result.metrics.turns == 1
    assert result.metrics.ai_latency.count == 1


# --- end to end: the real OpenAI adapter against the loopback fake of OpenAI ---


async def test_openai_barge_in_truncates_at_what_the_caller_heard() -> None:
    """PCMU crosses untouched to OpenAI; on OpenAI's speech_started the leg is cleared and
    ``conversation.item.truncate`` carries the audio the memory leg really paced out."""
    async with FakeOpenAIRealtime() as fake:
        config = AgentConfig("openai", api_key="sk-test", base_url=fake.url, connect_timeout=2)
        leg = MemoryLeg()
        _, task = start(leg, create_session(config))
        conn = await fake.accepted()
        assert (await conn.next_message())["type"] == "session.update"
        await until(lambda: leg.answered_at is not None)
        spoken = pcmu_frames(5, seed=5)
        for payload in spoken:
            leg.say(payload)
        assert await conn.wait_audio(5 * FRAME) == b"".join(spoken)

        reply = b"".join(pcmu_frames(100, seed=6))  # 2 s of agent audio, sent at once
        await conn.send(response_created("resp_1"))
        for offset in range(0, len(reply), 800):
            await conn.send(audio_delta("item_a", reply[offset : offset + 800], "resp_1"))
        await until(lambda: len(leg.sent) > 0)
        await asyncio.sleep(0.3)
        await conn.send(speech_started("item_caller_2", ms=2000))
        while (message := await conn.next_message())["type"] != "conversation.item.truncate":
            pass
        leg.hang_up()
        result = await task

    assert message["item_id"] == "item_a"
    assert abs(message["audio_end_ms"] - leg.clears[0]) <= 20
    assert 250 <= leg.clears[0] < 2000
    assert leg.sent_payload == reply[: len(leg.sent_payload)]  # nothing after the cut
    assert result.formats == NegotiatedFormats(PCMU, PCMU)
    assert result.metrics.interruptions == 1
    assert result.end.reason is DisconnectReason.HANGUP


# --- unit: the playout ledger (sans-I/O) against a model leg ---

Op = tuple[str, str | None]


class ModelLeg:
    """The leg contract in miniature: frames go out one per ``send``, marks acknowledge in
    order, ``clear`` drops the queue and acknowledges its marks at once."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, str | None]] = deque()  # (mark, item of the frame before)
        self.heard: dict[str, int] = {}
        self.acks: list[str] = []

    def take(self, handouts: list[Handout]) -> None:
        for h in handouts:
            self.queue.append((h.mark, h.item_id))

    def send(self) -> None:
        """Send the first frame; its mark (and agent marks right behind it) acknowledge."""
        while self.queue:
            mark, item = self.queue.popleft()
            if item is not None:
                self.heard[item] = self.heard.get(item, 0) + 20
            self.acks.append(mark)
            if item is not None:
                break

    def clear(self) -> None:
        self.acks.extend(mark for mark, _ in self.queue)
        self.queue.clear()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("send"), st.none()),
        st.tuples(st.just("mark"), st.none()),
        st.tuples(st.just("clear"), st.sampled_from(["a", "b", "c", None])),
        st.tuples(st.just("clear_keep"), st.none()),  # a custom agent's clear: items go on
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_playout_ledger_reports_exactly_what_the_leg_sent(script: list[Op]) -> None:
    ledger = PlayoutLedger(max_frames=6, lead_frames=3)
    leg = ModelLeg()
    agent_marks_pushed: list[str] = []
    agent_marks_acked: list[str] = []
    frame = AudioFrame(PCMU, b"\xff" * FRAME)

    def drain_acks() -> None:
        while leg.acks:
            forwarded = ledger.acknowledged(leg.acks.pop(0))
            if forwarded is not None:
                agent_marks_acked.append(forwarded)
        leg.take(ledger.pull())

    for op, arg in script:
        if op == "push" and arg is not None and not ledger.is_interrupted(arg):
            ledger.push(arg, frame)
        elif op == "mark":
            name = f"m{len(agent_marks_pushed)}"
            agent_marks_pushed.append(name)
            ledger.push_agent_mark(name)
        elif op == "send":
            leg.send()
        elif op in ("clear", "clear_keep"):
            leg.clear()
            cleared = ledger.clear(arg, truncate=op == "clear")
            agent_marks_acked.extend(cleared.agent_marks)
            for item, heard in cleared.heard:
                assert heard == leg.heard.get(item, 0)
            if arg is not None and arg in {i for i, _ in cleared.heard}:
                assert ledger.is_interrupted(arg)
        drain_acks()
        leg.take(ledger.pull())
        for item in ("a", "b", "c"):
            assert ledger.heard_ms(item) == leg.heard.get(item, 0)
        in_leg = sum(1 for _, item in leg.queue if item is not None)
        assert ledger.in_flight == in_leg <= 3
        assert ledger.queued_frames <= 6
    leg.clear()
    agent_marks_acked.extend(ledger.clear().agent_marks)
    drain_acks()
    assert sorted(agent_marks_acked) == sorted(agent_marks_pushed)  # each exactly once


def test_playout_ledger_ignores_marks_it_did_not_make() -> None:
    ledger = PlayoutLedger(max_frames=4, lead_frames=2)
    ledger.push("a", AudioFrame(PCMU, b"\xff" * FRAME))
    (handout,) = ledger.pull()
    assert handout.mark == "tp:0:20:a" and handout.item_id == "a"
    for junk in ("", "tp", "tp:0", "tp:1:20:a", "tp:0:x:a", "xx:0:20:a", "tp:0:-5:a"):
        assert ledger.acknowledged(junk) is None
    assert ledger.in_flight == 1 and ledger.heard_ms("a") == 0
    assert ledger.acknowledged("agent:tp:0:20:a") == "tp:0:20:a"
    assert ledger.in_flight == 1


# --- unit: metric primitives ---


def test_sample_window_percentiles_are_nearest_rank() -> None:
    window = SampleWindow(cap=100)
    for ms in range(1, 101):
        window.add(float(ms))
    stats = window.stats()
    assert (stats.count, stats.p50_ms, stats.p95_ms, stats.max_ms) == (100, 50, 95, 100)
    assert stats.mean_ms == pytest.approx(50.5)
    assert SampleWindow().stats() == LatencyStats()


def test_log_histogram_stays_within_a_bucket_and_flat() -> None:
    hist = LogHistogram()
    for _ in range(10_000):
        hist.add(0.5)
    hist.add(40.0)
    stats = hist.stats()
    assert stats.count == 10_001 and stats.max_ms == 40.0
    assert 0.5 <= (stats.p50_ms or 0) <= 0.5 * 1.25
    assert len(hist._counts) == 80


def test_turn_tracker_ignores_older_audio_still_playing() -> None:
    tracker = TurnTracker(0.0)
    tracker.caller_speech_stopped(1.0)
    assert tracker.frame_played(1.1, "old") is None
    assert tracker.agent_audio(1.5, "new") == pytest.approx(500)
    assert tracker.frame_played(1.6, "old") is None
    turn = tracker.frame_played(1.7, "new")
    assert turn is not None and turn.playout_ms == pytest.approx(700)
    assert tracker.metrics().turns == 1


def test_timeline_is_capped() -> None:
    tracker = TurnTracker(0.0, timeline_cap=3)
    for n in range(5):
        tracker.note(n, "dtmf", str(n))
    assert [e.detail for e in tracker.timeline] == ["0", "1", "2"]
    assert tracker.timeline_dropped == 2
    assert tracker.timeline[1] == (1000.0, "dtmf", "1")


# --- teardown ---


async def test_a_hundred_calls_leave_no_task_and_no_fd_behind() -> None:
    before_tasks = asyncio.all_tasks()
    before_fds = len(os.listdir("/proc/self/fd"))

    async def one_call(n: int) -> BridgeResult:
        leg, echo = MemoryLeg(), EchoSession(delay=0.0)
        _, task = start(leg, echo)
        await until(lambda: leg.answered_at is not None)
        leg.say(bytes([n]) * FRAME)
        await until(lambda: len(leg.sent) == 1)
        leg.hang_up()
        return await task

    for n in range(100):
        result = await one_call(n)
        assert result.end.reason is DisconnectReason.HANGUP
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before_tasks
    assert len(os.listdir("/proc/self/fd")) == before_fds
