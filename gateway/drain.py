"""Graceful drain: how a node leaves a cluster without cutting anyone off.

On the first SIGTERM (or SIGINT) ``run_server`` starts a drain:

1. :class:`DrainState` turns ``draining``: the SIP service answers every new INVITE
   ``503 Service Unavailable`` with ``Retry-After`` (RFC 3261 §21.5.4: the server is
   temporarily unable; a proxy such as Kamailio's dispatcher then tries the next node),
   the voice webhooks of new media-stream calls get HTTP 503 (the carrier tries the
   number's fallback URL, gateway.media_streams.webhooks), and ``/readyz`` answers 503
   ``{"status": "draining"}`` so HTTP load balancers stop sending new work. The HTTP API
   and the webhooks of running calls keep being served meanwhile.
2. Calls already running continue until they end or until the drain deadline
   (``--drain-timeout``, ``TELEPATH_DRAIN_TIMEOUT``), whichever comes first.
3. At the deadline every remaining call is ended with ``DisconnectReason.SHUTDOWN`` (blame
   ``system``): the leg sends its BYE and the call runner finalises the record.
4. A second SIGTERM/SIGINT skips the rest of the wait and goes to step 3 at once; the
   records are still finalised (bounded by ``finalise_timeout``).

Only then does the process stop its HTTP listener and close the SIP sockets.

:class:`DrainState` is plain data with time passed in (``now``); :func:`drain_calls` is the
asyncio shell around the call runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from media import Blame, CallEnd, DisconnectReason

__all__ = ["DRAIN_END", "DrainOutcome", "DrainState", "DrainableRunner", "drain_calls"]

logger = logging.getLogger(__name__)

DRAIN_END = CallEnd(
    DisconnectReason.SHUTDOWN,
    Blame.SYSTEM,
    "Telepath node drained: the drain deadline passed while the call ran",
)


class DrainState:
    """Whether this process still takes new calls. One per process (``services.drain``)."""

    def __init__(self) -> None:
        self._started_at: float | None = None
        self._deadline: float | None = None
        self._listeners: list[Callable[[DrainState, float], None]] = []

    def on_begin(self, listener: Callable[[DrainState, float], None]) -> None:
        """Call ``listener(self, now)`` when the drain begins (the SIP stack refuses OPTIONS)."""
        self._listeners.append(listener)

    @property
    def draining(self) -> bool:
        """True once a drain has begun: refuse new calls."""
        return self._started_at is not None

    def begin(self, now: float, timeout: float) -> None:
        """Start draining at ``now``; running calls may last until ``now + timeout``.
        A second call keeps the first deadline (a drain never gets longer)."""
        if self._started_at is not None:
            return
        self._started_at = now
        self._deadline = now + max(0.0, timeout)
        for listener in self._listeners:
            try:
                listener(self, now)
            except Exception:
                logger.exception("drain listener failed")

    def remaining(self, now: float) -> float:
        """Seconds left before running calls are ended (``inf`` when not draining)."""
        if self._deadline is None:
            return math.inf
        return max(0.0, self._deadline - now)

    def retry_after(self, now: float) -> int:
        """The ``Retry-After`` seconds for a refused INVITE: this node will be gone by then,
        so the value only tells a caller without another route when to try the address
        again (at least 1, RFC 3261 §20.33 delta-seconds)."""
        remaining = self.remaining(now)
        # (now + timeout) - now is not exactly timeout in floating point: round away the
        # error so a 600 s drain never says 601.
        return 5 if math.isinf(remaining) else max(1, math.ceil(round(remaining, 6)))


class DrainableRunner(Protocol):
    """What the drain needs of ``gateway.call_runner.CallRunner``."""

    def active_calls(self, trunk_id: str | None = None) -> int: ...

    def end_all(self, end: CallEnd | None = None) -> int: ...

    async def wait_idle(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DrainOutcome:
    """How a drain went: calls that ended by themselves, calls we ended, calls whose
    records did not finalise within ``finalise_timeout`` (0 unless the database hangs)."""

    ended_by_themselves: int
    ended_by_us: int
    unfinished: int


async def drain_calls(
    state: DrainState,
    runner: DrainableRunner,
    *,
    deadline_s: float,
    hurry: asyncio.Event | None = None,
    finalise_timeout: float = 15.0,
) -> DrainOutcome:
    """Drain this process (see the module docstring); returns when no call runs here or
    ``finalise_timeout`` after the calls were told to end."""
    loop = asyncio.get_running_loop()
    state.begin(loop.time(), deadline_s)
    before = runner.active_calls()
    logger.info("drain started: %d call(s) running, deadline in %.1f s", before, deadline_s)
    idle: asyncio.Future[Any] = asyncio.ensure_future(runner.wait_idle())
    waiters: set[asyncio.Future[Any]] = {idle}
    hurried: asyncio.Future[Any] | None = None
    if hurry is not None:
        hurried = asyncio.ensure_future(hurry.wait())
        waiters.add(hurried)
    try:
        await asyncio.wait(
            waiters, timeout=state.remaining(loop.time()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if hurried is not None:
            hurried.cancel()
    left = runner.active_calls()
    ended = runner.end_all(DRAIN_END) if left else 0
    if ended:
        logger.info("drain: ending %d call(s) with reason shutdown", ended)
    try:
        async with asyncio.timeout(finalise_timeout):
            await asyncio.shield(idle)
    except TimeoutError:
        logger.error("drain: %d call(s) not finalised in time", runner.active_calls())
    finally:
        if not idle.done():
            idle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await idle
    unfinished = runner.active_calls()
    outcome = DrainOutcome(max(0, before - left), ended, unfinished)
    logger.info(
        "drain finished: %d ended by themselves, %d ended by us, %d unfinished",
        outcome.ended_by_themselves,
        outcome.ended_by_us,
        outcome.unfinished,
    )
    return outcome
