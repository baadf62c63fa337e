"""The leg-to-bridge inbox: FIFO, put never waits, a waiting consumer is woken."""

from __future__ import annotations

import asyncio

from media.inbox import Inbox


async def test_items_come_out_in_order_without_waiting_when_queued() -> None:
    inbox: Inbox[int] = Inbox()
    for n in range(3):
        inbox.put(n)
    assert len(inbox) == 3
    assert [await inbox.get() for _ in range(3)] == [0, 1, 2]
    assert len(inbox) == 0


async def test_a_waiting_consumer_is_woken_by_put_from_a_callback() -> None:
    inbox: Inbox[str] = Inbox()
    loop = asyncio.get_running_loop()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    loop.call_soon(inbox.put, "frame")
    assert await asyncio.wait_for(getter, 1) == "frame"


async def test_a_cancelled_consumer_leaves_the_inbox_usable() -> None:
    inbox: Inbox[int] = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    inbox.put(7)  # no waiter left behind to trip over
    assert await asyncio.wait_for(inbox.get(), 1) == 7
