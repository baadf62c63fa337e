"""One call's RTP media: the asyncio pump over the sans-I/O cores of :mod:`ingress.sip.rtp`.

:class:`RtpMediaStream` owns a bound :class:`~ingress.sip.transport.rtp.RtpSocketPair` and
drives, for the caller's stream:

* in: :class:`~ingress.sip.rtp.SymmetricLatch` (where the caller's RTP really comes from),
  :class:`~ingress.sip.rtp.ReceiverStatistics`, the inbound buffer (by default
  :class:`~ingress.sip.rtp.ReorderBuffer`: each packet goes on as it arrives, in order;
  with ``MediaConfig.jitter_buffer`` the adaptive :class:`~ingress.sip.rtp.JitterBuffer`)
  giving ``AudioFrame`` s (a missing packet is concealed by repeating the last payload
  once, then by silence in the codec's own encoding), :class:`~ingress.sip.rtp.DtmfReceiver`
  (RFC 4733 → one ``DtmfDigit`` a key press), :class:`~ingress.sip.rtp.MediaTimeout`;
* out: :class:`~ingress.sip.rtp.Pacer` (one packet per ``ptime``, silence or comfort noise
  while the agent is silent, marks, clear, DTMF; agent audio that starts a talk spurt
  leaves as it arrives, see the pacer's "Low latency");
* both ways: :class:`~ingress.sip.rtp.RtcpReporter` (SR/RR, round-trip time).

Like every asyncio layer here (STYLE.md P3) it is a boring pump: a datagram goes to the
cores with ``loop.time()`` as ``now``, and ONE ``loop.call_at`` timer, re-armed at the
earliest of the cores' deadlines, polls them. What is due at once (a packet the inbound
buffer can forward, agent audio the pacer can send) goes out in the same callback,
without a timer hop. No task, no sleep loop, no decision that a
core could make. The loop clock is monotonic, so pacing never drifts with wall-clock steps.

Calling contract (the SIP call leg's side)::

    stream = RtpMediaStream(media, sockets, rand_bits=secrets.randbits, call_id=call_id)
    stream.play(frame) / stream.mark(name) / stream.clear() / stream.send_dtmf(digits)
    async for event in stream.events():   # AudioFrame | DtmfDigit | MarkPlayed | LegEnded
    stream.update(media)                  # after each re-INVITE's offer/answer
    stream.close(); await stream.wait_closed()

Sending starts once a remote address is known (from the SDP, else latched from the first
packet) and our direction allows it; it never goes to ``0.0.0.0`` (RFC 3264 §8.4 hold) or
to a non-IP host. While sending is impossible (hold), queued agent audio waits and so do
its marks. Audio is never written anywhere but the socket; per-packet logs are DEBUG only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from ingress.sip.offer_answer import NegotiatedMedia
from ingress.sip.rtp import (
    DtmfReceiver,
    JitterBuffer,
    LatchDecision,
    Lost,
    MalformedRtcp,
    MalformedRtp,
    MalformedTelephoneEvent,
    MediaTimeout,
    Pacer,
    PlayoutFrame,
    ReceiverStatistics,
    ReorderBuffer,
    RtcpReporter,
    RtpPacket,
    SenderInfo,
    SymmetricLatch,
    is_rtcp,
)
from ingress.sip.rtp.jitter import PushResult
from ingress.sip.rtp.rtcp import RoundTripMeasured, SenderReportReceived
from ingress.sip.rtp.stats import PacketVerdict
from ingress.sip.transport.media_config import MediaConfig, StreamStats, usable_address
from ingress.sip.transport.rtp import Address, RtpSocketPair
from media.chunking import silence
from media.ending import Blame, CallEnd, DisconnectReason
from media.errors import FormatMismatchError
from media.frames import AudioFrame, LegEnded, LegEvent, MarkPlayed
from media.relay import UntilNone

__all__ = ["MediaConfig", "RtpMediaStream", "StreamStats", "usable_address"]

logger = logging.getLogger(__name__)


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two deadlines, either of which may be unset (None)."""
    if a is None:
        return b
    if b is None or a <= b:
        return a
    return b


class RtpMediaStream:
    """One call's RTP media over ``sockets``; see the module docstring.

    ``media`` is the outcome of offer/answer; ``rand_bits(k)`` the random source for SSRC,
    initial sequence number/timestamp, CNAME and RTCP intervals (``secrets.randbits``).
    Must be created inside the running ``loop``; starts at once (sends silence when the
    remote address is known, arms the media timeout). With ``on_event``, every event goes
    to that callback as it happens (bounding a backlog is then the callback's business)
    and :meth:`events` yields nothing.
    """

    def __init__(
        self,
        media: NegotiatedMedia,
        sockets: RtpSocketPair,
        *,
        rand_bits: Callable[[int], int],
        config: MediaConfig | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        call_id: str = "",
        on_event: Callable[[LegEvent], None] | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._on_event = on_event
        self._config = config = config or MediaConfig()
        self._sockets = sockets
        self._media = media
        # The direction's property, read once per negotiation rather than per packet.
        self._sends = media.direction.sends
        self.call_id = call_id
        self.format = media.codec
        # Raises UnsupportedFormatError when ptime is not whole samples of the codec.
        self._silence = silence(media.codec, media.ptime)
        self._pacer = Pacer(
            payload_type=media.payload_type,
            audio_format=media.codec,
            clock_rate=media.clock_rate,
            silence=self._silence,
            rand_bits=rand_bits,
            ptime_ms=media.ptime,
            max_queue_ms=config.playout_queue_ms,
            max_behind=config.max_behind_slots,
            telephone_event_pt=media.telephone_event_pt,
            telephone_event_clock_rate=media.telephone_event_clock_rate,
            comfort_noise_pt=media.comfort_noise_pt,
            prompt_start=config.prompt_start,
            underrun_grace_ms=config.underrun_grace_ms,
            max_early_ms=config.max_early_ms,
        )
        self._jitter: JitterBuffer | ReorderBuffer
        if config.jitter_buffer:
            self._jitter = JitterBuffer(
                clock_rate=media.clock_rate,
                ptime_ms=media.ptime,
                min_delay_ms=config.jitter_min_delay_ms,
                max_delay_ms=config.jitter_max_delay_ms,
                capacity=config.jitter_capacity,
            )
        else:
            self._jitter = ReorderBuffer(
                clock_rate=media.clock_rate,
                ptime_ms=media.ptime,
                window_ms=config.reorder_window_ms,
                capacity=config.jitter_capacity,
            )
        self._stats = ReceiverStatistics(media.clock_rate)
        self._latch = SymmetricLatch(
            usable_address(media.remote_address, media.remote_port),
            switch_after=config.relatch_after,
        )
        self._dtmf = self._dtmf_receiver(media)
        self._timeout = MediaTimeout(config.media_timeout)
        # RFC 7022 §4.2: a random, per-session CNAME.
        self._rtcp = RtcpReporter(
            self._pacer.ssrc,
            f"{rand_bits(64):016x}@telepath",
            ntp_offset=time.time() - self._loop.time(),
            rand_bits=rand_bits,
            interval=config.rtcp_interval,
        )
        self._rtcp_source: Address | None = None  # where the peer's RTCP comes from
        self._events: deque[LegEvent] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = False  # LegEnded emitted
        self._arrivals: dict[int, float] = {}  # sequence number -> loop time of arrival
        self._last_payload: bytes | None = None
        self._lost_run = 0
        self._position_ms = 0.0  # media position of the next inbound frame
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._closed = False
        self._on_hold = False
        # counters
        self._malformed = 0
        self._unknown_pt = 0
        self._comfort_noise = 0
        self._dtmf_digits = 0
        self._events_dropped = 0
        self._rtcp_sent = 0
        self._rtcp_received = 0
        self._rtcp_ignored = 0
        self._internal_errors = 0

        now = self._loop.time()
        self._timeout.start(now)
        self._rtcp.start(now)
        self.set_hold(media.on_hold)
        sockets.attach(self._datagram_received)
        self._rearm()

    def _dtmf_receiver(self, media: NegotiatedMedia) -> DtmfReceiver:
        rate = media.telephone_event_clock_rate or media.clock_rate
        return DtmfReceiver(rate, end_timeout=self._config.dtmf_end_timeout)

    # -- public surface ----------------------------------------------------------------

    @property
    def media(self) -> NegotiatedMedia:
        """The media description in force (the last one given to :meth:`update`)."""
        return self._media

    @property
    def local_port(self) -> int:
        return self._sockets.port

    @property
    def ssrc(self) -> int:
        """Our sending SSRC."""
        return self._pacer.ssrc

    @property
    def send_target(self) -> Address | None:
        """Where our RTP goes now: the latched source, else the SDP address, else ``None``."""
        return self._latch.send_to

    @property
    def closed(self) -> bool:
        return self._closed

    def play(self, frame: AudioFrame) -> None:
        """Queue agent audio in the negotiated format (any length: it is cut into packets).

        Raises ``FormatMismatchError`` for a frame in another format. Never blocks.
        """
        if frame.format != self.format:
            raise FormatMismatchError(f"RTP stream is {self.format}, frame is {frame.format}")
        if self._closed:
            return
        now = self._loop.time()
        self._pacer.enqueue(frame.payload, now)
        due = self._pacer.next_deadline()
        if due is not None and due <= now and self._can_send():
            # A talk spurt's first frame (or one a slot was waiting for) leaves right now.
            self._guarded(self._send_due, now)
        elif due is not None and (self._timer is None or due < self._timer_when):
            self._rearm()

    def mark(self, name: str) -> None:
        """``MarkPlayed(name)`` once the audio queued so far has been sent (at once if none)."""
        if not self._closed:
            self._pacer.mark(name)
            self._flush_marks()

    def clear(self) -> None:
        """Drop all queued agent audio (the next packet is silence); pending marks are
        acknowledged at once."""
        if not self._closed:
            self._pacer.clear()
            self._flush_marks()

    def send_dtmf(self, digits: str) -> None:
        """Send RFC 4733 events ahead of queued audio. Raises ``ValueError`` for a
        character that is not a DTMF digit, or when telephone-event was not negotiated."""
        if not self._closed:
            self._pacer.send_dtmf(digits)

    def set_hold(self, on_hold: bool) -> None:
        """Hold suspends the media timeout (resuming restarts its count)."""
        self._on_hold = on_hold
        self._timeout.set_hold(on_hold, self._loop.time())
        self._rearm()

    def update(self, media: NegotiatedMedia) -> None:
        """Apply a re-INVITE's offer/answer: hold/resume, a new remote address or payload
        type numbers. Raises ``ValueError`` if the codec or clock rate changed (the
        ``SdpSession`` keeps the codec; a new codec needs a new stream). A new remote
        address drops the latch so the stream latches afresh."""
        old = self._media
        if media.codec != old.codec or media.clock_rate != old.clock_rate:
            raise ValueError(
                f"an RTP stream keeps its codec: {old.codec}/{old.clock_rate} "
                f"-> {media.codec}/{media.clock_rate}"
            )
        self._media = media
        self._sends = media.direction.sends
        self._pacer.payload_type = media.payload_type
        self._pacer.telephone_event_pt = media.telephone_event_pt
        self._pacer.telephone_event_clock_rate = (
            media.telephone_event_clock_rate or media.clock_rate
        )
        self._pacer.comfort_noise_pt = media.comfort_noise_pt
        if media.telephone_event_clock_rate != old.telephone_event_clock_rate:
            self._dtmf = self._dtmf_receiver(media)
        new_target = usable_address(media.remote_address, media.remote_port)
        if new_target != usable_address(old.remote_address, old.remote_port):
            logger.info(
                "call %s: remote RTP address now %s (re-INVITE); latching afresh",
                self.call_id,
                new_target,
            )
            self._latch.reset(new_target)
            self._rtcp_source = None
        elif (media.remote_rtcp_address, media.remote_rtcp_port, media.rtcp_mux) != (
            old.remote_rtcp_address,
            old.remote_rtcp_port,
            old.rtcp_mux,
        ):
            self._rtcp_source = None
        self.set_hold(media.on_hold)

    def events(self) -> AsyncIterator[LegEvent]:
        """Caller audio, DTMF, mark acknowledgements, and ``LegEnded`` on media timeout.

        Ends after ``LegEnded``, or after :meth:`close` once the queued events are out.
        One consumer at a time.
        """
        return UntilNone(self._next_event)

    async def _next_event(self) -> LegEvent | None:
        """The next queued event for :meth:`events`, waiting for one; None once they end."""
        while not self._events:
            if self._closed or self._ended:
                return None
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._events.popleft()

    def stats(self) -> StreamStats:
        """A snapshot for the call record and the dashboard (counts; times in ms)."""
        snap = self._stats.snapshot()
        rtt = self._rtcp.rtt
        return {
            "packets_received": snap.received,
            "packets_expected": snap.expected,
            "packets_lost": snap.lost,
            "packets_late": snap.late,
            "packets_duplicate": snap.duplicates,
            "packets_ignored_source": self._latch.ignored,
            "packets_malformed": self._malformed,
            "packets_unknown_payload_type": self._unknown_pt,
            "comfort_noise_received": self._comfort_noise,
            "ssrc_changes": snap.ssrc_changes,
            "relatches": self._latch.relatches,
            "jitter_ms": round(snap.jitter_ms, 3),
            "jitter_max_ms": round(snap.max_jitter_ms, 3),
            "jitter_mean_ms": round(snap.mean_jitter_ms, 3),
            "jitter_buffer_delay_ms": round(self._jitter.delay * 1000, 3),
            "concealed_frames": self._jitter.concealed,
            "inbound_skipped": self._jitter.skipped,
            "dtmf_received": self._dtmf_digits,
            "events_dropped": self._events_dropped,
            "rtt_ms": None if rtt is None else round(rtt * 1000, 3),
            "packets_sent": self._pacer.packets_sent,
            "audio_sent_ms": self._pacer.audio_sent_ms,
            "playout_queued_ms": self._pacer.queued_ms,
            "playout_dropped_frames": self._pacer.dropped_frames,
            "playout_drained_frames": self._pacer.drained_frames,
            "slots_skipped": self._pacer.skipped_slots,
            "rtcp_sent": self._rtcp_sent,
            "rtcp_received": self._rtcp_received,
            "rtcp_ignored_source": self._rtcp_ignored,
            "send_errors": self._sockets.send_errors,
            "internal_errors": self._internal_errors,
        }

    def close(self) -> None:
        """Stop (idempotent): RTCP BYE (RFC 3550 §6.6), timer cancelled, sockets closed,
        the port pair back in the pool after the drain period; :meth:`events` ends."""
        if self._closed:
            return
        target = self._rtcp_target()
        if target is not None:
            self._sockets.send_rtcp(self._rtcp.bye(), target, mux=self._media.rtcp_mux)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sockets.close(drain_seconds=self._config.drain_seconds)
        self._wake()
        logger.info("call %s: RTP stream on port %d closed", self.call_id, self._sockets.port)

    async def wait_closed(self) -> None:
        """Wait until the sockets are closed (and the port pair is back in the pool)."""
        await self._sockets.wait_closed()

    # -- events out --------------------------------------------------------------------

    def _emit(self, event: LegEvent) -> None:
        if self._ended:
            return
        if self._on_event is not None:
            if isinstance(event, LegEnded):
                self._ended = True
            self._on_event(event)
            return
        if len(self._events) >= self._config.event_queue_size and not isinstance(event, LegEnded):
            self._drop_one()
        self._events.append(event)
        if isinstance(event, LegEnded):
            self._ended = True
        self._wake()

    def _drop_one(self) -> None:
        """The consumer fell behind: drop the oldest audio frame (else the oldest event)."""
        self._events_dropped += 1
        for index, queued in enumerate(self._events):
            if isinstance(queued, AudioFrame):
                del self._events[index]
                return
        self._events.popleft()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _flush_marks(self) -> None:
        for name in self._pacer.acknowledged_marks():
            self._emit(MarkPlayed(name))

    # -- the one timer -----------------------------------------------------------------

    def _can_send(self) -> bool:
        return not self._closed and self._sends and self._latch.send_to is not None

    def _rearm(self) -> None:
        """Arm the single timer at the earliest deadline of the cores."""
        if self._closed:
            return
        # Several times per frame: the earliest deadline without a list, a generator or
        # min()'s keyword call, which mypyc cannot compile natively.
        when = _earlier(self._jitter.next_deadline(), self._dtmf.next_deadline())
        when = _earlier(when, self._timeout.next_deadline())
        when = _earlier(when, self._rtcp.next_deadline())
        if self._can_send():
            # None: the pacer has not started yet; start it now.
            when = _earlier(when, self._pacer.next_deadline() or self._loop.time())
        if when is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer_when == when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            # uvloop's timers have millisecond resolution and may fire up to a millisecond
            # before their time; seen from the cores, a timer fires at its time at the
            # earliest (otherwise nothing is due yet and the re-armed timer spins).
            self._guarded(self._tick, max(self._loop.time(), self._timer_when))

    def _guarded(self, step: Callable[[float], None], now: float) -> None:
        """Run one step of the pump at ``now``, then re-arm the timer."""
        try:
            step(now)
        except Exception:
            # A bug, not peer input (the cores turn that into typed errors, caught below).
            # Do not re-arm into a loop of the same failure: end the leg, let it close us.
            logger.exception("call %s: RTP media stream failed", self.call_id)
            self._fail()
            return
        self._rearm()

    def _fail(self) -> None:
        self._internal_errors += 1
        self._emit(
            LegEnded(
                CallEnd(
                    DisconnectReason.SYSTEM_ERROR,
                    Blame.SYSTEM,
                    "Internal error in the RTP media stream",
                )
            )
        )

    def _send_due(self, now: float) -> None:
        target = self._latch.send_to
        if self._can_send() and target is not None:
            for packet in self._pacer.poll(now):
                self._sockets.send_rtp(packet.serialize(), target)
            self._flush_marks()

    def _tick(self, now: float) -> None:
        self._send_due(now)
        for item in self._jitter.pop(now):
            self._play_out(item)
        for received in self._dtmf.poll(now):
            self._dtmf_digits += 1
            self._emit(received.digit)
        timed_out = self._timeout.poll(now)
        if timed_out is not None:
            explanation = self._timeout_explanation(timed_out.last_packet_at, now)
            logger.warning("call %s: %s", self.call_id, explanation)
            self._emit(LegEnded(CallEnd(DisconnectReason.RTP_TIMEOUT, Blame.CARRIER, explanation)))
        due = self._rtcp.next_deadline()
        if due is not None and now >= due:
            self._send_rtcp_report(now)

    def _timeout_explanation(self, last: float | None, now: float) -> str:
        seconds = f"{self._config.media_timeout:g}"
        if last is None:
            return f"No RTP from the carrier for {seconds} s (no packet arrived at all)"
        wall = time.time() - (now - last)
        stamp = datetime.fromtimestamp(wall, tz=UTC).strftime("%H:%M:%S")
        return f"No RTP from the carrier for {seconds} s (last packet at {stamp} UTC)"

    def _send_rtcp_report(self, now: float) -> None:
        sender = None
        if self._pacer.packets_sent:
            sender = SenderInfo(
                self._pacer.rtp_timestamp_at(now),
                self._pacer.packets_sent,
                self._pacer.octets_sent,
            )
        # report_block() closes the interval for "fraction lost": only when a report is due.
        data = self._rtcp.poll(now, report=self._stats.report_block(now), sender=sender)
        target = self._rtcp_target()
        if data is not None and target is not None:
            self._sockets.send_rtcp(data, target, mux=self._media.rtcp_mux)
            self._rtcp_sent += 1

    def _rtcp_target(self) -> Address | None:
        if self._media.rtcp_mux:
            return self._latch.send_to
        if self._rtcp_source is not None:
            return self._rtcp_source  # symmetric RTCP, like symmetric RTP
        return usable_address(self._media.remote_rtcp_address, self._media.remote_rtcp_port)

    # -- datagrams in ------------------------------------------------------------------

    def _datagram_received(
        self, data: bytes, source: Address, on_rtcp_port: bool, arrived: float
    ) -> None:
        if self._closed:
            return
        try:
            self._datagram(data, source, on_rtcp_port, arrived)
        except Exception:
            # An exception escaping datagram_received would make asyncio close the socket;
            # a packet that trips a bug must not take the call's media down with it.
            if not self._internal_errors:
                logger.exception("call %s: error handling a datagram from %s", self.call_id, source)
            self._internal_errors += 1

    def _datagram(self, data: bytes, source: Address, on_rtcp_port: bool, arrived: float) -> None:
        if len(data) > self._config.max_datagram_bytes:
            self._malformed += 1
            return
        if on_rtcp_port or is_rtcp(data):
            # RFC 5761 §4: on a multiplexed port, RTCP is told apart by its packet type.
            self._receive_rtcp(data, source, on_rtcp_port, arrived)
            return
        try:
            packet = RtpPacket.parse(data)
        except MalformedRtp as exc:
            self._malformed += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: dropped datagram from %s: %s", self.call_id, source, exc)
            return
        latch_moved = self._receive_rtp(packet, source, arrived)
        due = self._jitter.next_deadline()
        if due is not None and due <= arrived:
            # Forwarding: the packet goes on now, not after a timer hop.
            for item in self._jitter.pop(arrived):
                self._play_out(item)
            due = self._jitter.next_deadline()
        dtmf_due = self._dtmf.next_deadline()
        if dtmf_due is not None and (due is None or dtmf_due < due):
            due = dtmf_due
        if latch_moved or (due is not None and (self._timer is None or due < self._timer_when)):
            self._rearm()  # a latch may have made sending possible

    def _receive_rtp(self, packet: RtpPacket, source: Address, arrived: float) -> bool:
        """Take one RTP packet; ``True`` when the latch moved (where we send changed)."""
        decision = self._latch.receive(source, packet.ssrc, packet.sequence_number)
        if decision is LatchDecision.IGNORED:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: ignored RTP from %s", self.call_id, source)
            return False
        latched = decision is not LatchDecision.ACCEPTED
        if latched:
            logger.info("call %s: RTP %s to %s:%d", self.call_id, decision.value, *source)
        self._timeout.packet_received(arrived)
        verdict = self._stats.update(packet.ssrc, packet.sequence_number, packet.timestamp, arrived)
        pt = packet.payload_type
        media = self._media
        if pt == media.payload_type and packet.payload:
            if verdict is PacketVerdict.DUPLICATE:
                return latched
            self._remember_arrival(packet.sequence_number, arrived)
            if self._jitter.push(packet, arrived) is PushResult.LATE:
                self._stats.record_late()
            return latched
        # Not audio for the agent, but it takes a sequence number of the stream: the
        # inbound buffer must not wait for it as if it were lost (it ignores repeats).
        self._jitter.consume(packet, arrived)
        if pt == media.telephone_event_pt:
            try:
                received = self._dtmf.receive(packet.timestamp, packet.payload, arrived)
            except MalformedTelephoneEvent:
                self._malformed += 1
                return latched
            for event in received:
                self._dtmf_digits += 1
                self._emit(event.digit)
        elif pt == media.comfort_noise_pt:
            # RFC 3389: the caller went silent; the jitter buffer conceals with silence.
            self._comfort_noise += 1
        elif pt != media.payload_type:  # (the audio type here means an empty payload)
            self._unknown_pt += 1
        return latched

    def _remember_arrival(self, sequence_number: int, arrived: float) -> None:
        arrivals = self._arrivals
        arrivals[sequence_number] = arrived
        limit = 4 * self._config.jitter_capacity
        if len(arrivals) > limit:
            # Packets the buffer dropped never come out: forget the oldest half.
            for seq in list(itertools.islice(arrivals, limit // 2)):
                del arrivals[seq]

    def _play_out(self, item: PlayoutFrame | Lost) -> None:
        received_at: float | None
        if isinstance(item, PlayoutFrame):
            payload = item.payload
            received_at = self._arrivals.pop(item.sequence_number, None)
            self._last_payload = payload
            self._lost_run = 0
        else:
            # Concealment: repeat the last packet once (it masks a single loss well),
            # then silence in the codec's own encoding.
            self._lost_run += 1
            last = self._last_payload
            repeat = self._lost_run == 1 and last is not None and len(last) == len(self._silence)
            payload = last if repeat and last is not None else self._silence
            received_at = None
        frame = AudioFrame(self.format, payload, int(self._position_ms), received_at)
        self._position_ms += self.format.ms_for_bytes(len(payload))
        self._emit(frame)

    def _receive_rtcp(
        self, data: bytes, source: Address, on_rtcp_port: bool, arrived: float
    ) -> None:
        latched = self._latch.latched
        if latched is not None and source[0] != latched[0]:
            self._rtcp_ignored += 1  # RTCP only from the host our RTP comes from
            return
        try:
            events = self._rtcp.receive(data, arrived)
        except MalformedRtcp as exc:
            self._malformed += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: dropped RTCP from %s: %s", self.call_id, source, exc)
            return
        self._rtcp_received += 1
        if on_rtcp_port:
            self._rtcp_source = source
        for event in events:
            if isinstance(event, SenderReportReceived):
                self._stats.record_sender_report(event.ntp_timestamp, arrived)
            elif isinstance(event, RoundTripMeasured) and logger.isEnabledFor(logging.DEBUG):
                logger.debug("call %s: RTT %.1f ms", self.call_id, event.rtt * 1000)
