"""LogHistogram's bucket search without a logarithm puts every value where the formula does.

``add`` finds buckets by bisection over precomputed edges; the defining formula is
``ceil(log(ms / 0.01, 1.25))`` for ms above 0.01, else 0, capped at bucket 79. These tests
hold the histogram to that formula, float rounding included, and its count, mean and
maximum to the exact values.
"""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.turns import LatencyStats, LogHistogram, TurnTracker


def formula_bucket(ms: float) -> int:
    ms = max(ms, 0.0)
    index = math.ceil(math.log(ms / 0.01, 1.25)) if ms > 0.01 else 0
    return min(index, 79)


def formula_counts(values: list[float]) -> list[int]:
    """The histogram's buckets with the logarithm on every value: the reference."""
    counts = [0] * 80
    for ms in values:
        counts[formula_bucket(ms)] += 1
    return counts


def assert_matches_the_reference(hist: LogHistogram, values: list[float]) -> None:
    """Same buckets as the formula; count, mean and max exact (p50/p95 follow the buckets)."""
    assert hist._counts == formula_counts(values)
    stats = hist.stats()
    clamped = [max(ms, 0.0) for ms in values]
    assert stats.count == len(values)
    assert stats.max_ms == max(clamped)
    assert stats.mean_ms is not None
    assert math.isclose(stats.mean_ms, sum(clamped) / len(values), rel_tol=1e-9, abs_tol=1e-12)


def bucket_of(ms: float) -> int:
    hist = LogHistogram()
    hist.add(ms)
    return hist._counts.index(1)


def test_values_at_and_beside_every_edge_land_in_the_formulas_bucket() -> None:
    checked = 0
    for i in range(90):
        ideal = 0.01 * 1.25**i
        below = above = ideal
        for _ in range(40):
            assert bucket_of(below) == formula_bucket(below), below
            assert bucket_of(above) == formula_bucket(above), above
            below, above = math.nextafter(below, 0.0), math.nextafter(above, math.inf)
            checked += 2
    assert checked == 90 * 80
    for ms in (0.0, -0.0, -5.0, 0.01, 1e-300, 5e-324, 1e300):
        assert bucket_of(ms) == formula_bucket(ms), ms


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1.0, max_value=1e6, allow_nan=False),
            st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
        ),
        min_size=1,
        max_size=300,
    )
)
def test_stats_equal_the_reference_histogram(values: list[float]) -> None:
    hist = LogHistogram()
    for ms in values:
        hist.add(ms)
    assert_matches_the_reference(hist, values)


def test_a_long_call_of_frame_latencies_has_the_reference_percentiles() -> None:
    rng = random.Random(4)
    hist = LogHistogram()
    values = [rng.lognormvariate(math.log(0.1), 1.5) for _ in range(200_000)]
    for ms in values:
        hist.add(ms)
    assert_matches_the_reference(hist, values)
    stats = hist.stats()
    assert stats.count == 200_000 and stats.p50_ms is not None and stats.p95_ms is not None
    assert 0.1 / 1.25 <= stats.p50_ms <= 0.1 * 1.25 * 1.25


def test_turn_tracker_gateway_latency_uses_the_histogram() -> None:
    tracker = TurnTracker(0.0)
    tracker.gateway(None, 1.0)
    assert tracker.metrics().gateway_latency == LatencyStats()
    for n in range(100):
        tracker.gateway(1.0, 1.0 + n / 100_000)  # 0 to 0.99 ms
    stats = tracker.metrics().gateway_latency
    assert stats.count == 100 and stats.max_ms is not None
    assert stats.max_ms == (1.0 + 99 / 100_000 - 1.0) * 1000
    assert stats.p50_ms == 0.01 * 1.25 ** formula_bucket((1.0 + 49 / 100_000 - 1.0) * 1000)
