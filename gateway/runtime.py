"""Process-level runtime of ``telepath serve``: which event loop runs it, and the collector.

Two settings that act on the whole process rather than on any one call:

* **The event loop.** uvloop (libuv under asyncio's API) costs the gateway about a fifth
  less CPU per call than asyncio's own loop on the benchmark (bench/, docs/performance.md).
  ``--event-loop auto`` (the default) takes uvloop when it can be imported, ``asyncio``
  never does, and ``uvloop`` insists on it: a missing uvloop is then an error, not a silent
  fallback. :func:`serve_forever` makes the loop from that factory (not through the
  event-loop-policy API that Python 3.14 deprecates) and bounds its wind-down.
* **The garbage collector.** Start-up leaves some hundreds of thousands of long-lived
  objects (modules, ORM metadata, the Quart app, …). Every full (generation 2) collection
  would traverse them again while every call's 20 ms media timer waits: 160 ms to 1 s
  pauses under load. :func:`pause_collector` turns automatic collection off for start-up and
  :func:`freeze_startup_heap` then collects once and moves every survivor to the permanent
  generation, so later collections traverse only what calls allocate. The ``gc.freeze``
  documentation describes the same pattern for pre-fork servers ("call gc.disable() early
  …, gc.freeze() right before fork()", https://docs.python.org/3/library/gc.html#gc.freeze);
  we collect just before freezing so that start-up garbage is freed, not frozen for good.
  The thresholds stay at Python's defaults: no measurement has shown another setting to help.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

EventLoopName = Literal["uvloop", "asyncio"]
"""The event loop a process runs on."""

EventLoopSetting = Literal["auto", "uvloop", "asyncio"]
"""What ``--event-loop`` accepts; ``auto`` is uvloop when it is installed."""

EVENT_LOOP_SETTINGS: tuple[EventLoopSetting, ...] = ("auto", "uvloop", "asyncio")

T = TypeVar("T")

logger = logging.getLogger(__name__)


class EventLoopUnavailable(RuntimeError):
    """``--event-loop uvloop`` was asked for but uvloop cannot be imported."""


@dataclass(frozen=True, slots=True)
class EventLoop:
    """The chosen loop: its name and the factory :func:`serve_forever` calls
    (``None`` for asyncio's own loop: ``asyncio.new_event_loop``)."""

    name: EventLoopName
    factory: Callable[[], asyncio.AbstractEventLoop] | None


def choose_event_loop(setting: EventLoopSetting) -> EventLoop:
    """The loop for ``setting``; raises :class:`EventLoopUnavailable` for a missing uvloop."""
    if setting == "asyncio":
        return EventLoop("asyncio", None)
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if setting == "uvloop":
            raise EventLoopUnavailable(
                "--event-loop uvloop: uvloop is not installed (pip install uvloop; Linux "
                "and macOS on CPython only); use --event-loop auto or asyncio"
            ) from exc
        return EventLoop("asyncio", None)
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return EventLoop("uvloop", factory)


def running_event_loop() -> EventLoopName:
    """Which loop runs the calling coroutine: what actually runs, not what was asked for."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def serve_forever(loop: EventLoop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop of kind ``loop``, then wind the loop down.

    Like ``asyncio.run``, except that winding down is bounded: tasks still running when
    ``main`` returns are cancelled and given :data:`WIND_DOWN_S` seconds; one that ignores
    its cancellation is logged by name and left behind, where ``asyncio.run`` would wait
    for it forever and keep a drained node from exiting.
    """
    event_loop = asyncio.new_event_loop() if loop.factory is None else loop.factory()
    asyncio.set_event_loop(event_loop)
    try:
        return event_loop.run_until_complete(main)
    finally:
        try:
            event_loop.run_until_complete(_wind_down(event_loop))
        finally:
            asyncio.set_event_loop(None)
            event_loop.close()


WIND_DOWN_S = 5.0
"""How long :func:`serve_forever` waits for leftover tasks, async generators and the
default executor once ``main`` has returned."""


async def _wind_down(loop: asyncio.AbstractEventLoop) -> None:
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    if leftovers:
        done, stuck = await asyncio.wait(leftovers, timeout=WIND_DOWN_S)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error("task %s ended with %r", task.get_name(), task.exception())
        for task in stuck:
            logger.error(
                "shutdown: task %s ignored its cancellation; left behind (%r)",
                task.get_name(),
                task.get_coro(),
            )
    for name, step in (
        ("async generators", loop.shutdown_asyncgens()),
        ("default executor", loop.shutdown_default_executor()),
    ):
        try:
            async with asyncio.timeout(WIND_DOWN_S):
                await step
        except TimeoutError:
            logger.error("shutdown: closing the %s took over %.0f s", name, WIND_DOWN_S)


def pause_collector() -> None:
    """Stop automatic garbage collection until :func:`freeze_startup_heap`.

    Start-up only builds objects that live as long as the process; collecting while it runs
    would traverse them again and again (each full pass 160-180 ms) and free next to nothing.
    """
    gc.disable()


def freeze_startup_heap() -> int:
    """Collect once, move every survivor to the permanent generation, re-enable collection.

    Call it when start-up is complete, right before serving. Frozen objects are never
    traversed (nor freed) again; garbage among them was removed by the collection just
    before. Returns ``gc.get_freeze_count()``, the number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    gc.enable()
    return gc.get_freeze_count()


def frozen_objects() -> int:
    """How many objects sit in the permanent generation (0 before start-up completes)."""
    return gc.get_freeze_count()
