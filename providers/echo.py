"""The built-in echo agent (``ai_provider: echo``): the caller hears themself, delayed.

No network, no credentials. It is what the demo trunk routes to and what the bridge's
tests run against. Behaviour, kept deliberately simple:

* ``open`` accepts the leg's format for both directions (``preferred``), so the bridge
  uses identity converters and the caller's bytes come back unchanged;
* every frame sent with ``send_audio`` comes back as ``AgentAudio`` ``delay`` seconds
  later (default 200 ms), with a fresh frame (no ``received_at``: the bridge stamps it);
* echo is continuous: it has no VAD and never interrupts itself (no ``AgentInterrupted``),
  and it never sends ``ResponseDone``; all audio belongs to the current item
  (``echo-1``, ``echo-2`` …);
* ``played(item, ms)`` (the bridge's truncation after a barge-in) drops the echo still
  pending for that item and starts a new item, as a real provider truncates a response;
  ``truncations`` records the calls;
* DTMF is echoed too: a key pressed by the caller comes back as ``DtmfRequested``;
* the pending echo is bounded (``max_pending_frames``): when full the oldest frame is
  dropped and counted in ``dropped_frames``.

The echo is released by a loop timer (one per session, armed while anything is pending)
and handed to the listener from it: the session starts no task, so nothing can outlive it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from media import AudioFormat, AudioFrame, CallContext
from media.pull import Pull
from media.relay import Relay
from providers.base import (
    AgentAudio,
    AgentClosed,
    AgentConfig,
    AgentEvent,
    AgentSession,
    DtmfRequested,
    NegotiatedFormats,
    ProviderConfigError,
)

DEFAULT_DELAY = 0.2
MAX_DELAY = 10.0


class EchoSession(AgentSession):
    """An agent that plays the caller's audio back after ``delay`` seconds."""

    def __init__(self, delay: float = DEFAULT_DELAY, *, max_pending_frames: int = 1000) -> None:
        if not 0 <= delay <= MAX_DELAY:
            raise ProviderConfigError(f"echo delay must be between 0 and {MAX_DELAY:g} s")
        self.delay = delay
        self._max_pending = max_pending_frames
        self._pending: deque[tuple[float, AudioFrame | str]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._relay: Relay[AgentEvent] = Relay()
        self._pull = Pull(self.listen, lambda event: isinstance(event, AgentClosed))
        self._item_number = 1
        self._closed = False
        self.format: AudioFormat | None = None
        self.context: CallContext | None = None
        self.truncations: list[tuple[str, int]] = []
        self.marks_played: list[str] = []
        self.dropped_frames = 0

    @classmethod
    def from_config(cls, config: AgentConfig) -> EchoSession:
        """Build from a trunk's config; ``options["delay_ms"]`` sets the delay (0..10000)."""
        raw = config.options.get("delay_ms", DEFAULT_DELAY * 1000)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ProviderConfigError("echo option delay_ms must be a number of milliseconds")
        return cls(delay=float(raw) / 1000)

    @property
    def item_id(self) -> str:
        """The item the echoed audio currently belongs to."""
        return f"echo-{self._item_number}"

    async def open(self, context: CallContext, preferred: AudioFormat) -> NegotiatedFormats:
        self.context = context
        self.format = preferred
        return NegotiatedFormats(input=preferred, output=preferred)

    async def answered(self) -> None:
        """Echo has no greeting."""

    def send_audio(self, frame: AudioFrame) -> None:
        if self._closed:
            return
        self._push(frame)

    def send_dtmf(self, digit: str) -> None:
        if self._closed:
            return
        self._push(digit)

    def played(self, item_id: str, played_ms: int) -> None:
        self.truncations.append((item_id, played_ms))
        if item_id == self.item_id:
            # The caller barged in: what was still to be echoed for this item is dropped.
            self._pending = deque(p for p in self._pending if isinstance(p[1], str))
            self._item_number += 1

    def mark_played(self, name: str) -> None:
        self.marks_played.append(name)

    def listen(self, on_event: Callable[[AgentEvent], None]) -> None:
        self._relay.listen(on_event)

    def events(self) -> AsyncIterator[AgentEvent]:
        return self._pull()

    async def close(self, reason: str = "") -> None:
        del reason
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._relay.put(AgentClosed())

    def _push(self, item: AudioFrame | str) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped_frames += 1
        due = asyncio.get_running_loop().time() + self.delay
        self._pending.append((due, item))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(due, self._release)

    def _release(self) -> None:
        """Hand out what is due, then sleep until the next one."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._pending and self._pending[0][0] <= now:
            _, item = self._pending.popleft()
            if isinstance(item, str):
                self._relay.put(DtmfRequested(item))
            else:
                echoed = AudioFrame(item.format, item.payload, item.timestamp)
                self._relay.put(AgentAudio(echoed, self.item_id))
        if self._pending and not self._closed:
            self._timer = loop.call_at(self._pending[0][0], self._release)
