"""A queue for one consumer task; ``put`` never waits (callbacks may call it).

It is what ``media.pull.Pull`` reads the events of a source from, and it is kept to
what a per-frame queue needs. ``asyncio.Queue`` does more (several
getters, ``maxsize``, ``join``): its ``get`` allocates a future and loops over its
getters on every wait. Here a waiting consumer costs one future per idle period, and a
``put`` to a queue nobody waits on costs an ``append``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Unbounded FIFO for one consumer (``get``); ``put`` from callbacks or tasks."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Append ``item`` and wake the consumer if it waits."""
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()
