"""The jitter buffer in virtual time under scripted reorder, loss, duplication and bursts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.jitter import JitterBuffer, Lost, PlayoutFrame, PushResult
from ingress.sip.rtp.packet import RtpPacket

SSRC = 0x1234
SEQ0 = 1000
TS0 = 50_000


def pkt(n: int, *, ts: int | None = None, ssrc: int = SSRC, seq0: int = SEQ0) -> RtpPacket:
    """Packet number ``n`` of a 20 ms PCMU stream; the payload names it."""
    return RtpPacket(
        payload_type=0,
        sequence_number=(seq0 + n) & 0xFFFF,
        timestamp=(TS0 + 160 * n if ts is None else ts) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=n.to_bytes(4, "big", signed=True),
    )


Item = PlayoutFrame | Lost


def run(
    jb: JitterBuffer, arrivals: list[tuple[float, RtpPacket]], until: float
) -> list[tuple[float, Item]]:
    """Drive the buffer as the runner would: push on arrival, pop at each deadline."""
    out: list[tuple[float, Item]] = []
    pending = sorted(arrivals, key=lambda a: a[0])
    i = 0
    now = 0.0
    for _ in range(100_000):
        deadline = jb.next_deadline()
        next_arrival = pending[i][0] if i < len(pending) else None
        candidates = [t for t in (deadline, next_arrival) if t is not None]
        if not candidates:
            break
        now = max(now, min(candidates))
        if now > until:
            break
        if next_arrival is not None and next_arrival <= now:
            jb.push(pending[i][1], now)
            i += 1
            continue
        out.extend((now, item) for item in jb.pop(now))
    return out


def numbers(out: Sequence[tuple[float, Item]]) -> list[int | str]:
    return [
        int.from_bytes(item.payload, "big", signed=True)
        if isinstance(item, PlayoutFrame)
        else "lost"
        for _, item in out
    ]


def steady(n: int, *, start: float = 0.0) -> list[tuple[float, RtpPacket]]:
    return [(start + 0.02 * k, pkt(k)) for k in range(n)]


def test_in_order_stream_plays_after_min_delay_every_ptime() -> None:
    jb = JitterBuffer(clock_rate=8000)
    out = run(jb, steady(10), until=10.0)
    frames = [(t, item) for t, item in out if isinstance(item, PlayoutFrame)]
    assert [round(t, 6) for t, _ in frames] == [round(0.02 + 0.02 * k, 6) for k in range(10)]
    assert numbers(frames) == list(range(10))
    # Then the stream stopped: five concealed slots, then idle (no endless output).
    assert numbers(out)[10:] == ["lost"] * 5
    assert jb.next_deadline() is None
    assert jb.delay == pytest.approx(0.02)


def test_reordered_packets_come_out_in_order() -> None:
    jb = JitterBuffer(clock_rate=8000)
    # Swapped pairs, each within the 20 ms playout delay.
    times = [(0.0, 0), (0.025, 2), (0.03, 1), (0.06, 3), (0.085, 5), (0.09, 4), (0.12, 6)]
    arrivals = [(t, pkt(n)) for t, n in times]
    out = run(jb, arrivals, until=0.2)
    assert numbers(out)[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert jb.late == 0


def test_loss_is_concealed_in_place() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = [a for a in steady(6) if a[1] != pkt(2)]
    out = run(jb, arrivals, until=0.139)
    assert numbers(out) == [0, 1, "lost", 3, 4, 5]
    lost = out[2][1]
    assert isinstance(lost, Lost)
    assert lost.sequence_number == SEQ0 + 2 and lost.timestamp == TS0 + 320
    assert jb.concealed == 1


def test_duplicates_dropped_and_counted() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = steady(4) + [(0.021, pkt(1)), (0.09, pkt(0)), (0.07, pkt(3))]
    out = run(jb, arrivals, until=0.099)
    assert numbers(out) == [0, 1, 2, 3]
    assert jb.duplicates == 3


def test_late_packet_dropped_and_delay_grows_to_the_bound() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = steady(20)
    # Packet 3 (due at 0.08 with a 20 ms delay) is held up by 50 ms: late.
    arrivals[3] = (0.11, pkt(3))
    arrivals[12] = (0.35, pkt(12))  # again late, by more than the grown delay
    out = run(jb, arrivals, until=0.6)
    nums = numbers(out)
    assert nums[:5] == [0, 1, 2, "lost", 4]
    assert jb.late >= 1
    assert jb.delay <= 0.04 + 1e-9
    frames = [n for n in nums if n != "lost"]
    assert frames == sorted(frames)
    assert 3 not in frames


def test_jitter_raises_delay_but_never_above_40_ms() -> None:
    jb = JitterBuffer(clock_rate=8000)
    # Arrivals wobble by up to 30 ms around the nominal time.
    wobble = [0.0, 0.03, 0.0, 0.025, 0.0, 0.03, 0.005, 0.03] * 5
    arrivals = [(0.02 * k + wobble[k], pkt(k)) for k in range(40)]
    run(jb, arrivals, until=2.0)
    assert jb.jitter_ms > 5
    assert jb.delay == pytest.approx(0.04)


def test_burst_after_network_stall_is_played_without_loss_or_flood() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = (
        steady(3)
        + [(0.2, pkt(k)) for k in range(3, 10)]
        + [(0.2 + 0.02 * j, pkt(10 + j)) for j in range(5)]
    )
    out = run(jb, arrivals, until=1.0)
    # The stall is concealed (at most max_conceal slots), then everything held up plays,
    # one frame per 20 ms from the restart, never more than one item per slot.
    assert [n for n in numbers(out) if n != "lost"] == list(range(15))
    times = [round(t, 6) for t, _ in out]
    assert len(times) == len(set(times))
    # The burst raised the jitter estimate, so the new spurt starts with the 40 ms maximum.
    restart = [t for (t, item) in out if isinstance(item, PlayoutFrame)][3]
    assert restart == pytest.approx(0.24)
    assert jb.delay == pytest.approx(0.04)


def test_sequence_number_wrap() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = [(0.02 * k, pkt(k, seq0=65533)) for k in range(6)]
    arrivals[3], arrivals[4] = (arrivals[4][0], arrivals[3][1]), (arrivals[3][0], arrivals[4][1])
    out = run(jb, arrivals, until=0.139)
    assert numbers(out) == [0, 1, 2, 3, 4, 5]
    seqs = [item.sequence_number for _, item in out]
    assert seqs == [65533, 65534, 65535, 0, 1, 2]


def test_timestamp_wrap() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = [(0.02 * k, pkt(k, ts=0xFFFFFF00 + 160 * k)) for k in range(5)]
    assert numbers(run(jb, arrivals, until=0.12)) == [0, 1, 2, 3, 4]


def test_dtx_gap_is_not_loss() -> None:
    jb = JitterBuffer(clock_rate=8000)
    # Seq continues, timestamp jumps by 300 ms: the sender stayed silent.
    arrivals = steady(3) + [
        (0.34 + 0.02 * j, pkt(3 + j, ts=TS0 + 160 * (3 + j) + 2400)) for j in range(3)
    ]
    out = run(jb, arrivals, until=0.5)
    assert [n for n in numbers(out) if n != "lost"] == [0, 1, 2, 3, 4, 5]
    assert jb.late == 0


def test_ssrc_change_restarts() -> None:
    jb = JitterBuffer(clock_rate=8000)
    # The new stream starts after the old one played out (a restart drops what is held).
    arrivals = steady(3) + [(0.1 + 0.02 * j, pkt(j, ssrc=0x9999, seq0=7)) for j in range(3)]
    out = run(jb, arrivals, until=0.3)
    assert [n for n in numbers(out) if n != "lost"] == [0, 1, 2, 0, 1, 2]
    assert jb.restarts == 1


def test_timestamp_jump_forward_does_not_stall() -> None:
    jb = JitterBuffer(clock_rate=8000)
    far = TS0 + 8000 * 60  # a minute ahead: a restarted sender clock
    arrivals = steady(3) + [(0.06 + 0.02 * j, pkt(3 + j, ts=far + 160 * j)) for j in range(3)]
    out = run(jb, arrivals, until=0.3)
    frames = [(t, n) for (t, _), n in zip(out, numbers(out), strict=True) if n != "lost"]
    assert [n for _, n in frames] == [0, 1, 2, 3, 4, 5]
    assert frames[-1][0] < 0.2


def test_sequence_jump_beyond_dropout_restarts() -> None:
    jb = JitterBuffer(clock_rate=8000)
    arrivals = steady(3) + [(0.1 + 0.02 * j, pkt(20_000 + j)) for j in range(3)]
    out = run(jb, arrivals, until=0.3)
    assert [n for n in numbers(out) if n != "lost"] == [0, 1, 2, 20_000, 20_001, 20_002]


def test_capacity_bounds_memory() -> None:
    jb = JitterBuffer(clock_rate=8000, capacity=8)
    for k in range(100):  # a flood, all at once, never popped
        jb.push(pkt(k), 0.0)
    assert jb.buffered <= 8
    assert jb.overflow_drops == 92


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(clock_rate=8000, min_delay_ms=60, max_delay_ms=40)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 60),
    jitter=st.lists(st.integers(0, 60), min_size=60, max_size=60),
    dropped=st.sets(st.integers(0, 59), max_size=15),
    duplicated=st.sets(st.integers(0, 59), max_size=15),
    capacity=st.integers(4, 50),
)
def test_bounded_in_order_never_stalls(
    n: int, jitter: list[int], dropped: set[int], duplicated: set[int], capacity: int
) -> None:
    jb = JitterBuffer(clock_rate=8000, capacity=capacity)
    arrivals = []
    for k in range(n):
        if k in dropped:
            continue
        arrivals.append((0.02 * k + jitter[k] / 1000, pkt(k)))
        if k in duplicated:
            arrivals.append((0.02 * k + jitter[(k + 7) % 60] / 1000, pkt(k)))
    out = run(jb, arrivals, until=100.0)
    assert jb.buffered <= capacity
    played = [item.sequence_number for _, item in out if isinstance(item, PlayoutFrame)]
    assert played == sorted(played)  # seqs stay below the 16-bit wrap here
    assert len(played) == len(set(played))
    # Never stalls: everything ends idle with nothing held, and no burst exceeded the cap.
    assert jb.next_deadline() is None
    assert jb.buffered == 0
    received = {k for k in range(n) if k not in dropped}
    assert {p - SEQ0 for p in played} <= received
    assert len(played) + jb.late + jb.overflow_drops >= len(received)


def test_push_results() -> None:
    jb = JitterBuffer(clock_rate=8000)
    assert jb.push(pkt(0), 0.0) is PushResult.BUFFERED
    assert jb.push(pkt(0), 0.001) is PushResult.DUPLICATE
    assert jb.push(pkt(0, ssrc=5), 0.002) is PushResult.RESTARTED
