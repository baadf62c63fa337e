"""The events of a ``listen`` method as async iterators, for consumers that want them.

The bridge listens (``media.relay``); tests and tools iterate. This module stays
interpreted (gateway/native.py): ``Pull``'s iterators are async generators, which mypyc
does not compile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from media.inbox import Inbox
from media.relay import Listener

__all__ = ["Pull"]

T = TypeVar("T")


class Pull(Generic[T]):
    """The events of a ``listen`` method as async iterators (for tests and tools).

    It listens when the first iterator starts; each call returns an iterator over the
    same events, which ends after the ``last`` one. Once that was seen, a new iterator
    yields it again and ends (the source is over; asking again says so).
    """

    __slots__ = ("_inbox", "_last", "_listen", "_final")

    def __init__(self, listen: Callable[[Listener[T]], None], last: Callable[[T], bool]) -> None:
        self._listen = listen
        self._last = last
        self._inbox: Inbox[T] | None = None
        self._final: T | None = None

    def __call__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        if self._inbox is None:
            self._inbox = Inbox()
            self._listen(self._inbox.put)
        while self._final is None:
            item = await self._inbox.get()
            if self._last(item):
                self._final = item
            yield item
            if self._final is not None:
                return
        yield self._final
