"""What the carriers' status callbacks do to a call record.

Twilio's status callback (``CallStatus`` = completed/busy/failed/no-answer/canceled,
``CallDuration``, ``SipResponseCode``; carriers.md §1.9) and Telnyx's ``call.hangup``
(``hangup_cause``/``hangup_source``) say how a carrier call ended, in the carrier's own
words, already classified by ``ingress.media_streams.hangup_causes`` into a ``CallEnd``.
They may arrive before the media stream stops, after the bridge finalised the record,
or for a call whose stream never opened (the caller hung up while the webhook answered):

- no stream ever ran (the record is still ``ringing``): the carrier's report *is* the
  end of the call; the record is finalised from it and the status webhook is queued;
- the record is final: the carrier's classification replaces ours only where ours was a
  guess: a stream ``stop`` (or a dropped socket) reads as "the caller hung up", so a
  carrier that says otherwise (busy, failed, time limit, our own side) wins. Our own
  precise ends (agent hang-up, max duration, agent error …) are kept;
- a stream is still running: the carrier's end is noted on the record and, by the WS
  loop, on the leg; the bridge then finalises and ``reconcile`` applies the note.

The carrier's figures are kept in ``metrics["carrier_end"]`` either way.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.services.calls import FINAL_STATUSES, LIVE_STATUSES, CallOutcome, TimelineEvent
from gateway.services.webhooks import END_EVENT
from media import Blame, CallEnd, DisconnectReason
from models import Call

if TYPE_CHECKING:
    from gateway.services import Services
    from gateway.services.trunks import TrunkState

__all__ = ["CarrierReport", "apply_carrier_report", "find_carrier_call", "reconcile"]

logger = logging.getLogger(__name__)

# Twilio's final CallStatus values are also our record's statuses (calls.STATUSES).
_TWILIO_STATUS = {s: s for s in FINAL_STATUSES}


class CarrierReport:
    """A carrier's account of how a call ended (from a status callback or ``call.hangup``)."""

    __slots__ = ("carrier_status", "duration_s", "end", "source")

    def __init__(
        self, end: CallEnd, *, carrier_status: str | None, duration_s: int | None, source: str
    ) -> None:
        self.end = end
        self.carrier_status = carrier_status
        self.duration_s = duration_s
        self.source = source

    def as_metrics(self) -> dict[str, Any]:
        """What goes into ``metrics["carrier_end"]``."""
        return {
            "source": self.source,
            "carrier_status": self.carrier_status,
            "duration_s": self.duration_s,
            "reason": self.end.reason.value,
            "blame": self.end.blame.value,
            "explanation": self.end.explanation,
            "sip_status": self.end.sip_status,
        }


async def find_carrier_call(trunk_id: str, carrier: str, carrier_call_id: str) -> Call | None:
    """The newest record of the carrier call ``carrier_call_id`` on ``trunk_id``."""
    return (
        await Call.filter(trunk_id=trunk_id, carrier=carrier, sip_call_id=carrier_call_id[:255])
        .order_by("-id")
        .first()
    )


def _is_guess(call: Call) -> bool:
    """Whether the record's end is the provisional "stream stopped: caller hung up"."""
    return call.disconnect_reason == DisconnectReason.HANGUP.value and call.blame in (
        Blame.CALLER.value,
        None,
    )


async def apply_carrier_report(
    services: Services,
    trunk: TrunkState,
    call: Call,
    report: CarrierReport,
    *,
    stream_running: bool,
    now: datetime | None = None,
) -> str:
    """Apply ``report`` to ``call`` (see the module docstring); returns what was done:
    ``finalised``, ``refined``, ``kept`` or ``noted``."""
    at = now or datetime.now(UTC)
    call.metrics = {**(call.metrics or {}), "carrier_end": report.as_metrics()}
    if call.status in LIVE_STATUSES and not stream_running:
        answered = call.answer_time is not None
        status = _TWILIO_STATUS.get(report.carrier_status or "", "")
        if not status:
            status = "completed" if answered else "canceled"
        duration = (
            float(report.duration_s)
            if report.duration_s is not None
            else max(0.0, (at - call.start_time).total_seconds())
        )
        await call.save()
        outcome = CallOutcome(
            status=status,
            end_time=at,
            duration=round(duration, 3),
            billable_duration=int(report.duration_s or 0) if answered else 0,
            disconnect_reason=report.end.reason.value,
            disconnect_explanation=report.end.explanation,
            blame=report.end.blame.value,
            sip_status=report.end.sip_status,
            answer_time=call.answer_time,
            timeline=[TimelineEvent(0, "carrier_status", {"status": report.carrier_status})],
        )
        final = await services.calls.finalise(call.id, outcome)
        if final is not None:
            await services.webhooks.enqueue(
                final, END_EVENT, trunk.trunk.webhook_url, events=trunk.trunk.webhook_events
            )
        return "finalised"
    if call.status in LIVE_STATUSES:
        await call.save()
        return "noted"
    if _is_guess(call) and (
        report.end.reason.value != call.disconnect_reason or report.end.blame.value != call.blame
    ):
        call.disconnect_reason = report.end.reason.value
        call.blame = report.end.blame.value
        call.disconnect_explanation = report.end.explanation[:1000]
        await call.save()
        return "refined"
    await call.save()
    return "kept"


async def reconcile(services: Services, trunk: TrunkState, call_id: str) -> str | None:
    """After the bridge finalised ``call_id``: apply a carrier report noted while it ran."""
    call = await Call.get_or_none(id=call_id)
    if call is None:
        return None
    noted = (call.metrics or {}).get("carrier_end")
    if not isinstance(noted, dict) or call.status not in FINAL_STATUSES:
        return None
    try:
        end = CallEnd(
            DisconnectReason(noted["reason"]),
            Blame(noted["blame"]),
            str(noted.get("explanation") or ""),
            noted.get("sip_status"),
        )
    except (KeyError, ValueError):
        return None
    report = CarrierReport(
        end,
        carrier_status=noted.get("carrier_status"),
        duration_s=noted.get("duration_s"),
        source=str(noted.get("source")),
    )
    return await apply_carrier_report(services, trunk, call, report, stream_running=False)
