"""Call records: written when a call starts, updated as it goes, finalised at its end.

A record's life (``gateway.call_runner`` drives it; audio is never stored)::

    create(...)          status ringing, start_time, who/what/where, X- headers
    mark_answered(...)   status in-progress, answer_time
    finalise(...)        status completed | failed | busy | no-answer | canceled, the end's
                         reason/blame/explanation, durations, latency and media figures, timeline
    close_stale()        at start-up: rows a crash left ringing/in-progress → failed/system

Listing is account-scoped, newest first, with cursor (the id: ids sort by creation time)
or offset pagination and a ``total``. Another account's call reads exactly like a missing
one (``call_not_found``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Avg, Count, Max

from gateway.ids import looks_like
from gateway.services.errors import InvalidRequest, NotFound
from media import CallContext
from models import Call, CallEvent, WebhookDelivery

logger = logging.getLogger(__name__)

STATUSES = ("ringing", "in-progress", "completed", "failed", "busy", "no-answer", "canceled")
"""Every value of ``Call.status``."""
FINAL_STATUSES = ("completed", "failed", "busy", "no-answer", "canceled")
LIVE_STATUSES = ("ringing", "in-progress")
DIRECTIONS = ("inbound", "outbound")
MAX_LIMIT = 1000
MAX_TIMELINE = 600
"""Timeline rows kept per call (the bridge keeps 512; the ingress adds a few)."""


def default_node_name(suffix: str = "") -> str:
    """This process's name in ``Call.node`` (host name, plus e.g. the SIP port)."""
    return f"{socket.gethostname()}{':' + suffix if suffix else ''}"[:64]


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One timeline row: milliseconds from the call's start, event name, detail."""

    offset_ms: int
    name: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """Everything ``finalise`` writes. Durations in seconds, latencies and jitter in ms."""

    status: str
    end_time: datetime
    duration: float
    billable_duration: int
    disconnect_reason: str
    disconnect_explanation: str
    blame: str
    sip_status: int | None
    answer_time: datetime | None = None
    codec: str | None = None
    ai_latency: float | None = None
    jitter_max: float | None = None
    jitter_mean: float | None = None
    carrier_lag: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    timeline: Sequence[TimelineEvent] = ()


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of ``list``."""

    items: list[Call]
    next_cursor: str | None
    has_more: bool
    total: int


@dataclass(frozen=True, slots=True)
class CallDetail:
    """A call with its timeline and webhook deliveries."""

    call: Call
    timeline: list[CallEvent]
    deliveries: list[WebhookDelivery]


@dataclass(frozen=True, slots=True)
class CallFilters:
    """``GET /v1/calls`` filters; ``None`` means "any"."""

    trunk_id: str | None = None
    status: str | None = None
    direction: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    from_number: str | None = None
    to_number: str | None = None


@dataclass(frozen=True, slots=True)
class TrunkCallStats:
    """What a trunk's API view shows about its calls."""

    total_calls: int = 0
    last_call_at: datetime | None = None
    avg_latency: float | None = None


class CallService:
    """Call records. ``node`` names this process in ``Call.node`` (crash recovery)."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node or default_node_name()

    # --- writing ---

    async def create(
        self,
        *,
        call_id: str,
        account_id: str,
        context: CallContext,
        start_time: datetime,
        transport: str | None = None,
        codec: str | None = None,
        status: str = "ringing",
    ) -> Call:
        """Write the record of a call that just started (or refresh a pre-made one)."""
        values: dict[str, Any] = {
            "account_id": account_id,
            "trunk_id": context.trunk_id or None,
            "sip_call_id": context.sip_call_id[:255],
            "direction": context.direction if context.direction in DIRECTIONS else "inbound",
            "from_number": context.from_number[:64] or None,
            "to_number": context.to_number[:64] or None,
            "carrier": (context.carrier or "sip")[:32],
            "transport": (transport or context.transport or None),
            "codec": codec,
            "status": status,
            "start_time": start_time,
            "node": self.node,
            "metrics": {
                "x_headers": _x_headers(context.headers),
                "custom_parameters": dict(list(context.custom_parameters.items())[:50]),
                "source_address": context.source_address[:100],
            },
        }
        if values["transport"] is not None:
            values["transport"] = str(values["transport"])[:16]
        if codec is not None:
            values["codec"] = codec[:32]
        existing = await Call.get_or_none(id=call_id)
        if existing is not None:
            # A media-stream call made its id (and maybe its row) at the carrier's webhook.
            values.pop("start_time")
            existing.update_from_dict(values)
            await existing.save()
            return existing
        return await Call.create(id=call_id, **values)

    async def mark_answered(self, call_id: str, answer_time: datetime) -> None:
        """The caller is connected to a ready agent."""
        await Call.filter(id=call_id, status__in=LIVE_STATUSES).update(
            status="in-progress", answer_time=answer_time
        )

    async def finalise(self, call_id: str, outcome: CallOutcome) -> Call | None:
        """Write the end of the call and its timeline; ``None`` if the row is gone."""
        call = await Call.get_or_none(id=call_id)
        if call is None:
            return None
        call.status = outcome.status
        call.end_time = outcome.end_time
        call.duration = outcome.duration
        call.billable_duration = outcome.billable_duration
        call.disconnect_reason = outcome.disconnect_reason[:32]
        call.disconnect_explanation = outcome.disconnect_explanation[:1000]
        call.blame = outcome.blame
        call.sip_status = outcome.sip_status
        call.answer_time = outcome.answer_time
        if outcome.codec is not None:
            call.codec = outcome.codec[:32]
        call.ai_latency = outcome.ai_latency
        call.jitter_max = outcome.jitter_max
        call.jitter_mean = outcome.jitter_mean
        call.carrier_lag = outcome.carrier_lag
        call.metrics = {**(call.metrics or {}), **outcome.metrics}
        await call.save()
        rows = [
            CallEvent(call_id=call_id, offset_ms=e.offset_ms, name=e.name[:64], detail=e.detail)
            for e in list(outcome.timeline)[:MAX_TIMELINE]
        ]
        if rows:
            await CallEvent.bulk_create(rows)
        return call

    async def close_stale(self, *, now: datetime | None = None, any_node: bool = False) -> int:
        """Close rows this node (or any, with ``any_node``) left ringing or in progress.

        Run at start-up, before any call: a crash or kill left them open. They become
        failed/system with the time of recovery as their end.
        """
        at = now or datetime.now(UTC)
        query = Call.filter(status__in=LIVE_STATUSES)
        if not any_node:
            query = query.filter(Q(node=self.node) | Q(node__isnull=True))
        closed = 0
        for call in await query:
            call.status = "failed"
            call.end_time = at
            call.duration = max(0.0, (at - call.start_time).total_seconds())
            call.billable_duration = 0
            call.disconnect_reason = "system_error"
            call.disconnect_explanation = "Telepath stopped while the call was in progress"
            call.blame = "system"
            await call.save()
            closed += 1
        if closed:
            logger.warning("closed %d call records left open by a previous run", closed)
        return closed

    # --- reading ---

    async def get(self, account_id: str, call_id: str) -> CallDetail:
        """One call of the account with its timeline and deliveries."""
        call = None
        if looks_like("call", call_id):  # anything else names no call (and is not queried)
            call = await Call.get_or_none(id=call_id, account_id=account_id)
        if call is None:
            raise NotFound("call_not_found", f"No call with id {call_id[:60]!r}")
        timeline = await CallEvent.filter(call_id=call.id).order_by("offset_ms", "id")
        deliveries = await WebhookDelivery.filter(call_id=call.id).order_by("created_at", "id")
        return CallDetail(call, list(timeline), list(deliveries))

    async def list(
        self,
        account_id: str,
        filters: CallFilters | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> CallPage:
        """A page of the account's calls, newest first: after ``cursor`` (the last id of
        the previous page), then skipping ``offset`` rows; ``total`` counts every match."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest("invalid_parameter", f"limit must be between 1 and {MAX_LIMIT}")
        if offset is not None and offset < 0:
            raise InvalidRequest("invalid_parameter", "offset must be 0 or more")
        f = filters or CallFilters()
        if f.status is not None and f.status not in STATUSES:
            raise InvalidRequest(
                "invalid_parameter", f"status must be one of {', '.join(STATUSES)}"
            )
        if f.direction is not None and f.direction not in DIRECTIONS:
            raise InvalidRequest("invalid_parameter", "direction must be inbound or outbound")
        texts = ((f.trunk_id, 40), (f.from_number, 64), (f.to_number, 64))
        if any(t is not None and ("\x00" in t or len(t) > size) for t, size in texts):
            # No stored value holds NUL (PostgreSQL refuses it in a query) or is longer
            # than its column (Tortoise refuses that): nothing can match.
            return CallPage([], None, False, 0)
        query = Call.filter(account_id=account_id)
        if f.trunk_id:
            query = query.filter(trunk_id=f.trunk_id)
        if f.status:
            query = query.filter(status=f.status)
        if f.direction:
            query = query.filter(direction=f.direction)
        if f.start_from is not None:
            query = query.filter(start_time__gte=f.start_from)
        if f.start_to is not None:
            query = query.filter(start_time__lt=f.start_to)
        if f.from_number:
            query = query.filter(from_number=f.from_number)
        if f.to_number:
            query = query.filter(to_number=f.to_number)
        total = await query.count()
        if cursor:
            if not looks_like("call", cursor):
                raise InvalidRequest("invalid_cursor", "cursor is not one this API returned")
            query = query.filter(id__lt=cursor)
        query = query.order_by("-id")
        if offset:
            query = query.offset(offset)
        rows = list(await query.limit(limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
        return CallPage(rows, rows[-1].id if has_more and rows else None, has_more, total)

    async def trunk_stats(self, trunk_ids: Sequence[str]) -> dict[str, TrunkCallStats]:
        """``total_calls``, ``last_call_at`` and ``avg_latency`` of each trunk."""
        if not trunk_ids:
            return {}
        rows = (
            await Call.filter(trunk_id__in=list(trunk_ids))
            .annotate(n=Count("id"), last=Max("start_time"), avg=Avg("ai_latency"))
            .group_by("trunk_id")
            .values("trunk_id", "n", "last", "avg")
        )
        out: dict[str, TrunkCallStats] = {}
        for row in rows:
            last = row["last"]
            if isinstance(last, str):  # SQLite hands aggregates back untyped
                last = datetime.fromisoformat(last)
            if isinstance(last, datetime) and last.tzinfo is None:
                last = last.replace(tzinfo=UTC)
            avg = row["avg"]
            out[row["trunk_id"]] = TrunkCallStats(
                int(row["n"]), last, None if avg is None else round(float(avg), 1)
            )
        return out


def _x_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The X- headers worth keeping (bounded: a hostile INVITE may carry many)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if len(out) >= 50:
            break
        if name.lower().startswith("x-"):
            out[name[:100]] = value[:1000]
    return out
