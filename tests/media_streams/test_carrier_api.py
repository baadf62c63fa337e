"""``CarrierApi`` against the fake carrier REST API on loopback: the exact requests the
``twilio`` and ``telnyx`` packages make for us, and how "already ended" answers count."""

from __future__ import annotations

import base64

import pytest

from gateway.media_streams.carrier_api import CarrierApi, CarrierApiError, HangupOutcome
from tests.media_streams.conftest import free_port
from tests.media_streams.fake_carrier_api import FakeCarrierApi

AC = "AC00000000000000000000000000000003"
CA = "CA00000000000000000000000000000002"
CCID = "v3:00000000000000000000000000000000000000000000000000aa"
KEY = "KEY0123456789"
TELNYX_ENDED = {
    "errors": [
        {
            "code": "90018",
            "title": "Call has already ended",
            "detail": "This call is no longer active and can't receive commands.",
        }
    ]
}


def api_for(fake: FakeCarrierApi) -> CarrierApi:
    api = CarrierApi(twilio_api_url=fake.url, telnyx_api_url=fake.url, timeout_s=3)
    api.warm_up()
    return api


async def test_twilio_hangup_request_and_already_ended() -> None:
    async with FakeCarrierApi() as fake:
        api = api_for(fake)
        assert await api.twilio_hangup(AC, "secret-token", CA) is HangupOutcome.HUNG_UP
        (sent,) = fake.requests
        assert (sent.method, sent.path) == ("POST", f"/2010-04-01/Accounts/{AC}/Calls/{CA}.json")
        assert sent.form() == {"Status": "completed"}
        assert (
            sent.headers["Authorization"]
            == "Basic " + base64.b64encode(f"{AC}:secret-token".encode()).decode()
        )
        fake.respond(sent.path, 404, {"code": 20404, "message": "Not found", "status": 404})
        assert await api.twilio_hangup(AC, "secret-token", CA) is HangupOutcome.ALREADY_ENDED
        fake.respond(sent.path, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        with pytest.raises(CarrierApiError) as refused:
            await api.twilio_hangup(AC, "wrong-token", CA)
        assert (refused.value.status, refused.value.code) == (401, "20003")
        await api.aclose()


async def test_telnyx_hangup_request_and_already_ended() -> None:
    async with FakeCarrierApi() as fake:
        api = api_for(fake)
        path = f"/v2/calls/{CCID}/actions/hangup"
        assert await api.telnyx_hangup(KEY, CCID) is HangupOutcome.HUNG_UP
        (sent,) = fake.requests
        assert (sent.method, sent.path) == ("POST", path)
        assert sent.headers["Authorization"] == f"Bearer {KEY}"
        fake.respond(path, 422, TELNYX_ENDED)
        assert await api.telnyx_hangup(KEY, CCID) is HangupOutcome.ALREADY_ENDED
        fake.respond(path, 422, {"errors": [{"code": "90015", "title": "Invalid value"}]})
        with pytest.raises(CarrierApiError) as refused:
            await api.telnyx_hangup(KEY, CCID)
        assert (refused.value.status, refused.value.code) == (422, "90015")
        fake.respond(path, 401, {"errors": [{"code": "10009", "title": "Authentication failed"}]})
        with pytest.raises(CarrierApiError):
            await api.telnyx_hangup(KEY, CCID)
        await api.aclose()


async def test_telnyx_texml_hangup_request() -> None:
    async with FakeCarrierApi() as fake:
        api = api_for(fake)
        assert await api.telnyx_texml_hangup(KEY, "acct-1", CCID) is HangupOutcome.HUNG_UP
        (sent,) = fake.requests
        assert sent.path == f"/v2/texml/Accounts/acct-1/Calls/{CCID}"
        assert sent.json() == {"Status": "completed"}
        assert sent.headers["Authorization"] == f"Bearer {KEY}"
        fake.respond(sent.path, 422, TELNYX_ENDED)
        assert await api.telnyx_texml_hangup(KEY, "acct-1", CCID) is HangupOutcome.ALREADY_ENDED
        await api.aclose()


async def test_call_control_answer_then_streaming_start() -> None:
    async with FakeCarrierApi() as fake:
        api = api_for(fake)
        body: dict[str, object] = {
            "stream_url": "wss://gw.example.test/v1/media/telnyx/tok",
            "stream_bidirectional_mode": "rtp",
            "stream_auth_token": "per-call-secret",
        }
        await api.telnyx_answer_and_stream(KEY, CCID, body, command_id="call_1")
        answer, start = fake.requests
        assert answer.path == f"/v2/calls/{CCID}/actions/answer"
        assert answer.json()["command_id"] == "call_1-a"
        assert start.path == f"/v2/calls/{CCID}/actions/streaming_start"
        assert start.json() == {**body, "command_id": "call_1-s"}
        fake.respond(answer.path, 422, TELNYX_ENDED)
        with pytest.raises(CarrierApiError):
            await api.telnyx_answer_and_stream(KEY, CCID, body, command_id="call_2")
        await api.aclose()


async def test_an_unreachable_carrier_is_a_carrier_api_error() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    api = CarrierApi(twilio_api_url=nowhere, telnyx_api_url=nowhere, timeout_s=1)
    with pytest.raises(CarrierApiError) as twilio:
        await api.twilio_hangup(AC, "t", CA)
    assert twilio.value.status is None
    with pytest.raises(CarrierApiError) as telnyx:
        await api.telnyx_hangup(KEY, CCID)
    assert telnyx.value.status is None
    await api.aclose()
