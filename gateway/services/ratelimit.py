"""API rate limits: a fixed one-minute window per API key, in-process or shared via Redis.

Every authenticated response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (unix seconds when the window ends), as the seed's API reference
shows; over the limit the API answers 429 with ``Retry-After``. With several gateway
nodes the counters live in Redis so a key's limit holds across nodes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of counting one request."""

    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset - int(time.time())))
        return headers


class RateLimiter(Protocol):
    """Counts requests per key."""

    limit: int

    async def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` and say whether it is allowed."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _window(now: float) -> tuple[int, int]:
    start = int(now) // WINDOW_SECONDS * WINDOW_SECONDS
    return start, start + WINDOW_SECONDS


class MemoryRateLimiter:
    """The embedded default: counters in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str) -> RateDecision:
        """Count one request for ``key``."""
        start, reset = _window(time.time())
        window, count = self._counts.get(key, (start, 0))
        if window != start:
            count = 0
            if len(self._counts) > 100_000:  # keep memory bounded: drop stale windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == start}
        count += 1
        self._counts[key] = (start, count)
        return RateDecision(count <= self.limit, self.limit, max(0, self.limit - count), reset)

    async def close(self) -> None:
        """Nothing to release."""


class RedisRateLimiter:
    """Counters shared by every node through Redis (INCR + EXPIRE on a per-window key)."""

    def __init__(self, url: str, limit: int) -> None:
        self.limit = limit
        self._redis: Redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    async def hit(self, key: str) -> RateDecision:
        """Count one request for ``key`` in Redis."""
        start, reset = _window(time.time())
        name = f"telepath:ratelimit:{key}:{start}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, WINDOW_SECONDS + 5)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            # Fail open: an unreachable Redis must not take the API down with it.
            logger.warning(
                "rate limiter: Redis unavailable (%s); request allowed", type(exc).__name__
            )
            return RateDecision(True, self.limit, self.limit, reset)
        return RateDecision(
            int(count) <= self.limit, self.limit, max(0, self.limit - int(count)), reset
        )

    async def close(self) -> None:
        """Close the Redis connection pool."""
        await self._redis.aclose()


def make_rate_limiter(redis_url: str | None, limit: int) -> RateLimiter:
    """Redis-backed when ``--redis`` is set, else in-process."""
    if redis_url:
        return RedisRateLimiter(redis_url, limit)
    return MemoryRateLimiter(limit)
