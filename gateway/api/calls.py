"""``/v1/calls``: the account's call records (list with filters, one with everything)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Response, jsonify, request

from gateway.api import api, get_services, require_scope
from gateway.api.openapi import errors, ok, register
from gateway.services.calls import MAX_LIMIT, STATUSES, CallDetail, CallFilters
from gateway.services.errors import InvalidRequest
from gateway.services.webhooks import delivery_view
from models import Call

CallStatus = Literal[
    "ringing", "in-progress", "completed", "failed", "busy", "no-answer", "canceled"
]


class CallOut(BaseModel):
    """A call record as the list shows it."""

    id: str
    object: Literal["call"] = "call"
    trunk_id: str | None
    sip_call_id: str
    direction: str
    from_number: str | None
    to_number: str | None
    carrier: str
    transport: str | None
    codec: str | None
    status: CallStatus
    start_time: str
    answer_time: str | None
    end_time: str | None
    duration: float | None = Field(description="Start to end, seconds")
    billable_duration: float | None = Field(
        description="Answer to hang-up rounded up to the whole second; 0 if never answered"
    )
    disconnect_reason: str | None
    disconnect_explanation: str | None
    blame: Literal["caller", "ai_agent", "carrier", "system"] | None
    sip_status: int | None = Field(description="The final SIP response to the INVITE")
    ai_latency: float | None = Field(description="Mean over turns, ms")
    jitter_max: float | None = Field(description="ms")
    jitter_mean: float | None = Field(description="ms")
    carrier_lag: float | None = Field(description="ms")


class CallList(BaseModel):
    """A page of calls, newest first."""

    data: list[CallOut]
    next_cursor: str | None
    has_more: bool
    total: int


class TimelineEntryOut(BaseModel):
    """One moment of a call."""

    offset_ms: int
    event: str
    detail: dict[str, Any]


class WebhookAttemptOut(BaseModel):
    """One delivery attempt."""

    at: str | None
    status_code: int | None
    error: str | None
    duration_ms: float | None


class WebhookDeliveryOut(BaseModel):
    """A status-webhook delivery and its attempts."""

    id: str
    event: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttemptOut]
    next_attempt_at: str | None
    created_at: str | None


class CallDetailOut(CallOut):
    """``GET /v1/calls/{id}``: the whole record."""

    metrics: dict[str, Any] = Field(
        description="Latency percentiles and per-turn values, per-segment latency, media "
        "statistics (packets, jitter), interruptions, DTMF digits, X- headers"
    )
    timeline: list[TimelineEntryOut]
    webhook_deliveries: list[WebhookDeliveryOut]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def call_out(call: Call) -> dict[str, Any]:
    """The list view of a call (``CallOut``)."""
    return {
        "id": call.id,
        "object": "call",
        "trunk_id": call.trunk_id,
        "sip_call_id": call.sip_call_id,
        "direction": call.direction,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "carrier": call.carrier,
        "transport": call.transport,
        "codec": call.codec,
        "status": call.status,
        "start_time": _iso(call.start_time),
        "answer_time": _iso(call.answer_time),
        "end_time": _iso(call.end_time),
        "duration": call.duration,
        "billable_duration": call.billable_duration,
        "disconnect_reason": call.disconnect_reason,
        "disconnect_explanation": call.disconnect_explanation,
        "blame": call.blame,
        "sip_status": call.sip_status,
        "ai_latency": call.ai_latency,
        "jitter_max": call.jitter_max,
        "jitter_mean": call.jitter_mean,
        "carrier_lag": call.carrier_lag,
    }


def call_detail_out(detail: CallDetail) -> dict[str, Any]:
    """The whole record (``CallDetailOut``)."""
    return {
        **call_out(detail.call),
        "metrics": dict(detail.call.metrics or {}),
        "timeline": [
            {"offset_ms": e.offset_ms, "event": e.name, "detail": dict(e.detail or {})}
            for e in detail.timeline
        ],
        "webhook_deliveries": [dict(delivery_view(d)) for d in detail.deliveries],
    }


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidRequest(
            "invalid_parameter", f"{name} must be an ISO 8601 time such as 2025-01-31T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the API's times are UTC
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before any call
        return (
            datetime.min.replace(tzinfo=UTC) if value.year < 2 else datetime.max.replace(tzinfo=UTC)
        )


def _int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest("invalid_parameter", f"{name} must be a non-negative integer")
    return int(raw)


def _str_arg(name: str, max_length: int = 255) -> str | None:
    raw = request.args.get(name)
    if not raw:
        return None
    if len(raw) > max_length:
        raise InvalidRequest("invalid_parameter", f"{name} is too long")
    return raw


@api.get("/calls")
async def list_calls() -> Response:
    """Calls, newest first: ``limit``, ``cursor`` | ``offset`` and filters."""
    who = require_scope("read")
    filters = CallFilters(
        trunk_id=_str_arg("trunk_id", 64),
        status=_str_arg("status", 32),
        direction=_str_arg("direction", 16),
        start_from=_time_arg("from"),
        start_to=_time_arg("to"),
        from_number=_str_arg("from_number", 64),
        to_number=_str_arg("to_number", 64),
    )
    limit = _int_arg("limit", 50)
    page = await get_services().calls.list(
        who.account_id,
        filters,
        limit=50 if limit is None else limit,
        cursor=_str_arg("cursor", 64),
        offset=_int_arg("offset", None),
    )
    return jsonify(
        {
            "data": [call_out(c) for c in page.items],
            "next_cursor": page.next_cursor,
            "has_more": page.has_more,
            "total": page.total,
        }
    )


@api.get("/calls/<call_id>")
async def get_call(call_id: str) -> Response:
    """One call with its timeline, latencies, media statistics and webhook deliveries."""
    who = require_scope("read")
    return jsonify(call_detail_out(await get_services().calls.get(who.account_id, call_id)))


_AUTH_ERRORS = (401, 403, 429)


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        out["description"] = description
    return out


register(
    [CallOut, CallList, CallDetailOut, TimelineEntryOut, WebhookDeliveryOut, WebhookAttemptOut],
    {
        "/v1/calls": {
            "get": {
                "operationId": "listCalls",
                "summary": "List calls, newest first",
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                    _query(
                        "cursor",
                        {"type": "string", "pattern": "^call_[0-9a-hjkmnp-tv-z]{26}$"},
                        "next_cursor of the previous page",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 999999999},
                        "Rows to skip (after the cursor, if one is given)",
                    ),
                    _query("trunk_id", {"type": "string", "maxLength": 64}),
                    _query("status", {"enum": list(STATUSES)}),
                    _query("direction", {"enum": ["inbound", "outbound"]}),
                    _query(
                        "from", {"type": "string", "format": "date-time"}, "Start at or after (UTC)"
                    ),
                    _query("to", {"type": "string", "format": "date-time"}, "Start before (UTC)"),
                    _query("from_number", {"type": "string", "maxLength": 64}),
                    _query("to_number", {"type": "string", "maxLength": 64}),
                ],
                "responses": {**ok(CallList), **errors(400, *_AUTH_ERRORS)},
            }
        },
        "/v1/calls/{call_id}": {
            "parameters": [
                {
                    "name": "call_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "maxLength": 64},
                }
            ],
            "get": {
                "operationId": "getCall",
                "summary": "One call: timeline, latencies, media statistics, webhook deliveries",
                "responses": {**ok(CallDetailOut), **errors(404, *_AUTH_ERRORS)},
            },
        },
    },
)
