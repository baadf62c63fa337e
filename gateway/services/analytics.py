"""``GET /v1/analytics/overview``: an account's calls over the last N hours, summarised.

Percentiles and the concurrency peak are computed here, in Python, over the window's rows
(a few columns each), so SQLite and PostgreSQL give the same answers. Percentiles are
nearest-rank, like the per-call figures (``gateway.turns``).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.services.calls import LIVE_STATUSES
from gateway.services.errors import InvalidRequest
from models import Call

MAX_HOURS = 720
MINUTE_BUCKETS_UP_TO_HOURS = 3


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview's figures (latencies and jitter in ms)."""

    hours: int
    start: datetime
    end: datetime
    bucket: str
    active_calls: int
    total_calls: int
    volume: list[tuple[datetime, int]]
    latency_stats: dict[str, float | None]
    calls_by_status: dict[str, int]
    blame_breakdown: dict[str, int]
    concurrent_calls_peak: int
    avg_jitter: float | None
    carrier_lag: dict[str, float | None] = field(default_factory=dict)


def concurrency_peak(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most calls up at one instant: a call is up on [start, end), so one that ends
    as another starts does not overlap it, and a refused call (end = start) never counts."""
    edges: list[tuple[datetime, int]] = []
    for start, end in intervals:
        edges.append((start, 1))
        edges.append((max(start, end), -1))
    edges.sort(key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


class AnalyticsService:
    """Account-scoped summaries of the call records."""

    async def overview(
        self, account_id: str, hours: int, *, now: datetime | None = None
    ) -> Overview:
        """Figures for calls started in the last ``hours`` (1-720)."""
        if not 1 <= hours <= MAX_HOURS:
            raise InvalidRequest("invalid_parameter", f"hours must be between 1 and {MAX_HOURS}")
        end = now or datetime.now(UTC)
        start = end - timedelta(hours=hours)
        rows: list[dict[str, Any]] = await Call.filter(
            account_id=account_id, start_time__gte=start, start_time__lte=end
        ).values(
            "status",
            "blame",
            "start_time",
            "end_time",
            "ai_latency",
            "jitter_mean",
            "jitter_max",
            "carrier_lag",
        )
        active = await Call.filter(account_id=account_id, status__in=LIVE_STATUSES).count()

        by_minute = hours <= MINUTE_BUCKETS_UP_TO_HOURS
        step = timedelta(minutes=1) if by_minute else timedelta(hours=1)
        first = start.replace(second=0, microsecond=0)
        if not by_minute:
            first = first.replace(minute=0)
        buckets: dict[datetime, int] = {}
        at = first
        while at <= end:
            buckets[at] = 0
            at += step
        intervals: list[tuple[datetime, datetime]] = []
        latencies: list[float] = []
        lags: list[float] = []
        jitters: list[float] = []
        statuses: Counter[str] = Counter()
        blames: Counter[str] = Counter()
        for row in rows:
            began = _aware(row["start_time"])
            key = began.replace(second=0, microsecond=0)
            if not by_minute:
                key = key.replace(minute=0)
            if key in buckets:
                buckets[key] += 1
            finished = _aware(row["end_time"]) if row["end_time"] is not None else end
            intervals.append((began, finished))
            statuses[row["status"]] += 1
            if row["blame"]:
                blames[row["blame"]] += 1
            if row["ai_latency"] is not None:
                latencies.append(float(row["ai_latency"]))
            if row["carrier_lag"] is not None:
                lags.append(float(row["carrier_lag"]))
            jitter = row["jitter_mean"] if row["jitter_mean"] is not None else row["jitter_max"]
            if jitter is not None:
                jitters.append(float(jitter))
        return Overview(
            hours=hours,
            start=start,
            end=end,
            bucket="minute" if by_minute else "hour",
            active_calls=active,
            total_calls=len(rows),
            volume=list(buckets.items()),
            latency_stats={
                "p50": _round(percentile(latencies, 0.50)),
                "p95": _round(percentile(latencies, 0.95)),
                "p99": _round(percentile(latencies, 0.99)),
                "avg": _round(sum(latencies) / len(latencies)) if latencies else None,
            },
            calls_by_status=dict(sorted(statuses.items())),
            blame_breakdown=dict(sorted(blames.items())),
            concurrent_calls_peak=concurrency_peak(intervals),
            avg_jitter=_round(sum(jitters) / len(jitters)) if jitters else None,
            carrier_lag={
                "p50": _round(percentile(lags, 0.50)),
                "p95": _round(percentile(lags, 0.95)),
            },
        )
