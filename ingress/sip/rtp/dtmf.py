"""RFC 4733 telephone events: the payload, a receiver that yields one digit per key
press, and the packet plan for sending digits.

Receiving (:class:`DtmfReceiver`): packets of one event share an RTP timestamp (RFC 4733
§2.5.1.1), so events are grouped by timestamp, not by the marker bit, which some carriers
omit (the RFC itself allows a lost first packet, §2.5.1.2). The first packet with the E
bit ends the event; its two retransmissions (§2.5.1.4) are ignored. An event whose end
packets were all lost is reported ``end_timeout`` seconds after its last packet, or as
soon as a different event begins. Long presses work both ways senders do them: as
segments (§2.5.1.3: a new timestamp equal to the previous one plus its duration, the E
bit only on the last) and as a duration field that wraps past 0xFFFF.

Sending (:func:`event_packets`): one digit as the payloads to send one per packet
interval at the same timestamp, durations increasing, marker on the first, and the final
packet three times (§2.5.1.4).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from ingress.sip.rtp.packet import MalformedTelephoneEvent, ts_diff
from media.frames import DTMF_DIGITS, DtmfDigit

__all__ = [
    "DtmfReceived",
    "DtmfReceiver",
    "EventPacket",
    "TelephoneEvent",
    "event_packets",
]

_PAYLOAD = struct.Struct("!BBH")
END_RETRANSMISSIONS = 3  # RFC 4733 §2.5.1.4: "the final packet ... three times"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte RFC 4733 §2.3 payload: event code, E bit, volume (0-63), duration."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise MalformedTelephoneEvent(f"telephone-event payload of {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise ValueError("event or volume out of range")
        flags = (0x80 if self.end else 0) | self.volume
        return _PAYLOAD.pack(self.event, flags, self.duration & 0xFFFF)

    @property
    def digit(self) -> str | None:
        """``0-9 * # A-D`` for events 0-15 (RFC 4733 §3.2), else ``None``."""
        return DTMF_DIGITS[self.event] if self.event < len(DTMF_DIGITS) else None


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One key press, reported once. ``rtp_timestamp`` is the event's (first segment's)."""

    digit: DtmfDigit
    rtp_timestamp: int
    end_seen: bool = True  # False when reported by timeout or a following event


@dataclass(slots=True)
class _Current:
    timestamp: int  # the segment's timestamp (changes with §2.5.1.3 segments)
    first_timestamp: int
    event: int
    duration: int  # of the current segment, unwrapped
    earlier: int  # total duration of finished segments
    last_seen: float


class DtmfReceiver:
    """Turns RFC 4733 packets into :class:`DtmfReceived` events; sans-I/O, ``now`` in seconds.

    Call :meth:`receive` for each telephone-event packet, and :meth:`poll` when
    :meth:`next_deadline` passes.
    """

    def __init__(self, clock_rate: int = 8000, *, end_timeout: float = 0.5) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self._current: _Current | None = None
        self._finished: deque[int] = deque(maxlen=16)  # timestamps already reported

    def receive(self, timestamp: int, payload: bytes, now: float) -> list[DtmfReceived]:
        """Account for one packet; raises :class:`MalformedTelephoneEvent` on a bad payload."""
        event = TelephoneEvent.parse(payload)
        out: list[DtmfReceived] = []
        cur = self._current
        if timestamp in self._finished and (cur is None or cur.timestamp != timestamp):
            return out  # a retransmitted end packet, or a straggler of a reported event
        if cur is not None and cur.timestamp != timestamp:
            gap = ts_diff(timestamp, cur.timestamp)
            if (
                event.event == cur.event
                and cur.duration >= 0x8000
                and cur.duration <= gap <= 0xFFFF
            ):
                # RFC 4733 §2.5.1.3: the next segment of a long event starts at the previous
                # segment's timestamp plus its (maximum) duration; the E bit is only on the
                # final segment. ``>=`` because the previous segment's last update may be lost.
                self._finished.append(cur.timestamp)
                cur.earlier += cur.duration
                cur.timestamp = timestamp
                cur.duration = 0
            elif gap < 0:
                return out  # an older event's packet arriving late
            else:
                out.extend(self._report(cur, end_seen=False))
                cur = None
        if cur is None:
            cur = _Current(timestamp, timestamp, event.event, 0, 0, now)
            self._current = cur
        if event.event != cur.event:
            return out  # different event code at the same timestamp: ignore the odd one
        # The duration field may wrap on long presses sent without segmenting.
        wrapped = cur.duration & ~0xFFFF
        candidate = wrapped | event.duration
        if candidate + 0x8000 < cur.duration:
            candidate += 0x10000
        elif candidate > cur.duration + 0x8000 and candidate >= 0x10000:
            candidate -= 0x10000  # a reordered update from before the wrap
        cur.duration = max(cur.duration, candidate)
        cur.last_seen = now
        if event.end:
            out.extend(self._report(cur, end_seen=True))
        return out

    def _report(self, cur: _Current, *, end_seen: bool) -> list[DtmfReceived]:
        """Close ``cur``; a report for DTMF events 0-15 only (flash and others are dropped)."""
        self._finished.append(cur.timestamp)
        if self._current is cur:
            self._current = None
        if cur.event >= len(DTMF_DIGITS):
            return []
        ms = (cur.earlier + cur.duration) * 1000 // self.clock_rate
        digit = DtmfDigit(DTMF_DIGITS[cur.event], ms)
        return [DtmfReceived(digit, cur.first_timestamp, end_seen)]

    def next_deadline(self) -> float | None:
        return None if self._current is None else self._current.last_seen + self.end_timeout

    def poll(self, now: float) -> list[DtmfReceived]:
        """Report an event whose end packets never came (``end_timeout`` after its last)."""
        cur = self._current
        if cur is None or now < cur.last_seen + self.end_timeout:
            return []
        return self._report(cur, end_seen=False)


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One packet of an outgoing event: payload, marker bit, and its offset in the plan."""

    payload: bytes
    marker: bool
    end: bool


def event_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    ptime_ms: int = 20,
    clock_rate: int = 8000,
    volume: int = 10,
) -> list[EventPacket]:
    """The packets for one key press, to send one per ``ptime_ms`` at one RTP timestamp.

    Durations grow by one packet interval each (RFC 4733 §2.5.1.2); the last carries the
    full duration with the E bit and is sent ``END_RETRANSMISSIONS`` times in all.
    Raises ``ValueError`` for a character that is not a DTMF digit.
    """
    digit = digit.upper()
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if duration_ms < ptime_ms:
        raise ValueError("duration_ms must be at least one packet time")
    code = DTMF_DIGITS.index(digit)
    step = clock_rate * ptime_ms // 1000
    total = min(0xFFFF, clock_rate * duration_ms // 1000)
    packets: list[EventPacket] = []
    duration = step
    while duration < total:
        payload = TelephoneEvent(code, False, volume, duration).serialize()
        packets.append(EventPacket(payload, marker=not packets, end=False))
        duration += step
    final = TelephoneEvent(code, True, volume, total).serialize()
    for _ in range(END_RETRANSMISSIONS):
        packets.append(EventPacket(final, marker=not packets, end=True))
    return packets
