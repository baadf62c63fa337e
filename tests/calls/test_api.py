"""``/v1/calls``, ``/v1/analytics/overview`` and the trunk's call figures, on a seeded data
set with known answers, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.api.analytics import AnalyticsOverview
from gateway.api.calls import CallDetailOut, CallList
from gateway.app import create_app
from gateway.ids import new_id
from gateway.services import Services
from models import Call, CallEvent, WebhookDelivery

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


@dataclass
class Seeded:
    key: str
    other_key: str
    t1: str
    t2: str
    ids: dict[str, str]


async def seed(services: Services, now: datetime) -> Seeded:
    """Seven calls of account acme (one outside 24 h) and one of account other."""
    acme = await services.api_keys.create("acme", "test")
    other = await services.api_keys.create("other", "test")
    acme_id = acme.key.account_id  # type: ignore[attr-defined]
    t1 = (
        await services.trunks.create(acme_id, {"ai_provider": "echo", "sip_username": "acme-one"})
    ).trunk.id
    t2 = (
        await services.trunks.create(acme_id, {"ai_provider": "echo", "sip_username": "acme-two"})
    ).trunk.id
    m = timedelta(minutes=1)
    rows: list[dict[str, Any]] = [
        # name, trunk, status, direction, from, start, end, ai_latency, jitter, lag, blame
        dict(
            n="c7",
            trunk=t2,
            status="completed",
            start=now - timedelta(hours=30),
            length=60,
            lat=1000.0,
            blame="caller",
        ),
        dict(
            n="c4",
            trunk=t2,
            status="busy",
            start=now - timedelta(hours=2),
            length=0,
            blame="system",
        ),
        dict(
            n="c3",
            trunk=t2,
            status="failed",
            start=now - 30 * m,
            length=1,
            blame="ai_agent",
            frm="+14155550003",
        ),
        dict(
            n="c1",
            trunk=t1,
            status="completed",
            start=now - 10 * m,
            length=120,
            lat=400.0,
            jit=2.0,
            lag=20.0,
            blame="caller",
        ),
        dict(
            n="c6",
            trunk=t1,
            status="completed",
            start=now - 9.5 * m,
            length=210,
            lat=800.0,
            jit=6.0,
            lag=60.0,
            blame="caller",
            direction="outbound",
        ),
        dict(
            n="c2",
            trunk=t1,
            status="completed",
            start=now - 9 * m,
            length=120,
            lat=600.0,
            jit=4.0,
            lag=40.0,
            blame="ai_agent",
        ),
        dict(n="c5", trunk=t1, status="in-progress", start=now - 5 * m, length=None),
    ]
    ids: dict[str, str] = {}
    for row in rows:
        start: datetime = row["start"]
        call_id = new_id("call", now=start.timestamp())
        ids[row["n"]] = call_id
        length = row["length"]
        await Call.create(
            id=call_id,
            account_id=acme_id,
            trunk_id=row["trunk"],
            sip_call_id=f"{row['n']}@carrier.example",
            direction=row.get("direction", "inbound"),
            from_number=row.get("frm", "+14155550100"),
            to_number="+14155550199",
            status=row["status"],
            start_time=start,
            answer_time=start if row["status"] != "busy" else None,
            end_time=None if length is None else start + timedelta(seconds=length),
            duration=length,
            billable_duration=length,
            blame=row.get("blame"),
            ai_latency=row.get("lat"),
            jitter_mean=row.get("jit"),
            jitter_max=None if row.get("jit") is None else row["jit"] * 3,
            carrier_lag=row.get("lag"),
            metrics={"x_headers": {"X-Seed": row["n"]}},
        )
    await Call.create(
        id=new_id("call", now=(now - m).timestamp()),
        account_id=other.key.account_id,  # type: ignore[attr-defined]
        sip_call_id="other@carrier.example",
        status="completed",
        start_time=now - m,
        ai_latency=5.0,
    )
    ids["other"] = (await Call.get(sip_call_id="other@carrier.example")).id
    return Seeded(acme.secret, other.secret, t1, t2, ids)


async def test_overview_has_the_known_answers(db_services: Services) -> None:
    data = await seed(db_services, NOW)
    acme = (await db_services.api_keys.get_or_create_account("acme")).id
    view = await db_services.analytics.overview(acme, 24, now=NOW)
    assert view.bucket == "hour" and len(view.volume) == 25
    volume = dict(view.volume)
    assert volume[NOW.replace(hour=11)] == 5 and volume[NOW.replace(hour=10)] == 1
    assert sum(volume.values()) == view.total_calls == 6
    assert view.active_calls == 1
    assert view.latency_stats == {"p50": 600.0, "p95": 800.0, "p99": 800.0, "avg": 600.0}
    assert view.calls_by_status == {"busy": 1, "completed": 3, "failed": 1, "in-progress": 1}
    assert view.blame_breakdown == {"ai_agent": 2, "caller": 2, "system": 1}
    assert view.concurrent_calls_peak == 3  # c1, c6 and c2 overlap 8.5 minutes before now
    assert view.avg_jitter == 4.0
    assert view.carrier_lag == {"p50": 40.0, "p95": 60.0}

    short = await db_services.analytics.overview(acme, 1, now=NOW)
    assert short.bucket == "minute" and len(short.volume) == 61
    minutes = {t: n for t, n in short.volume if n}
    assert minutes == {
        NOW - timedelta(minutes=30): 1,
        NOW - timedelta(minutes=10): 2,  # c1 at :50:00 and c6 at :50:30
        NOW - timedelta(minutes=9): 1,
        NOW - timedelta(minutes=5): 1,
    }
    wide = await db_services.analytics.overview(acme, 48, now=NOW)
    assert wide.total_calls == 7
    assert wide.latency_stats == {"p50": 600.0, "p95": 1000.0, "p99": 1000.0, "avg": 700.0}
    assert data.ids["c7"]


async def test_calls_list_filters_and_pagination(db_services: Services) -> None:
    now = datetime.now(UTC)
    data = await seed(db_services, now)
    client = create_app(db_services).test_client()
    auth = {"Authorization": f"Bearer {data.key}"}

    async def get(path: str, **params: str) -> tuple[int, dict[str, Any]]:
        response = await client.get(path, query_string=params, headers=auth)
        return response.status_code, await response.get_json()

    status, body = await get("/v1/calls")
    assert status == 200
    CallList.model_validate(body)
    newest_first = ["c5", "c2", "c6", "c1", "c3", "c4", "c7"]
    assert [c["id"] for c in body["data"]] == [data.ids[n] for n in newest_first]
    assert body["total"] == 7 and body["has_more"] is False and body["next_cursor"] is None

    async def ids(**params: str) -> list[str]:
        status, body = await get("/v1/calls", **params)
        assert status == 200, body
        assert body["total"] == len(body["data"])
        names = {v: k for k, v in data.ids.items()}
        return [names[c["id"]] for c in body["data"]]

    assert await ids(trunk_id=data.t1) == ["c5", "c2", "c6", "c1"]
    assert await ids(status="completed") == ["c2", "c6", "c1", "c7"]
    assert await ids(direction="outbound") == ["c6"]
    assert await ids(from_number="+14155550003") == ["c3"]
    assert await ids(to_number="+14155550199", status="busy") == ["c4"]
    since = (now - timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    assert await ids(**{"from": since}) == ["c5", "c2", "c6", "c1"]
    until = (now - timedelta(minutes=9, seconds=15)).isoformat()
    assert await ids(**{"from": since, "to": until}) == ["c6", "c1"]
    assert await ids(trunk_id=data.t2, status="completed") == ["c7"]

    # Cursor pagination walks everything once; the envelope counts all matches.
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, page = await get("/v1/calls", **params)
        assert status == 200 and page["total"] == 7
        seen += [c["id"] for c in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3 and seen == [data.ids[n] for n in newest_first]
    status, page = await get("/v1/calls", limit="2", offset="2")
    assert [c["id"] for c in page["data"]] == [data.ids["c6"], data.ids["c1"]]
    assert page["has_more"] is True and page["total"] == 7
    status, page = await get("/v1/calls", cursor=data.ids["c5"], offset="1", limit="2")
    assert [c["id"] for c in page["data"]] == [data.ids["c6"], data.ids["c1"]]
    assert await ids(trunk_id="trunk\x00x") == []
    assert await ids(trunk_id="t" * 64) == []
    assert len(await ids(**{"from": "0001-01-01T00:00:00+01:00"})) == 7
    assert await ids(**{"to": "9999-12-31T23:59:59-01:00"}) == newest_first

    for bad in (
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
        {"status": "done"},
        {"direction": "sideways"},
        {"from": "yesterday"},
        {"cursor": "trunk_1"},
        {"offset": "-1"},
    ):
        status, body = await get("/v1/calls", **bad)
        assert status == 400, bad
        assert body["error"]["status"] == 400 and body["error"]["code"].startswith("invalid_")
    status, body = await get("/v1/calls", limit="1000")
    assert status == 200 and len(body["data"]) == 7


async def test_one_call_in_full_and_other_accounts_calls_are_not_found(
    db_services: Services,
) -> None:
    data = await seed(db_services, datetime.now(UTC))
    call_id = data.ids["c1"]
    await CallEvent.create(call_id=call_id, offset_ms=0, name="invite", detail={})
    await CallEvent.create(call_id=call_id, offset_ms=310, name="answered", detail={})
    await CallEvent.create(
        call_id=call_id, offset_ms=120_000, name="hangup", detail={"detail": "hangup/caller"}
    )
    await WebhookDelivery.create(
        id=new_id("whd"),
        call_id=call_id,
        event="call.ended",
        url="https://example.com/h",
        payload="{}",
        status="delivered",
        attempts=[
            {"at": "2026-03-10T12:00:00Z", "status_code": 200, "error": None, "duration_ms": 12.0}
        ],
    )
    client = create_app(db_services).test_client()
    response = await client.get(
        f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {data.key}"}
    )
    assert response.status_code == 200
    body = await response.get_json()
    CallDetailOut.model_validate(body)
    assert body["id"] == call_id and body["status"] == "completed"
    assert body["ai_latency"] == 400.0 and body["carrier_lag"] == 20.0 and body["jitter_max"] == 6.0
    assert [e["event"] for e in body["timeline"]] == ["invite", "answered", "hangup"]
    assert body["timeline"][2] == {
        "offset_ms": 120000,
        "event": "hangup",
        "detail": {"detail": "hangup/caller"},
    }
    assert body["metrics"]["x_headers"] == {"X-Seed": "c1"}
    (delivery,) = body["webhook_deliveries"]
    assert delivery["status"] == "delivered" and delivery["attempts"][0]["status_code"] == 200

    for key, target in (
        (data.key, "पन्ह पन्ह त्र र्च कृकृ ड्ड न्हृे إلا بسم الله"),
        (data.key, data.ids["other"]),
        (data.other_key, call_id),
        (data.key, "call_nope"),
    ):
        response = await client.get(
            f"/v1/calls/{target}", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 404
        assert (await response.get_json())["error"]["code"] == "call_not_found"
    response = await client.get("/v1/calls", headers={"Authorization": f"Bearer {data.other_key}"})
    assert [c["id"] for c in (await response.get_json())["data"]] == [data.ids["other"]]


async def test_overview_endpoint_and_trunk_figures(db_services: Services) -> None:
    data = await seed(db_services, datetime.now(UTC))
    client = create_app(db_services).test_client()
    auth = {"Authorization": f"Bearer {data.key}"}
    response = await client.get("/v1/analytics/overview", headers=auth)
    assert response.status_code == 200
    body = await response.get_json()
    AnalyticsOverview.model_validate(body)
    assert body["hours"] == 24 and body["bucket"] == "hour" and len(body["volume"]) == 25
    assert sum(p["calls"] for p in body["volume"]) == body["total_calls"] == 6
    assert body["active_calls"] == 1 and body["concurrent_calls_peak"] == 3
    assert body["latency_stats"] == {"p50": 600.0, "p95": 800.0, "p99": 800.0, "avg": 600.0}
    response = await client.get("/v1/analytics/overview?hours=3", headers=auth)
    assert (await response.get_json())["bucket"] == "minute"
    for bad in ("0", "721", "x", "-1"):
        response = await client.get(f"/v1/analytics/overview?hours={bad}", headers=auth)
        assert response.status_code == 400, bad

    response = await client.get(f"/v1/trunks/{data.t1}", headers=auth)
    trunk = await response.get_json()
    c5 = await Call.get(id=data.ids["c5"])
    assert trunk["total_calls"] == 4 and trunk["avg_latency"] == 600.0
    assert trunk["last_call_at"] == c5.start_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    listing = await (await client.get("/v1/trunks", headers=auth)).get_json()
    by_id = {t["id"]: t for t in listing["data"]}
    assert by_id[data.t2]["total_calls"] == 3 and by_id[data.t2]["avg_latency"] == 1000.0

    document = await (await client.get("/v1/openapi.json")).get_json()
    assert {"/v1/calls", "/v1/calls/{call_id}", "/v1/analytics/overview"} <= set(document["paths"])
    assert {"CallList", "CallDetailOut", "AnalyticsOverview"} <= set(
        document["components"]["schemas"]
    )
