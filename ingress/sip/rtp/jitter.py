"""An adaptive jitter buffer for one inbound RTP audio stream (no codec knowledge).

Shape: :meth:`JitterBuffer.push` each received packet with the arrival time ``now``;
arm a timer at :meth:`JitterBuffer.next_deadline` and call :meth:`JitterBuffer.pop` when
it fires. ``pop`` returns, in order, :class:`PlayoutFrame` (a packet's payload) and
:class:`Lost` markers (a slot whose packet is missing: the caller conceals it by
repeating the last frame or playing silence; the buffer knows nothing about codecs).

How it plays out:

* The playout clock maps RTP timestamps to ``now``: a talk spurt's first packet is due
  ``delay`` seconds after it arrived, every later slot one frame (``ptime``) later.
* ``delay`` starts at ``min_delay_ms`` and adapts to the measured interarrival jitter
  (RFC 3550 A.8 estimator, three times the jitter rounded up to whole frames), and grows
  by one frame when a packet arrives too late; it never exceeds ``max_delay_ms`` (40 ms by
  default). Reductions apply at the next talk spurt so they never drop audio.
* A missing packet whose successor is already buffered is concealed (``Lost``). With the
  buffer empty the slot is concealed too, but at most ``max_conceal`` times in a row;
  then the buffer goes idle (the sender stopped: DTX, hold, hang-up) and the next packet
  starts a new talk spurt. So it never stalls and never emits forever.
* A timestamp gap with consecutive sequence numbers is the sender's silence (DTX): no
  output, no loss. Jumps of more than ``resync_ms`` in either direction, an SSRC change or
  a sequence jump beyond ``MAX_DROPOUT`` restart the timeline instead of waiting.
* At most ``capacity`` packets are held (oldest dropped beyond that) and one ``pop``
  returns at most ``max_burst`` items; if the caller fell far behind, the clock skips
  ahead instead of bursting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ingress.sip.rtp.packet import RtpPacket, seq_diff, ts_diff

__all__ = ["JitterBuffer", "Lost", "PlayoutFrame", "PushResult"]

MAX_DROPOUT: Final = 3000  # RFC 3550 A.1: a bigger sequence jump means the sender restarted


@dataclass(frozen=True, slots=True, init=False)
class PlayoutFrame:
    """A received packet's payload, due for playout now."""

    payload: bytes
    sequence_number: int
    timestamp: int
    marker: bool = False

    def __init__(
        self, payload: bytes, sequence_number: int, timestamp: int, marker: bool = False
    ) -> None:
        # Written out, as media.frames.AudioFrame's: one per packet received.
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "sequence_number", sequence_number)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "marker", marker)


@dataclass(frozen=True, slots=True)
class Lost:
    """The slot for this (expected) sequence number/timestamp has no packet: conceal it."""

    sequence_number: int
    timestamp: int


Playout = PlayoutFrame | Lost


class PushResult(StrEnum):
    BUFFERED = "buffered"
    DUPLICATE = "duplicate"
    LATE = "late"  # after its playout slot (dropped)
    RESTARTED = "restarted"  # buffered, after the timeline was restarted (SSRC/seq/ts jump)


@dataclass(slots=True)
class _Held:
    seq: int  # extended sequence number
    ts: int  # extended timestamp
    packet: RtpPacket


class JitterBuffer:
    """See the module docstring. ``now`` is monotonic seconds, supplied by the caller."""

    def __init__(
        self,
        *,
        clock_rate: int,
        ptime_ms: int = 20,
        min_delay_ms: int = 20,
        max_delay_ms: int = 40,
        capacity: int = 50,
        max_conceal: int = 5,
        max_burst: int = 10,
        resync_ms: int = 1000,
    ) -> None:
        if clock_rate <= 0 or ptime_ms <= 0 or capacity <= 0 or max_burst <= 0:
            raise ValueError("clock_rate, ptime_ms, capacity and max_burst must be positive")
        if not 0 <= min_delay_ms <= max_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        self.clock_rate = clock_rate
        self.ptime = ptime_ms / 1000
        self.min_delay = min_delay_ms / 1000
        self.max_delay = max_delay_ms / 1000
        self.capacity = capacity
        self.max_conceal = max_conceal
        self.max_burst = max_burst
        self._resync_ts = clock_rate * resync_ms // 1000
        self._frame_ts = clock_rate * ptime_ms // 1000
        self.delay = self.min_delay  # current target delay, seconds
        # counters
        self.late = 0
        self.duplicates = 0
        self.concealed = 0
        # Missing packets passed over unconcealed: always 0 here (a playout buffer conceals
        # or resyncs); the ReorderBuffer counts them. The stream reads either.
        self.skipped = 0
        self.restarts = 0
        self.overflow_drops = 0
        self._jitter = 0.0  # RFC 3550 A.8 estimate, timestamp units
        self._last_transit: int | None = None
        self._reset(None)

    def _reset(self, ssrc: int | None) -> None:
        self._ssrc = ssrc
        self._held: dict[int, _Held] = {}
        self._highest_seq: int | None = None  # extended
        self._last_seq: int | None = None  # extended seq of the last emitted packet
        self._recent: set[int] = set()  # extended seqs emitted lately (duplicate check)
        self._recent_order: list[int] = []
        self._ts_ref: int | None = None  # extended timestamp of reference
        self._idle = True
        self._fresh = False  # timeline restarted, nothing played yet
        self._play_ts = 0
        self._anchor_ts = 0
        self._anchor_time = 0.0
        self._conceal_run = 0

    # -- input -------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._held)

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000 / self.clock_rate

    def push(self, packet: RtpPacket, now: float) -> PushResult:
        """Add one received packet (already latched and parsed)."""
        restarted = False
        if packet.ssrc != self._ssrc:
            restarted = self._ssrc is not None
            self._reset(packet.ssrc)
            self._jitter, self._last_transit = 0.0, None
        if self._highest_seq is None or self._ts_ref is None:
            seq, ts = packet.sequence_number, packet.timestamp
            self._highest_seq, self._ts_ref = seq, ts
        else:
            seq = self._highest_seq + seq_diff(packet.sequence_number, self._highest_seq)
            ts = self._ts_ref + ts_diff(packet.timestamp, self._ts_ref)
            if abs(seq - self._highest_seq) > MAX_DROPOUT:
                self._reset(packet.ssrc)
                self._highest_seq, self._ts_ref = packet.sequence_number, packet.timestamp
                seq, ts = packet.sequence_number, packet.timestamp
                restarted = True
        self._highest_seq = max(self._highest_seq, seq)
        self._ts_ref = ts
        self._measure_jitter(packet.timestamp, now)

        if seq in self._held or seq in self._recent:
            self.duplicates += 1
            return PushResult.DUPLICATE
        if self._last_seq is not None and seq <= self._last_seq:
            return self._too_late(now)
        if self._idle:
            self._start_spurt(seq, ts, now)
        elif 0 < self._play_ts - ts <= self._resync_ts:
            if self._fresh:
                # Reordered start of a talk spurt: begin one slot earlier instead.
                self._play_ts = self._anchor_ts = ts
            else:
                return self._too_late(now)
        if len(self._held) >= self.capacity:
            oldest = min(self._held)
            if seq < oldest:
                self.overflow_drops += 1
                return PushResult.LATE
            del self._held[oldest]
            self.overflow_drops += 1
        self._held[seq] = _Held(seq, ts, packet)
        if restarted:
            self.restarts += 1
            return PushResult.RESTARTED
        return PushResult.BUFFERED

    def consume(self, packet: RtpPacket, now: float) -> None:
        """A packet of the stream without audio (comfort noise, RFC 4733): nothing to do;
        the buffer treats the sequence gap it leaves as the sender's silence."""
        del packet, now

    def _too_late(self, now: float) -> PushResult:
        self.late += 1
        # A late packet means the delay was too short: add a frame now (bounded).
        if self.delay + self.ptime <= self.max_delay + 1e-9 and not self._idle:
            self.delay += self.ptime
            self._anchor_time += self.ptime
        return PushResult.LATE

    def _start_spurt(self, seq: int, ts: int, now: float) -> None:
        # Reductions of the delay take effect here, at a talk-spurt boundary.
        self.delay = self._wanted_delay()
        self._idle = False
        self._fresh = True
        self._conceal_run = 0
        self._play_ts = self._anchor_ts = ts
        self._anchor_time = now + self.delay
        if self._last_seq is None or self._last_seq < seq - 1:
            self._last_seq = seq - 1

    def _wanted_delay(self) -> float:
        jitter_s = self._jitter / self.clock_rate
        frames = math.ceil(3 * jitter_s / self.ptime - 1e-9)
        return min(self.max_delay, max(self.min_delay, frames * self.ptime))

    def _measure_jitter(self, timestamp: int, now: float) -> None:
        # RFC 3550 A.8, in timestamp units.
        transit = (int(now * self.clock_rate) - timestamp) & 0xFFFFFFFF
        if self._last_transit is not None:
            d = ts_diff(transit, self._last_transit)
            if abs(d) <= self._resync_ts:
                self._jitter += (abs(d) - self._jitter) / 16
        self._last_transit = transit
        wanted = self._wanted_delay()
        if wanted > self.delay and not self._idle:
            self._anchor_time += wanted - self.delay
            self.delay = wanted

    # -- output ------------------------------------------------------------------------

    def _due(self) -> float:
        return self._anchor_time + (self._play_ts - self._anchor_ts) / self.clock_rate

    def next_deadline(self) -> float | None:
        """When :meth:`pop` has something to do next; ``None`` while idle."""
        if self._idle:
            return None
        return self._due()

    def pop(self, now: float) -> list[PlayoutFrame | Lost]:
        """Everything due at ``now``, in order (at most ``max_burst`` items)."""
        out: list[PlayoutFrame | Lost] = []
        while not self._idle and len(out) < self.max_burst:
            due = self._due()
            if due > now + 1e-9:
                break
            if now - due > max(0.5, 4 * self.max_delay):
                # The caller fell far behind: skip the clock ahead rather than burst.
                self._anchor_ts, self._anchor_time = self._play_ts, now
                due = now
            head = self._held[min(self._held)] if self._held else None
            half = self._frame_ts // 2
            if head is not None and (
                head.ts <= self._play_ts + half or head.ts - self._play_ts > self._resync_ts
            ):
                if abs(head.ts - self._play_ts) > half:
                    # Timestamp discontinuity (or a jump beyond resync_ms): re-anchor.
                    self._anchor_ts, self._anchor_time = head.ts, due
                    self._play_ts = head.ts
                del self._held[head.seq]
                out.append(self._emit(head))
                continue
            self._fresh = False
            if head is not None:
                if self._last_seq is not None and head.seq == self._last_seq + 1:
                    # Consecutive sequence numbers, later timestamp: the sender was
                    # silent (DTX). Nothing to play in this slot and nothing lost.
                    self._play_ts += self._frame_ts
                    continue
                missing = (self._last_seq or head.seq - 1) + 1
                self._last_seq = missing
                out.append(Lost(missing & 0xFFFF, self._play_ts & 0xFFFFFFFF))
                self.concealed += 1
                self._play_ts += self._frame_ts
                continue
            if self._conceal_run >= self.max_conceal:
                self._idle = True
                break
            self._conceal_run += 1
            self.concealed += 1
            expected = (self._last_seq + 1) if self._last_seq is not None else 0
            out.append(Lost(expected & 0xFFFF, self._play_ts & 0xFFFFFFFF))
            self._play_ts += self._frame_ts
        return out

    def _emit(self, held: _Held) -> PlayoutFrame:
        self._fresh = False
        self._conceal_run = 0
        self._last_seq = held.seq
        self._recent.add(held.seq)
        self._recent_order.append(held.seq)
        if len(self._recent_order) > 256:
            for old in self._recent_order[:128]:
                self._recent.discard(old)
            del self._recent_order[:128]
        self._play_ts = held.ts + self._frame_ts
        p = held.packet
        return PlayoutFrame(p.payload, p.sequence_number, p.timestamp, p.marker)
