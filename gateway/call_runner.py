"""The one code path every call takes, from either ingress, once the caller is admitted.

Calling protocol (an ingress, after authentication and its own admission checks)::

    runner = services.runner
    if runner.at_capacity(trunk):                   # the trunk's max_concurrent_calls
        await runner.record_rejected(trunk=trunk, account_id=None, context=ctx,
                                     end=CallEnd(DisconnectReason.BUSY, Blame.SYSTEM, "…", 486),
                                     transport="udp")
    result = await runner.run(trunk=trunk, leg=leg, transport="udp", codec="pcmu/8000",
                              timeline=[("invite", {"at": t_invite}), ("authenticated", {})],
                              media_stats=rtp.stats)

``run`` never raises for anything the caller, the carrier, the agent or the database does:
it writes the record (status ringing), builds the agent (``gateway.agent_config`` →
``providers.registry.create_session``), runs the ``CallBridge`` (``prepare`` then ``run``),
marks the record answered when the leg is answered, finalises it from the
``BridgeResult`` and the leg's media statistics, marks the trunk ``error`` when the agent
refused its credentials, queues the status webhook(s) and updates the Prometheus metrics.

Pre-bridge timeline events are ``(name, detail)`` pairs; a detail may carry ``"at"``: the
moment on the event loop's clock (``loop.time()``), from which its offset is computed (the
earliest ``at`` is the call's start, e.g. the INVITE). Events without ``at`` are placed at
the moment ``run`` was called. Offsets in the record are milliseconds from the call's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.agent_config import agent_config
from gateway.bridge import BridgeOptions, BridgeResult, CallBridge
from gateway.ids import looks_like, new_id
from gateway.leg import CallLeg
from gateway.logs import call_id_var
from gateway.recorded_leg import RecordedLeg
from gateway.services.calls import CallOutcome, TimelineEvent
from gateway.services.trunks import TrunkState
from gateway.services.webhooks import END_EVENT
from gateway.turns import CallMetrics, LatencyStats
from media import Blame, CallContext, CallEnd, DisconnectReason
from providers.base import ErrorCategory, ProviderError
from providers.registry import create_session

if TYPE_CHECKING:
    from gateway.services import Services

logger = logging.getLogger(__name__)

Timeline = Sequence[tuple[str, Mapping[str, object]]]
_PROVIDERS_WITH_VAD = frozenset({"openai"})
_TURN_RE = re.compile(r"ai_latency_ms=([0-9]+(?:\.[0-9]+)?)")
_MEDIA_KEYS = (
    "packets_received",
    "packets_lost",
    "jitter_max_ms",
    "jitter_mean_ms",
    "rtt_ms",
    "jitter_buffer_ms",
    "packets_sent",
    "late_packets",
    "duplicate_packets",
    "concealed_frames",
    "inbound_skipped",
    "playout_drained_frames",
)
# The same figures under the names the SIP leg's RTP stream reports them
# (ingress/sip/transport/media.py ``StreamStats``): record name -> stream name.
_MEDIA_SYNONYMS = {
    "jitter_buffer_ms": "jitter_buffer_delay_ms",
    "late_packets": "packets_late",
    "duplicate_packets": "packets_duplicate",
}


# --- pure: from a call's end to its record ---


def call_status(end: CallEnd, answered: bool) -> str:
    """The record's final status (Twilio's vocabulary, as the seed uses it)."""
    if answered:
        return "completed"
    if end.reason is DisconnectReason.BUSY:
        return "busy"
    if end.reason is DisconnectReason.CANCEL or (
        end.reason is DisconnectReason.HANGUP and end.blame is Blame.CALLER
    ):
        return "canceled"  # the caller gave up while it rang
    return "failed"


def final_sip_status(end: CallEnd, answered: bool) -> int | None:
    """The final response to the INVITE: 200 once answered, else the rejection's code."""
    if answered:
        return 200
    if end.sip_status is not None:
        return end.sip_status
    if end.reason is DisconnectReason.CANCEL or end.reason is DisconnectReason.HANGUP:
        return 487  # RFC 3261 §9.2: the INVITE is answered 487 Request Terminated
    return None


def billable_seconds(answered_at: float | None, ended_at: float) -> int:
    """Answer to hang-up rounded up to the whole second; 0 if never answered."""
    if answered_at is None:
        return 0
    # round() first: 3.0000000001 s of float noise must not bill 4 s.
    return max(0, math.ceil(round(ended_at - answered_at, 6)))


def media_figures(raw: Mapping[str, object] | None) -> dict[str, float]:
    """The leg's media statistics, keeping only finite, non-negative numbers we know
    (under the record's names; the SIP RTP stream's own names are read as synonyms)."""
    out: dict[str, float] = {}
    for key in _MEDIA_KEYS:
        value = (raw or {}).get(key)
        if value is None and key in _MEDIA_SYNONYMS:
            value = (raw or {}).get(_MEDIA_SYNONYMS[key])
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value) and value >= 0:
            out[key] = float(value) if isinstance(value, float) else value
    return out


def carrier_lag_ms(media: Mapping[str, float]) -> float | None:
    """One-way network delay to the carrier: half the RTCP round-trip time where RTCP
    flows (RFC 3550 §6.4.1), else the jitter buffer's delay."""
    if "rtt_ms" in media:
        return round(media["rtt_ms"] / 2, 1)
    if "jitter_buffer_ms" in media:
        return round(media["jitter_buffer_ms"], 1)
    return None


def turn_latencies(result: BridgeResult) -> list[float]:
    """Per-turn ``ai_latency`` values, in order, from the bridge's ``turn`` entries."""
    out: list[float] = []
    for entry in result.timeline:
        if entry.event == "turn":
            match = _TURN_RE.search(entry.detail)
            if match:
                out.append(float(match.group(1)))
    return out


def _stats(stats: LatencyStats) -> dict[str, float | int | None]:
    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "count": stats.count,
        "mean": r(stats.mean_ms),
        "p50": r(stats.p50_ms),
        "p95": r(stats.p95_ms),
        "max": r(stats.max_ms),
    }


@dataclass(frozen=True, slots=True)
class _Clock:
    """Maps the event loop's clock to wall time for one call."""

    wall_minus_loop: float

    def wall(self, at: float) -> datetime:
        return datetime.fromtimestamp(at + self.wall_minus_loop, UTC)


def _pre_events(timeline: Timeline, default_at: float) -> list[tuple[float, str, dict[str, Any]]]:
    out: list[tuple[float, str, dict[str, Any]]] = []
    for name, detail in timeline:
        values = dict(detail)
        at = values.pop("at", None)
        moment = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
        if moment is None or not math.isfinite(moment):
            moment = default_at
        out.append((moment, str(name), {str(k): _jsonable(v) for k, v in values.items()}))
    return out


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)[:500]


def build_timeline(
    pre: list[tuple[float, str, dict[str, Any]]], start: float, result: BridgeResult | None
) -> list[TimelineEvent]:
    """Pre-bridge events and the bridge's timeline, in ms from the call's start."""
    events = [
        TimelineEvent(max(0, round((at - start) * 1000)), name, detail) for at, name, detail in pre
    ]
    if result is not None:
        shift = (result.started_at - start) * 1000
        for entry in result.timeline:
            detail = {"detail": entry.detail} if entry.detail else {}
            events.append(
                TimelineEvent(max(0, round(shift + entry.offset_ms)), entry.event, detail)
            )
    events.sort(key=lambda e: e.offset_ms)
    return events


def outcome_from_result(
    result: BridgeResult,
    *,
    start: float,
    clock: _Clock,
    pre: list[tuple[float, str, dict[str, Any]]],
    media: Mapping[str, float],
) -> CallOutcome:
    """The record's final fields from a bridged call."""
    end = result.end
    answered = result.answered_at is not None
    metrics: CallMetrics = result.metrics
    turns = turn_latencies(result)
    timeline = build_timeline(pre, start, result)
    dtmf = sum(1 for e in result.timeline if e.event == "dtmf")
    lag = carrier_lag_ms(media)
    formats = result.formats
    figures: dict[str, Any] = {
        "ai_latency": {**_stats(metrics.ai_latency), "turns": [round(t, 1) for t in turns]},
        "playout_latency": _stats(metrics.playout_latency),
        "gateway_latency": _stats(metrics.gateway_latency),
        "latency_segments": {
            "carrier_lag": lag,
            "gateway_latency": _round(metrics.gateway_latency.mean_ms),
            "ai_latency": _round(metrics.ai_latency.mean_ms),
        },
        "media": dict(media),
        "turns": metrics.turns,
        "interruptions": metrics.interruptions,
        "dtmf_digits": dtmf,
        "frames_dropped": metrics.frames_dropped,
        "agent_errors": dict(metrics.agent_errors),
        "answer_delay_ms": _round(
            None if result.answered_at is None else (result.answered_at - start) * 1000
        ),
        "formats": None
        if formats is None
        else {"agent_input": formats.input.name, "agent_output": formats.output.name},
    }
    return CallOutcome(
        status=call_status(end, answered),
        end_time=clock.wall(result.ended_at),
        duration=round(max(0.0, result.ended_at - start), 3),
        billable_duration=billable_seconds(result.answered_at, result.ended_at),
        disconnect_reason=end.reason.value,
        disconnect_explanation=end.explanation,
        blame=end.blame.value,
        sip_status=final_sip_status(end, answered),
        answer_time=None if result.answered_at is None else clock.wall(result.answered_at),
        ai_latency=_round(metrics.ai_latency.mean_ms),
        jitter_max=media.get("jitter_max_ms"),
        jitter_mean=media.get("jitter_mean_ms"),
        carrier_lag=lag,
        metrics=figures,
        timeline=timeline,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _empty_result(end: CallEnd, at: float) -> BridgeResult:
    return BridgeResult(
        end=end,
        started_at=at,
        answered_at=None,
        ended_at=at,
        formats=None,
        metrics=CallMetrics(),
        timeline=(),
    )


class CallRunner:
    """Runs admitted calls and records refused ones. One per process (``services.runner``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._active: Counter[str] = Counter()
        self._total_active = 0
        self._bridges: dict[str, CallBridge] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # --- concurrency ---

    def active_calls(self, trunk_id: str | None = None) -> int:
        """Calls running on this process (of one trunk, or all)."""
        if trunk_id is None:
            return self._total_active
        return self._active.get(trunk_id, 0)

    def at_capacity(self, trunk: TrunkState) -> bool:
        """The trunk already runs its ``max_concurrent_calls`` (busy: 486): on this node,
        plus, with ``--redis``, on the other nodes as of the last heartbeat."""
        cap = trunk.trunk.max_concurrent_calls
        return cap is not None and self.trunk_calls_cached(trunk.trunk.id) >= cap

    def trunk_calls_cached(self, trunk_id: str) -> int:
        """The trunk's calls on every node (this node exact, others from the last read)."""
        shared = self.services.shared
        if shared is None:
            return self.active_calls(trunk_id)
        return shared.counts_cached(trunk_id).trunk

    async def cluster_trunk_calls(self, trunk_id: str) -> int:
        """The trunk's calls on every node, read from Redis now (this node's alone without
        ``--redis``): what cross-node concurrency caps compare with."""
        shared = self.services.shared
        if shared is None:
            return self.active_calls(trunk_id)
        return (await shared.cluster_counts(trunk_id)).trunk

    async def wait_idle(self) -> None:
        """Return once no call runs on this process."""
        await self._idle.wait()

    def end_call(self, call_id: str, end: CallEnd) -> bool:
        """End a running call from outside (API hang-up); False if it is not running here."""
        bridge = self._bridges.get(call_id)
        if bridge is None:
            return False
        bridge.end(end)
        return True

    def end_all(self, end: CallEnd | None = None) -> int:
        """End every running call (shutdown); returns how many."""
        reason = end or CallEnd(
            DisconnectReason.SHUTDOWN, Blame.SYSTEM, "Telepath is shutting down"
        )
        for bridge in list(self._bridges.values()):
            bridge.end(reason)
        return len(self._bridges)

    async def shutdown(self) -> None:
        """End every running call (``SHUTDOWN``/system) and wait until their records are
        finalised. Bound it with ``asyncio.timeout`` (the bridge's teardown is bounded)."""
        self.end_all()
        await self._idle.wait()

    def _track(self, trunk_id: str, delta: int) -> None:
        self._active[trunk_id] += delta
        if self._active[trunk_id] <= 0:
            del self._active[trunk_id]
        self._total_active += delta
        if self._total_active:
            self._idle.clear()
        else:
            self._idle.set()
        self.services.metrics.active_calls.set(self._total_active)
        if self.services.shared is not None:
            self.services.shared.update(self._active)

    # --- a call ---

    async def run(
        self,
        *,
        trunk: TrunkState,
        leg: CallLeg,
        transport: str,
        codec: str,
        timeline: Timeline = (),
        call_id: str | None = None,
        media_stats: Callable[[], Mapping[str, object]] | None = None,
        leg_timeline: Callable[[], Timeline] | None = None,
    ) -> BridgeResult:
        """Bridge one admitted call and record it. Never raises (see the module docstring).

        ``leg_timeline``, like ``media_stats``, is read once the call is over: the leg's
        own events during the call (re-INVITEs, INFO DTMF, BYE), placed by their ``at``."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        clock = _Clock(time.time() - t0)
        trunk_id = trunk.trunk.id
        self._track(trunk_id, +1)  # before any await: the cap check stays exact
        pre = _pre_events(timeline, t0)
        start = min([t0, *(at for at, _, _ in pre)])
        if call_id is None or not looks_like("call", call_id):
            call_id = (
                leg.context.call_id if looks_like("call", leg.context.call_id) else new_id("call")
            )
        context = replace(leg.context, call_id=call_id, trunk_id=trunk_id, transport=transport)
        # Every log line of this call (and of the tasks it starts) carries its id.
        call_id_var.set(call_id)
        background: list[asyncio.Task[None]] = []
        bridge: CallBridge | None = None
        try:
            began: list[datetime] = []
            await self._guard(
                call_id,
                "create",
                self._create(trunk, context, clock.wall(start), transport, codec, began),
            )
            if began:  # a row made earlier (media-stream webhook): the call started then
                start = min(start, began[0].timestamp() - clock.wall_minus_loop)

            def answered() -> None:
                background.append(loop.create_task(self._answered(trunk, call_id, clock)))

            recorded = RecordedLeg(leg, context, answered)
            try:
                session = create_session(agent_config(trunk, self.services.settings))
            except ProviderError as exc:
                end = CallEnd(
                    DisconnectReason.AGENT_ERROR,
                    Blame.AI_AGENT,
                    f"The agent cannot be configured: {exc.message}",
                    sip_status=503,
                )
                with contextlib.suppress(Exception):
                    await leg.reject(end)
                result = _empty_result(end, loop.time())
            else:
                bridge = CallBridge(
                    recorded,
                    session,
                    BridgeOptions(
                        agent_ready_timeout=self.services.settings.agent_ready_timeout,
                        max_duration=trunk.trunk.max_call_duration or None,
                        # Turn latency needs the caller's end of speech: only OpenAI reports
                        # it; for the others our VAD finds it (the provider's events win).
                        run_vad=trunk.trunk.ai_provider not in _PROVIDERS_WITH_VAD,
                    ),
                )
                self._bridges[call_id] = bridge
                bridge.prepare()
                result = await bridge.run()
            media = self._media(call_id, media_stats)
            if leg_timeline is not None:
                try:
                    pre = [*pre, *_pre_events(leg_timeline(), loop.time())]
                except Exception:
                    logger.warning("call_id=%s leg timeline unavailable", call_id, exc_info=True)
            for task in background:
                with contextlib.suppress(Exception):
                    await task
            outcome = outcome_from_result(result, start=start, clock=clock, pre=pre, media=media)
            await self._guard(call_id, "finalise", self._finalise(trunk, call_id, outcome))
            if result.metrics.agent_errors.get(ErrorCategory.AUTH.value):
                await self._guard(
                    call_id,
                    "trunk status",
                    self.services.trunks.mark_error(trunk_id, result.end.explanation),
                )
            self._observe(outcome, result, media)
            return result
        finally:
            self._bridges.pop(call_id, None)
            self._track(trunk_id, -1)
            for task in background:
                if not task.done():
                    task.cancel()

    async def record_rejected(
        self,
        *,
        trunk: TrunkState | None,
        account_id: str | None,
        context: CallContext,
        end: CallEnd,
        transport: str,
        timeline: Timeline = (),
    ) -> str | None:
        """Record a call refused before any bridge existed; its id, or ``None`` when no
        account is known (then it is only logged)."""
        account = trunk.trunk.account_id if trunk is not None else account_id
        if account is None:
            logger.info(
                "call refused before any trunk was known: %s/%s: %s (from %s)",
                end.reason.value,
                end.blame.value,
                end.explanation,
                context.source_address,
            )
            return None
        loop = asyncio.get_running_loop()
        now = loop.time()
        clock = _Clock(time.time() - now)
        pre = _pre_events(timeline, now)
        start = min([now, *(at for at, _, _ in pre)])
        call_id = context.call_id if looks_like("call", context.call_id) else new_id("call")
        ctx = replace(
            context,
            call_id=call_id,
            transport=transport,
            trunk_id=trunk.trunk.id if trunk is not None else context.trunk_id,
        )
        events = build_timeline(pre, start, None)
        events.append(
            TimelineEvent(
                max(0, round((now - start) * 1000)),
                "rejected",
                {"reason": end.reason.value, "sip_status": end.sip_status},
            )
        )
        outcome = CallOutcome(
            status=call_status(end, answered=False),
            end_time=clock.wall(now),
            duration=round(now - start, 3),
            billable_duration=0,
            disconnect_reason=end.reason.value,
            disconnect_explanation=end.explanation,
            blame=end.blame.value,
            sip_status=final_sip_status(end, answered=False),
            timeline=events,
        )
        logger.info(
            "call_id=%s refused %s/%s: %s",
            call_id,
            end.reason.value,
            end.blame.value,
            end.explanation,
        )

        async def write() -> None:
            await self.services.calls.create(
                call_id=call_id,
                account_id=account,
                context=ctx,
                start_time=clock.wall(start),
                transport=transport,
            )
            call = await self.services.calls.finalise(call_id, outcome)
            if call is not None and trunk is not None:
                await self.services.webhooks.enqueue(
                    call, END_EVENT, trunk.trunk.webhook_url, events=trunk.trunk.webhook_events
                )

        if not await self._guard(call_id, "record", write()):
            return None
        self.services.metrics.calls.labels(outcome.status, outcome.blame).inc()
        return call_id

    # --- steps (each guarded: the database never breaks a call) ---

    async def _guard(self, call_id: str, what: str, step: Any) -> bool:
        try:
            await step
        except Exception:
            logger.exception("call_id=%s call record %s failed", call_id, what)
            return False
        return True

    async def _create(
        self,
        trunk: TrunkState,
        context: CallContext,
        start: datetime,
        transport: str,
        codec: str,
        began: list[datetime],
    ) -> None:
        call = await self.services.calls.create(
            call_id=context.call_id,
            account_id=trunk.trunk.account_id,
            context=context,
            start_time=start,
            transport=transport,
            codec=codec,
        )
        began.append(call.start_time)
        await self.services.webhooks.enqueue(
            call, "call.started", trunk.trunk.webhook_url, events=trunk.trunk.webhook_events
        )

    async def _answered(self, trunk: TrunkState, call_id: str, clock: _Clock) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.services.calls.mark_answered(call_id, clock.wall(loop.time()))
            if "call.answered" in (trunk.trunk.webhook_events or []) and trunk.trunk.webhook_url:
                detail = await self.services.calls.get(trunk.trunk.account_id, call_id)
                await self.services.webhooks.enqueue(
                    detail.call,
                    "call.answered",
                    trunk.trunk.webhook_url,
                    events=trunk.trunk.webhook_events,
                )
        except Exception:
            logger.exception("call_id=%s recording the answer failed", call_id)

    async def _finalise(self, trunk: TrunkState, call_id: str, outcome: CallOutcome) -> None:
        call = await self.services.calls.finalise(call_id, outcome)
        if call is not None:
            await self.services.webhooks.enqueue(
                call, END_EVENT, trunk.trunk.webhook_url, events=trunk.trunk.webhook_events
            )

    def _media(
        self, call_id: str, media_stats: Callable[[], Mapping[str, object]] | None
    ) -> dict[str, float]:
        if media_stats is None:
            return {}
        try:
            return media_figures(media_stats())
        except Exception:
            logger.warning("call_id=%s media statistics unavailable", call_id, exc_info=True)
            return {}

    def _observe(
        self, outcome: CallOutcome, result: BridgeResult, media: Mapping[str, float]
    ) -> None:
        m = self.services.metrics
        m.calls.labels(outcome.status, outcome.blame).inc()
        setup_ms = outcome.metrics.get("answer_delay_ms")
        if isinstance(setup_ms, int | float):  # from the INVITE (or webhook) to the answer
            m.setup_seconds.observe(max(0.0, setup_ms / 1000))
        for latency in turn_latencies(result):
            m.ai_latency_seconds.observe(latency / 1000)
        if "jitter_max_ms" in media:
            m.jitter_seconds.observe(media["jitter_max_ms"] / 1000)
        if "packets_received" in media:
            m.rtp_packets_received.inc(media["packets_received"])
        if "packets_lost" in media:
            m.rtp_packets_lost.inc(media["packets_lost"])
        for category, count in result.metrics.agent_errors.items():
            m.provider_errors.labels(category).inc(count)
