"""``/v1/analytics/overview``: the account's calls over the last N hours, summarised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from quart import Response, jsonify, request

from gateway.api import api, get_services, require_scope
from gateway.api.openapi import errors, ok, register
from gateway.services.analytics import MAX_HOURS
from gateway.services.errors import InvalidRequest


class VolumePoint(BaseModel):
    """Calls started in one bucket (an hour, or a minute for windows up to 3 h)."""

    t: str
    calls: int


class LatencyStatsOut(BaseModel):
    """Percentiles of ``ai_latency`` over the window's calls (ms)."""

    p50: float | None
    p95: float | None
    p99: float | None
    avg: float | None


class CarrierLagOut(BaseModel):
    """Percentiles of ``carrier_lag`` over the window's calls (ms)."""

    p50: float | None
    p95: float | None


class AnalyticsOverview(BaseModel):
    """``GET /v1/analytics/overview``."""

    hours: int
    start: str
    end: str
    bucket: Literal["minute", "hour"]
    active_calls: int = Field(description="Calls ringing or in progress now")
    total_calls: int
    volume: list[VolumePoint]
    latency_stats: LatencyStatsOut
    calls_by_status: dict[str, int]
    blame_breakdown: dict[str, int]
    concurrent_calls_peak: int
    avg_jitter: float | None = Field(description="ms")
    carrier_lag: CarrierLagOut


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@api.get("/analytics/overview")
async def analytics_overview() -> Response:
    """Volume, latency, statuses and blame over the last ``hours`` (1-720, default 24)."""
    who = require_scope("read")
    raw = request.args.get("hours", "24")
    if not raw.isdigit() or len(raw) > 4:
        raise InvalidRequest("invalid_parameter", f"hours must be between 1 and {MAX_HOURS}")
    view = await get_services().analytics.overview(who.account_id, int(raw))
    return jsonify(
        {
            "hours": view.hours,
            "start": _iso(view.start),
            "end": _iso(view.end),
            "bucket": view.bucket,
            "active_calls": view.active_calls,
            "total_calls": view.total_calls,
            "volume": [{"t": _iso(t), "calls": n} for t, n in view.volume],
            "latency_stats": view.latency_stats,
            "calls_by_status": view.calls_by_status,
            "blame_breakdown": view.blame_breakdown,
            "concurrent_calls_peak": view.concurrent_calls_peak,
            "avg_jitter": view.avg_jitter,
            "carrier_lag": view.carrier_lag,
        }
    )


register(
    [AnalyticsOverview, VolumePoint, LatencyStatsOut, CarrierLagOut],
    {
        "/v1/analytics/overview": {
            "get": {
                "operationId": "analyticsOverview",
                "summary": "Calls over the last N hours: volume, latency, statuses, blame",
                "parameters": [
                    {
                        "name": "hours",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_HOURS},
                    }
                ],
                "responses": {**ok(AnalyticsOverview), **errors(400, 401, 403, 429)},
            }
        }
    },
)
