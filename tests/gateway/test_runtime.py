"""The process-level runtime of ``telepath serve``: its event loop and its frozen start-up heap."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway import native, runtime
from gateway.runtime import (
    EventLoop,
    EventLoopUnavailable,
    choose_event_loop,
    running_event_loop,
    serve_forever,
)
from tests.support.live_server import ROOT, free_port, live_server

# Imported modules alone leave tens of thousands of objects; a gateway that froze its
# start-up heap has far more than this in the permanent generation.
STARTUP_OBJECTS = 10_000


def _health(url: str) -> dict[str, Any]:
    response = requests.get(url + "/healthz", timeout=5)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_served_gateway_runs_on_uvloop_by_default_with_its_startup_heap_frozen(
    tmp_path: Path,
) -> None:
    with live_server(f"sqlite://{tmp_path / 'default.db'}") as server:
        health = _health(server.url)
    assert health["status"] == "ok"
    assert health["event_loop"] == "uvloop"
    assert health["gc_frozen_objects"] > STARTUP_OBJECTS
    # The served process runs this checkout: compiled exactly where the suite is.
    assert health["compiled_modules"] == len(native.compiled())


def test_event_loop_asyncio_is_chosen_by_flag_or_environment(tmp_path: Path) -> None:
    database = f"sqlite://{tmp_path / 'asyncio.db'}"
    with live_server(database, args=["--event-loop", "asyncio"]) as server:
        health = _health(server.url)
    assert health["event_loop"] == "asyncio"
    assert health["gc_frozen_objects"] > STARTUP_OBJECTS
    with live_server(database, env={"TELEPATH_EVENT_LOOP": "asyncio"}) as server:
        assert _health(server.url)["event_loop"] == "asyncio"


def _serve_without_uvloop(*args: str) -> subprocess.CompletedProcess[str]:
    """``telepath serve`` in a Python where ``import uvloop`` fails (None in sys.modules)."""
    script = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from gateway.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "serve", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_uvloop_asked_for_but_missing_is_a_clear_error_exit(tmp_path: Path) -> None:
    done = _serve_without_uvloop(
        "--event-loop",
        "uvloop",
        "--http",
        f"127.0.0.1:{free_port()}",
        "--database",
        f"sqlite://{tmp_path / 'missing.db'}",
    )
    assert done.returncode == 2
    assert "uvloop is not installed" in done.stderr and "--event-loop auto" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "missing.db").exists()  # it stopped before touching anything


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_event_loop("auto").name == "uvloop"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what a failed import leaves
    assert choose_event_loop("auto") == EventLoop("asyncio", None)
    with pytest.raises(EventLoopUnavailable, match="pip install uvloop"):
        choose_event_loop("uvloop")


@pytest.mark.parametrize("setting", ["uvloop", "asyncio"])
def test_serve_forever_runs_on_the_chosen_loop(setting: str) -> None:
    loop = choose_event_loop("uvloop" if setting == "uvloop" else "asyncio")

    async def which() -> str:
        return running_event_loop()

    assert serve_forever(loop, which()) == setting


@pytest.mark.parametrize("setting", ["uvloop", "asyncio"])
def test_serve_forever_cancels_leftovers_and_leaves_a_stuck_task_behind(
    setting: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A task that ignores its cancellation must not keep the process from exiting
    (asyncio.run would wait for it forever); a well-behaved one still runs its cleanup."""
    monkeypatch.setattr(runtime, "WIND_DOWN_S", 0.3)
    cleaned: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("polite")

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # what a library that swallows cancellation does

    async def main() -> str:
        asyncio.get_running_loop().create_task(polite(), name="polite")
        asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        return "served"

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="gateway.runtime"):
        assert serve_forever(choose_event_loop(setting), main()) == "served"
    assert time.monotonic() - started < 3
    assert cleaned == ["polite"]
    stuck = [r.getMessage() for r in caplog.records if "ignored its cancellation" in r.getMessage()]
    assert len(stuck) == 1 and "stubborn" in stuck[0], caplog.text
