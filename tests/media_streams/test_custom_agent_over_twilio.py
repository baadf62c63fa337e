"""A customer's own agent (a real WebSocket server on loopback) behind a Twilio number.

Covers what only an agent that talks back can show: outbound pacing of a burst, a mark
after every chunk, DTMF reaching the agent, ``clear`` on barge-in, and the agent's
hang-up turning into Twilio's REST hang-up (``POST …/Calls/{CallSid}.json
Status=completed`` with HTTP Basic ``AccountSid:AuthToken``, carriers.md §1.8).
"""

from __future__ import annotations

import asyncio
import base64

from models import Call
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import (
    TWILIO_ACCOUNT,
    TWILIO_CALL,
    TWILIO_TOKEN,
    Gateway,
)
from tests.media_streams.test_twilio_stream import answered, answered_stream_url, final_call
from tests.providers.fakes.custom_agent import AgentPeer, FakeCustomAgent

BURST_MS = 1000
LEAD_FRAMES = 4  # MediaStreamLeg's default lead: 80 ms


def speech(ms: int) -> bytes:
    """Recognisable µ-law bytes (never the silence byte 0xFF)."""
    return bytes((i * 7) % 0x7F for i in range(8 * ms))


async def test_burst_is_paced_marked_cleared_on_barge_in_and_hung_up_over_rest(
    gateway: Gateway,
) -> None:
    seen_by_agent: list[dict[str, object]] = []

    async def script(peer: AgentPeer) -> None:
        start = await peer.expect("start")
        assert start["carrier"] == "twilio"
        await peer.send_json({"type": "accept"})
        await peer.send_media(speech(BURST_MS))  # one second in one message
        while True:
            message = await peer.recv_json()
            seen_by_agent.append(message)
            if message["type"] == "dtmf":
                break
        await peer.send_json({"type": "clear"})  # the caller barged in
        await asyncio.sleep(0.1)
        await peer.send_json({"type": "hangup", "reason": "goodbye"})
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        trunk = await gateway.trunk(
            "tw-custom", ai_provider="custom", custom_endpoint=agent.url, provider_config=None
        )
        url = await answered_stream_url(gateway, trunk.trunk.id)
        connected, start, *_ = recorded_json("twilio_dtmf_mark.jsonl")
        dtmf = next(m for m in recorded_json("twilio_dtmf_mark.jsonl") if m["event"] == "dtmf")
        async with gateway.stream(url) as carrier:
            await carrier.send(connected)
            await carrier.send(start)
            await answered(trunk.trunk.id)
            await carrier.wait_for(lambda: len(carrier.events("media")) >= 20)
            await carrier.send(dtmf)
            await carrier.wait_for(lambda: carrier.events("clear"))
            await carrier.wait_closed()
        await agent.finished()

    # --- pacing: 20 ms messages, never more than the lead ahead of real time ---
    media = carrier.timed("media")
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for _, m in media)
    t0 = media[0][0]
    for index, (at, _) in enumerate(media):
        elapsed_frames = (at - t0) / 0.020
        assert index <= elapsed_frames + LEAD_FRAMES + 2, (index, elapsed_frames)  # no burst
        assert index >= elapsed_frames - 4, (index, elapsed_frames)  # no stall
    gaps = [
        b - a for (a, _), (b, _) in zip(media[LEAD_FRAMES:], media[LEAD_FRAMES + 1 :], strict=False)
    ]
    gaps.sort()
    assert 0.015 <= gaps[len(gaps) // 2] <= 0.025, gaps  # the median spacing is 20 ms

    # --- a mark after every chunk; clear, then no more of the cut audio ---
    kinds = [m["event"] for _, m in carrier.received]
    first_clear = kinds.index("clear")
    before = kinds[:first_clear]
    assert before.count("media") == before.count("mark") or before.count("mark") == (
        before.count("media") - 1
    )
    for i, kind in enumerate(before[:-1]):
        if kind == "media":
            assert before[i + 1] == "mark", before[i : i + 3]
    assert "media" not in kinds[first_clear:]
    assert len(media) < BURST_MS // 20  # the burst was cut short by the barge-in
    # Marks echoed by the clear did not play, and were not taken as played by the bridge.
    assert carrier.events("clear")[0] == {"event": "clear", "streamSid": start["streamSid"]}

    # --- DTMF reached the agent ---
    assert {"type": "dtmf", "digit": "1"}.items() <= seen_by_agent[-1].items()

    # --- the agent's hang-up became Twilio's REST hang-up ---
    path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Calls/{TWILIO_CALL}.json"
    sent = gateway.carrier.seen(path)
    assert len(sent) == 1
    assert sent[0].method == "POST"
    assert sent[0].form() == {"Status": "completed"}
    basic = base64.b64encode(f"{TWILIO_ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    assert sent[0].headers["Authorization"] == f"Basic {basic}"

    call = await final_call(trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("agent_hangup", "ai_agent")
    assert call.metrics["interruptions"] >= 0
    # Twilio's completed callback afterwards does not turn our precise end into a guess.
    completed = recorded_json("twilio_status_callbacks.jsonl")[2]
    assert (await gateway.twilio_post("status", trunk.trunk.id, completed)).status_code == 200
    call = await Call.get(id=call.id)
    assert (call.disconnect_reason, call.blame) == ("agent_hangup", "ai_agent")


async def test_twilio_already_ended_answer_counts_as_done(gateway: Gateway) -> None:
    """Twilio answers 404 / 20404 when the caller hung up first (pipecat PR #2149)."""
    path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Calls/{TWILIO_CALL}.json"
    gateway.carrier.respond(
        path, 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
    )

    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json({"type": "accept"})
        await peer.send_json({"type": "hangup"})
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        trunk = await gateway.trunk(
            "tw-gone", ai_provider="custom", custom_endpoint=agent.url, provider_config=None
        )
        url = await answered_stream_url(gateway, trunk.trunk.id)
        connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
        async with gateway.stream(url) as carrier:
            await carrier.send(connected)
            await carrier.send(start)
            await carrier.wait_closed()
        await agent.finished()
    assert len(gateway.carrier.seen(path)) == 1
    call = await final_call(trunk.trunk.id)
    assert call.disconnect_reason == "agent_hangup"
