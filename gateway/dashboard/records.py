"""Call logs and analytics for the dashboard, read through ``CallService``/``AnalyticsService``.

The headline figures (p50/p95/average latency, volume, blame, peak concurrency, live
calls) are ``AnalyticsService.overview``'s, the same numbers ``/v1/analytics/overview``
returns. The charts also need them *per hour*; those series are folded here from the
window's call records (read page by page through ``CallService.list``, at most
``MAX_SERIES_CALLS`` of them) with the analytics module's own percentile and concurrency
functions, so a chart and the headline agree on method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from gateway.dashboard import charts
from gateway.dashboard.views import blame_label, call_row, timeline_rows, turn_latencies, when
from gateway.services import Services
from gateway.services.analytics import AnalyticsService, Overview, concurrency_peak, percentile
from gateway.services.calls import STATUSES, CallFilters, CallService, TrunkCallStats

PAGE_SIZE = 50
MAX_SERIES_CALLS = 10_000


@dataclass(frozen=True, slots=True)
class CallLog:
    """One page of the call log as the templates show it."""

    rows: list[dict[str, Any]]
    total: int
    has_more: bool


@dataclass(frozen=True, slots=True)
class CallPageView:
    """One call: its row, timeline, turn latencies and their chart."""

    row: dict[str, Any]
    timeline: list[dict[str, str]]
    turns: list[float]
    turn_chart: Markup | None
    metrics: dict[str, Any]
    deliveries: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AnalyticsView:
    """The analytics page: headline figures, hourly series and their charts."""

    overview: Overview
    labels: list[str]
    volume: list[int]
    concurrency: list[int]
    latency_avg: list[float | None]
    latency_p50: list[float | None]
    latency_p95: list[float | None]
    blame: list[tuple[str, int]]
    volume_chart: Markup
    concurrency_chart: Markup
    latency_chart: Markup
    blame_chart: Markup
    sampled: bool


class DashboardRecords:
    """Reads for the call-log, call and analytics pages, scoped by the caller."""

    statuses = STATUSES

    def __init__(self, services: Services) -> None:
        self.call_service: CallService = services.calls
        self.analytics_service: AnalyticsService = services.analytics

    async def trunk_stats(self, trunk_ids: Sequence[str]) -> dict[str, TrunkCallStats]:
        """Total calls, last call and average latency per trunk."""
        return await self.call_service.trunk_stats(trunk_ids)

    async def calls(
        self,
        account_id: str,
        *,
        trunk_id: str | None = None,
        status: str | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        limit: int = PAGE_SIZE,
    ) -> CallLog:
        """The latest calls matching the filters."""
        filters = CallFilters(
            trunk_id=trunk_id, status=status, start_from=start_from, start_to=start_to
        )
        page = await self.call_service.list(account_id, filters, limit=limit)
        return CallLog([call_row(c) for c in page.items], page.total, page.has_more)

    async def call(self, account_id: str, call_id: str) -> CallPageView:
        """One call of the account (``call_not_found`` otherwise)."""
        detail = await self.call_service.get(account_id, call_id)
        turns = turn_latencies(detail.timeline)
        chart = (
            charts.bar_chart(
                "AI latency per turn",
                [str(i + 1) for i in range(len(turns))],
                turns,
                unit=" ms",
                css_class="bar latency",
            )
            if turns
            else None
        )
        metrics = detail.call.metrics or {}
        deliveries = [
            {
                "event": d.event,
                "status": d.status,
                "attempts": len(d.attempts or []),
                "created_at": when(d.created_at),
            }
            for d in detail.deliveries
        ]
        return CallPageView(
            call_row(detail.call),
            timeline_rows(detail.timeline),
            turns,
            chart,
            {k: v for k, v in metrics.items() if isinstance(k, str)},
            deliveries,
        )

    async def analytics(self, account_id: str, hours: int) -> AnalyticsView:
        """Figures and hourly charts for the last ``hours``."""
        overview = await self.analytics_service.overview(account_id, hours)
        starts = [at for at, _ in overview.volume]
        step = timedelta(minutes=1) if overview.bucket == "minute" else timedelta(hours=1)
        calls, sampled = await self._window(account_id, overview.start, overview.end)
        latency: list[list[float]] = [[] for _ in starts]
        intervals: list[list[tuple[datetime, datetime]]] = [[] for _ in starts]
        first = starts[0] if starts else overview.start
        for began, ended, ai_latency in calls:
            index = int((began - first) / step)
            if 0 <= index < len(starts) and ai_latency is not None:
                latency[index].append(ai_latency)
            last = int((ended - first) / step)
            for i in range(max(index, 0), min(last, len(starts) - 1) + 1):
                lo, hi = starts[i], starts[i] + step
                intervals[i].append((max(began, lo), min(ended, hi)))
        label_format = "%H:%M" if overview.bucket == "minute" else "%d %H:00"
        labels = [at.strftime(label_format) for at in starts]
        volume = [count for _, count in overview.volume]
        concurrency = [concurrency_peak(spans) for spans in intervals]
        avg = [round(sum(v) / len(v), 1) if v else None for v in latency]
        p50 = [percentile(v, 0.5) for v in latency]
        p95 = [percentile(v, 0.95) for v in latency]
        blame = [(blame_label(k), n) for k, n in overview.blame_breakdown.items()]
        return AnalyticsView(
            overview=overview,
            labels=labels,
            volume=volume,
            concurrency=concurrency,
            latency_avg=avg,
            latency_p50=p50,
            latency_p95=p95,
            blame=blame,
            volume_chart=charts.bar_chart(
                f"Call volume per {overview.bucket}", labels, [float(v) for v in volume]
            ),
            concurrency_chart=charts.bar_chart(
                f"Peak concurrent calls per {overview.bucket}",
                labels,
                [float(v) for v in concurrency],
                css_class="bar concurrency",
            ),
            latency_chart=charts.line_chart(
                f"AI latency per {overview.bucket}",
                labels,
                [
                    charts.Series("average", "line avg", avg),
                    charts.Series("p50", "line p50", p50),
                    charts.Series("p95", "line p95", p95),
                ],
                unit=" ms",
                bridge_gaps=True,
            ),
            blame_chart=charts.breakdown_bar("Who ended the calls (blame)", blame),
            sampled=sampled,
        )

    async def _window(
        self, account_id: str, start: datetime, end: datetime
    ) -> tuple[list[tuple[datetime, datetime, float | None]], bool]:
        """(start, end, ai_latency) of the window's calls, newest first; and whether capped."""
        out: list[tuple[datetime, datetime, float | None]] = []
        cursor: str | None = None
        filters = CallFilters(start_from=start, start_to=end + timedelta(seconds=1))
        while len(out) < MAX_SERIES_CALLS:
            page = await self.call_service.list(account_id, filters, limit=1000, cursor=cursor)
            for call in page.items:
                began = call.start_time
                ended = call.end_time or end
                out.append((began, max(began, ended), call.ai_latency))
            if not page.has_more or page.next_cursor is None:
                return out, False
            cursor = page.next_cursor
        return out, True
