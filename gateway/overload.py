"""Load shedding: refuse new calls while the event loop cannot keep the running ones on time.

One process runs every call's media on one event loop. When the calls it carries need
more CPU than it has, every callback runs late: 20 ms RTP slots are missed, frames queue,
and each new call makes all the others worse (docs/performance.md shows the cliff). A
process in that state should say so instead of answering more calls it cannot serve, the
way FreeSWITCH's ``min-idle-cpu`` or Asterisk's ``maxload`` refuse calls: a new INVITE
gets ``503 Service Unavailable`` with ``Retry-After`` (RFC 3261 §21.5.4), and a SIP load
balancer in front (Kamailio's dispatcher, deploy/kamailio/) tries the next node.

How "late" is measured: :class:`LagMonitor` schedules a callback every
``PROBE_INTERVAL`` seconds and measures how late it ran (the loop's scheduling delay,
which every RTP timer suffers too). :class:`LoopLag` smooths the samples (an exponential
average of samples capped at twice the threshold, so one garbage-collection pause, however
long, does not shed calls; lag that lasts a few probes does) and applies hysteresis:
overloaded from ``threshold_ms``, back to normal below half of it.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["PROBE_INTERVAL", "LagMonitor", "LoopLag"]

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 0.1  # seconds between probes
RETRY_AFTER_S = 5  # the Retry-After of an overloaded node's 503 (SIP and carrier webhooks)
_SMOOTHING = 0.25  # weight of the newest sample in the average


class LoopLag:
    """Smoothed scheduling delay of the event loop and the overload verdict (sans-I/O).

    ``threshold_ms`` 0 disables shedding (``overloaded`` stays ``False``).
    """

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_ms = threshold_ms
        self.lag_ms = 0.0  # the smoothed lateness, as /metrics shows it
        self._level = 0.0  # the same of samples capped at 2 x threshold: the verdict's
        self.overloaded = False

    def observe(self, late_ms: float) -> bool:
        """Add one probe's lateness; returns ``True`` when the verdict changed."""
        late_ms = max(0.0, late_ms)
        self.lag_ms += _SMOOTHING * (late_ms - self.lag_ms)
        if self.threshold_ms <= 0:
            return False
        self._level += _SMOOTHING * (min(late_ms, 2 * self.threshold_ms) - self._level)
        if not self.overloaded and self._level >= self.threshold_ms:
            self.overloaded = True
            return True
        if self.overloaded and self._level < self.threshold_ms / 2:
            self.overloaded = False
            return True
        return False


class LagMonitor:
    """The asyncio probe feeding a :class:`LoopLag`; ``start()`` inside the running loop."""

    def __init__(self, lag: LoopLag, interval: float = PROBE_INTERVAL) -> None:
        self.lag = lag
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        """Probe from now on (also with shedding off: the lag is still worth watching)."""
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._interval
        self._handle = loop.call_at(self._due, self._probe, loop)

    def _probe(self, loop: asyncio.AbstractEventLoop) -> None:
        late_ms = (loop.time() - self._due) * 1000
        if self.lag.observe(late_ms):
            if self.lag.overloaded:
                logger.warning(
                    "overloaded: the event loop runs %.0f ms late on average; new calls get "
                    "503 until it is under %.0f ms",
                    self.lag.lag_ms,
                    self.lag.threshold_ms / 2,
                )
            else:
                logger.warning("no longer overloaded (loop lag %.0f ms)", self.lag.lag_ms)
        self._schedule(loop)
