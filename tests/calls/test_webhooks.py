"""Status webhooks against a real HTTP receiver on loopback.

The signature is checked here by an independent implementation (the stdlib's ``hmac``
over the raw bytes the receiver read off the socket), not by ``gateway.services.webhooks``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

from gateway.services import Services
from media import PCMU, Blame, CallEnd, DisconnectReason
from models import Call, WebhookDelivery
from tests.calls.conftest import make_services, wait_for
from tests.calls.receiver import Received, WebhookReceiver
from tests.calls.test_runner import context, make_trunk, start_call
from tests.support.memory_leg import MemoryLeg

SECRET = "whsec_test_0123456789"


def verify(request: Received, secret: str) -> dict[str, Any]:
    """What a customer's receiver does: check Telepath-Signature, then parse the body."""
    header = request.headers["telepath-signature"]
    parts = dict(part.split("=", 1) for part in header.split(","))
    assert set(parts) == {"t", "v1"}
    assert abs(time.time() - int(parts["t"])) < 60
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    body = json.loads(request.body)
    assert isinstance(body, dict)
    return body


async def finished_call(services: Services, url: str, **trunk: Any) -> Call:
    state = await make_trunk(services, webhook_url=url, webhook_secret=SECRET, **trunk)
    leg = MemoryLeg(PCMU, context())
    task = await start_call(services, state, leg, media={"jitter_max_ms": 7.5})
    await wait_for(lambda: leg.answered_at is not None)
    await asyncio.sleep(0.05)
    leg.hang_up()
    await task
    return await Call.get(trunk_id=state.trunk.id)


async def test_signed_payload_of_a_finished_call(services: Services) -> None:
    async with WebhookReceiver([204]) as rx:
        services.webhooks.start()
        call = await finished_call(services, rx.url)
        (request,) = await rx.wait(1)
        body = verify(request, SECRET)
    assert request.method == "POST" and request.path == "/hooks/calls"
    assert request.headers["content-type"] == "application/json"
    assert body == {
        "event": "call.ended",
        "call_id": call.id,
        "trunk_id": call.trunk_id,
        "sip_call_id": "a84b4c76e66710@pc33.example.com",
        "timestamp": call.end_time.isoformat().replace("+00:00", "Z"),  # type: ignore[union-attr]
        "direction": "inbound",
        "from_number": "+14155550100",
        "to_number": "+14155550199",
        "carrier": "telnyx",
        "status": "completed",
        "disconnect_reason": "hangup",
        "disconnect_explanation": "Caller hung up",
        "blame": "caller",
        "duration": call.duration,
        "billable_duration": 1,
        "ai_latency": None,
        "jitter_max": 7.5,
    }
    await wait_for_status(call.id, "delivered")
    (delivery,) = await WebhookDelivery.filter(call_id=call.id)
    assert [a["status_code"] for a in delivery.attempts] == [204]


async def wait_for_status(call_id: str, status: str) -> list[WebhookDelivery]:
    async with asyncio.timeout(5):
        while True:
            rows = await WebhookDelivery.filter(call_id=call_id)
            if rows and all(r.status == status for r in rows):
                return list(rows)
            await asyncio.sleep(0.02)


async def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(
    db_services: Services,
) -> None:
    services = db_services  # SQLite and PostgreSQL
    async with WebhookReceiver([503, 500, 200]) as rx:
        services.webhooks.start()
        call = await finished_call(services, rx.url)
        requests = await rx.wait(3)
        (delivery,) = await wait_for_status(call.id, "delivered")
    bodies = [r.body for r in requests]
    assert bodies[0] == bodies[1] == bodies[2]  # the same event each time, re-signed
    for request in requests:
        verify(request, SECRET)
    assert [a["status_code"] for a in delivery.attempts] == [503, 500, 200]
    # Exponential backoff: 0.05 s, then 0.1 s.
    gaps = [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09
    text, _ = services.metrics.render()
    assert b'telepath_webhook_deliveries_total{outcome="retry"} 2.0' in text
    assert b'telepath_webhook_deliveries_total{outcome="delivered"} 1.0' in text


async def test_retries_are_bounded_and_4xx_is_final(services: Services) -> None:
    async with WebhookReceiver([502]) as rx:
        services.webhooks.start()
        call = await finished_call(services, rx.url)
        (delivery,) = await wait_for_status(call.id, "failed")
        assert len(rx.requests) == 4  # the first attempt and 3 retries
    assert [a["status_code"] for a in delivery.attempts] == [502] * 4
    async with WebhookReceiver([410]) as rx:
        state = await make_trunk(
            services, sip_username="acme-other", webhook_url=rx.url, webhook_secret=SECRET
        )
        call = await Call.get(id=call.id)
        await services.webhooks.enqueue(call, "call.ended", rx.url)
        await rx.wait(1)
        assert state.trunk.webhook_url == rx.url
        rows = await WebhookDelivery.filter(call_id=call.id, url=rx.url)
        async with asyncio.timeout(5):
            while rows[0].status == "pending":
                await asyncio.sleep(0.02)
                rows = await WebhookDelivery.filter(call_id=call.id, url=rx.url)
    assert rows[0].status == "failed" and len(rows[0].attempts) == 1


async def test_timeouts_are_retried(services: Services) -> None:
    services.webhooks.timeout = 0.2
    async with WebhookReceiver([200], hang_first=1) as rx:
        services.webhooks.start()
        call = await finished_call(services, rx.url)
        (delivery,) = await wait_for_status(call.id, "delivered")
    assert delivery.attempts[0]["status_code"] is None
    assert delivery.attempts[0]["error"].startswith("timeout")
    assert delivery.attempts[1]["status_code"] == 200


async def test_pending_deliveries_survive_a_restart(db_services: Services) -> None:
    services = db_services  # SQLite and PostgreSQL
    async with WebhookReceiver([200]) as rx:
        # The worker is not running (stopped, or the process died): the row stays pending.
        call = await finished_call(services, rx.url)
        (pending,) = await WebhookDelivery.filter(call_id=call.id)
        assert pending.status == "pending" and pending.attempts == []
        await services.webhooks.stop()
        # A new process: new services over the same database, a new worker.
        restarted = make_services(services.settings.database_url, services.settings.secret_key)
        restarted.webhooks.start()
        try:
            (request,) = await rx.wait(1)
            verify(request, SECRET)
            assert json.loads(request.body)["call_id"] == call.id
            await wait_for_status(call.id, "delivered")
        finally:
            await restarted.close()


async def test_claimed_rows_are_released_when_a_worker_stops(db_services: Services) -> None:
    services = db_services  # SQLite and PostgreSQL
    services.webhooks.timeout = 5.0
    async with WebhookReceiver([200], hang_first=1) as rx:
        services.webhooks.start()
        call = await finished_call(services, rx.url)
        await rx.wait(1)  # the attempt hangs: the row is leased to this worker
        await services.webhooks.stop()
        (row,) = await WebhookDelivery.filter(call_id=call.id)
        assert row.status == "pending"
        restarted = make_services(services.settings.database_url, services.settings.secret_key)
        restarted.webhooks.start()
        try:
            await rx.wait(2, within=3)  # not after the 30 s lease: at once
            await wait_for_status(call.id, "delivered")
        finally:
            await restarted.close()


async def test_optional_started_and_answered_events(services: Services) -> None:
    async with WebhookReceiver([200]) as rx:
        services.webhooks.start()
        call = await finished_call(
            services, rx.url, webhook_events=["call.started", "call.answered"]
        )
        requests = await rx.wait(3)
        await wait_for_status(call.id, "delivered")
    events = sorted(verify(r, SECRET)["event"] for r in requests)
    assert events == ["call.answered", "call.ended", "call.started"]
    by_event = {verify(r, SECRET)["event"]: verify(r, SECRET) for r in requests}
    assert by_event["call.started"]["status"] == "ringing"
    assert by_event["call.answered"]["status"] == "in-progress"


async def test_rejected_calls_are_reported_and_unsigned_without_a_secret(
    services: Services,
) -> None:
    async with WebhookReceiver([200]) as rx:
        services.webhooks.start()
        trunk = await make_trunk(services, webhook_url=rx.url)
        call_id = await services.runner.record_rejected(
            trunk=trunk,
            account_id=None,
            context=context(),
            end=CallEnd(DisconnectReason.BUSY, Blame.SYSTEM, "At the limit", 486),
            transport="udp",
        )
        (request,) = await rx.wait(1)
    assert "telepath-signature" not in request.headers
    body = json.loads(request.body)
    assert (body["call_id"], body["status"], body["disconnect_reason"]) == (call_id, "busy", "busy")


async def test_nothing_unsigned_when_the_secret_cannot_be_opened(services: Services) -> None:
    async with WebhookReceiver([200]) as rx:
        call = await finished_call(services, rx.url)
        await services.webhooks.stop()
        # Restarted with the wrong master key: the trunk's secrets cannot be opened.
        wrong = make_services(services.settings.database_url)
        wrong.webhooks.backoff = 0.01
        wrong.webhooks.start()
        try:
            (row,) = await wait_for_status(call.id, "failed")
        finally:
            await wrong.close()
        assert rx.requests == []
    assert len(row.attempts) == 4
    assert all(a["error"] == "webhook secret unavailable: SecretKeyError" for a in row.attempts)


async def test_webhook_events_are_a_trunk_field(services: Services) -> None:
    from gateway.app import create_app

    created = await services.api_keys.create("acme", "test")
    client = create_app(services).test_client()
    auth = {"Authorization": f"Bearer {created.secret}"}
    response = await client.post(
        "/v1/trunks",
        json={
            "ai_provider": "echo",
            "sip_username": "acme-hooks",
            "webhook_url": "https://example.com/hooks",
            "webhook_events": ["call.answered", "call.started", "call.answered"],
        },
        headers=auth,
    )
    assert response.status_code == 201, await response.get_json()
    trunk = await response.get_json()
    assert trunk["webhook_events"] == ["call.answered", "call.started"]
    assert (trunk["total_calls"], trunk["last_call_at"], trunk["avg_latency"]) == (0, None, None)
    response = await client.patch(
        f"/v1/trunks/{trunk['id']}", json={"webhook_events": ["call.ended"]}, headers=auth
    )
    assert response.status_code == 400
    response = await client.patch(
        f"/v1/trunks/{trunk['id']}", json={"webhook_events": None}, headers=auth
    )
    assert (await response.get_json())["webhook_events"] == []
