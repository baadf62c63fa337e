"""Receiver statistics (RFC 3550 A.1/A.3/A.8), the media timeout, and symmetric latching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.latching import LatchDecision, SymmetricLatch
from ingress.sip.rtp.stats import MediaTimedOut, MediaTimeout, PacketVerdict, ReceiverStatistics

CARRIER = ("198.51.100.21", 13218)
NATTED = ("198.51.100.21", 40123)
OTHER = ("203.0.113.66", 5004)


def feed(stats: ReceiverStatistics, seqs: list[int], *, ssrc: int = 1) -> list[PacketVerdict]:
    return [stats.update(ssrc, s, 160 * i, 0.02 * i) for i, s in enumerate(seqs)]


def test_counts_loss_duplicates_and_reorder() -> None:
    stats = ReceiverStatistics(8000)
    verdicts = feed(stats, [10, 11, 13, 12, 12, 15])
    assert verdicts.count(PacketVerdict.DUPLICATE) == 1
    snap = stats.snapshot()
    assert (snap.received, snap.expected, snap.lost, snap.duplicates) == (5, 6, 1, 1)


def test_extended_sequence_across_wrap() -> None:
    stats = ReceiverStatistics(8000)
    feed(stats, [65534, 65535, 0, 1, 65535])
    assert stats.cycles == 65536
    assert stats.extended_highest_sequence == 65536 + 1
    assert stats.expected == 4 and stats.received == 4 and stats.duplicates == 1


def test_big_jump_needs_confirmation() -> None:
    stats = ReceiverStatistics(8000)
    feed(stats, [100, 101])
    assert stats.update(1, 20000, 0, 1.0) is PacketVerdict.BAD_SEQUENCE
    assert stats.update(1, 20001, 160, 1.02) is PacketVerdict.ACCEPTED  # the sender restarted
    assert stats.expected == 1 and stats.received == 1


def test_ssrc_change_restarts_counts() -> None:
    stats = ReceiverStatistics(8000)
    feed(stats, [1, 2, 3])
    stats.update(2, 500, 0, 1.0)
    assert stats.ssrc == 2 and stats.ssrc_changes == 1
    assert stats.received == 1


def test_jitter_zero_for_perfect_stream_and_measured_in_ms() -> None:
    stats = ReceiverStatistics(8000)
    feed(stats, list(range(50)))
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-9)
    # Every other packet 10 ms late: |D| = 80 units (10 ms) on each step.
    jittery = ReceiverStatistics(8000)
    for i in range(200):
        jittery.update(1, i, 160 * i, 0.02 * i + (0.01 if i % 2 else 0.0))
    assert jittery.jitter_ms == pytest.approx(10.0, rel=0.01)
    snap = jittery.snapshot()
    assert snap.max_jitter_ms == pytest.approx(10.0, rel=0.01)
    assert 0 < snap.mean_jitter_ms < snap.max_jitter_ms


def test_jitter_survives_timestamp_wrap() -> None:
    stats = ReceiverStatistics(8000)
    for i in range(20):
        stats.update(1, i, (0xFFFFFF00 + 160 * i) & 0xFFFFFFFF, 0.02 * i)
    assert stats.jitter_ms == pytest.approx(0.0, abs=1e-9)


def test_report_block_fraction_lost_and_dlsr() -> None:
    stats = ReceiverStatistics(8000)
    assert stats.report_block(0.0) is None
    feed(stats, [0, 1, 2, 3, 5, 6, 7, 9])  # 2 of 10 lost
    stats.record_sender_report((0x12345678 << 32) | 0x9ABC0000, 1.0)
    block = stats.report_block(1.5)
    assert block is not None
    assert block.fraction_lost == (2 << 8) // 10
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 9
    assert block.lsr == 0x56789ABC
    assert block.dlsr == 32768  # 0.5 s in 1/65536 s
    # The next interval: no new loss.
    stats.update(1, 10, 1600, 2.0)
    block = stats.report_block(2.0)
    assert block is not None and block.fraction_lost == 0


def test_late_is_recorded() -> None:
    stats = ReceiverStatistics(8000)
    stats.record_late()
    assert stats.snapshot().late == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), max_size=300), st.integers(0, 0xFFFF))
def test_random_sequences_never_break_invariants(seqs: list[int], start: int) -> None:
    stats = ReceiverStatistics(8000)
    for i, s in enumerate([start, *seqs]):
        stats.update(7, s, 160 * i, 0.02 * i)
    snap = stats.snapshot()
    assert snap.lost >= 0 and snap.received >= 1 and snap.jitter_ms >= 0


# -- media timeout ---------------------------------------------------------------------


def test_media_timeout_fires_once_after_silence() -> None:
    mt = MediaTimeout(30.0)
    assert mt.next_deadline() is None
    mt.start(100.0)
    mt.packet_received(101.0)
    assert mt.next_deadline() == 131.0
    assert mt.poll(130.9) is None
    assert mt.poll(131.0) == MediaTimedOut(last_packet_at=101.0)
    assert mt.poll(200.0) is None
    assert mt.next_deadline() is None


def test_media_timeout_without_any_packet() -> None:
    mt = MediaTimeout(5.0)
    mt.start(10.0)
    assert mt.poll(15.0) == MediaTimedOut(last_packet_at=None)


def test_media_timeout_paused_on_hold_and_restarted_on_resume() -> None:
    mt = MediaTimeout(30.0)
    mt.start(0.0)
    mt.packet_received(1.0)
    mt.set_hold(True, 2.0)
    assert mt.next_deadline() is None
    assert mt.poll(500.0) is None
    mt.set_hold(False, 600.0)
    assert mt.next_deadline() == 630.0
    assert mt.poll(629.0) is None
    assert mt.poll(630.0) == MediaTimedOut(last_packet_at=1.0)


# -- symmetric latching ----------------------------------------------------------------


def test_latches_to_first_source_not_the_sdp_address() -> None:
    latch = SymmetricLatch(CARRIER)
    assert latch.send_to == CARRIER
    assert latch.receive(NATTED, 0xAB, 10) is LatchDecision.LATCHED
    assert latch.send_to == NATTED
    assert latch.receive(NATTED, 0xAB, 11) is LatchDecision.ACCEPTED


def test_strangers_are_ignored_and_counted() -> None:
    latch = SymmetricLatch(CARRIER)
    latch.receive(CARRIER, 0xAB, 10)
    assert latch.receive(OTHER, 0xCD, 500) is LatchDecision.IGNORED
    assert latch.receive(OTHER, 0xAB, 5) is LatchDecision.IGNORED  # right SSRC, old seq
    assert latch.ignored == 2
    assert latch.send_to == CARRIER


def test_same_ssrc_from_new_address_relatches_at_once() -> None:
    latch = SymmetricLatch(CARRIER)
    latch.receive(CARRIER, 0xAB, 65535)
    assert latch.receive(NATTED, 0xAB, 1) is LatchDecision.RELATCHED  # across the wrap
    assert latch.send_to == NATTED and latch.relatches == 1


def test_new_ssrc_from_new_address_needs_consecutive_packets() -> None:
    latch = SymmetricLatch(CARRIER, switch_after=3)
    latch.receive(CARRIER, 0xAB, 10)
    assert latch.receive(OTHER, 0xCD, 100) is LatchDecision.IGNORED
    assert latch.receive(OTHER, 0xCD, 101) is LatchDecision.IGNORED
    # The latched source speaks: the candidate starts over.
    assert latch.receive(CARRIER, 0xAB, 11) is LatchDecision.ACCEPTED
    assert latch.receive(OTHER, 0xCD, 102) is LatchDecision.IGNORED
    assert latch.receive(OTHER, 0xCD, 103) is LatchDecision.IGNORED
    assert latch.receive(OTHER, 0xCD, 104) is LatchDecision.RELATCHED
    assert latch.send_to == OTHER and latch.ssrc == 0xCD
    assert latch.receive(CARRIER, 0xAB, 12) is LatchDecision.IGNORED


def test_non_consecutive_candidate_never_wins() -> None:
    latch = SymmetricLatch(CARRIER, switch_after=2)
    latch.receive(CARRIER, 0xAB, 10)
    for seq in (100, 300, 500, 700):
        assert latch.receive(OTHER, 0xCD, seq) is LatchDecision.IGNORED


def test_new_ssrc_from_latched_address_is_accepted() -> None:
    latch = SymmetricLatch(CARRIER)
    latch.receive(CARRIER, 0xAB, 10)
    assert latch.receive(CARRIER, 0xEF, 9000) is LatchDecision.ACCEPTED
    assert latch.ssrc == 0xEF


def test_reset_after_reinvite() -> None:
    latch = SymmetricLatch(CARRIER)
    latch.receive(NATTED, 0xAB, 10)
    latch.reset(OTHER)
    assert latch.send_to == OTHER
    assert latch.receive(OTHER, 0x1, 1) is LatchDecision.LATCHED
