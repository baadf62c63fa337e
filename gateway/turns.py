"""Per-call conversation metrics: turn latency, interruptions, errors, drops, timeline.

A *turn* starts when the caller stops speaking (the provider's ``CallerSpeechStopped``, or
our own VAD for providers without one) and is measured twice:

* ``ai_latency``: until the agent's first audio byte reaches the bridge (the provider's
  own response time, network included);
* ``playout_latency``: until the first frame of that answer is handed to the call leg
  (``ai_latency`` plus conversion and rechunking inside the gateway).

Every figure is kept in memory that does not grow with the call's length: turn samples
are capped (``MAX_TURN_SAMPLES``; count, mean and max stay exact beyond it), per-frame
gateway latency goes into a fixed logarithmic histogram, the timeline is capped.

Nothing here reads a clock: every method takes ``now`` (seconds, any monotonic origin),
so tests drive it with plain numbers.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, NamedTuple

MAX_TURN_SAMPLES = 2048
"""Turn latencies kept for percentiles; a call with more turns keeps the first ones."""

MAX_TIMELINE_ENTRIES = 512
"""Timeline entries kept per call; later ones are counted in ``timeline_dropped``."""


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of latency samples in milliseconds; all ``None`` when there are none."""

    count: int = 0
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of an ascending, non-empty list."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class SampleWindow:
    """Exact latency samples up to ``cap``; count, mean and max stay exact beyond it."""

    def __init__(self, cap: int = MAX_TURN_SAMPLES) -> None:
        self._cap = cap
        self._samples: list[float] = []
        self._count = 0
        self._total = 0.0
        self._max = 0.0

    def add(self, ms: float) -> None:
        """Record one sample in milliseconds."""
        self._count += 1
        self._total += ms
        self._max = max(self._max, ms)
        if len(self._samples) < self._cap:
            self._samples.append(ms)

    def stats(self) -> LatencyStats:
        """Mean, p50, p95 (over the kept samples) and max."""
        if not self._count:
            return LatencyStats()
        ordered = sorted(self._samples)
        return LatencyStats(
            count=self._count,
            mean_ms=self._total / self._count,
            p50_ms=_percentile(ordered, 0.50),
            p95_ms=_percentile(ordered, 0.95),
            max_ms=self._max,
        )


def _log_bucket(ms: float, base: float, factor: float, buckets: int) -> int:
    """The bucket of ``ms`` by the defining formula: ``ceil(log(ms / base, factor))``."""
    index = math.ceil(math.log(ms / base, factor)) if ms > base else 0
    return min(index, buckets - 1)


def _bucket_edges(base: float, factor: float, buckets: int) -> tuple[float, ...]:
    """For each bucket but the last, the largest float that ``_log_bucket`` puts in it.

    ``_log_bucket`` is monotonic, so ``bisect_left(edges, ms)`` is the bucket of ``ms``
    with no logarithm. The edges are found from the formula itself, one float step at a
    time from the bucket's ideal edge ``base * factor**i``, so values at or next to an
    edge land in the bucket the formula (with its rounding) gives them.
    """
    edges = []
    for i in range(buckets - 1):
        edge = base * factor**i
        while _log_bucket(edge, base, factor, buckets) > i:
            edge = math.nextafter(edge, 0.0)
        while _log_bucket(math.nextafter(edge, math.inf), base, factor, buckets) <= i:
            edge = math.nextafter(edge, math.inf)
        edges.append(edge)
    return tuple(edges)


# Module constants, not class attributes: mypyc compiles this module (gateway/native.py)
# and does not support class attributes computed from one another.
_BASE_MS: Final = 0.01
_FACTOR: Final = 1.25
_BUCKETS = 80
_EDGES: Final = _bucket_edges(_BASE_MS, _FACTOR, _BUCKETS)


class LogHistogram:
    """Per-frame latencies in fixed logarithmic buckets (25 % wide, 0.01 ms to ~60 s).

    Percentiles are reported as the upper edge of their bucket (at most 25 % high);
    count, mean and max are exact. Memory is 80 integers whatever the call length.
    ``add`` runs for every frame in both directions, so it finds the bucket by bisection
    over precomputed edges (``_bucket_edges``) rather than a logarithm: the same bucket
    for every value, at about a third of the cost (bench/frame_costs.py).
    """

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self._count = 0
        self._total = 0.0
        self._max = 0.0

    def add(self, ms: float) -> None:
        """Record one sample in milliseconds (negative values count as 0)."""
        if ms < 0.0:
            ms = 0.0
        self._count += 1
        self._total += ms
        if ms > self._max:
            self._max = ms
        self._counts[bisect_left(_EDGES, ms)] += 1

    def _quantile(self, q: float) -> float:
        target = max(1, math.ceil(q * self._count))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= target:
                return min(_BASE_MS * _FACTOR**index, self._max)
        return self._max

    def stats(self) -> LatencyStats:
        """Mean and max exact; p50 and p95 to within one bucket."""
        if not self._count:
            return LatencyStats()
        return LatencyStats(
            count=self._count,
            mean_ms=self._total / self._count,
            p50_ms=self._quantile(0.50),
            p95_ms=self._quantile(0.95),
            max_ms=self._max,
        )


class TurnMeasured(NamedTuple):
    """One completed turn: end of speech to first agent audio, and to first frame played."""

    ai_ms: float
    playout_ms: float


class TimelineEntry(NamedTuple):
    """One moment of a call: milliseconds since the bridge started, event name, detail."""

    offset_ms: float
    event: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CallMetrics:
    """What one call measured. Latencies in milliseconds.

    ``ai_latency`` is caller end of speech → the agent's first audio byte; its mean is the
    call record's ``ai_latency``. ``playout_latency`` runs to the first frame handed to
    the leg. ``gateway_latency`` is the time single frames spend inside the bridge, from
    ``AudioFrame.received_at`` to handing them on (caller → agent, and agent → playout
    queue). ``frames_dropped`` counts audio the bridge's bounded queues dropped.
    """

    turns: int = 0
    ai_latency: LatencyStats = field(default_factory=LatencyStats)
    playout_latency: LatencyStats = field(default_factory=LatencyStats)
    interruptions: int = 0
    agent_errors: dict[str, int] = field(default_factory=dict)
    frames_dropped: int = 0
    gateway_latency: LatencyStats = field(default_factory=LatencyStats)

    @property
    def ai_latency_ms(self) -> float | None:
        """Mean caller end of speech → first agent audio, the call record's ``ai_latency``."""
        return self.ai_latency.mean_ms


class TurnTracker:
    """Accumulates one call's metrics and timeline from events stamped with ``now``.

    ``start`` is the time origin of the timeline (the bridge's start).
    """

    def __init__(self, start: float, *, timeline_cap: int = MAX_TIMELINE_ENTRIES) -> None:
        self._start = start
        self._turn_started: float | None = None
        self._answer_item: str | None = None
        self._answer_ai_ms = 0.0
        self._turns = 0
        self._ai = SampleWindow()
        self._playout = SampleWindow()
        self._gateway = LogHistogram()
        self._interruptions = 0
        self._errors: Counter[str] = Counter()
        self._dropped = 0
        self._timeline: list[TimelineEntry] = []
        self._timeline_cap = timeline_cap
        self.timeline_dropped = 0
        """Timeline entries not kept because the cap was reached."""

    # --- timeline ---

    def note(self, now: float, event: str, detail: str = "") -> None:
        """Add a timeline entry at ``now``."""
        if len(self._timeline) >= self._timeline_cap:
            self.timeline_dropped += 1
            return
        self._timeline.append(TimelineEntry(round((now - self._start) * 1000, 3), event, detail))

    @property
    def timeline(self) -> tuple[TimelineEntry, ...]:
        """The entries so far, oldest first."""
        return tuple(self._timeline)

    # --- turns ---

    def caller_speech_stopped(self, now: float) -> None:
        """The caller stopped speaking: a turn's clock starts (restarts if already running)."""
        self._turn_started = now
        self._answer_item = None

    def agent_audio(self, now: float, item_id: str) -> float | None:
        """Agent audio of ``item_id`` arrived; returns ``ai_latency`` (ms) for a turn's first."""
        if self._turn_started is None or self._answer_item is not None:
            return None
        self._answer_item = item_id
        latency = (now - self._turn_started) * 1000
        self._answer_ai_ms = latency
        self._ai.add(latency)
        return latency

    def frame_played(self, now: float, item_id: str) -> TurnMeasured | None:
        """A frame of ``item_id`` went to the leg; returns the turn's figures and ends it.

        Only the answer's own audio counts (``item_id`` of the turn's first agent audio),
        not older audio still queued for playout.
        """
        if self._turn_started is None or item_id != self._answer_item:
            return None
        latency = (now - self._turn_started) * 1000
        self._playout.add(latency)
        self._turns += 1
        self._turn_started = None
        self._answer_item = None
        return TurnMeasured(self._answer_ai_ms, latency)

    # --- counters ---

    def interrupted(self) -> None:
        """The caller barged in over agent audio."""
        self._interruptions += 1

    def agent_error(self, category: str) -> None:
        """The agent reported an error of ``category`` (``ErrorCategory`` value)."""
        self._errors[category] += 1

    def dropped(self, frames: int = 1) -> None:
        """A bounded queue dropped ``frames`` frames of audio."""
        self._dropped += frames

    def gateway(self, received_at: float | None, now: float) -> None:
        """A frame that entered Telepath at ``received_at`` is handed on at ``now``."""
        if received_at is not None:
            self._gateway.add((now - received_at) * 1000)

    def metrics(self) -> CallMetrics:
        """The call's metrics so far."""
        return CallMetrics(
            turns=self._turns,
            ai_latency=self._ai.stats(),
            playout_latency=self._playout.stats(),
            interruptions=self._interruptions,
            agent_errors=dict(self._errors),
            frames_dropped=self._dropped,
            gateway_latency=self._gateway.stats(),
        )
