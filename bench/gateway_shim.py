"""``telepath`` under the benchmark's measurement aids: ``python -m bench.gateway_shim serve ...``.

``bench/run.py`` starts the gateway through this module to observe the process without
touching the CLI; it then runs ``gateway.cli.main`` unchanged. The event loop and the
start-up ``gc.freeze()`` are the gateway's own (``--event-loop``, gateway/runtime.py).
Settings come from the environment:

* ``BENCH_GC_THRESHOLD=a,b,c``: ``gc.set_threshold(a, b, c)`` before anything runs.
* ``BENCH_GC_LOG=path``: write the duration of every garbage collection over 5 ms to
  ``path`` (one ``generation milliseconds`` line each) when the process exits.
* ``BENCH_CPROFILE=path``: the first SIGUSR1 starts ``cProfile``, the second stops it and
  writes its statistics to ``path`` (``bench.run --cprofile``: call counts per frame).
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import os
import signal
import sys
import time
from typing import Any

from gateway.cli import main


def _log_gc_pauses(path: str) -> None:
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        elapsed = (time.perf_counter() - started[0]) * 1000
        if elapsed > 5:
            pauses.append((int(info["generation"]), elapsed))

    def dump() -> None:
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(f"{gen} {ms:.1f}\n" for gen, ms in pauses)

    gc.callbacks.append(callback)
    atexit.register(dump)


def _cprofile_on_signal(path: str) -> None:
    profiler = cProfile.Profile()
    running = [False]

    def toggle(signum: int, frame: object) -> None:
        del signum, frame
        if not running[0]:
            running[0] = True
            profiler.enable()
            return
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, toggle)


if __name__ == "__main__":
    if os.environ.get("BENCH_CPROFILE"):
        _cprofile_on_signal(os.environ["BENCH_CPROFILE"])
    if os.environ.get("BENCH_GC_THRESHOLD"):
        a, b, c = (int(v) for v in os.environ["BENCH_GC_THRESHOLD"].split(","))
        gc.set_threshold(a, b, c)
    if os.environ.get("BENCH_GC_LOG"):
        _log_gc_pauses(os.environ["BENCH_GC_LOG"])
    sys.exit(main())
