"""Load shedding's verdict (sans-I/O) and its probe on a real event loop."""

from __future__ import annotations

import asyncio
import time

from gateway.overload import LagMonitor, LoopLag


def test_sustained_lag_overloads_and_recovery_needs_half_the_threshold() -> None:
    lag = LoopLag(threshold_ms=100)
    assert not any(lag.observe(30) for _ in range(50))  # busy but on time
    changes = [lag.observe(300) for _ in range(10)]
    assert lag.overloaded and changes.count(True) == 1
    lag.observe(60)
    lag.observe(60)
    assert lag.overloaded  # hysteresis: 60 ms probes are under 100 but not under 50
    recovered = next(n for n in range(1, 20) if lag.observe(0))
    assert not lag.overloaded and recovered >= 2


def test_one_pause_does_not_shed_calls_however_long() -> None:
    lag = LoopLag(threshold_ms=50)
    changes = [lag.observe(2_000)]  # one long garbage-collection pause among on-time probes
    changes += [lag.observe(1) for _ in range(20)]
    assert not any(changes) and not lag.overloaded
    assert lag.lag_ms > 0  # /metrics still saw it


def test_lag_that_lasts_a_few_probes_sheds() -> None:
    lag = LoopLag(threshold_ms=50)
    changes = [lag.observe(200) for _ in range(4)]
    assert changes == [False, False, True, False]  # the third 200 ms probe in a row


def test_threshold_zero_never_sheds() -> None:
    lag = LoopLag(threshold_ms=0)
    for _ in range(20):
        lag.observe(10_000)
    assert not lag.overloaded


async def test_the_probe_sees_a_blocked_loop_and_its_recovery() -> None:
    lag = LoopLag(threshold_ms=50)
    monitor = LagMonitor(lag, interval=0.01)
    monitor.start()
    try:
        for _ in range(8):  # the loop is blocked 120 ms at a time: every probe is late
            await asyncio.sleep(0.012)
            time.sleep(0.12)  # noqa: ASYNC251 - blocking the loop is what is measured
        await asyncio.sleep(0.02)
        assert lag.overloaded, lag.lag_ms
        for _ in range(250):  # on-time probes bring the average down within seconds
            if not lag.overloaded:
                break
            await asyncio.sleep(0.02)
        assert not lag.overloaded
    finally:
        monitor.stop()


def test_metrics_show_the_lag_and_the_verdict_at_each_scrape() -> None:
    from gateway.metrics import GatewayMetrics

    lag = LoopLag(threshold_ms=100)
    metrics = GatewayMetrics()
    metrics.watch_load(lag)
    for _ in range(20):
        lag.observe(400)
    text = metrics.render()[0].decode()
    assert "telepath_overloaded 1.0" in text
    value = next(
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("telepath_event_loop_lag_seconds ")
    )
    assert 0.3 < float(value) <= 0.4


async def test_with_shedding_off_the_lag_is_still_measured() -> None:
    lag = LoopLag(threshold_ms=0)
    monitor = LagMonitor(lag, interval=0.01)
    monitor.start()
    try:
        for _ in range(4):
            await asyncio.sleep(0.012)
            time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop is what is measured
        await asyncio.sleep(0.02)
        assert lag.lag_ms > 10 and not lag.overloaded
    finally:
        monitor.stop()
