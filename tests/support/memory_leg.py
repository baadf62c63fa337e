"""An in-memory ``CallLeg`` with a real paced playout on the event loop's clock.

It is what an ingress leg looks like to the bridge, minus the network: the test side
speaks (``say``, ``press``, ``hang_up``) and inspects what was answered, played, marked,
cleared, hung up; the bridge side sees exactly the ``gateway.leg.CallLeg`` contract:

* ``play`` queues a frame; a pacer on ``loop.call_at`` sends one queued frame every
  ``frame_ms`` (the first at once), appending it to ``sent`` with its send time;
* ``mark(name)`` is acknowledged with ``MarkPlayed(name)`` exactly when everything queued
  before it has been sent (at once, inside the ``mark`` call, if nothing is queued: the
  listener's handling of that nested event is tested along with it);
* ``clear`` drops queued audio at once (so sending stops within one frame) and
  acknowledges the marks that were queued behind it;
* the playout queue is bounded: when full, the oldest frame is dropped and counted.

Not a mock of our code: it is the seam's reference implementation for tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from media import (
    PCMU,
    AudioFormat,
    AudioFrame,
    CallContext,
    CallEnd,
    DtmfDigit,
    LegEnded,
    LegEvent,
    MarkPlayed,
)
from media.pull import Pull
from media.relay import Relay


def default_context(call_id: str = "call-test") -> CallContext:
    """A plausible inbound SIP call context."""
    return CallContext(
        call_id=call_id,
        trunk_id="trunk-test",
        sip_call_id=f"{call_id}@127.0.0.1",
        from_number="+15550100001",
        to_number="+15550100002",
        headers={"X-Customer": "42"},
    )


class MemoryLeg:
    """A ``CallLeg`` kept in memory, with paced playout. See the module docstring."""

    def __init__(
        self,
        format: AudioFormat = PCMU,
        context: CallContext | None = None,
        *,
        frame_ms: int = 20,
        max_queue_frames: int = 500,
        can_transfer: bool = True,
    ) -> None:
        self._format = format
        self._context = context or default_context()
        self._frame_s = frame_ms / 1000
        self._queue: deque[AudioFrame | str] = deque()
        self._queued_frames = 0
        self._max_queue_frames = max_queue_frames
        self._inbox: Relay[LegEvent] = Relay()
        self._pull = Pull(self.listen, lambda event: isinstance(event, LegEnded))
        self._timer: asyncio.TimerHandle | None = None
        self._next_send = 0.0
        self._ended = False
        self._can_transfer = can_transfer
        # What the test inspects:
        self.sent: list[tuple[float, AudioFrame]] = []
        self.marks_acked: list[str] = []
        self.dtmf_sent: list[str] = []
        self.answered_at: float | None = None
        self.rejected: CallEnd | None = None
        self.hung_up: CallEnd | None = None
        self.transferred_to: list[str] = []
        self.clears: list[float] = []
        """For each ``clear()``: the milliseconds of audio paced out when it came."""
        self.dropped_frames = 0

    # --- CallLeg ---

    @property
    def context(self) -> CallContext:
        return self._context

    @property
    def format(self) -> AudioFormat:
        return self._format

    def listen(self, on_event: Callable[[LegEvent], None]) -> None:
        self._inbox.listen(on_event)

    def events(self) -> AsyncIterator[LegEvent]:
        return self._pull()

    async def answer(self) -> None:
        self.answered_at = asyncio.get_running_loop().time()

    async def reject(self, end: CallEnd) -> None:
        self.rejected = end
        self._end(end)

    def play(self, frame: AudioFrame) -> None:
        if self._ended:
            return
        if self._queued_frames >= self._max_queue_frames:
            self._drop_oldest_frame()
        self._queue.append(frame)
        self._queued_frames += 1
        self._arm()

    def mark(self, name: str) -> None:
        if self._ended:
            return
        if not self._queued_frames:
            self._ack(name)
        else:
            self._queue.append(name)

    def clear(self) -> None:
        self.clears.append(self.sent_ms)
        for item in self._queue:
            if isinstance(item, str):
                self._ack(item)
        self._queue.clear()
        self._queued_frames = 0

    def send_dtmf(self, digits: str) -> None:
        self.dtmf_sent.append(digits)

    async def hangup(self, end: CallEnd) -> None:
        if self.hung_up is None:
            self.hung_up = end
        self._end(end)

    async def transfer(self, target: str) -> bool:
        self.transferred_to.append(target)
        return self._can_transfer

    # --- test side ---

    def say(self, payload: bytes, *, timestamp: int = 0) -> AudioFrame:
        """The caller sends ``payload`` (in the leg's format), stamped as received now."""
        frame = AudioFrame(
            self._format, payload, timestamp, received_at=asyncio.get_running_loop().time()
        )
        self._inbox.put(frame)
        return frame

    def press(self, digit: str) -> None:
        """The caller presses a key."""
        self._inbox.put(DtmfDigit(digit, 100))

    def hang_up(self, end: CallEnd | None = None) -> None:
        """The caller (or carrier) ends the call."""
        self._end(end or CallEnd.caller_hangup())

    @property
    def sent_payload(self) -> bytes:
        """Every byte paced out so far, in order."""
        return b"".join(frame.payload for _, frame in self.sent)

    @property
    def sent_ms(self) -> float:
        """Milliseconds of audio paced out so far."""
        return sum(frame.duration_ms for _, frame in self.sent)

    @property
    def queued_frames(self) -> int:
        """Frames waiting in the playout queue."""
        return self._queued_frames

    @property
    def ended(self) -> bool:
        """True once the leg is over (hung up either way or rejected)."""
        return self._ended

    # --- pacing ---

    def _arm(self) -> None:
        if self._timer is not None or not self._queued_frames:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        # A pacer that fell idle starts again at once; a busy one keeps its 20 ms grid.
        self._next_send = max(self._next_send, now)
        self._timer = loop.call_at(self._next_send, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._ended or not self._queued_frames:
            return
        loop = asyncio.get_running_loop()
        frame = self._queue.popleft()
        assert isinstance(frame, AudioFrame)  # marks never lead the queue (acked below)
        self._queued_frames -= 1
        self.sent.append((loop.time(), frame))
        self._next_send += self._frame_s
        while self._queue and isinstance(self._queue[0], str):
            name = self._queue.popleft()
            assert isinstance(name, str)
            self._ack(name)
        self._arm()

    def _drop_oldest_frame(self) -> None:
        for index, item in enumerate(self._queue):
            if isinstance(item, AudioFrame):
                del self._queue[index]
                self._queued_frames -= 1
                self.dropped_frames += 1
                break
        while self._queue and isinstance(self._queue[0], str):
            name = self._queue.popleft()
            assert isinstance(name, str)
            self._ack(name)

    def _ack(self, name: str) -> None:
        self.marks_acked.append(name)
        self._inbox.put(MarkPlayed(name))

    def _end(self, end: CallEnd) -> None:
        if self._ended:
            return
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._queued_frames = 0
        self._inbox.put(LegEnded(end))
