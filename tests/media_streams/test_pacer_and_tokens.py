"""The sans-I/O pieces: ``OutboundPacer`` in virtual time and ``CallTokenStore``.

No sockets and no sleeps: time is a number the test advances (STYLE.md P1).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media_streams.leg import OutboundPacer
from gateway.media_streams.tokens import CallTicket, CallTokenStore
from media import PCMU, AudioFrame

FRAME = AudioFrame(PCMU, b"\x00" * 160)  # 20 ms


def run_pacer(pacer: OutboundPacer, until: float) -> list[tuple[float, AudioFrame | str]]:
    """Drive the pacer as the leg's one timer does: wake at each deadline, send what is due."""
    now = 0.0
    out: list[tuple[float, AudioFrame | str]] = [(now, item) for item in pacer.due(now)]
    while (deadline := pacer.deadline()) is not None and deadline <= until:
        now = max(now, deadline)
        out.extend((now, item) for item in pacer.due(now))
    return out


def test_a_burst_leaves_the_lead_at_once_then_one_frame_every_20_ms() -> None:
    pacer = OutboundPacer(lead_ms=80, max_frames=1000)
    for _ in range(50):  # one second of agent audio in one go
        pacer.push_frame(FRAME)
    sent = [t for t, item in run_pacer(pacer, until=2.0) if isinstance(item, AudioFrame)]
    assert len(sent) == 50
    assert sent[:4] == [0.0] * 4  # the lead: 80 ms ahead of the carrier's playhead
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sent[3:])]
    assert gaps == [0.02] * len(gaps)  # then exactly real time
    assert sent[-1] == pytest.approx(1.0 - 0.08)


def test_a_mark_goes_right_after_the_audio_queued_before_it() -> None:
    pacer = OutboundPacer(lead_ms=40, max_frames=1000)
    for name in ("a", "b", "c"):
        pacer.push_frame(FRAME)
        pacer.push_frame(FRAME)
        pacer.push_mark(name)
    items = run_pacer(pacer, until=1.0)
    order = ["F" if isinstance(item, AudioFrame) else item for _, item in items]
    assert order == ["F", "F", "a", "F", "F", "b", "F", "F", "c"]
    times = {item: t for t, item in items if isinstance(item, str)}
    assert times == pytest.approx({"a": 0.0, "b": 0.04, "c": 0.08})


def test_a_mark_with_nothing_queued_is_due_at_once() -> None:
    pacer = OutboundPacer(lead_ms=80, max_frames=10)
    pacer.push_mark("idle")
    assert pacer.due(5.0) == ["idle"]
    assert pacer.deadline() is None


def test_clear_drops_frames_returns_marks_and_restarts_from_idle() -> None:
    pacer = OutboundPacer(lead_ms=40, max_frames=1000)
    for _ in range(10):
        pacer.push_frame(FRAME)
    pacer.push_mark("end")
    assert len(pacer.due(0.0)) == 2
    assert pacer.clear() == ["end"]
    assert pacer.queued_frames == 0 and pacer.deadline() is None
    pacer.push_frame(FRAME)
    assert pacer.due(0.5) == [FRAME]  # idle again: the next frame goes at once


def test_the_queue_is_bounded_dropping_the_oldest_audio() -> None:
    pacer = OutboundPacer(lead_ms=20, max_frames=3)
    frames = [AudioFrame(PCMU, bytes([i]) * 160, timestamp=i) for i in range(5)]
    for frame in frames:
        pacer.push_frame(frame)
    assert pacer.queued_frames == 3 and pacer.dropped_frames == 2
    sent = [item for _, item in run_pacer(pacer, until=1.0)]
    assert sent == frames[2:]


@given(
    st.lists(st.one_of(st.integers(1, 25), st.just(0)), max_size=60),
    st.integers(1, 10).map(lambda n: n * 20),
)
def test_never_more_than_the_lead_ahead_of_real_time(script: list[int], lead_ms: int) -> None:
    """Whatever mix of bursts (n frames) and marks (0), the playhead stays within the lead."""
    pacer = OutboundPacer(lead_ms=lead_ms, max_frames=10_000)
    now = 0.0
    for step in script:
        if step:
            for _ in range(step):
                pacer.push_frame(FRAME)
        else:
            pacer.push_mark("m")
        for _ in range(3):
            pacer.due(now)
            assert pacer.horizon - now <= lead_ms / 1000 + 1e-9
            deadline = pacer.deadline()
            if deadline is None:
                break
            now = max(now, deadline)
        now += 0.013


# --- tokens ---


def ticket(call_id: str = "call_1", carrier: str = "twilio") -> CallTicket:
    return CallTicket(
        carrier=carrier,  # type: ignore[arg-type]
        trunk_id="trunk_1",
        account_id="acct_1",
        call_id=call_id,
        carrier_call_id="CA1",
        from_number="+15550100001",
        to_number="+15550100002",
    )


def counting_tokens() -> itertools.count[int]:
    return itertools.count(1)


def test_a_token_is_single_use_short_lived_and_bound_to_its_carrier() -> None:
    numbers = counting_tokens()
    store = CallTokenStore(ttl_s=60, token_source=lambda: f"token-{next(numbers):016d}")
    token = store.issue(ticket(), now=100.0)
    assert store.redeem(token, "twilio", now=159.0) is not None
    assert store.redeem(token, "twilio", now=159.0) is None  # spent
    late = store.issue(ticket("call_2"), now=100.0)
    assert store.redeem(late, "twilio", now=160.5) is None  # expired
    wrong = store.issue(ticket("call_3"), now=100.0)
    assert store.redeem(wrong, "telnyx", now=101.0) is None  # another carrier's route
    assert store.redeem(wrong, "twilio", now=101.0) is None  # and the probe spent it
    assert store.redeem("short", "twilio", now=101.0) is None
    assert len(store) == 0


def test_the_store_is_bounded_and_revocable() -> None:
    numbers = counting_tokens()
    store = CallTokenStore(ttl_s=60, max_tickets=3, token_source=lambda: f"t{next(numbers):020d}")
    tokens = [store.issue(ticket(f"call_{i}"), now=1.0) for i in range(5)]
    assert len(store) == 3 and store.evicted == 2
    assert store.redeem(tokens[0], "twilio", now=2.0) is None
    assert store.revoke_call("call_4") == 1
    assert store.redeem(tokens[4], "twilio", now=2.0) is None
    redeemed = store.redeem(tokens[3], "twilio", now=2.0)
    assert redeemed is not None and redeemed.expires_at == 61.0


def test_default_tokens_are_random_and_url_safe() -> None:
    store = CallTokenStore()
    tokens = {store.issue(ticket(f"call_{i}"), now=0.0) for i in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
