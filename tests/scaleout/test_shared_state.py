"""Redis-backed shared state (gateway/services/shared_state.py) against a real Redis server:
per-node call counts that expire with their node, and configuration-change notifications."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from gateway.services.shared_state import (
    CONFIG_CHANNEL,
    ConfigChanged,
    SharedState,
    parse_config_message,
)
from tests.scaleout.support import REDIS_URL, require_redis


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SharedState, SharedState]]:
    require_redis()
    run = secrets.token_hex(4)
    a = SharedState(REDIS_URL, f"test-{run}-a", ttl=5)
    b = SharedState(REDIS_URL, f"test-{run}-b", ttl=5)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_counts_add_up_across_nodes(pair: tuple[SharedState, SharedState]) -> None:
    a, b = pair
    a.update({"trk_1": 2, "trk_2": 1})
    b.update({"trk_1": 1})
    await a.flush()
    await b.flush()
    seen_by_b = await b.cluster_counts("trk_1")
    assert seen_by_b.trunk == 3
    assert seen_by_b.total >= 4  # other test runs on this Redis may add theirs
    assert (await a.cluster_counts("trk_2")).trunk == 1
    # This node's own part is exact at once, before any flush.
    b.update({"trk_1": 2})
    assert (await b.cluster_counts("trk_1")).trunk == 4
    assert b.counts_cached("trk_1").trunk == 4


async def test_a_node_that_goes_away_stops_counting(pair: tuple[SharedState, SharedState]) -> None:
    a, b = pair
    a.update({"trk_x": 5})
    await a.flush()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        key = f"telepath:node:{a.node}:calls"
        ttl_ms = await client.pttl(key)
        assert 0 < ttl_ms <= 5000  # the hash expires unless the heartbeat renews it
        assert (await b.cluster_counts("trk_x")).trunk == 5
        await client.delete(key)  # what Redis does when the TTL runs out
        assert (await b.cluster_counts("trk_x")).trunk == 0
        assert not await client.sismember("telepath:nodes", a.node)  # reader cleaned up
    finally:
        await client.aclose()


async def test_heartbeat_writes_changes_and_close_withdraws(
    pair: tuple[SharedState, SharedState],
) -> None:
    a, b = pair
    a.start()
    a.update({"trk_h": 1})
    async with asyncio.timeout(3):
        while (await b.cluster_counts("trk_h")).trunk != 1:  # noqa: ASYNC110 - state in Redis
            await asyncio.sleep(0.02)
    await a.close()
    assert (await b.cluster_counts("trk_h")).trunk == 0


async def test_config_changes_reach_every_node(pair: tuple[SharedState, SharedState]) -> None:
    a, b = pair
    heard: list[ConfigChanged] = []
    got = asyncio.Event()

    async def listener(change: ConfigChanged) -> None:
        heard.append(change)
        got.set()

    b.subscribe(listener)
    b.start()
    await asyncio.wait_for(b.wait_subscribed(), 5)
    # Junk on the channel (anyone with Redis access can publish) is ignored.
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.publish(CONFIG_CHANNEL, b"\xff not json")
    finally:
        await client.aclose()
    assert await a.notify("trunk", "trk_42")
    await asyncio.wait_for(got.wait(), 5)
    assert heard == [ConfigChanged("trunk", "trk_42", a.node)]


async def test_unreachable_redis_falls_back_to_own_counts() -> None:
    state = SharedState("redis://127.0.0.1:1/0", "lonely", ttl=5)
    try:
        state.update({"trk_1": 2})
        await state.flush()  # logged, not raised
        assert (await state.cluster_counts("trk_1")).trunk == 2
        assert not await state.notify("trunk", "trk_1")
    finally:
        await state.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            json.dumps({"kind": "trunk", "id": "trk_1", "node": "n1"}),
            ConfigChanged("trunk", "trk_1", "n1"),
        ),
        (b'{"kind": "trunk", "id": "trk_1", "node": "n1"}', ConfigChanged("trunk", "trk_1", "n1")),
        ("not json", None),
        (b"\xff\xfe", None),
        ("[1, 2]", None),
        (json.dumps({"kind": "trunk", "id": 7, "node": "n1"}), None),
        (json.dumps({"kind": "", "id": "x", "node": "n1"}), None),
        (json.dumps({"kind": "trunk", "id": "x" * 201, "node": "n1"}), None),
        ("x" * 5000, None),
    ],
)
def test_config_messages_are_checked(raw: str | bytes, expected: ConfigChanged | None) -> None:
    assert parse_config_message(raw) == expected


def test_ttl_must_leave_room_for_the_heartbeat() -> None:
    with pytest.raises(ValueError, match="ttl"):
        SharedState(REDIS_URL, "n", ttl=1)


async def test_close_stops_a_heartbeat_woken_in_the_same_tick() -> None:
    """A count change right before close() (a call ending as the node shuts down) woke the
    heartbeat in the very loop iteration that cancelled it; Python 3.11's wait_for then
    returned instead of raising, the heartbeat ran on and close() never returned."""
    require_redis()
    state = SharedState(REDIS_URL, f"test-{secrets.token_hex(4)}-close", ttl=30)
    state.start()
    await state.wait_subscribed()
    await asyncio.sleep(0.05)  # the heartbeat's first flush is done: it waits for a change
    state.update({"trk_close": 1})  # marks the counts dirty: the heartbeat wakes ...
    closing = asyncio.ensure_future(state.close())  # ... in the iteration close() cancels it
    done, _ = await asyncio.wait([closing], timeout=5)
    if not done:  # (cancelling close() would also stop the heartbeat: a second cancel)
        closing.cancel()
        pytest.fail("close() did not return: the heartbeat ignored its cancellation")
    closing.result()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:  # close() went on to withdraw this node's counts
        assert not await client.sismember("telepath:nodes", state.node)
        assert not await client.exists(f"telepath:node:{state.node}:calls")
    finally:
        await client.aclose()
