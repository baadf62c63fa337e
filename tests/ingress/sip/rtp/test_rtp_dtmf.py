"""RFC 4733 telephone events on recorded sequences: one digit per key press."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.sip.rtp.dtmf import (
    DtmfReceived,
    DtmfReceiver,
    TelephoneEvent,
    event_packets,
)
from ingress.sip.rtp.packet import MalformedTelephoneEvent, RtpPacket
from media.frames import DtmfDigit

DATA = Path(__file__).resolve().parents[3] / "data" / "rtp"


def recorded(name: str) -> list[tuple[float, RtpPacket]]:
    rows = []
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            t, hexdata = line.split()
            rows.append((int(t) / 1000, RtpPacket.parse(bytes.fromhex(hexdata))))
    return rows


def play(
    receiver: DtmfReceiver, rows: list[tuple[float, RtpPacket]]
) -> list[tuple[float, DtmfReceived]]:
    """Feed the events, firing the receiver's timer in virtual time between packets."""
    out: list[tuple[float, DtmfReceived]] = []
    for t, packet in rows:
        deadline = receiver.next_deadline()
        if deadline is not None and deadline <= t:
            out.extend((deadline, e) for e in receiver.poll(deadline))
        if packet.payload_type == 101:
            out.extend((t, e) for e in receiver.receive(packet.timestamp, packet.payload, t))
    deadline = receiver.next_deadline()
    if deadline is not None:
        out.extend((deadline, e) for e in receiver.poll(deadline))
    return out


def test_payload_round_trip() -> None:
    ev = TelephoneEvent.parse(bytes.fromhex("058a0190"))
    assert ev == TelephoneEvent(event=5, end=True, volume=10, duration=400)
    assert ev.digit == "5"
    assert ev.serialize() == bytes.fromhex("058a0190")
    assert TelephoneEvent(16, False, 0, 0).digit is None  # flash


def test_short_payload_is_typed_error() -> None:
    with pytest.raises(MalformedTelephoneEvent):
        TelephoneEvent.parse(b"\x05\x8a")


def test_asterisk_digit_with_marker_reported_once_at_first_end_packet() -> None:
    rows = recorded("asterisk_dtmf_5.hex")
    assert rows[0][1].marker
    events = play(DtmfReceiver(8000), rows)
    assert events == [(0.15, DtmfReceived(DtmfDigit("5", 180), 1_206_400, True))]


def test_twilio_same_digit_twice_without_marker() -> None:
    rows = recorded("twilio_dtmf_11_no_marker.hex")
    assert not any(p.marker for _, p in rows)
    events = play(DtmfReceiver(8000), rows)
    assert [(e.digit, e.end_seen) for _, e in events] == [
        (DtmfDigit("1", 100), True),
        (DtmfDigit("1", 100), True),
    ]
    assert events[0][1].rtp_timestamp != events[1][1].rtp_timestamp


def test_freeswitch_long_press_segments_make_one_digit() -> None:
    events = play(DtmfReceiver(8000), recorded("freeswitch_dtmf_long_press.hex"))
    assert len(events) == 1
    _, event = events[0]
    assert event.digit == DtmfDigit("#", (0xFFFF + 4000) * 1000 // 8000)
    assert event.rtp_timestamp == 4_000_000
    assert event.end_seen


def test_telnyx_lost_end_packets_reported_by_timeout() -> None:
    receiver = DtmfReceiver(8000, end_timeout=0.5)
    events = play(receiver, recorded("telnyx_dtmf_9_lost_end.hex"))
    # Last update at 80 ms: reported at 580 ms with the last duration seen (800 units).
    assert events == [(0.58, DtmfReceived(DtmfDigit("9", 100), 640_000, False))]


def test_next_event_closes_one_with_lost_end() -> None:
    r = DtmfReceiver(8000)
    assert r.receive(1000, TelephoneEvent(3, False, 10, 320).serialize(), 0.0) == []
    out = r.receive(3000, TelephoneEvent(4, False, 10, 160).serialize(), 0.2)
    assert out == [DtmfReceived(DtmfDigit("3", 40), 1000, False)]
    out = r.receive(3000, TelephoneEvent(4, True, 10, 800).serialize(), 0.3)
    assert out == [DtmfReceived(DtmfDigit("4", 100), 3000, True)]
    # Stragglers of both events, and the retransmitted end packet, are ignored.
    assert r.receive(1000, TelephoneEvent(3, True, 10, 480).serialize(), 0.31) == []
    assert r.receive(3000, TelephoneEvent(4, True, 10, 800).serialize(), 0.32) == []
    assert r.next_deadline() is None


def test_duration_field_wrap_without_segments() -> None:
    r = DtmfReceiver(8000)
    for d in (0xF000, 0xFFF0):
        assert r.receive(500, TelephoneEvent(0, False, 10, d).serialize(), 0.0) == []
    # A reordered pre-wrap update after the wrap does not shrink the duration.
    assert r.receive(500, TelephoneEvent(0, False, 10, 0x0100).serialize(), 0.1) == []
    assert r.receive(500, TelephoneEvent(0, False, 10, 0xFF00).serialize(), 0.1) == []
    (done,) = r.receive(500, TelephoneEvent(0, True, 10, 0x0200).serialize(), 0.2)
    assert done.digit.duration_ms == (0x10200 * 1000) // 8000


def test_flash_event_is_not_a_digit() -> None:
    r = DtmfReceiver(8000)
    assert r.receive(9, TelephoneEvent(16, True, 10, 800).serialize(), 0.0) == []


def test_sixteen_khz_event_clock() -> None:
    r = DtmfReceiver(16000)
    (done,) = r.receive(9, TelephoneEvent(7, True, 10, 1600).serialize(), 0.0)
    assert done.digit == DtmfDigit("7", 100)


def test_event_packets_for_sending() -> None:
    packets = event_packets("5", duration_ms=100, ptime_ms=20, clock_rate=8000)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {e.event for e in events} == {5}
    # What we send, a receiver turns back into exactly one digit.
    r = DtmfReceiver(8000)
    got = [d for i, p in enumerate(packets) for d in r.receive(77, p.payload, i * 0.02)]
    assert got == [DtmfReceived(DtmfDigit("5", 100), 77, True)]


def test_event_packets_reject_non_digits() -> None:
    with pytest.raises(ValueError):
        event_packets("x")
    with pytest.raises(ValueError):
        event_packets("12")


@settings(max_examples=200, deadline=None)
@given(
    presses=st.lists(st.sampled_from(list("0123456789*#ABCD")), min_size=1, max_size=6),
    lost=st.sets(st.integers(0, 80), max_size=20),
    duplicated=st.sets(st.integers(0, 80), max_size=10),
    marker=st.booleans(),
)
def test_one_report_per_press_whatever_is_lost(
    presses: list[str], lost: set[int], duplicated: set[int], marker: bool
) -> None:
    """Each press whose packets are not all lost is reported exactly once, in order."""
    rows: list[tuple[float, RtpPacket]] = []
    ts, seq, t = 8000, 0, 0.0
    survivors: list[str] = []
    for digit in presses:
        survived = False
        for ev in event_packets(digit, duration_ms=100):
            if seq not in lost:
                survived = True
                packet = RtpPacket(101, seq, ts, 1, ev.payload, ev.marker and marker)
                rows.append((t, packet))
                if seq in duplicated:
                    rows.append((t + 0.001, packet))
            seq += 1
            t += 0.02
        if survived:
            survivors.append(digit)
        ts += 1600
        t += 0.06
    events = play(DtmfReceiver(8000), rows)
    assert [e.digit.digit for _, e in events] == survivors
    assert all(0 < (e.digit.duration_ms or 0) <= 100 for _, e in events)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=8)), max_size=40))
def test_random_payloads_raise_only_the_typed_error(rows: list[tuple[int, bytes]]) -> None:
    r = DtmfReceiver(8000)
    for i, (ts, payload) in enumerate(rows):
        try:
            for event in r.receive(ts, payload, i * 0.02):
                assert event.digit.digit in "0123456789*#ABCD"
        except MalformedTelephoneEvent:
            assert len(payload) < 4
    assert len(r.poll(1e9)) <= 1
