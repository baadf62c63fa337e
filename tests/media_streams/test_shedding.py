"""A draining or overloaded node refuses new media-stream calls with 503 + Retry-After
(the carrier then tries the number's fallback URL) and keeps taking the webhooks of the
calls it already has, over a real gateway on loopback."""

from __future__ import annotations

import asyncio

from gateway.overload import LoopLag
from models import Call
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import TELNYX_CALL, Gateway, stream_url_of, twilio_voice_form
from tests.media_streams.test_telnyx import FORM, call_event, texml_voice_form

JSON = "application/json"


def _overload(lag: LoopLag, *, on: bool) -> None:
    """Feed the overload verdict probe readings, as gateway.overload.LagMonitor does."""
    for _ in range(100):
        if lag.overloaded == on:
            return
        lag.observe(10 * lag.threshold_ms if on else 0.0)
    raise AssertionError(f"the verdict did not turn {'on' if on else 'off'}")


async def test_a_draining_node_refuses_new_twilio_calls_and_completes_running_ones(
    gateway: Gateway,
) -> None:
    trunk = await gateway.trunk("tw-drain")
    taken = await gateway.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    assert taken.status_code == 200 and stream_url_of(taken.text)
    call_id = (await Call.get(trunk_id=trunk.trunk.id)).id

    gateway.services.drain.begin(asyncio.get_running_loop().time(), 30)
    refused = await gateway.twilio_post(
        "voice", trunk.trunk.id, twilio_voice_form(call_sid="CA" + "7" * 32)
    )
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "30"
    assert "draining" in refused.text
    assert await Call.filter(trunk_id=trunk.trunk.id).count() == 1  # no record, no token
    assert len(gateway.hub.tokens) == 1

    # The running call's status callback still completes its record.
    canceled = recorded_json("twilio_status_callbacks.jsonl")[6]
    assert (await gateway.twilio_post("status", trunk.trunk.id, canceled)).status_code == 200
    call = await Call.get(id=call_id)
    assert (call.status, call.disconnect_reason) == ("canceled", "cancel")


async def test_an_overloaded_node_refuses_new_telnyx_calls_until_it_recovers(
    gateway: Gateway,
) -> None:
    lag = gateway.services.overload
    assert lag.threshold_ms > 0  # shedding is on by default
    texml = await gateway.trunk("tx-overload")
    control = await gateway.trunk("tx-cc-overload", telnyx_mode="call_control")
    initiated = call_event("call.initiated")
    answer = f"/v2/calls/{TELNYX_CALL}/actions/answer"

    _overload(lag, on=True)
    refused = await gateway.telnyx_post(texml.trunk.id, texml_voice_form(), content_type=FORM)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5"
    assert "overloaded" in refused.text
    first = await gateway.telnyx_post(control.trunk.id, initiated, content_type=JSON)
    assert first.status_code == 503 and first.headers["Retry-After"] == "5"
    assert not gateway.carrier.seen(answer)  # not answered over REST either
    assert await Call.all().count() == 0
    # A final TeXML status is a record update, not a new call: still taken.
    final = await gateway.telnyx_post(
        texml.trunk.id, texml_voice_form("completed"), content_type=FORM
    )
    assert final.status_code == 200

    # Recovered: Telnyx's retry of the very same event is acted on (not a duplicate).
    _overload(lag, on=False)
    retried = await gateway.telnyx_post(control.trunk.id, initiated, content_type=JSON)
    assert retried.status_code == 200
    assert len(gateway.carrier.seen(answer)) == 1
    taken = await gateway.telnyx_post(texml.trunk.id, texml_voice_form(), content_type=FORM)
    assert taken.status_code == 200 and stream_url_of(taken.text)
