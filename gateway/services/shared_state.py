"""What gateway nodes share at request speed through Redis: active-call counts and
configuration-change notifications.

Active calls
    Each node owns one Redis hash, ``telepath:node:{node}:calls``: field ``*`` is the node's
    total, every other field a trunk id and that trunk's calls on the node. The node writes
    its whole snapshot (idempotent, so a lost write heals on the next one) whenever a call
    starts or ends, and again every ``ttl / 3`` seconds (the heartbeat); the hash expires
    after ``ttl`` seconds, so the calls of a node that died stop counting by themselves.
    The set ``telepath:nodes`` indexes the hashes; a member whose hash expired is removed
    by the next reader. A node's own counts are always its exact in-process figures; other
    nodes' are read fresh (``cluster_counts``) or from the heartbeat's snapshot
    (``others_cached``). Two nodes admitting at the same instant can overshoot a trunk's
    cap by one call each: the cap is exact per node and near-exact across nodes.

Configuration changes
    ``notify(kind, object_id)`` publishes ``{"kind", "id", "node"}`` on the channel
    ``telepath:config``; every node's listener calls the registered callbacks. Trunks are
    read from the database on every call (``TrunkService.find_by_username``), so no node
    caches trunk settings and a change made through one node already applies on all at
    the next call; the channel exists for what does keep per-node state (see
    docs/deployment.md).

Redis failures never break a call: counts fall back to this node's own, notifications are
dropped with a warning. Errors: none of this module's own; ``RedisError``/``OSError`` are
caught at every call site.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["CONFIG_CHANNEL", "ClusterCounts", "ConfigChanged", "SharedState"]

logger = logging.getLogger(__name__)

CONFIG_CHANNEL = "telepath:config"
_NODES = "telepath:nodes"
_TOTAL = "*"
# How long close() waits for the heartbeat and the listener to stop once cancelled.
_STOP_WAIT_S = 3.0


def _node_key(node: str) -> str:
    return f"telepath:node:{node}:calls"


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    """Active calls across the cluster: all of them, and those of one trunk."""

    total: int
    trunk: int


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """Another node (or this one) changed an object: ``kind`` (``trunk`` …) and its id."""

    kind: str
    object_id: str
    node: str


Listener = Callable[[ConfigChanged], Awaitable[None] | None]


def parse_config_message(data: bytes | str) -> ConfigChanged | None:
    """A ``telepath:config`` message, or ``None`` when it is not one of ours (any
    publisher on the Redis server can write to the channel)."""
    if len(data) > 4096:
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    fields = [value.get("kind"), value.get("id"), value.get("node")]
    texts = [v for v in fields if isinstance(v, str) and 0 < len(v) <= 200]
    if len(texts) != 3:
        return None
    kind, object_id, node = texts
    return ConfigChanged(kind, object_id, node)


def _count(raw: object) -> int:
    try:
        value: int = int(raw)  # type: ignore[call-overload]  # bytes/str from Redis
    except (TypeError, ValueError):
        return 0
    return max(0, value)


class SharedState:
    """One node's view of the cluster through Redis. ``start()`` after the event loop runs,
    ``close()`` at shutdown; ``update(per_trunk)`` whenever the node's calls change."""

    def __init__(self, url: str, node: str, *, ttl: float = 15.0) -> None:
        if ttl < 3:
            raise ValueError("ttl must be at least 3 seconds")
        self.node = node
        self.ttl = ttl
        self._redis: Redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._local: dict[str, int] = {}
        self._others: dict[str, int] = {}
        self._others_total = 0
        self._dirty = asyncio.Event()
        self._listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._published = False

    # --- active calls: writing ---

    def update(self, per_trunk: Mapping[str, int]) -> None:
        """This node's calls per trunk changed; the snapshot is written soon (never blocks)."""
        self._local = {k: v for k, v in per_trunk.items() if v > 0}
        self._dirty.set()

    async def flush(self) -> None:
        """Write this node's snapshot now (also what the heartbeat does)."""
        key = _node_key(self.node)
        self._published = True
        snapshot: dict[str, int] = {_TOTAL: sum(self._local.values()), **self._local}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=snapshot)  # type: ignore[arg-type]  # str -> int mapping
                pipe.pexpire(key, int(self.ttl * 1000))
                pipe.sadd(_NODES, self.node)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("shared state: call counts not written (%s)", type(exc).__name__)

    # --- active calls: reading ---

    async def cluster_counts(self, trunk_id: str) -> ClusterCounts:
        """Calls on every node, read now; this node's own part is exact. Falls back to the
        last snapshot of the others when Redis does not answer."""
        try:
            await self._read_others()
        except (RedisError, OSError) as exc:
            logger.warning("shared state: cluster counts unavailable (%s)", type(exc).__name__)
        return self.counts_cached(trunk_id)

    def counts_cached(self, trunk_id: str) -> ClusterCounts:
        """This node's exact counts plus the others' from the last read (no I/O)."""
        total = sum(self._local.values()) + self._others_total
        return ClusterCounts(total, self._local.get(trunk_id, 0) + self._others.get(trunk_id, 0))

    async def _read_others(self) -> None:
        members = await self._redis.smembers(_NODES)
        nodes = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        nodes = [n for n in nodes if n != self.node]
        others: dict[str, int] = {}
        total = 0
        if nodes:
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in nodes:
                    pipe.hgetall(_node_key(node))
                hashes: list[dict[Any, Any]] = await pipe.execute()
            gone = []
            for node, fields in zip(nodes, hashes, strict=True):
                if not fields:
                    gone.append(node)  # its hash expired: the node is gone
                    continue
                for raw_key, raw_value in fields.items():
                    name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                    if name == _TOTAL:
                        total += _count(raw_value)
                    else:
                        others[name] = others.get(name, 0) + _count(raw_value)
            if gone:
                await self._redis.srem(_NODES, *gone)
        self._others, self._others_total = others, total

    # --- configuration changes ---

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` for every configuration change any node publishes."""
        self._listeners.append(listener)

    async def notify(self, kind: str, object_id: str) -> bool:
        """Tell every node (this one too) that ``kind`` ``object_id`` changed."""
        message = json.dumps({"kind": kind, "id": object_id, "node": self.node})
        try:
            await self._redis.publish(CONFIG_CHANNEL, message)
        except (RedisError, OSError) as exc:
            logger.warning(
                "shared state: change of %s not published (%s)", kind, type(exc).__name__
            )
            return False
        return True

    async def wait_subscribed(self) -> None:
        """Return once the listener has subscribed (so a ``notify`` after it is heard)."""
        await self._subscribed.wait()

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CONFIG_CHANNEL)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        change = parse_config_message(message.get("data", b""))
                        if change is not None:
                            await self._dispatch(change)
            except (RedisError, OSError) as exc:
                logger.warning("shared state: subscription lost (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _dispatch(self, change: ConfigChanged) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(change)
                if result is not None:
                    await result
            except Exception:
                logger.exception("shared state: a configuration listener failed")

    # --- lifecycle ---

    async def _heartbeat(self) -> None:
        interval = self.ttl / 3
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result
            # instead of raising when a cancel meets a set event, and close() would wait
            # for a heartbeat that never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._dirty.wait()
            self._dirty.clear()
            await self.flush()
            with contextlib.suppress(RedisError, OSError):
                await self._read_others()

    def start(self) -> None:
        """Start the heartbeat and the configuration listener (inside the event loop)."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._dirty.set()
        self._tasks = [loop.create_task(self._heartbeat()), loop.create_task(self._listen())]

    async def close(self) -> None:
        """Stop the tasks, withdraw this node's counts (if it published any: a CLI command
        sharing a serving node's name must not wipe them), close the connection pool."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task stuck in a Redis client call must not keep a draining node
            # alive (asyncio.wait, unlike awaiting the task, does not wait on its cancel).
            _, stuck = await asyncio.wait(self._tasks, timeout=_STOP_WAIT_S)
            if stuck:
                logger.warning("shared state: %d task(s) did not stop in time", len(stuck))
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.warning("shared state: a task ended with %r", task.exception())
        self._tasks = []
        if not self._published:
            await self._redis.aclose()
            return
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_node_key(self.node))
                pipe.srem(_NODES, self.node)
                await pipe.execute()
        await self._redis.aclose()
