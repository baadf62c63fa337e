"""The playout pacer core: agent audio out as one RTP packet per ``ptime``, on time.

Sans-I/O: the runner calls :meth:`Pacer.poll` with a monotonic ``now`` whenever
:meth:`Pacer.next_deadline` passes and sends the returned packets. Contract:

* Packet *n* is due at ``start + n * ptime`` (scheduled from the start, never from the
  last send, so there is no drift). A poll that is a little late sends every slot that is
  due; one that is more than ``max_behind`` slots late sends only the current slot and
  skips the rest (their timestamps too, keeping the RTP clock on the wall clock), so the
  peer never sees a burst.
* Sequence numbers are consecutive over the packets actually sent; timestamps advance by
  ``clock_rate * ptime / 1000`` per slot (RTP clock units: G.722 uses 8000, RFC 3551
  §4.5.2). SSRC and initial sequence number/timestamp come from the injected
  ``rand_bits`` (RFC 3550 §5.1: random initial values).
* The marker bit is set on the first packet of each talk spurt (RFC 3551 §4.1), i.e. the
  first agent audio after silence, a ``clear()`` or DTMF.
* When the agent is silent the pacer keeps sending ``silence`` packets, or, when comfort
  noise was negotiated, an RFC 3389 CN packet at the start of the silence and every
  ``cn_refresh_ms`` after it, so carrier media timeouts never trip.
* :meth:`clear` drops all queued agent audio at once (the next slot is silence);
  :meth:`mark` is acknowledged when the audio queued before it has been sent, or at
  :meth:`clear`/overflow if that audio was dropped instead. Read them with
  :meth:`acknowledged_marks`.
* The queue is bounded (``max_queue_ms``): when full, the oldest audio is dropped and
  counted in ``dropped_frames``.
* :meth:`send_dtmf` plays RFC 4733 events (:func:`~ingress.sip.rtp.dtmf.event_packets`)
  ahead of queued audio, which waits; ``clear()`` does not cancel DTMF.

Low latency (``prompt_start``, ``underrun_grace_ms``): agent audio should not wait for the
next slot of a grid fixed when the call began. Two rules move the grid's *phase* while
sequence numbers and timestamps stay exactly as above (contiguous, one ``ptime`` apart):

* **Prompt start.** Audio enqueued (with ``now``) while the pacer is in silence makes the
  next slot due at once: the talk spurt's first packet, marker bit set, leaves now instead
  of up to one ``ptime`` later. The receiver sees it up to one ``ptime`` early for its
  timestamp, which its jitter buffer absorbs; RFC 3551 §4.1 lets it re-adapt at a marker.
* **Underrun grace.** Mid-spurt, a slot that finds no audio waits up to
  ``underrun_grace_ms`` for the agent's next frame instead of sending silence into the
  middle of a word (a real-time agent's frames arrive with some jitter). If it comes, it
  leaves on arrival and the grid follows it; if not, the slot is silence.
* **Early send.** Mid-spurt, a frame that finds the queue empty may leave up to
  ``max_early_ms`` before its slot, and the grid follows it. Without it, one late frame
  (a pause of the agent's network or of this process) would move the grid later for the
  rest of the spurt, and every later frame of a real-time agent would wait that long.
  Packets are never closer together than ``ptime - max_early_ms``, so no burst.
* **Standing-queue drain.** A real-time agent whose frames all wait in the queue (after
  a stall, every later frame finds one queued before it) would keep that delay for the
  rest of its turn. The pacer acts on the least time a frame waited over
  ``DRAIN_WINDOW`` frames (CoDel's idea, RFC 8289: the minimum sojourn time, not the
  queue length): above ``DRAIN_SLACK`` the grid moves earlier by it (at most
  ``max_early_ms`` a window, and never more than ``MAX_LEAD_SLOTS`` ptimes ahead of the
  timestamps); above a whole ``ptime``, when those frames arrived at the real-time
  pace, one queued frame is dropped (``drained_frames``): 20 ms of audio lost once is
  better than a delay that never ends. Frames of an agent that sends faster than real
  time arrive together, so its lead (the audio it sends ahead) is never dropped.

The phase offset stays within ``[-MAX_LEAD_SLOTS * ptime, max(ptime, grace)]`` of the
original grid, so the RTP clock never drifts from the wall clock by more than that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ingress.sip.rtp.dtmf import EventPacket, event_packets
from ingress.sip.rtp.packet import RtpPacket
from media.frames import DTMF_DIGITS, AudioFormat

__all__ = ["Pacer"]

CN_LEVEL: Final = 127  # RFC 3389 §3: noise level in -dBov; 127 is the quietest
MAX_LEAD_SLOTS = 2  # the drain sends at most this many ptimes ahead of the timestamps
DRAIN_WINDOW = 10  # audio slots over which the least queueing delay is taken
DRAIN_SLACK = 0.002  # seconds of queueing delay that count as none (timer precision)


# Both written out (init=False): compiled by mypyc, several times faster than the
# interpreted __init__ dataclasses generates (gateway/native.py). One per frame and mark.
@dataclass(slots=True, init=False)
class _Frame:
    payload: bytes
    ms: float
    arrived: float | None = None  # when the agent's audio reached the pacer, if known

    def __init__(self, payload: bytes, ms: float, arrived: float | None = None) -> None:
        self.payload = payload
        self.ms = ms
        self.arrived = arrived


@dataclass(slots=True, init=False)
class _Mark:
    name: str

    def __init__(self, name: str) -> None:
        self.name = name


class Pacer:
    """See the module docstring. ``audio_format`` sizes the frames (``ptime`` of audio
    per packet); ``silence`` is one packet of silence in that format (the caller makes it,
    e.g. ``media.chunking.silence(format, ptime)``: the pacer knows no codecs)."""

    def __init__(
        self,
        *,
        payload_type: int,
        audio_format: AudioFormat,
        clock_rate: int,
        silence: bytes,
        rand_bits: Callable[[int], int],
        ptime_ms: int = 20,
        max_queue_ms: int = 120_000,
        max_behind: int = 3,
        telephone_event_pt: int | None = None,
        telephone_event_clock_rate: int | None = None,
        comfort_noise_pt: int | None = None,
        cn_refresh_ms: int = 200,
        dtmf_duration_ms: int = 100,
        dtmf_gap_ms: int = 60,
        prompt_start: bool = False,
        underrun_grace_ms: int = 0,
        max_early_ms: int = 0,
    ) -> None:
        if ptime_ms <= 0 or clock_rate <= 0 or not silence:
            raise ValueError("ptime_ms and clock_rate must be positive, silence non-empty")
        self.payload_type = payload_type
        self.audio_format = audio_format
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.frame_bytes = audio_format.bytes_for_ms(ptime_ms)
        self.samples_per_packet = clock_rate * ptime_ms // 1000
        self.silence = silence
        self.max_frames = max(1, max_queue_ms // ptime_ms)
        self.max_behind = max(1, max_behind)
        self.telephone_event_pt = telephone_event_pt
        self.telephone_event_clock_rate = telephone_event_clock_rate or clock_rate
        self.comfort_noise_pt = comfort_noise_pt
        self._cn_every = max(1, cn_refresh_ms // ptime_ms)
        self.dtmf_duration_ms = dtmf_duration_ms
        self._dtmf_gap_slots = max(1, -(-dtmf_gap_ms // ptime_ms))
        # RFC 3550 §5.1: SSRC, initial sequence number and timestamp are random.
        self.ssrc = rand_bits(32)
        self._seq = rand_bits(16)
        self._ts0 = rand_bits(32)
        self.prompt_start = prompt_start
        self.grace = max(0, underrun_grace_ms) / 1000
        self.max_early = min(max(0, max_early_ms), ptime_ms) / 1000
        self._max_lag = max(self.ptime_ms / 1000, self.grace)
        self._max_lead = -MAX_LEAD_SLOTS * self.ptime_ms / 1000
        self._start: float | None = None
        self._next_slot = 0
        self._offset = 0.0  # the grid's phase shift, seconds (see the module docstring)
        self._waiting_until: float | None = None  # underrun grace: the slot waits until
        self._least_wait = float("inf")  # over the current drain window
        self._window_slots = 0
        self._window_first: float | None = None  # arrival of the window's first frame
        self._queue: deque[_Frame | _Mark] = deque()
        self._queued_frames = 0
        self._carry = b""
        self._acked: list[str] = []
        self._dtmf: deque[EventPacket | None] = deque()
        self._event_ts = 0
        self._in_silence = True  # so the first audio packet carries the marker
        self._silent_slots = 0
        # counters
        self.audio_sent_ms = 0.0
        self.packets_sent = 0
        self.octets_sent = 0
        self.dropped_frames = 0
        self.drained_frames = 0
        self.skipped_slots = 0

    # -- input -------------------------------------------------------------------------

    def enqueue(self, payload: bytes, now: float | None = None) -> None:
        """Queue encoded agent audio; any length is split into ``ptime`` frames (a tail
        shorter than one frame waits for more audio, a mark, or an empty slot).

        With ``now`` (the time the audio arrived), a silent pacer with ``prompt_start``
        makes its next slot due at once, and a slot waiting out an underrun is due at
        once; :meth:`next_deadline` then says so.
        """
        was_empty = self._queued_frames == 0
        data = self._carry + payload
        size = self.frame_bytes
        whole = len(data) - len(data) % size
        for pos in range(0, whole, size):
            self._push_frame(data[pos : pos + size], now)
        self._carry = data[whole:]
        if now is None or self._start is None or self._queued_frames == 0:
            return
        if self._waiting_until is not None:
            # The frame the slot waited for: it leaves now, and the grid follows it.
            self._offset += min(max(0.0, now - self._due(self._next_slot)), self.grace)
            self._waiting_until = None
        elif was_empty and not self._dtmf:
            due = self._due(self._next_slot)
            if due > now:
                ptime = self.ptime_ms / 1000
                allowed = ptime if self.prompt_start and self._in_silence else self.max_early
                self._offset = max(self._offset - min(due - now, allowed), self._max_lead)

    def _push_frame(self, payload: bytes, now: float | None) -> None:
        if self._queued_frames >= self.max_frames:
            self._drop_oldest()
        ms = self.audio_format.ms_for_bytes(len(payload))
        self._queue.append(_Frame(payload, ms, now))
        self._queued_frames += 1

    def _drop_oldest(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Frame):
                self._queued_frames -= 1
                self.dropped_frames += 1
                break
            self._acked.append(item.name)
        self._ack_head_marks()

    def _flush_carry(self) -> None:
        if self._carry:
            # Pad the tail with the tail of a silence packet: whole codec bytes either way.
            padded = self._carry + self.silence[len(self._carry) : self.frame_bytes]
            ms = self.audio_format.ms_for_bytes(len(self._carry))
            self._carry = b""
            if self._queued_frames >= self.max_frames:
                self._drop_oldest()
            self._queue.append(_Frame(padded, ms))
            self._queued_frames += 1

    def mark(self, name: str) -> None:
        """Acknowledge ``name`` once the audio queued so far has gone out."""
        self._flush_carry()
        if self._queued_frames == 0:
            self._acked.append(name)
        else:
            self._queue.append(_Mark(name))

    def clear(self) -> None:
        """Drop all queued agent audio now (barge-in); pending marks are acknowledged."""
        self._carry = b""
        for item in self._queue:
            if isinstance(item, _Mark):
                self._acked.append(item.name)
        self._queue.clear()
        self._queued_frames = 0
        self._in_silence = True

    def send_dtmf(self, digits: str) -> None:
        """Queue RFC 4733 events for ``digits``; raises ``ValueError`` if a character is
        not a DTMF digit or telephone-event was not negotiated."""
        if self.telephone_event_pt is None:
            raise ValueError("telephone-event was not negotiated")
        digits = digits.upper()
        bad = [d for d in digits if d not in DTMF_DIGITS]
        if bad:
            raise ValueError(f"not DTMF digits: {''.join(bad)!r}")
        for digit in digits:
            self._dtmf.extend(
                event_packets(
                    digit,
                    duration_ms=self.dtmf_duration_ms,
                    ptime_ms=self.ptime_ms,
                    clock_rate=self.telephone_event_clock_rate,
                )
            )
            self._dtmf.extend([None] * self._dtmf_gap_slots)

    def acknowledged_marks(self) -> list[str]:
        """Marks acknowledged since the last call, in order (drains)."""
        acked, self._acked = self._acked, []
        return acked

    @property
    def queued_ms(self) -> float:
        return self._queued_frames * self.ptime_ms + self.audio_format.ms_for_bytes(
            len(self._carry)
        )

    # -- output ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Fix the schedule's origin: slot *n* is due at ``now + n * ptime``."""
        if self._start is None:
            self._start = now

    def _due(self, slot: int) -> float:
        assert self._start is not None
        return self._start + slot * self.ptime_ms / 1000 + self._offset

    def next_deadline(self) -> float | None:
        if self._start is None:
            return None
        if self._waiting_until is not None:
            return self._waiting_until
        return self._due(self._next_slot)

    def rtp_timestamp_at(self, now: float) -> int:
        """The RTP timestamp matching ``now`` (for the RTCP sender report)."""
        if self._start is None:
            return self._ts0
        return (self._ts0 + int((now - self._start) * self.clock_rate)) & 0xFFFFFFFF

    def poll(self, now: float) -> list[RtpPacket]:
        """Packets due at ``now`` (starting the schedule on the first call)."""
        self.start(now)
        start = now if self._start is None else self._start
        if self._waiting_until is not None and now < self._waiting_until - 1e-9:
            return []
        last_due = int((now - start - self._offset) * 1000 / self.ptime_ms + 1e-6)
        if last_due < self._next_slot:
            return []
        if last_due - self._next_slot + 1 > self.max_behind:
            self.skipped_slots += last_due - self._next_slot
            self._next_slot = last_due
        out: list[RtpPacket] = []
        while self._next_slot <= last_due:
            if self._await_audio(now):
                break
            packet = self._slot(self._next_slot, now)
            self._next_slot += 1
            if packet is not None:
                out.append(packet)
                self.packets_sent += 1
                self.octets_sent += len(packet.payload)
        return out

    def _await_audio(self, now: float) -> bool:
        """Underrun grace: whether the slot due now should wait for the agent's next frame
        (mid-spurt, nothing queued, the grid not already ``_max_lag`` behind)."""
        if self._waiting_until is not None:
            # The grace ran out: this slot goes now (silence), and the grid follows it so
            # the next packet is still one ptime later.
            self._offset += min(max(0.0, now - self._due(self._next_slot)), self.grace)
            self._waiting_until = None
            return False
        if (
            self.grace <= 0
            or self._in_silence
            or self._queued_frames
            or self._carry
            or self._dtmf
            or self._offset + self.grace > self._max_lag
        ):
            return False
        until = self._due(self._next_slot) + self.grace
        if now >= until - 1e-9:
            return False  # polled after the grace already ran out: the slot goes now
        self._waiting_until = until
        return True

    def _packet(
        self, payload: bytes, ts: int, *, marker: bool = False, pt: int | None = None
    ) -> RtpPacket:
        packet = RtpPacket(
            payload_type=self.payload_type if pt is None else pt,
            sequence_number=self._seq,
            timestamp=ts & 0xFFFFFFFF,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        return packet

    def _slot(self, n: int, now: float) -> RtpPacket | None:
        ts = self._ts0 + n * self.samples_per_packet
        if self._dtmf:
            event = self._dtmf.popleft()
            if event is not None and self.telephone_event_pt is not None:
                if event.marker:
                    self._event_ts = ts  # RFC 4733 §2.5.1.1: one timestamp per event
                self._in_silence = True
                return self._packet(
                    event.payload, self._event_ts, marker=event.marker, pt=self.telephone_event_pt
                )
            return self._silence_packet(ts)
        if self._queued_frames == 0:
            self._flush_carry()
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Mark):  # only when its audio was sent: acknowledge
                self._acked.append(item.name)
                continue
            self._queued_frames -= 1
            marker = self._in_silence
            self._in_silence = False
            self._silent_slots = 0
            self.audio_sent_ms += item.ms
            packet = self._packet(item.payload, ts, marker=marker)
            self._ack_head_marks()
            if item.arrived is not None and self.max_early > 0:
                self._drain_standing_queue(now, item.arrived)
            return packet
        return self._silence_packet(ts)

    def _drain_standing_queue(self, now: float, arrived: float) -> None:
        self._least_wait = min(self._least_wait, now - arrived)
        if self._window_first is None:
            self._window_first = arrived
        self._window_slots += 1
        if self._window_slots < DRAIN_WINDOW:
            return
        ptime = self.ptime_ms / 1000
        real_time = arrived - self._window_first >= 0.8 * (DRAIN_WINDOW - 1) * ptime
        if self._least_wait > ptime + DRAIN_SLACK and real_time and self._queued_frames:
            self._drop_oldest()
            self.dropped_frames -= 1  # counted as drained, not as an overflow
            self.drained_frames += 1
        elif self._least_wait > DRAIN_SLACK and real_time:
            # Only for real-time arrivals: an agent that sends ahead waits by design.
            step = min(self._least_wait - DRAIN_SLACK / 2, self.max_early)
            self._offset = max(self._offset - step, self._max_lead)
        self._least_wait = float("inf")
        self._window_slots = 0
        self._window_first = None

    def _ack_head_marks(self) -> None:
        while self._queue and isinstance(self._queue[0], _Mark):
            head = self._queue.popleft()
            if isinstance(head, _Mark):
                self._acked.append(head.name)

    def _silence_packet(self, ts: int) -> RtpPacket | None:
        first = not self._in_silence or self._silent_slots == 0
        self._in_silence = True
        slot = self._silent_slots
        self._silent_slots += 1
        if self.comfort_noise_pt is not None:
            # RFC 3389 §4: a CN packet starts the silence and refreshes it now and then.
            if first or slot % self._cn_every == 0:
                return self._packet(bytes((CN_LEVEL,)), ts, pt=self.comfort_noise_pt)
            return None
        return self._packet(self.silence, ts)
