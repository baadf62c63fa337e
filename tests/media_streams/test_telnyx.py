"""Telnyx numbers end to end: TeXML and Call Control, over a real WebSocket.

Webhooks are signed with an Ed25519 key pair made here, exactly as Telnyx signs them
(``telnyx-signature-ed25519`` over ``"{telnyx-timestamp}|{raw body}"``, carriers.md §2.6);
the stream replays tests/data/media_streams/telnyx_*.jsonl (written from TX-MS); the
Telnyx REST API is ``FakeCarrierApi``, which records what Telepath sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from media.g711 import decode_alaw, encode_ulaw
from models import Call
from tests.ingress.media_streams.conftest import recorded, recorded_json
from tests.media_streams.conftest import CALLED, CALLER, TELNYX_CALL, Gateway, stream_url_of
from tests.media_streams.test_twilio_stream import answered, final_call
from tests.providers.fakes.custom_agent import AgentPeer, FakeCustomAgent

TEXML_ACCOUNT = "f5586561-8ff0-4291-a51b-c7dfe4139ff9"
FORM = "application/x-www-form-urlencoded"


def texml_voice_form(status: str = "ringing") -> bytes:
    """A TeXML voice webhook (Twilio-shaped form, CallSid = call_control_id; TX-TEXML-CB)."""
    return urlencode(
        {
            "AccountSid": TEXML_ACCOUNT,
            "CallSid": TELNYX_CALL,
            "CallSidLegacy": TELNYX_CALL,
            "CallStatus": status,
            "Direction": "inbound",
            "From": CALLER,
            "To": CALLED,
        }
    ).encode()


def call_event(kind: str) -> bytes:
    """A Call Control webhook body from the recording, byte for byte."""
    for line in recorded("telnyx_call_events.jsonl"):
        if json.loads(line)["data"]["event_type"] == kind:
            return line.encode()
    raise AssertionError(kind)


async def texml_stream_url(gateway: Gateway, trunk_id: str) -> str:
    response = await gateway.telnyx_post(trunk_id, texml_voice_form(), content_type=FORM)
    assert response.status_code == 200, response.text
    return stream_url_of(response.text)


async def test_texml_answer_is_a_bidirectional_rtp_stream(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tx-texml")
    response = await gateway.telnyx_post(trunk.trunk.id, texml_voice_form(), content_type=FORM)
    assert response.status_code == 200
    root = ET.fromstring(response.text.split("?>", 1)[1])
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.attrib["bidirectionalMode"] == "rtp"  # TeXML's default mp3 would not play
    assert stream.attrib["bidirectionalCodec"] == "PCMU"
    assert stream.attrib["url"].startswith(f"{gateway.stream_origin}/v1/media/telnyx/")
    call = await Call.get(trunk_id=trunk.trunk.id)
    assert (call.carrier, call.sip_call_id, call.status) == ("telnyx", TELNYX_CALL, "ringing")


async def test_tampered_body_stale_timestamp_or_other_key_is_refused_403(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tx-sig")
    tid = trunk.trunk.id
    body = texml_voice_form()
    good = gateway.telnyx_headers(body)
    tampered = body.replace(CALLER.encode().replace(b"+", b"%2B"), b"%2B15550100099")
    assert tampered != body
    assert (
        await gateway.telnyx_post(tid, tampered, content_type=FORM, headers=good)
    ).status_code == 403
    stale = gateway.telnyx_headers(body, at=time.time() - 301)
    assert (
        await gateway.telnyx_post(tid, body, content_type=FORM, headers=stale)
    ).status_code == 403
    future = gateway.telnyx_headers(body, at=time.time() + 400)
    assert (
        await gateway.telnyx_post(tid, body, content_type=FORM, headers=future)
    ).status_code == 403
    # The signature of another timestamp (replayed under a fresh telnyx-timestamp header).
    replayed = {**good, "telnyx-timestamp": str(int(time.time()) - 5)}
    assert (
        await gateway.telnyx_post(tid, body, content_type=FORM, headers=replayed)
    ).status_code == 403
    # Signed by another key (another Telnyx account, or an attacker).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stamp = str(int(time.time()))
    other = Ed25519PrivateKey.generate().sign(stamp.encode() + b"|" + body)
    forged = {
        "telnyx-signature-ed25519": base64.b64encode(other).decode(),
        "telnyx-timestamp": stamp,
    }
    assert (
        await gateway.telnyx_post(tid, body, content_type=FORM, headers=forged)
    ).status_code == 403
    assert (await gateway.telnyx_post(tid, body, content_type=FORM, headers={})).status_code == 403
    assert await Call.all().count() == 0
    assert (
        await gateway.telnyx_post(tid, body, content_type=FORM, headers=good)
    ).status_code == 200


async def test_texml_rejections(gateway: Gateway) -> None:
    unknown = await gateway.telnyx_post("trunk_nope", texml_voice_form(), content_type=FORM)
    assert unknown.status_code == 200 and "<Reject />" in unknown.text
    inactive = await gateway.trunk("tx-off", status="inactive")
    reply = await gateway.telnyx_post(inactive.trunk.id, texml_voice_form(), content_type=FORM)
    assert "<Reject />" in reply.text
    numbers = await gateway.trunk("tx-numbers", inbound_numbers=["+15550100077"])
    reply = await gateway.telnyx_post(numbers.trunk.id, texml_voice_form(), content_type=FORM)
    assert '<Reject reason="rejected" />' in reply.text
    assert len(gateway.hub.tokens) == 0


async def test_pcma_call_is_decoded_as_pcma_and_answered_in_pcmu(gateway: Gateway) -> None:
    """Telnyx may stream PCMA although PCMU was asked for (carriers.md §4): the leg
    follows ``start``; what we send back is the PCMU that ``bidirectionalCodec`` promised."""
    trunk = await gateway.trunk("tx-pcma")
    url = await texml_stream_url(gateway, trunk.trunk.id)
    connected, start, *media, stop = recorded_json("telnyx_pcma_start.jsonl")
    async with gateway.stream(url, telnyx=True) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await answered(trunk.trunk.id)
        for message in media:
            await carrier.send(message)
            await asyncio.sleep(0.02)
        await carrier.wait_for(lambda: len(carrier.events("media")) >= len(media))
        await carrier.wait_for(lambda: len(carrier.echoed) >= len(media))
        await carrier.send(stop)
        await carrier.wait_closed()
    alaw = b"".join(base64.b64decode(m["media"]["payload"]) for m in media)
    back = b"".join(base64.b64decode(m["media"]["payload"]) for m in carrier.events("media"))
    assert back == encode_ulaw(decode_alaw(alaw))
    assert all(set(m) <= {"event", "stream_id", "media", "mark"} for _, m in carrier.received)
    call = await final_call(trunk.trunk.id)
    assert call.codec == "pcma/8000"
    assert (call.carrier, call.disconnect_reason, call.blame) == ("telnyx", "hangup", "caller")
    assert call.metrics["media"]["packets_received"] == len(media)


async def test_texml_agent_hang_up_uses_the_texml_rest_hangup(gateway: Gateway) -> None:
    async def script(peer: AgentPeer) -> None:
        await peer.expect("start")
        await peer.send_json({"type": "accept"})
        await peer.send_json({"type": "hangup", "reason": "done"})
        await peer.wait_closed()

    async with FakeCustomAgent(script) as agent:
        trunk = await gateway.trunk(
            "tx-hangup", ai_provider="custom", custom_endpoint=agent.url, provider_config=None
        )
        url = await texml_stream_url(gateway, trunk.trunk.id)
        connected, start, *_ = recorded_json("telnyx_rtp_pcmu.jsonl")
        async with gateway.stream(url, telnyx=True) as carrier:
            await carrier.send(connected)
            await carrier.send(start)
            await carrier.wait_closed()
        await agent.finished()
    path = f"/v2/texml/Accounts/{TEXML_ACCOUNT}/Calls/{TELNYX_CALL}"
    sent = gateway.carrier.seen(path)
    assert len(sent) == 1 and sent[0].method == "POST"
    assert sent[0].headers["Authorization"] == "Bearer KEYtelnyx-test-api-key"
    assert sent[0].json() == {"Status": "completed"}
    call = await final_call(trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("agent_hangup", "ai_agent")


async def test_call_control_answers_streams_and_completes_on_hangup(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tx-cc", telnyx_mode="call_control")
    initiated = call_event("call.initiated")
    reply = await gateway.telnyx_post(trunk.trunk.id, initiated, content_type="application/json")
    assert reply.status_code == 200
    # A retried delivery of the same event is not answered twice.
    again = await gateway.telnyx_post(trunk.trunk.id, initiated, content_type="application/json")
    assert again.status_code == 200
    base = f"/v2/calls/{TELNYX_CALL}/actions"
    answers = gateway.carrier.seen(f"{base}/answer")
    starts = gateway.carrier.seen(f"{base}/streaming_start")
    assert len(answers) == 1 and len(starts) == 1
    assert answers[0].headers["Authorization"] == "Bearer KEYtelnyx-test-api-key"
    body = starts[0].json()
    assert body["stream_bidirectional_mode"] == "rtp"
    assert body["stream_bidirectional_codec"] == "PCMU"
    assert body["stream_track"] == "inbound_track"
    assert body["stream_url"].startswith(f"{gateway.stream_origin}/v1/media/telnyx/")
    call = await Call.get(trunk_id=trunk.trunk.id)
    assert base64.b64decode(body["client_state"]).decode() == call.id
    auth = body["stream_auth_token"]
    assert len(auth) >= 32 and auth not in body["stream_url"]

    # The socket presents the token Telnyx was given; the media flows.
    connected, start, *_ = recorded_json("telnyx_rtp_pcmu.jsonl")
    media = [m for m in recorded_json("telnyx_rtp_pcmu.jsonl") if m["event"] == "media"]
    async with gateway.stream(
        body["stream_url"], {"x-telnyx-streaming-auth-token": auth}, telnyx=True
    ) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await answered(trunk.trunk.id)
        for message in media:
            await carrier.send(message)
            await asyncio.sleep(0.02)
        inbound = [m for m in media if m["media"]["track"] == "inbound"]
        await carrier.wait_for(lambda: len(carrier.events("media")) >= len(inbound))
        # The caller hangs up: Telnyx's call.hangup webhook ends the call with its cause.
        hangup = call_event("call.hangup")
        assert (
            await gateway.telnyx_post(trunk.trunk.id, hangup, content_type="application/json")
        ).status_code == 200
        await carrier.wait_closed()
    call = await final_call(trunk.trunk.id)
    assert (call.status, call.disconnect_reason, call.blame) == ("completed", "hangup", "caller")
    assert call.metrics["carrier_end"]["source"] == "telnyx_call_hangup"
    # Our own hang-up was not sent: the carrier had already ended the call.
    assert not gateway.carrier.seen(f"{base}/hangup")


async def test_call_control_socket_with_the_wrong_auth_token_is_closed_1008(
    gateway: Gateway,
) -> None:
    trunk = await gateway.trunk("tx-cc-auth", telnyx_mode="call_control")
    initiated = call_event("call.initiated")
    await gateway.telnyx_post(trunk.trunk.id, initiated, content_type="application/json")
    body = gateway.carrier.seen("/streaming_start")[0].json()
    async with gateway.stream(
        body["stream_url"], {"x-telnyx-streaming-auth-token": "wrong-token"}, telnyx=True
    ) as carrier:
        await carrier.wait_closed()
        assert carrier.close_code == 1008


async def test_call_control_number_not_served_is_rejected_over_rest(gateway: Gateway) -> None:
    trunk = await gateway.trunk(
        "tx-cc-numbers", telnyx_mode="call_control", inbound_numbers=["+15550100077"]
    )
    reply = await gateway.telnyx_post(
        trunk.trunk.id, call_event("call.initiated"), content_type="application/json"
    )
    assert reply.status_code == 200
    rejects = gateway.carrier.seen(f"/v2/calls/{TELNYX_CALL}/actions/reject")
    assert len(rejects) == 1 and rejects[0].json() == {"cause": "CALL_REJECTED"}
    assert not gateway.carrier.seen("/answer")


async def test_call_control_busy_hangup_completes_a_call_whose_stream_never_came(
    gateway: Gateway,
) -> None:
    trunk = await gateway.trunk("tx-cc-busy", telnyx_mode="call_control")
    await gateway.telnyx_post(
        trunk.trunk.id, call_event("call.initiated"), content_type="application/json"
    )
    busy = next(
        line.encode() for line in recorded("telnyx_call_events.jsonl") if '"user_busy"' in line
    )
    assert (
        await gateway.telnyx_post(trunk.trunk.id, busy, content_type="application/json")
    ).status_code == 200
    call = await Call.get(trunk_id=trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("busy", "caller")
    assert len(gateway.hub.tokens) == 0


async def test_call_control_unknown_trunk_is_404_and_garbage_is_400(gateway: Gateway) -> None:
    reply = await gateway.telnyx_post(
        "trunk_nope", call_event("call.initiated"), content_type="application/json"
    )
    assert reply.status_code == 404
    trunk = await gateway.trunk("tx-garbage", telnyx_mode="call_control")
    junk = b'{"data": {"event_type": 7}}'
    reply = await gateway.telnyx_post(trunk.trunk.id, junk, content_type="application/json")
    assert reply.status_code == 400
