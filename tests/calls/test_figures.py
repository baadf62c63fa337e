"""The pure figures behind the record and the analytics: status table, billing, media
statistics from a hostile leg, percentiles, the concurrency peak."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.call_runner import (
    billable_seconds,
    call_status,
    carrier_lag_ms,
    final_sip_status,
    media_figures,
)
from gateway.services.analytics import concurrency_peak, percentile
from gateway.services.webhooks import sign
from media import Blame, CallEnd, DisconnectReason

R = DisconnectReason


def test_status_and_final_sip_status_table() -> None:
    cases = [
        # end, answered → status, final SIP status
        (CallEnd.caller_hangup(), True, "completed", 200),
        (CallEnd(R.AGENT_ERROR, Blame.AI_AGENT, "x"), True, "completed", 200),
        (CallEnd(R.HANGUP, Blame.CALLER, "gave up"), False, "canceled", 487),
        (CallEnd(R.CANCEL, Blame.CALLER, "CANCEL"), False, "canceled", 487),
        (CallEnd(R.BUSY, Blame.SYSTEM, "cap", 486), False, "busy", 486),
        (CallEnd(R.AGENT_UNREACHABLE, Blame.AI_AGENT, "x", 503), False, "failed", 503),
        (CallEnd(R.AUTH_FAILED, Blame.CALLER, "x", 403), False, "failed", 403),
        (CallEnd(R.SHUTDOWN, Blame.SYSTEM, "x"), False, "failed", None),
    ]
    for end, answered, status, sip in cases:
        assert call_status(end, answered) == status, end
        assert final_sip_status(end, answered) == sip, end


@given(
    answered=st.floats(0, 1e6, allow_nan=False),
    talk=st.floats(0, 1e5, allow_nan=False),
)
def test_billable_is_talk_rounded_up(answered: float, talk: float) -> None:
    billed = billable_seconds(answered, answered + talk)
    assert isinstance(billed, int)
    assert billed >= talk - 1e-5 and billed < talk + 1 + 1e-5
    assert billable_seconds(None, answered + talk) == 0


def test_billable_ignores_float_noise() -> None:
    assert billable_seconds(10.0, 13.0000000001) == 3
    assert billable_seconds(10.0, 13.001) == 4


@given(
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    )
)
def test_media_figures_keep_only_sane_numbers(raw: dict[str, object]) -> None:
    figures = media_figures(raw)
    for key, value in figures.items():
        assert key in raw and value == raw[key]
        assert not isinstance(value, bool) and math.isfinite(value) and value >= 0


def test_media_figures_and_carrier_lag() -> None:
    figures = media_figures(
        {
            "packets_received": 10,
            "rtt_ms": float("nan"),
            "jitter_buffer_ms": 40.0,
            "x": 1,
            "packets_lost": -1,
            "jitter_max_ms": True,
        }
    )
    assert figures == {"packets_received": 10, "jitter_buffer_ms": 40.0}
    assert carrier_lag_ms(figures) == 40.0
    assert carrier_lag_ms({"rtt_ms": 80.0, "jitter_buffer_ms": 40.0}) == 40.0
    assert carrier_lag_ms({}) is None


@given(
    st.lists(st.floats(0, 1e5, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_percentile_is_nearest_rank(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    at_or_below = sum(1 for v in values if v <= p)
    assert at_or_below >= math.ceil(q * len(values))  # covers q of the values
    assert sum(1 for v in values if v < p) < math.ceil(q * len(values))  # the smallest such


def test_percentile_of_nothing() -> None:
    assert percentile([], 0.5) is None


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), max_size=30))
def test_concurrency_peak_matches_counting_every_instant(spans: list[tuple[int, int]]) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    intervals = [
        (base + timedelta(seconds=s), base + timedelta(seconds=s + length)) for s, length in spans
    ]
    # Brute force on half-second steps: a call is up on [start, end); one that ended as it
    # began (refused) never was.
    expected = 0
    for half in range(0, 2 * 131):
        t = base + timedelta(seconds=half / 2)
        up = sum(1 for a, b in intervals if a <= t < b)
        expected = max(expected, up)
    assert concurrency_peak(intervals) == expected


def test_signature_matches_the_documented_recipe() -> None:
    # Worked example: HMAC-SHA256("secret", "1700000000.{}") computed independently.
    import hashlib
    import hmac

    body = b'{"event":"call.ended"}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("secret", body, 1700000000) == f"t=1700000000,v1={expected}"
