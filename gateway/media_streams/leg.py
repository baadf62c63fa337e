"""``MediaStreamLeg``: a ``CallLeg`` over a carrier's media-stream WebSocket.

The WS loop (``session.py``) decodes each carrier message with the pure codec of
``ingress.media_streams`` and hands the events to ``receive``; the leg turns them into
the bridge's ``LegEvent``s and paces the bridge's audio back out.

Outbound, per the carriers' docs (carriers.md §1.4, §1.5, §2.4, §6 items 5-6):

- audio leaves in 20 ms ``media`` messages at real-time pace, at most ``lead_ms`` ahead
  of the carrier's playhead (the carrier buffers what we send; a bounded lead keeps what
  ``clear`` must flush small and avoids both bursts and gaps). ``OutboundPacer`` decides
  what is due; the leg re-arms ONE ``loop.call_at`` timer at its deadline (STYLE.md P2);
- each bridge ``mark(name)`` follows its audio as a carrier ``mark`` with a short wire
  name (``m<generation>.<n>``); the carrier echoes it when that audio has *played*, and
  only then does the bridge get ``MarkPlayed(name)``: the echo is what makes barge-in
  truncation exact;
- ``clear()`` drops our queue, sends the carrier's ``clear``, and acknowledges at once
  every mark still queued here or outstanding at the carrier (the ``CallLeg`` contract);
  the echoes the carrier then sends for those marks belong to an old generation and are
  ignored (openai-agents-js PR #1608: "ignore stale marks after clear");
- nothing is sent before ``start`` (the leg exists only after it) or after ``stop``.

Telnyx may stream PCMA although PCMU was asked for (carriers.md §4): the leg's
``format`` is the inbound format from ``start``; if it differs from the outbound codec we
told Telnyx, one converter chosen here re-encodes our audio (G.711 A↔µ is a table).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from ingress.media_streams.errors import MediaStreamStateError
from ingress.media_streams.events import (
    CarrierErrorReported,
    MediaStreamCodec,
    MediaStreamEvent,
    StreamConnected,
    StreamStarted,
    StreamStopped,
)
from media import (
    AudioFormat,
    AudioFrame,
    CallContext,
    CallEnd,
    DtmfDigit,
    LegEnded,
    LegEvent,
    MarkPlayed,
    MediaError,
)
from media.chunking import Rechunker
from media.converters import Converter, make_converter
from media.pull import Pull
from media.relay import Relay

__all__ = ["LegStats", "MediaStreamLeg", "OutboundPacer"]

logger = logging.getLogger(__name__)

_EPSILON_S = 1e-4  # timers may fire a hair early (asyncio's clock resolution)
SendText = Callable[[str], Awaitable[None]]
# Writes one text message now if the socket can take it without waiting; False if not.
WriteNow = Callable[[str], bool]
HangUp = Callable[[CallEnd], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Mark:
    name: str


class OutboundPacer:
    """Which queued frames and marks may go to the carrier at ``now`` (sans-I/O).

    The carrier plays what it receives back to back, so its playhead ends at ``horizon``:
    ``max(horizon, now) + duration`` after each frame. A frame may go if afterwards
    ``horizon - now <= lead``: at most ``lead`` of audio is ever queued at the carrier,
    and in steady state one frame leaves every frame time. A mark goes as soon as everything queued
    before it has gone. ``deadline()`` is when ``due`` next has something (or ``None``).
    """

    def __init__(self, *, lead_ms: float, max_frames: int) -> None:
        if lead_ms <= 0 or max_frames < 1:
            raise ValueError("lead_ms must be positive and max_frames at least 1")
        self.lead_s = lead_ms / 1000
        self.max_frames = max_frames
        self._queue: deque[AudioFrame | _Mark] = deque()
        self._frames = 0
        self.horizon = -math.inf
        self.dropped_frames = 0

    @property
    def queued_frames(self) -> int:
        """Frames waiting here (not yet sent to the carrier)."""
        return self._frames

    def push_frame(self, frame: AudioFrame) -> None:
        """Queue a frame; when ``max_frames`` are queued the oldest one is dropped (counted)."""
        if self._frames >= self.max_frames:
            for index, item in enumerate(self._queue):
                if isinstance(item, AudioFrame):
                    del self._queue[index]
                    self._frames -= 1
                    self.dropped_frames += 1
                    break
        self._queue.append(frame)
        self._frames += 1

    def push_mark(self, name: str) -> None:
        """Queue a mark behind the frames queued so far."""
        self._queue.append(_Mark(name))

    def due(self, now: float) -> list[AudioFrame | str]:
        """Pop what may be sent at ``now``, in order (frames and mark names)."""
        out: list[AudioFrame | str] = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, _Mark):
                self._queue.popleft()
                out.append(head.name)
                continue
            ends = max(self.horizon, now) + head.duration_ms / 1000
            if ends - now > self.lead_s + _EPSILON_S:
                break
            self._queue.popleft()
            self._frames -= 1
            self.horizon = ends
            out.append(head)
        return out

    def deadline(self) -> float | None:
        """When ``due`` will next return something; ``None`` when nothing is queued."""
        if not self._queue:
            return None
        head = self._queue[0]
        if isinstance(head, _Mark):
            return -math.inf
        return self.horizon + head.duration_ms / 1000 - self.lead_s

    def clear(self) -> list[str]:
        """Drop everything queued (the carrier's buffer is cleared too); the marks dropped."""
        marks = [item.name for item in self._queue if isinstance(item, _Mark)]
        self._queue.clear()
        self._frames = 0
        self.horizon = -math.inf
        return marks


@dataclass(slots=True)
class LegStats:
    """What the leg counted, for the call record's media statistics."""

    frames_sent: int = 0
    marks_sent: int = 0
    marks_echoed: int = 0
    stale_marks: int = 0
    clears_sent: int = 0
    dtmf_not_sent: int = 0
    inbound_dropped: int = 0
    carrier_errors: int = 0
    wrong_format_frames: int = 0


class MediaStreamLeg:
    """A ``gateway.leg.CallLeg`` over one carrier media stream. See the module docstring.

    ``send`` writes one text message to the socket; ``hang_up`` ends the call through the
    carrier's REST API (``carrier_api``) and is called at most once, only if the carrier
    has not already stopped the stream. ``write_now``, where the socket has one (the media
    listener's), writes a message in the caller's own callback when nothing is queued and
    the socket is not congested: no writer task wakes per message. The writer task still
    takes whatever it declines, in order.
    """

    def __init__(
        self,
        *,
        codec: MediaStreamCodec,
        started: StreamStarted,
        context: CallContext,
        send: SendText,
        write_now: WriteNow | None = None,
        hang_up: HangUp | None = None,
        outbound_format: AudioFormat | None = None,
        frame_ms: int = 20,
        lead_ms: int = 80,
        max_queue_frames: int = 3000,
        max_inbox: int = 1000,
    ) -> None:
        self._codec = codec
        self._started = started
        self._context = context
        self._send = send
        self._write_now = write_now
        self._hang_up = hang_up
        self._format = started.media_format
        target = outbound_format or self._format
        self._converter: Converter | None = (
            make_converter(self._format, target) if target != self._format else None
        )
        self._rechunker = Rechunker(target, frame_ms)
        self._pacer = OutboundPacer(lead_ms=lead_ms, max_frames=max_queue_frames)
        self._inbox: Relay[LegEvent] = Relay()  # held until the bridge listens
        self._pull = Pull(self.listen, lambda event: isinstance(event, LegEnded))
        self._max_inbox = max_inbox
        self._outbox: deque[str] = deque()
        self._wake_writer = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._writer: asyncio.Task[None] | None = None
        self._generation = 0
        self._mark_seq = 0
        self._outstanding: OrderedDict[str, str] = OrderedDict()  # wire name → bridge name
        self._ended = False
        self._carrier_stopped = False
        self._hung_up = False
        self.stats = LegStats()
        self.sent_at: list[float] = []
        """Loop time of every ``media`` message handed to the socket (for pacing checks)."""

    # --- CallLeg: identity --------------------------------------------------------------

    @property
    def context(self) -> CallContext:
        return self._context

    @property
    def format(self) -> AudioFormat:
        return self._format

    @property
    def ended(self) -> bool:
        """True once the call is over on this leg (either side)."""
        return self._ended

    @property
    def carrier_stopped(self) -> bool:
        """True when the carrier ended the stream (``stop`` or the socket closed)."""
        return self._carrier_stopped

    # --- CallLeg: events and controls ---------------------------------------------------

    def listen(self, on_event: Callable[[LegEvent], None]) -> None:
        self._inbox.listen(on_event)

    def events(self) -> AsyncIterator[LegEvent]:
        return self._pull()

    async def answer(self) -> None:
        """Nothing to do: the carrier answered the call before it opened the stream."""

    async def reject(self, end: CallEnd) -> None:
        """The carrier already answered, so refusing means hanging up through its API."""
        await self.hangup(end)

    def play(self, frame: AudioFrame) -> None:
        if self._ended:
            return
        if frame.format != self._format:
            self.stats.wrong_format_frames += 1
            logger.debug(
                "call_id=%s frame in %s dropped: the leg plays %s",
                self._context.call_id,
                frame.format,
                self._format,
            )
            return
        converted: AudioFrame | None = frame
        if self._converter is not None:
            try:
                converted = self._converter.convert(frame)
            except MediaError as exc:
                logger.warning("call_id=%s outbound frame dropped: %s", self._context.call_id, exc)
                return
        if converted is None:
            return
        for chunk in self._rechunker.feed_frame(converted):
            self._pacer.push_frame(chunk)
        self._pump()

    def mark(self, name: str) -> None:
        if self._ended:
            return
        held = self._rechunker.flush(pad=True)
        if held is not None:
            self._pacer.push_frame(held)
        self._pacer.push_mark(name)
        self._pump()

    def clear(self) -> None:
        if self._ended:
            return
        self._rechunker.clear()
        if self._converter is not None:
            self._converter.reset()
        dropped = self._pacer.clear()
        outstanding = list(self._outstanding.values())
        self._outstanding.clear()
        self._generation += 1
        # Whatever the carrier still holds goes too; its echoes of our marks come back
        # (TW-WSM, TX-MS) under the old generation and are ignored.
        self._write(self._codec.encode_clear, kind="clear")
        self.stats.clears_sent += 1
        for name in (*outstanding, *dropped):
            self._inbox.put(MarkPlayed(name))
        self._arm()

    def send_dtmf(self, digits: str) -> None:
        # Neither carrier's stream accepts DTMF from us (TW-WSM, TX-MS list media, mark,
        # clear only); counted so the record shows the agent asked.
        self.stats.dtmf_not_sent += len(digits)
        logger.info(
            "call_id=%s DTMF %r not sent: media streams cannot carry DTMF to the caller",
            self._context.call_id,
            digits,
        )

    async def hangup(self, end: CallEnd) -> None:
        """End the call from our side: the carrier's REST hang-up (once), then ``LegEnded``."""
        if self._hung_up:
            return
        self._hung_up = True
        self._stop_pacing()
        if not self._carrier_stopped and self._hang_up is not None:
            await self._hang_up(end)
        self._end(end)

    async def transfer(self, target: str) -> bool:
        """Not supported on media streams (a carrier REST redirect would be needed)."""
        return False

    # --- the WS loop's side -------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task; call once, right after construction, on the loop."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"media-stream-writer-{self._context.call_id}"
            )

    def receive(self, event: MediaStreamEvent) -> None:
        """One decoded carrier event (after ``start``)."""
        if self._ended:
            return
        if isinstance(event, AudioFrame | DtmfDigit):
            if isinstance(event, AudioFrame) and len(self._inbox) >= self._max_inbox:
                self.stats.inbound_dropped += 1  # nobody listens yet: do not grow without bound
                return
            self._inbox.put(event)
        elif isinstance(event, MarkPlayed):
            self._on_echo(event.name)
        elif isinstance(event, StreamStopped):
            self.carrier_closed(event.end)
        elif isinstance(event, CarrierErrorReported):
            self.stats.carrier_errors += 1
            logger.warning(
                "call_id=%s carrier error %s %s: %s",
                self._context.call_id,
                event.code,
                event.title,
                event.detail,
            )
        elif isinstance(event, StreamConnected | StreamStarted):
            logger.debug("call_id=%s repeated %s ignored", self._context.call_id, event)

    def carrier_closed(self, end: CallEnd) -> None:
        """The carrier stopped the stream or the socket went away: the call is over."""
        self._carrier_stopped = True
        self._stop_pacing()
        self._end(end)

    async def aclose(self) -> None:
        """Stop the timer and the writer (the socket is going away)."""
        self._stop_pacing()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def flush(self) -> None:
        """Wait until the writer has handed every queued message to the socket (or died).

        Bound it with ``asyncio.timeout``: a stalled socket never drains."""
        writer = self._writer
        if writer is None or writer.done():
            return
        drained = asyncio.ensure_future(self._drained.wait())
        try:
            await asyncio.wait({drained, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()

    # --- marks --------------------------------------------------------------------------

    def _on_echo(self, wire: str) -> None:
        if wire not in self._outstanding:
            self.stats.stale_marks += 1  # echoed by a clear, or not ours
            return
        # The carrier plays in order: an echo also means every earlier mark has played.
        while self._outstanding:
            sent_wire, name = self._outstanding.popitem(last=False)
            self.stats.marks_echoed += 1
            self._inbox.put(MarkPlayed(name))
            if sent_wire == wire:
                break

    # --- pacing -------------------------------------------------------------------------

    def _pump(self) -> None:
        if self._ended:
            return
        loop = asyncio.get_running_loop()
        for item in self._pacer.due(loop.time()):
            if isinstance(item, AudioFrame):
                payload = item.payload
                if self._write(partial(self._codec.encode_media, payload), kind="media"):
                    self.stats.frames_sent += 1
                    self.sent_at.append(loop.time())
            else:
                self._mark_seq += 1
                wire = f"m{self._generation}.{self._mark_seq}"
                if self._write(partial(self._codec.encode_mark, wire), kind="mark"):
                    self._outstanding[wire] = item
                    self.stats.marks_sent += 1
                else:
                    self._inbox.put(MarkPlayed(item))
        self._arm()

    def _arm(self) -> None:
        """Keep exactly one timer, at the pacer's next deadline."""
        deadline = self._pacer.deadline()
        if deadline is None or self._ended:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = math.inf
            return
        if self._timer is not None and self._timer_at == deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(max(deadline, loop.time()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._pump()

    def _stop_pacing(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        self._pacer.clear()

    # --- the socket ---------------------------------------------------------------------

    def _write(self, encode: Callable[[], str], *, kind: str) -> bool:
        """Encode and queue one message for the writer; False when the stream is over."""
        try:
            text = encode()
        except MediaStreamStateError as exc:
            logger.debug("call_id=%s %s not sent: %s", self._context.call_id, kind, exc)
            return False
        if not self._outbox and self._write_now is not None and self._write_now(text):
            return True
        self._outbox.append(text)
        self._drained.clear()
        self._wake_writer.set()
        return True

    async def _write_loop(self) -> None:
        while True:
            while not self._outbox:
                self._drained.set()
                self._wake_writer.clear()
                await self._wake_writer.wait()
            text = self._outbox.popleft()
            try:
                await self._send(text)
            except Exception as exc:  # the socket is gone; the reader will see the close
                logger.debug("call_id=%s send failed: %r", self._context.call_id, exc)
                self._outbox.clear()
                return

    def _end(self, end: CallEnd) -> None:
        if self._ended:
            return
        self._ended = True
        for name in self._outstanding.values():
            self._inbox.put(MarkPlayed(name))
        self._outstanding.clear()
        self._inbox.put(LegEnded(end))
