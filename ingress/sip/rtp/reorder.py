"""Forward inbound RTP audio as it arrives, in sequence order: no playout delay.

Why not the :class:`~ingress.sip.rtp.jitter.JitterBuffer`: a jitter buffer exists to feed
a *playout clock* (a sound card, a carrier's DSP) at an even pace. An AI agent has no
playout clock for caller audio: it reads a WebSocket, which is itself TCP and bursty, and
its speech recogniser takes audio in any rhythm. Holding every frame 20–40 ms to smooth
jitter the agent does not care about only adds that much to every turn. So by default the
SIP leg forwards each packet the moment it arrives and only keeps what ordering needs:

* Packets come out in sequence-number order. The next expected packet goes out at once,
  together with any buffered successors.
* A gap (a later packet arrived first) is held for at most ``window`` seconds, counted
  from the arrival of the packet after it, waiting for the missing one (reordering on the
  path). When the window ends, or ``capacity`` packets are held, each missing slot comes
  out as :class:`Lost` (the caller conceals it), at most ``max_conceal`` of them per gap;
  a longer gap is skipped without concealment (the sender paused or the loss is long
  enough that inventing audio would only mislead the agent).
* Packets of the same stream that carry no audio for us (RFC 3389 comfort noise, RFC 4733
  events, empty payloads) share the sequence numbers: :meth:`ReorderBuffer.consume` fills
  their place, so they open no gap and the next audio is not held for them.
* A packet older than the last one forwarded (it arrived after its gap was concealed) is
  ``LATE`` and dropped; a repeat of a forwarded or held one is a ``DUPLICATE``.
* A new SSRC restarts the order at that packet. A sequence jump beyond ``MAX_DROPOUT``
  restarts it only when the next packet follows the jumped one (RFC 3550 A.1: the sender
  restarted); a lone stray packet is dropped as ``LATE``. Anything held of the old order
  is forwarded first.

Sans-I/O, with the same surface as the jitter buffer (``push`` / ``consume`` / ``pop`` /
``next_deadline``), so :class:`~ingress.sip.transport.media.RtpMediaStream` drives either.
After a ``push`` whose packet is ready, ``next_deadline()`` is the push time itself: the
runner pops at once instead of arming a timer.
"""

from __future__ import annotations

from ingress.sip.rtp.jitter import MAX_DROPOUT, Lost, PlayoutFrame, PushResult
from ingress.sip.rtp.packet import RtpPacket, seq_diff

__all__ = ["ReorderBuffer"]

_RECENT = 64  # forwarded sequence numbers remembered for duplicate detection


class ReorderBuffer:
    """See the module docstring. ``now`` is monotonic seconds, supplied by the caller."""

    def __init__(
        self,
        *,
        clock_rate: int,
        ptime_ms: int = 20,
        window_ms: int = 20,
        capacity: int = 50,
        max_conceal: int = 5,
    ) -> None:
        if clock_rate <= 0 or ptime_ms <= 0 or capacity <= 0 or window_ms < 0:
            raise ValueError("clock_rate, ptime_ms and capacity must be positive, window >= 0")
        self.clock_rate = clock_rate
        self.window = window_ms / 1000
        self.capacity = capacity
        self.max_conceal = max_conceal
        self._frame_ts = clock_rate * ptime_ms // 1000
        self.delay = 0.0  # no playout delay: the figure the call record shows
        # counters
        self.late = 0
        self.duplicates = 0
        self.concealed = 0
        self.skipped = 0  # missing packets not concealed (gaps over max_conceal)
        self.restarts = 0
        self._ssrc: int | None = None
        self._leftover: list[RtpPacket] = []  # the old order's packets after a restart
        self._reset()

    def _reset(self) -> None:
        self._next: int | None = None  # extended sequence number forwarded next
        self._highest = 0  # extended, for unwrapping
        # extended seq -> (the packet, or None for one without audio; its arrival time)
        self._held: dict[int, tuple[RtpPacket | None, float]] = {}
        self._ready_at: float | None = None  # push time of a packet that can go out now
        self._recent: set[int] = set()
        self._probation: int | None = None  # the sequence number that confirms a jump

    @property
    def buffered(self) -> int:
        return len(self._held)

    # -- input -------------------------------------------------------------------------

    def push(self, packet: RtpPacket, now: float) -> PushResult:
        """Take one received audio packet (already latched and parsed)."""
        return self._place(packet, packet, now)

    def consume(self, packet: RtpPacket, now: float) -> None:
        """A packet of the stream without audio for the agent: it takes its sequence
        number's place, so the audio after it is not held for a gap."""
        self._place(packet, None, now)

    def _place(self, packet: RtpPacket, audio: RtpPacket | None, now: float) -> PushResult:
        restarted = False
        if packet.ssrc != self._ssrc:
            restarted = self._ssrc is not None
            self._restart(packet.ssrc, now)
        if self._next is None:
            ext = self._highest = self._next = packet.sequence_number
        else:
            ext = self._highest + seq_diff(packet.sequence_number, self._highest & 0xFFFF)
            if abs(ext - self._next) > MAX_DROPOUT:
                if packet.sequence_number != self._probation:
                    # A stray packet far from the order: believe a restart only when the
                    # packet after it confirms it (RFC 3550 A.1).
                    self._probation = (packet.sequence_number + 1) & 0xFFFF
                    self.late += 1
                    return PushResult.LATE
                self._restart(packet.ssrc, now)
                ext = self._highest = self._next = packet.sequence_number
                restarted = True
        self._probation = None
        if ext in self._held or ext in self._recent:
            self.duplicates += 1
            return PushResult.DUPLICATE
        assert self._next is not None
        if ext < self._next:
            self.late += 1
            return PushResult.LATE
        self._highest = max(self._highest, ext)
        self._held[ext] = (audio, now)
        if ext == self._next or len(self._held) >= self.capacity:
            self._ready_at = now
        if restarted:
            self.restarts += 1
            return PushResult.RESTARTED
        return PushResult.BUFFERED

    def _restart(self, ssrc: int, now: float) -> None:
        # What the old order still holds goes out first, in its order, on the next pop:
        # it is real audio, and its gaps no longer matter.
        held = self._held
        self._leftover.extend(p for seq in sorted(held) if (p := held[seq][0]) is not None)
        self._ssrc = ssrc
        self._reset()
        if self._leftover:
            self._ready_at = now

    # -- output ------------------------------------------------------------------------

    def _gap_deadline(self) -> float | None:
        """When the gap before the first held packet has waited long enough."""
        if not self._held:
            return None
        return self._held[min(self._held)][1] + self.window

    def next_deadline(self) -> float | None:
        """When :meth:`pop` has something to do: the push time of a ready packet, the end
        of a gap's window, or ``None`` when nothing is held."""
        if self._ready_at is not None:
            return self._ready_at
        return self._gap_deadline()

    def pop(self, now: float) -> list[PlayoutFrame | Lost]:
        """Everything that may go out at ``now``, in order."""
        out: list[PlayoutFrame | Lost] = []
        if self._leftover:
            out.extend(self._frame(p) for p in self._leftover)
            self._leftover = []
        held = self._held
        while held and self._next is not None:
            entry = held.pop(self._next, None)
            if entry is not None:
                self._forwarded(self._next)
                self._next += 1
                if entry[0] is not None:
                    out.append(self._frame(entry[0]))
                continue
            first = min(held)
            expired = now >= held[first][1] + self.window - 1e-9
            if not (expired or len(held) >= self.capacity):
                break
            # The window is over (or the buffer is full): conceal the gap, move on.
            missing = first - self._next
            if missing <= self.max_conceal:
                after = held[first][0]
                ts = (after.timestamp if after is not None else 0) - missing * self._frame_ts
                for i in range(missing):
                    out.append(
                        Lost((self._next + i) & 0xFFFF, (ts + i * self._frame_ts) & 0xFFFFFFFF)
                    )
                self.concealed += missing
            else:
                self.skipped += missing
            self._next = first
        self._ready_at = None
        return out

    def _forwarded(self, ext: int) -> None:
        recent = self._recent
        recent.add(ext)
        if len(recent) > 2 * _RECENT:
            floor = ext - _RECENT
            self._recent = {seq for seq in recent if seq > floor}

    def _frame(self, packet: RtpPacket) -> PlayoutFrame:
        return PlayoutFrame(packet.payload, packet.sequence_number, packet.timestamp, packet.marker)
