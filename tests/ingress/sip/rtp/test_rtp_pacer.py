"""The pacer core in virtual time: exact send times, continuity, marks, clear, DTMF."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.dtmf import TelephoneEvent
from ingress.sip.rtp.pacer import MAX_LEAD_SLOTS, Pacer
from ingress.sip.rtp.packet import RtpPacket
from media.frames import G722_16K, PCMU

SILENCE = b"\xff" * 160
T0 = 1000.0


def make(**kwargs: object) -> Pacer:
    args: dict[str, object] = {
        "payload_type": 0,
        "audio_format": PCMU,
        "clock_rate": 8000,
        "silence": SILENCE,
        "rand_bits": random.Random(42).getrandbits,
    }
    args.update(kwargs)
    return Pacer(**args)  # type: ignore[arg-type]


def frame(tag: int, size: int = 160) -> bytes:
    return bytes([tag]) * size


def tick(p: Pacer, slots: int) -> list[tuple[float, RtpPacket]]:
    """Poll exactly at each deadline, as the runner's timer would."""
    out: list[tuple[float, RtpPacket]] = []
    for _ in range(slots):
        deadline = p.next_deadline()
        now = T0 if deadline is None else deadline
        out.extend((now, pkt) for pkt in p.poll(now))
    return out


def test_random_stream_identity_is_injected() -> None:
    a, b = make(), make()
    assert a.ssrc == b.ssrc  # same seed, same values: nothing else is random
    rng = random.Random(42)
    assert a.ssrc == rng.getrandbits(32)
    first = tick(a, 1)[0][1]
    assert first.sequence_number == rng.getrandbits(16)
    assert first.timestamp == rng.getrandbits(32)


def test_one_packet_per_ptime_with_continuous_seq_and_ts() -> None:
    p = make()
    for tag in range(1, 4):
        p.enqueue(frame(tag))
    sent = tick(p, 6)
    assert [t for t, _ in sent] == [pytest.approx(T0 + 0.02 * k, abs=1e-9) for k in range(6)]
    seq0, ts0 = sent[0][1].sequence_number, sent[0][1].timestamp
    assert [pkt.sequence_number for _, pkt in sent] == [(seq0 + k) & 0xFFFF for k in range(6)]
    assert [pkt.timestamp for _, pkt in sent] == [(ts0 + 160 * k) & 0xFFFFFFFF for k in range(6)]
    assert [pkt.payload[:1] for _, pkt in sent] == [
        b"\x01",
        b"\x02",
        b"\x03",
        b"\xff",
        b"\xff",
        b"\xff",
    ]
    assert [pkt.marker for _, pkt in sent] == [True, False, False, False, False, False]
    assert {pkt.ssrc for _, pkt in sent} == {p.ssrc}
    assert p.audio_sent_ms == 60


def test_no_drift_over_an_hour_of_slots() -> None:
    p = make()
    p.start(T0)
    deadline = p.next_deadline()
    for _ in range(180_000):  # one hour at 20 ms
        assert deadline is not None
        p.poll(deadline)
        deadline = p.next_deadline()
    assert deadline == pytest.approx(T0 + 3600.0, abs=1e-6)
    assert p.packets_sent == 180_000


def test_polls_between_deadlines_send_nothing() -> None:
    p = make()
    assert len(p.poll(T0)) == 1
    assert p.poll(T0 + 0.019) == []
    assert len(p.poll(T0 + 0.020)) == 1


def test_marker_on_each_talk_spurt() -> None:
    p = make()
    p.enqueue(frame(1) + frame(2))
    sent = tick(p, 4)
    p.enqueue(frame(3))
    sent += tick(p, 2)
    assert [(pkt.payload[0], pkt.marker) for _, pkt in sent] == [
        (1, True),
        (2, False),
        (0xFF, False),
        (0xFF, False),
        (3, True),
        (0xFF, False),
    ]


def test_small_lag_catches_up_large_lag_skips_ahead() -> None:
    p = make()
    first = p.poll(T0)[0]
    # 50 ms late: slots 1 and 2 are due (within max_behind=3): both go out now.
    caught_up = p.poll(T0 + 0.05)
    assert len(caught_up) == 2
    # 1 s late: 50 slots due; only the current one is sent, no burst.
    after_stall = p.poll(T0 + 1.05)
    assert len(after_stall) == 1
    pkt = after_stall[0]
    assert pkt.sequence_number == (first.sequence_number + 3) & 0xFFFF
    assert pkt.timestamp == (first.timestamp + 160 * 52) & 0xFFFFFFFF  # the clock stays true
    assert p.skipped_slots == 49
    assert p.next_deadline() == pytest.approx(T0 + 1.06)


def test_mark_acknowledged_exactly_when_its_audio_is_sent() -> None:
    p = make()
    p.mark("before-anything")
    assert p.acknowledged_marks() == ["before-anything"]
    p.enqueue(frame(1) + frame(2))
    p.mark("a")
    p.enqueue(frame(3))
    p.mark("b")
    p.mark("c")
    acks = []
    for _ in range(4):
        tick(p, 1)
        acks.append(p.acknowledged_marks())
    assert acks == [[], ["a"], ["b", "c"], []]


def test_clear_drops_queue_within_one_packet_and_acks_marks() -> None:
    p = make()
    p.enqueue(b"".join(frame(k) for k in range(1, 11)))
    p.mark("end-of-response")
    tick(p, 2)
    sent_before = p.audio_sent_ms
    p.clear()
    assert p.acknowledged_marks() == ["end-of-response"]
    assert p.queued_ms == 0
    nxt = tick(p, 1)[0][1]
    assert nxt.payload == SILENCE
    assert p.audio_sent_ms == sent_before == 40
    p.enqueue(frame(9))
    assert tick(p, 1)[0][1].marker  # new talk spurt after the clear


def test_large_payloads_are_split_and_tail_padded() -> None:
    p = make()
    p.enqueue(bytes([7]) * 400)  # 50 ms of PCMU
    assert p.queued_ms == 50
    sent = [pkt for _, pkt in tick(p, 4)]
    assert [len(pkt.payload) for pkt in sent] == [160, 160, 160, 160]
    assert sent[2].payload == bytes([7]) * 80 + b"\xff" * 80
    assert sent[3].payload == SILENCE
    assert p.audio_sent_ms == 50


def test_mark_after_partial_frame_waits_for_it() -> None:
    p = make()
    p.enqueue(bytes([7]) * 100)
    p.mark("m")
    assert p.acknowledged_marks() == []
    tick(p, 1)
    assert p.acknowledged_marks() == ["m"]


def test_bounded_queue_drops_oldest_and_counts() -> None:
    p = make(max_queue_ms=100)  # five frames
    p.enqueue(frame(1) + frame(2))
    p.mark("after-2")
    p.enqueue(b"".join(frame(k) for k in range(3, 9)))
    assert p.dropped_frames == 3
    assert p.acknowledged_marks() == ["after-2"]  # its audio was dropped, not kept
    assert [pkt.payload[0] for _, pkt in tick(p, 5)] == [4, 5, 6, 7, 8]


def test_g722_frames_and_clock() -> None:
    p = make(payload_type=9, audio_format=G722_16K, silence=b"\x00" * 160)
    assert p.frame_bytes == 160 and p.samples_per_packet == 160  # 8 kHz RTP clock
    p.enqueue(bytes(320))
    sent = [pkt for _, pkt in tick(p, 2)]
    assert sent[1].timestamp - sent[0].timestamp == 160
    assert p.audio_sent_ms == 40


def test_dtmf_events_then_audio_resumes() -> None:
    p = make(telephone_event_pt=101, dtmf_duration_ms=100, dtmf_gap_ms=40)
    p.enqueue(frame(1))
    tick(p, 1)
    p.enqueue(frame(2))
    p.send_dtmf("1")
    sent = [pkt for _, pkt in tick(p, 11)]
    events = sent[:7]
    assert {pkt.payload_type for pkt in events} == {101}
    assert len({pkt.timestamp for pkt in events}) == 1
    assert events[0].timestamp == (sent[0].timestamp) and events[0].marker
    assert not any(pkt.marker for pkt in events[1:])
    parsed = [TelephoneEvent.parse(pkt.payload) for pkt in events]
    assert [e.duration for e in parsed] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in parsed] == [False] * 4 + [True] * 3
    gap = sent[7:9]
    assert [pkt.payload for pkt in gap] == [SILENCE, SILENCE]
    resumed = sent[9]
    assert resumed.payload[0] == 2 and resumed.marker and resumed.payload_type == 0
    assert resumed.timestamp == (events[0].timestamp + 160 * 9) & 0xFFFFFFFF
    seqs = [pkt.sequence_number for pkt in sent]
    assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(len(seqs))]
    # clear() is for agent audio; queued DTMF is not cancelled by it.
    p.send_dtmf("#")
    p.clear()
    assert tick(p, 1)[0][1].payload_type == 101


def test_dtmf_validation() -> None:
    with pytest.raises(ValueError, match="negotiated"):
        make().send_dtmf("1")
    with pytest.raises(ValueError, match="not DTMF"):
        make(telephone_event_pt=101).send_dtmf("12x")


def test_comfort_noise_during_silence() -> None:
    p = make(comfort_noise_pt=13, cn_refresh_ms=100)
    p.enqueue(frame(1))
    sent = tick(p, 12)
    kinds = [(round(t - T0, 3), pkt.payload_type) for t, pkt in sent]
    # Audio, then CN at the start of the silence and every 100 ms (5 slots).
    assert kinds == [(0.0, 0), (0.02, 13), (0.12, 13), (0.22, 13)]
    assert sent[1][1].payload == b"\x7f"
    seqs = [pkt.sequence_number for _, pkt in sent]
    assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(4)]
    assert sent[2][1].timestamp - sent[1][1].timestamp == 800


def test_sequence_and_timestamp_wrap() -> None:
    bits = iter([0xAAAA5555, 0xFFFE, 0xFFFFFF60])
    p = make(rand_bits=lambda k: next(bits))
    sent = [pkt for _, pkt in tick(p, 4)]
    assert [pkt.sequence_number for pkt in sent] == [0xFFFE, 0xFFFF, 0, 1]
    assert [pkt.timestamp for pkt in sent] == [0xFFFFFF60, 0, 160, 320]
    assert RtpPacket.parse(sent[2].serialize()) == sent[2]


def test_rtp_timestamp_for_sender_reports() -> None:
    p = make()
    first = p.poll(T0)[0]
    assert p.rtp_timestamp_at(T0 + 0.5) == (first.timestamp + 4000) & 0xFFFFFFFF


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("enqueue"), st.integers(1, 700)),
            st.tuples(st.just("mark"), st.integers(0, 0)),
            st.tuples(st.just("clear"), st.integers(0, 0)),
            st.tuples(st.just("poll"), st.integers(0, 300)),  # lateness in ms
        ),
        max_size=60,
    )
)
def test_pacer_invariants_under_any_operation_order(ops: list[tuple[str, int]]) -> None:
    p = make(max_queue_ms=200)
    sent: list[tuple[float, RtpPacket]] = []
    marks: list[str] = []
    acked: list[str] = []
    now = T0
    for op, arg in ops:
        if op == "enqueue":
            p.enqueue(bytes([1]) * arg)
        elif op == "mark":
            marks.append(f"m{len(marks)}")
            p.mark(marks[-1])
        elif op == "clear":
            p.clear()
        else:
            deadline = p.next_deadline()
            now = max(now, (deadline if deadline is not None else now) + arg / 1000)
            sent.extend((now, pkt) for pkt in p.poll(now))
        acked.extend(p.acknowledged_marks())
        assert p.queued_ms <= 200 + 20
    # Every mark is acknowledged at most once, in order; after draining the queue, all are.
    for _ in range(20):
        deadline = p.next_deadline()
        if deadline is not None:
            sent.extend((deadline, pkt) for pkt in p.poll(deadline))
        else:
            sent.extend((T0, pkt) for pkt in p.poll(T0))
    acked.extend(p.acknowledged_marks())
    assert acked == marks
    if not sent:
        return
    seq0, ts0 = sent[0][1].sequence_number, sent[0][1].timestamp
    assert [pkt.sequence_number for _, pkt in sent] == [
        (seq0 + k) & 0xFFFF for k in range(len(sent))
    ]
    for t, pkt in sent:
        # The timestamp is always the slot's: start + n * 160, n from the send time.
        slot = round((pkt.timestamp - ts0) % (1 << 32) / 160)
        assert (pkt.timestamp - ts0) % (1 << 32) == slot * 160
        assert t >= T0 + slot * 0.02 - 1e-9
    # Never more than max_behind packets in one poll.
    per_time: dict[float, int] = {}
    for t, _ in sent:
        per_time[t] = per_time.get(t, 0) + 1
    assert max(per_time.values()) <= p.max_behind
    assert p.audio_sent_ms <= len(sent) * 20


# -- low latency: prompt start and underrun grace ----------------------------------------


def test_prompt_start_sends_a_talk_spurt_on_arrival_with_contiguous_timestamps() -> None:
    p = make(prompt_start=True)
    first = tick(p, 1)  # silence at T0: the grid is T0 + n * 20 ms
    p.enqueue(frame(1), now=T0 + 0.005)
    assert p.next_deadline() == pytest.approx(T0 + 0.005)
    spurt = p.poll(T0 + 0.005)
    assert len(spurt) == 1 and spurt[0].marker and spurt[0].payload == frame(1)
    assert spurt[0].timestamp == first[0][1].timestamp + 160
    # The grid now follows the spurt: the next frame, arriving 20 ms later, goes at once.
    p.enqueue(frame(2), now=T0 + 0.025)
    assert p.next_deadline() == pytest.approx(T0 + 0.025)
    (second,) = p.poll(T0 + 0.025)
    assert second.payload == frame(2) and not second.marker
    assert second.timestamp == spurt[0].timestamp + 160


def test_without_prompt_start_audio_waits_for_the_grid() -> None:
    p = make()
    tick(p, 1)
    p.enqueue(frame(1), now=T0 + 0.005)
    assert p.next_deadline() == pytest.approx(T0 + 0.02)
    assert p.poll(T0 + 0.005) == []


def test_underrun_grace_waits_for_a_late_frame_instead_of_inserting_silence() -> None:
    p = make(prompt_start=True, underrun_grace_ms=10)
    tick(p, 1)
    p.enqueue(frame(1), now=T0 + 0.005)
    (a,) = p.poll(T0 + 0.005)
    # Frame 2 is 4 ms late for its slot (T0 + 25 ms): the slot waits for it.
    assert p.poll(T0 + 0.025) == []
    assert p.next_deadline() == pytest.approx(T0 + 0.035)
    p.enqueue(frame(2), now=T0 + 0.029)
    assert p.next_deadline() == pytest.approx(T0 + 0.029)
    (b,) = p.poll(T0 + 0.029)
    assert b.payload == frame(2) and not b.marker
    assert (b.sequence_number, b.timestamp) == ((a.sequence_number + 1) & 0xFFFF, a.timestamp + 160)
    # The grid followed: the next slot is 20 ms after that.
    assert p.next_deadline() == pytest.approx(T0 + 0.049)


def test_underrun_grace_ends_in_silence_and_the_grid_keeps_its_spacing() -> None:
    p = make(prompt_start=True, underrun_grace_ms=10)
    tick(p, 1)
    p.enqueue(frame(1), now=T0 + 0.005)
    p.poll(T0 + 0.005)
    assert p.poll(T0 + 0.025) == []  # waiting
    (silent,) = p.poll(T0 + 0.035)  # nothing came: silence, late by the grace
    assert silent.payload == SILENCE
    assert p.next_deadline() == pytest.approx(T0 + 0.055)  # one ptime later: no bunching


def test_early_send_brings_the_grid_back_after_one_late_frame() -> None:
    p = make(prompt_start=True, underrun_grace_ms=10, max_early_ms=5)
    tick(p, 1)
    arrivals = [T0 + 0.005 + 0.02 * n for n in range(12)]
    arrivals[2] += 0.008  # one frame 8 ms late (a pause somewhere upstream)
    waits = []
    for n, at in enumerate(arrivals):
        while (due := p.next_deadline()) is not None and due < at:
            p.poll(due)
        p.enqueue(frame(n + 1), now=at)
        due = p.next_deadline()
        assert due is not None
        sent_at = max(at, due)
        (packet,) = p.poll(sent_at)
        assert packet.payload == frame(n + 1)
        waits.append(round((sent_at - at) * 1000, 3))
    # Frame 2 waited for nothing (the slot waited for it); frames 3 and 4 arrive 8 ms
    # "early" for the shifted grid and may go 5 ms early each: 3 ms, then 0.
    assert waits[:3] == [0, 0, 0]
    assert waits[3] == pytest.approx(3.0) and waits[4:] == [0] * 8


def test_a_standing_queue_of_a_real_time_agent_drains() -> None:
    p = make(prompt_start=True, underrun_grace_ms=20, max_early_ms=5)
    tick(p, 1)
    # A real-time agent stalls for 60 ms, then its held frames arrive at once: without
    # the drain every later frame would wait behind them (~55 ms) for the rest of the turn.
    arrivals = [T0 + 0.007 + 0.02 * n for n in range(120)]
    for n in range(30, 33):
        arrivals[n] = arrivals[33]
    sent_at: dict[int, float] = {}

    def send(now: float) -> None:
        for packet in p.poll(now):
            if packet.payload != SILENCE:
                sent_at[packet.payload[0]] = now

    for n, at in enumerate(arrivals):
        while (due := p.next_deadline()) is not None and due < at:
            send(due)
        p.enqueue(frame(n + 1), now=at)
        if (due := p.next_deadline()) is not None and due <= at:
            send(at)
    while (due := p.next_deadline()) is not None and due < arrivals[-1] + 0.1:
        send(due)
    waits = {n: sent_at[n + 1] - at for n, at in enumerate(arrivals) if n + 1 in sent_at}
    assert max(waits[n] for n in range(34, 40)) > 0.05  # the stall's delay, at first
    assert max(waits[n] for n in range(100, 120)) < 0.003  # drained within two seconds
    assert p.drained_frames in (2, 3)  # about the stall's length, no more
    assert p.dropped_frames == 0 and p.skipped_slots == 0


def test_an_agent_that_sends_ahead_loses_nothing() -> None:
    p = make(prompt_start=True, underrun_grace_ms=20, max_early_ms=5)
    tick(p, 1)
    # Faster than real time (a second of audio in 100 ms chunks every 50 ms): the queue
    # is long, but the frames arrive together; that lead is the agent's, not a stall's.
    for chunk in range(10):
        at = T0 + 0.005 + 0.05 * chunk
        while (due := p.next_deadline()) is not None and due < at:
            p.poll(due)
        p.enqueue(b"".join(frame(5 * chunk + i + 1) for i in range(5)), now=at)
    tick(p, 60)
    assert p.drained_frames == 0
    assert p.audio_sent_ms == 1000


def test_grace_never_lets_the_grid_lag_more_than_one_ptime() -> None:
    p = make(prompt_start=True, underrun_grace_ms=10)
    tick(p, 1)
    now = T0 + 0.001
    p.enqueue(frame(1), now=now)
    sent = p.poll(now)
    for n in range(2, 40):  # every frame 9 ms late for its slot: the grid drifts later
        due = p.next_deadline()
        assert due is not None
        sent += p.poll(due)
        now = due + 0.009
        p.enqueue(frame(n), now=now)
        deadline = p.next_deadline()
        assert deadline is not None
        sent += p.poll(max(now, deadline))
    first_ts = sent[0].timestamp
    silences = [pkt for pkt in sent if pkt.payload == SILENCE]
    assert silences  # the grace gave out once the lag reached a ptime, then re-phased
    # Sent times never stray more than one ptime + grace from the timestamps' clock.
    assert all((pkt.timestamp - first_ts) % (1 << 32) % 160 == 0 for pkt in sent)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("enqueue"), st.integers(1, 400), st.integers(0, 30)),
            st.tuples(st.just("mark"), st.integers(0, 0), st.integers(0, 0)),
            st.tuples(st.just("clear"), st.integers(0, 0), st.integers(0, 0)),
            st.tuples(st.just("wait"), st.integers(0, 0), st.integers(0, 45)),
            st.tuples(st.just("stall"), st.integers(0, 0), st.integers(0, 60)),
        ),
        max_size=80,
    )
)
def test_low_latency_invariants_under_any_operation_order(ops: list[tuple[str, int, int]]) -> None:
    """Whatever the agent does, with prompt start and grace: contiguous sequence numbers,
    timestamps on the slot grid, send times within [-ptime, ptime + grace] of their
    timestamps' wall-clock slot, one packet per poll, every mark acknowledged once."""
    p = make(prompt_start=True, underrun_grace_ms=10, max_early_ms=5, max_queue_ms=200)
    lead = MAX_LEAD_SLOTS * 0.02
    sent: list[tuple[float, RtpPacket]] = []
    marks: list[str] = []
    acked: list[str] = []
    now = T0

    def poll(at: float) -> None:
        out = p.poll(at)
        after = p.next_deadline()
        # Never a spin: a poll that sends nothing leaves the next deadline in the future.
        assert out or after is None or after > at, (at, after)
        sent.extend((at, pkt) for pkt in out)

    def run_until(t: float) -> None:
        nonlocal now
        while (deadline := p.next_deadline()) is not None and deadline <= t:
            now = max(now, deadline)
            poll(now)
        now = max(now, t)
        poll(now)

    stalled = 0.0
    run_until(T0)
    for op, size, ms in ops:
        if op == "enqueue":
            run_until(now + ms / 1000)
            p.enqueue(bytes([1]) * size, now=now)
            run_until(now)
        elif op == "mark":
            marks.append(f"m{len(marks)}")
            p.mark(marks[-1])
        elif op == "clear":
            p.clear()
        elif op == "stall":  # the loop was busy: the timer fires late, once
            now += ms / 1000
            stalled += ms / 1000
            poll(now)
        else:
            run_until(now + ms / 1000)
        acked.extend(p.acknowledged_marks())
    run_until(now + 5)
    acked.extend(p.acknowledged_marks())
    assert acked == marks
    seq0, ts0 = sent[0][1].sequence_number, sent[0][1].timestamp
    assert [pkt.sequence_number for _, pkt in sent] == [
        (seq0 + k) & 0xFFFF for k in range(len(sent))
    ]
    for t, pkt in sent:
        slot = (pkt.timestamp - ts0) % (1 << 32) // 160
        assert (pkt.timestamp - ts0) % (1 << 32) == slot * 160
        assert T0 + slot * 0.02 - lead - 1e-9 <= t <= T0 + slot * 0.02 + 0.03 + stalled + 1e-9
    # Mid-spurt, early sends never bunch audio closer than ptime - max_early (a talk
    # spurt's first packet may follow the silence before it at once; that is its point).
    for (ta, _), (tb, b) in zip(sent, sent[1:], strict=False):
        # (A stalled poll sends late; the next packet on time may then follow sooner.)
        if not b.marker and b.payload != SILENCE and not stalled:
            assert tb - ta >= 0.015 - 1e-9
