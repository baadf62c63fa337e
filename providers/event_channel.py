"""The queue between a session's socket reader and the bridge: bounded, always closed.

The reader waits when the bridge falls behind (backpressure reaches the agent through the
socket), but the final events (a fatal error, ``AgentClosed``) are never held back: they
go in beyond the bound, so ending a session never waits and never drops an event.
Used by every WebSocket adapter through ``providers.ws_session``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from providers.base import AgentClosed, AgentEvent


class EventChannel:
    """A bounded single-consumer queue of agent events that always ends with ``AgentClosed``.

    ``put`` waits while the queue is full (backpressure onto the socket); ``finish`` never
    waits, so the final events always get through.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[AgentEvent] = deque()
        self._maxsize = maxsize
        self._final: AgentClosed | None = None
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    @property
    def finished(self) -> bool:
        """True once ``finish`` has run: later ``put`` calls are ignored."""
        return self._final is not None

    async def put(self, event: AgentEvent) -> None:
        """Append ``event``, waiting while the queue is full; ignored after ``finish``."""
        while len(self._items) >= self._maxsize and self._final is None:
            self._space.clear()
            await self._space.wait()
        if self._final is None:
            self._items.append(event)
            self._ready.set()

    def finish(self, *last: AgentEvent, closed: AgentClosed) -> None:
        """Append ``last`` and the closing event, beyond the bound; later calls are ignored."""
        if self._final is not None:
            return
        self._items.extend(last)
        self._final = closed
        self._ready.set()
        self._space.set()

    async def __aiter__(self) -> AsyncIterator[AgentEvent]:
        while True:
            if self._items:
                event = self._items.popleft()
                self._space.set()
                yield event
            elif self._final is not None:
                yield self._final
                return
            else:
                self._ready.clear()
                await self._ready.wait()
