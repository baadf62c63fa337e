"""Put call records into a running gateway's database, for the dashboard's browser tests.

``record_call`` writes a call exactly as the call runner does (``CallService.create``,
``mark_answered``, ``finalise`` with a timeline), straight into the live server's SQLite
file, while the server runs. It stands in for a real call until a sipp-placed call can be
used: swap ``record_call`` for a function that places one and returns its call id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.database import close_database, open_database
from gateway.ids import new_id
from gateway.services.api_keys import ApiKeyService
from gateway.services.calls import CallOutcome, CallService, TimelineEvent
from media import CallContext


@dataclass(frozen=True, slots=True)
class SeededCall:
    """What a test needs to find the call again."""

    call_id: str
    from_number: str
    to_number: str
    turns_ms: tuple[float, ...]


@asynccontextmanager
async def gateway_database(database_url: str) -> AsyncIterator[None]:
    """Open the live server's (already migrated) database from the test process."""
    await open_database(database_url, apply_migrations=False)
    try:
        yield
    finally:
        await close_database()


async def account_of(api_key: str) -> str:
    """The account id behind an API key (the database must be open)."""
    return (await ApiKeyService().authenticate(api_key)).account_id


async def record_call(
    *,
    account_id: str,
    trunk_id: str,
    from_number: str = "+14155550100",
    to_number: str = "+12125550199",
    start: datetime | None = None,
    ring_ms: int = 800,
    talk_s: float = 42.0,
    turns_ms: Sequence[float] = (420.0, 610.5, 380.0),
    status: str = "completed",
    blame: str = "caller",
    reason: str = "hangup",
    explanation: str = "User hung up",
) -> SeededCall:
    """A finished call with a timeline and one ``turn`` entry per latency in ``turns_ms``."""
    began = start or datetime.now(UTC) - timedelta(seconds=talk_s + 5)
    call_id = new_id("call")
    context = CallContext(
        call_id=call_id,
        trunk_id=trunk_id,
        sip_call_id=f"{call_id}@sipp.test",
        from_number=from_number,
        to_number=to_number,
        headers={"X-Customer-ID": "12345"},
    )
    service = CallService(node="dashboard-test")
    await service.create(
        call_id=call_id, account_id=account_id, context=context, start_time=began, codec="PCMU"
    )
    answered = began + timedelta(milliseconds=ring_ms)
    await service.mark_answered(call_id, answered)
    ended = answered + timedelta(seconds=talk_s)
    timeline = [
        TimelineEvent(0, "invite", {"detail": "INVITE from 127.0.0.1:5070 (udp)"}),
        TimelineEvent(ring_ms, "answered", {}),
    ]
    at = ring_ms + 1500
    for index, ms in enumerate(turns_ms):
        timeline.append(
            TimelineEvent(
                at,
                "turn",
                {"detail": f"item=item_{index} ai_latency_ms={ms:.1f} playout_ms={ms + 3:.1f}"},
            )
        )
        at += 4000
    timeline.append(
        TimelineEvent(int(ring_ms + talk_s * 1000), "ended", {"detail": f"{reason}/{blame}"})
    )
    mean = sum(turns_ms) / len(turns_ms) if turns_ms else None
    await service.finalise(
        call_id,
        CallOutcome(
            status=status,
            end_time=ended,
            duration=(ended - began).total_seconds(),
            billable_duration=int(-(-talk_s // 1)),
            disconnect_reason=reason,
            disconnect_explanation=explanation,
            blame=blame,
            sip_status=None,
            answer_time=answered,
            codec="PCMU",
            ai_latency=mean,
            jitter_max=4.5,
            timeline=timeline,
        ),
    )
    return SeededCall(call_id, from_number, to_number, tuple(turns_ms))
