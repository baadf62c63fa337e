"""Twilio's voice and status webhooks against a real gateway on loopback.

Signatures are made with the ``twilio`` package's ``RequestValidator`` over the public URL
Twilio would have requested (``--public-url`` + path); the forms come from
tests/data/media_streams/twilio_status_callbacks.jsonl (carriers.md §1.9).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from models import Call
from tests.ingress.media_streams.conftest import recorded_json
from tests.media_streams.conftest import (
    CALLED,
    CALLER,
    PUBLIC_URL,
    TWILIO_CALL,
    Gateway,
    stream_url_of,
    twilio_voice_form,
)


def _twiml(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>'), text
    return ET.fromstring(text.split("?>", 1)[1])


async def test_voice_webhook_answers_connect_stream_with_context_parameters(
    gateway: Gateway,
) -> None:
    trunk = await gateway.trunk("tw-answer", inbound_numbers=[CALLED])
    response = await gateway.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = _twiml(response.text)
    stream = root.find("./Connect/Stream")
    assert stream is not None
    url = stream.attrib["url"]
    # wss on the public host, token in the path, no query (Twilio drops query strings).
    assert url.startswith(f"{gateway.stream_origin}/v1/media/twilio/")
    assert "?" not in url
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    assert params["from"] == CALLER and params["to"] == CALLED
    assert params["telepath_trunk_id"] == trunk.trunk.id
    assert TWILIO_CALL not in url and "token" not in " ".join(params)
    # The call record exists, ringing, with the carrier's ids.
    call = await Call.get(id=params["telepath_call_id"])
    assert (call.status, call.carrier, call.transport) == ("ringing", "twilio", "websocket")
    assert (call.sip_call_id, call.from_number, call.to_number) == (TWILIO_CALL, CALLER, CALLED)
    assert len(gateway.hub.tokens) == 1


async def test_tampered_body_url_or_token_is_refused_403(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-tamper")
    form = twilio_voice_form()
    tid = trunk.trunk.id
    # Signed over a different body (the caller number changed in transit).
    signed = {**form, "From": "+15550100099"}
    assert (await gateway.twilio_post("voice", tid, form, signed_form=signed)).status_code == 403
    # Signed for another URL (another trunk's webhook replayed here).
    other = gateway.twilio_url("voice", "trunk_other")
    assert (await gateway.twilio_post("voice", tid, form, signed_url=other)).status_code == 403
    # Signed with another auth token.
    assert (await gateway.twilio_post("voice", tid, form, token="not-the-token")).status_code == 403
    # No signature at all.
    assert (await gateway.twilio_post("voice", tid, form, signature="")).status_code == 403
    # Signed over the http:// URL although --public-url is https.
    plain = gateway.twilio_url("voice", tid).replace("https://", "http://")
    assert (await gateway.twilio_post("voice", tid, form, signed_url=plain)).status_code == 403
    assert await Call.all().count() == 0
    assert len(gateway.hub.tokens) == 0
    # And the genuine one passes.
    assert (await gateway.twilio_post("voice", tid, form)).status_code == 200


async def test_status_callback_signature_is_checked_too(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-status-sig")
    form = recorded_json("twilio_status_callbacks.jsonl")[2]  # completed
    signed = {**form, "CallDuration": "1"}
    response = await gateway.twilio_post("status", trunk.trunk.id, form, signed_form=signed)
    assert response.status_code == 403


async def test_unknown_trunk_gets_reject(gateway: Gateway) -> None:
    response = await gateway.twilio_post("voice", "trunk_nope", twilio_voice_form())
    assert response.status_code == 200
    root = _twiml(response.text)
    reject = root.find("Reject")
    assert reject is not None and "reason" not in reject.attrib


async def test_inactive_trunk_gets_reject_and_a_record(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-inactive", status="inactive")
    response = await gateway.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    assert response.status_code == 200
    reject = _twiml(response.text).find("Reject")
    assert reject is not None and "reason" not in reject.attrib
    call = await Call.get(trunk_id=trunk.trunk.id)
    assert (call.status, call.disconnect_reason, call.blame) == ("failed", "rejected", "system")


async def test_number_not_served_gets_reject_rejected(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-numbers", inbound_numbers=["+15550100077"])
    response = await gateway.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    reject = _twiml(response.text).find("Reject")
    assert reject is not None and reject.attrib == {"reason": "rejected"}
    assert len(gateway.hub.tokens) == 0
    call = await Call.get(trunk_id=trunk.trunk.id)
    assert call.disconnect_reason == "rejected" and call.carrier == "twilio"


async def test_malformed_form_is_400(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-malformed")
    form = {k: v for k, v in twilio_voice_form().items() if k != "CallSid"}
    assert (await gateway.twilio_post("voice", trunk.trunk.id, form)).status_code == 400


async def test_status_callback_completes_a_call_whose_stream_never_came(gateway: Gateway) -> None:
    trunk = await gateway.trunk("tw-never")
    response = await gateway.twilio_post("voice", trunk.trunk.id, twilio_voice_form())
    call_id = stream_url_of(response.text) and (await Call.get(trunk_id=trunk.trunk.id)).id
    for form in recorded_json("twilio_status_callbacks.jsonl")[:2]:  # ringing, in-progress
        assert (await gateway.twilio_post("status", trunk.trunk.id, form)).status_code == 200
    assert (await Call.get(id=call_id)).status == "ringing"
    canceled = recorded_json("twilio_status_callbacks.jsonl")[6]
    assert canceled["CallStatus"] == "canceled"
    assert (await gateway.twilio_post("status", trunk.trunk.id, canceled)).status_code == 200
    call = await Call.get(id=call_id)
    assert (call.status, call.disconnect_reason, call.blame) == ("canceled", "cancel", "caller")
    assert call.metrics["carrier_end"]["carrier_status"] == "canceled"
    assert len(gateway.hub.tokens) == 0  # the unused stream token was revoked


async def test_trunk_shows_webhook_urls_and_masks_carrier_secrets(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("acme", "reader")
    trunk = await gateway.trunk("tw-api", telnyx_mode="call_control")
    response = await gateway.http.get(
        f"/v1/trunks/{trunk.trunk.id}", headers={"Authorization": f"Bearer {created.secret}"}
    )
    assert response.status_code == 200
    body = response.json()
    tid = trunk.trunk.id
    assert body["webhook_urls"] == {
        "twilio_voice": f"{PUBLIC_URL}/v1/carriers/twilio/voice/{tid}",
        "twilio_status": f"{PUBLIC_URL}/v1/carriers/twilio/status/{tid}",
        "telnyx_voice": f"{PUBLIC_URL}/v1/carriers/telnyx/voice/{tid}",
    }
    assert body["twilio_auth_token"] == "****cdef"
    assert body["telnyx_api_key"].startswith("****") and "telnyx-test" not in body["telnyx_api_key"]
    assert body["twilio_account_sid"].startswith("AC")
    assert body["telnyx_mode"] == "call_control"
    assert body["telnyx_public_key"] == gateway.telnyx_public_key
    # The secrets are sealed in the trunk row, not stored in clear.
    from models import Trunk

    row = await Trunk.get(id=tid)
    assert "twilio-auth-token" not in (row.secrets or "")
    assert "twilio_auth_token" not in (row.provider_config or {})


async def test_bad_carrier_settings_are_refused_by_the_api(gateway: Gateway) -> None:
    created = await gateway.services.api_keys.create("acme", "writer")
    auth = {"Authorization": f"Bearer {created.secret}"}
    for bad in (
        {"telnyx_public_key": "bm90LWEta2V5"},
        {"telnyx_mode": "sip"},
        {"twilio_account_sid": "XX123"},
    ):
        response = await gateway.http.post(
            "/v1/trunks",
            json={"sip_username": "tw-bad", "ai_provider": "echo", **bad},
            headers=auth,
        )
        assert response.status_code == 400, (bad, response.text)
