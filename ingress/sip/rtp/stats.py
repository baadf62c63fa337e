"""Receiver statistics (RFC 3550 §6.4, appendix A) and the media-timeout watchdog.

:class:`ReceiverStatistics` follows appendix A.1 for the extended highest sequence number
(wrap-around counted in ``cycles``; a jump of more than ``MAX_DROPOUT`` is believed only
when the next packet confirms it), A.3 for expected/lost counts and the fraction lost
between reports, and A.8 for the interarrival jitter, which it also reports in
milliseconds with its maximum and running mean. Duplicates are recognised within a window
of recent sequence numbers; ``late`` counts what the jitter buffer reports as too late.

:class:`MediaTimeout` emits :class:`MediaTimedOut` once when no RTP arrived for
``timeout`` seconds while the stream was not on hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ingress.sip.rtp.rtcp import ReportBlock, compact_ntp

__all__ = ["MediaTimedOut", "MediaTimeout", "PacketVerdict", "ReceiverStatistics", "StatsSnapshot"]

# RFC 3550 appendix A.1 constants.
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
RTP_SEQ_MOD: Final = 1 << 16
_DUP_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the call record keeps about the inbound stream."""

    received: int
    expected: int
    lost: int
    late: int
    duplicates: int
    ssrc_changes: int
    jitter_ms: float
    max_jitter_ms: float
    mean_jitter_ms: float


class PacketVerdict(StrEnum):
    """How :meth:`ReceiverStatistics.update` classified a packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    BAD_SEQUENCE = "bad_sequence"  # a big jump not yet confirmed by the next packet


class ReceiverStatistics:
    """RFC 3550 receiver state for one remote stream; ``now`` is monotonic seconds."""

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.ssrc_changes = 0
        self.late = 0
        self.duplicates = 0
        self._reset_sequence(0)
        self._started = False
        self.received = 0
        self._jitter = 0.0  # in timestamp units, RFC 3550 A.8 "J"
        self._last_transit: int | None = None
        self.max_jitter_ms = 0.0
        self._jitter_sum_ms = 0.0
        self._jitter_samples = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_sr: int | None = None  # compact NTP of the last SR received
        self._last_sr_at: float | None = None

    def _reset_sequence(self, seq: int) -> None:
        # RFC 3550 A.1 init_seq()
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self._seen: set[int] = set()
        self._seen_order: list[int] = []

    @property
    def extended_highest_sequence(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if not self._started:
            return 0
        return self.extended_highest_sequence - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative with duplicates, hence floored at 0 here."""
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000 / self.clock_rate

    def _remember(self, ext_seq: int) -> bool:
        """Record a sequence number; ``False`` if it was already seen (a duplicate)."""
        if ext_seq in self._seen:
            return False
        self._seen.add(ext_seq)
        self._seen_order.append(ext_seq)
        if len(self._seen_order) > 2 * _DUP_WINDOW:
            for old in self._seen_order[:_DUP_WINDOW]:
                self._seen.discard(old)
            del self._seen_order[:_DUP_WINDOW]
        return True

    def update(self, ssrc: int, sequence_number: int, timestamp: int, now: float) -> PacketVerdict:
        """Account for one received packet; returns its :class:`PacketVerdict`."""
        seq = sequence_number & 0xFFFF
        if self.ssrc != ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
            self.ssrc = ssrc
            self._restart(seq)
        udelta = (seq - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:
            # In order, with permissible gap.
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # sequence number wrapped
            self.max_seq = seq
            ext = self.cycles + seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # The sequence number made a very large jump.
            if seq == self.bad_seq:
                # Two sequential packets: assume the other side restarted without
                # telling us, so just re-sync (i.e. pretend this was the first packet).
                self._restart(seq)
                ext = self.cycles + seq
            else:
                self.bad_seq = (seq + 1) & (RTP_SEQ_MOD - 1)
                return PacketVerdict.BAD_SEQUENCE
        else:
            # Duplicate or reordered packet: place it in the cycle it belongs to.
            ext = self.cycles + seq - (RTP_SEQ_MOD if seq > self.max_seq else 0)
        if not self._remember(ext):
            self.duplicates += 1
            return PacketVerdict.DUPLICATE
        self.received += 1
        self._update_jitter(timestamp, now)
        return PacketVerdict.ACCEPTED

    def _restart(self, seq: int) -> None:
        self._reset_sequence(seq)
        self._started = True
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_transit = None

    def _update_jitter(self, timestamp: int, now: float) -> None:
        # RFC 3550 A.8: transit in timestamp units; D from successive arrivals.
        arrival = int(now * self.clock_rate)
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self._last_transit is not None:
            d = (transit - self._last_transit) & 0xFFFFFFFF
            if d >= 0x80000000:
                d -= 0x100000000
            self._jitter += (abs(d) - self._jitter) / 16
            ms = self.jitter_ms
            self.max_jitter_ms = max(self.max_jitter_ms, ms)
            self._jitter_sum_ms += ms
            self._jitter_samples += 1
        self._last_transit = transit

    def record_late(self) -> None:
        """The jitter buffer dropped a packet that came after its playout time."""
        self.late += 1

    def record_sender_report(self, ntp_timestamp: int, now: float) -> None:
        """Remember an SR's time for the LSR/DLSR fields of our next report block."""
        self._last_sr = compact_ntp(ntp_timestamp)
        self._last_sr_at = now

    def report_block(self, now: float) -> ReportBlock | None:
        """The RFC 3550 §6.4.1 report block about this stream (A.3 fraction lost)."""
        if self.ssrc is None or not self._started:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        lsr = dlsr = 0
        if self._last_sr is not None and self._last_sr_at is not None:
            lsr = self._last_sr
            dlsr = int(max(0.0, now - self._last_sr_at) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(255, fraction),
            cumulative_lost=expected - self.received,
            highest_sequence=self.extended_highest_sequence & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=lsr,
            dlsr=dlsr,
        )

    def snapshot(self) -> StatsSnapshot:
        mean = self._jitter_sum_ms / self._jitter_samples if self._jitter_samples else 0.0
        return StatsSnapshot(
            received=self.received,
            expected=self.expected,
            lost=self.lost,
            late=self.late,
            duplicates=self.duplicates,
            ssrc_changes=self.ssrc_changes,
            jitter_ms=self.jitter_ms,
            max_jitter_ms=self.max_jitter_ms,
            mean_jitter_ms=mean,
        )


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    """No RTP for the configured time while not on hold. ``last_packet_at`` is the
    monotonic time of the last packet, ``None`` if none ever arrived."""

    last_packet_at: float | None


class MediaTimeout:
    """Pure watchdog for inbound RTP.

    Call :meth:`start` when media should begin (after the answer), :meth:`packet_received`
    on every valid RTP packet, :meth:`set_hold` on hold/resume; arm a timer at
    :meth:`next_deadline` and call :meth:`poll` when it fires. Resuming from hold starts
    the count afresh. The event is emitted once.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.last_packet_at: float | None = None
        self._since: float | None = None  # the count runs from here
        self._on_hold = False
        self._fired = False

    def start(self, now: float) -> None:
        self._since = now

    def packet_received(self, now: float) -> None:
        self.last_packet_at = now
        self._since = now

    def set_hold(self, on_hold: bool, now: float) -> None:
        if self._on_hold and not on_hold:
            self._since = now
        self._on_hold = on_hold

    def next_deadline(self) -> float | None:
        if self._fired or self._on_hold or self._since is None:
            return None
        return self._since + self.timeout

    def poll(self, now: float) -> MediaTimedOut | None:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        self._fired = True
        return MediaTimedOut(self.last_packet_at)
