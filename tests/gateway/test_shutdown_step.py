"""``gateway.server.shutdown_step``: each step of a node's shutdown is bounded and logged,
so one that hangs cannot keep a drained node alive, and the later steps still run."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.server import shutdown_step


async def test_a_hanging_step_is_given_up_after_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[bool] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="gateway.server"):
        assert await shutdown_step("Redis", hangs(), limit_s=0.2) is False
    assert 0.2 <= time.monotonic() - started < 2
    assert cancelled == [True]
    assert "shutdown: Redis did not finish within 0.2 s; going on" in caplog.text


async def test_a_failing_step_is_logged_and_a_good_one_reports_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise ConnectionResetError("peer went away")

    async def works() -> None:
        await asyncio.sleep(0)

    with caplog.at_level(logging.INFO, logger="gateway.server"):
        assert await shutdown_step("database", fails()) is False
        assert await shutdown_step("services", works()) is True
    assert "shutdown: database failed; going on" in caplog.text
    assert "ConnectionResetError: peer went away" in caplog.text
    assert "shutdown: services done in" in caplog.text
