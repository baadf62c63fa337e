"""Events handed to one listener in the callback that produced them.

A call's media events (a caller frame, a mark acknowledgement, an agent's audio) used to
cross a queue and a task switch on their way to the bridge: two or three hops per frame,
each waking a task (docs/performance.md). A ``Relay`` hands each event straight to the
listener instead, in the producer's own callback (``datagram_received``,
``data_received``, a timer); until a listener is set it holds them, in order.

``UntilNone`` is the async iterator of a source that keeps its own queue and offers a
coroutine for the next item; ``media.pull.Pull`` turns a ``listen`` method back into
async iterators, for consumers that want them (tests and tools). The bridge listens.

Compiled (gateway/native.py): every caller frame and agent event passes a ``Relay``.
``Pull`` lives apart because its iterators are async generators, which mypyc does not
compile.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Listener", "Relay", "UntilNone"]

T = TypeVar("T")

Listener = Callable[[T], None]


class Relay(Generic[T]):
    """Delivers each ``put`` to the one listener at once, or holds it until there is one."""

    __slots__ = ("_held", "_listener")

    def __init__(self) -> None:
        self._held: deque[T] = deque()
        self._listener: Listener[T] | None = None

    def __len__(self) -> int:
        """Items held for a listener that has not been set yet."""
        return len(self._held)

    @property
    def listening(self) -> bool:
        """True once ``listen`` has run."""
        return self._listener is not None

    def put(self, item: T) -> None:
        """Hand ``item`` to the listener now, or hold it."""
        listener = self._listener
        if listener is None:
            self._held.append(item)
        else:
            listener(item)

    def listen(self, listener: Listener[T]) -> None:
        """Set the one listener; the items held so far reach it first, in order.

        Raises ``RuntimeError`` for a second listener (events are not shared)."""
        if self._listener is not None:
            raise RuntimeError("this event source already has a listener")
        # Items put while the held ones are handed over (the listener may cause them)
        # join the end of the held queue, so the order stays the order of put().
        while self._held:
            listener(self._held.popleft())
        self._listener = listener


class UntilNone(Generic[T]):
    """An async iterator over ``await next_item()`` that ends when it returns None."""

    __slots__ = ("_next_item",)

    def __init__(self, next_item: Callable[[], Awaitable[T | None]]) -> None:
        self._next_item = next_item

    def __aiter__(self) -> UntilNone[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._next_item()
        if item is None:
            raise StopAsyncIteration
        return item
