"""Scripted calls through ``CallRunner``: every field of the record, and why each call ended.

The caller side is ``tests.support.memory_leg.MemoryLeg`` (the CallLeg seam's reference
implementation with real paced playout); the agents are the built-in echo agent and the
loopback fakes of OpenAI's Realtime API and of a customer's WebSocket agent
(``tests.providers.fakes``), which speak the real protocols.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.bridge import BridgeResult
from gateway.ids import looks_like, new_id
from gateway.services import Services
from gateway.services.trunks import TrunkState
from media import PCMU, Blame, CallContext, CallEnd, DisconnectReason
from media.g711 import ULAW_SILENCE, encode_ulaw
from models import Call, CallEvent, Trunk
from tests.calls.conftest import wait_for
from tests.providers.fakes.custom_agent import AgentPeer, FakeCustomAgent
from tests.providers.fakes.openai_server import (
    FakeOpenAIRealtime,
    audio_delta,
    response_created,
    speech_started,
    speech_stopped,
)
from tests.support.memory_leg import MemoryLeg

FRAME = bytes([ULAW_SILENCE]) * 160  # 20 ms of PCMU
MEDIA = {
    "packets_received": 512,
    "packets_lost": 3,
    "jitter_max_ms": 12.5,
    "jitter_mean_ms": 4.25,
    "rtt_ms": 61.0,
    "jitter_buffer_ms": 40,
}


async def make_trunk(services: Services, **changes: Any) -> TrunkState:
    account = await services.api_keys.get_or_create_account("acme")
    fields: dict[str, Any] = {"ai_provider": "echo", "sip_username": "acme-main"}
    fields.update(changes)
    return await services.trunks.create(account.id, fields)


def context(**overrides: Any) -> CallContext:
    values: dict[str, Any] = {
        "call_id": "",
        "trunk_id": "",
        "sip_call_id": "a84b4c76e66710@pc33.example.com",
        "from_number": "+14155550100",
        "to_number": "+14155550199",
        "carrier": "telnyx",
        "transport": "udp",
        "source_address": "192.0.2.10:5060",
        "headers": {"X-Customer-Id": "c-42", "X-SIP-Call-ID": "a84b4c76e66710@pc33.example.com"},
    }
    values.update(overrides)
    return CallContext(**values)


async def start_call(
    services: Services,
    trunk: TrunkState,
    leg: MemoryLeg,
    *,
    invite_ago: float = 0.0,
    media: Mapping[str, object] | None = None,
) -> asyncio.Task[BridgeResult]:
    loop = asyncio.get_running_loop()
    now = loop.time()
    timeline: list[tuple[str, dict[str, object]]] = [
        ("invite", {"at": now - invite_ago, "from": "+14155550100"}),
        ("challenge", {"at": now - invite_ago + 0.01}),
        ("authenticated", {"at": now - invite_ago + 0.02, "user": "acme-main"}),
    ]
    stats = dict(media) if media is not None else None
    return loop.create_task(
        services.runner.run(
            trunk=trunk,
            leg=leg,
            transport="udp",
            codec="pcmu/8000",
            timeline=timeline,
            media_stats=(lambda: stats) if stats is not None else None,
        )
    )


async def only_call(services: Services) -> Call:
    calls = await Call.all()
    assert len(calls) == 1, calls
    return calls[0]


async def timeline_of(call: Call) -> list[tuple[int, str, dict[str, Any]]]:
    rows = await CallEvent.filter(call_id=call.id).order_by("offset_ms", "id")
    return [(r.offset_ms, r.name, r.detail) for r in rows]


async def test_caller_hangup_record_has_every_field(services: Services) -> None:
    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg, invite_ago=0.5, media=MEDIA)
    await wait_for(lambda: leg.answered_at is not None)
    assert services.runner.active_calls() == 1
    assert services.runner.active_calls(trunk.trunk.id) == 1
    live = await only_call(services)
    assert live.status in ("ringing", "in-progress")  # written at the start
    for _ in range(10):
        leg.say(FRAME)
    leg.press("5")
    leg.press("#")
    await asyncio.sleep(1.1)
    leg.hang_up()
    result = await task
    assert result.end.reason is DisconnectReason.HANGUP
    assert services.runner.active_calls() == 0

    call = await only_call(services)
    assert looks_like("call", call.id)
    assert call.trunk_id == trunk.trunk.id
    assert call.account_id == trunk.trunk.account_id  # type: ignore[attr-defined]
    assert call.sip_call_id == "a84b4c76e66710@pc33.example.com"
    assert (call.direction, call.from_number, call.to_number) == (
        "inbound",
        "+14155550100",
        "+14155550199",
    )
    assert (call.carrier, call.transport, call.codec) == ("telnyx", "udp", "pcmu/8000")
    assert call.status == "completed"
    assert (call.disconnect_reason, call.blame) == ("hangup", "caller")
    assert call.disconnect_explanation == "Caller hung up"
    assert call.sip_status == 200
    assert call.answer_time is not None and call.end_time is not None
    assert call.start_time < call.answer_time < call.end_time
    # The INVITE came 0.5 s before the runner started: the call starts there.
    assert 0.45 <= (call.answer_time - call.start_time).total_seconds() < 1.0
    talk = (call.end_time - call.answer_time).total_seconds()
    assert 1.1 <= talk < 2.0
    assert call.billable_duration == math.ceil(talk) == 2
    assert call.duration == pytest.approx(
        (call.end_time - call.start_time).total_seconds(), abs=0.01
    )
    # Media statistics from the leg, read at the end.
    assert (call.jitter_max, call.jitter_mean) == (12.5, 4.25)
    assert call.carrier_lag == 30.5  # half the RTCP round trip
    metrics = call.metrics
    assert metrics["media"]["packets_received"] == 512
    assert metrics["media"]["packets_lost"] == 3
    assert metrics["dtmf_digits"] == 2
    assert metrics["interruptions"] == 0
    assert metrics["x_headers"] == {
        "X-Customer-Id": "c-42",
        "X-SIP-Call-ID": "a84b4c76e66710@pc33.example.com",
    }
    assert metrics["latency_segments"]["carrier_lag"] == 30.5
    assert metrics["latency_segments"]["gateway_latency"] is not None  # frames went through
    assert metrics["formats"] == {"agent_input": "pcmu/8000", "agent_output": "pcmu/8000"}

    timeline = await timeline_of(call)
    names = [name for _, name, _ in timeline]
    assert names[:3] == ["invite", "challenge", "authenticated"]
    assert timeline[0][0] == 0 and timeline[1][0] == 10 and timeline[2][0] == 20
    assert timeline[0][2] == {"from": "+14155550100"}
    for expected in ("agent_connected", "answered", "dtmf", "hangup", "ended"):
        assert expected in names
    offsets = {name: offset for offset, name, _ in timeline}
    assert 450 <= offsets["answered"] < 1000
    assert offsets["ended"] >= offsets["hangup"] >= offsets["answered"] + 1100
    assert [d for _, n, d in timeline if n == "dtmf"] == [{"detail": "5"}, {"detail": "#"}]
    assert [o for o, _, _ in timeline] == sorted(o for o, _, _ in timeline)


async def test_agent_latency_per_turn_from_the_openai_fake(services: Services) -> None:
    async with FakeOpenAIRealtime(api_key="sk-good") as fake:
        trunk = await make_trunk(
            services,
            ai_provider="openai",
            openai_api_key="sk-good",
            provider_config={"base_url": fake.url},
        )
        leg = MemoryLeg(PCMU, context())
        task = await start_call(services, trunk, leg)
        conn = await fake.accepted()
        await wait_for(lambda: leg.answered_at is not None)
        for index, delay in enumerate((0.05, 0.15)):
            await conn.send(speech_started(f"item_caller_{index}"))
            await conn.send(speech_stopped(f"item_caller_{index}"))
            await asyncio.sleep(delay)
            await conn.send(response_created(f"resp_{index}"))
            await conn.send(audio_delta(f"item_agent_{index}", FRAME, f"resp_{index}"))
            await asyncio.sleep(0.1)
        leg.hang_up()
        result = await task
    call = await only_call(services)
    turns = call.metrics["ai_latency"]["turns"]
    assert len(turns) == 2 == call.metrics["turns"]
    assert 40 <= turns[0] < 130 and 140 <= turns[1] < 260
    assert call.ai_latency == pytest.approx(sum(turns) / 2, abs=0.2)
    assert call.ai_latency == pytest.approx(result.metrics.ai_latency.mean_ms, abs=0.1)
    assert call.metrics["ai_latency"]["max"] == max(turns)
    assert call.metrics["ai_latency"]["p50"] == min(turns)  # nearest rank of two
    assert call.metrics["latency_segments"]["ai_latency"] == call.ai_latency
    names = [name for _, name, _ in await timeline_of(call)]
    assert names.count("turn") == 2 and "first_agent_audio" in names


def voice_frames(count: int) -> list[bytes]:
    """``count`` 20 ms PCMU frames of a loud two-tone, voice-like sound."""
    frames = []
    for n in range(count):
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
        frames.append(encode_ulaw(pcm))
    return frames


async def test_echo_turn_latency_from_our_vad(services: Services) -> None:
    trunk = await make_trunk(services, provider_config={"delay_ms": 150})
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg)
    await wait_for(lambda: leg.answered_at is not None)
    for frame in [FRAME] * 10 + voice_frames(30) + [FRAME] * 40:
        leg.say(frame)
        await asyncio.sleep(0.02)  # the caller speaks in real time
    await asyncio.sleep(0.3)
    leg.hang_up()
    await task
    call = await only_call(services)
    # Our VAD stamps where the words ended, but knows it only after its hang-over of
    # silence; the echo (which never stops sending) is timed from there, so the figure is
    # at least the echo's delay and at most delay + hang-over + a frame.
    turns = call.metrics["ai_latency"]["turns"]
    assert len(turns) == call.metrics["turns"] == 1
    assert call.ai_latency == turns[0]
    assert 150 <= turns[0] < 1000


async def test_agent_hangup(services: Services) -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json({"type": "accept"})
        await asyncio.sleep(0.2)
        await peer.send_json({"type": "hangup", "reason": "Goodbye said"})
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        trunk = await make_trunk(services, ai_provider="custom", custom_endpoint=agent.url)
        leg = MemoryLeg(PCMU, context())
        result = await (await start_call(services, trunk, leg))
    call = await only_call(services)
    assert result.end.reason is DisconnectReason.AGENT_HANGUP
    assert (call.status, call.disconnect_reason, call.blame) == (
        "completed",
        "agent_hangup",
        "ai_agent",
    )
    assert call.disconnect_explanation == "Goodbye said"
    assert call.billable_duration == 1  # 0.2 s of talk, rounded up


async def test_agent_unreachable(services: Services) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    trunk = await make_trunk(
        services, ai_provider="custom", custom_endpoint=f"ws://127.0.0.1:{port}/agent"
    )
    leg = MemoryLeg(PCMU, context())
    await (await start_call(services, trunk, leg, media=MEDIA))
    call = await only_call(services)
    assert leg.rejected is not None and leg.answered_at is None
    assert (call.status, call.disconnect_reason, call.blame, call.sip_status) == (
        "failed",
        "agent_unreachable",
        "ai_agent",
        503,
    )
    assert call.answer_time is None and call.billable_duration == 0
    assert call.disconnect_explanation
    trunk_row = await Trunk.get(id=trunk.trunk.id)
    assert trunk_row.status == "active"  # unreachable is not a credentials problem


async def test_agent_auth_error_marks_the_trunk(services: Services) -> None:
    async with FakeOpenAIRealtime(api_key="sk-right") as fake:
        trunk = await make_trunk(
            services,
            ai_provider="openai",
            openai_api_key="sk-wrong",
            provider_config={"base_url": fake.url},
        )
        leg = MemoryLeg(PCMU, context())
        await (await start_call(services, trunk, leg))
    call = await only_call(services)
    assert (call.status, call.disconnect_reason, call.blame, call.sip_status) == (
        "failed",
        "agent_error",
        "ai_agent",
        503,
    )
    assert call.metrics["agent_errors"] == {"auth": 1}
    trunk_row = await Trunk.get(id=trunk.trunk.id)
    assert trunk_row.status == "error"
    assert trunk_row.status_reason == call.disconnect_explanation
    text, _ = services.metrics.render()
    assert b'telepath_provider_errors_total{category="auth"} 1.0' in text


async def test_agent_error_mid_call(services: Services) -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json({"type": "accept"})
        await asyncio.sleep(0.2)
        peer.abort()  # the agent's process dies mid-call

    async with FakeCustomAgent(script) as agent:
        trunk = await make_trunk(services, ai_provider="custom", custom_endpoint=agent.url)
        leg = MemoryLeg(PCMU, context())
        await (await start_call(services, trunk, leg))
    call = await only_call(services)
    assert leg.answered_at is not None and leg.hung_up is not None
    assert (call.status, call.disconnect_reason, call.blame, call.sip_status) == (
        "completed",
        "agent_error",
        "ai_agent",
        200,
    )
    assert call.billable_duration == 1
    assert (await Trunk.get(id=trunk.trunk.id)).status == "active"


async def test_max_duration(services: Services) -> None:
    trunk = await make_trunk(services, max_call_duration=1)
    leg = MemoryLeg(PCMU, context())
    await (await start_call(services, trunk, leg))
    call = await only_call(services)
    assert leg.hung_up is not None and leg.hung_up.reason is DisconnectReason.MAX_DURATION
    assert (call.status, call.disconnect_reason, call.blame) == (
        "completed",
        "max_duration",
        "system",
    )
    talk = (call.end_time - call.answer_time).total_seconds()  # type: ignore[operator]
    assert 1.0 <= talk < 1.5  # the limit, plus the hang-up itself
    assert call.billable_duration == math.ceil(talk)
    assert call.disconnect_explanation == "Call reached the maximum duration of 1 s"


async def test_rtp_timeout_from_the_leg(services: Services) -> None:
    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(
        services, trunk, leg, media={"packets_received": 90, "jitter_buffer_ms": 60}
    )
    await wait_for(lambda: leg.answered_at is not None)
    leg.hang_up(CallEnd(DisconnectReason.RTP_TIMEOUT, Blame.CARRIER, "No RTP for 30 s"))
    await task
    call = await only_call(services)
    assert (call.status, call.disconnect_reason, call.blame) == (
        "completed",
        "rtp_timeout",
        "carrier",
    )
    assert call.disconnect_explanation == "No RTP for 30 s"
    assert call.carrier_lag == 60  # no RTCP: the jitter buffer's delay
    assert call.jitter_max is None


async def test_caller_gives_up_while_ringing(services: Services) -> None:
    async with FakeOpenAIRealtime(api_key="sk-good", confirm_session=False) as fake:
        trunk = await make_trunk(
            services,
            ai_provider="openai",
            openai_api_key="sk-good",
            provider_config={"base_url": fake.url},
        )
        leg = MemoryLeg(PCMU, context())
        task = await start_call(services, trunk, leg)
        await fake.accepted()  # the agent never gets ready: the call keeps ringing
        leg.hang_up(CallEnd(DisconnectReason.CANCEL, Blame.CALLER, "Caller cancelled (CANCEL)"))
        await task
    call = await only_call(services)
    assert (call.status, call.disconnect_reason, call.blame, call.sip_status) == (
        "canceled",
        "cancel",
        "caller",
        487,
    )
    assert call.answer_time is None and call.billable_duration == 0


async def test_record_rejected_busy_at_the_cap(services: Services) -> None:
    trunk = await make_trunk(services, max_concurrent_calls=1)
    leg = MemoryLeg(PCMU, context())
    assert not services.runner.at_capacity(trunk)
    task = await start_call(services, trunk, leg)
    await asyncio.sleep(0)  # run() starts: the call counts before its first await
    assert services.runner.at_capacity(trunk)
    await wait_for(lambda: leg.answered_at is not None)
    second = context(sip_call_id="second@pc33.example.com")
    call_id = await services.runner.record_rejected(
        trunk=trunk,
        account_id=None,
        context=second,
        end=CallEnd(DisconnectReason.BUSY, Blame.SYSTEM, "Trunk at its limit of 1 call", 486),
        transport="tcp",
        timeline=[("invite", {}), ("authenticated", {})],
    )
    leg.hang_up()
    await task
    assert not services.runner.at_capacity(trunk)
    assert call_id is not None and looks_like("call", call_id)
    busy = await Call.get(id=call_id)
    assert (busy.status, busy.disconnect_reason, busy.blame, busy.sip_status) == (
        "busy",
        "busy",
        "system",
        486,
    )
    assert busy.trunk_id == trunk.trunk.id and busy.transport == "tcp"
    assert busy.sip_call_id == "second@pc33.example.com"
    assert busy.billable_duration == 0 and busy.answer_time is None
    assert [name for _, name, _ in await timeline_of(busy)] == [
        "invite",
        "authenticated",
        "rejected",
    ]


async def test_record_rejected_auth_cancel_and_unknown(services: Services) -> None:
    trunk = await make_trunk(services)
    runner = services.runner
    auth_id = await runner.record_rejected(
        trunk=trunk,
        account_id=None,
        context=context(),
        end=CallEnd(DisconnectReason.AUTH_FAILED, Blame.CALLER, "Wrong SIP password", 403),
        transport="udp",
    )
    cancel_id = await runner.record_rejected(
        trunk=trunk,
        account_id=None,
        context=context(),
        end=CallEnd(DisconnectReason.CANCEL, Blame.CALLER, "Caller cancelled", 487),
        transport="udp",
    )
    unknown = await runner.record_rejected(
        trunk=None,
        account_id=None,
        context=context(),
        end=CallEnd(DisconnectReason.AUTH_FAILED, Blame.CALLER, "No such user", 404),
        transport="udp",
    )
    assert unknown is None
    assert await Call.all().count() == 2
    auth = await Call.get(id=str(auth_id))
    assert (auth.status, auth.disconnect_reason, auth.blame, auth.sip_status) == (
        "failed",
        "auth_failed",
        "caller",
        403,
    )
    assert auth.disconnect_explanation == "Wrong SIP password"
    cancel = await Call.get(id=str(cancel_id))
    assert (cancel.status, cancel.disconnect_reason, cancel.sip_status) == (
        "canceled",
        "cancel",
        487,
    )
    text, _ = services.metrics.render()
    assert b'telepath_calls_total{blame="caller",status="failed"} 1.0' in text
    assert b'telepath_calls_total{blame="caller",status="canceled"} 1.0' in text


async def test_close_stale_after_a_crash(services: Services) -> None:
    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg)
    await wait_for(lambda: leg.answered_at is not None)
    await asyncio.sleep(0.05)  # the answered update lands
    task.cancel()  # stands in for a crash: the record is left as it was mid-call
    with pytest.raises(asyncio.CancelledError):
        await task
    # A cancelled run() still records the end (shutdown); make a row a crash would leave.
    call = await only_call(services)
    await Call.filter(id=call.id).update(status="in-progress", end_time=None)
    assert await services.calls.close_stale() == 1
    closed = await Call.get(id=call.id)
    assert (closed.status, closed.blame, closed.disconnect_reason) == (
        "failed",
        "system",
        "system_error",
    )
    assert closed.end_time is not None and closed.duration is not None
    assert await services.calls.close_stale() == 0


async def test_metrics_endpoint(services: Services) -> None:
    from gateway.app import create_app

    trunk = await make_trunk(services)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, trunk, leg, media=MEDIA)
    await wait_for(lambda: leg.answered_at is not None)
    client = create_app(services).test_client()
    during = await (await client.get("/metrics")).get_data(as_text=True)
    assert "telepath_active_calls 1.0" in during
    leg.hang_up()
    await task
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.get_data(as_text=True)
    assert "telepath_active_calls 0.0" in text
    assert 'telepath_calls_total{blame="caller",status="completed"} 1.0' in text
    assert "telepath_call_setup_seconds_count 1.0" in text
    assert "telepath_rtp_packets_received_total 512.0" in text
    assert "telepath_rtp_packets_lost_total 3.0" in text
    assert "telepath_call_jitter_max_seconds_count 1.0" in text


async def test_a_pre_made_call_id_and_row_are_reused(services: Services) -> None:
    trunk = await make_trunk(services)
    made = new_id("call")
    # The media-stream webhook made the id and the row while the carrier connected the WS.
    await services.calls.create(
        call_id=made,
        account_id=trunk.trunk.account_id,  # type: ignore[attr-defined]
        context=context(call_id=made, trunk_id=trunk.trunk.id, carrier="twilio"),
        start_time=datetime.now(UTC) - timedelta(seconds=2),
    )
    leg = MemoryLeg(PCMU, context(carrier="twilio", transport="wss"))
    task = asyncio.get_running_loop().create_task(
        services.runner.run(trunk=trunk, leg=leg, transport="wss", codec="pcmu/8000", call_id=made)
    )
    await wait_for(lambda: leg.answered_at is not None)
    leg.hang_up()
    await task
    call = await only_call(services)
    assert call.id == made and call.status == "completed"
    assert (call.carrier, call.transport) == ("twilio", "wss")
    assert call.duration is not None and call.duration >= 2  # from the webhook's start time


async def test_shutdown_ends_running_calls_and_records_them(services: Services) -> None:
    trunk = await make_trunk(services)
    legs = [MemoryLeg(PCMU, context(sip_call_id=f"{n}@pc33.example.com")) for n in range(2)]
    tasks = [await start_call(services, trunk, leg) for leg in legs]
    await wait_for(lambda: all(leg.answered_at is not None for leg in legs))
    assert services.runner.active_calls(trunk.trunk.id) == 2
    async with asyncio.timeout(3):
        await services.runner.shutdown()
    assert services.runner.active_calls() == 0
    for task in tasks:
        assert task.done() and task.result().end.reason is DisconnectReason.SHUTDOWN
    calls = await Call.all()
    assert {(c.status, c.disconnect_reason, c.blame) for c in calls} == {
        ("completed", "shutdown", "system")
    }
    assert all(leg.hung_up is not None for leg in legs)
