"""What the dashboard's templates show: call rows, timelines and turn latencies as plain dicts.

Pure functions over the services' results (no request, no database), so the pages, the
live-refresh JSON and the tests all read the same shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

BLAME_LABELS = {
    "caller": "Caller",
    "ai_agent": "AI agent",
    "carrier": "Carrier",
    "system": "System",
    "gateway": "Gateway",
    "none": "None",
}
STATUS_TONES = {
    "completed": "ok",
    "in-progress": "live",
    "ringing": "live",
    "failed": "bad",
    "busy": "warn",
    "no-answer": "warn",
    "canceled": "muted",
    "active": "ok",
    "inactive": "muted",
    "error": "bad",
}
_TURN_LATENCY_RE = re.compile(r"ai_latency_ms=([0-9]+(?:\.[0-9]+)?)")


def when(value: datetime | str | None) -> str:
    """A timestamp as ``2026-11-21 14:05:54 UTC`` ('—' when absent)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)[:40]
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_when(value: datetime | None) -> str:
    """A timestamp for narrow table cells: ``11-21 14:05:54`` (UTC; '—' when absent)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str:
    """A timestamp for ``<time datetime=…>``."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def seconds(value: float | int | None) -> str:
    """A duration in seconds as ``1m 05s`` / ``45s`` ('—' when absent)."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    total = max(0, round(float(value)))
    minutes, secs = divmod(total, 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def millis(value: float | int | None) -> str:
    """A latency in ms ('—' when absent)."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{float(value):.0f} ms"


def blame_label(value: str | None) -> str:
    """The seed's blame names: AI Agent, Caller, Carrier…"""
    if not value:
        return "—"
    return BLAME_LABELS.get(value, value.replace("_", " ").capitalize())


def tone(status: str | None) -> str:
    """The badge colour class of a call or connection status."""
    return STATUS_TONES.get(status or "", "muted")


def call_row(call: Any) -> dict[str, Any]:
    """One call-log row from a ``models.Call``."""
    return {
        "id": call.id,
        "trunk_id": call.trunk_id,
        "direction": call.direction,
        "from_number": call.from_number or "—",
        "to_number": call.to_number or "—",
        "carrier": call.carrier,
        "start_time": when(call.start_time),
        "start_iso": iso(call.start_time),
        "answer_time": when(call.answer_time),
        "start_short": short_when(call.start_time),
        "answer_short": short_when(call.answer_time),
        "end_time": when(call.end_time),
        "duration": seconds(call.duration),
        "billable_duration": seconds(call.billable_duration),
        "status": call.status,
        "tone": tone(call.status),
        "blame": blame_label(call.blame),
        "disconnect_reason": call.disconnect_reason or "—",
        "disconnect_explanation": call.disconnect_explanation or "—",
        "ai_latency": millis(call.ai_latency),
        "jitter_max": millis(call.jitter_max),
        "sip_status": call.sip_status,
        "codec": call.codec or "—",
        "transport": call.transport or "—",
        "sip_call_id": call.sip_call_id,
    }


def _detail_text(detail: Any) -> str:
    if isinstance(detail, Mapping):
        if set(detail) == {"detail"}:
            return str(detail["detail"])
        return ", ".join(f"{k}={v}" for k, v in detail.items())
    return "" if detail is None else str(detail)


def timeline_rows(events: Iterable[Any]) -> list[dict[str, str]]:
    """Timeline entries (``models.CallEvent``) as ``+1.234 s  event  detail`` rows."""
    return [
        {
            "offset": f"+{event.offset_ms / 1000:.3f} s",
            "name": str(event.name),
            "detail": _detail_text(event.detail)[:500],
        }
        for event in events
    ]


def _latency_in(detail: Any) -> float | None:
    if isinstance(detail, Mapping):
        for key in ("ai_latency_ms", "ai_ms", "latency_ms"):
            value = detail.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                return float(value)
        text = " ".join(str(v) for v in detail.values())
    else:
        text = str(detail or "")
    match = _TURN_LATENCY_RE.search(text)
    return float(match.group(1)) if match else None


def turn_latencies(events: Iterable[Any]) -> list[float]:
    """Per-turn AI latency (ms) from the bridge's ``turn`` timeline entries, in order.

    The bridge notes ``turn`` with ``ai_latency_ms=…`` (``gateway.bridge``); the record may
    keep that as text or as a field of the entry's detail, so both are read.
    """
    out: list[float] = []
    for event in events:
        if event.name != "turn":
            continue
        value = _latency_in(event.detail)
        if value is not None:
            out.append(value)
    return out
