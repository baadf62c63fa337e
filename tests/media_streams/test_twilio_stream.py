"""A Twilio call end to end over a real WebSocket: webhook → stream → echo agent → record.

The carrier side replays tests/data/media_streams/twilio_*.jsonl (written from TW-WSM) over
a real socket to the gateway served by Hypercorn on loopback, plays what it gets back in
real time and echoes marks as Twilio does.
"""

from __future__ import annotations

import asyncio
import base64

from models import Call
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import (
    CALLED,
    CALLER,
    TWILIO_CALL,
    Gateway,
    poll,
    stream_url_of,
    twilio_voice_form,
)

STREAM_SID = "MZ00000000000000000000000000000001"


async def answered_stream_url(gateway: Gateway, trunk_id: str) -> str:
    response = await gateway.twilio_post("voice", trunk_id, twilio_voice_form())
    assert response.status_code == 200, response.text
    return stream_url_of(response.text)


async def answered(trunk_id: str) -> None:
    """Wait until the bridge answered (before that, like a SIP leg, caller audio is dropped)."""
    async with asyncio.timeout(5):
        while (await Call.get(trunk_id=trunk_id)).status != "in-progress":  # noqa: ASYNC110 - a database row has no event to await
            await asyncio.sleep(0.01)


async def final_call(trunk_id: str) -> Call:
    async with asyncio.timeout(5):
        while True:
            call = await Call.get(trunk_id=trunk_id)
            if call.status not in ("ringing", "in-progress"):
                return call
            await asyncio.sleep(0.02)


async def test_twilio_call_echo_both_ways_marks_and_stop(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-echo", inbound_numbers=[CALLED])
    url = await answered_stream_url(gateway, trunk.trunk.id)
    messages = recorded_json("twilio_inbound_call.jsonl")
    connected, start, *media, stop = messages
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await asyncio.sleep(0.1)
        assert carrier.received == []  # never anything before start
        await carrier.send(start)
        await answered(trunk.trunk.id)
        for message in media:
            await carrier.send(message)
            await asyncio.sleep(0.02)
        await carrier.wait_for(lambda: len(carrier.events("media")) >= len(media))
        await carrier.wait_for(lambda: len(carrier.echoed) >= len(media))
        # Audio came back unchanged (PCMU end to end), every message on our stream.
        sent_in = b"".join(base64.b64decode(m["media"]["payload"]) for m in media)
        out = carrier.events("media")
        assert b"".join(base64.b64decode(m["media"]["payload"]) for m in out) == sent_in
        assert all(m["streamSid"] == STREAM_SID for _, m in carrier.received)
        # A mark follows each agent chunk (20 ms: one frame per media message).
        kinds = [m["event"] for _, m in carrier.received]
        assert kinds[:2] == ["media", "mark"]
        assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in out)
        assert kinds.count("mark") >= len(out)
        await carrier.send(stop)
        await carrier.wait_closed()
    call = await final_call(trunk.trunk.id)
    assert (call.status, call.disconnect_reason, call.blame) == ("completed", "hangup", "caller")
    assert (call.carrier, call.transport, call.codec) == ("twilio", "websocket", "pcmu/8000")
    assert (call.sip_call_id, call.from_number, call.to_number) == (TWILIO_CALL, CALLER, CALLED)
    assert call.metrics["media"]["packets_received"] == len(media)
    assert call.metrics["media"]["packets_sent"] == len(media)
    assert call.metrics["custom_parameters"]["from"] == CALLER  # start.customParameters
    # Twilio's completed status callback afterwards: the record keeps our end, notes Twilio's.
    completed = recorded_json("twilio_status_callbacks.jsonl")[2]
    assert (await gateway.twilio_post("status", trunk.trunk.id, completed)).status_code == 200
    call = await Call.get(id=call.id)
    assert (call.status, call.disconnect_reason, call.blame) == ("completed", "hangup", "caller")
    assert call.metrics["carrier_end"]["carrier_status"] == "completed"
    assert len(gateway.hub.legs) == 0


async def test_twilio_socket_closed_without_stop_ends_the_call_on_the_caller(
    gateway: Gateway,
) -> None:
    trunk = await gateway.trunk("tw-drop")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, first, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        for message in (connected, start):
            await carrier.send(message)
        await answered(trunk.trunk.id)
        await carrier.send(first)
        await carrier.wait_for(lambda: carrier.events("media"))
    call = await final_call(trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("hangup", "caller")


async def test_carrier_status_wins_over_the_provisional_stop(gateway: Gateway) -> None:
    """A stream stop reads as "caller hung up"; Twilio saying "failed" refines it."""
    trunk = await gateway.trunk("tw-refine")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_rest, stop = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        for message in (connected, start, stop):
            await carrier.send(message)
        await carrier.wait_closed()
    call = await final_call(trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("hangup", "caller")
    failed = {**recorded_json("twilio_status_callbacks.jsonl")[4], "Direction": "inbound"}
    assert failed["CallStatus"] == "failed"
    assert (await gateway.twilio_post("status", trunk.trunk.id, failed)).status_code == 200
    call = await Call.get(id=call.id)
    assert call.blame == "carrier" and call.disconnect_reason != "hangup"


async def test_websocket_without_a_valid_token_is_closed_1008(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-token")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    forged = url.rsplit("/", 1)[0] + "/" + "A" * 43
    async with gateway.stream(forged) as carrier:
        await carrier.wait_closed()
        assert carrier.close_code == 1008
    # The genuine token works once, and only once.
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await poll(lambda: gateway.hub.legs)
    async with gateway.stream(url) as replay:
        await replay.wait_closed()
        assert replay.close_code == 1008
    # A Telnyx socket cannot use a Twilio token either.
    url2 = await answered_stream_url(gateway, trunk.trunk.id)
    telnyx_path = url2.replace("/media/twilio/", "/media/telnyx/")
    async with gateway.stream(telnyx_path) as wrong:
        await wrong.wait_closed()
        assert wrong.close_code == 1008


async def test_start_for_another_call_is_closed_1008(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-other-call")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    start["start"]["callSid"] = "CA00000000000000000000000000000099"
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await carrier.wait_closed()
        assert carrier.close_code == 1008
        assert carrier.received == []


async def test_signed_upgrade_with_a_bad_signature_is_closed_1008(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-upgrade-sig")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    async with gateway.stream(url, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}) as carrier:
        await carrier.wait_closed()
        assert carrier.close_code == 1008


async def test_signed_upgrade_with_twilios_signature_is_accepted(gateway: Gateway) -> None:
    from twilio.request_validator import RequestValidator

    from tests.media_streams.conftest import TWILIO_TOKEN

    trunk = await gateway.trunk("tw-upgrade-ok")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url, {"X-Twilio-Signature": signature}) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await poll(lambda: gateway.hub.legs)


async def test_malformed_message_ends_the_call_on_the_carrier(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-garbage")
    url = await answered_stream_url(gateway, trunk.trunk.id)
    connected, start, *_ = recorded_json("twilio_inbound_call.jsonl")
    async with gateway.stream(url) as carrier:
        await carrier.send(connected)
        await carrier.send(start)
        await poll(lambda: gateway.hub.legs)
        assert carrier.ws is not None
        await carrier.ws.send('{"event": "media", "streamSid": "' + STREAM_SID + '", "media": 7}')
        await carrier.wait_closed()
        assert carrier.close_code == 1008
    call = await final_call(trunk.trunk.id)
    assert (call.disconnect_reason, call.blame) == ("carrier_error", "carrier")
