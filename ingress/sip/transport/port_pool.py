"""The RTP port pool: even ports from ``--rtp-ports LO-HI``, shared by every call of a process.

RFC 3550 §11: an RTP session uses an even port and RTCP the next (odd) one, unless RTCP is
multiplexed (RFC 5761). The pool hands out the even port of a pair whose odd neighbour is
inside the range too, so RTCP can always be bound at ``port + 1``.

A released port is not handed out again until ``drain_seconds`` have passed, so that late
packets of a finished call (a carrier still streaming after our BYE, retransmissions in
flight) never reach the next call on the same port. Ports are reused in rotation (oldest
released first), which spreads them over the whole range and adds to that margin.

The pool is plain bookkeeping: it does not bind sockets (``ingress.sip.transport.rtp``
does, and hands a port back if the operating system refuses it) and it arms no timer: the
drain is checked against ``clock()`` when a port is asked for, so nothing is left running.

Errors (the tree is drawn in :mod:`ingress.sip.transport`)::

    RtpTransportError
     ├── InvalidPortRange   (also a ValueError) a bad ``--rtp-ports`` value
     └── PortsExhausted     no free pair; ``status_hint`` 503 for the INVITE
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = [
    "InvalidPortRange",
    "PortsExhausted",
    "RtpPortPool",
    "RtpTransportError",
    "parse_port_range",
]


class RtpTransportError(Exception):
    """Root of the RTP transport shells' errors."""


class InvalidPortRange(RtpTransportError, ValueError):
    """The RTP port range is not ``LO-HI`` within 1024-65535 holding at least one pair."""


class PortsExhausted(RtpTransportError):
    """Every RTP port pair of the range is in use or draining.

    The call cannot get media: answer the INVITE ``503 Service Unavailable`` (RFC 3261
    §21.5.4, the server is temporarily overloaded), which ``status_hint`` carries.
    """

    status_hint = 503

    def __init__(self, low: int, high: int, in_use: int, draining: int) -> None:
        super().__init__(
            f"no free RTP port pair in {low}-{high}: {in_use} in use, {draining} draining"
        )
        self.low = low
        self.high = high
        self.in_use = in_use
        self.draining = draining


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``"10000-20000"``; raises :class:`InvalidPortRange`.

    The range must lie within 1024-65535 (no privileged ports) and hold at least one even
    port ``p`` with ``p + 1`` also inside it.
    """
    low_text, sep, high_text = text.strip().partition("-")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise InvalidPortRange(f"RTP port range {text!r} is not LO-HI, e.g. 10000-20000")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise InvalidPortRange(f"RTP port range {text!r} must lie within 1024-65535, low first")
    if not _even_ports(low, high):
        raise InvalidPortRange(f"RTP port range {text!r} holds no even/odd port pair")
    return low, high


def _even_ports(low: int, high: int) -> list[int]:
    first = low + (low % 2)
    return list(range(first, high, 2))  # p + 1 <= high


class RtpPortPool:
    """Even RTP ports from ``low``-``high`` (RTCP at ``port + 1``); see the module docstring.

    ``clock`` is monotonic seconds (``time.monotonic``, the clock of asyncio's default
    loop); tests pass a virtual one. Not thread-safe: use it from the event loop only.
    """

    def __init__(
        self,
        low: int,
        high: int,
        *,
        drain_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= low <= high <= 65535:
            raise InvalidPortRange(f"RTP port range {low}-{high} is out of bounds")
        ports = _even_ports(low, high)
        if not ports:
            raise InvalidPortRange(f"RTP port range {low}-{high} holds no even/odd port pair")
        if drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")
        self.low = low
        self.high = high
        self.drain_seconds = drain_seconds
        self._clock = clock
        self._free: deque[int] = deque(ports)
        self._draining: deque[tuple[float, int]] = deque()  # (free again at, port)
        self._in_use: set[int] = set()

    @classmethod
    def from_range(
        cls,
        text: str,
        *,
        drain_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> RtpPortPool:
        """A pool for a ``--rtp-ports`` value such as ``"10000-20000"``."""
        low, high = parse_port_range(text)
        return cls(low, high, drain_seconds=drain_seconds, clock=clock)

    @property
    def size(self) -> int:
        """Number of port pairs in the range."""
        return len(self._free) + len(self._draining) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def draining(self) -> int:
        """Released ports still inside their drain period (as of now)."""
        self._undrain()
        return len(self._draining)

    @property
    def available(self) -> int:
        """Ports that :meth:`acquire` could hand out now."""
        self._undrain()
        return len(self._free)

    def _undrain(self) -> None:
        now = self._clock()
        while self._draining and self._draining[0][0] <= now:
            _, port = self._draining.popleft()
            self._free.append(port)

    def acquire(self) -> int:
        """Take the even RTP port of a free pair; raises :class:`PortsExhausted`."""
        self._undrain()
        if not self._free:
            raise PortsExhausted(self.low, self.high, len(self._in_use), len(self._draining))
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int, *, drain_seconds: float | None = None) -> None:
        """Give ``port`` back; it is handed out again after the drain period (the pool's,
        or ``drain_seconds`` for this port). Raises ``ValueError`` for a port that is not
        in use (a double release is a bug in the caller)."""
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} is not in use")
        self._in_use.discard(port)
        drain = self.drain_seconds if drain_seconds is None else max(0.0, drain_seconds)
        free_at = self._clock() + drain
        if self._draining and free_at < self._draining[-1][0]:
            # A shorter drain than the ports before it: keep the deque ordered by time.
            items = sorted([*self._draining, (free_at, port)])
            self._draining = deque(items)
        else:
            self._draining.append((free_at, port))

    def __repr__(self) -> str:
        return (
            f"RtpPortPool({self.low}-{self.high}, in_use={len(self._in_use)}, "
            f"draining={len(self._draining)}, free={len(self._free)})"
        )
