"""The relay between an event source and its one listener, and its pull adapter."""

from __future__ import annotations

import asyncio

import pytest

from media.pull import Pull
from media.relay import Relay


def test_items_reach_the_listener_inside_put() -> None:
    relay: Relay[int] = Relay()
    heard: list[int] = []
    relay.listen(heard.append)
    relay.put(1)
    assert heard == [1]  # no queue, no task: delivered by the put call itself
    relay.put(2)
    assert heard == [1, 2]
    assert len(relay) == 0


def test_items_before_the_listener_are_held_and_handed_over_first_in_order() -> None:
    relay: Relay[str] = Relay()
    relay.put("a")
    relay.put("b")
    assert len(relay) == 2 and not relay.listening
    heard: list[str] = []
    relay.listen(heard.append)
    relay.put("c")
    assert heard == ["a", "b", "c"]
    assert relay.listening and len(relay) == 0


def test_items_the_listener_causes_during_the_hand_over_keep_their_order() -> None:
    relay: Relay[str] = Relay()
    heard: list[str] = []

    def listener(item: str) -> None:
        heard.append(item)
        if item == "a":
            relay.put("caused-by-a")  # e.g. a mark acknowledged inside the handler

    relay.put("a")
    relay.put("b")
    relay.listen(listener)
    assert heard == ["a", "b", "caused-by-a"]


def test_a_second_listener_is_refused() -> None:
    relay: Relay[int] = Relay()
    relay.listen(lambda item: None)
    with pytest.raises(RuntimeError, match="already has a listener"):
        relay.listen(lambda item: None)


async def test_pull_iterates_until_the_last_event_and_repeats_it_afterwards() -> None:
    relay: Relay[str] = Relay()
    pull = Pull(relay.listen, lambda item: item == "end")
    relay.put("held")  # before anyone iterates: held by the relay
    events = pull()
    assert await anext(events) == "held"
    asyncio.get_running_loop().call_soon(relay.put, "later")  # from a callback
    assert await asyncio.wait_for(anext(events), 1) == "later"
    relay.put("end")
    assert await anext(events) == "end"
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    assert [item async for item in pull()] == ["end"]  # the source is over; asking again


async def test_successive_iterators_share_one_stream() -> None:
    relay: Relay[int] = Relay()
    pull = Pull(relay.listen, lambda item: item < 0)
    for item in (1, 2, -1):
        relay.put(item)
    assert await anext(pull()) == 1
    assert [item async for item in pull()] == [2, -1]
