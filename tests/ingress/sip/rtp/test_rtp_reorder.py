"""The forwarding reorder buffer in virtual time: no delay in order, bounded waits for gaps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.jitter import Lost, PlayoutFrame, PushResult
from ingress.sip.rtp.packet import RtpPacket
from ingress.sip.rtp.reorder import ReorderBuffer

SSRC = 0x1234
SEQ0 = 65_530  # wraps after six packets


def pkt(n: int, *, ssrc: int = SSRC, seq0: int = SEQ0) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=(seq0 + n) & 0xFFFF,
        timestamp=(7_000 + 160 * n) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=n.to_bytes(4, "big", signed=True),
    )


def drive(rb: ReorderBuffer, arrivals: list[tuple[float, RtpPacket]], until: float = 10.0):
    """Push on arrival and pop whenever the deadline has come, as RtpMediaStream does."""
    out: list[tuple[float, int | str]] = []
    pending = sorted(arrivals, key=lambda a: a[0])
    i = 0
    while True:
        deadline = rb.next_deadline()
        arrival = pending[i][0] if i < len(pending) else None
        times = [t for t in (deadline, arrival) if t is not None]
        if not times or min(times) > until:
            return out
        now = min(times)
        if arrival is not None and arrival <= now and (deadline is None or arrival < deadline):
            rb.push(pending[i][1], now)
            i += 1
            continue
        for item in rb.pop(now):
            if isinstance(item, PlayoutFrame):
                out.append((now, int.from_bytes(item.payload, "big", signed=True)))
            else:
                assert isinstance(item, Lost)
                out.append((now, f"lost:{item.sequence_number}"))


def test_in_order_packets_come_out_at_their_arrival_time() -> None:
    rb = ReorderBuffer(clock_rate=8000)
    arrivals = [(0.02 * n + 0.0003 * (n % 3), pkt(n)) for n in range(10)]
    out = drive(rb, arrivals)
    assert [n for _, n in out] == list(range(10))
    assert [t for t, _ in out] == [t for t, _ in arrivals]  # zero delay, across the wrap
    assert rb.delay == 0.0 and rb.concealed == 0


def test_reordered_packet_within_the_window_is_put_back_in_order() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=20)
    arrivals = [(0.00, pkt(0)), (0.02, pkt(2)), (0.025, pkt(1)), (0.04, pkt(3))]
    out = drive(rb, arrivals)
    assert [n for _, n in out] == [0, 1, 2, 3]
    # 2 waited for 1 (5 ms); nothing was concealed.
    assert out[1] == (0.025, 1) and out[2] == (0.025, 2)
    assert rb.concealed == 0


def test_a_gap_is_concealed_when_the_window_ends_and_the_straggler_is_late() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=20)
    arrivals = [(0.00, pkt(0)), (0.02, pkt(2)), (0.05, pkt(1)), (0.06, pkt(3))]
    out = drive(rb, arrivals)
    seq1 = (SEQ0 + 1) & 0xFFFF
    assert [n for _, n in out] == [0, f"lost:{seq1}", 2, 3]
    assert out[1][0] == out[2][0] == 0.04  # held exactly the window
    assert rb.late == 1 and rb.concealed == 1


def test_long_gaps_are_skipped_not_concealed() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=0, max_conceal=3)
    out = drive(rb, [(0.0, pkt(0)), (0.1, pkt(10)), (0.12, pkt(11))])
    assert [n for _, n in out] == [0, 10, 11]
    assert rb.skipped == 9 and rb.concealed == 0


def test_duplicates_are_dropped() -> None:
    rb = ReorderBuffer(clock_rate=8000)
    assert rb.push(pkt(0), 0.0) is PushResult.BUFFERED
    rb.pop(0.0)
    assert rb.push(pkt(0), 0.01) is PushResult.DUPLICATE
    assert rb.push(pkt(2), 0.02) is PushResult.BUFFERED
    assert rb.push(pkt(2), 0.03) is PushResult.DUPLICATE
    assert rb.duplicates == 2


def test_full_buffer_releases_at_once() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=1000, capacity=4, max_conceal=5)
    rb.push(pkt(0), 0.0)
    rb.pop(0.0)
    for n in (2, 3, 4):
        rb.push(pkt(n), 0.01 * n)
    assert rb.next_deadline() == 1.02  # the window of the gap before 2
    rb.push(pkt(5), 0.05)
    assert rb.next_deadline() == 0.05  # full: due now
    items = rb.pop(0.05)
    assert [type(i).__name__ for i in items] == ["Lost", *["PlayoutFrame"] * 4]


def test_new_ssrc_restarts_and_forwards_what_was_held() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=50)
    arrivals = [
        (0.00, pkt(0)),
        (0.02, pkt(2)),  # held over the gap at 1
        (0.03, pkt(0, ssrc=99, seq0=10)),
        (0.05, pkt(1, ssrc=99, seq0=10)),
    ]
    out = drive(rb, arrivals)
    assert [n for _, n in out] == [0, 2, 0, 1]
    assert rb.restarts == 1


def test_sequence_jump_beyond_dropout_restarts_once_confirmed() -> None:
    rb = ReorderBuffer(clock_rate=8000)
    arrivals = [(0.0, pkt(0)), (0.02, pkt(5000)), (0.04, pkt(5001)), (0.06, pkt(5002))]
    out = drive(rb, arrivals)
    # RFC 3550 A.1: the jump is believed when the next packet follows it.
    assert [n for _, n in out] == [0, 5001, 5002]
    assert rb.restarts == 1 and rb.concealed == 0 and rb.late == 1


def test_a_lone_stray_packet_does_not_restart_the_order() -> None:
    rb = ReorderBuffer(clock_rate=8000)
    arrivals = [(0.0, pkt(0)), (0.02, pkt(1)), (0.03, pkt(30_000)), (0.04, pkt(2))]
    out = drive(rb, arrivals)
    assert [n for _, n in out] == [0, 1, 2]
    assert rb.restarts == 0 and rb.late == 1


def test_packets_without_audio_open_no_gap() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=20)
    rb.push(pkt(0), 0.0)
    rb.pop(0.0)
    for n, at in ((1, 0.02), (2, 0.04)):  # comfort noise or RFC 4733 events: no audio
        rb.consume(pkt(n), at)
        assert rb.next_deadline() == at
        assert rb.pop(at) == []  # nothing to forward, nothing to wait for
    assert rb.push(pkt(3), 2.0) is PushResult.BUFFERED
    assert rb.next_deadline() == 2.0  # goes at once: nothing is missing
    items = rb.pop(2.0)
    assert [int.from_bytes(i.payload, "big", signed=True) for i in items] == [3]
    assert rb.concealed == 0 and rb.skipped == 0


def test_each_gap_waits_its_own_window() -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=20)
    # 1 and 3 are missing; 2 came at 0 ms, 4 at 19 ms, 3 at 22 ms.
    arrivals = [(-0.02, pkt(0)), (0.0, pkt(2)), (0.019, pkt(4)), (0.022, pkt(3))]
    out = drive(rb, arrivals)
    seq1 = (SEQ0 + 1) & 0xFFFF
    assert [n for _, n in out] == [0, f"lost:{seq1}", 2, 3, 4]
    assert rb.concealed == 1 and rb.late == 0


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(list(range(12))),
    drop=st.sets(st.integers(0, 11), max_size=4),
    window_ms=st.integers(0, 60),
)
def test_any_arrival_order_yields_each_packet_at_most_once_in_order(
    order: list[int], drop: set[int], window_ms: int
) -> None:
    rb = ReorderBuffer(clock_rate=8000, window_ms=window_ms, max_conceal=12)
    arrivals = [(0.005 * i, pkt(n)) for i, n in enumerate(order) if n not in drop]
    out = drive(rb, arrivals)
    delivered = [n for _, n in out if isinstance(n, int)]
    assert delivered == sorted(delivered)  # never out of order
    assert len(delivered) == len(set(delivered))
    for when, n in out:
        if isinstance(n, int):
            arrived = next(t for t, p in arrivals if p.payload == n.to_bytes(4, "big", signed=True))
            # Nothing waits longer than the window after the gap before it opened.
            assert when - arrived <= window_ms / 1000 + 0.005 * 12 + 1e-9
    # Everything not delivered was either dropped by the network or came too late.
    assert rb.late + len(delivered) == len(arrivals)
